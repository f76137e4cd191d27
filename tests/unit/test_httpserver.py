"""``CoalescingTransport``: what one loop turn writes leaves as one write, in order."""

import asyncio
from typing import Any, cast

import pytest

from server.httpserver import CoalescingTransport

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
