"""Pushing predictor directories as tar.gz uploads: versions, builds, bad input."""

import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from server.cli.remote import archive
from tests.conftest import FIXTURES, Api, make_settings, open_api
from tests.fakes import FakeRuntime

pytestmark = pytest.mark.anyio

GZIP = {"Content-Type": "application/gzip"}


def predictor(tmp_path: Path, body: str = "", *, yaml: str | None = None) -> Path:
    """A copy of the echo predictor, optionally with extra code (a code-only change)."""
    directory = tmp_path / "pred"
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(FIXTURES / "echo", directory, dirs_exist_ok=True)
    if body:
        (directory / "predict.py").write_text((directory / "predict.py").read_text() + body)
    if yaml is not None:
        (directory / "cog.yaml").write_text(yaml)
    return directory


async def push(api: Api, directory: Path, model: str = "acme/echo") -> dict[str, object]:
    url = f"/v1/models/{model}/versions"
    resp = await api.client.post(url, content=archive(directory), headers=GZIP)
    assert resp.status_code in (200, 201), resp.text
    body: dict[str, object] = resp.json()
    return body


async def wait_built(api: Api, version_id: str) -> dict[str, object]:
    version = await api.services.models.version(version_id)
    assert version is not None
    build = api.services.builds._builds.get(version_id)
    if build is not None and build.task is not None:
        await build.task
    resp = await api.client.get(f"/v1/models/acme/echo/versions/{version_id}/build")
    body: dict[str, object] = resp.json()
    return body


async def test_push_builds_a_new_runnable_version(api: Api, tmp_path: Path) -> None:
    """A code change is a new version; once built it is the model's latest."""
    created = await push(api, predictor(tmp_path, "\n# v2\n"))
    assert created["status"] == "building"
    assert created["id"] != api.version_id
    build = await wait_built(api, str(created["id"]))
    assert build["status"] == "ready"
    assert "fake build" in str(build["logs"])
    model = (await api.client.get("/v1/models/acme/echo")).json()
    assert model["latest_version"]["id"] == created["id"]
    ran = await api.client.post(
        "/v1/predictions",
        json={"version": created["id"], "input": {"text": "v2"}},
        headers={"Prefer": "wait"},
    )
    assert ran.json()["output"] == "v2"
    listed = (await api.client.get("/v1/models/acme/echo/versions")).json()["results"]
    assert [v["id"] for v in listed] == [created["id"], api.version_id]


async def test_pushing_the_same_content_is_idempotent(api: Api, tmp_path: Path) -> None:
    """The version id is the content's digest: a second push returns it and builds nothing."""
    directory = predictor(tmp_path)
    builder = api.services.builds.builder
    before = builder.builds  # type: ignore[attr-defined]
    again = await push(api, directory)
    assert again["id"] == api.version_id
    assert again["status"] == "ready"
    assert builder.builds == before  # type: ignore[attr-defined]


async def test_failed_build_is_not_reachable(api: Api, tmp_path: Path) -> None:
    """A version whose build failed has its log and error, and predictions cannot use it."""
    created = await push(api, predictor(tmp_path, "\n# FAIL_BUILD\n"))
    build = await wait_built(api, str(created["id"]))
    assert build["status"] == "failed"
    assert "no matching distribution" in str(build["error"])
    resp = await api.client.post("/v1/predictions", json={"version": created["id"], "input": {}})
    assert resp.status_code == 422
    assert resp.json()["title"] == "Invalid version or not permitted"
    model = (await api.client.get("/v1/models/acme/echo")).json()
    assert model["latest_version"]["id"] == api.version_id


def tar_gz(entries: dict[str, bytes], *, link: tuple[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link[0])
            info.type = tarfile.SYMTYPE
            info.linkname = link[1]
            tar.addfile(info)
    return buffer.getvalue()


COG_YAML = b'predict: "predict.py:Predictor"\n'


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b"not a tarball at all", 400, "not a readable tar.gz"),
        (b"", 400, "empty"),
        (tar_gz({"predict.py": b"x"}), 400, "no cog.yaml"),
        (tar_gz({"cog.yaml": COG_YAML, "../evil.py": b"x"}), 400, "escapes its root"),
        (tar_gz({"cog.yaml": COG_YAML, "/etc/evil": b"x"}), 400, "escapes its root"),
        (tar_gz({"cog.yaml": COG_YAML}, link=("predict.py", "/etc/passwd")), 400, "escapes"),
        (tar_gz({"cog.yaml": b"predict: x\nbogus: 1\n", "predict.py": b""}), 422, "unknown keys"),
        (tar_gz({"cog.yaml": b'predict: "nope.py:P"\n'}), 422, "does not exist"),
        (
            tar_gz(
                {"cog.yaml": b'build:\n  python_version: "3.4"\npredict: "p.py:P"\n', "p.py": b""}
            ),
            422,
            "Python 3.4 is not available",
        ),
    ],
    ids=[
        "not-gzip",
        "empty",
        "no-cog-yaml",
        "dotdot",
        "absolute",
        "symlink-out",
        "unknown-key",
        "missing-predictor",
        "missing-python",
    ],
)
async def test_bad_uploads_are_clear_4xx(api: Api, body: bytes, status: int, detail: str) -> None:
    resp = await api.client.post("/v1/models/acme/echo/versions", content=body, headers=GZIP)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert detail in resp.json()["detail"]
    versions = (await api.client.get("/v1/models/acme/echo/versions")).json()["results"]
    assert [v["id"] for v in versions] == [api.version_id]  # nothing half-registered


async def test_upload_over_the_limit_is_413(tmp_path: Path) -> None:
    async for api in open_api(make_settings(tmp_path, push_max_bytes=1000), FakeRuntime()):
        big = tar_gz({"cog.yaml": COG_YAML, "weights.bin": os.urandom(5000)})
        resp = await api.client.post("/v1/models/acme/echo/versions", content=big, headers=GZIP)
        assert resp.status_code == 413
        assert resp.headers["content-type"] == "application/problem+json"


async def test_push_to_unknown_or_foreign_model(api: Api, tmp_path: Path) -> None:
    body = archive(predictor(tmp_path))
    resp = await api.client.post("/v1/models/acme/nope/versions", content=body, headers=GZIP)
    assert resp.status_code == 404
    bob = await api.services.accounts.create_token("bob")
    resp = await api.client.post(
        "/v1/models/acme/echo/versions",
        content=body,
        headers={**GZIP, "Authorization": f"Bearer {bob}"},
    )
    assert resp.status_code == 403


async def test_create_model(api: Api) -> None:
    """POST /v1/models takes Replicate's body; owners write only their own namespace."""
    resp = await api.client.post(
        "/v1/models",
        json={"owner": "admin", "name": "new-model", "visibility": "private", "hardware": "cpu"},
    )
    assert resp.status_code == 201
    body = resp.json()
    assert (body["owner"], body["name"], body["visibility"]) == ("admin", "new-model", "private")
    assert body["latest_version"] is None
    dup = await api.client.post("/v1/models", json={"owner": "admin", "name": "new-model"})
    assert dup.status_code == 409
    bad = await api.client.post(
        "/v1/models", json={"owner": "admin", "name": "Bad Name", "hardware": "tpu"}
    )
    assert bad.status_code == 422
    assert {f["field"] for f in bad.json()["invalid_fields"]} == {"name", "hardware"}
    bob = await api.services.accounts.create_token("bob")
    foreign = await api.client.post(
        "/v1/models",
        json={"owner": "admin", "name": "x"},
        headers={"Authorization": f"Bearer {bob}"},
    )
    assert foreign.status_code == 403
    private = await api.client.get(
        "/v1/models/admin/new-model", headers={"Authorization": f"Bearer {bob}"}
    )
    assert private.status_code == 404


async def test_delete_version(api: Api, tmp_path: Path) -> None:
    """DELETE → 202; the version disappears from lists and cannot run; old predictions stay."""
    created = await push(api, predictor(tmp_path, "\n# v2\n"))
    await wait_built(api, str(created["id"]))
    ran = (
        await api.client.post(
            "/v1/predictions",
            json={"version": created["id"], "input": {}},
            headers={"Prefer": "wait"},
        )
    ).json()
    resp = await api.client.delete(f"/v1/models/acme/echo/versions/{created['id']}")
    assert resp.status_code == 202
    got = await api.client.get(f"/v1/models/acme/echo/versions/{created['id']}")
    assert got.status_code == 404
    again = await api.client.post("/v1/predictions", json={"version": created["id"], "input": {}})
    assert again.status_code == 422
    assert (await api.client.get(f"/v1/predictions/{ran['id']}")).json()["status"] == "succeeded"
    model = (await api.client.get("/v1/models/acme/echo")).json()
    assert model["latest_version"]["id"] == api.version_id


async def test_prefer_wait_push_fails_with_the_build_log(api: Api, tmp_path: Path) -> None:
    """With Prefer: wait a push answers when built; a failed build is a 422 with its log."""
    url = "/v1/models/acme/echo/versions"
    bad = archive(predictor(tmp_path / "bad", "\n# FAIL_BUILD\n"))
    resp = await api.client.post(url, content=bad, headers={**GZIP, "Prefer": "wait"})
    assert resp.status_code == 422
    body = resp.json()
    assert body["title"] == "Build failed"
    assert "no matching distribution" in body["detail"]
    assert "fake build" in body["logs"]
    good = archive(predictor(tmp_path / "good", "\n# fine\n"))
    resp = await api.client.post(url, content=good, headers={**GZIP, "Prefer": "wait"})
    assert resp.status_code == 201
    assert resp.json()["status"] == "ready"


async def test_a_build_cut_by_a_restart_is_failed_then_rebuilt(tmp_path: Path) -> None:
    """A version left 'building' by a dead gateway is marked failed at start; pushing the same
    content again builds it."""
    settings = make_settings(tmp_path / "data")
    hanging = predictor(tmp_path / "src", "\n# HANG_BUILD\n")
    async for api in open_api(settings, FakeRuntime()):
        created = await push(api, hanging)
        assert created["status"] == "building"
    async for api in open_api(settings, FakeRuntime()):
        url = f"/v1/models/acme/echo/versions/{created['id']}/build"
        build = (await api.client.get(url)).json()
        assert build["status"] == "failed"
        assert "interrupted by a gateway restart" in build["error"]
        again = await push(api, hanging)
        assert again["id"] == created["id"]
        assert again["status"] == "building"  # a build runs again; the failure is not final
        assert str(created["id"]) in api.services.builds._builds
