"""Metering end to end: a real gateway, real Cog, usage objects in moto's S3 over HTTP.

S3 outages are a proxy in front of moto refusing connections (moto itself keeps its data).
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from server.metering.sinks import decode_object
from tests.conftest import FIXTURES, ROOT
from tests.integration.gateway import Gateway, run_gateway
from tests.s3 import (  # noqa: F401  (fixtures, registered under their name=)
    S3Proxy,
    aws_env_fixture,
    fresh_bucket,
    moto_server_fixture,
    s3_client,
    s3_proxy_fixture,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("aws_env")]

MODELS = {"acme/echo": FIXTURES / "echo"}


def metering_env(proxy: S3Proxy, bucket: str, *, batch: int, age: float) -> dict[str, str]:
    return {
        "COGWAY_METERING__SINK": "s3",
        "COGWAY_METERING__S3_ENDPOINT_URL": proxy.endpoint_url,
        "COGWAY_METERING__S3_BUCKET": bucket,
        "COGWAY_METERING__BATCH_RECORDS": str(batch),
        "COGWAY_METERING__BATCH_AGE": str(age),
    }


def raw_records(endpoint_url: str, bucket: str) -> list[dict[str, Any]]:
    """Every record line in every object, duplicates included (no de-duplication here)."""
    s3 = s3_client(endpoint_url)
    records = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            records += decode_object(body)
    return records


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def predict(gw: Gateway, text: str) -> str:
    resp = httpx.post(
        f"{gw.url}/v1/models/acme/echo/predictions",
        json={"input": {"text": text}},
        headers={"Authorization": f"Bearer {gw.token}", "Prefer": "wait"},
        timeout=60,
    )
    body = resp.json()
    assert body["status"] == "succeeded", body
    return str(body["id"])


def test_one_record_per_prediction_and_usage_totals(
    s3_proxy: S3Proxy, tmp_path: Path, moto_server: Any
) -> None:
    """N predictions -> exactly N records; `cogway usage` sums exactly what the records say."""
    bucket = fresh_bucket(moto_server.endpoint_url)
    env = metering_env(s3_proxy, bucket, batch=4, age=0.2)
    with run_gateway(tmp_path / "gw", MODELS, env=env) as gw:
        ids = [predict(gw, f"n{i}") for i in range(10)]
        wait_for(lambda: len(raw_records(moto_server.endpoint_url, bucket)) >= 10)
        admin = httpx.get(
            f"{gw.url}/v1/admin/usage",
            params={"by": "model"},
            headers={"Authorization": f"Bearer {gw.token}"},
        ).json()
    records = raw_records(moto_server.endpoint_url, bucket)
    assert sorted(r["prediction_id"] for r in records) == sorted(ids)
    assert sorted(r["sequence"] for r in records) == list(range(1, 11))
    record = records[0]
    assert record["account"] == "admin"
    assert record["model"] == "acme/echo"
    assert record["hardware"] == "cpu"
    assert record["pricing_mode"] == "per_second"
    assert Decimal(record["cost"]) == Decimal(record["billed_units"]) * Decimal(
        record["unit_price"]
    )
    total = sum(Decimal(r["cost"]) for r in records)
    env_cli = {
        **os.environ,
        **env,
        "COGWAY_METERING__S3_ENDPOINT_URL": moto_server.endpoint_url,
        "COGWAY_DATA_DIR": str(tmp_path / "gw"),
    }
    out = subprocess.run(
        [sys.executable, "-m", "server", "usage", "--by", "model", "--format", "json"],
        cwd=ROOT,
        env=env_cli,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = json.loads(out)
    rows = rows["rows"] if isinstance(rows, dict) else rows
    assert [(r["key"], r["predictions"]) for r in rows] == [("acme/echo", 10)]
    assert Decimal(rows[0]["cost"]) == total
    assert Decimal(admin["total"]["cost"]) == total


def test_s3_outage_loses_and_duplicates_nothing(
    s3_proxy: S3Proxy, tmp_path: Path, moto_server: Any
) -> None:
    """Predictions run while S3 is unreachable; once it is back every record lands once."""
    bucket = fresh_bucket(moto_server.endpoint_url)
    env = metering_env(s3_proxy, bucket, batch=3, age=0.2)
    with run_gateway(tmp_path / "gw", MODELS, env=env) as gw:
        ids = [predict(gw, f"a{i}") for i in range(4)]
        wait_for(lambda: len(raw_records(moto_server.endpoint_url, bucket)) >= 4)
        s3_proxy.stop()
        ids += [predict(gw, f"b{i}") for i in range(7)]
        time.sleep(1.0)  # let the writer fail and back off at least once
        s3_proxy.start()
        wait_for(lambda: len(raw_records(moto_server.endpoint_url, bucket)) >= 11, timeout=60)
    counts = Counter(r["prediction_id"] for r in raw_records(moto_server.endpoint_url, bucket))
    assert sorted(counts) == sorted(ids)
    assert set(counts.values()) == {1}
    assert "metering_put_failed" in (tmp_path / "gw" / "gateway.log").read_text()


def test_sigkill_before_upload_ships_after_restart_once(
    s3_proxy: S3Proxy, tmp_path: Path, moto_server: Any
) -> None:
    """Records written with their terminal status survive kill -9 and ship after the restart."""
    bucket = fresh_bucket(moto_server.endpoint_url)
    data = tmp_path / "gw"
    slow = metering_env(s3_proxy, bucket, batch=1000, age=3600)
    with run_gateway(data, MODELS, env=slow) as gw:
        ids = [predict(gw, f"k{i}") for i in range(5)]
        gw.proc.send_signal(signal.SIGKILL)
        gw.proc.wait()
    assert raw_records(moto_server.endpoint_url, bucket) == []  # nothing was uploaded
    fast = metering_env(s3_proxy, bucket, batch=1000, age=0.2)
    with run_gateway(data, MODELS, env=fast) as gw:
        wait_for(lambda: len(raw_records(moto_server.endpoint_url, bucket)) >= 5)
        ids.append(predict(gw, "after"))
    # the graceful stop flushed the last one
    counts = Counter(r["prediction_id"] for r in raw_records(moto_server.endpoint_url, bucket))
    assert sorted(counts) == sorted(ids)
    assert set(counts.values()) == {1}


def test_a_store_that_comes_back_empty_gets_its_bucket_again(
    s3_proxy: S3Proxy, tmp_path: Path, moto_server: Any
) -> None:
    """If the bucket disappears (a store restarted without its data), the writer recreates it
    and the records written meanwhile still land."""
    bucket = fresh_bucket(moto_server.endpoint_url)
    s3 = s3_client(moto_server.endpoint_url)
    env = metering_env(s3_proxy, bucket, batch=2, age=0.2)
    with run_gateway(tmp_path / "gw", MODELS, env=env) as gw:
        predict(gw, "before")
        wait_for(lambda: len(raw_records(moto_server.endpoint_url, bucket)) >= 1)
        for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])
        s3.delete_bucket(Bucket=bucket)
        later = [predict(gw, f"after{i}") for i in range(3)]

        def landed() -> bool:
            try:
                return len(raw_records(moto_server.endpoint_url, bucket)) >= 3
            except ClientError:  # NoSuchBucket until the writer recreates it
                return False

        wait_for(landed, timeout=60)
    ids = [r["prediction_id"] for r in raw_records(moto_server.endpoint_url, bucket)]
    assert sorted(ids) == sorted(later)
