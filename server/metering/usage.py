"""Reading usage back: every record in a sink, totals by account/model/hardware/day, renderers.

Costs are summed as ``Decimal`` from the records' decimal strings, so totals are exact.
"""

import asyncio
import csv
import io
import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from rich.table import Table

from server.metering.sinks import OBJECT_SUFFIX, Sink, decode_object

Dimension = Literal["account", "model", "hardware", "day"]
DIMENSIONS: tuple[Dimension, ...] = ("account", "model", "hardware", "day")
READ_CONCURRENCY = 16  # objects fetched at once
SECONDS_DIGITS = 6  # predict seconds are summed to the microsecond

Record = dict[str, Any]

_KEYS: dict[Dimension, Callable[[Record], str]] = {
    "account": lambda r: str(r["account"]),
    "model": lambda r: str(r["model"]),
    "hardware": lambda r: str(r["hardware"]),
    "day": lambda r: str(r["completed_at"])[:10],
}


class MixedCurrencies(ValueError):
    """The records are priced in more than one currency, so they have no single total."""


@dataclass(frozen=True)
class UsageTotal:
    key: str
    predictions: int
    predict_seconds: float
    cost: Decimal
    currency: str


async def read_records(sink: Sink) -> list[Record]:
    """Every record in the sink's usage objects, once each (by ``record_id``), by sequence."""
    keys = [key for key in await sink.keys() if key.endswith(OBJECT_SUFFIX)]
    limit = asyncio.Semaphore(READ_CONCURRENCY)

    async def fetch(key: str) -> list[Record]:
        async with limit:
            return decode_object(await sink.get(key))

    batches = await asyncio.gather(*(fetch(key) for key in keys))
    unique: dict[str, Record] = {}
    for batch in batches:
        for record in batch:
            unique.setdefault(record["record_id"], record)
    return sorted(unique.values(), key=lambda r: (r.get("sequence", 0), r["record_id"]))


def _total(key: str, records: list[Record], currency: str) -> UsageTotal:
    return UsageTotal(
        key=key,
        predictions=len(records),
        predict_seconds=round(math.fsum(float(r["predict_time"]) for r in records), SECONDS_DIGITS),
        cost=sum((Decimal(r["cost"]) for r in records), Decimal(0)),
        currency=currency,
    )


def totals(records: Iterable[Record], by: Dimension) -> list[UsageTotal]:
    """One total per value of ``by`` (and currency), sorted by key."""
    key_of = _KEYS[by]
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for record in records:
        groups[key_of(record), str(record["currency"])].append(record)
    return [_total(key, rows, currency) for (key, currency), rows in sorted(groups.items())]


def grand_total(records: Iterable[Record]) -> UsageTotal:
    """All records together (key ``"total"``; currency ``""`` when there are none)."""
    records = list(records)
    currencies = {str(r["currency"]) for r in records}
    if len(currencies) > 1:
        raise MixedCurrencies(f"records are priced in {', '.join(sorted(currencies))}")
    return _total("total", records, currencies.pop() if currencies else "")


def _row(total: UsageTotal) -> dict[str, Any]:
    return {
        "key": total.key,
        "predictions": total.predictions,
        "predict_seconds": total.predict_seconds,
        "cost": str(total.cost),
    }


def report(records: list[Record], by: Dimension) -> dict[str, Any]:
    """The totals as JSON-ready data (costs as decimal strings), with the grand total."""
    total = grand_total(records)
    return {
        "by": by,
        "currency": total.currency or None,
        "rows": [_row(row) for row in totals(records, by)],
        "total": _row(total),
    }


async def usage_report(sink: Sink, by: Dimension) -> dict[str, Any]:
    """``report`` over everything in the sink (for the admin API)."""
    return report(await read_records(sink), by)


def render_table(
    rows: list[UsageTotal], *, by: str = "key", total: UsageTotal | None = None
) -> Table:
    table = Table(title=f"Usage by {by}")
    table.add_column(by.capitalize())
    table.add_column("Predictions", justify="right")
    table.add_column("Predict seconds", justify="right")
    table.add_column("Cost", justify="right")
    table.add_column("Currency")

    def cells(row: UsageTotal) -> tuple[str, ...]:
        seconds = f"{row.predict_seconds:.3f}"
        return (row.key, str(row.predictions), seconds, str(row.cost), row.currency)

    for row in rows:
        table.add_row(*cells(row))
    if total is not None:
        table.add_section()
        table.add_row(*cells(total), style="bold")
    return table


CSV_FIELDS = ("key", "predictions", "predict_seconds", "cost", "currency")


def render_csv(rows: list[UsageTotal]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for row in rows:
        writer.writerow([row.key, row.predictions, row.predict_seconds, row.cost, row.currency])
    return out.getvalue()


def render_json(rows: list[UsageTotal]) -> str:
    return json.dumps([{**_row(row), "currency": row.currency} for row in rows], indent=2)
