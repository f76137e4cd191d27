"""The predictions API contract over ASGI, with a fake runtime behind the scheduler."""

from pathlib import Path

import pytest
from sqlalchemy import select, update

from server.db import Database
from server.predictions.service import INTERRUPTED
from server.predictions.status import Status
from server.predictions.tables import PredictionRow
from server.runtime.cog_client import CogResult
from tests.conftest import ADMIN_TOKEN, Api, make_settings, open_api
from tests.fakes import FakeRuntime

pytestmark = pytest.mark.anyio

WAIT = {"Prefer": "wait"}


async def test_sync_create_returns_the_finished_prediction(api: Api) -> None:
    """Prefer: wait holds the request until the prediction is terminal."""
    resp = await api.client.post(
        "/v1/predictions",
        json={"version": api.version_id, "input": {"text": "ab", "count": 2}},
        headers=WAIT,
    )
    assert resp.status_code == 201
    assert resp.headers["preference-applied"] == "wait=60"
    body = resp.json()
    assert body["status"] == "succeeded"
    assert body["output"] == "abab"
    assert body["logs"] == "echoing\n"
    assert body["model"] == "acme/echo"
    assert body["version"] == api.version_id
    assert body["input"] == {"text": "ab", "count": 2}
    assert body["urls"]["get"] == f"http://gw.test/v1/predictions/{body['id']}"
    assert body["urls"]["cancel"] == f"http://gw.test/v1/predictions/{body['id']}/cancel"
    assert set(body["metrics"]) >= {"predict_time", "total_time"}
    assert body["created_at"].endswith("Z")
    assert body["completed_at"].endswith("Z")
    assert len(body["id"]) == 26


async def test_urls_follow_the_host_and_scheme_the_client_used(api: Api) -> None:
    """The base URL is remembered per Host header and scheme, never mixed up between them."""
    seen = []
    for host in ["gw.test", "other.test:8443", "gw.test", "other.test:8443"]:
        resp = await api.client.post(
            "/v1/predictions",
            json={"version": api.version_id, "input": {"text": "ab"}},
            headers={"Host": host},
        )
        assert resp.status_code == 201
        seen.append(resp.json()["urls"]["get"].rsplit("/v1/", 1)[0])
    assert seen == ["http://gw.test", "http://other.test:8443"] * 2
    secure = await api.client.post(
        "https://gw.test/v1/predictions", json={"version": api.version_id, "input": {"text": "a"}}
    )
    assert secure.json()["urls"]["get"].startswith("https://gw.test/v1/predictions/")


async def test_async_create_then_poll(api: Api) -> None:
    """Without Prefer the create returns at once with status starting; GET shows the result."""
    resp = await api.client.post(
        "/v1/models/acme/echo/predictions", json={"input": {"text": "x", "seconds": 0.05}}
    )
    assert resp.status_code == 201
    created = resp.json()
    assert created["status"] == "starting"
    assert created["output"] is None
    p = await api.services.predictions.get(
        await api.services.accounts.authenticate(ADMIN_TOKEN), created["id"]
    )
    await api.services.predictions.wait(p, 5)
    got = (await api.client.get(f"/v1/predictions/{created['id']}")).json()
    assert got["status"] == "succeeded"
    assert got["output"] == "x"
    assert got["started_at"] is not None


@pytest.mark.parametrize(
    "ref",
    ["{version}", "acme/echo:{version}", "acme/echo"],
    ids=["bare-id", "owner-name-id", "owner-name"],
)
async def test_version_forms(api: Api, ref: str) -> None:
    """version may be a bare id, owner/name:id, or owner/name (the latest version)."""
    resp = await api.client.post(
        "/v1/predictions",
        json={"version": ref.format(version=api.version_id), "input": {}},
        headers=WAIT,
    )
    assert resp.status_code == 201
    assert resp.json()["output"] == "hi"


async def test_sync_timeout_returns_starting_without_output(api: Api) -> None:
    """When wait=N runs out, the prediction comes back as starting with output null."""
    resp = await api.client.post(
        "/v1/predictions",
        json={"version": api.version_id, "input": {"seconds": 30}},
        headers={"Prefer": "wait=1"},
    )
    body = resp.json()
    assert resp.headers["preference-applied"] == "wait=1"
    assert body["status"] == "starting"
    assert body["output"] is None
    cancel = await api.client.post(f"/v1/predictions/{body['id']}/cancel")
    assert cancel.json()["status"] == "canceled"


async def test_failed_prediction_carries_error(api: Api) -> None:
    """A predictor error is a failed prediction (HTTP 201), not an HTTP error."""
    resp = await api.client.post(
        "/v1/predictions",
        json={"version": api.version_id, "input": {"text": "fail"}},
        headers=WAIT,
    )
    body = resp.json()
    assert body["status"] == "failed"
    assert body["error"] == "ValueError: fail"
    assert body["output"] is None


async def test_cancel_running_prediction(api: Api) -> None:
    """Cancel is forwarded to the instance; the prediction ends canceled with times set."""
    created = (
        await api.client.post(
            "/v1/predictions", json={"version": api.version_id, "input": {"seconds": 30}}
        )
    ).json()
    account = await api.services.accounts.authenticate(ADMIN_TOKEN)
    p = await api.services.predictions.get(account, created["id"])
    while p.status is Status.STARTING:  # the fake starts it on the next loop turns
        await api.services.predictions.wait(p, 0.01)
    resp = await api.client.post(f"/v1/predictions/{created['id']}/cancel")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "canceled"
    assert body["completed_at"] is not None
    assert "predict_time" in body["metrics"]
    again = await api.client.post(f"/v1/predictions/{created['id']}/cancel")
    assert again.status_code == 200
    assert again.json()["status"] == "canceled"


async def test_cancel_with_json_content_type_and_no_body(api: Api) -> None:
    """JS sends Content-Type: application/json on a body-less cancel; that must work."""
    created = (
        await api.client.post(
            "/v1/predictions", json={"version": api.version_id, "input": {"seconds": 30}}
        )
    ).json()
    resp = await api.client.post(
        f"/v1/predictions/{created['id']}/cancel",
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 200
    assert resp.json()["status"] in ("canceled", "processing", "starting")
    await api.client.post(f"/v1/predictions/{created['id']}/cancel")


async def test_list_is_paginated_newest_first_with_absolute_urls(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET /v1/predictions pages with absolute next/previous URLs."""
    monkeypatch.setattr("server.pagination.PAGE_SIZE", 2)
    ids = []
    for i in range(5):
        resp = await api.client.post(
            "/v1/predictions",
            json={"version": api.version_id, "input": {"text": str(i)}},
            headers=WAIT,
        )
        ids.append(resp.json()["id"])
    seen: list[str] = []
    url: str | None = "/v1/predictions"
    pages = []
    while url:
        page = (await api.client.get(url)).json()
        pages.append(page)
        seen += [p["id"] for p in page["results"]]
        url = page["next"]
        if url:
            assert url.startswith("http://gw.test/v1/predictions?cursor=")
    assert seen == list(reversed(ids))
    assert [len(p["results"]) for p in pages] == [2, 2, 1]
    assert pages[0]["previous"] is None
    back = (await api.client.get(pages[1]["previous"])).json()
    assert [p["id"] for p in back["results"]] == [p["id"] for p in pages[0]["results"]]


async def test_other_accounts_prediction_is_not_found(api: Api) -> None:
    """A prediction is visible only to the account that created it."""
    created = (
        await api.client.post(
            "/v1/predictions", json={"version": api.version_id, "input": {}}, headers=WAIT
        )
    ).json()
    other = await api.services.accounts.create_token("mallory")
    headers = {"Authorization": f"Bearer {other}"}
    resp = await api.client.get(f"/v1/predictions/{created['id']}", headers=headers)
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"
    cancel = await api.client.post(f"/v1/predictions/{created['id']}/cancel", headers=headers)
    assert cancel.status_code == 404
    listed = (await api.client.get("/v1/predictions", headers=headers)).json()
    assert listed["results"] == []


async def test_restart_resumes_queued_and_fails_interrupted(tmp_path: Path) -> None:
    """A gateway restart dispatches queued predictions again and fails the one that was running."""
    settings = make_settings(
        tmp_path,
        runtime={"drain_timeout": 0.05, "stop_grace": 0.05, "env_cache_dir": tmp_path},
        metering={"enabled": False},  # the simulated crash below re-opens a finished row
    )
    async for api in open_api(settings, FakeRuntime()):
        running = (
            await api.client.post(
                "/v1/predictions", json={"version": api.version_id, "input": {"seconds": 60}}
            )
        ).json()
        queued = (
            await api.client.post(
                "/v1/predictions", json={"version": api.version_id, "input": {"text": "later"}}
            )
        ).json()
        account = await api.services.accounts.authenticate(ADMIN_TOKEN)
        first = await api.services.predictions.get(account, running["id"])
        while first.status is Status.STARTING:
            await api.services.predictions.wait(first, 0.01)
    # A clean shutdown cancels what outlives the drain timeout; the queued one stays queued.
    database = Database(settings.resolved_database_url())
    async with database.session() as session:
        rows = {r.id: r.status for r in (await session.execute(select(PredictionRow))).scalars()}
        assert rows == {running["id"]: "canceled", queued["id"]: "starting"}
        # As if the gateway had died instead: the running prediction is left processing.
        await session.execute(
            update(PredictionRow)
            .where(PredictionRow.id == running["id"])
            .values(status="processing", completed_at=None)
        )
        await session.commit()
    await database.dispose()
    async for api in open_api(settings, FakeRuntime()):
        account = await api.services.accounts.authenticate(ADMIN_TOKEN)
        resumed = await api.services.predictions.get(account, queued["id"])
        await api.services.predictions.wait(resumed, 5)
        assert (resumed.status, resumed.output) == (Status.SUCCEEDED, "later")
        interrupted = (await api.client.get(f"/v1/predictions/{running['id']}")).json()
        assert interrupted["status"] == "failed"
        assert interrupted["error"] == INTERRUPTED


async def test_late_and_duplicate_events_change_nothing(api: Api) -> None:
    """After a terminal status, a repeated completion or a late start is ignored."""
    body = (
        await api.client.post(
            "/v1/predictions",
            json={"version": api.version_id, "input": {"text": "once"}},
            headers=WAIT,
        )
    ).json()
    predictions = api.services.predictions
    predictions._live[body["id"]] = await predictions._load(body["id"])  # type: ignore[assignment]
    await predictions.started(body["id"])
    await predictions.progress(body["id"], "log", {"data": "late log\n"})
    await predictions.completed(body["id"], CogResult("failed", error="a second terminal"))
    after = (await api.client.get(f"/v1/predictions/{body['id']}")).json()
    assert after == body
