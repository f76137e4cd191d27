"""The floor under the gateway: a bare pass-through to the same Cog instance.

A raw ASGI app under the gateway's own HTTP stack (uvicorn with uvloop, httptools and
``server.httpserver.GatewayHttpProtocol``, the collector tuned by ``quiet_gc``) that sends each
``POST /`` body's ``input`` to Cog through the gateway's own client
(``server.runtime.cog_client.CogClient``: SSE, pooled keep-alive connections, quick ACKs) and
answers 201 with the result's ``status`` and ``output`` (or 409 when Cog does). No accounts,
validation, queue, state, writes, usage records or listeners: what is left of the gateway when
its work is taken away. ``make bench`` runs it beside the gateway as its ``hop`` mode
(``bench/gateway.py``), so the one-client figure can be read against the hop itself, measured in
the same minutes.

Run (from the repository root)::

    .venv/bin/python bench/passthrough.py PORT COG_PORT
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import uvicorn

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from measure import stop_process  # noqa: E402  (bench/measure.py)

from server import jsoncodec  # noqa: E402
from server.cli.serve import quiet_gc  # noqa: E402
from server.httpserver import GatewayHttpProtocol  # noqa: E402
from server.runtime.cog_client import CogClient, InstanceBusy  # noqa: E402

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0


def make_app(cog_port: int) -> Any:
    ids = itertools.count()
    client: CogClient | None = None

    async def ignore(event: str, payload: dict[str, Any]) -> None:
        return None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal client
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if client is None:
            client = CogClient(f"http://{HOST}:{cog_port}", aiohttp.ClientSession())
        prediction_id = f"hop{os.getpid()}x{next(ids)}"
        try:
            result = await client.predict(prediction_id, jsoncodec.loads(body)["input"], ignore)
        except InstanceBusy:  # Cog's own 409 (no slot accounting here): passed on as it is
            status, answer = 409, b'{"detail":"At capacity"}'
        else:
            status = 201
            answer = jsoncodec.dumpb({"status": result.status, "output": result.output})
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    return app


@contextlib.contextmanager
def run_passthrough(port: int, cog_port: int) -> Iterator[str]:
    """Serve the pass-through on ``port`` in a subprocess; its URL until the block ends."""
    script = Path(__file__).resolve()
    proc = subprocess.Popen(
        [sys.executable, str(script), str(port), str(cog_port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the pass-through exited with {proc.returncode}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.5):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the pass-through did not listen within {START_TIMEOUT_S}s")
            time.sleep(0.05)
        yield f"http://{HOST}:{port}/"
    finally:
        stop_process(proc)


def main() -> None:
    port, cog_port = int(sys.argv[1]), int(sys.argv[2])
    app = make_app(cog_port)
    quiet_gc()
    uvicorn.run(
        app,
        host=HOST,
        port=port,
        log_level="warning",
        access_log=False,
        http=GatewayHttpProtocol,
    )


if __name__ == "__main__":
    main()
