"""The files API over ASGI: upload (as each SDK sends it), get, list, delete, limits, downloads,
and the upload endpoint instances put their output files to."""

import hashlib
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from server.app import Startup, create_app
from server.files.blobs import LocalBlobStore
from server.logging import redact
from server.services import build_services
from tests.conftest import ADMIN_TOKEN, Api, make_settings, open_api
from tests.fakes import FakeBuilder, FakeRuntime

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"
BASE = "http://gw.test"


async def upload(
    client: httpx.AsyncClient,
    content: bytes,
    *,
    name: str = "hello.txt",
    content_type: str = "text/plain",
    data: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> httpx.Response:
    files: dict[str, Any] = {"content": (name, content, content_type), **(extra or {})}
    return await client.post("/v1/files", files=files, data=data or {})


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[Api]:
    """The app with a 1000-byte upload limit."""
    settings = make_settings(tmp_path, files={"max_upload_bytes": 1000})
    async for value in open_api(settings, FakeRuntime()):
        yield value


async def test_upload_with_metadata_as_a_text_field(api: Api) -> None:
    """The Python client's shape: a ``content`` part and ``metadata`` as a JSON string field."""
    content = os.urandom(3000)
    resp = await upload(
        api.client,
        content,
        name="noise.bin",
        content_type="application/x-noise",
        data={"metadata": json.dumps({"purpose": "test", "n": 1})},
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    file_id = body["id"]
    md5 = hashlib.md5(content).hexdigest()
    assert body == {
        "id": file_id,
        "name": "noise.bin",
        "content_type": "application/x-noise",
        "size": 3000,
        "etag": md5,
        "checksums": {"sha256": hashlib.sha256(content).hexdigest(), "md5": md5},
        "metadata": {"purpose": "test", "n": 1},
        "created_at": body["created_at"],
        "expires_at": None,
        "urls": {"get": f"{BASE}/v1/files/{file_id}", "download": body["urls"]["download"]},
    }
    assert body["created_at"].endswith("Z")
    assert body["urls"]["download"].startswith(f"{BASE}/v1/files/{file_id}/download/")
    assert body["urls"]["download"].endswith("/noise.bin")


async def test_upload_with_metadata_as_a_json_file_part(api: Api) -> None:
    """The JS client's shape: ``metadata`` is a Blob part named ``blob`` holding JSON."""
    resp = await upload(
        api.client,
        b"\x89PNG...",
        name="blob_1700000000000",
        content_type="image/png",
        extra={"metadata": ("blob", b'{"from": "js"}', "application/json")},
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert (body["name"], body["content_type"], body["metadata"]) == (
        "blob_1700000000000",
        "image/png",
        {"from": "js"},
    )


async def test_filename_and_type_fields_override_the_part(api: Api) -> None:
    resp = await upload(
        api.client,
        b"a,b\n",
        name="upload",
        content_type="application/octet-stream",
        data={"filename": "../../etc/table.csv", "type": "text/csv"},
    )
    assert resp.status_code == 201, resp.text
    assert (resp.json()["name"], resp.json()["content_type"]) == ("table.csv", "text/csv")


async def test_get_list_and_delete(api: Api) -> None:
    """GET returns the object, the list pages newest first, DELETE is 204 and then 404."""
    made = [(await upload(api.client, f"file {i}".encode())).json() for i in range(3)]
    for f in made:
        got = await api.client.get(f"/v1/files/{f['id']}")
        assert got.status_code == 200
        assert got.json() == f
    listed = await api.client.get("/v1/files")
    assert listed.status_code == 200
    assert listed.json() == {"next": None, "previous": None, "results": made[::-1]}

    gone = made[1]
    resp = await api.client.delete(f"/v1/files/{gone['id']}")
    assert (resp.status_code, resp.content) == (204, b"")
    assert (await api.client.get(f"/v1/files/{gone['id']}")).status_code == 404
    assert (await api.client.get(gone["urls"]["download"])).status_code == 404
    assert (await api.client.delete(f"/v1/files/{gone['id']}")).status_code == 404
    listed = await api.client.get("/v1/files")
    assert [f["id"] for f in listed.json()["results"]] == [made[2]["id"], made[0]["id"]]


async def test_list_pages_follow_next(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """``next`` is an absolute URL with a cursor; following it yields the older files."""
    monkeypatch.setattr("server.pagination.PAGE_SIZE", 2)
    ids = [(await upload(api.client, b"x")).json()["id"] for _ in range(3)]
    first = (await api.client.get("/v1/files")).json()
    assert [f["id"] for f in first["results"]] == ids[:0:-1]
    assert first["next"].startswith(f"{BASE}/v1/files?cursor=")
    second = (await api.client.get(first["next"])).json()
    assert [f["id"] for f in second["results"]] == [ids[0]]
    assert second["next"] is None


async def test_download_needs_no_authorization_and_tolerates_one(api: Api) -> None:
    """Capability URL: bytes directly (no redirect) with no header, a bearer token, or a bad one."""
    content = os.urandom(5000)
    body = (await upload(api.client, content, name="pic.png", content_type="image/png")).json()
    url = body["urls"]["download"]
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        async with httpx.AsyncClient(transport=api.transport, base_url=BASE) as anonymous:
            resp = await anonymous.get(url, headers=headers)
        assert resp.status_code == 200
        assert resp.content == content
        assert resp.headers["content-type"] == "image/png"
        assert resp.headers["content-length"] == "5000"
    resp = await api.client.get(url)  # and with the owner's token
    assert resp.content == content
    head = await api.client.head(url)
    assert (head.status_code, head.headers["content-length"], head.content) == (200, "5000", b"")


async def test_download_with_a_wrong_secret_is_404(api: Api) -> None:
    body = (await upload(api.client, b"secret")).json()
    url: str = body["urls"]["download"]
    parts = url.split("/")
    parts[-2] = "x" * len(parts[-2])
    resp = await api.client.get("/".join(parts))
    assert resp.status_code == 404
    assert resp.headers["content-type"] == PROBLEM


async def test_other_accounts_get_404(api: Api) -> None:
    """Another account cannot get, list or delete the file (404, as if it did not exist)."""
    body = (await upload(api.client, b"mine")).json()
    token = await api.services.accounts.create_token("mallory")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await api.client.get(f"/v1/files/{body['id']}", headers=headers)).status_code == 404
    resp = await api.client.delete(f"/v1/files/{body['id']}", headers=headers)
    assert resp.status_code == 404
    assert resp.headers["content-type"] == PROBLEM
    listed = await api.client.get("/v1/files", headers=headers)
    assert listed.json()["results"] == []
    assert (await api.client.get(f"/v1/files/{body['id']}")).status_code == 200


async def test_files_need_a_token(api: Api) -> None:
    async with httpx.AsyncClient(transport=api.transport, base_url=BASE) as anonymous:
        assert (await anonymous.get("/v1/files")).status_code == 401
        assert (await upload(anonymous, b"x")).status_code == 401


@pytest.mark.parametrize("size", [1001, 50_000, 2_000_000])
async def test_over_size_upload_is_413(small: Api, size: int) -> None:
    """Just over the limit (read, then refused) and far over it (refused by Content-Length)."""
    resp = await upload(small.client, b"x" * size)
    assert resp.status_code == 413
    assert resp.headers["content-type"] == PROBLEM
    assert resp.json()["title"] == "Payload Too Large"
    assert "1000 bytes" in resp.json()["detail"]
    assert (await small.client.get("/v1/files")).json()["results"] == []


async def test_upload_at_the_limit_is_accepted(small: Api) -> None:
    resp = await upload(small.client, b"x" * 1000)
    assert resp.status_code == 201
    assert resp.json()["size"] == 1000


async def test_chunked_over_size_upload_is_413(small: Api) -> None:
    """Without a Content-Length the body is counted as it streams."""
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="a"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()

    async def body() -> AsyncIterator[bytes]:
        yield head
        for _ in range(200):
            yield b"y" * 1000
        yield f"\r\n--{boundary}--\r\n".encode()

    resp = await small.client.post(
        "/v1/files",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert resp.status_code == 413
    assert "content-length" not in resp.request.headers


@pytest.mark.parametrize(
    ("kwargs", "status", "field"),
    [
        ({"files": {"other": ("a", b"x", "text/plain")}}, 422, "content"),
        ({"json": {"content": "x"}}, 400, None),
        ({"files": {"content": ("a", b"x")}, "data": {"metadata": "[1, 2]"}}, 422, "metadata"),
        ({"files": {"content": ("a", b"x")}, "data": {"metadata": "{nope"}}, 422, "metadata"),
    ],
    ids=["no-content", "not-multipart", "metadata-list", "metadata-not-json"],
)
async def test_bad_uploads(
    api: Api, kwargs: dict[str, Any], status: int, field: str | None
) -> None:
    resp = await api.client.post("/v1/files", **kwargs)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM
    if field is not None:
        assert [f["field"] for f in resp.json()["invalid_fields"]] == [field]


async def test_bytes_live_in_the_local_store(api: Api) -> None:
    """The local backend keeps the bytes under ``<data_dir>/files``; DELETE removes them."""
    body = (await upload(api.client, b"on disk")).json()
    store = api.services.files.blobs
    assert isinstance(store, LocalBlobStore)
    assert store.root == (api.services.settings.data_dir / "files").resolve()
    stored = [p for p in store.root.rglob("*") if p.is_file()]
    assert [p.name for p in stored] == [body["id"]]
    assert stored[0].read_bytes() == b"on disk"
    await api.client.delete(f"/v1/files/{body['id']}")
    assert [p for p in store.root.rglob("*") if p.is_file()] == []


async def test_instances_put_output_files(api: Api) -> None:
    """Cog's ``--upload-url``: a PUT with ``X-Prediction-ID`` stores the file for the prediction's
    owner and answers the capability URL in ``Location``."""
    done = await api.client.post(
        "/v1/predictions",
        json={"version": api.version_id, "input": {"text": "boot"}},
        headers={"Prefer": "wait=5"},
    )
    assert done.json()["status"] == "succeeded"
    files = api.services.files
    assert files.upload_url is not None
    assert [spec.upload_url for spec in api.runtime.started] == [files.upload_url]
    assert files.upload_url.startswith("http://127.0.0.1:8000/v1/uploads/")

    running = await api.client.post(
        "/v1/predictions", json={"version": api.version_id, "input": {"seconds": 30}}
    )
    prediction_id = running.json()["id"]
    content = os.urandom(2048)
    upload_path = urlsplit(files.upload_url).path
    async with httpx.AsyncClient(transport=api.transport, base_url=BASE) as instance:
        put = await instance.put(
            f"{upload_path}/out.png",
            content=content,
            headers={"Content-Type": "image/png", "X-Prediction-ID": prediction_id},
        )
        assert put.status_code == 200, put.text
        location = put.headers["location"]
        assert put.json() == {"id": put.json()["id"], "url": location}
        assert location.startswith(f"http://127.0.0.1:8000/v1/files/{put.json()['id']}/download/")
        assert location.endswith("/out.png")
        fetched = await instance.get(urlsplit(location).path)
        assert (fetched.content, fetched.headers["content-type"]) == (content, "image/png")

        wrong = await instance.put(
            "/v1/uploads/not-the-secret/out.png",
            content=b"x",
            headers={"X-Prediction-ID": prediction_id},
        )
        assert wrong.status_code == 404
        unknown = await instance.put(
            f"{upload_path}/out.png", content=b"x", headers={"X-Prediction-ID": "nope"}
        )
        assert unknown.status_code == 400

        await api.client.post(f"/v1/predictions/{prediction_id}/cancel")
        late = await instance.put(
            f"{upload_path}/late.png", content=b"x", headers={"X-Prediction-ID": prediction_id}
        )
        assert late.status_code == 400, "the prediction is over"

    got = await api.client.get(f"/v1/files/{put.json()['id']}")
    assert got.json()["name"] == "out.png"
    assert got.json()["checksums"]["sha256"] == hashlib.sha256(content).hexdigest()
    listed = await api.client.get("/v1/files")
    assert listed.json()["results"] == [], "outputs are not listed among uploads"


async def test_output_urls_can_be_turned_off(tmp_path: Path) -> None:
    """``output_urls=false``: no ``--upload-url``, so Cog inlines outputs as data: URIs."""
    settings = make_settings(tmp_path, files={"output_urls": False})
    async for api in open_api(settings, FakeRuntime()):
        resp = await api.client.post(
            "/v1/predictions",
            json={"version": api.version_id, "input": {"text": "x"}},
            headers={"Prefer": "wait=5"},
        )
        assert resp.json()["status"] == "succeeded"
        assert api.services.files.upload_url is None
        assert [spec.upload_url for spec in api.runtime.started] == [None]


class StepClock:
    """Real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


async def test_files_expire_when_configured(tmp_path: Path) -> None:
    """``expire_after``: ``expires_at`` is set; past it the file is gone everywhere, and its
    bytes are removed when the next file arrives."""
    clock = StepClock()
    runtime = FakeRuntime()
    settings = make_settings(tmp_path, files={"expire_after": 60})
    services = build_services(
        settings,
        runtime=runtime,
        builder=FakeBuilder(),
        client_factory=runtime.client_for,
        clock=clock,
    )
    app = create_app(services, Startup(warm=False))
    async with app.router.lifespan_context(app):
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=BASE, headers=headers
        ) as client:
            old = (await upload(client, b"old")).json()
            created = datetime.fromisoformat(old["created_at"])
            assert datetime.fromisoformat(old["expires_at"]) - created == timedelta(seconds=60)
            assert (await client.get(old["urls"]["download"])).status_code == 200

            clock.offset = timedelta(seconds=61)
            assert (await client.get(f"/v1/files/{old['id']}")).status_code == 404
            assert (await client.get(old["urls"]["download"])).status_code == 404
            assert (await client.get("/v1/files")).json()["results"] == []

            new = (await upload(client, b"new")).json()
            root = services.settings.data_dir / "files"
            assert [p.name for p in root.rglob("*") if p.is_file()] == [new["id"]]


async def test_request_logs_leave_secrets_out(api: Api) -> None:
    """The canonical request line logs download and upload paths without their secrets."""
    body = (await upload(api.client, b"x", name="a.png")).json()
    download = urlsplit(body["urls"]["download"]).path
    secret = download.split("/")[-2]
    assert redact(download) == f"/v1/files/{body['id']}/download/***/a.png"
    upload_url = api.services.files.upload_url
    assert upload_url is not None
    assert redact(urlsplit(upload_url).path + "/out.png") == "/v1/uploads/***/out.png"
    assert secret not in redact(download)
