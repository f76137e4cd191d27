"""A thin typed client for one Cog server's HTTP API.

Predictions are dispatched as ``POST /predictions`` with ``Accept: text/event-stream``: one
exchange per prediction that carries every event (start, log, output, completed) as it happens,
on a pooled keep-alive connection of ``cog_http.ConnectionPool`` (quick ACKs, see there).
Health checks, cancels and shutdowns use a shared aiohttp session. Why this mechanism and these
clients: README, "Why SSE to the instance" and "Why a small HTTP client of our own".
"""

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from server import jsoncodec
from server.runtime.cog_http import Connection, ConnectionLost, ConnectionPool

HEALTH_TIMEOUT_S = 2.0
KEEPALIVE_S = 10.0
"""An idle pooled connection to an instance is closed after this (Cog never closes one)."""
PREDICT_HEADERS = "Accept: text/event-stream\r\nContent-Type: application/json\r\n"


@dataclass
class CogResult:
    """The terminal state Cog reported for one prediction."""

    status: str
    output: Any = None
    logs: str = ""
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "CogResult":
        return cls(
            status=str(payload.get("status", "failed")),
            output=payload.get("output"),
            logs=str(payload.get("logs") or ""),
            error=payload.get("error"),
            metrics=dict(payload.get("metrics") or {}),
        )


class InstanceBusy(Exception):
    """Cog answered 409: every slot was taken."""


class InstanceUnavailable(Exception):
    """Cog could not take the prediction (not ready, connection lost, stream cut short)."""


EventHandler = Callable[[str, dict[str, Any]], Awaitable[None]]


class InstanceAPI(Protocol):
    """What the scheduler needs from a running instance (``CogClient``; fakes in tests)."""

    async def health(self) -> dict[str, Any]: ...

    async def predict(
        self, prediction_id: str, input: dict[str, Any], on_event: EventHandler
    ) -> CogResult: ...

    async def cancel(self, prediction_id: str) -> bool: ...

    async def shutdown(self) -> None: ...

    def close(self) -> None: ...


class CogClient:
    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url
        self.session = session
        self.pool = ConnectionPool(base_url, keepalive_s=KEEPALIVE_S)

    async def health(self) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=HEALTH_TIMEOUT_S)
        async with self.session.get(f"{self.base_url}/health-check", timeout=timeout) as resp:
            body: dict[str, Any] = await resp.json(content_type=None)
            return body

    async def predict(
        self,
        prediction_id: str,
        input: dict[str, Any],
        on_event: EventHandler,
    ) -> CogResult:
        """Run one prediction, calling ``on_event`` for start/log/output; return the result."""
        body = jsoncodec.dumpb({"id": prediction_id, "input": input})
        request = self.pool.request("POST", "/predictions", body, PREDICT_HEADERS)
        for attempt in range(2):
            conn, reused = await self._connect()
            try:
                conn.send(request)
                while not conn.headers_done:
                    await conn.wait()
                return await self._answer(conn, on_event)
            except ConnectionLost as exc:
                # A pooled connection the instance had closed fails before any answer: the
                # request never reached Cog, so it goes again once on a new connection.
                if exc.answered or not reused or attempt:
                    raise InstanceUnavailable(f"connection to the instance failed: {exc}") from exc
            finally:
                conn.done()
        raise AssertionError("unreachable")

    async def _connect(self) -> tuple[Connection, bool]:
        try:
            return await self.pool.acquire()
        except (OSError, TimeoutError) as exc:
            raise InstanceUnavailable(f"connection to the instance failed: {exc!r}") from exc

    async def _answer(self, conn: Connection, on_event: EventHandler) -> CogResult:
        if conn.status == 200:
            return await self._read_stream(conn, on_event)
        text = (await conn.read_all()).decode(errors="replace")
        if conn.status == 409:
            raise InstanceBusy(text)
        if conn.status == 503:
            raise InstanceUnavailable(text)
        if conn.status == 422:
            return CogResult(status="failed", error=_validation_error(text))
        return CogResult(status="failed", error=f"Instance error {conn.status}: {text}")

    async def _read_stream(self, conn: Connection, on_event: EventHandler) -> CogResult:
        event = ""
        data: list[str] = []
        partial = b""
        while True:
            *lines, partial = (partial + conn.take_body()).split(b"\n")
            for raw in lines:
                line = raw.decode().rstrip("\r")
                if line:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "event":
                        event = value
                    elif name == "data":
                        data.append(value)
                    continue
                if not event:
                    data.clear()
                    continue
                payload = jsoncodec.loads("\n".join(data)) if data else {}
                if event == "completed":
                    return CogResult.from_payload(payload)
                await on_event(event, payload)
                event, data = "", []
            if conn.complete:
                raise InstanceUnavailable(
                    "the instance closed the stream before the prediction completed"
                )
            await conn.wait()

    async def cancel(self, prediction_id: str) -> bool:
        """Ask Cog to cancel; False when it no longer knows the prediction."""
        timeout = aiohttp.ClientTimeout(total=HEALTH_TIMEOUT_S)
        url = f"{self.base_url}/predictions/{prediction_id}/cancel"
        try:
            async with self.session.post(url, timeout=timeout) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def shutdown(self) -> None:
        timeout = aiohttp.ClientTimeout(total=HEALTH_TIMEOUT_S)
        try:
            async with self.session.post(f"{self.base_url}/shutdown", timeout=timeout):
                pass
        except (aiohttp.ClientError, TimeoutError):
            pass

    def close(self) -> None:
        """Close the pooled prediction connections (the instance is going away)."""
        self.pool.close()


def _validation_error(text: str) -> str:
    try:
        detail = json.loads(text).get("detail", [])
        return "Input validation error: " + "; ".join(str(d.get("msg")) for d in detail)
    except (ValueError, AttributeError):
        return f"Input validation error: {text}"
