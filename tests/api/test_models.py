"""Models, versions, hardware and account endpoints."""

import pytest

from tests.conftest import Api

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
