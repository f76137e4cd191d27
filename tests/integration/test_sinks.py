"""Sinks for real: a local directory, and S3Sink over HTTP against moto behind a cuttable proxy."""

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from server.metering.sinks import (
    LocalDirSink,
    S3Sink,
    decode_object,
    encode_batch,
    object_key,
    sink_from_settings,
)
from server.metering.usage import read_records, usage_report
from tests.conftest import make_settings
from tests.s3 import (  # noqa: F401  (fixtures, registered under their name=)
    MotoServer,
    S3Proxy,
    aws_env_fixture,
    fresh_bucket,
    moto_server_fixture,
    s3_client,
    s3_proxy_fixture,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio, pytest.mark.usefixtures("aws_env")]

AT = datetime(2026, 3, 1, 10, 15, tzinfo=UTC)
KEY_1 = object_key(1, 2, AT)
KEY_2 = object_key(3, 3, datetime(2026, 3, 1, 11, tzinfo=UTC))


def records(first: int, last: int) -> list[dict[str, object]]:
    return [
        {
            "record_id": f"r{seq}",
            "sequence": seq,
            "account": "alice",
            "model": "acme/echo",
            "hardware": "cpu",
            "completed_at": "2026-03-01T10:15:00.000000Z",
            "predict_time": 1.5,
            "cost": "0.00015000",
            "currency": "USD",
        }
        for seq in range(first, last + 1)
    ]


def s3_sink(endpoint_url: str, bucket: str, prefix: str = "usage/") -> S3Sink:
    return S3Sink(bucket=bucket, prefix=prefix, endpoint_url=endpoint_url, region="us-east-1")


async def test_local_put_get_keys(tmp_path: Path) -> None:
    """Objects land under the root by key; keys are relative, sorted, usage objects only."""
    sink = LocalDirSink(tmp_path / "usage")
    assert await sink.keys() == []
    await sink.put(KEY_2, encode_batch(records(3, 3)))
    await sink.put(KEY_1, b"first")
    await sink.put(KEY_1, encode_batch(records(1, 2)))  # a retry overwrites
    (tmp_path / "usage" / "notes.txt").write_text("not usage")
    assert await sink.keys() == [KEY_1, KEY_2]
    assert decode_object(await sink.get(KEY_1)) == records(1, 2)
    assert (tmp_path / "usage" / KEY_1).read_bytes() == encode_batch(records(1, 2))
    leftovers = [p for p in (tmp_path / "usage").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    assert [r["record_id"] for r in await read_records(sink)] == ["r1", "r2", "r3"]


async def test_local_put_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A put that fails before the rename leaves the old object and no temporary file."""
    sink = LocalDirSink(tmp_path)
    await sink.put(KEY_1, b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        await sink.put(KEY_1, b"new")
    assert await sink.get(KEY_1) == b"old"
    assert sorted(p.name for p in (tmp_path / KEY_1).parent.iterdir()) == [Path(KEY_1).name]


async def test_local_rejects_keys_outside_the_root(tmp_path: Path) -> None:
    """A key cannot write outside the sink's directory."""
    sink = LocalDirSink(tmp_path / "usage")
    with pytest.raises(ValueError, match="outside the sink"):
        await sink.put("../escape.jsonl.gz", b"x")
    assert not (tmp_path / "escape.jsonl.gz").exists()


async def test_s3_ensure_bucket(moto_server: MotoServer) -> None:
    """ensure_bucket creates a missing bucket and is a no-op when it exists."""
    bucket = f"cogway-ensure-{os.getpid()}-{id(moto_server)}"
    sink = s3_sink(moto_server.endpoint_url, bucket)
    with pytest.raises(ClientError, match="NoSuchBucket"):
        await sink.put(KEY_1, b"x")
    await sink.ensure_bucket()
    await sink.ensure_bucket()
    await sink.put(KEY_1, b"x")
    assert await sink.keys() == [KEY_1]


async def test_s3_put_get_keys(moto_server: MotoServer) -> None:
    """Objects go under the prefix with gzip JSON Lines headers; keys come back without it."""
    bucket = fresh_bucket(moto_server.endpoint_url)
    sink = s3_sink(moto_server.endpoint_url, bucket, prefix="gw-a/")
    other = s3_sink(moto_server.endpoint_url, bucket, prefix="gw-b/")
    assert await sink.keys() == []
    body = encode_batch(records(1, 2))
    await sink.put(KEY_2, encode_batch(records(3, 3)))
    await sink.put(KEY_1, body)
    await sink.put(KEY_1, body)  # a retry overwrites the same key
    await other.put(KEY_1, encode_batch(records(9, 9)))

    assert await sink.keys() == [KEY_1, KEY_2]
    assert await other.keys() == [KEY_1]
    assert await sink.get(KEY_1) == body  # stored as sent: not decompressed on the way
    head = s3_client(moto_server.endpoint_url).head_object(Bucket=bucket, Key=f"gw-a/{KEY_1}")
    assert (head["ContentType"], head["ContentEncoding"]) == ("application/x-ndjson", "gzip")
    assert [r["record_id"] for r in await read_records(sink)] == ["r1", "r2", "r3"]
    assert (await usage_report(sink, "model"))["total"] == {
        "key": "total",
        "predictions": 3,
        "predict_seconds": 4.5,
        "cost": "0.00045000",
    }


async def test_s3_sink_from_settings(moto_server: MotoServer, tmp_path: Path) -> None:
    """COGWAY_METERING__S3_* settings reach the store."""
    bucket = fresh_bucket(moto_server.endpoint_url)
    settings = make_settings(
        tmp_path,
        metering={"sink": "s3", "s3_bucket": bucket, "s3_endpoint_url": moto_server.endpoint_url},
    )
    sink = sink_from_settings(settings)
    await sink.put(KEY_1, b"x")
    assert await s3_sink(moto_server.endpoint_url, bucket).keys() == [KEY_1]
    assert sink.describe() == f"s3://{bucket}/usage/"


async def test_s3_put_fails_while_the_store_is_down(s3_proxy: S3Proxy) -> None:
    """With the store unreachable a put raises (no client-side retries); afterwards it works."""
    bucket = fresh_bucket(s3_proxy.endpoint_url)
    sink = s3_sink(s3_proxy.endpoint_url, bucket)
    await sink.put(KEY_1, b"before")  # the client now holds a pooled connection

    s3_proxy.stop()
    with pytest.raises(BotoCoreError):
        await sink.put(KEY_2, b"during")
    with pytest.raises(BotoCoreError):
        await sink.keys()

    s3_proxy.start()
    await sink.put(KEY_2, b"after")
    assert await sink.keys() == [KEY_1, KEY_2]
    assert await sink.get(KEY_2) == b"after"
