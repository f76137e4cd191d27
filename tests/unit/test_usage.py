"""Usage objects and totals: encoding, keys, exact sums by each dimension, renderers, the CLI."""

import argparse
import csv
import gzip
import io
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from server.cli.usage import usage
from server.metering import usage as metering_usage
from server.metering.sinks import (
    LocalDirSink,
    S3Sink,
    decode_object,
    encode_batch,
    key_range,
    object_key,
    sink_from_settings,
)
from server.metering.usage import (
    MixedCurrencies,
    UsageTotal,
    grand_total,
    read_records,
    render_csv,
    render_json,
    render_table,
    report,
    totals,
)
from tests.conftest import make_settings

pytestmark = pytest.mark.anyio


def record(seq: int, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "record_id": f"r{seq:04d}",
        "sequence": seq,
        "prediction_id": f"p{seq:04d}",
        "account": "alice",
        "model": "acme/echo",
        "version": "v1",
        "deployment": None,
        "hardware": "cpu",
        "status": "succeeded",
        "created_at": "2026-03-01T10:00:00.000000Z",
        "started_at": "2026-03-01T10:00:01.000000Z",
        "completed_at": "2026-03-01T10:00:03.000000Z",
        "queue_time": 1.0,
        "predict_time": 2.0,
        "total_time": 3.0,
        "billed_units": "2.000",
        "unit": "second",
        "unit_price": "0.0001",
        "cost": "0.00020000",
        "currency": "USD",
        "pricing_mode": "per_second",
        "gateway_id": "gw-1",
    }
    values.update(overrides)
    return values


# 0.1 + 0.2 style amounts: a float sum would not come out exact.
RECORDS = [
    record(1, cost="0.10000000", predict_time=0.1),
    record(2, cost="0.20000000", predict_time=0.2, account="bob"),
    record(3, cost="0.00350000", predict_time=2.5, hardware="gpu-a100", model="acme/big"),
    record(
        4,
        cost="0.00200000",
        predict_time=0.7,
        model="acme/flat",
        unit="invocation",
        pricing_mode="per_invocation",
        completed_at="2026-03-02T00:00:00.500000Z",
    ),
    record(5, cost="0", predict_time=0.0, status="canceled", started_at=None, account="bob"),
]


@pytest.mark.parametrize(
    ("by", "expected"),
    [
        (
            "account",
            [
                UsageTotal("alice", 3, 3.3, Decimal("0.10550000"), "USD"),
                UsageTotal("bob", 2, 0.2, Decimal("0.20000000"), "USD"),
            ],
        ),
        (
            "model",
            [
                UsageTotal("acme/big", 1, 2.5, Decimal("0.00350000"), "USD"),
                UsageTotal("acme/echo", 3, 0.3, Decimal("0.30000000"), "USD"),
                UsageTotal("acme/flat", 1, 0.7, Decimal("0.00200000"), "USD"),
            ],
        ),
        (
            "hardware",
            [
                UsageTotal("cpu", 4, 1.0, Decimal("0.30200000"), "USD"),
                UsageTotal("gpu-a100", 1, 2.5, Decimal("0.00350000"), "USD"),
            ],
        ),
        (
            "day",
            [
                UsageTotal("2026-03-01", 4, 2.8, Decimal("0.30350000"), "USD"),
                UsageTotal("2026-03-02", 1, 0.7, Decimal("0.00200000"), "USD"),
            ],
        ),
    ],
)
def test_totals_by_each_dimension(by: metering_usage.Dimension, expected: list[UsageTotal]) -> None:
    """Totals group by the dimension, sort by key and sum costs exactly."""
    assert totals(RECORDS, by) == expected


def test_grand_total_is_exact() -> None:
    """The grand total adds every record's cost as a Decimal."""
    assert grand_total(RECORDS) == UsageTotal("total", 5, 3.5, Decimal("0.30550000"), "USD")


def test_grand_total_of_nothing() -> None:
    """No records: zero everything, no currency."""
    assert grand_total([]) == UsageTotal("total", 0, 0.0, Decimal(0), "")
    assert totals([], "model") == []


def test_currencies_are_never_added_together() -> None:
    """Totals keep currencies apart; a grand total over two currencies is refused."""
    records = [record(1), record(2, currency="EUR", cost="0.5")]
    assert totals(records, "model") == [
        UsageTotal("acme/echo", 1, 2.0, Decimal("0.5"), "EUR"),
        UsageTotal("acme/echo", 1, 2.0, Decimal("0.00020000"), "USD"),
    ]
    with pytest.raises(MixedCurrencies):
        grand_total(records)


def test_render_csv() -> None:
    """CSV has a header and one line per total, costs as exact decimal strings."""
    assert render_csv(totals(RECORDS, "account")) == (
        "key,predictions,predict_seconds,cost,currency\n"
        "alice,3,3.3,0.10550000,USD\n"
        "bob,2,0.2,0.20000000,USD\n"
    )
    assert list(csv.DictReader(io.StringIO(render_csv([])))) == []


def test_render_json() -> None:
    """JSON is a list of totals with costs as decimal strings."""
    assert json.loads(render_json(totals(RECORDS, "hardware"))) == [
        {
            "key": "cpu",
            "predictions": 4,
            "predict_seconds": 1.0,
            "cost": "0.30200000",
            "currency": "USD",
        },
        {
            "key": "gpu-a100",
            "predictions": 1,
            "predict_seconds": 2.5,
            "cost": "0.00350000",
            "currency": "USD",
        },
    ]


def test_render_table() -> None:
    """The table shows one row per total and the grand total below a rule."""
    table = render_table(totals(RECORDS, "account"), by="account", total=grand_total(RECORDS))
    out = io.StringIO()
    Console(file=out, width=100, color_system=None).print(table)
    lines = [" ".join(re.sub("[│┃]", " ", line).split()) for line in out.getvalue().splitlines()]
    assert [line for line in lines if line.startswith(("Account", "alice", "bob", "total"))] == [
        "Account Predictions Predict seconds Cost Currency",
        "alice 3 3.300 0.10550000 USD",
        "bob 2 0.200 0.20000000 USD",
        "total 5 3.500 0.30550000 USD",
    ]


def test_report() -> None:
    """The admin API's report: rows and total, costs as strings, one currency."""
    assert report(RECORDS, "day") == {
        "by": "day",
        "currency": "USD",
        "rows": [
            {"key": "2026-03-01", "predictions": 4, "predict_seconds": 2.8, "cost": "0.30350000"},
            {"key": "2026-03-02", "predictions": 1, "predict_seconds": 0.7, "cost": "0.00200000"},
        ],
        "total": {"key": "total", "predictions": 5, "predict_seconds": 3.5, "cost": "0.30550000"},
    }
    assert report([], "model") == {
        "by": "model",
        "currency": None,
        "rows": [],
        "total": {"key": "total", "predictions": 0, "predict_seconds": 0.0, "cost": "0"},
    }


def test_encode_decode_round_trip() -> None:
    """An object decodes to exactly the records it was made of, in order."""
    body = encode_batch(RECORDS)
    assert decode_object(body) == RECORDS
    lines = gzip.decompress(body).decode().splitlines()
    assert len(lines) == len(RECORDS)
    assert lines[0].startswith('{"account":"alice","billed_units":"2.000",')


def test_encode_is_byte_identical() -> None:
    """The same records give the same bytes (no gzip mtime, sorted keys), whatever the key order."""
    shuffled = [dict(reversed(list(r.items()))) for r in RECORDS]
    assert encode_batch(RECORDS) == encode_batch(shuffled)
    assert encode_batch(RECORDS) != encode_batch(RECORDS[:-1])


def test_object_key_format() -> None:
    """Keys partition by the UTC day and hour and name the sequence range, zero-padded."""
    at = datetime(2026, 3, 1, 9, 59, 59, tzinfo=UTC)
    assert object_key(1, 500, at) == (
        "dt=2026-03-01/hour=09/usage-000000000001-000000000500.jsonl.gz"
    )
    local = datetime(2026, 3, 2, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    assert object_key(123456789012, 123456789013, local) == (
        "dt=2026-03-01/hour=23/usage-123456789012-123456789013.jsonl.gz"
    )


@pytest.mark.parametrize(("first", "last"), [(1, 1), (1, 500), (999, 10**12 - 1), (10**12, 10**13)])
def test_a_key_names_its_sequence_range(first: int, last: int) -> None:
    """The writer finds a claimed batch's rows by the range in its key."""
    at = datetime(2026, 3, 1, 9, tzinfo=UTC)
    assert key_range(object_key(first, last, at)) == (first, last)


class MemorySink:
    """A Sink in a dict."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    async def put(self, key: str, body: bytes) -> None:
        self.objects[key] = body

    async def keys(self) -> list[str]:
        return sorted(self.objects)

    async def get(self, key: str) -> bytes:
        return self.objects[key]

    def describe(self) -> str:
        return "memory"


async def test_read_records_once_each_in_sequence_order() -> None:
    """Every object is read; a record in two objects counts once; other files are ignored."""
    sink = MemorySink()
    at = datetime(2026, 3, 1, 10, tzinfo=UTC)
    await sink.put(object_key(3, 5, at), encode_batch(RECORDS[2:]))
    await sink.put(object_key(1, 3, at), encode_batch(RECORDS[:3]))
    await sink.put("README.txt", b"not a usage object")
    assert await read_records(sink) == RECORDS
    assert await metering_usage.usage_report(sink, "account") == report(RECORDS, "account")


def test_sink_from_settings(tmp_path: Path) -> None:
    """The settings pick the local directory or an S3 bucket with its prefix."""
    local = sink_from_settings(make_settings(tmp_path))
    assert isinstance(local, LocalDirSink)
    assert local.describe() == str((tmp_path / "usage").resolve())
    s3 = sink_from_settings(
        make_settings(
            tmp_path,
            metering={
                "sink": "s3",
                "s3_bucket": "bills",
                "s3_prefix": "gw/",
                "s3_endpoint_url": "http://127.0.0.1:9",
            },
        )
    )
    assert isinstance(s3, S3Sink)
    assert s3.describe() == "s3://bills/gw/"
    assert s3.client.meta.endpoint_url == "http://127.0.0.1:9"


def _fill(root: Path) -> None:
    path = root / object_key(1, 5, datetime(2026, 3, 1, 10, tzinfo=UTC))
    path.parent.mkdir(parents=True)
    path.write_bytes(encode_batch(RECORDS))


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("csv", render_csv(totals(RECORDS, "hardware"))),
        ("json", render_json(totals(RECORDS, "hardware")) + "\n"),
    ],
)
def test_cli_usage_formats(
    fmt: str,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``cogway usage --by hardware --format csv|json`` prints the totals from the local sink."""
    _fill(tmp_path / "usage")
    monkeypatch.setenv("COGWAY_DATA_DIR", str(tmp_path))
    usage(argparse.Namespace(by="hardware", format=fmt))
    assert capsys.readouterr().out == expected


def test_cli_usage_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The table (by model, the default) ends with the grand total and where it came from."""
    _fill(tmp_path / "usage")
    monkeypatch.setenv("COGWAY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "120")
    usage(argparse.Namespace(by=None, format=None))
    out = capsys.readouterr().out
    assert "Usage by model" in out
    assert "acme/flat" in out
    assert "0.30550000" in out
    assert out.rstrip().endswith(f"5 records from {(tmp_path / 'usage').resolve()}")
