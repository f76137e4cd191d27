"""The local blob store: put moves a finished file in, open streams it back, delete forgets it."""

import os
from pathlib import Path

import pytest

from server.files.blobs import CHUNK_BYTES, BlobNotFound, LocalBlobStore, read_all

pytestmark = pytest.mark.anyio


def staged(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "staging" / "up-1"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


async def test_put_open_delete(tmp_path: Path) -> None:
    """Bytes round-trip in several chunks; the staged file is moved, not copied."""
    store = LocalBlobStore(tmp_path / "files")
    content = os.urandom(CHUNK_BYTES * 2 + 17)
    source = staged(tmp_path, content)
    await store.put("ab/abcdef", source, content_type="image/png")
    assert not source.exists()
    assert (tmp_path / "files" / "ab" / "abcdef").read_bytes() == content
    chunks = [chunk async for chunk in await store.open("ab/abcdef")]
    assert [len(c) for c in chunks] == [CHUNK_BYTES, CHUNK_BYTES, 17]
    assert b"".join(chunks) == content
    await store.delete("ab/abcdef")
    with pytest.raises(BlobNotFound):
        await store.open("ab/abcdef")
    await store.delete("ab/abcdef")  # deleting nothing is fine


async def test_put_replaces(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "files")
    await store.put("k", staged(tmp_path, b"one"), content_type="text/plain")
    await store.put("k", staged(tmp_path, b"two"), content_type="text/plain")
    assert await read_all(store, "k") == b"two"


async def test_missing_key_is_blob_not_found(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "files")
    with pytest.raises(BlobNotFound):
        await store.open("no/such")


@pytest.mark.parametrize("key", ["../outside", "a/../../outside", "", "/etc/passwd"])
async def test_keys_cannot_escape_the_root(tmp_path: Path, key: str) -> None:
    store = LocalBlobStore(tmp_path / "files")
    with pytest.raises(ValueError, match="outside the store"):
        await store.put(key, staged(tmp_path, b"x"), content_type="text/plain")
    assert not (tmp_path / "outside").exists()
