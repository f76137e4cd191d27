"""The request log (``server.logging.RequestLogMiddleware``): one line per request, after it."""

import asyncio
from collections.abc import MutableMapping
from typing import Any

import pytest
import structlog

from server import logging as server_logging
from server.logging import RequestLogMiddleware

pytestmark = pytest.mark.anyio


async def test_the_request_line_is_written_after_the_response_leaves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The gateway's connections send what one loop turn wrote on the next turn; the request's
    log line must come after that send, not before it (the client would wait for the line), and
    still carry the request's id and what the request bound."""
    events: list[tuple[str, dict[str, Any]]] = []

    class Recorder:
        def info(self, event: str, **fields: Any) -> None:
            events.append((event, {**structlog.contextvars.get_contextvars(), **fields}))

    monkeypatch.setattr(server_logging, "log", Recorder())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        structlog.contextvars.bind_contextvars(prediction_id="p1")  # as the service does
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    headers: list[tuple[bytes, bytes]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers.extend(message["headers"])
        else:  # as CoalescingTransport does: the bytes leave on the next turn
            asyncio.get_running_loop().call_soon(events.append, ("response_sent", {}))

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/v1/predictions", "headers": []}
    await RequestLogMiddleware(app)(scope, receive, send)
    await asyncio.sleep(0)
    assert [event for event, _ in events] == ["response_sent", "http_request"]
    line = events[1][1]
    assert (line["status"], line["method"], line["prediction_id"]) == (201, "POST", "p1")
    assert headers == [(b"x-request-id", line["request_id"].encode())]
    assert "request_id" not in structlog.contextvars.get_contextvars()  # not left behind
