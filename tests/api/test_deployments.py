"""The deployments API: create, read, update (releases), rollback, delete, and predictions."""

import shutil
from pathlib import Path
from typing import Any

import pytest
from replicate.client import Client

from tests.conftest import ADMIN_TOKEN, FIXTURES, Api

pytestmark = pytest.mark.anyio

WAIT = {"Prefer": "wait"}
ADMIN = {"type": "user", "username": "admin", "name": "admin", "github_url": None}


async def push_version(api: Api, tmp_path: Path, marker: str = "v2") -> str:
    """A second version of acme/echo (the fake builder makes it at once)."""
    src = tmp_path / f"echo-{marker}"
    shutil.copytree(FIXTURES / "echo", src)
    predict = src / "predict.py"
    predict.write_text(predict.read_text() + f"\n# {marker}\n")
    admin = await api.services.accounts.authenticate(ADMIN_TOKEN)
    version = await api.services.builds.push(admin, "acme/echo", src, wait=True)
    assert version.status == "ready"
    return version.id


def create_body(api: Api, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "web",
        "model": "acme/echo",
        "version": api.version_id,
        "hardware": "cpu",
        "min_instances": 0,
        "max_instances": 1,
    }
    return {**body, **overrides}


async def create(api: Api, **overrides: Any) -> dict[str, Any]:
    resp = await api.client.post("/v1/deployments", json=create_body(api, **overrides))
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def test_create_get_list(api: Api) -> None:
    """Create answers 200 with Replicate's deployment object; get and list return the same."""
    created = await create(api)
    assert created == {
        "owner": "admin",
        "name": "web",
        "current_release": {
            "number": 1,
            "model": "acme/echo",
            "version": api.version_id,
            "created_at": created["current_release"]["created_at"],
            "created_by": {**ADMIN, "avatar_url": None},
            "configuration": {"hardware": "cpu", "min_instances": 0, "max_instances": 1},
        },
    }
    assert created["current_release"]["created_at"].endswith("Z")
    assert (await api.client.get("/v1/deployments/admin/web")).json() == created
    listed = (await api.client.get("/v1/deployments")).json()
    assert listed == {"next": None, "previous": None, "results": [created]}


async def test_name_may_carry_the_callers_username(api: Api) -> None:
    """The Python client sends name as owner/name; the owner part is dropped."""
    created = await create(api, name="admin/web")
    assert (created["owner"], created["name"]) == ("admin", "web")


async def test_update_adds_a_release_and_keeps_the_rest(api: Api, tmp_path: Path) -> None:
    await create(api)
    resp = await api.client.patch("/v1/deployments/admin/web", json={"max_instances": 3})
    assert resp.status_code == 200
    release = resp.json()["current_release"]
    assert release["number"] == 2
    assert release["version"] == api.version_id
    assert release["configuration"] == {"hardware": "cpu", "min_instances": 0, "max_instances": 3}
    v2 = await push_version(api, tmp_path)
    release = (await api.client.patch("/v1/deployments/admin/web", json={"version": v2})).json()[
        "current_release"
    ]
    assert (release["number"], release["version"]) == (3, v2)
    assert release["configuration"] == {"hardware": "cpu", "min_instances": 0, "max_instances": 3}


async def test_empty_update_is_422(api: Api) -> None:
    await create(api)
    resp = await api.client.patch("/v1/deployments/admin/web", json={})
    assert resp.status_code == 422
    assert resp.json()["invalid_fields"][0]["type"] == "required"


async def run(api: Api, name: str = "web", text: str = "hey") -> dict[str, Any]:
    resp = await api.client.post(
        f"/v1/deployments/admin/{name}/predictions", json={"input": {"text": text}}, headers=WAIT
    )
    assert resp.status_code == 201, resp.text
    assert resp.headers["preference-applied"] == "wait=60"
    body: dict[str, Any] = resp.json()
    return body


async def test_predictions_run_the_current_release(api: Api, tmp_path: Path) -> None:
    """A deployment prediction runs the current version and names the deployment."""
    await create(api)
    first = await run(api)
    assert (first["status"], first["output"]) == ("succeeded", "hey")
    assert (first["model"], first["version"]) == ("acme/echo", api.version_id)
    assert first["deployment"] == "admin/web"
    got = (await api.client.get(f"/v1/predictions/{first['id']}")).json()
    assert got["deployment"] == "admin/web"
    v2 = await push_version(api, tmp_path)
    await api.client.patch("/v1/deployments/admin/web", json={"version": v2})
    assert (await run(api))["version"] == v2


async def test_prediction_without_wait_is_async(api: Api) -> None:
    await create(api)
    resp = await api.client.post("/v1/deployments/admin/web/predictions", json={"input": {}})
    assert resp.status_code == 201
    assert resp.json()["status"] == "starting"
    assert "preference-applied" not in resp.headers


async def test_rollback(api: Api, tmp_path: Path) -> None:
    """Rollback adds a release copying the previous one (or release ``to``)."""
    await create(api)
    v2 = await push_version(api, tmp_path)
    await api.client.patch("/v1/deployments/admin/web", json={"version": v2, "max_instances": 2})
    resp = await api.client.post("/v1/deployments/admin/web/rollback")
    assert resp.status_code == 200
    release = resp.json()["current_release"]
    assert (release["number"], release["version"]) == (3, api.version_id)
    assert release["configuration"]["max_instances"] == 1
    assert (await run(api))["version"] == api.version_id
    resp = await api.client.post("/v1/deployments/admin/web/rollback", json={"to": 2})
    release = resp.json()["current_release"]
    assert (release["number"], release["version"]) == (4, v2)
    assert release["configuration"]["max_instances"] == 2
    assert (await run(api))["version"] == v2


async def test_rollback_problems(api: Api) -> None:
    await create(api)
    resp = await api.client.post("/v1/deployments/admin/web/rollback", json={})
    assert resp.status_code == 422
    assert resp.json()["invalid_fields"][0]["field"] == "to"
    resp = await api.client.post("/v1/deployments/admin/web/rollback", json={"to": 1})
    assert resp.status_code == 422
    resp = await api.client.post("/v1/deployments/admin/web/rollback", json={"to": 7})
    assert resp.status_code == 404
    assert resp.json()["detail"] == "Deployment admin/web has no release 7."


async def test_unknown_hardware_is_422(api: Api) -> None:
    resp = await api.client.post("/v1/deployments", json=create_body(api, hardware="gpu-a100"))
    assert resp.status_code == 422
    assert resp.json()["invalid_fields"] == [
        {"type": "enum", "field": "hardware", "description": "one of cpu"}
    ]


@pytest.mark.parametrize(
    ("low", "high", "field"),
    [(2, 1, "min_instances"), (6, 10, "min_instances"), (0, 21, "max_instances")],
)
async def test_instance_bounds_are_422(api: Api, low: int, high: int, field: str) -> None:
    body = create_body(api, min_instances=low, max_instances=high)
    resp = await api.client.post("/v1/deployments", json=body)
    assert resp.status_code == 422
    assert [f["field"] for f in resp.json()["invalid_fields"]] == [field]


async def test_update_is_validated_like_create(api: Api) -> None:
    await create(api)
    resp = await api.client.patch("/v1/deployments/admin/web", json={"min_instances": 2})
    assert resp.status_code == 422
    resp = await api.client.patch("/v1/deployments/admin/web", json={"version": "0" * 64})
    assert resp.status_code == 422
    assert resp.json()["title"] == "Invalid version or not permitted"
    release = (await api.client.get("/v1/deployments/admin/web")).json()["current_release"]
    assert release["number"] == 1


async def test_missing_fields_and_wrong_version_are_422(api: Api) -> None:
    resp = await api.client.post("/v1/deployments", json={"name": "web"})
    assert resp.status_code == 422
    assert {f["field"] for f in resp.json()["invalid_fields"]} == {
        "model",
        "version",
        "hardware",
        "min_instances",
        "max_instances",
    }
    for body in (create_body(api, version="f" * 64), create_body(api, model="acme/nope")):
        resp = await api.client.post("/v1/deployments", json=body)
        assert resp.status_code == 422
        assert resp.json()["title"] == "Invalid version or not permitted"


async def test_duplicate_is_409(api: Api) -> None:
    await create(api)
    resp = await api.client.post("/v1/deployments", json=create_body(api, max_instances=2))
    assert resp.status_code == 409


async def test_other_accounts_cannot_see_it(api: Api) -> None:
    """Another account gets 404 for every route of a deployment it does not own."""
    await create(api)
    token = await api.services.accounts.create_token("bob")
    bob = {"Authorization": f"Bearer {token}"}
    path = "/v1/deployments/admin/web"
    assert (await api.client.get(path, headers=bob)).status_code == 404
    assert (await api.client.patch(path, json={"max_instances": 2}, headers=bob)).status_code == 404
    assert (await api.client.post(f"{path}/rollback", headers=bob)).status_code == 404
    resp = await api.client.post(f"{path}/predictions", json={"input": {}}, headers=bob)
    assert resp.status_code == 404
    assert (await api.client.delete(path, headers=bob)).status_code == 404
    assert (await api.client.get("/v1/deployments", headers=bob)).json()["results"] == []
    resp = await api.client.post(
        "/v1/deployments", json=create_body(api, name="admin/x"), headers=bob
    )
    assert resp.status_code == 422
    created = (await api.client.post("/v1/deployments", json=create_body(api), headers=bob)).json()
    assert (created["owner"], created["name"]) == ("bob", "web")


async def test_delete(api: Api) -> None:
    await create(api)
    resp = await api.client.delete("/v1/deployments/admin/web")
    assert resp.status_code == 204
    assert resp.content == b""
    assert (await api.client.get("/v1/deployments/admin/web")).status_code == 404
    assert (await api.client.delete("/v1/deployments/admin/web")).status_code == 404
    await create(api)


async def test_current_version_cannot_be_deleted(api: Api, tmp_path: Path) -> None:
    """A version that is some deployment's current release is in use (409); an earlier one isn't."""
    await create(api)
    path = f"/v1/models/acme/echo/versions/{api.version_id}"
    assert (await api.client.delete(path)).status_code == 409
    v2 = await push_version(api, tmp_path)
    await api.client.patch("/v1/deployments/admin/web", json={"version": v2})
    assert (await api.client.delete(path)).status_code == 202


async def test_the_python_client(api: Api) -> None:
    """replicate 1.0.7's deployment calls parse our objects and reach the right routes."""
    client = Client(ADMIN_TOKEN, base_url="http://gw.test", transport=api.transport)
    created = await client.deployments.async_create(
        name="admin/web",
        model="acme/echo",
        version=api.version_id,
        hardware="cpu",
        min_instances=0,
        max_instances=1,
    )
    assert created.current_release is not None
    assert (created.owner, created.name, created.current_release.number) == ("admin", "web", 1)
    updated = (
        await client.deployments.async_update("admin", "web", max_instances=2)
    ).current_release
    assert updated is not None
    assert (updated.number, updated.configuration.max_instances) == (2, 2)
    deployment = await client.deployments.async_get("admin/web")
    listed = await client.deployments.async_list()
    assert [d.name for d in listed.results] == ["web"]
    prediction = await deployment.predictions.async_create(input={"text": "py"})
    await prediction.async_wait()
    assert (prediction.status, prediction.output) == ("succeeded", "py")
    await client.deployments.async_delete("admin", "web")
