"""A thin typed client for one Cog server's HTTP API, over a shared aiohttp session.

Predictions are dispatched as ``POST /predictions`` with ``Accept: text/event-stream``: one
exchange per prediction that carries every event (start, log, output, completed) as it happens,
on a pooled keep-alive connection. Cog writes each SSE event as its own small segment without
``TCP_NODELAY``, so on a reused connection (where Linux delays ACKs) every event after the first
would wait ~40 ms for our ACK; the client turns on ``TCP_QUICKACK`` as it reads. Why this
mechanism and this client: README, "Why SSE to the instance".
"""

import contextlib
import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

HEALTH_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 5.0


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


class CogClient:
    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url
        self.session = session

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
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S)
        headers = {"Accept": "text/event-stream", "Content-Type": "application/json"}
        body = json.dumps({"id": prediction_id, "input": input})
        answered = False
        for attempt in range(2):
            try:
                async with self.session.post(
                    f"{self.base_url}/predictions", data=body, headers=headers, timeout=timeout
                ) as resp:
                    answered = True
                    if resp.status == 409:
                        raise InstanceBusy(await resp.text())
                    if resp.status == 503:
                        raise InstanceUnavailable(await resp.text())
                    if resp.status == 422:
                        error = _validation_error(await resp.text())
                        return CogResult(status="failed", error=error)
                    if resp.status != 200:
                        text = await resp.text()
                        error = f"Instance error {resp.status}: {text}"
                        return CogResult(status="failed", error=error)
                    return await self._read_stream(resp, on_event)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                # A pooled connection the instance had closed fails before any answer: the
                # request never reached Cog, so it goes again once on a new connection.
                if answered or attempt:
                    raise _lost(exc) from exc
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                raise _lost(exc) from exc
        raise AssertionError("unreachable")

    async def _read_stream(self, resp: aiohttp.ClientResponse, on_event: EventHandler) -> CogResult:
        sock = _socket_of(resp)
        _quickack(sock)
        event = ""
        data: list[str] = []
        partial = b""
        async for chunk in resp.content.iter_any():  # whole chunks: no await per line
            *lines, partial = (partial + chunk).split(b"\n")
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
                payload = json.loads("\n".join(data)) if data else {}
                if event == "completed":
                    await resp.read()  # the end of the stream: the connection goes back to the pool
                    return CogResult.from_payload(payload)
                await on_event(event, payload)
                event, data = "", []
            _quickack(sock)
        raise InstanceUnavailable("the instance closed the stream before the prediction completed")

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


def _lost(exc: Exception) -> InstanceUnavailable:
    return InstanceUnavailable(f"connection to the instance failed: {exc!r}")


def _socket_of(resp: aiohttp.ClientResponse) -> Any:
    """The connection's socket (under uvloop a socket-like object with ``setsockopt``)."""
    connection = resp.connection
    transport = connection.transport if connection is not None else None
    return transport.get_extra_info("socket") if transport is not None else None


def _quickack(sock: Any) -> None:
    """ACK at once what arrives next (Linux only; the kernel drops the mode by itself)."""
    if sock is not None and hasattr(socket, "TCP_QUICKACK"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def _validation_error(text: str) -> str:
    try:
        detail = json.loads(text).get("detail", [])
        return "Input validation error: " + "; ".join(str(d.get("msg")) for d in detail)
    except (ValueError, AttributeError):
        return f"Input validation error: {text}"
