"""The gateway in front of real Cog 0.23.1 processes: one behaviour per predictor."""

import asyncio

import pytest

from server.predictions.status import Status
from tests.conftest import ADMIN_TOKEN
from tests.integration.conftest import Live, pid_alive

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def test_echo_end_to_end(live: Live) -> None:
    """A sync prediction through a real instance: output, logs, times, metrics."""
    body = await live.run("echo", {"text": "hello cog"})
    assert body["status"] == "succeeded"
    assert body["output"] == "hello cog"
    assert body["logs"] == "echoing hello cog\n"
    assert body["started_at"] is not None
    metrics = body["metrics"]
    assert isinstance(metrics, dict)
    assert 0 < metrics["predict_time"] <= metrics["total_time"]


async def test_typed_inputs_validated_by_the_gateway(live: Live) -> None:
    """The schema introspected from the predictor drives validation before dispatch."""
    ok = await live.run("typed", {"prompt": "p", "count": 3, "color": "green", "shout": True})
    assert ok["output"] == "P:3:0.5:GREEN"
    resp = await live.client.post(
        "/v1/models/test/typed/predictions",
        json={"input": {"count": 0, "temperature": 2, "color": "blue"}},
    )
    assert resp.status_code == 422
    fields = {(f["type"], f["field"]) for f in resp.json()["invalid_fields"]}
    assert fields == {
        ("required", "input"),
        ("number_gte", "input.count"),
        ("number_lte", "input.temperature"),
        ("enum", "input.color"),
    }


async def test_version_schema_comes_from_the_predictor(live: Live) -> None:
    """GET version returns the introspected OpenAPI document and the real cog version."""
    model = (await live.client.get("/v1/models/test/typed")).json()
    schema = model["latest_version"]["openapi_schema"]["components"]["schemas"]
    assert schema["Input"]["required"] == ["prompt"]
    assert schema["Input"]["properties"]["count"] == {
        "x-order": 1,
        "title": "Count",
        "type": "integer",
        "default": 1,
        "description": "1..10",
        "minimum": 1,
        "maximum": 10,
    }
    assert schema["color"]["enum"] == ["red", "green"]
    assert schema["Output"] == {"title": "Output", "type": "string"}
    assert model["latest_version"]["cog_version"] == "0.23.1"


async def test_predict_raises_fails_the_prediction(live: Live) -> None:
    """An exception in predict() is a failed prediction with the error; the next one works."""
    failed = await live.run("predict_raises", {"x": -1})
    assert failed["status"] == "failed"
    assert "x must be non-negative, got -1" in str(failed["error"])
    ok = await live.run("predict_raises", {"x": 21})
    assert (ok["status"], ok["output"]) == ("succeeded", 42)


async def test_setup_failure_fails_predictions_with_the_reason(live: Live) -> None:
    """setup() raising fails the queued predictions with its message, quickly; the version is
    marked failed, so the next create is a 422 that says why."""
    first = await live.run("setup_fails", {})
    assert first["status"] == "failed"
    assert "weights are missing" in str(first["error"])
    second = await live.client.post("/v1/models/test/setup_fails/predictions", json={"input": {}})
    assert second.status_code == 422
    assert "weights are missing" in second.json()["detail"]


async def test_cancel_a_running_prediction(live: Live) -> None:
    """Cancel reaches the Cog worker; the prediction ends canceled and the slot frees."""
    created = (
        await live.client.post("/v1/models/test/slow/predictions", json={"input": {"seconds": 30}})
    ).json()
    queued = (
        await live.client.post("/v1/models/test/slow/predictions", json={"input": {"seconds": 0.1}})
    ).json()
    account = await live.services.accounts.authenticate(ADMIN_TOKEN)
    p = await live.services.predictions.get(account, created["id"])
    while p.status is Status.STARTING:
        await live.services.predictions.wait(p, 0.05)
    behind = await live.services.predictions.get(account, queued["id"])
    assert behind.status is Status.STARTING  # one slot: it waits its turn
    resp = await live.client.post(f"/v1/predictions/{created['id']}/cancel")
    assert resp.status_code == 200
    assert resp.json()["status"] == "canceled"
    await live.services.predictions.wait(behind, 30)
    assert (behind.status, behind.output) == (Status.SUCCEEDED, "slept 0.1")


async def test_cancel_a_queued_prediction(live: Live) -> None:
    """A prediction still in the queue is canceled at once and never runs."""
    blocker = (
        await live.client.post("/v1/models/test/slow/predictions", json={"input": {"seconds": 30}})
    ).json()
    queued = (
        await live.client.post("/v1/models/test/slow/predictions", json={"input": {"seconds": 0.1}})
    ).json()
    resp = await live.client.post(f"/v1/predictions/{queued['id']}/cancel")
    body = resp.json()
    assert body["status"] == "canceled"
    assert body["started_at"] is None
    assert body["metrics"]["predict_time"] == 0
    await live.client.post(f"/v1/predictions/{blocker['id']}/cancel")


async def test_worker_crash_fails_one_prediction_and_recovers(live: Live) -> None:
    """A worker that dies mid-predict fails that prediction; the next one gets a new instance."""
    warm = await live.run("crash", {})
    assert warm["output"] == "alive"
    crashed = await live.run("crash", {"crash": True})
    assert crashed["status"] == "failed"
    assert str(crashed["error"]).startswith("Worker crashed: ")
    after = await live.run("crash", {})
    assert (after["status"], after["output"]) == ("succeeded", "alive")


async def test_concurrent_clients_on_one_slot_all_succeed(live: Live) -> None:
    """Twelve concurrent sync requests on a one-slot predictor queue; none sees a 409."""
    results = await asyncio.gather(*(live.run("echo", {"text": str(i)}) for i in range(12)))
    assert [r["output"] for r in results] == [str(i) for i in range(12)]
    assert {r["status"] for r in results} == {"succeeded"}


async def test_stopping_leaves_no_cog_process(live: Live) -> None:
    """Stopping the scheduler drains and kills every instance's process group."""
    await live.run("echo", {"text": "before stop"})
    pids = [i.pid for i in live.runtime._instances.values()]
    assert pids
    await live.services.scheduler.stop()
    assert [pid for pid in pids if pid_alive(pid)] == []
