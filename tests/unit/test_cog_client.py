"""``CogClient`` reads Cog's SSE stream however it is cut into TCP chunks, and hands the
connection back to the pool (a loopback aiohttp server stands in for Cog's framing)."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from server.runtime.cog_client import CogClient, InstanceBusy, InstanceUnavailable

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "uvloop"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    """Both event loops: ``cogway serve`` runs on uvloop, whose transports differ."""
    return ("asyncio", {"use_uvloop": request.param == "uvloop"})


EVENTS = [
    ("start", {"id": "p1", "status": "processing"}),
    ("log", {"data": "line one\n", "source": "stdout"}),
    ("output", {"chunk": "multi\nline"}),
    ("completed", {"id": "p1", "status": "succeeded", "output": "olleh", "metrics": {"x": 1}}),
]


def sse_bytes(newline: str) -> bytes:
    text = ": keep-alive comment" + newline + newline
    for i, (name, payload) in enumerate(EVENTS):
        text += f"event: {name}{newline}id: {i}{newline}data: {json.dumps(payload)}{newline}"
        text += newline
    return text.encode()


async def ignore(name: str, payload: dict[str, Any]) -> None:
    return None


class Cog:
    """A loopback stand-in for Cog's ``POST /predictions``; ``answers`` picks what it does."""

    def __init__(self, chunk_size: int = 16, newline: str = "\n") -> None:
        self.chunk_size = chunk_size
        self.newline = newline
        self.answers: list[str] = []  # "sse" (default), "cut", "409", "422", "500", "hang"
        self.requests: list[dict[str, Any]] = []
        self.peers: set[int] = set()
        self.streaming = asyncio.Event()  # an SSE answer has begun

    async def predictions(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await request.json())
        transport = request.transport
        assert transport is not None
        self.peers.add(transport.get_extra_info("peername")[1])
        answer = self.answers.pop(0) if self.answers else "sse"
        if answer in ("409", "422", "500"):
            detail = {"detail": [{"msg": "text is required"}]} if answer == "422" else {}
            return web.json_response(detail, status=int(answer))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        self.streaming.set()
        body = sse_bytes(self.newline)
        if answer == "hang":
            await resp.write(body[:40])
            await asyncio.sleep(30)
        if answer == "cut":
            body = body[: body.index(b"event: completed")]
        for i in range(0, len(body), self.chunk_size):
            await resp.write(body[i : i + self.chunk_size])
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp


async def back_in_pool(client: CogClient) -> None:
    """The connection goes back once its answer is complete: the chunked stream's last bytes
    may come just after the ``completed`` event the prediction returned on."""
    for _ in range(100):
        if client.pool._idle:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no connection went back to the pool")


async def serve(cog: Cog) -> AsyncIterator[CogClient]:
    app = web.Application()
    app.router.add_post("/predictions", cog.predictions)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as session:
            client = CogClient(f"http://127.0.0.1:{port}", session)
            try:
                yield client
            finally:
                client.close()
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 100_000])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
async def test_events_arrive_whole_whatever_the_chunks(chunk_size: int, newline: str) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    async def on_event(name: str, payload: dict[str, Any]) -> None:
        seen.append((name, payload))

    cog = Cog(chunk_size, newline)
    async for client in serve(cog):
        first = await client.predict("p1", {"text": "hello"}, on_event)
        await back_in_pool(client)
        second = await client.predict("p2", {"text": "hello"}, on_event)
        assert (first.status, first.output, first.metrics) == ("succeeded", "olleh", {"x": 1})
        assert second.output == "olleh"
        assert seen[:3] == EVENTS[:3]
        assert seen[3:] == EVENTS[:3]
        assert cog.requests == [
            {"id": "p1", "input": {"text": "hello"}},
            {"id": "p2", "input": {"text": "hello"}},
        ]
        # Both streams were read to their end, so one pooled connection served both.
        assert len(cog.peers) == 1


async def test_a_stream_cut_before_completed_is_an_unavailable_instance() -> None:
    cog = Cog()
    cog.answers = ["cut"]
    async for client in serve(cog):
        with pytest.raises(InstanceUnavailable, match="before the prediction completed"):
            await client.predict("p1", {}, ignore)
        assert (await client.predict("p2", {}, ignore)).status == "succeeded"


async def test_answers_that_are_not_streams() -> None:
    cog = Cog()
    cog.answers = ["409", "422", "500"]
    async for client in serve(cog):
        with pytest.raises(InstanceBusy):
            await client.predict("p1", {}, ignore)
        invalid = await client.predict("p2", {}, ignore)
        assert (invalid.status, invalid.error) == (
            "failed",
            "Input validation error: text is required",
        )
        broken = await client.predict("p3", {}, ignore)
        assert broken.status == "failed"
        assert str(broken.error).startswith("Instance error 500")
        assert (await client.predict("p4", {}, ignore)).output == "olleh"
        assert len(cog.peers) == 1, "each whole answer left its connection reusable"


async def test_a_pooled_connection_the_instance_closed_is_retried_once() -> None:
    cog = Cog()
    async for client in serve(cog):
        await client.predict("p1", {}, ignore)
        await back_in_pool(client)
        (conn,) = client.pool._idle
        assert conn.transport is not None
        conn.transport.abort()  # as if the instance had dropped the idle connection
        await asyncio.sleep(0.01)
        assert (await client.predict("p2", {}, ignore)).status == "succeeded"
        assert len(cog.peers) == 2


async def test_a_reader_that_leaves_early_closes_its_connection() -> None:
    """Cog cancels a prediction whose SSE reader goes away, so an abandoned stream is never
    handed to the next prediction."""
    cog = Cog()
    cog.answers = ["hang"]
    async for client in serve(cog):
        task = asyncio.create_task(client.predict("p1", {}, ignore))
        await asyncio.wait_for(cog.streaming.wait(), 5)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not client.pool._idle
        assert (await client.predict("p2", {}, ignore)).status == "succeeded"
        assert len(cog.peers) == 2


async def test_idle_connections_expire() -> None:
    cog = Cog()
    async for client in serve(cog):
        client.pool.keepalive_s = 0.05
        await client.predict("p1", {}, ignore)
        await back_in_pool(client)
        (conn,) = client.pool._idle
        await asyncio.sleep(0.1)
        await client.predict("p2", {}, ignore)
        assert conn.transport is not None
        assert conn.transport.is_closing()
        assert len(cog.peers) == 2


async def test_an_instance_that_is_not_listening_is_unavailable() -> None:
    async with aiohttp.ClientSession() as session:
        client = CogClient("http://127.0.0.1:9", session)
        with pytest.raises(InstanceUnavailable, match="connection to the instance failed"):
            await client.predict("p1", {}, ignore)
