"""Webhooks end to end: real Cog predictors, a real HTTP receiver on loopback (aiohttp), the
official client's signature check, and a gateway process killed while it retries."""

import itertools
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.app import Startup, create_app
from server.runtime.local import LocalRuntime
from server.services import Services, build_services
from tests.conftest import FIXTURES, ROOT, make_settings, serving
from tests.integration.gateway import run_gateway
from tests.webhook_receiver import Delivery, Receiver, loopback_server

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

WEBHOOKS = {
    "allow_private_urls": True,  # the receiver is on loopback
    "backoff_base": 0.1,
    "backoff_cap": 0.5,
    "retry_max_elapsed": 120,
}


@dataclass
class Hooked:
    client: httpx.AsyncClient
    services: Services
    receiver: Receiver
    url: str
    """The receiver's base URL."""

    async def create(self, model: str, input: dict[str, Any], **body: Any) -> dict[str, Any]:
        resp = await self.client.post(
            f"/v1/models/test/{model}/predictions",
            json={"input": input, **body},
            headers={"Prefer": "wait=30"},
        )
        assert resp.status_code == 201, resp.text
        created: dict[str, Any] = resp.json()
        return created


@pytest.fixture(scope="module")
def module_receiver() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()
    with loopback_server(receiver) as url:
        yield receiver, url


@pytest.fixture(scope="module")
async def hooked(
    tmp_path_factory: pytest.TempPathFactory, module_receiver: tuple[Receiver, str]
) -> AsyncIterator[Hooked]:
    """One in-process gateway (over ASGI) with real Cog instances of echo and ticker."""
    receiver, url = module_receiver
    settings = make_settings(tmp_path_factory.mktemp("hooked"), webhooks=WEBHOOKS)
    services = build_services(settings, runtime=LocalRuntime())
    models = [(f"test/{name}", FIXTURES / name) for name in ("echo", "ticker")]
    app = create_app(services, Startup(models=models, warm=False))
    async with serving(app) as client:
        yield Hooked(client, services, receiver, url)


def at(path: str) -> Any:
    """A check for Receiver.wait: the deliveries that arrived at ``path``."""
    return lambda deliveries: [d for d in deliveries if d.path == path]


def arrived(receiver: Receiver, path: str) -> list[Delivery]:
    return [d for d in receiver.deliveries if d.path == path]


async def test_completed_webhook_survives_three_failures(hooked: Hooked) -> None:
    """A receiver answering 500 three times, then 200, gets the completed webhook four times
    with one webhook-id; every copy verifies with replicate.webhooks.validate and the body is
    what GET returns; the admin endpoint lists the four attempts."""
    hooked.receiver.script = [500, 500, 500]
    body = await hooked.create(
        "echo",
        {"text": "through the storm"},
        webhook=f"{hooked.url}/retry",
        webhook_events_filter=["completed"],
    )
    got = await hooked.receiver.wait(lambda d: len(at("/retry")(d)) == 4, timeout=30)
    got = [d for d in got if d.path == "/retry"]
    key = (await hooked.client.get("/v1/webhooks/default/secret")).json()["key"]
    for delivery in got:
        delivery.validate(key)
    assert len({d.id for d in got}) == 1
    now = (await hooked.client.get(f"/v1/predictions/{body['id']}")).json()
    assert now["output"] == "through the storm"
    assert all(d.json() == now for d in got)
    await hooked.services.deliverer.quiet()
    resp = await hooked.client.get("/v1/admin/webhooks", params={"prediction_id": body["id"]})
    log = list(reversed(resp.json()["results"]))
    assert [(a["attempt"], a["status_code"], a["state"]) for a in log] == [
        (1, 500, "delivered"),
        (2, 500, "delivered"),
        (3, 500, "delivered"),
        (4, 200, "delivered"),
    ]
    assert {a["webhook_id"] for a in log} == {got[0].id}
    assert {a["url"] for a in log} == {f"{hooked.url}/retry"}


async def test_filter_and_throttle_with_an_iterator(hooked: Hooked) -> None:
    """Output events of a real iterator (40 items over ~2 s) arrive as output webhooks at
    least 0.5 s apart, outputs only growing; logs were filtered out; completed comes last."""
    body = await hooked.create(
        "ticker",
        {"count": 40, "every": 0.05},
        webhook=f"{hooked.url}/ticker",
        webhook_events_filter=["output", "completed"],
    )
    assert body["status"] == "succeeded"
    await hooked.receiver.wait(
        lambda d: any(x.json()["status"] == "succeeded" for x in at("/ticker")(d)), timeout=30
    )
    await hooked.services.deliverer.quiet()
    got = arrived(hooked.receiver, "/ticker")
    outputs, completed = got[:-1], got[-1]
    assert completed.json()["output"] == [f"t{i}" for i in range(40)]
    assert [d.json()["status"] for d in outputs] == ["processing"] * len(outputs)
    assert 2 <= len(outputs) <= 12  # coalesced: 40 outputs, a webhook per half second
    gaps = [b.at - a.at for a, b in itertools.pairwise(outputs)]
    assert min(gaps) >= 0.5
    seen = [d.json()["output"] for d in outputs]
    assert all(len(b) > len(a) and b[: len(a)] == a for a, b in itertools.pairwise(seen))
    events = (
        await hooked.client.get("/v1/admin/webhooks", params={"prediction_id": body["id"]})
    ).json()["results"]
    assert {a["event"] for a in events} == {"output", "completed"}


async def test_start_only_filter(hooked: Hooked) -> None:
    """webhook_events_filter=["start"]: one webhook, at creation, nothing at completion."""
    body = await hooked.create(
        "echo", {"text": "s"}, webhook=f"{hooked.url}/start", webhook_events_filter=["start"]
    )
    assert body["status"] == "succeeded"
    await hooked.receiver.wait(lambda d: len(at("/start")(d)) >= 1)
    await hooked.services.deliverer.quiet()
    got = arrived(hooked.receiver, "/start")
    assert [d.json()["status"] for d in got] == ["starting"]
    assert got[0].json()["id"] == body["id"]


def wait_until_recorded(url: str, auth: dict[str, str], prediction_id: str) -> None:
    """Poll the admin endpoint until the newest attempt says delivered (it is written just
    after the receiver answered)."""
    deadline = time.monotonic() + 15
    while True:
        page = httpx.get(
            f"{url}/v1/admin/webhooks", params={"prediction_id": prediction_id}, headers=auth
        ).json()
        if page["results"] and page["results"][0]["status_code"] == 200:
            return
        assert time.monotonic() < deadline, page
        time.sleep(0.05)


def test_gateway_killed_while_retrying_delivers_after_restart(tmp_path: Path) -> None:
    """kill -9 while the completed webhook is being retried; after the restart the same
    message is delivered once the receiver is back; `cogway webhooks` shows every attempt."""
    receiver = Receiver(status=503)
    env = {f"COGWAY_WEBHOOKS__{k.upper()}": str(v).lower() for k, v in WEBHOOKS.items()}
    data = tmp_path / "gw"
    models = {"acme/echo": FIXTURES / "echo"}
    with loopback_server(receiver) as url:
        with run_gateway(data, models, env=env) as gw:
            auth = {"Authorization": f"Bearer {gw.token}"}
            body = httpx.post(
                f"{gw.url}/v1/models/acme/echo/predictions",
                json={
                    "input": {"text": "kept"},
                    "webhook": f"{url}/hook",
                    "webhook_events_filter": ["completed"],
                },
                headers={**auth, "Prefer": "wait=30"},
                timeout=60,
            ).json()
            assert body["status"] == "succeeded"
            receiver.wait_for(lambda d: len(d) >= 3, timeout=30)
            gw.proc.send_signal(signal.SIGKILL)
            gw.proc.wait()
        failed = receiver.deliveries
        receiver.status = 200
        with run_gateway(data, models, env=env) as gw:
            auth = {"Authorization": f"Bearer {gw.token}"}
            got = receiver.wait_for(lambda d: len(d) > len(failed), timeout=60)
            key = httpx.get(f"{gw.url}/v1/webhooks/default/secret", headers=auth).json()["key"]
            wait_until_recorded(gw.url, auth, body["id"])
            remote = ["--url", gw.url, "--token", gw.token]
            cogway = [sys.executable, "-m", "server", "webhooks", body["id"], *remote]
            cli = subprocess.run(
                [*cogway, "--format", "json"], cwd=ROOT, capture_output=True, text=True, timeout=60
            )
            table = subprocess.run(cogway, cwd=ROOT, capture_output=True, text=True, timeout=60)
    delivered = got[len(failed) :]
    assert [d.id for d in delivered] == [failed[0].id]
    assert {d.id for d in failed} == {failed[0].id}
    delivered[0].validate(key)
    assert delivered[0].body == failed[0].body
    webhook = delivered[0].json()
    assert (webhook["id"], webhook["status"], webhook["output"]) == (
        body["id"],
        "succeeded",
        "kept",
    )
    assert cli.returncode == 0, cli.stderr
    log = json.loads(cli.stdout)
    # Attempts cut short by the kill may be missing from the log, never the outcome.
    assert [a["status_code"] for a in log][-1] == 200
    assert set([a["status_code"] for a in log][:-1]) <= {503}
    assert len(log) >= 3  # at least two recorded failures, then the success
    assert {a["state"] for a in log} == {"delivered"}
    assert [a["attempt"] for a in log] == list(range(1, len(log) + 1))
    assert table.returncode == 0, table.stderr
    assert "delivered" in table.stdout
