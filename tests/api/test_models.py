"""Models, versions, hardware and account endpoints."""

import asyncio
from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN, Api

pytestmark = pytest.mark.anyio


async def test_get_model_with_latest_version(api: Api) -> None:
    """The model object carries what the official clients require."""
    await api.client.post("/v1/models/acme/echo/predictions", json={}, headers={"Prefer": "wait"})
    body = (await api.client.get("/v1/models/acme/echo")).json()
    assert body["owner"] == "acme"
    assert body["name"] == "echo"
    assert body["visibility"] == "public"
    assert body["url"] == "http://gw.test/v1/models/acme/echo"
    assert body["run_count"] == 1
    assert body["default_example"] is None
    assert body["latest_version"]["id"] == api.version_id


async def test_list_models_and_versions(api: Api) -> None:
    models = (await api.client.get("/v1/models")).json()
    assert [m["name"] for m in models["results"]] == ["echo"]
    assert models["next"] is None
    versions = (await api.client.get("/v1/models/acme/echo/versions")).json()
    assert [v["id"] for v in versions["results"]] == [api.version_id]


async def test_get_version_has_schema_and_cog_version(api: Api) -> None:
    body = (await api.client.get(f"/v1/models/acme/echo/versions/{api.version_id}")).json()
    assert body["id"] == api.version_id
    assert body["cog_version"] == "0.23.1"
    assert set(body["openapi_schema"]["components"]["schemas"]) >= {"Input", "Output"}
    assert body["created_at"].endswith("Z")


async def test_unknown_model_and_version_are_404(api: Api) -> None:
    assert (await api.client.get("/v1/models/acme/nope")).status_code == 404
    resp = await api.client.get(f"/v1/models/acme/echo/versions/{'0' * 64}")
    assert resp.status_code == 404


async def test_hardware_is_a_bare_array(api: Api) -> None:
    assert (await api.client.get("/v1/hardware")).json() == [{"sku": "cpu", "name": "CPU"}]


async def test_account(api: Api) -> None:
    assert (await api.client.get("/v1/account")).json() == {
        "type": "user",
        "username": "admin",
        "name": "admin",
        "github_url": None,
    }


async def test_webhook_secret_is_stable_per_account(api: Api) -> None:
    """GET /v1/webhooks/default/secret: whsec_…, the same on every call, one per account."""
    first = (await api.client.get("/v1/webhooks/default/secret")).json()
    again = (await api.client.get("/v1/webhooks/default/secret")).json()
    assert first == again
    assert first["key"].startswith("whsec_")
    bob = await api.services.accounts.create_token("bob")
    other = await api.client.get(
        "/v1/webhooks/default/secret", headers={"Authorization": f"Bearer {bob}"}
    )
    assert other.json()["key"] != first["key"]


async def test_requests_that_find_the_latest_version_expired_share_one_load(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 16 clients each expiry of a model's cached latest version used to send 16 requests
    to the database at once; now one loads it and the others wait for that load."""
    models = api.services.models
    account = await api.services.accounts.authenticate(ADMIN_TOKEN)
    loads = 0
    find_model = models.find_model

    async def counting_find_model(owner: str, name: str) -> Any:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.01)  # a query in flight while the others arrive
        return await find_model(owner, name)

    monkeypatch.setattr(models, "find_model", counting_find_model)
    models._forget_latest()  # as when the TTL has passed
    found = await asyncio.gather(*(models.resolve(account, "acme/echo") for _ in range(16)))
    assert {info.id for info in found} == {api.version_id}
    assert loads == 1
    await models.resolve(account, "acme/echo")  # cached now
    assert loads == 1
    # A change while a load is in flight: that load's answer is not kept (it may be stale).
    models._forget_latest()
    pending = asyncio.ensure_future(models.resolve(account, "acme/echo"))
    await asyncio.sleep(0)
    models.forget(api.version_id)
    assert (await pending).id == api.version_id
    assert models._latest == {}
    await models.resolve(account, "acme/echo")
    assert loads == 3
