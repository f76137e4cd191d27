"""A small HTTP/1.1 client for the one hot request to Cog: ``POST /predictions`` with its SSE
answer read as it arrives, on pooled keep-alive connections.

Each connection is an ``asyncio.Protocol`` whose bytes go straight into ``httptools`` (the
parser uvicorn uses; it undoes chunked encoding): no stream reader, no per-request timer, no
header multidict. A reader wakes once per batch of bytes the socket delivered. What it costs
against aiohttp, and why a second client: README, "Why SSE to the instance". Health checks,
cancels and shutdowns stay on aiohttp (``cog_client.py``).

Cog writes each SSE event as its own small segment without ``TCP_NODELAY``; on a reused
connection Linux would delay our ACK and Cog's next event would wait ~40 ms for it, so every
read turns ``TCP_QUICKACK`` back on (the kernel drops it by itself).

A connection goes back to the pool only after its whole answer has been read; one the reader
left early (an error, a cancelled task) is closed. Idle connections are closed after
``keepalive_s`` (checked whenever the pool is used) and when the client closes.
"""

import asyncio
import contextlib
import os
import socket
from collections import deque
from typing import cast
from urllib.parse import urlsplit

import httptools

CONNECT_TIMEOUT_S = 5.0


class ConnectionLost(Exception):
    """The connection closed, or the answer was not HTTP, before the answer was complete."""

    def __init__(self, message: str, *, answered: bool) -> None:
        super().__init__(message)
        self.answered = answered
        """Whether any byte of the answer had arrived (the request surely reached Cog)."""


class Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, pool: "ConnectionPool") -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.sock: socket.socket | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers_done = False
        self.complete = False
        self.keep_alive = True
        self.body: list[bytes] = []
        self.answered = False
        self.lost: str | None = None
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._release_when_complete = False

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        # Our own socket object on a duplicate descriptor, for quickack(): uvloop's stand-in
        # builds a socket object (and asks the kernel its name) on every setsockopt.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.sock = socket.socket(fileno=os.dup(sock.fileno()))

    def data_received(self, data: bytes) -> None:
        self.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._lose(f"the answer was not valid HTTP ({exc})")
            return
        if not self.complete:  # more is coming: ACK at once (nothing is after the last bytes)
            quickack(self.sock)
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.sock is not None:  # the duplicate kept the connection open until now
            self.sock.close()
            self.sock = None
        if self.lost is None:
            self.lost = f"the connection failed ({exc!r})" if exc else "the instance closed it"
        self.pool.forget(self)
        self._wake()

    # -- httptools callbacks -----------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True
        if self._release_when_complete:
            self.pool.release(self)

    # -- the reader's side -------------------------------------------------------------------

    def send(self, request: bytes) -> None:
        assert self.transport is not None
        self.parser = httptools.HttpResponseParser(self)
        self.status, self.headers_done, self.complete = 0, False, False
        self.body, self.answered, self._release_when_complete = [], False, False
        self.transport.write(request)

    async def wait(self) -> None:
        """Until more of the answer has arrived (or the connection is lost)."""
        if self.lost is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.lost is not None and not self.complete:
            raise ConnectionLost(self.lost, answered=self.answered)

    def take_body(self) -> bytes:
        """The body bytes that arrived since the last call."""
        body = b"".join(self.body)
        self.body.clear()
        return body

    async def read_all(self) -> bytes:
        """The rest of the answer's body (for answers that are not streams)."""
        chunks = []
        while True:
            chunks.append(self.take_body())
            if self.complete:
                return b"".join(chunks)
            await self.wait()

    def done(self) -> None:
        """The reader has what it needs: back to the pool once the answer is complete, and
        closed if it never will be."""
        if self.complete:
            self.pool.release(self)
        elif self.lost is None:
            self._release_when_complete = True

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _lose(self, reason: str) -> None:
        self.lost = reason
        self.close()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class ConnectionPool:
    """Keep-alive connections to one ``http://host:port``."""

    def __init__(self, base_url: str, *, keepalive_s: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"an instance URL must be http://host:port, not {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.host_header = parts.netloc
        self.prefix = parts.path.rstrip("/")
        self.keepalive_s = keepalive_s
        self._idle: deque[Connection] = deque()
        self._all: set[Connection] = set()

    async def acquire(self) -> tuple[Connection, bool]:
        """A connection and whether it was reused from the pool."""
        loop = asyncio.get_running_loop()
        self._expire(loop.time())
        while self._idle:
            conn = self._idle.pop()  # the most recently used: the least likely to be stale
            if conn.lost is None and conn.transport is not None and not conn.transport.is_closing():
                return conn, True
        _, protocol = await asyncio.wait_for(
            loop.create_connection(lambda: Connection(self), self.host, self.port),
            CONNECT_TIMEOUT_S,
        )
        self._all.add(protocol)
        return protocol, False

    def release(self, conn: Connection) -> None:
        if conn.keep_alive and conn.lost is None and conn in self._all:
            conn.idle_since = asyncio.get_running_loop().time()
            self._idle.append(conn)
        else:
            conn.close()

    def forget(self, conn: Connection) -> None:
        self._all.discard(conn)
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)

    def _expire(self, now: float) -> None:
        while self._idle and now - self._idle[0].idle_since > self.keepalive_s:
            self._idle.popleft().close()

    def close(self) -> None:
        for conn in list(self._all):
            conn.close()
        self._idle.clear()

    def request(self, method: str, path: str, body: bytes, headers: str) -> bytes:
        return (
            f"{method} {self.prefix}{path} HTTP/1.1\r\nHost: {self.host_header}\r\n{headers}"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body


def quickack(sock: socket.socket | None) -> None:
    """ACK at once what arrives next (Linux only; the kernel drops the mode by itself)."""
    if sock is not None and hasattr(socket, "TCP_QUICKACK"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
