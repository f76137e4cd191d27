"""``CoalescingTransport``: what one loop turn writes leaves as one write, in order."""

import asyncio
import contextlib
import socket
from typing import Any, cast

import pytest
import uvicorn

from server.httpserver import CoalescingTransport, GatewayHttpProtocol

pytestmark = pytest.mark.anyio


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused = True


def stand_in(real: RecordingTransport) -> CoalescingTransport:
    return CoalescingTransport(cast(asyncio.Transport, real))


async def test_writes_of_one_turn_leave_as_one_write_after_it() -> None:
    real = RecordingTransport()
    transport = stand_in(real)
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b'{"status":"succeeded"}')
    assert real.writes == []  # held until the turn ends
    await asyncio.sleep(0)
    assert real.writes == [b'HTTP/1.1 200 OK\r\n\r\n{"status":"succeeded"}']
    transport.write(b"next")  # a later turn: its own write
    await asyncio.sleep(0)
    assert real.writes[1:] == [b"next"]


async def test_close_sends_what_is_held_first_and_nothing_is_written_after() -> None:
    real = RecordingTransport()
    transport = stand_in(real)
    transport.write(b"last bytes")
    transport.close()
    assert (real.writes, real.closed) == ([b"last bytes"], True)
    transport.write(b"too late")
    await asyncio.sleep(0)  # the flush finds the transport closing and drops it
    assert real.writes == [b"last bytes"]


async def test_everything_else_is_the_real_transports() -> None:
    real = RecordingTransport()
    transport: Any = stand_in(real)
    transport.pause_reading()
    assert real.paused
    assert transport.is_closing() is False


async def test_a_complete_answer_leaves_before_the_turn_ends() -> None:
    """Through a real uvicorn server on GatewayHttpProtocol: once the app has sent the last
    body chunk, the answer is already in the client's socket, while the app's task still
    runs (whatever else the turn does, the client is not kept waiting for it)."""
    client: socket.socket | None = None  # connected below
    seen_in_turn: list[bytes] = []
    answered = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        headers = [(b"content-length", b"4")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"done"})
        assert client is not None
        with contextlib.suppress(BlockingIOError):  # nothing there yet: the answer waits
            seen_in_turn.append(client.recv(65536, socket.MSG_DONTWAIT))
        answered.set()

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    config = uvicorn.Config(app, http=GatewayHttpProtocol, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve(sockets=[listener]))
    client = socket.create_connection(listener.getsockname())
    try:
        client.setblocking(False)
        request = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"  # keep-alive: no close flushes it
        await asyncio.get_running_loop().sock_sendall(client, request)
        await asyncio.wait_for(answered.wait(), 5)
        assert len(seen_in_turn) == 1
        assert seen_in_turn[0].startswith(b"HTTP/1.1 200 OK\r\n")
        assert seen_in_turn[0].endswith(b"\r\n\r\ndone")
    finally:
        client.close()
        server.should_exit = True
        await serving
