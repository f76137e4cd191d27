"""What metering costs: the writer's shipping rate, and the gateway with metering on vs off.

What it measures
----------------
1. **Writer throughput.** moto's S3 server runs as a subprocess on a free loopback port
   (dummy ``testing`` credentials, ``us-east-1``). For each case a fresh temporary SQLite
   ``server.db.Database`` gets ``N`` (5000) usage rows built with
   ``server.metering.records.usage_row`` (inserted 500 per transaction, not timed), then a
   ``MeteringWriter`` with ``batch_records=B, batch_age=0`` and ``SystemClock`` runs
   ``while await writer.ship_once(force=True): pass`` until ``pending() == 0``; that loop is
   timed. Cases: ``S3Sink`` into a fresh bucket with B = 100 and 500, and ``LocalDirSink`` into a
   temporary directory (fsync per object) with B = 500. The sink is wrapped to time its
   ``put`` calls, so the table shows how much of the time is the upload and how much the
   writer's own database work (claim, read, mark shipped) plus encoding. Afterwards the objects
   are listed and decoded to check that each record landed exactly once.
2. **Gateway throughput, metering off vs on.** ``cogway serve`` runs as a subprocess (via
   ``tests.integration.gateway.run_gateway``) with ``predictors/fixtures/trivial`` (async,
   ``concurrency: {max: 32}``) as ``bench/trivial``, once with ``COGWAY_METERING__ENABLED=false``
   and once with metering on to the default local sink (``COGWAY_METERING__BATCH_AGE=1``), in
   the order off, on, off, on (two rounds, to see drift), each with a fresh data dir. Each run
   drives ``POST /v1/models/bench/trivial/predictions`` with ``Prefer: wait`` from ``aiohttp``
   (keep-alive) at concurrency 1 and 16: a 1 s warm-up, then a 5 s window; only requests that
   start and finish inside the window count. It prints req/s, p50/p99 ms, errors and the
   gateway process's CPU ms per prediction, then the on/off ratios per round. For the metering
   runs it also checks, after the gateway stopped (which flushes the outbox), that the usage
   objects hold one record per successful prediction.

Everything talks to 127.0.0.1 only; every loop is bounded; moto, the gateways (and their Cog
processes) and all temporary directories are removed when the script ends, also on errors.

Run (from the repository root; about 1.5 minutes)::

    .venv/bin/python bench/metering.py

Figures are noisy on a small shared machine: compare ratios from one run, not across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import boto3

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from measure import (  # noqa: E402  (bench/measure.py)
    log_problems,
    percentile_ms,
    process_cpu_s,
    stop_process,
)

from server.clock import SystemClock  # noqa: E402
from server.db import Database  # noqa: E402
from server.logging import configure_logging  # noqa: E402
from server.metering.records import usage_row  # noqa: E402
from server.metering.sinks import LocalDirSink, S3Sink, Sink, decode_object  # noqa: E402
from server.metering.tables import UsageRow  # noqa: E402
from server.metering.writer import MeteringWriter  # noqa: E402
from server.settings import MeteringSettings  # noqa: E402
from tests.integration.gateway import Gateway, run_gateway  # noqa: E402

REGION = "us-east-1"
MOTO_READY_TIMEOUT_S = 30.0
INSERT_CHUNK = 500
MAX_SHIP_ROUNDS = 5  # outer bound on "ship until pending() == 0"

MODEL = "bench/trivial"
PREDICTOR_DIR = REPO_ROOT / "predictors" / "fixtures" / "trivial"
INPUT_TEXT = "hello"
EXPECTED_OUTPUT = INPUT_TEXT[::-1]
REQUEST_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 120.0
MAX_ERROR_SAMPLES = 3


# --- part 1: the writer ------------------------------------------------------------------------


class TimedSink:
    """Delegates to a real sink and adds up the wall time spent in ``put``."""

    def __init__(self, inner: Sink) -> None:
        self.inner = inner
        self.put_s = 0.0
        self.puts = 0

    async def put(self, key: str, body: bytes) -> None:
        began = time.perf_counter()
        await self.inner.put(key, body)
        self.put_s += time.perf_counter() - began
        self.puts += 1

    async def keys(self) -> list[str]:
        return await self.inner.keys()

    async def get(self, key: str) -> bytes:
        return await self.inner.get(key)

    def describe(self) -> str:
        return self.inner.describe()


@dataclass
class WriterResult:
    label: str
    batch: int
    records: int
    seconds: float
    objects: int
    put_s: float
    verified: str

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds

    @property
    def objects_per_s(self) -> float:
        return self.objects / self.seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def use_dummy_aws_credentials(tmp: Path) -> None:
    """This process (and so every boto3 client it makes) uses moto's dummy credentials only."""
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    os.environ["AWS_DEFAULT_REGION"] = REGION
    os.environ["AWS_CONFIG_FILE"] = str(tmp / "aws-config-absent")
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp / "aws-credentials-absent")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)


def start_moto(log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = Path(sys.executable).parent / "moto_server"
    if not binary.is_file():
        raise RuntimeError(f"{binary} does not exist (pip install 'moto[server]')")
    port = free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(binary), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + MOTO_READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                    break
            except urllib.error.HTTPError:
                break  # any HTTP answer means it serves
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto_server not ready: {log_path.read_text()[-2000:]}")
            time.sleep(0.05)
    except BaseException:
        stop_process(proc)
        raise
    return proc, endpoint


def fresh_bucket(endpoint: str) -> str:
    name = f"cogway-bench-{uuid.uuid4().hex[:16]}"
    client = boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=REGION)
    client.create_bucket(Bucket=name)
    return name


async def fill_outbox(db: Database, n: int, settings: MeteringSettings) -> None:
    """``n`` usage rows like the gateway writes them, ``INSERT_CHUNK`` per transaction."""
    now = datetime.now(UTC)
    for start in range(0, n, INSERT_CHUNK):
        async with db.session() as session:
            for i in range(start, min(n, start + INSERT_CHUNK)):
                completed = now - timedelta(seconds=(n - i) * 0.001)
                row = usage_row(
                    prediction_id=f"bench{i:07d}",
                    account="admin",
                    model="bench/trivial",
                    version="v" * 64,
                    deployment=None,
                    hardware="cpu",
                    status="succeeded",
                    created_at=completed - timedelta(seconds=0.2),
                    started_at=completed - timedelta(seconds=0.1),
                    completed_at=completed,
                    predict_time=0.1,
                    settings=settings,
                )
                session.add(UsageRow(**row.values))
            await session.commit()


async def verify(sink: Sink, n: int) -> str:
    """'ok' when the objects hold bench0000000..N-1 once each with sequences 1..N."""
    ids: list[str] = []
    sequences: list[int] = []
    for key in await sink.keys():
        for record in decode_object(await sink.get(key)):
            ids.append(record["prediction_id"])
            sequences.append(record["sequence"])
    if sorted(ids) != [f"bench{i:07d}" for i in range(n)]:
        return f"MISMATCH: {len(ids)} records, {len(set(ids))} distinct"
    if sorted(sequences) != list(range(1, n + 1)):
        return "MISMATCH: sequences"
    return "ok"


async def writer_case(label: str, sink: Sink, batch: int, n: int, tmp: Path) -> WriterResult:
    db = Database(f"sqlite+aiosqlite:///{tmp / 'outbox.db'}")
    try:
        await db.create()
        settings = MeteringSettings(batch_records=batch, batch_age=0, gateway_id="bench")
        await fill_outbox(db, n, settings)
        timed = TimedSink(sink)
        writer = MeteringWriter(db, timed, settings, SystemClock())
        began = time.perf_counter()
        for _ in range(MAX_SHIP_ROUNDS):
            while await writer.ship_once(force=True):
                pass
            if await writer.pending() == 0:
                break
        else:
            raise RuntimeError(f"{label}: {await writer.pending()} records still pending")
        seconds = time.perf_counter() - began
        return WriterResult(
            label,
            batch,
            writer.shipped_records,
            seconds,
            timed.puts,
            timed.put_s,
            await verify(sink, n),
        )
    finally:
        await db.dispose()


async def bench_writer(n: int, root: Path) -> list[WriterResult]:
    results = []
    use_dummy_aws_credentials(root)
    proc, endpoint = start_moto(root / "moto.log")
    try:
        print(f"moto_server at {endpoint}", flush=True)
        for batch in (100, 500):
            sink = S3Sink(
                bucket=fresh_bucket(endpoint), prefix="usage/", endpoint_url=endpoint, region=REGION
            )
            case_dir = Path(tempfile.mkdtemp(prefix=f"s3-{batch}-", dir=root))
            result = await writer_case("s3 (moto)", sink, batch, n, case_dir)
            print(f"  s3 B={batch}: {result.records_per_s:8.0f} records/s", flush=True)
            results.append(result)
    finally:
        stop_process(proc)
    case_dir = Path(tempfile.mkdtemp(prefix="local-500-", dir=root))
    local = LocalDirSink(case_dir / "usage")
    result = await writer_case("local dir", local, 500, n, case_dir)
    print(f"  local B=500: {result.records_per_s:8.0f} records/s", flush=True)
    results.append(result)
    return results


def print_writer(results: list[WriterResult]) -> None:
    header = (
        f"{'sink':<10} {'B':>4} {'records':>7} {'objects':>7} {'seconds':>7} "
        f"{'records/s':>9} {'objects/s':>9} {'put ms/obj':>10} {'put share':>9} {'check':>5}"
    )
    print()
    print("Writer throughput (ship_once(force=True) until pending() == 0)")
    print(header)
    print("-" * len(header))
    for r in results:
        put_ms = r.put_s / r.objects * 1000 if r.objects else math.nan
        print(
            f"{r.label:<10} {r.batch:>4} {r.records:>7} {r.objects:>7} {r.seconds:>7.2f} "
            f"{r.records_per_s:>9.0f} {r.objects_per_s:>9.1f} {put_ms:>10.1f} "
            f"{r.put_s / r.seconds:>9.0%} {r.verified:>5}"
        )


# --- part 2: the gateway, metering off vs on ---------------------------------------------------


@dataclass
class Cell:
    metering: str
    round: int
    concurrency: int
    window_s: float
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    succeeded_all: int = 0  # over the whole cell, warm-up and tail included
    gateway_cpu_s: float = 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.window_s

    def p(self, pct: float) -> float:
        return percentile_ms(self.latencies, pct)

    @property
    def cpu_ms(self) -> float:
        return self.gateway_cpu_s / self.succeeded_all * 1000 if self.succeeded_all else math.nan


@dataclass
class GatewayRun:
    metering: str
    round: int
    cells: list[Cell]
    succeeded: int  # every successful prediction, the readiness probes included
    records: int | None  # usage records found in the local sink after the gateway stopped
    objects: int | None
    problems: Counter[str]


class Predict:
    """One synchronous prediction through the gateway; raises on anything but success."""

    def __init__(self, gw: Gateway) -> None:
        self.url = f"{gw.url}/v1/models/{MODEL}/predictions"
        self.payload = json.dumps({"input": {"text": INPUT_TEXT}}).encode()
        self.headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {gw.token}",
            "Prefer": "wait",
        }

    async def __call__(self, session: aiohttp.ClientSession) -> None:
        async with session.post(self.url, data=self.payload, headers=self.headers) as resp:
            raw = await resp.read()
            if resp.status != 201:
                raise ValueError(f"HTTP {resp.status}: {raw[:80]!r}")
        body: Any = json.loads(raw)
        if not isinstance(body, dict) or body.get("status") != "succeeded":
            raise ValueError(f"not succeeded: {str(body)[:80]}")
        if body.get("output") != EXPECTED_OUTPUT:
            raise ValueError(f"output {body.get('output')!r}")


async def wait_ready(predict: Predict, session: aiohttp.ClientSession) -> int:
    """Predict until one succeeds (the Cog instance is up); returns how many succeeded (1)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = ""
    while time.monotonic() < deadline:
        try:
            await predict(session)
            return 1
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        await asyncio.sleep(0.2)
    raise RuntimeError(f"no successful prediction in {READY_TIMEOUT_S}s: {last}")


async def run_cell(
    cell: Cell, predict: Predict, session: aiohttp.ClientSession, warmup_s: float, pid: int
) -> None:
    """``cell.concurrency`` tasks loop; only requests started and ended in the window count."""
    loop = asyncio.get_running_loop()
    measure_from = loop.time() + warmup_s
    measure_to = measure_from + cell.window_s
    cpu_before = process_cpu_s(pid)

    async def worker() -> None:
        while (began := loop.time()) < measure_to:
            error: str | None = None
            try:
                await predict(session)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            ended = loop.time()
            cell.succeeded_all += error is None
            if began < measure_from or ended > measure_to:
                continue
            if error is None:
                cell.latencies.append(ended - began)
            else:
                cell.errors[error] += 1

    await asyncio.gather(*(worker() for _ in range(cell.concurrency)))
    cell.gateway_cpu_s = process_cpu_s(pid) - cpu_before


async def drive(
    gw: Gateway, metering: str, rnd: int, concurrencies: list[int], warmup: float, window: float
) -> tuple[list[Cell], int]:
    predict = Predict(gw)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=0)
    ) as session:
        succeeded = await wait_ready(predict, session)
        cells = []
        for conc in concurrencies:
            cell = Cell(metering, rnd, conc, window)
            await run_cell(cell, predict, session, warmup, gw.proc.pid)
            print(
                f"  round {rnd} metering {metering:<3} c={conc:<3} {cell.rps:8.0f} req/s",
                flush=True,
            )
            succeeded += cell.succeeded_all
            cells.append(cell)
    return cells, succeeded


def count_records(usage_dir: Path) -> tuple[int, int]:
    """(records, objects) in a local usage sink directory."""
    objects = sorted(usage_dir.rglob("*.jsonl.gz")) if usage_dir.is_dir() else []
    return sum(len(decode_object(p.read_bytes())) for p in objects), len(objects)


def gateway_run(
    root: Path, metering: str, rnd: int, concurrencies: list[int], warmup: float, window: float
) -> GatewayRun:
    data_dir = Path(tempfile.mkdtemp(prefix=f"gw-{metering}-{rnd}-", dir=root))
    env = (
        {"COGWAY_METERING__ENABLED": "true", "COGWAY_METERING__BATCH_AGE": "1"}
        if metering == "on"
        else {"COGWAY_METERING__ENABLED": "false"}
    )
    log_path = data_dir / "gateway.log"
    with run_gateway(data_dir, {MODEL: PREDICTOR_DIR}, env=env) as gw:
        cells, succeeded = asyncio.run(drive(gw, metering, rnd, concurrencies, warmup, window))
    # The gateway has stopped: its writer flushed the outbox on the way out.
    records, objects = count_records(data_dir / "usage")
    return GatewayRun(
        metering,
        rnd,
        cells,
        succeeded,
        records if metering == "on" or objects else None,
        objects if metering == "on" or objects else None,
        log_problems(log_path),
    )


def fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def print_gateway(runs: list[GatewayRun]) -> None:
    header = (
        f"{'round':>5} {'metering':<8} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'errors':>6} {'gw cpu ms/pred':>14}"
    )
    print()
    print("Gateway throughput, POST .../predictions with Prefer: wait (order off, on, off, on)")
    print(header)
    print("-" * len(header))
    for run in runs:
        for c in run.cells:
            print(
                f"{c.round:>5} {c.metering:<8} {c.concurrency:>4} {c.rps:>8.0f} "
                f"{fmt(c.p(50)):>8} {fmt(c.p(99)):>8} {sum(c.errors.values()):>6} "
                f"{fmt(c.cpu_ms):>14}"
            )
    print()
    cells = {(c.round, c.metering, c.concurrency): c for run in runs for c in run.cells}
    for rnd in sorted({run.round for run in runs}):
        for conc in sorted({c.concurrency for run in runs for c in run.cells}):
            off = cells.get((rnd, "off", conc))
            on = cells.get((rnd, "on", conc))
            if off is None or on is None or off.rps == 0:
                continue
            print(
                f"round {rnd} c={conc:<3} on/off throughput {on.rps / off.rps:.2f}x, "
                f"p50 {on.p(50) - off.p(50):+.2f} ms, p99 {on.p(99) - off.p(99):+.2f} ms, "
                f"gw cpu/pred {on.cpu_ms - off.cpu_ms:+.2f} ms"
            )
    print()
    for run in runs:
        if run.records is not None:
            status = "ok" if run.records == run.succeeded else "MISMATCH"
            print(
                f"round {run.round} metering {run.metering}: {run.records} usage records in "
                f"{run.objects} objects for {run.succeeded} successful predictions ({status})"
            )
        for cell in run.cells:
            for message, count in cell.errors.most_common(MAX_ERROR_SAMPLES):
                print(
                    f"error round {run.round} {run.metering} c={cell.concurrency} "
                    f"x{count}: {message}"
                )
        for message, count in run.problems.most_common():
            print(f"gateway log round {run.round} metering {run.metering}: {message} x{count}")


# --- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=5000, help="usage rows per writer case")
    parser.add_argument("--window", type=float, default=5.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per cell")
    parser.add_argument("--concurrency", default="1,16", help="comma-separated task counts")
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs of gateway runs")
    parser.add_argument("--skip-writer", action="store_true", help="only the gateway part")
    parser.add_argument("--skip-gateway", action="store_true", help="only the writer part")
    args = parser.parse_args(argv)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    configure_logging(json=False, level="warning")  # no line per shipped batch in the output

    started = time.monotonic()
    writer_results: list[WriterResult] = []
    runs: list[GatewayRun] = []
    with tempfile.TemporaryDirectory(prefix="cogway-bench-metering-") as tmp:
        root = Path(tmp)
        if not args.skip_writer:
            print(f"writer: {args.records} records per case", flush=True)
            writer_results = asyncio.run(bench_writer(args.records, root))
        if not args.skip_gateway:
            print(f"gateway: {MODEL} = {PREDICTOR_DIR}", flush=True)
            for rnd in range(1, args.rounds + 1):
                for metering in ("off", "on"):
                    runs.append(
                        gateway_run(root, metering, rnd, concurrencies, args.warmup, args.window)
                    )
    if writer_results:
        print_writer(writer_results)
    if runs:
        print_gateway(runs)
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
