"""Webhooks through the whole app over ASGI: URL policy, events, signing, retries, restarts.

The deliverer's HTTP client sits on an ``httpx.MockTransport`` that feeds a recording receiver,
so nothing leaves the process (the public IP in WEBHOOK is never contacted).
"""

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from server.app import Startup, create_app
from server.db import Database
from server.runtime.base import InstanceHandle
from server.runtime.cog_client import CogResult, EventHandler, InstanceAPI
from server.services import build_services
from server.settings import Settings
from server.webhooks import service as webhooks_service
from server.webhooks.tables import WebhookDeliveryRow
from tests.conftest import ADMIN_TOKEN, FIXTURES, Api, make_settings
from tests.fakes import FakeBuilder, FakeRuntime
from tests.webhook_receiver import REDIRECT_TARGET, Delivery, Receiver

pytestmark = pytest.mark.anyio

WEBHOOK = "https://1.1.1.1/hooks/replicate"
WAIT = {"Prefer": "wait"}
FAST_RETRIES = {"backoff_base": 0.02, "backoff_cap": 0.05, "retry_max_elapsed": 30}


async def open_hooked(
    settings: Settings, receiver: Receiver, runtime: FakeRuntime | None = None
) -> AsyncIterator[Api]:
    """``tests.conftest.open_api`` with the deliverer's HTTP client on ``receiver``."""
    runtime = runtime or FakeRuntime()
    http = httpx.AsyncClient(transport=receiver.transport())
    services = build_services(
        settings,
        runtime=runtime,
        builder=FakeBuilder(),
        client_factory=runtime.client_for,
        webhook_http=http,
    )
    app = create_app(services, Startup(models=[("acme/echo", FIXTURES / "echo")], warm=False))
    async with http, app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gw.test", headers=headers
        ) as client:
            admin = await services.accounts.authenticate(ADMIN_TOKEN)
            version = await services.models.resolve(admin, "acme/echo")
            yield Api(client, services, runtime, "acme/echo", version.id, transport)


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
async def hooked(tmp_path: Path, receiver: Receiver) -> AsyncIterator[Api]:
    """The app with fast retries, delivering to ``receiver``."""
    settings = make_settings(tmp_path, webhooks=FAST_RETRIES)
    async for api in open_hooked(settings, receiver):
        yield api


async def create(api: Api, input: dict[str, Any], **body: Any) -> dict[str, Any]:
    resp = await api.client.post(
        "/v1/predictions",
        json={"version": api.version_id, "input": input, "webhook": WEBHOOK, **body},
        headers=WAIT,
    )
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    return created


async def secret(api: Api) -> str:
    key: str = (await api.client.get("/v1/webhooks/default/secret")).json()["key"]
    return key


async def attempts(api: Api, prediction_id: str) -> list[dict[str, Any]]:
    """The admin view of the prediction's attempts, oldest first (after in-flight ones end)."""
    await api.services.deliverer.quiet()
    resp = await api.client.get("/v1/admin/webhooks", params={"prediction_id": prediction_id})
    assert resp.status_code == 200
    return list(reversed(resp.json()["results"]))


def statuses(deliveries: list[Delivery]) -> list[str]:
    return [d.json()["status"] for d in deliveries]


# -- the URL policy and the filter, at create time ---------------------------------------------


@pytest.mark.parametrize(
    ("webhook", "reason"),
    [
        ("ftp://1.1.1.1/hook", "http or https"),
        ("https://", "must have a host"),
        ("not a url", "http or https"),
        ("http://127.0.0.1:9999/hook", "loopback, private"),
        ("http://localhost:9999/hook", "loopback, private"),
        ("http://10.0.0.5/hook", "loopback, private"),
        ("http://169.254.169.254/latest/meta-data/", "loopback, private"),
        ("http://[::1]/hook", "loopback, private"),
    ],
)
async def test_refused_webhook_urls_are_422(hooked: Api, webhook: str, reason: str) -> None:
    """A webhook the gateway will not call is a 422 naming the field; nothing is created."""
    resp = await hooked.client.post(
        "/v1/predictions",
        json={"version": hooked.version_id, "input": {}, "webhook": webhook},
    )
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"
    fields = resp.json()["invalid_fields"]
    assert [(f["type"], f["field"]) for f in fields] == [("webhook_url", "webhook")]
    assert reason in fields[0]["description"]
    listed = (await hooked.client.get("/v1/predictions")).json()
    assert listed["results"] == []


async def test_private_urls_pass_when_allowed(tmp_path: Path, receiver: Receiver) -> None:
    """COGWAY_WEBHOOKS__ALLOW_PRIVATE_URLS=true lets loopback webhooks through (tests, labs)."""
    settings = make_settings(tmp_path, webhooks={"allow_private_urls": True})
    async for api in open_hooked(settings, receiver):
        body = await create(
            api, {}, webhook="http://127.0.0.1:9/hook", webhook_events_filter=["completed"]
        )
        got = await receiver.wait(lambda d: len(d) == 1)
        assert got[0].json()["id"] == body["id"]


@pytest.mark.parametrize("events", [["begin"], ["completed", "done"], "completed"])
async def test_bad_events_filter_is_422(hooked: Api, events: Any) -> None:
    """webhook_events_filter takes a list of start, output, logs, completed."""
    resp = await hooked.client.post(
        "/v1/predictions",
        json={"version": hooked.version_id, "webhook": WEBHOOK, "webhook_events_filter": events},
    )
    assert resp.status_code == 422
    fields = [f["field"] for f in resp.json()["invalid_fields"]]
    assert fields
    assert all(f.startswith("webhook_events_filter") for f in fields)


# -- delivery -----------------------------------------------------------------------------------


async def test_start_and_completed_are_signed_and_equal_get(
    hooked: Api, receiver: Receiver
) -> None:
    """start (at creation, status starting) then completed; each body is the prediction as GET
    showed it then, signed so the official client validates it, each with its own id."""
    body = await create(hooked, {"text": "hook"}, webhook_events_filter=["start", "completed"])
    got = await receiver.wait(lambda d: len(d) == 2)
    start, completed = got
    assert [d.path for d in got] == ["/hooks/replicate"] * 2
    assert start.json()["status"] == "starting"
    assert start.json()["id"] == body["id"]
    assert start.json()["output"] is None
    now = (await hooked.client.get(f"/v1/predictions/{body['id']}")).json()
    assert completed.json() == now
    assert now["output"] == "hook"
    assert now["webhook"] == WEBHOOK
    key = await secret(hooked)
    for d in got:
        d.validate(key)
        assert d.headers["content-type"] == "application/json"
        assert d.headers["webhook-signature"].startswith("v1,")
        assert d.id.startswith("msg_")
    assert start.id != completed.id


async def test_default_filter_sends_every_event(hooked: Api, receiver: Receiver) -> None:
    """Without a filter: start, then the logs as they come (status processing), then completed."""
    body = await create(hooked, {"text": "slowly", "seconds": 0.3})
    got = await receiver.wait(lambda d: len(d) >= 3 and d[-1].json()["status"] == "succeeded")
    assert statuses(got) == ["starting", "processing", "succeeded"]
    assert got[1].json()["logs"] == "echoing\n"
    events = [a["event"] for a in await attempts(hooked, body["id"])]
    assert events == ["start", "logs", "completed"]


async def test_completed_only_filter(hooked: Api, receiver: Receiver) -> None:
    """webhook_events_filter=["completed"] sends only the terminal webhook."""
    body = await create(hooked, {"text": "x", "seconds": 0.2}, webhook_events_filter=["completed"])
    await hooked.services.deliverer.quiet()
    got = await receiver.wait(lambda d: len(d) >= 1)
    assert statuses(got) == ["succeeded"]
    assert [a["event"] for a in await attempts(hooked, body["id"])] == ["completed"]


async def test_failed_and_canceled_are_completed_too(hooked: Api, receiver: Receiver) -> None:
    """failed and canceled predictions get their completed webhook like succeeded ones."""
    await create(hooked, {"text": "fail"}, webhook_events_filter=["completed"])
    resp = await hooked.client.post(
        "/v1/predictions",
        json={
            "version": hooked.version_id,
            "input": {"seconds": 30},
            "webhook": WEBHOOK,
            "webhook_events_filter": ["completed"],
        },
    )
    await hooked.client.post(f"/v1/predictions/{resp.json()['id']}/cancel")
    got = await receiver.wait(lambda d: len(d) == 2)
    assert sorted(statuses(got)) == ["canceled", "failed"]


async def test_completed_is_retried_with_the_same_id(hooked: Api, receiver: Receiver) -> None:
    """500, 500, 500, 200: four attempts of one message, one webhook-id, each validly signed;
    the admin endpoint lists every attempt."""
    receiver.script = [500, 500, 500]
    body = await create(hooked, {"text": "retry me"}, webhook_events_filter=["completed"])
    got = await receiver.wait(lambda d: len(d) == 4)
    assert len({d.id for d in got}) == 1
    assert len({d.body for d in got}) == 1
    key = await secret(hooked)
    for d in got:
        d.validate(key)
    log = await attempts(hooked, body["id"])
    assert [(a["attempt"], a["status_code"], a["error"]) for a in log] == [
        (1, 500, "HTTP 500"),
        (2, 500, "HTTP 500"),
        (3, 500, "HTTP 500"),
        (4, 200, None),
    ]
    assert {(a["webhook_id"], a["state"], a["event"], a["url"]) for a in log} == {
        (got[0].id, "delivered", "completed", WEBHOOK)
    }
    assert all(a["duration"] >= 0 and a["created_at"].endswith("Z") for a in log)


async def test_redirects_are_failures_and_not_followed(tmp_path: Path, receiver: Receiver) -> None:
    """A 3xx is a failed attempt; the Location is never requested; retries end in failed."""
    receiver.status = 302
    settings = make_settings(tmp_path, webhooks={**FAST_RETRIES, "retry_max_attempts": 2})
    async for api in open_hooked(settings, receiver):
        body = await create(api, {}, webhook_events_filter=["completed"])
        got = await receiver.wait(lambda d: len(d) == 2)
        log = await attempts(api, body["id"])
    assert REDIRECT_TARGET not in [d.path for d in got]
    assert [(a["status_code"], a["error"], a["state"]) for a in log] == [
        (302, "redirect not followed", "failed"),
        (302, "redirect not followed", "failed"),
    ]


async def test_intermediate_events_are_not_retried(hooked: Api, receiver: Receiver) -> None:
    """A failed start webhook is recorded and not tried again (only completed is retried)."""
    receiver.script = [503]
    body = await create(hooked, {}, webhook_events_filter=["start", "completed"])
    await receiver.wait(lambda d: len(d) == 2)
    log = await attempts(hooked, body["id"])
    assert [(a["event"], a["status_code"], a["state"]) for a in log] == [
        ("start", 503, "failed"),
        ("completed", 200, "delivered"),
    ]


async def test_intermediate_retries_when_configured(tmp_path: Path, receiver: Receiver) -> None:
    """INTERMEDIATE_ATTEMPTS=2 retries a failed start once; completed waits its turn."""
    receiver.script = [500]
    webhooks = {**FAST_RETRIES, "intermediate_attempts": 2}
    async for api in open_hooked(make_settings(tmp_path, webhooks=webhooks), receiver):
        body = await create(api, {}, webhook_events_filter=["start", "completed"])
        got = await receiver.wait(lambda d: len(d) == 3)
        log = await attempts(api, body["id"])
    assert statuses(got) == ["starting", "starting", "succeeded"]
    assert got[0].id == got[1].id
    assert [(a["event"], a["attempt"], a["status_code"]) for a in log] == [
        ("start", 1, 500),
        ("start", 2, 200),
        ("completed", 1, 200),
    ]


async def test_completion_supersedes_a_pending_logs_retry(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A logs webhook waiting for its retry is dropped when the prediction completes; the
    completed webhook does not wait for it."""
    receiver.script = [200, 500]  # start delivered, logs fails
    webhooks = {"intermediate_attempts": 3, "backoff_base": 30.0, "backoff_cap": 30.0}
    async for api in open_hooked(make_settings(tmp_path, webhooks=webhooks), receiver):
        body = await create(api, {"seconds": 0.3})
        got = await receiver.wait(lambda d: len(d) == 3)
        log = await attempts(api, body["id"])
    assert statuses(got) == ["starting", "processing", "succeeded"]
    assert [(a["event"], a["status_code"], a["state"]) for a in log] == [
        ("start", 200, "delivered"),
        ("logs", 500, "superseded"),
        ("completed", 200, "delivered"),
    ]


async def test_logs_never_overtake_the_start_webhook(tmp_path: Path, receiver: Receiver) -> None:
    """A prediction that starts and logs before the deliverer has looked at the outbox (here it
    is stopped meanwhile; under load it is merely late): its start webhook still goes first."""
    async for api in open_hooked(make_settings(tmp_path), receiver):
        deliverer = api.services.deliverer
        await deliverer.stop()
        resp = await api.client.post(
            "/v1/predictions",
            json={"version": api.version_id, "input": {"seconds": 0.3}, "webhook": WEBHOOK},
        )
        prediction_id = resp.json()["id"]
        loop = asyncio.get_running_loop()
        end = loop.time() + 5
        while not (await api.client.get(f"/v1/predictions/{prediction_id}")).json()["logs"]:
            assert loop.time() < end, "it never logged"
            await asyncio.sleep(0.01)
        await deliverer.start()
        got = await receiver.wait(lambda d: len(d) == 3)
    assert statuses(got) == ["starting", "processing", "succeeded"]


# -- throttling ---------------------------------------------------------------------------------


class Ticking:
    """An instance that logs a line every ``every`` seconds for ``ticks`` lines."""

    def __init__(self, inner: InstanceAPI, ticks: int, every: float) -> None:
        self.inner, self.ticks, self.every = inner, ticks, every

    async def health(self) -> dict[str, Any]:
        return await self.inner.health()

    async def predict(
        self, prediction_id: str, input: dict[str, Any], on_event: EventHandler
    ) -> CogResult:
        await on_event("start", {"id": prediction_id, "status": "processing"})
        for i in range(self.ticks):
            await on_event("log", {"data": f"tick {i}\n", "source": "stdout"})
            await asyncio.sleep(self.every)
        logs = "".join(f"tick {i}\n" for i in range(self.ticks))
        return CogResult("succeeded", "done", logs, None, {"predict_time": 1.0})

    async def cancel(self, prediction_id: str) -> bool:
        return await self.inner.cancel(prediction_id)

    async def shutdown(self) -> None:
        await self.inner.shutdown()

    def close(self) -> None:
        self.inner.close()


class TickingRuntime(FakeRuntime):
    def client_for(self, handle: InstanceHandle) -> InstanceAPI:
        return Ticking(super().client_for(handle), ticks=60, every=0.025)


async def test_logs_are_throttled_to_half_a_second(tmp_path: Path, receiver: Receiver) -> None:
    """60 log lines over 1.5 s become a few logs webhooks at least 0.5 s apart, each with the
    logs so far; completed follows, and nothing after it."""
    settings = make_settings(tmp_path)
    async for api in open_hooked(settings, receiver, TickingRuntime()):
        body = await create(api, {}, webhook_events_filter=["logs", "completed"])
        assert body["status"] == "succeeded"
        await receiver.wait(lambda d: any(x.json()["status"] == "succeeded" for x in d))
        await api.services.deliverer.quiet()
    got = receiver.deliveries
    logs, completed = got[:-1], got[-1]
    assert statuses(logs) == ["processing"] * len(logs)
    assert 2 <= len(logs) <= 10  # coalesced: 60 lines, a webhook per half second
    gaps = [b.at - a.at for a, b in itertools.pairwise(logs)]
    assert min(gaps) >= 0.5
    texts = [d.json()["logs"] for d in logs]
    assert all(b.startswith(a) and len(b) > len(a) for a, b in itertools.pairwise(texts))
    assert completed.json()["logs"] == "".join(f"tick {i}\n" for i in range(60))


# -- restarts -----------------------------------------------------------------------------------


async def test_restart_resumes_a_completed_webhook_being_retried(tmp_path: Path) -> None:
    """The receiver is down while the gateway retries; after a restart the same message (same
    id, same body) is delivered once the receiver is back."""
    settings = make_settings(tmp_path, webhooks={**FAST_RETRIES, "backoff_cap": 0.2})
    down = Receiver(status=500)
    async for api in open_hooked(settings, down):
        body = await create(api, {"text": "durable"}, webhook_events_filter=["completed"])
        await down.wait(lambda d: len(d) >= 2)
    database = Database(settings.resolved_database_url())
    async with database.session() as session:
        row = (await session.scalars(select(WebhookDeliveryRow))).one()
    await database.dispose()
    assert (row.prediction_id, row.state, row.event) == (body["id"], "pending", "completed")
    up = Receiver()
    async for api in open_hooked(settings, up):
        got = await up.wait(lambda d: len(d) == 1)
        assert got[0].id == down.deliveries[0].id
        assert got[0].body == down.deliveries[0].body
        got[0].validate(await secret(api))
        log = await attempts(api, body["id"])
    assert [a["status_code"] for a in log] == [500] * len(down.deliveries) + [200]
    assert log[-1]["state"] == "delivered"


async def test_restart_keeps_the_base_url_of_creation(tmp_path: Path) -> None:
    """A prediction queued at shutdown completes after the restart; its webhook still renders
    the URLs of the request that created it. One canceled by the shutdown is delivered then."""
    settings = make_settings(
        tmp_path,
        runtime={"drain_timeout": 0.05, "stop_grace": 0.05, "env_cache_dir": tmp_path},
    )
    first = Receiver()
    async for api in open_hooked(settings, first):
        filter_ = ["completed"]
        running = (
            await api.client.post(
                "/v1/predictions",
                json={"version": api.version_id, "input": {"seconds": 60}, "webhook": WEBHOOK},
            )
        ).json()
        queued = (
            await api.client.post(
                "/v1/predictions",
                json={
                    "version": api.version_id,
                    "input": {"text": "after restart"},
                    "webhook": WEBHOOK,
                    "webhook_events_filter": filter_,
                },
            )
        ).json()
        await first.wait(lambda d: len(d) >= 1)  # running's start webhook
    # The shutdown canceled the running prediction and delivered its completed webhook.
    assert statuses(first.deliveries)[-1] == "canceled"
    assert first.deliveries[-1].json()["id"] == running["id"]
    assert queued["id"] not in [d.json()["id"] for d in first.deliveries]
    second = Receiver()
    async for api in open_hooked(settings, second):  # default base here: http://127.0.0.1:8000
        got = await second.wait(lambda d: len(d) == 1)
        now = (await api.client.get(f"/v1/predictions/{queued['id']}")).json()
    assert got[0].json() == now
    assert now["output"] == "after restart"
    assert now["urls"]["get"] == f"http://gw.test/v1/predictions/{queued['id']}"


# -- the admin endpoint -------------------------------------------------------------------------


async def test_admin_endpoint_is_admin_only(hooked: Api) -> None:
    """Other accounts get 403 problem+json."""
    token = await hooked.services.accounts.create_token("bob")
    resp = await hooked.client.get(
        "/v1/admin/webhooks", headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status_code == 403
    assert resp.headers["content-type"] == "application/problem+json"


async def test_admin_endpoint_pages_keep_the_prediction_filter(
    hooked: Api, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attempts come newest first, a page at a time; next links keep prediction_id."""
    monkeypatch.setattr(webhooks_service, "ATTEMPTS_PAGE", 2)
    other = await create(hooked, {}, webhook_events_filter=["completed"])
    await receiver.wait(lambda d: len(d) == 1)
    receiver.script = [500, 500]
    body = await create(hooked, {}, webhook_events_filter=["completed"])
    await receiver.wait(lambda d: len(d) == 4)
    await hooked.services.deliverer.quiet()
    url: str | None = f"/v1/admin/webhooks?prediction_id={body['id']}"
    pages = []
    while url:
        page = (await hooked.client.get(url)).json()
        pages.append(page["results"])
        url = page["next"]
        if url:
            assert url.startswith("http://gw.test/v1/admin/webhooks?prediction_id=")
    assert [[(a["prediction_id"], a["attempt"]) for a in p] for p in pages] == [
        [(body["id"], 3), (body["id"], 2)],
        [(body["id"], 1)],
    ]
    everything = (await hooked.client.get("/v1/admin/webhooks")).json()
    assert [a["prediction_id"] for a in everything["results"]] == [body["id"]] * 2
    assert everything["next"] is not None
    assert other["id"] != body["id"]
