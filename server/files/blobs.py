"""Where file bytes live: the ``BlobStore`` seam, a local directory and any S3-compatible store.

Both backends take a finished file on disk (``put``) and hand bytes back as an async stream of
chunks (``open``). boto3 is synchronous, so every S3 call runs in a worker thread.
"""

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError

from server.s3 import create_bucket
from server.s3 import s3_client as shared_s3_client
from server.settings import Settings

CHUNK_BYTES = 256 * 1024
S3_CONNECT_TIMEOUT_S = 5
S3_READ_TIMEOUT_S = 60
S3_ATTEMPTS = 3  # puts and gets of whole objects are idempotent: retrying is safe
MISSING = ("404", "NoSuchKey", "NoSuchBucket", "NotFound")


class BlobNotFound(Exception):
    """No object is stored under this key."""


class BlobStore(Protocol):
    async def put(self, key: str, source: Path, *, content_type: str) -> None:
        """Store the file at ``source`` under ``key``. ``source`` may be moved away; the
        caller removes whatever is left of it."""
        ...

    async def open(self, key: str) -> AsyncIterator[bytes]:
        """The object's bytes in chunks; ``BlobNotFound`` (raised here, before the first
        chunk) when there is none."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; a key that holds nothing is not an error."""
        ...

    def describe(self) -> str:
        """Where the bytes go, for logs (``s3://bucket/prefix``, a path)."""
        ...


async def read_all(store: BlobStore, key: str) -> bytes:
    """The whole object (small files, tests)."""
    return b"".join([chunk async for chunk in await store.open(key)])


async def _chunks(stream: BinaryIO | Any, close: Callable[[], None]) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(stream.read, CHUNK_BYTES):
            yield chunk
    finally:
        close()


class LocalBlobStore:
    """Objects as files under ``root``, named by key."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def describe(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise ValueError(f"object key outside the store: {key!r}")
        return path

    async def put(self, key: str, source: Path, *, content_type: str) -> None:
        await asyncio.to_thread(self._put, source, self._path(key))

    @staticmethod
    def _put(source: Path, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(source, path)  # same filesystem: the staging area is under root
        except OSError:
            tmp = path.with_name(f".{path.name}.tmp")
            shutil.copyfile(source, tmp)
            os.replace(tmp, path)

    async def open(self, key: str) -> AsyncIterator[bytes]:
        try:
            stream = await asyncio.to_thread(self._path(key).open, "rb")
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        return _chunks(stream, stream.close)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)


class S3BlobStore:
    """Objects in a bucket of any S3-compatible store (path-style addressing with a custom
    ``endpoint_url``). The bucket is created on the first put that finds it missing."""

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str,
        endpoint_url: str | None,
        region: str,
        client: Any = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.client: Any = client or s3_client(endpoint_url=endpoint_url, region=region)

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    async def put(self, key: str, source: Path, *, content_type: str) -> None:
        await asyncio.to_thread(self._put, key, source, content_type)

    def _put(self, key: str, source: Path, content_type: str) -> None:
        def upload() -> None:
            self.client.upload_file(
                str(source),
                self.bucket,
                self.prefix + key,
                ExtraArgs={"ContentType": content_type},
            )

        try:
            upload()
        except (ClientError, S3UploadFailedError) as exc:
            if "NoSuchBucket" not in str(exc):
                raise
            create_bucket(self.client, self.bucket)
            upload()

    async def open(self, key: str) -> AsyncIterator[bytes]:
        try:
            response = await asyncio.to_thread(
                self.client.get_object, Bucket=self.bucket, Key=self.prefix + key
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in MISSING:
                raise BlobNotFound(key) from None
            raise
        body = response["Body"]
        return _chunks(body, body.close)

    async def delete(self, key: str) -> None:
        try:
            await asyncio.to_thread(
                self.client.delete_object, Bucket=self.bucket, Key=self.prefix + key
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in MISSING:
                raise


def s3_client(*, endpoint_url: str | None, region: str) -> Any:
    return shared_s3_client(
        endpoint_url=endpoint_url,
        region=region,
        connect_timeout=S3_CONNECT_TIMEOUT_S,
        read_timeout=S3_READ_TIMEOUT_S,
        attempts=S3_ATTEMPTS,
    )


def local_dir(settings: Settings) -> Path:
    return (settings.files.local_dir or settings.data_dir / "files").resolve()


def store_from_settings(settings: Settings) -> BlobStore:
    files = settings.files
    if files.backend == "s3":
        return S3BlobStore(
            bucket=files.s3_bucket,
            prefix=files.s3_prefix,
            endpoint_url=files.s3_endpoint_url,
            region=files.s3_region,
        )
    return LocalBlobStore(local_dir(settings))


def staging_dir(settings: Settings) -> Path:
    """Where uploads are written while they arrive: beside the local store (so a put is a
    rename), or in the data dir for S3."""
    if settings.files.backend == "local":
        return local_dir(settings) / ".staging"
    return (settings.data_dir / "files-staging").resolve()
