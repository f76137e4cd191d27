"""File inputs over ASGI: what reaches the instance for data URIs, our own file URLs and other
http(s) URLs (fetched from a real loopback server), and which values are refused with 422."""

import base64
import copy
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import pytest

from server.app import Startup, create_app
from server.files.inputs import FileInputs
from server.services import build_services
from tests.conftest import ADMIN_TOKEN, FIXTURES, Api, make_settings
from tests.fakes import FAKE_SCHEMA, FakeBuilder, FakeRuntime

pytestmark = pytest.mark.anyio

BASE = "http://gw.test"
PICTURE = os.urandom(4096)


def file_schema() -> dict[str, Any]:
    schema = copy.deepcopy(FAKE_SCHEMA)
    properties = schema["components"]["schemas"]["Input"]["properties"]
    properties["image"] = {"title": "Image", "type": "string", "format": "uri", "x-order": 4}
    properties["images"] = {
        "title": "Images",
        "type": "array",
        "items": {"type": "string", "format": "uri"},
        "x-order": 5,
    }
    return schema


AppFactory = Callable[..., AbstractAsyncContextManager[Api]]


@pytest.fixture
def make_api(tmp_path: Path) -> AppFactory:
    """The app over ASGI serving a version with file inputs, with these ``files`` settings."""

    @asynccontextmanager
    async def make(**files: Any) -> AsyncIterator[Api]:
        settings = make_settings(tmp_path, files=files)
        runtime = FakeRuntime()
        services = build_services(
            settings,
            runtime=runtime,
            builder=FakeBuilder(file_schema()),
            client_factory=runtime.client_for,
        )
        app = create_app(services, Startup(models=[("acme/echo", FIXTURES / "echo")], warm=False))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            async with httpx.AsyncClient(
                transport=transport, base_url=BASE, headers=headers
            ) as client:
                admin = await services.accounts.authenticate(ADMIN_TOKEN)
                version = await services.models.resolve(admin, "acme/echo")
                yield Api(client, services, runtime, "acme/echo", version.id, transport)

    return make


@pytest.fixture
async def api(make_api: AppFactory) -> AsyncIterator[Api]:
    async with make_api() as api:
        yield api


class Origin:
    """A real HTTP server on a loopback port: ``/pic.png``, ``/moved``, ``/missing``."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                origin.requests.append(self.path)
                if self.path == "/files/pic.png":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(len(PICTURE)))
                    self.end_headers()
                    self.wfile.write(PICTURE)
                elif self.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", "/files/pic.png")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self.send_error(404)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        thread.join()


async def run(api: Api, input: dict[str, Any], **headers: str) -> httpx.Response:
    return await api.client.post(
        "/v1/predictions",
        json={"version": api.version_id, "input": input},
        headers={"Prefer": "wait=5", **headers},
    )


def sent(api: Api) -> dict[str, Any]:
    """The input the (only) instance received last."""
    (instance,) = api.runtime.api.values()
    return instance.inputs[-1]


async def upload(api: Api, content: bytes, name: str = "pic.png", **headers: str) -> Any:
    resp = await api.client.post(
        "/v1/files", files={"content": (name, content, "image/png")}, headers=headers
    )
    assert resp.status_code == 201, resp.text
    return resp.json()


async def fetch(api: Api, url: str) -> bytes:
    """GET a URL handed to the instance, as the instance would: no Authorization header."""
    assert url.startswith(api.services.files.gateway_url + "/v1/files/")
    async with httpx.AsyncClient(transport=api.transport, base_url=BASE) as anonymous:
        resp = await anonymous.get(urlsplit(url).path)
    assert resp.status_code == 200
    return resp.content


async def test_data_uris_pass_through(api: Api) -> None:
    uri = "data:image/png;base64," + base64.b64encode(PICTURE).decode()
    resp = await run(api, {"image": uri, "images": [uri, "data:,hi"]})
    assert resp.json()["status"] == "succeeded", resp.text
    assert sent(api)["image"] == uri
    assert sent(api)["images"] == [uri, "data:,hi"]
    assert resp.json()["input"]["image"] == uri


async def test_own_file_urls_become_download_urls_for_the_instance(api: Api) -> None:
    """What both SDKs send after uploading (``urls.get``) reaches Cog as a capability URL."""
    one, two = await upload(api, PICTURE), await upload(api, b"second", "two.txt")
    resp = await run(api, {"image": one["urls"]["get"], "images": [two["urls"]["get"]]})
    assert resp.json()["status"] == "succeeded", resp.text
    assert resp.json()["input"]["image"] == one["urls"]["get"], "the prediction keeps what was sent"
    given = sent(api)
    gateway = api.services.files.gateway_url
    assert given["image"] == gateway + urlsplit(one["urls"]["download"]).path
    assert given["image"].endswith("/pic.png"), "the name keeps its extension for Cog"
    assert await fetch(api, given["image"]) == PICTURE
    assert [await fetch(api, url) for url in given["images"]] == [b"second"]


async def test_own_download_urls_are_accepted(api: Api) -> None:
    f = await upload(api, PICTURE)
    resp = await run(api, {"image": f["urls"]["download"]})
    assert resp.json()["status"] == "succeeded", resp.text
    assert await fetch(api, sent(api)["image"]) == PICTURE


async def test_other_accounts_files_are_refused(api: Api) -> None:
    """Another account's ``/v1/files/{id}`` is not found for you, but its capability URL works."""
    token = await api.services.accounts.create_token("mallory")
    theirs = await upload(api, b"theirs", Authorization=f"Bearer {token}")
    resp = await run(api, {"image": theirs["urls"]["get"]})
    assert resp.status_code == 422
    assert resp.json()["invalid_fields"] == [
        {
            "type": "invalid_file",
            "field": "input.image",
            "description": "The file does not exist (or was deleted).",
        }
    ]
    assert api.runtime.started == []
    resp = await run(api, {"image": theirs["urls"]["download"]})
    assert resp.json()["status"] == "succeeded"
    assert await fetch(api, sent(api)["image"]) == b"theirs"


async def test_deleted_files_and_wrong_secrets_are_refused(api: Api) -> None:
    f = await upload(api, PICTURE)
    wrong = f["urls"]["download"].replace("/download/", "/download/x")
    await api.client.delete(f"/v1/files/{f['id']}")
    for url in (f["urls"]["get"], wrong):
        resp = await run(api, {"image": url})
        assert resp.status_code == 422
        assert resp.json()["invalid_fields"][0]["field"] == "input.image"


async def test_http_urls_are_fetched_by_the_gateway(make_api: AppFactory, origin: Origin) -> None:
    """Other URLs are downloaded once, stored (not listed), and handed on as our URL."""
    async with make_api(allow_private_urls=True) as api:
        url = f"{origin.url}/moved"
        resp = await run(api, {"image": url})
        assert resp.json()["status"] == "succeeded", resp.text
        assert origin.requests == ["/moved", "/files/pic.png"]
        given = sent(api)["image"]
        assert given.endswith("/pic.png")
        assert await fetch(api, given) == PICTURE
        assert resp.json()["input"]["image"] == url
        assert (await api.client.get("/v1/files")).json()["results"] == []


async def test_private_addresses_are_refused_by_default(api: Api, origin: Origin) -> None:
    """SSRF guard: loopback (and private, link-local) targets are never contacted."""
    for url in (f"{origin.url}/files/pic.png", "http://localhost:1/x", "http://10.1.2.3/x"):
        resp = await run(api, {"image": url})
        assert resp.status_code == 422, url
        (problem,) = resp.json()["invalid_fields"]
        assert problem["field"] == "input.image"
        assert "loopback, private or link-local" in problem["description"]
    assert origin.requests == []


@pytest.mark.parametrize(
    "value", ["/etc/hostname", "file:///etc/passwd", "ftp://example.com/a.png", "pic.png"]
)
async def test_local_paths_and_other_schemes_are_refused(api: Api, value: str) -> None:
    """Cog would open a local path from the instance's disk: 422 before anything runs."""
    resp = await run(api, {"image": value})
    assert resp.status_code == 422
    assert [f["field"] for f in resp.json()["invalid_fields"]] == ["input.image"]
    assert api.runtime.started == []


async def test_fetch_failures_and_limits_are_422(make_api: AppFactory, origin: Origin) -> None:
    async with make_api(allow_private_urls=True, fetch_max_bytes=1000) as api:
        missing = await run(api, {"image": f"{origin.url}/missing"})
        too_big = await run(api, {"image": f"{origin.url}/files/pic.png"})
    assert missing.status_code == too_big.status_code == 422
    assert missing.json()["invalid_fields"][0]["description"] == (
        "Fetching the file answered HTTP 404."
    )
    assert too_big.json()["invalid_fields"][0]["description"] == (
        "The file is larger than the limit of 1000 bytes."
    )


async def test_redirects_to_private_addresses_are_refused(make_api: AppFactory) -> None:
    """Every hop is checked, not just the first URL (a public host redirecting inward)."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(302, headers={"Location": "http://169.254.169.254/latest/meta"})

    async with make_api() as api:
        inputs = FileInputs(api.services.files, transport=httpx.MockTransport(handler))
        api.services.predictions.resolve_inputs = inputs.resolve
        resp = await run(api, {"image": "http://93.184.215.14/pic.png"})
    assert resp.status_code == 422
    assert "loopback, private or link-local" in resp.json()["invalid_fields"][0]["description"]
    assert seen == ["http://93.184.215.14/pic.png"]


async def test_slow_fetches_time_out(make_api: AppFactory) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(10)
        return httpx.Response(200, content=b"late")

    async with make_api(fetch_timeout=0.2) as api:
        inputs = FileInputs(api.services.files, transport=httpx.MockTransport(handler))
        api.services.predictions.resolve_inputs = inputs.resolve
        resp = await run(api, {"image": "http://93.184.215.14/pic.png"})
    assert resp.status_code == 422
    assert resp.json()["invalid_fields"][0]["description"] == (
        "Fetching the file took longer than 0.2 s."
    )
