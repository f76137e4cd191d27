"""``cogway demo``: push every example predictor to a running gateway and run each once.

Prints, per predictor: the build time (upload → ready), the cold start (the first prediction's
wait for a booting instance), the predict time, and the output (abridged).
"""

import argparse
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from server.cli.remote import CLIError, _check, archive, client

EXAMPLES = ("embeddings", "vad", "stream")
OUTPUT_CHARS = 120


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    parse = datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()


def _abridge(output: Any) -> str:
    if isinstance(output, list) and output and all(isinstance(x, str) for x in output):
        text = "".join(output)  # a token stream
    else:
        text = json.dumps(output)
    return text if len(text) <= OUTPUT_CHARS else text[: OUTPUT_CHARS - 1] + "…"


def demo(args: argparse.Namespace) -> None:
    console = Console()
    root = Path(args.predictors)
    table = Table(title="Example predictors")
    for column in ("model", "build s", "cold start s", "predict s", "output"):
        table.add_column(column, overflow="fold")
    with client(args) as http:
        owner = _check(http.get("/v1/account"))["username"]
        for name in EXAMPLES:
            directory = root / name
            model = f"{owner}/{name}"
            if http.get(f"/v1/models/{model}").status_code == 404:
                _check(http.post("/v1/models", json={"owner": owner, "name": name}))
            console.print(f"Pushing {directory} as {model} …")
            began = time.monotonic()
            version = _check(
                http.post(
                    f"/v1/models/{model}/versions",
                    content=archive(directory),
                    headers={"Content-Type": "application/gzip", "Prefer": "wait"},
                )
            )
            built = time.monotonic() - began
            body = json.loads((directory / "sample.json").read_text())
            prediction = _check(
                http.post(
                    "/v1/predictions",
                    json={"version": version["id"], "input": body["input"]},
                    headers={"Prefer": "wait"},
                )
            )
            if prediction["status"] != "succeeded":
                raise CLIError(f"{model}: {prediction['status']}: {prediction.get('error')}")
            cold = _seconds(prediction["created_at"], prediction["started_at"])
            table.add_row(
                model,
                f"{built:.1f}",
                f"{cold:.2f}" if cold is not None else "-",
                f"{prediction['metrics']['predict_time']:.3f}",
                _abridge(prediction["output"]),
            )
    console.print(table)
