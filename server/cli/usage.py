"""``cogway usage``: totals of the usage records in the configured sink (local dir or S3)."""

import argparse
import asyncio
import sys

from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console

from server.metering import usage as metering_usage
from server.metering.sinks import sink_from_settings
from server.settings import Settings


def usage(args: argparse.Namespace) -> None:
    by: metering_usage.Dimension = getattr(args, "by", None) or "model"
    fmt: str = getattr(args, "format", None) or "table"
    sink = sink_from_settings(Settings())
    try:
        records = asyncio.run(metering_usage.read_records(sink))
        rows = metering_usage.totals(records, by)
        total = metering_usage.grand_total(records)
    except (OSError, ValueError, KeyError, BotoCoreError, ClientError) as exc:
        # an unreachable store, a missing bucket, an unreadable object, mixed currencies
        print(f"error: cannot read usage from {sink.describe()}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    if fmt == "csv":
        print(metering_usage.render_csv(rows), end="")
    elif fmt == "json":
        print(metering_usage.render_json(rows))
    else:
        console = Console()
        console.print(metering_usage.render_table(rows, by=by, total=total))
        console.print(f"{total.predictions} records from {sink.describe()}", style="dim")
