"""uvicorn's httptools protocol, with each connection's writes of one loop turn sent together.

uvicorn writes a response's status line and headers, then its body, as two ``transport.write``
calls, and uvloop sends each at once: two system calls and two TCP segments for every answer,
and a client that wakes twice to read them. ``CoalescingTransport`` keeps what is written
during one turn of the event loop and sends it as one write at the end of that turn (a
``call_soon``), so a JSON answer leaves as one segment. Nothing waits longer than the turn:
a streamed answer's chunks still leave as they are written. A complete answer does not wait
for the turn to end: it leaves as soon as uvicorn reports it complete. Measured: README,
"Gateway figures".
"""

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """Stands in for a connection's transport; ``write`` is deferred to the end of the loop
    turn, everything else goes straight to the real transport (``close`` sends what is held
    first)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(bytes(data))

    def flush(self) -> None:
        if not self._held:
            return
        data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GatewayHttpProtocol(HttpToolsProtocol):
    """What ``cogway serve`` gives uvicorn as its HTTP protocol."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        real = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._coalescing = CoalescingTransport(real)
        super().connection_made(cast(asyncio.Transport, self._coalescing))

    def on_response_complete(self) -> None:
        self._coalescing.flush()  # the whole answer is held: send it now, not after the turn
        super().on_response_complete()
