"""``CogClient`` reads Cog's SSE stream however it is cut into TCP chunks, and hands the
connection back to the pool (a loopback aiohttp server stands in for Cog's framing)."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from server.runtime.cog_client import CogClient, InstanceUnavailable

pytestmark = pytest.mark.anyio

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


async def serve(chunk_size: int, newline: str, *, cut: bool = False) -> AsyncIterator[str]:
    async def predictions(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        body = sse_bytes(newline)
        if cut:
            body = body[: body.index(b"event: completed")]
        for i in range(0, len(body), chunk_size):
            await resp.write(body[i : i + chunk_size])
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/predictions", predictions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 100_000])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
async def test_events_arrive_whole_whatever_the_chunks(chunk_size: int, newline: str) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    async def on_event(name: str, payload: dict[str, Any]) -> None:
        seen.append((name, payload))

    async for base in serve(chunk_size, newline):
        async with aiohttp.ClientSession() as session:
            client = CogClient(base, session)
            first = await client.predict("p1", {"text": "hello"}, on_event)
            second = await client.predict("p2", {"text": "hello"}, on_event)
            connector = session.connector
            assert connector is not None
            # Both streams were read to their end, so one pooled connection served both.
            assert sum(len(c) for c in connector._conns.values()) == 1
        assert (first.status, first.output, first.metrics) == ("succeeded", "olleh", {"x": 1})
        assert second.output == "olleh"
        assert seen[:3] == EVENTS[:3]
        assert seen[3:] == EVENTS[:3]


async def test_a_stream_cut_before_completed_is_an_unavailable_instance() -> None:
    async for base in serve(16, "\n", cut=True):
        async with aiohttp.ClientSession() as session:
            client = CogClient(base, session)

            async def ignore(name: str, payload: dict[str, Any]) -> None:
                return None

            with pytest.raises(InstanceUnavailable, match="before the prediction completed"):
                await client.predict("p1", {}, ignore)
