"""Webhook receivers for tests: one records what arrives and answers from a script; it sits
behind an ``httpx.MockTransport`` (API tier) or a real aiohttp server on loopback (integration)."""

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
import httpx
import replicate
from aiohttp import web
from replicate.webhook import WebhookSigningSecret

REDIRECT_TARGET = "/redirected-here"


@dataclass(frozen=True)
class Delivery:
    """One webhook request as it arrived."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    """time.monotonic() on arrival."""

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    def validate(self, secret: str, tolerance: int = 60) -> None:
        """Check the signature with the official client (raises if it does not verify)."""
        replicate.webhooks.validate(
            headers=self.headers,
            body=self.body.decode(),
            secret=WebhookSigningSecret(key=secret),
            tolerance=tolerance,
        )


class Receiver:
    """Records deliveries and answers the ``script`` of status codes first, then ``status``.
    Thread-safe: the loopback server runs on its own thread."""

    def __init__(self, script: Sequence[int] = (), status: int = 200) -> None:
        self.script = list(script)
        self.status = status
        self._deliveries: list[Delivery] = []
        self._changed = threading.Condition()

    @property
    def deliveries(self) -> list[Delivery]:
        with self._changed:
            return list(self._deliveries)

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self._changed:
            self._deliveries.append(
                Delivery(path, {k.lower(): v for k, v in headers.items()}, body, time.monotonic())
            )
            code = self.script.pop(0) if self.script else self.status
            self._changed.notify_all()
        return code

    def wait_for(
        self, check: Callable[[list[Delivery]], bool], timeout: float = 15.0
    ) -> list[Delivery]:
        """Block until ``check(deliveries)`` holds; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not check(list(self._deliveries)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"webhooks never matched; got {self._summary()}")
                self._changed.wait(left)
            return list(self._deliveries)

    async def wait(
        self, check: Callable[[list[Delivery]], bool], timeout: float = 15.0
    ) -> list[Delivery]:
        """``wait_for`` without blocking the event loop."""
        return await anyio.to_thread.run_sync(partial(self.wait_for, check, timeout))

    def _summary(self) -> list[tuple[str, Any]]:
        return [(d.path, d.json().get("status")) for d in self._deliveries]

    def transport(self) -> httpx.MockTransport:
        """An httpx transport that hands every request to this receiver (no sockets)."""

        def handle(request: httpx.Request) -> httpx.Response:
            code = self.answer(request.url.path, dict(request.headers), request.content)
            return httpx.Response(code, headers=_redirect(code))

        return httpx.MockTransport(handle)


def _redirect(code: int) -> dict[str, str]:
    return {"location": REDIRECT_TARGET} if 300 <= code < 400 else {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def loopback_server(receiver: Receiver) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 (aiohttp, on its own thread and loop) feeding
    ``receiver``; yields its base URL."""

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        code = receiver.answer(request.path, dict(request.headers), body)
        return web.Response(status=code, headers=_redirect(code))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    port = free_port()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="webhook-receiver", daemon=True)
    thread.start()

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    try:
        asyncio.run_coroutine_threadsafe(start(), loop).result(10)
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
