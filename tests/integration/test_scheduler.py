"""The scheduler with real Cog processes: slots, scaling up and to zero, a worker killed with
SIGKILL, a predictor that ignores cancel, and a shutdown that leaves no process behind."""

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.app import Startup, create_app
from server.runtime.local import LocalRuntime
from server.services import Services, build_services
from tests.conftest import FIXTURES, make_settings, serving

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


class Gateway:
    def __init__(self, client: httpx.AsyncClient, services: Services, runtime: LocalRuntime):
        self.client = client
        self.services = services
        self.runtime = runtime

    async def run(self, model: str, **input: Any) -> dict[str, Any]:
        resp = await self.client.post(
            f"/v1/models/test/{model}/predictions",
            json={"input": input},
            headers={"Prefer": "wait=60"},
        )
        assert resp.status_code == 201, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def start(self, model: str, **input: Any) -> dict[str, Any]:
        resp = await self.client.post(f"/v1/models/test/{model}/predictions", json={"input": input})
        assert resp.status_code == 201, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def until(
        self, prediction_id: str, *statuses: str, timeout: float = 60
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            body: dict[str, Any] = (
                await self.client.get(f"/v1/predictions/{prediction_id}")
            ).json()
            if body["status"] in statuses:
                return body
            assert loop.time() < end, f"still {body['status']}"
            await asyncio.sleep(0.05)

    def server_pids(self) -> list[int]:
        return [i.pid for i in self.runtime._instances.values()]


@asynccontextmanager
async def gateway(tmp_path: Path, models: list[str], **runtime: Any) -> AsyncIterator[Gateway]:
    settings = make_settings(tmp_path, runtime={"drain_timeout": 5.0, "stop_grace": 2.0} | runtime)
    local = LocalRuntime(cpu_policy=settings.runtime.cpu_policy)
    services = build_services(settings, runtime=local)
    startup = Startup(models=[(f"test/{m}", FIXTURES / m) for m in models], warm=False)
    async with serving(create_app(services, startup), timeout=90) as client:
        yield Gateway(client, services, local)


def group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes in a process group: a Cog server and its worker."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(entry.name))
    return found


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@pytest.mark.parametrize(
    ("policy", "expected"), [("batch", os.SCHED_BATCH), ("normal", os.SCHED_OTHER)]
)
async def test_instances_run_with_the_configured_cpu_policy(
    tmp_path: Path, policy: str, expected: int
) -> None:
    """Every thread of the launcher, the Cog server and its worker (README, "Why instances
    run as SCHED_BATCH"), set just after the instance is READY."""
    async with gateway(tmp_path, ["sleepy"], cpu_policy=policy) as gw:
        await gw.run("sleepy", seconds=0)
        [leader] = gw.server_pids()
        pids = group_pids(leader)
        assert len(pids) >= 3  # launcher, Cog server, worker

        def policies() -> set[int]:
            return {
                os.sched_getscheduler(int(tid.name))
                for pid in pids
                for tid in (Path("/proc") / str(pid) / "task").iterdir()
            }

        loop = asyncio.get_running_loop()
        end = loop.time() + 5
        while policies() != {expected}:
            assert loop.time() < end, f"policies {policies()}, not {expected}"
            await asyncio.sleep(0.05)
        await gw.run("sleepy", seconds=0)  # threads started since inherit it
        assert policies() == {expected}


async def test_instances_log_no_lines_per_prediction(tmp_path: Path) -> None:
    """coglet's per-prediction lines are off (the gateway would read two per prediction); the
    predictor's prints stay in the prediction's logs and start-up lines still arrive."""
    async with gateway(tmp_path, ["echo"]) as gw:
        results = [await gw.run("echo", text=f"n{i}") for i in range(3)]
        assert [r["logs"] for r in results] == [f"echoing n{i}\n" for i in range(3)]
        await asyncio.sleep(0.5)  # stderr is read asynchronously: let late lines arrive
        [instance] = gw.runtime._instances.values()
        tail = instance.log_tail()
        assert any("Starting coglet server" in line for line in tail), tail
        per_prediction = [ln for ln in tail if "prediction" in ln.lower() or "echoing" in ln]
        assert per_prediction == []


async def test_four_slots_run_four_at_once_and_the_fifth_waits(tmp_path: Path) -> None:
    async with gateway(tmp_path, ["sleepy"]) as gw:
        await gw.run("sleepy", seconds=0)  # boot first, so the timing below is the slots'
        results = await asyncio.gather(*(gw.run("sleepy", seconds=1.5) for _ in range(5)))
        assert {r["status"] for r in results} == {"succeeded"}
        starts = sorted(when(r["started_at"]) for r in results)
        ends = sorted(when(r["completed_at"]) for r in results)
        assert (starts[3] - starts[0]).total_seconds() < 1.0, "four ran together"
        assert starts[4] >= ends[0], "the fifth waited for a free slot"
        assert len({r["output"].split()[1] for r in results}) == 1, "one instance"
        # Twenty at once on four slots: all succeed, and no 409 ever reaches a client.
        twenty = await asyncio.gather(*(gw.run("sleepy", seconds=0.2) for _ in range(20)))
        assert [r["status"] for r in twenty] == ["succeeded"] * 20
        assert all(r["error"] is None for r in twenty)


async def test_scales_up_under_load_and_back_to_zero(tmp_path: Path) -> None:
    async with gateway(tmp_path, ["sleepy"], max_instances=2, idle_timeout=1.0) as gw:
        load = asyncio.gather(*(gw.run("sleepy", seconds=2) for _ in range(12)))
        pids: set[int] = set()
        while not load.done():
            pids.update(gw.server_pids())
            await asyncio.sleep(0.05)
        results = await load
        assert {r["status"] for r in results} == {"succeeded"}
        workers = {r["output"].split()[1] for r in results}
        assert len(workers) == 2, "eight slots' worth of work on four slots: a second instance"
        assert len(pids) == 2, "never more than max_instances"
        loop = asyncio.get_running_loop()
        end = loop.time() + 30
        while any(group_pids(pid) for pid in pids):
            assert loop.time() < end, "idle instances were not stopped"
            await asyncio.sleep(0.1)
        while gw.services.scheduler.snapshot()["pools"][0]["instances"]:  # reaped just after
            assert loop.time() < end, "stopped instances are still listed"
            await asyncio.sleep(0.05)
        cold = await gw.run("sleepy", seconds=0)
        assert cold["status"] == "succeeded"
        assert cold["metrics"]["cold_start_time"] > 0
        assert len(gw.server_pids()) == 1


async def test_sigkill_of_a_worker_fails_that_prediction_only(tmp_path: Path) -> None:
    async with gateway(tmp_path, ["slow"]) as gw:
        await gw.run("slow", seconds=0)
        victim = await gw.start("slow", seconds=30)
        behind = await gw.start("slow", seconds=0.1)
        await gw.until(victim["id"], "processing")
        (server,) = gw.server_pids()
        workers = [pid for pid in group_pids(server) if pid != server]
        assert workers, "the Cog worker runs in the server's process group"
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        failed = await gw.until(victim["id"], "failed", "succeeded", "canceled")
        assert failed["status"] == "failed"
        assert failed["error"].startswith("Worker crashed") or "lost" in failed["error"]
        after = await gw.until(behind["id"], "succeeded", "failed")
        assert (after["status"], after["output"]) == ("succeeded", "slept 0.1")
        assert gw.server_pids() != [server], "the instance was replaced"
        assert group_pids(server) == []


async def test_cancel_that_is_ignored_kills_the_instance(tmp_path: Path) -> None:
    async with gateway(tmp_path, ["stubborn"], cancel_grace=1.0) as gw:
        stuck = await gw.start("stubborn", seconds=60)
        await gw.until(stuck["id"], "processing")
        (server,) = gw.server_pids()
        await gw.client.post(f"/v1/predictions/{stuck['id']}/cancel")
        done = await gw.until(stuck["id"], "canceled", "failed", "succeeded", timeout=20)
        assert done["status"] == "canceled"
        assert group_pids(server) == [], "its process group was killed"
        quick = await gw.run("stubborn", seconds=0)
        assert (quick["status"], quick["output"]) == ("succeeded", "finished anyway")


async def test_shutdown_cancels_what_outlives_the_drain_and_leaves_no_process(
    tmp_path: Path,
) -> None:
    settings = {"drain_timeout": 1.0, "cancel_grace": 1.0, "max_instances": 2}
    async with gateway(tmp_path, ["slow", "sleepy"], **settings) as gw:
        await gw.run("sleepy", seconds=0)
        long = await gw.start("slow", seconds=60)
        finishing = await gw.start("slow", seconds=0.5)
        await gw.until(long["id"], "processing")
        await gw.until(finishing["id"], "processing")
        pids = gw.server_pids()
        assert len(pids) == 3
        await gw.services.scheduler.stop()
        assert [pid for pid in pids if group_pids(pid)] == []
        first = await gw.until(finishing["id"], "succeeded", "failed", "canceled", timeout=5)
        assert first["status"] == "succeeded", "in-flight work within the drain timeout finishes"
        second = await gw.until(long["id"], "succeeded", "failed", "canceled", timeout=5)
        assert second["status"] == "canceled"
        refused = await gw.client.post(
            "/v1/models/test/slow/predictions", json={"input": {"seconds": 0}}
        )
        assert refused.status_code == 503
