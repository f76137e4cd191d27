"""What the Cogway gateway adds on top of calling its Cog instance directly.

What it measures
----------------
A real gateway (``cogway serve`` as a subprocess, via ``tests.integration.gateway.run_gateway``)
serves ``predictors/fixtures/trivial`` (``async def predict`` that reverses a string,
``concurrency: {max: 32}``) as ``bench/trivial``, with one Cog 0.23.1 instance. The script finds
that instance's own port (``PORT=`` in ``/proc/<pid>/environ`` of its ``cog.server.http``
process) and then drives, from this one asyncio process with ``aiohttp`` (keep-alive), four
modes at concurrency 1 and 16, each for a fixed window after a short warm-up:

``direct``      ``POST http://127.0.0.1:<cog port>/predictions`` (Cog itself, the floor);
                409s (Cog out of slots) are counted apart and left out of the latency figures.
``gw-sync``     ``POST /v1/models/bench/trivial/predictions`` with ``Prefer: wait``;
                a 201 whose body says ``succeeded`` counts.
``gw-poll``     the same without ``Prefer``, then ``GET urls.get`` every 5 ms until the status
                is terminal; latency is create -> terminal status seen.
``hop``         ``POST`` to a bare pass-through to the same instance (``bench/passthrough.py``:
                the gateway's HTTP stack and Cog client, none of its work): the floor under
                ``gw-sync``, so its added p50 reads against the hop itself. Cog's 409s come
                through it and are counted apart, as for ``direct``.

The modes run one after the other ``--rounds`` times at each concurrency (each cell
``--window`` seconds), so every gateway cell has a Cog-direct cell measured seconds before it:
this shared machine's speed drifts by tens of percent within minutes, and a ratio of two cells
a minute apart measured the drift as much as the gateway. For each mode it prints completed
predictions/s, p50/p99 latency, errors, 409s and the gateway process's CPU milliseconds per
prediction over all its rounds; then, per concurrency, the gateway/direct throughput ratio and
the p50 the gateway adds as the median over rounds (each round's gateway cell against that
round's direct cell) with the range; the instance's cold start (``instance_ready``'s
``cold_start_s`` in the gateway's JSON log) and any warning/error lines in that log.

Then cold starts, ``--cold-runs`` times each, alternating: a second gateway with a 1 s idle
timeout scales the model to zero (until the old instance's process has exited), and one
``Prefer: wait`` prediction is timed from the request to its output (boot, readiness, dispatch,
the gateway's own writes); beside it, Cog's own cold start: the same venv and version directory
started directly (spawn, poll ``/health-check`` every 5 ms until READY, one prediction). Both
are timed with the same client (``urllib``). It prints both medians and the difference.
Every request goes to 127.0.0.1; every loop is bounded by its window and per-request timeouts;
the gateway and its Cog processes stop when the script ends (the context manager).

Run (from the repository root)::

    make bench                       # or: .venv/bin/python bench/gateway.py

The first run builds the predictor's venv into ``.cache/envs`` (about 10 s); later runs reuse it.
Figures are noisy on a small shared machine: compare ratios measured in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from cogserver import free_port, start_cog  # noqa: E402  (bench/cogserver.py)
from measure import log_problems, process_cpu_s  # noqa: E402  (bench/measure.py)
from passthrough import run_passthrough  # noqa: E402  (bench/passthrough.py)
from report import Cell, print_cold, print_report, target_lines  # noqa: E402  (bench/report.py)

from tests.integration.gateway import Gateway, run_gateway  # noqa: E402

MODEL = "bench/trivial"
PREDICTOR_DIR = REPO_ROOT / "predictors" / "fixtures" / "trivial"
INPUT_TEXT = "hello"
EXPECTED_OUTPUT = INPUT_TEXT[::-1]
TERMINAL = frozenset({"succeeded", "failed", "canceled"})
REQUEST_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.005
POLL_TIMEOUT_S = 10.0
READY_LOG_TIMEOUT_S = 120.0
COLD_IDLE_TIMEOUT_S = 1.0  # the cold-start gateway stops idle instances after this
COLD_RUNS = 9  # one pair of cold starts differs by -50 to +130 ms here: a median needs several


class BenchError(Exception):
    """One request did not end the way the mode expects (counted, never fatal)."""


class Refused(Exception):
    """Cog answered 409: no free slot (counted apart from errors)."""


Op = Callable[[aiohttp.ClientSession], Awaitable[None]]


# --- finding the Cog instance ------------------------------------------------------------------


def wait_for_cold_start(gw: Gateway, timeout: float = READY_LOG_TIMEOUT_S) -> float | None:
    """``cold_start_s`` of the first ``instance_ready`` event in the gateway's JSON log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in gw.log_path.read_text(errors="replace").splitlines():
            if '"instance_ready"' not in line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("event") == "instance_ready":
                value = record.get("cold_start_s")
                return float(value) if isinstance(value, int | float) else None
        time.sleep(0.1)
    return None


def cog_process(gw: Gateway) -> tuple[Path, Path]:
    """(the venv python, the version directory) of the gateway's Cog server."""
    for pid in gw.cog_pids():
        proc = Path("/proc") / str(pid)
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = (proc / "cwd").resolve()
        except OSError:
            continue
        if b"cog.server.http" in argv:
            return Path(argv[0].decode()), cwd
    raise RuntimeError(f"no cog.server.http process among {gw.cog_pids()}")


# --- cold start ----------------------------------------------------------------------------------


def post_prediction(url: str, headers: dict[str, str], timeout: float) -> Any:
    """One ``{"input": {"text": INPUT_TEXT}}`` POST with urllib, its JSON answer. Both cold
    starts use it: a new httpx client would add its own set-up (an SSL context, ~25 ms here)
    to one figure only."""
    request = urllib.request.Request(
        url,
        data=json.dumps({"input": {"text": INPUT_TEXT}}).encode(),
        headers={**headers, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return json.loads(resp.read())


def cog_boot_to_output(python: Path, model_dir: Path, stderr: Path) -> float:
    """Cog's own cold start: spawn ``cog.server.http`` directly, poll READY, first prediction.
    READY is polled every 5 ms, so the figure is Cog's boot and not this loop's sleep."""
    began = time.monotonic()
    server = start_cog(python, model_dir, stderr, poll_s=0.005)
    try:
        body = post_prediction(f"{server.base_url}/predictions", {}, REQUEST_TIMEOUT_S)
        if body.get("output") != EXPECTED_OUTPUT:
            raise BenchError(f"direct cold start output {body.get('output')!r}")
        return time.monotonic() - began
    finally:
        server.kill()


def gateway_zero_to_output(gw: Gateway, timeout: float = 60.0) -> float:
    """Wait until the pool has scaled to zero, then time one prediction from the request to
    its output (``Prefer: wait``): boot, readiness, dispatch and the gateway's own work."""
    headers = {"Authorization": f"Bearer {gw.token}"}
    deadline = time.monotonic() + timeout
    while True:
        state = httpx.get(f"{gw.url}/v1/admin/scheduler", headers=headers, timeout=5).json()
        if all(not pool["instances"] for pool in state["pools"]):
            break
        if time.monotonic() > deadline:
            raise RuntimeError("the pool did not scale to zero")
        time.sleep(0.1)
    url = f"{gw.url}/v1/models/{MODEL}/predictions"
    began = time.monotonic()
    body = post_prediction(url, {**headers, "Prefer": "wait"}, timeout)
    elapsed = time.monotonic() - began
    check_succeeded(body)
    return elapsed


def cold_starts(tmp: Path, runs: int) -> tuple[list[float], list[float]]:
    """(Cog direct, gateway) cold starts to first output, alternating, ``runs`` each."""
    env = {"COGWAY_RUNTIME__IDLE_TIMEOUT": str(COLD_IDLE_TIMEOUT_S)}
    direct: list[float] = []
    gateway: list[float] = []
    with run_gateway(tmp / "cold", {MODEL: PREDICTOR_DIR}, env=env) as gw:
        wait_for_cold_start(gw)
        python, model_dir = cog_process(gw)
        for _ in range(runs):
            gateway.append(gateway_zero_to_output(gw))
            direct.append(cog_boot_to_output(python, model_dir, tmp / "cog-direct.log"))
    return direct, gateway


def cog_port(gw: Gateway) -> int:
    """The loopback port of the gateway's Cog server (``PORT=`` of its ``cog.server.http``)."""
    for pid in gw.cog_pids():
        proc = Path("/proc") / str(pid)
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if b"cog.server.http" not in cmdline:
            continue
        for entry in environ.split(b"\0"):
            if entry.startswith(b"PORT="):
                return int(entry.removeprefix(b"PORT="))
    raise RuntimeError(f"no cog.server.http process with PORT= among {gw.cog_pids()}")


# --- one request per mode ----------------------------------------------------------------------


def check_succeeded(body: Any) -> None:
    if not isinstance(body, dict):
        raise BenchError(f"body is not an object: {str(body)[:80]}")
    if body.get("status") != "succeeded":
        raise BenchError(f"status {body.get('status')!r}: {str(body.get('error'))[:80]}")
    if body.get("output") != EXPECTED_OUTPUT:
        raise BenchError(f"output {body.get('output')!r}")


def cog_style_op(url: str, ok_status: int) -> Op:
    """A POST answered with the prediction, or 409 when Cog has no free slot (``direct``: Cog
    itself, 200; ``hop``: the pass-through, 201, with Cog's 409s passed on): 409s count apart."""
    payload = json.dumps({"input": {"text": INPUT_TEXT}}).encode()
    headers = {"Content-Type": "application/json"}

    async def op(session: aiohttp.ClientSession) -> None:
        async with session.post(url, data=payload, headers=headers) as resp:
            body = await resp.read()
            if resp.status == 409:
                raise Refused()
            if resp.status != ok_status:
                raise BenchError(f"HTTP {resp.status}: {body[:80]!r}")
        check_succeeded(json.loads(body))

    return op


def gateway_sync_op(gw: Gateway) -> Op:
    url = f"{gw.url}/v1/models/{MODEL}/predictions"
    payload = json.dumps({"input": {"text": INPUT_TEXT}}).encode()
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {gw.token}",
        "Prefer": "wait",
    }

    async def op(session: aiohttp.ClientSession) -> None:
        async with session.post(url, data=payload, headers=headers) as resp:
            body = await resp.read()
            if resp.status != 201:
                raise BenchError(f"HTTP {resp.status}: {body[:80]!r}")
        check_succeeded(json.loads(body))

    return op


def gateway_poll_op(gw: Gateway) -> Op:
    url = f"{gw.url}/v1/models/{MODEL}/predictions"
    payload = json.dumps({"input": {"text": INPUT_TEXT}}).encode()
    auth = {"Authorization": f"Bearer {gw.token}"}
    headers = {"Content-Type": "application/json", **auth}

    async def op(session: aiohttp.ClientSession) -> None:
        async with session.post(url, data=payload, headers=headers) as resp:
            raw = await resp.read()
            if resp.status != 201:
                raise BenchError(f"create HTTP {resp.status}: {raw[:80]!r}")
        body = json.loads(raw)
        get_url = body["urls"]["get"]
        deadline = time.monotonic() + POLL_TIMEOUT_S
        while body.get("status") not in TERMINAL:
            if time.monotonic() > deadline:
                raise BenchError(f"still {body.get('status')!r} after {POLL_TIMEOUT_S}s")
            await asyncio.sleep(POLL_INTERVAL_S)
            async with session.get(get_url, headers=auth) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    raise BenchError(f"poll HTTP {resp.status}: {raw[:80]!r}")
            body = json.loads(raw)
        check_succeeded(body)

    return op


# --- driving a cell ----------------------------------------------------------------------------


async def run_cell(
    mode: str, op: Op, concurrency: int, warmup_s: float, window_s: float, gateway_pid: int
) -> Cell:
    """``concurrency`` tasks loop ``op``; only requests started and finished in the window count."""
    cell = Cell(mode, concurrency, window_s)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        loop = asyncio.get_running_loop()
        measure_from = loop.time() + warmup_s
        measure_to = measure_from + window_s

        cpu_before = process_cpu_s(gateway_pid)

        async def worker() -> None:
            while (began := loop.time()) < measure_to:
                outcome: str | None = None
                try:
                    await op(session)
                except Refused:
                    outcome = "409"
                except (BenchError, aiohttp.ClientError, TimeoutError, ValueError, KeyError) as e:
                    outcome = f"{type(e).__name__}: {e}"
                ended = loop.time()
                cell.completed_all += outcome is None
                if began < measure_from or ended > measure_to:
                    continue
                if outcome is None:
                    cell.latencies.append(ended - began)
                elif outcome == "409":
                    cell.refused += 1
                else:
                    cell.errors[outcome] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        cell.gateway_cpu_s = process_cpu_s(gateway_pid) - cpu_before
    return cell


async def bench(
    gw: Gateway,
    port: int,
    hop_url: str,
    concurrencies: list[int],
    warmup: float,
    window: float,
    rounds: int,
) -> list[Cell]:
    modes: list[tuple[str, Op]] = [
        ("direct", cog_style_op(f"http://127.0.0.1:{port}/predictions", 200)),
        ("gw-sync", gateway_sync_op(gw)),
        ("gw-poll", gateway_poll_op(gw)),
        ("hop", cog_style_op(hop_url, 201)),
    ]
    cells = []
    for conc in concurrencies:
        for round_ in range(rounds):
            for name, op in modes:
                cell = await run_cell(name, op, conc, warmup, window, gw.proc.pid)
                cell.round = round_
                print(
                    f"  {name:<8} c={conc:<3} round {round_ + 1}: {cell.rps:8.0f} req/s", flush=True
                )
                cells.append(cell)
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--window", type=float, default=3.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=0.5, help="warm-up seconds per cell")
    parser.add_argument("--rounds", type=int, default=3, help="direct/gateway alternations")
    parser.add_argument("--concurrency", default="1,16", help="comma-separated task counts")
    parser.add_argument("--cold-runs", type=int, default=COLD_RUNS, help="cold starts measured")
    args = parser.parse_args(argv)
    concurrencies = [int(c) for c in args.concurrency.split(",")]

    with tempfile.TemporaryDirectory(prefix="cogway-bench-") as tmp:
        print(f"starting the gateway with {MODEL} = {PREDICTOR_DIR} ...", flush=True)
        started = time.monotonic()
        with run_gateway(Path(tmp) / "data", {MODEL: PREDICTOR_DIR}) as gw:
            cold_start_s = wait_for_cold_start(gw)
            port = cog_port(gw)
            print(
                f"gateway {gw.url} up in {time.monotonic() - started:.1f}s; "
                f"Cog instance at 127.0.0.1:{port}",
                flush=True,
            )
            with run_passthrough(free_port(), port) as hop_url:
                cells = asyncio.run(
                    bench(gw, port, hop_url, concurrencies, args.warmup, args.window, args.rounds)
                )
            problems = log_problems(gw.log_path)
        print(f"cold starts: scale to zero, then one prediction; {args.cold_runs} runs ...")
        direct_cold, gateway_cold = cold_starts(Path(tmp), args.cold_runs)
    print_report(cells, cold_start_s, problems)
    print_cold(direct_cold, gateway_cold)
    print("\ntargets (issue #4, medians over rounds):")
    for line in target_lines(cells, direct_cold, gateway_cold):
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
