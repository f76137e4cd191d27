"""The scheduler through the API, on the fake runtime: queues and 429, pools that scale up and
to zero, hardware placement, supervision, cancel that kills, deadlines, setup failure."""

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from server.hardware import GpuDevice, HardwareSettings, Inventory
from server.metering.tables import UsageRow
from server.scheduler import pool as pool_module
from server.scheduler.pool import CANCEL_SETTLE_S
from tests.conftest import ADMIN_TOKEN, Api, make_settings, open_api
from tests.fakes import FakeRuntime

pytestmark = pytest.mark.anyio


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.01)


def running(api: Api) -> Callable[[], bool]:
    return lambda: any(instance.running for instance in api.runtime.api.values())


def dispatched(api: Api, prediction_id: str) -> Callable[[], bool]:
    """The prediction has left the queue for an instance."""

    def check() -> bool:
        pools = api.services.scheduler.pools.values()
        jobs = [pool.jobs.get(prediction_id) for pool in pools]
        return any(job is not None and job.instance_id is not None for job in jobs)

    return check


def counted(items: list[Any], n: int) -> Callable[[], bool]:
    return lambda: len(items) == n


def no_instances(api: Api) -> Callable[[], bool]:
    """Not one listed in the (only) pool, stopping ones included."""
    return lambda: not api.services.scheduler.snapshot()["pools"][0]["instances"]


def gateway(
    tmp_path: Path,
    runtime: FakeRuntime | None = None,
    inventory: Inventory | None = None,
    **runtime_settings: Any,
) -> AsyncIterator[Api]:
    """An app with these runtime settings (on top of the test defaults) and hardware."""
    settings = make_settings(
        tmp_path,
        runtime={"env_cache_dir": tmp_path, "drain_timeout": 1.0, "stop_grace": 0.1}
        | runtime_settings,
    )
    return open_api(settings, runtime or FakeRuntime(), inventory)


async def create(api: Api, wait: bool = False, **input: Any) -> dict[str, Any]:
    headers = {"Prefer": "wait"} if wait else {}
    resp = await api.client.post(
        "/v1/predictions", json={"version": api.version_id, "input": input}, headers=headers
    )
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def status_of(api: Api, prediction_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await api.client.get(f"/v1/predictions/{prediction_id}")).json()
    return body


async def finished(api: Api, prediction_id: str, timeout: float = 5.0) -> dict[str, Any]:
    account = await api.services.accounts.authenticate(ADMIN_TOKEN)
    p = await api.services.predictions.get(account, prediction_id)
    await api.services.predictions.wait(p, timeout)
    return await status_of(api, prediction_id)


@pytest.fixture
async def small_queue(tmp_path: Path) -> AsyncIterator[Api]:
    async for api in gateway(tmp_path, queue_max=2):
        yield api


async def test_full_queue_answers_429_with_retry_after(small_queue: Api) -> None:
    api = small_queue
    running = await create(api, seconds=30)
    await eventually(
        lambda: bool(api.runtime.api) and any(a.running for a in api.runtime.api.values())
    )
    queued = [await create(api, text=str(i)) for i in range(2)]
    resp = await api.client.post(
        "/v1/predictions", json={"version": api.version_id, "input": {"text": "more"}}
    )
    assert resp.status_code == 429
    assert resp.headers["content-type"] == "application/problem+json"
    assert int(resp.headers["retry-after"]) >= 1
    assert "queue" in resp.json()["detail"]
    # Canceling the running one lets the queue move, and intake opens again.
    await api.client.post(f"/v1/predictions/{running['id']}/cancel")
    for body in queued:
        assert (await finished(api, body["id"]))["status"] == "succeeded"
    assert (await create(api, wait=True, text="again"))["output"] == "again"


async def test_scales_up_to_max_and_back_to_zero(tmp_path: Path) -> None:
    async for api in gateway(tmp_path, max_instances=3, idle_timeout=0.3):
        bodies = [await create(api, seconds=0.3, text=str(i)) for i in range(6)]
        await eventually(counted(api.runtime.started, 3))
        outputs = [(await finished(api, b["id"]))["output"] for b in bodies]
        assert outputs == [str(i) for i in range(6)]
        # Work spread over the instances: each ran at least one prediction.
        assert all(instance.inputs for instance in api.runtime.api.values())
        assert len(api.runtime.started) == 3, "never more than max_instances"
        # Idle past the timeout: every instance stops (scale to zero) ...
        await eventually(counted(api.runtime.stopped, 3))
        await eventually(no_instances(api))
        # ... and the next prediction boots a fresh one, and says it waited for a cold start.
        body = await create(api, wait=True, text="cold")
        assert body["status"] == "succeeded"
        assert len(api.runtime.started) == 4
        assert body["metrics"]["cold_start_time"] >= 0


async def test_pool_work_does_not_run_in_the_context_of_the_request_that_created_it(
    tmp_path: Path,
) -> None:
    """A pool is created by the first prediction of its version, inside that request: its loops
    and instances outlive the request, so their log lines must not carry its request_id."""
    async for api in gateway(tmp_path, idle_timeout=0.1):
        first = await create(api, wait=True, text="a")
        await eventually(counted(api.runtime.stopped, 1))
        await create(api, wait=True, text="b")  # a second boot, by the same pool
        assert first["status"] == "succeeded"
        assert api.runtime.start_contexts == [{}, {}]


async def test_gpus_are_assigned_one_per_instance(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    gpus = [GpuDevice(index=0, sku="gpu-t4"), GpuDevice(index=1, sku="gpu-t4")]
    inventory = Inventory(HardwareSettings(), gpus)
    async for api in gateway(tmp_path, runtime, inventory, drain_timeout=0.5):
        client, version, services = api.client, api.version_id, api.services
        hardware = (await client.get("/v1/hardware")).json()
        assert [h["sku"] for h in hardware] == ["cpu", "gpu-t4"]
        bad = await client.post(
            "/v1/deployments",
            json={
                "name": "big",
                "model": "acme/echo",
                "version": version,
                "hardware": "gpu-h100",
                "min_instances": 0,
                "max_instances": 1,
            },
        )
        assert bad.status_code == 422
        assert "hardware" in bad.text
        made = await client.post(
            "/v1/deployments",
            json={
                "name": "gpu",
                "model": "acme/echo",
                "version": version,
                "hardware": "gpu-t4",
                "min_instances": 0,
                "max_instances": 3,
            },
        )
        assert made.status_code == 200, made.text
        ids = []
        for _ in range(3):
            resp = await client.post(
                "/v1/deployments/admin/gpu/predictions", json={"input": {"seconds": 1}}
            )
            assert resp.status_code == 201
            ids.append(resp.json()["id"])
        await asyncio.sleep(0.2)
        devices = sorted(s.environment["CUDA_VISIBLE_DEVICES"] for s in runtime.started)
        assert devices == ["0", "1"], "two GPUs: two instances, one GPU each, never shared"
        # A CPU prediction runs beside them with no GPU visible.
        cpu = await client.post(
            "/v1/predictions",
            json={"version": version, "input": {"text": "cpu"}},
            headers={"Prefer": "wait"},
        )
        assert cpu.json()["output"] == "cpu"
        assert runtime.started[-1].environment["CUDA_VISIBLE_DEVICES"] == ""
        for prediction_id in ids:
            for _ in range(100):
                body = (await client.get(f"/v1/predictions/{prediction_id}")).json()
                if body["status"] == "succeeded":
                    break
                await asyncio.sleep(0.05)
            assert body["status"] == "succeeded"
        # Usage records bill the SKU the deployment release ran on.
        async with services.db.session() as session:
            usage = (await session.execute(select(UsageRow))).scalars().all()
        by_id = {row.prediction_id: row.record["hardware"] for row in usage}
        assert [by_id[i] for i in ids] == ["gpu-t4"] * 3
        assert by_id[cpu.json()["id"]] == "cpu"


async def test_failed_health_checks_replace_the_instance(tmp_path: Path) -> None:
    async for api in gateway(tmp_path, health_interval=0.05, health_failures=2):
        body = await create(api, seconds=30)
        await eventually(running(api))
        (first,) = api.runtime.api.values()
        first.health_status = "UNHEALTHY"
        done = await finished(api, body["id"])
        assert done["status"] == "failed"
        assert "lost" in done["error"]
        assert "UNHEALTHY" in done["error"]
        after = await create(api, wait=True, text="next")
        assert after["output"] == "next"
        assert len(api.runtime.started) == 2


async def test_cancel_ignored_kills_the_instance_after_the_grace(tmp_path: Path) -> None:
    async for api in gateway(tmp_path, cancel_grace=0.2):
        body = await create(api, seconds=30, text="stubborn")
        await eventually(running(api))
        await asyncio.sleep(CANCEL_SETTLE_S)
        await api.client.post(f"/v1/predictions/{body['id']}/cancel")
        done = await finished(api, body["id"])
        assert done["status"] == "canceled"
        assert api.runtime.stopped == ["fake-1"], "the stuck instance was killed"
        # Cog accepted the cancel of a prediction running for a while: asking again would
        # interrupt the predictor's own clean-up, so the grace kill is the only backstop.
        assert api.runtime.api["fake-1"].asked_to_cancel == [body["id"]]
        assert (await create(api, wait=True, text="next"))["output"] == "next"


async def test_cancel_after_and_max_run_time(tmp_path: Path) -> None:
    async for api in gateway(tmp_path, max_run_time=0.3):
        bad = await api.client.post(
            "/v1/predictions",
            json={"version": api.version_id, "input": {}},
            headers={"Cancel-After": "soon"},
        )
        assert bad.status_code == 422
        assert bad.json()["invalid_fields"][0]["field"] == "Cancel-After"
        too_short = await api.client.post(
            "/v1/predictions", json={"version": api.version_id}, headers={"Cancel-After": "2s"}
        )
        assert too_short.status_code == 422
        resp = await api.client.post(
            "/v1/predictions",
            json={"version": api.version_id, "input": {"seconds": 30}},
            headers={"Cancel-After": "1m30s"},
        )
        body = resp.json()
        assert body["deadline"] > body["created_at"]
        done = await finished(api, body["id"])
        assert done["status"] == "failed"
        assert "maximum run time" in done["error"]


async def test_deadline_cancels_a_running_prediction(tmp_path: Path) -> None:
    async for api in gateway(tmp_path):
        resp = await api.client.post(
            "/v1/predictions",
            json={"version": api.version_id, "input": {"seconds": 30}},
            headers={"Cancel-After": "5"},
        )
        done = await finished(api, resp.json()["id"], timeout=10)
        assert done["status"] == "canceled"
        assert done["error"] is None


async def test_setup_failure_fails_the_queue_and_the_version(tmp_path: Path) -> None:
    runtime = FakeRuntime(setup_error="RuntimeError: weights missing", setup_seconds=0.3)
    async for api in gateway(tmp_path, runtime):
        bodies = [await create(api, text=str(i)) for i in range(3)]  # queued during setup
        for body in bodies:
            done = await finished(api, body["id"])
            assert done["status"] == "failed"
            assert "weights missing" in done["error"]
        assert len(runtime.started) == 1, "a broken version is not booted again"
        again = await api.client.post(
            "/v1/predictions", json={"version": api.version_id, "input": {}}
        )
        assert again.status_code == 422
        assert "weights missing" in again.json()["detail"]


async def test_deployment_min_instances_stay_warm_and_follow_releases(tmp_path: Path) -> None:
    async for api in gateway(tmp_path, idle_timeout=0.2):
        body = {
            "name": "warm",
            "model": "acme/echo",
            "version": api.version_id,
            "hardware": "cpu",
            "min_instances": 2,
            "max_instances": 3,
        }
        assert (await api.client.post("/v1/deployments", json=body)).status_code == 200
        await eventually(counted(api.runtime.started, 2))  # before any prediction
        await asyncio.sleep(0.5)  # well past the idle timeout: the minimum stays
        assert api.runtime.stopped == []
        resp = await api.client.post(
            "/v1/deployments/admin/warm/predictions",
            json={"input": {"text": "hot"}},
            headers={"Prefer": "wait"},
        )
        assert resp.json()["output"] == "hot"
        assert "cold_start_time" not in resp.json()["metrics"]
        assert len(api.runtime.started) == 2
        # Deleting the deployment lets its instances go once idle.
        assert (await api.client.delete("/v1/deployments/admin/warm")).status_code == 204
        await eventually(counted(api.runtime.stopped, 2))


async def test_an_instance_is_shown_stopping_until_its_process_has_exited(
    tmp_path: Path,
) -> None:
    runtime = FakeRuntime()
    runtime.stop_gate = asyncio.Event()
    async for api in gateway(tmp_path, runtime, idle_timeout=0.1):
        await create(api, wait=True, text="x")
        await eventually(counted(runtime.stopping, 1))
        state = (await api.client.get("/v1/admin/scheduler")).json()
        assert [i["state"] for i in state["pools"][0]["instances"]] == ["stopping"]
        assert state["hardware"]["cpu_instances"]["used"] == 1, "it holds its hardware"
        metrics = (await api.client.get("/metrics")).text
        assert 'state="stopping"} 1' in metrics
        runtime.stop_gate.set()
        await eventually(counted(runtime.stopped, 1))
        await eventually(no_instances(api))
        state = (await api.client.get("/v1/admin/scheduler")).json()
        assert state["hardware"]["cpu_instances"]["used"] == 0
        assert 'state="stopping"' not in (await api.client.get("/metrics")).text


async def test_a_409_from_an_instance_with_a_free_slot_is_retried(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    async for api in gateway(tmp_path, runtime):
        assert (await create(api, wait=True, text="warm"))["status"] == "succeeded"
        (instance,) = runtime.api.values()
        instance.busy = 4  # four 409s in a row: 5 + 10 + 20 + 40 ms of backing off
        body = await create(api, wait=True, text="after")
        assert (body["status"], body["output"]) == ("succeeded", "after")
        assert "cogway_busy_retries_total" in (metrics := (await api.client.get("/metrics")).text)
        assert any(
            line.startswith("cogway_busy_retries_total{") and line.endswith(" 4")
            for line in metrics.splitlines()
        )


async def test_an_instance_that_answers_409_for_good_fails_the_prediction_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool_module, "BUSY_RETRY_FOR_S", 0.1)
    runtime = FakeRuntime()
    async for api in gateway(tmp_path, runtime):
        assert (await create(api, wait=True, text="warm"))["status"] == "succeeded"
        (instance,) = runtime.api.values()
        instance.busy = -1  # Cog after a worker crash answers 409 to everything (§9)
        body = await create(api, wait=True, text="refused")
        assert body["status"] == "failed"
        assert "kept answering 409" in body["error"]
        assert "did not run" in body["error"]


async def test_admin_sees_pools_and_cold_starts(api: Api) -> None:
    await create(api, wait=True, text="x")
    state = (await api.client.get("/v1/admin/scheduler")).json()
    (pool,) = state["pools"]
    assert pool["version"] == api.version_id
    assert pool["min_instances"] == 0
    assert len(pool["cold_starts_s"]) == 1
    assert [i["state"] for i in pool["instances"]] == ["ready"]
    (handle,) = api.runtime.handles.values()
    assert handle.settled, "told it is serving once READY"
    assert state["hardware"]["cpu_instances"]["used"] == 1
    other = await api.services.accounts.create_token("mallory")
    denied = await api.client.get(
        "/v1/admin/scheduler", headers={"Authorization": f"Bearer {other}"}
    )
    assert denied.status_code == 403


async def test_a_deployment_prediction_resumes_in_the_deployment_pool(tmp_path: Path) -> None:
    body = {
        "name": "web",
        "model": "acme/echo",
        "version": "",
        "hardware": "cpu",
        "min_instances": 0,
        "max_instances": 1,
    }
    async for api in gateway(tmp_path, drain_timeout=0.05, cancel_grace=0.05):
        body["version"] = api.version_id
        assert (await api.client.post("/v1/deployments", json=body)).status_code == 200
        url = "/v1/deployments/admin/web/predictions"
        await api.client.post(url, json={"input": {"seconds": 30}})
        await eventually(running(api))
        queued = (await api.client.post(url, json={"input": {"text": "later"}})).json()
    async for api in gateway(tmp_path):
        done = await finished(api, queued["id"])
        assert done["output"] == "later"
        assert done["deployment"] == "admin/web"
        (pool,) = api.services.scheduler.snapshot()["pools"]
        assert pool["deployment"] == "admin/web"


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus' text format."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name + "{"):
            continue
        head, value = line.rsplit(" ", 1)
        found = dict(part.split("=", 1) for part in head[len(name) + 1 : -1].split(","))
        if all(found.get(k) == f'"{v}"' for k, v in labels.items()):
            return float(value)
    raise AssertionError(f"no sample {name} {labels} in:\n{text}")


async def test_metrics_count_boots_cold_starts_and_outcomes(tmp_path: Path) -> None:
    async for api in gateway(tmp_path, health_interval=0.05, health_failures=1):
        await create(api, wait=True, text="one")
        await create(api, wait=True, text="fail")
        body = await create(api, seconds=30)
        await eventually(running(api))
        await api.client.post(f"/v1/predictions/{body['id']}/cancel")
        await finished(api, body["id"])
        resp = await api.client.get("/metrics")
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/plain")
        text = resp.text
        pool = {"model": "acme/echo"}
        assert metric(text, "cogway_predictions_total", status="succeeded", **pool) == 1
        assert metric(text, "cogway_predictions_total", status="failed", **pool) == 1
        assert metric(text, "cogway_predictions_total", status="canceled", **pool) == 1
        assert metric(text, "cogway_instance_boots_total", **pool) == 1
        assert metric(text, "cogway_cold_start_seconds_count", **pool) == 1
        assert metric(text, "cogway_instances", state="ready", **pool) == 1
        assert metric(text, "cogway_queue_depth", **pool) == 0
        assert "# TYPE cogway_cold_start_seconds summary" in text
        (instance,) = api.runtime.api.values()
        instance.health_status = "UNHEALTHY"
        await eventually(counted(api.runtime.stopped, 1))
        after = (await api.client.get("/metrics")).text
        assert metric(after, "cogway_instances_lost_total", **pool) == 1
        other = await api.services.accounts.create_token("mallory")
        denied = await api.client.get("/metrics", headers={"Authorization": f"Bearer {other}"})
        assert denied.status_code == 403


async def test_a_pool_waiting_for_hardware_boots_when_another_pool_frees_it(
    tmp_path: Path,
) -> None:
    runtime = FakeRuntime()
    inventory = Inventory(HardwareSettings(cpu_instances=1), [])
    async for api in gateway(tmp_path, runtime, inventory, idle_timeout=0.3):
        client, version = api.client, api.version_id
        first = await client.post(
            "/v1/predictions",
            json={"version": version, "input": {"text": "a"}},
            headers={"Prefer": "wait"},
        )
        assert first.json()["output"] == "a"
        deployment = {
            "name": "other",
            "model": "acme/echo",
            "version": version,
            "hardware": "cpu",
            "min_instances": 0,
            "max_instances": 1,
        }
        assert (await client.post("/v1/deployments", json=deployment)).status_code == 200
        # The one CPU slot is held by the version's idle instance: this one waits for it.
        second = await client.post(
            "/v1/deployments/admin/other/predictions",
            json={"input": {"text": "b"}},
            headers={"Prefer": "wait=5"},
        )
        assert second.json()["output"] == "b"
        assert runtime.stopped == ["fake-1"], "the idle instance gave its slot back"
        assert len(runtime.started) == 2


async def test_cancel_before_cog_has_the_prediction_still_cancels(api: Api) -> None:
    """Cog answers 404 to a cancel for a prediction it has not taken yet; the gateway asks
    again until Cog has it."""
    body = await create(api, seconds=30, text="late")
    await eventually(dispatched(api, body["id"]))
    resp = await api.client.post(f"/v1/predictions/{body['id']}/cancel")
    assert resp.json()["status"] == "canceled"
    assert api.runtime.stopped == [], "canceled by Cog, not by killing the instance"


async def test_a_404_that_crosses_the_start_event_still_cancels(api: Api) -> None:
    """Cog's 404 to the cancel arrives after the prediction's start event (the two crossed on
    the wire): the gateway still asks again, and Cog, which knows the prediction by then,
    cancels it."""
    body = await create(api, seconds=30, text="late")  # starts 0.2 s after dispatch
    await eventually(dispatched(api, body["id"]))
    (instance,) = api.runtime.api.values()
    instance.not_found_delay = 0.4  # the 404 is answered after the start event
    resp = await api.client.post(f"/v1/predictions/{body['id']}/cancel")
    assert resp.json()["status"] == "canceled"
    assert api.runtime.stopped == [], "canceled by Cog, not by killing the instance"


async def test_a_cancel_that_cog_accepts_and_loses_is_asked_again(api: Api) -> None:
    """Cog 0.23.1 answers 200 to a cancel that lands just after the prediction's start event
    and then runs the prediction to the end; the gateway asks again while it still runs."""
    body = await create(api, seconds=30, text="slow start")
    await eventually(dispatched(api, body["id"]))
    resp = await api.client.post(f"/v1/predictions/{body['id']}/cancel")
    assert resp.json()["status"] == "canceled"
    (instance,) = api.runtime.api.values()
    assert instance.lost_cancels == [body["id"]], "the first cancel was accepted and lost"
    assert api.runtime.stopped == [], "canceled by Cog, not by killing the instance"


async def test_a_terminal_status_is_shown_only_once_it_is_written(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET never shows ``succeeded`` before the status and its usage record have committed."""
    writes = api.services.predictions.writes
    commit = writes._commit

    async def slow_commit(batch: Any) -> None:
        await asyncio.sleep(0.2)
        await commit(batch)

    monkeypatch.setattr(writes, "_commit", slow_commit)
    body = await create(api, text="slow write")
    for _ in range(500):  # poll like a client would
        if (await status_of(api, body["id"]))["status"] == "succeeded":
            break
        await asyncio.sleep(0.01)
    async with api.services.db.session() as session:
        row = await session.scalar(select(UsageRow).where(UsageRow.prediction_id == body["id"]))
    assert row is not None, "succeeded was visible before its usage record was written"
