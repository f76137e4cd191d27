"""Cost of each way a gateway can dispatch a prediction to a Cog 0.23.1 instance.

What it measures
----------------
One real Cog server (``cog==0.23.1``, i.e. coglet) runs on 127.0.0.1 with a trivial
``async def predict`` (reverse a string) and ``COG_MAX_CONCURRENCY=32``. From this one
asyncio process (standing in for the gateway) predictions are dispatched in three ways:

(a) ``sync``    plain ``POST /predictions``; one exchange, only the final result
                (intermediate start/log/output events are lost; this is the baseline and,
                with aiohttp, the "Cog-direct" reference).
(b) ``sse``     ``POST /predictions`` with ``Accept: text/event-stream``; the SSE stream
                (start, log, output, ..., completed) is read and parsed until it ends.
                ``sse-fresh`` is the same over a new TCP connection per prediction
                (see the note on MECHANISMS about coglet and delayed ACKs);
                ``sse-quickack`` (aiohttp only) reuses connections and turns on
                ``TCP_QUICKACK`` as it reads, as the gateway's client does.
(c) ``webhook`` ``POST /predictions`` with ``Prefer: respond-async`` and a ``webhook`` URL
                served by an aiohttp web server inside this process; a prediction is done
                when its terminal webhook (succeeded/failed/canceled) arrives.

Each mechanism is driven by ``aiohttp.ClientSession`` and by ``httpx.AsyncClient`` (both
keep-alive), with 1 and with 16 asyncio tasks looping for a fixed window (no warm-up phase;
one functional probe per mechanism runs before the measurements). Every prediction has a
unique ``id``. For each cell the script reports completed predictions/s, the ratio to
Cog-direct (``sync`` + aiohttp at the same concurrency), p50/p99 latency (request sent ->
final result known to the gateway), CPU milliseconds per prediction spent by this process
(the "gateway", webhook receiver included) and by the Cog process group, the number of
events the gateway had received per prediction when it completed, and any errors
(for webhooks also how many arrived after the terminal one and how many TCP connections
Cog opened to deliver them).
The Cog-direct cell is measured again at the end of each concurrency block as a drift check.

Setup is automatic and idempotent: a venv with ``cog==0.23.1`` and the predictor (with its
``.cog/openapi_schema.json``, ``x-cog-streaming`` on) live under ``.cache/bench/`` (gitignored).
The Cog process group is always killed at exit.

Run (from the repository root)::

    .venv/bin/python bench/dispatch_mechanisms.py [--duration 4] [--concurrency 1,16]

Figures are noisy on a small shared machine: compare ratios within one run, and run it
more than once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import httpx
from aiohttp import web
from cogserver import (
    COG_MAX_CONCURRENCY,
    COG_VERSION,
    HOST,
    CogServer,
    ensure_cog_venv,
    lean_ca_env,
    start_cog,
    write_predictor,
)
from measure import percentile_ms

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE_DIR = REPO_ROOT / ".cache" / "bench"
REQUEST_TIMEOUT_S = 10.0
SETTLE_S = 0.3
INPUT_TEXT = "hello"
EXPECTED_OUTPUT = INPUT_TEXT[::-1]
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})
JSON_HEADERS = {"Content-Type": "application/json"}
FIRST_ERROR_BODIES: dict[int, str] = {}  # first body seen per unexpected HTTP status

# --------------------------------------------------------------------------- clients


class StatusError(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.status = status


class BenchError(Exception):
    """A response arrived but was not what the protocol promised."""


@dataclass
class SseEvent:
    event: str
    data: str


async def parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[SseEvent]:
    """Minimal text/event-stream parser: ``event:``/``data:`` fields, blank line dispatches."""
    event = "message"
    data: list[str] = []
    async for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield SseEvent(event, "\n".join(data))
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue  # comment / keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data:
        yield SseEvent(event, "\n".join(data))


class BenchClient(Protocol):
    name: str

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]: ...

    def sse(self, url: str, body: bytes, headers: dict[str, str]) -> AsyncIterator[SseEvent]: ...

    async def close(self) -> None: ...


class AiohttpClient:
    name = "aiohttp"

    def __init__(self, pool_size: int, keepalive: bool = True, quickack: bool = False) -> None:
        self.quickack = quickack
        connector = (
            aiohttp.TCPConnector(limit=pool_size, keepalive_timeout=30)
            if keepalive
            else aiohttp.TCPConnector(limit=pool_size, force_close=True)
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
        )

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        async with self._session.post(url, data=body, headers=headers) as resp:
            return resp.status, await resp.read()

    async def sse(self, url: str, body: bytes, headers: dict[str, str]) -> AsyncIterator[SseEvent]:
        async with self._session.post(url, data=body, headers=headers) as resp:
            if resp.status != 200:
                raise StatusError(resp.status, await resp.read())

            conn = resp.connection
            transport = conn.transport if conn is not None else None
            sock = transport.get_extra_info("socket") if transport is not None else None

            def quickack() -> None:
                if self.quickack and sock is not None:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

            async def lines() -> AsyncIterator[str]:
                quickack()
                async for raw in resp.content:
                    quickack()
                    yield raw.decode()

            async for event in parse_sse(lines()):
                yield event

    async def close(self) -> None:
        await self._session.close()


class HttpxClient:
    name = "httpx"

    def __init__(self, pool_size: int, keepalive: bool = True) -> None:
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=pool_size,
                max_keepalive_connections=pool_size if keepalive else 0,
                keepalive_expiry=30,
            ),
            timeout=REQUEST_TIMEOUT_S,
            trust_env=False,  # never route loopback traffic through an env-configured proxy
        )

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        resp = await self._client.post(url, content=body, headers=headers)
        return resp.status_code, resp.content

    async def sse(self, url: str, body: bytes, headers: dict[str, str]) -> AsyncIterator[SseEvent]:
        async with self._client.stream("POST", url, content=body, headers=headers) as resp:
            if resp.status_code != 200:
                raise StatusError(resp.status_code, await resp.aread())
            async for event in parse_sse(resp.aiter_lines()):
                yield event

    async def close(self) -> None:
        await self._client.aclose()


CLIENTS: dict[str, Callable[[int, bool], BenchClient]] = {
    "aiohttp": AiohttpClient,
    "httpx": HttpxClient,
}


# --------------------------------------------------------------------------- webhook sink


@dataclass
class WebhookSink:
    """In-process webhook receiver: resolves one future per prediction on its terminal webhook."""

    pending: dict[str, asyncio.Future[tuple[dict[str, Any], list[str]]]] = field(
        default_factory=dict
    )
    kinds: dict[str, list[str]] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    received: int = 0
    late: int = 0  # arrived after that prediction's terminal webhook
    late_terminal: int = 0  # a second terminal webhook (retry / duplicate)
    unknown: int = 0
    peers: set[tuple[str, int]] = field(default_factory=set)  # webhook TCP connections seen
    traced: dict[str, list[tuple[float, dict[str, Any]]]] = field(default_factory=dict)
    port: int = 0

    def url(self, pid: str) -> str:
        return f"http://{HOST}:{self.port}/hook/{pid}"

    def expect(self, pid: str) -> asyncio.Future[tuple[dict[str, Any], list[str]]]:
        fut: asyncio.Future[tuple[dict[str, Any], list[str]]] = (
            asyncio.get_running_loop().create_future()
        )
        self.pending[pid] = fut
        self.kinds[pid] = []
        return fut

    def forget(self, pid: str) -> None:
        self.pending.pop(pid, None)
        self.kinds.pop(pid, None)

    def reset_counters(self) -> None:
        self.finished.clear()
        self.peers.clear()
        self.received = self.late = self.late_terminal = self.unknown = 0

    async def handle(self, request: web.Request) -> web.Response:
        pid = request.match_info["pid"]
        payload: dict[str, Any] = json.loads(await request.read())
        self.received += 1
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer is not None:
            self.peers.add((str(peer[0]), int(peer[1])))
        if pid in self.traced:
            self.traced[pid].append((time.perf_counter(), payload))
        status = payload.get("status")
        terminal = status in TERMINAL_STATUSES
        fut = self.pending.get(pid)
        if fut is None:
            if pid in self.finished:
                self.late += 1
                self.late_terminal += int(terminal)
            else:
                self.unknown += 1
            return web.Response(status=200)
        kind = "terminal" if terminal else ("output" if payload.get("output") else "start")
        self.kinds[pid].append(kind)
        if terminal:
            self.finished.add(pid)
            kinds = self.kinds.pop(pid)
            del self.pending[pid]
            if not fut.done():
                fut.set_result((payload, kinds))
        return web.Response(status=200)


# --------------------------------------------------------------------------- mechanisms


@dataclass
class Outcome:
    events: int  # events the gateway held when the prediction was known to be finished
    note: str | None = None
    ack_at: float | None = None  # perf_counter() when the 202 arrived (webhook mechanism)


def check_final(payload: dict[str, Any]) -> None:
    if payload.get("status") != "succeeded" or payload.get("output") != EXPECTED_OUTPUT:
        raise BenchError(f"unexpected final payload {payload!r}"[:200])


def request_body(pid: str, webhook: str | None = None) -> bytes:
    body: dict[str, Any] = {"id": pid, "input": {"text": INPUT_TEXT}}
    if webhook is not None:
        body["webhook"] = webhook
    return json.dumps(body).encode()


Mechanism = Callable[[BenchClient, str, str, WebhookSink], Awaitable[Outcome]]


async def mech_sync(client: BenchClient, base: str, pid: str, sink: WebhookSink) -> Outcome:
    status, raw = await client.post(f"{base}/predictions", request_body(pid), JSON_HEADERS)
    if status != 200:
        raise StatusError(status, raw)
    check_final(json.loads(raw))
    return Outcome(events=1)


async def mech_sse(client: BenchClient, base: str, pid: str, sink: WebhookSink) -> Outcome:
    headers = {**JSON_HEADERS, "Accept": "text/event-stream"}
    names: list[str] = []
    final: dict[str, Any] | None = None
    async for ev in client.sse(f"{base}/predictions", request_body(pid), headers):
        names.append(ev.event)
        if ev.event == "completed":
            final = json.loads(ev.data)
    if final is None:
        raise BenchError(f"SSE stream ended without completed: {names}")
    check_final(final)
    note = None
    if names[0] != "start" or names[-1] != "completed" or "output" not in names:
        note = "sse:" + ",".join(names)
    return Outcome(events=len(names), note=note)


async def mech_webhook(client: BenchClient, base: str, pid: str, sink: WebhookSink) -> Outcome:
    fut = sink.expect(pid)  # registered before the POST: the webhook may beat the 202
    try:
        headers = {**JSON_HEADERS, "Prefer": "respond-async"}
        status, raw = await client.post(
            f"{base}/predictions", request_body(pid, sink.url(pid)), headers
        )
        if status != 202:
            raise StatusError(status, raw)
        ack_at = time.perf_counter()
        payload, kinds = await fut
    finally:
        sink.forget(pid)
    check_final(payload)
    note = None if kinds == ["start", "output", "terminal"] else "wh:" + ",".join(kinds)
    return Outcome(events=len(kinds), note=note, ack_at=ack_at)


# name -> (mechanism, keep-alive connections?)
MECHANISMS: dict[str, tuple[Mechanism, bool]] = {
    "sync": (mech_sync, True),
    "sse": (mech_sse, True),
    # Same as "sse" but a new TCP connection per prediction: coglet does not set TCP_NODELAY,
    # so on a reused connection the SSE chunks after the headers wait for the client's
    # delayed ACK (~40 ms on Linux); a fresh connection is still in quick-ACK mode.
    "sse-fresh": (mech_sse, False),
    # Reused connections with TCP_QUICKACK turned on as the stream is read (what the gateway's
    # CogClient does): the ACKs go out at once, so Cog's next chunk is not held back.
    "sse-quickack": (mech_sse, True),
    "webhook": (mech_webhook, True),
}
QUICKACK = frozenset({"sse-quickack"})  # aiohttp only


# --------------------------------------------------------------------------- measurement


@dataclass
class CellResult:
    mechanism: str
    client: str
    concurrency: int
    latencies_s: list[float]
    elapsed_s: float
    events: int
    gw_cpu_s: float
    cog_cpu_s: float
    errors: Counter[str]
    notes: Counter[str]
    late_webhooks: int = 0
    webhook_conns: int = 0
    ack_latencies_s: list[float] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.latencies_s)

    @property
    def rps(self) -> float:
        return self.n / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile_ms(self, pct: float) -> float:
        return percentile_ms(self.latencies_s, pct)


async def run_cell(
    cog: CogServer,
    sink: WebhookSink,
    label: str,
    mechanism: str,
    client_name: str,
    concurrency: int,
    duration_s: float,
    run_tag: str,
) -> CellResult:
    mech, keepalive = MECHANISMS[mechanism]
    client = (
        AiohttpClient(max(concurrency, 4), keepalive, quickack=True)
        if mechanism in QUICKACK
        else CLIENTS[client_name](max(concurrency, 4), keepalive)
    )
    latencies: list[float] = []
    acks: list[float] = []
    errors: Counter[str] = Counter()
    notes: Counter[str] = Counter()
    events = 0
    prefix = f"{run_tag}-{label}-{client_name}-c{concurrency}"
    sink.reset_counters()

    async def loop(worker: int, stop_at: float) -> None:
        nonlocal events
        seq = 0
        while time.perf_counter() < stop_at:
            pid = f"{prefix}-{worker}-{seq}"
            seq += 1
            t0 = time.perf_counter()
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    outcome = await mech(client, cog.base_url, pid, sink)
            except StatusError as exc:
                errors[f"HTTP {exc.status}"] += 1
                FIRST_ERROR_BODIES.setdefault(exc.status, str(exc))
                continue
            except TimeoutError:
                errors["timeout"] += 1
                continue
            except (BenchError, aiohttp.ClientError, httpx.HTTPError) as exc:
                errors[type(exc).__name__] += 1
                continue
            latencies.append(time.perf_counter() - t0)
            if outcome.ack_at is not None:
                acks.append(outcome.ack_at - t0)
            events += outcome.events
            if outcome.note:
                notes[outcome.note] += 1

    try:
        cpu_gw0, cpu_cog0 = time.process_time(), cog.cpu_seconds()
        t_start = time.perf_counter()
        stop_at = t_start + duration_s
        await asyncio.gather(*(loop(i, stop_at) for i in range(concurrency)))
        elapsed = time.perf_counter() - t_start
        await asyncio.sleep(SETTLE_S)  # let stray (late) webhooks land before counting them
        cpu_gw = time.process_time() - cpu_gw0
        cpu_cog = cog.cpu_seconds() - cpu_cog0
    finally:
        await client.close()
    return CellResult(
        mechanism=label,
        client=client_name,
        concurrency=concurrency,
        latencies_s=latencies,
        elapsed_s=elapsed,
        events=events,
        gw_cpu_s=cpu_gw,
        cog_cpu_s=cpu_cog,
        errors=errors,
        notes=notes,
        late_webhooks=sink.late,
        webhook_conns=len(sink.peers),
        ack_latencies_s=acks,
    )


async def probe_protocol(cog: CogServer, sink: WebhookSink, run_tag: str) -> None:
    """One prediction per mechanism, printing what Cog actually sends (and warming nothing else)."""
    client = AiohttpClient(4)
    base = cog.base_url
    try:
        pid = f"{run_tag}-probe-sync"
        status, raw = await client.post(f"{base}/predictions", request_body(pid), JSON_HEADERS)
        print(f"  sync     -> {status} {raw.decode()}")

        headers = {**JSON_HEADERS, "Accept": "text/event-stream"}
        for attempt in (1, 2):  # the 2nd reuses the keep-alive connection
            pid = f"{run_tag}-probe-sse-{attempt}"
            t0 = time.perf_counter()
            async for ev in client.sse(f"{base}/predictions", request_body(pid), headers):
                t_ms = (time.perf_counter() - t0) * 1000
                print(f"  sse #{attempt}   -> at {t_ms:6.2f} ms event={ev.event} data={ev.data}")
            t_ms = (time.perf_counter() - t0) * 1000
            print(f"  sse #{attempt}   -> stream closed at {t_ms:6.2f} ms")

        pid = f"{run_tag}-probe-webhook"
        sink.traced[pid] = []
        fut = sink.expect(pid)
        t0 = time.perf_counter()
        status, raw = await client.post(
            f"{base}/predictions",
            request_body(pid, sink.url(pid)),
            {**JSON_HEADERS, "Prefer": "respond-async"},
        )
        t_resp = time.perf_counter() - t0
        print(f"  webhook  -> {status} {raw.decode()} at {t_resp * 1000:.2f} ms")
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            await fut
        sink.forget(pid)
        await asyncio.sleep(SETTLE_S)
        for t, payload in sink.traced.pop(pid):
            print(f"  webhook  <- at {(t - t0) * 1000:.2f} ms {json.dumps(payload)}")

        status, raw = await client.post(
            f"{base}/predictions",
            request_body(f"{run_tag}-probe-ct"),
            {"Content-Type": "text/plain"},
        )
        print(f"  sync, Content-Type text/plain -> {status} {raw.decode()[:80]}")
    finally:
        await client.close()


def fmt_table(results: list[CellResult]) -> str:
    direct: dict[int, float] = {}
    for r in results:
        if r.mechanism == "sync" and r.client == "aiohttp" and r.concurrency not in direct:
            direct[r.concurrency] = r.rps
    header = (
        f"{'mechanism':<16}{'client':<9}{'conc':>5}{'n':>7}{'req/s':>9}{'x direct':>10}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'gw cpu':>9}{'cog cpu':>9}{'ev/pred':>9}  notes"
    )
    sub = (
        f"{'':<16}{'':<9}{'':>5}{'':>7}{'':>9}{'':>10}{'':>9}{'':>9}"
        f"{'ms/pred':>9}{'ms/pred':>9}{'':>9}"
    )
    lines = [header, sub, "-" * len(header)]
    seen_direct: set[int] = set()
    for r in results:
        label = r.mechanism
        if r.mechanism == "sync" and r.client == "aiohttp":
            label = "sync (direct)" if r.concurrency not in seen_direct else "sync (re-run)"
            seen_direct.add(r.concurrency)
        ratio = r.rps / direct[r.concurrency] if direct.get(r.concurrency) else math.nan
        n = max(r.n, 1)
        extra: list[str] = [f"{k} x{v}" for k, v in r.errors.most_common()]
        extra += [f"{k} x{v}" for k, v in r.notes.most_common(3)]
        if r.mechanism.startswith("webhook"):
            extra.append(
                f"202 p50 {percentile_ms(r.ack_latencies_s, 50):.2f} ms; late webhooks "
                f"{r.late_webhooks}; webhook TCP conns {r.webhook_conns}"
            )
        lines.append(
            f"{label:<16}{r.client:<9}{r.concurrency:>5}{r.n:>7}{r.rps:>9.0f}{ratio:>10.2f}"
            f"{r.percentile_ms(50):>9.2f}{r.percentile_ms(99):>9.2f}"
            f"{r.gw_cpu_s * 1000 / n:>9.3f}{r.cog_cpu_s * 1000 / n:>9.3f}"
            f"{r.events / n:>9.2f}  {'; '.join(extra)}"
        )
    return "\n".join(lines)


async def bench(
    cog: CogServer, lean_cog: CogServer | None, duration_s: float, concurrencies: list[int]
) -> list[CellResult]:
    sink = WebhookSink()
    app = web.Application()
    app.router.add_post("/hook/{pid}", sink.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    sink.port = int(runner.addresses[0][1])
    run_tag = uuid.uuid4().hex[:8]
    results: list[CellResult] = []
    try:
        print(f"Protocol probe (Cog {cog.base_url}, webhook sink port {sink.port}):")
        await probe_protocol(cog, sink, run_tag)
        print()
        # (label, mechanism, client, server); Cog-direct first and again last (drift check)
        cells: list[tuple[str, str, str, CogServer]] = [("sync", "sync", "aiohttp", cog)]
        cells += [
            (m, m, c, cog)
            for m in MECHANISMS
            for c in CLIENTS
            if (m, c) != ("sync", "aiohttp") and not (m in QUICKACK and c != "aiohttp")
        ]
        if lean_cog is not None:
            cells += [("webhook-leanCA", "webhook", c, lean_cog) for c in CLIENTS]
        cells.append(("sync", "sync", "aiohttp", cog))
        for conc in concurrencies:
            for label, mechanism, client_name, server in cells:
                res = await run_cell(
                    server, sink, label, mechanism, client_name, conc, duration_s, run_tag
                )
                print(
                    f"  {label:<14} {client_name:<8} c={conc:<3} {res.rps:8.0f} req/s "
                    f"p50 {res.percentile_ms(50):7.2f} ms  p99 {res.percentile_ms(99):7.2f} ms"
                    f"  errors {dict(res.errors)}",
                    flush=True,
                )
                results.append(res)
    finally:
        await runner.cleanup()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per cell")
    parser.add_argument("--concurrency", default="1,16", help="comma-separated task counts")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    parser.add_argument(
        "--no-lean-ca",
        action="store_true",
        help="skip the webhook-leanCA cells (a 2nd Cog started with a small CA store)",
    )
    args = parser.parse_args(argv)
    concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if max(concurrencies) > COG_MAX_CONCURRENCY:
        parser.error(f"concurrency above COG_MAX_CONCURRENCY={COG_MAX_CONCURRENCY}")

    cache: Path = args.cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    venv_python = ensure_cog_venv(cache / f"cog-{COG_VERSION}-venv")
    model_dir = cache / "reverse-predictor"
    write_predictor(model_dir)
    print(f"setup (venv + predictor) {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    cog = start_cog(venv_python, model_dir, cache / "cog-stderr.log")
    print(f"Cog {COG_VERSION} READY on port {cog.port} in {time.perf_counter() - t0:.2f} s")
    lean_cog: CogServer | None = None
    try:
        if not args.no_lean_ca:
            lean_cog = start_cog(
                venv_python,
                model_dir,
                cache / "cog-leanca-stderr.log",
                lean_ca_env(venv_python, cache),
            )
            print(f"2nd Cog (lean CA store) READY on port {lean_cog.port}")
        results = asyncio.run(bench(cog, lean_cog, args.duration, concurrencies))
    finally:
        cog.kill()
        if lean_cog is not None:
            lean_cog.kill()
    print()
    print(
        f"Results ({args.duration:g} s per cell; x direct = req/s / sync+aiohttp req/s at "
        f"the same concurrency; cpu = CPU ms per completed prediction)"
    )
    print(fmt_table(results))
    for status, text in sorted(FIRST_ERROR_BODIES.items()):
        print(f"first HTTP {status} seen: {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
