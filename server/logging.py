"""structlog set-up: events with keys, JSON when stderr is not a terminal, one line per request."""

import asyncio
import contextvars
import functools
import logging
import random
import re
import sys
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import jsoncodec

log = structlog.get_logger("server.http")

# Path segments that are secrets (file download and stream capabilities, the upload token).
SECRET_SEGMENT = re.compile(r"(/download/|/v1/uploads/|/v1/streams/[^/]+/)[^/]+")


def redact(path: str) -> str:
    return SECRET_SEGMENT.sub(r"\1***", path)


T = TypeVar("T")


def detached_task(coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
    """A task that outlives whatever started it (a pool's loops, a writer, an instance's log
    reader): it runs in an empty context, so its log lines do not carry the ``request_id`` (or
    ``prediction_id``) of the request that happened to create it."""
    return asyncio.create_task(coro, name=name, context=contextvars.Context())


def configure_logging(*, json: bool | None = None, level: str = "info") -> None:
    """Configure structlog and the stdlib root logger once, at process start."""
    as_json = (not sys.stderr.isatty()) if json is None else json
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(jsoncodec.log_dumps)
        if as_json
        else structlog.dev.ConsoleRenderer()
    )
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),  # one write per line
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=numeric, stream=sys.stderr, format="%(name)s %(message)s")


_ids = random.Random()  # request ids need to be unique, not secret: no system call per request


class RequestLogMiddleware:
    """Bind a request id for the request's logs and emit one canonical ``http_request`` line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"{_ids.getrandbits(64):016x}"
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            # Written on the loop's next turn, after the response: what the connection still
            # holds of it leaves by the end of this turn (server/httpserver.py), and a line
            # written now could go first and keep the client waiting for it. The callback runs
            # in a copy of this context, so the line still carries the request's bound keys.
            asyncio.get_running_loop().call_soon(
                functools.partial(
                    log.info,
                    "http_request",
                    method=scope["method"],
                    path=redact(scope["path"]),
                    status=status,
                    duration_ms=round((time.perf_counter() - start) * 1000, 2),
                )
            )
            structlog.contextvars.reset_contextvars(**tokens)
