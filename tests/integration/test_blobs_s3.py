"""S3BlobStore over HTTP against moto's server, and the files API with the S3 backend.

Under CI a missing moto server fails these tests (``tests/s3.py``); locally they are skipped.
"""

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from server.files.blobs import BlobNotFound, S3BlobStore, read_all
from tests.conftest import Api, make_settings, open_api
from tests.fakes import FakeRuntime
from tests.s3 import (  # noqa: F401  (fixtures, registered under their name=)
    MotoServer,
    aws_env_fixture,
    fresh_bucket,
    moto_server_fixture,
    s3_client,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio, pytest.mark.usefixtures("aws_env")]


def staged(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "up"
    path.write_bytes(content)
    return path


def store(moto: MotoServer, bucket: str, prefix: str = "files/") -> S3BlobStore:
    return S3BlobStore(
        bucket=bucket, prefix=prefix, endpoint_url=moto.endpoint_url, region="us-east-1"
    )


async def test_put_open_delete(moto_server: MotoServer, tmp_path: Path) -> None:
    """Bytes and content type land under the prefix; open streams them back; delete removes."""
    bucket = fresh_bucket(moto_server.endpoint_url)
    blobs = store(moto_server, bucket)
    content = os.urandom(300_000)
    await blobs.put("ab/abc", staged(tmp_path, content), content_type="image/png")
    raw = s3_client(moto_server.endpoint_url)
    head = raw.head_object(Bucket=bucket, Key="files/ab/abc")
    assert (head["ContentType"], head["ContentLength"]) == ("image/png", 300_000)
    assert await read_all(blobs, "ab/abc") == content
    await blobs.delete("ab/abc")
    with pytest.raises(BlobNotFound):
        await blobs.open("ab/abc")
    await blobs.delete("ab/abc")  # deleting nothing is fine
    assert raw.list_objects_v2(Bucket=bucket).get("Contents", []) == []


async def test_large_files_go_up_in_parts(moto_server: MotoServer, tmp_path: Path) -> None:
    """Over boto3's multipart threshold (8 MiB) the object is still byte-identical."""
    blobs = store(moto_server, fresh_bucket(moto_server.endpoint_url))
    content = os.urandom(9 * 1024 * 1024 + 5)
    await blobs.put("big", staged(tmp_path, content), content_type="application/octet-stream")
    assert await read_all(blobs, "big") == content


async def test_missing_bucket_is_created_on_first_put(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    bucket = f"cogway-files-{os.urandom(6).hex()}"
    blobs = store(moto_server, bucket, prefix="")
    await blobs.put("k", staged(tmp_path, b"hello"), content_type="text/plain")
    assert await read_all(blobs, "k") == b"hello"
    listed = s3_client(moto_server.endpoint_url).list_objects_v2(Bucket=bucket)
    assert [item["Key"] for item in listed["Contents"]] == ["k"]


@pytest.fixture
async def s3_api(moto_server: MotoServer, tmp_path: Path) -> AsyncIterator[tuple[Api, str]]:
    bucket = fresh_bucket(moto_server.endpoint_url)
    files = {"backend": "s3", "s3_bucket": bucket, "s3_endpoint_url": moto_server.endpoint_url}
    async for api in open_api(make_settings(tmp_path, files=files), FakeRuntime()):
        yield api, bucket


async def test_files_api_on_s3(s3_api: tuple[Api, str], moto_server: MotoServer) -> None:
    """Upload, download without a token, delete: the bytes live in (and leave) the bucket."""
    api, bucket = s3_api
    content = os.urandom(70_000)
    resp = await api.client.post("/v1/files", files={"content": ("pic.png", content, "image/png")})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    raw = s3_client(moto_server.endpoint_url)
    keys = [item["Key"] for item in raw.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [f"files/{body['id'][:2]}/{body['id']}"]
    async with httpx.AsyncClient(transport=api.transport, base_url="http://gw.test") as anonymous:
        got = await anonymous.get(body["urls"]["download"])
    assert (got.status_code, got.content) == (200, content)
    assert (await api.client.delete(f"/v1/files/{body['id']}")).status_code == 204
    assert raw.list_objects_v2(Bucket=bucket).get("Contents", []) == []
