"""``cogway webhooks PREDICTION_ID``: every delivery attempt of a prediction's webhooks (admin)."""

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table

from server.cli.remote import _check, client

MAX_PAGES = 20
PIPED_WIDTH = 160


def attempts(args: argparse.Namespace) -> None:
    results: list[dict[str, Any]] = []
    with client(args) as http:
        page = _check(http.get("/v1/admin/webhooks", params={"prediction_id": args.prediction_id}))
        results += page["results"]
        for _ in range(MAX_PAGES - 1):
            if not page.get("next"):
                break
            page = _check(http.get(page["next"]))
            results += page["results"]
    results.sort(key=lambda a: (a["created_at"], a["id"]))  # oldest first
    if args.format == "json":
        print(json.dumps(results, indent=2))
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=PIPED_WIDTH)  # piped: keep each attempt on one line
    if not results:
        console.print(f"No webhook attempts for {args.prediction_id}.")
        return
    table = Table("time", "event", "attempt", "result", "duration", "state", "webhook-id")
    for a in results:
        result = str(a["status_code"]) if a["status_code"] is not None else ""
        if a["error"] and a["error"] != f"HTTP {a['status_code']}":
            result = f"{result} {a['error']}".strip()
        table.add_row(
            a["created_at"],
            a["event"],
            str(a["attempt"]),
            result,
            f"{a['duration'] * 1000:.0f} ms",
            a["state"] or "",
            a["webhook_id"],
        )
    console.print(table)
    console.print(f"to {results[-1]['url']}", style="dim", highlight=False)
