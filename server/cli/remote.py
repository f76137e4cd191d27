"""``cogway push`` and ``cogway rollback``: commands that talk to a running gateway's API."""

import argparse
import io
import os
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from server.models import source

DEFAULT_URL = "http://127.0.0.1:8000"
POLL_S = 0.25
PUSH_TIMEOUT_S = 600.0


class CLIError(Exception):
    """A failure to report to the user as one line, exit code 1."""


def client(args: argparse.Namespace) -> httpx.Client:
    url = args.url or os.environ.get("COGWAY_URL") or DEFAULT_URL
    token = args.token or os.environ.get("REPLICATE_API_TOKEN")
    token_file = Path(os.environ.get("COGWAY_DATA_DIR", ".cogway")) / "admin-token"
    if not token and token_file.is_file():
        token = token_file.read_text().strip()
    if not token:
        raise CLIError("No token: pass --token or set REPLICATE_API_TOKEN.")
    return httpx.Client(
        base_url=url.rstrip("/"),
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(30.0, read=PUSH_TIMEOUT_S),
    )


def _check(resp: httpx.Response) -> dict[str, Any]:
    if resp.is_success:
        return resp.json() if resp.content else {}
    try:
        problem = resp.json()
        detail = problem.get("detail") or problem.get("title")
    except ValueError:
        detail = resp.text
    raise CLIError(f"{resp.request.method} {resp.request.url.path} → {resp.status_code}: {detail}")


def archive(directory: Path) -> bytes:
    """The predictor directory as a tar.gz, with the same files a version is made of."""
    if not (directory / "cog.yaml").is_file():
        raise CLIError(f"{directory} has no cog.yaml.")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for rel in source.files(directory):
            tar.add(directory / rel, arcname=rel.as_posix())
    return buffer.getvalue()


def push(args: argparse.Namespace) -> None:
    console = Console(stderr=True)
    owner, _, name = args.model.partition("/")
    directory = Path(args.path).resolve()
    body = archive(directory)
    began = time.monotonic()
    with client(args) as http:
        found = http.get(f"/v1/models/{owner}/{name}")
        if found.status_code == 404:
            _check(
                http.post(
                    "/v1/models",
                    json={"owner": owner, "name": name, "visibility": args.visibility},
                )
            )
            console.print(f"Created model [bold]{owner}/{name}[/] ({args.visibility})")
        else:
            _check(found)
        console.print(f"Uploading {directory} ({len(body) / 1024:.1f} KiB)…")
        version = _check(
            http.post(
                f"/v1/models/{owner}/{name}/versions",
                content=body,
                headers={"Content-Type": "application/gzip"},
            )
        )
        status = _follow_build(http, console, owner, name, version["id"])
    elapsed = time.monotonic() - began
    if status["status"] != "ready":
        raise CLIError(f"Build failed: {(status.get('error') or '').strip()}")
    console.print(f"[green]Ready[/] in {elapsed:.1f}s: {owner}/{name}:{version['id']}")
    print(version["id"])


def _follow_build(
    http: httpx.Client, console: Console, owner: str, name: str, version_id: str
) -> dict[str, Any]:
    offset = 0
    url = f"/v1/models/{owner}/{name}/versions/{version_id}/build"
    with console.status(f"Building {version_id[:12]}…"):
        while True:
            status = _check(http.get(url, params={"offset": offset}))
            for line in status["logs"].splitlines():
                console.print(f"  {line}", style="dim", highlight=False, markup=False)
            offset = status["offset"]
            if status["status"] != "building":
                return status
            time.sleep(POLL_S)


def rollback(args: argparse.Namespace) -> None:
    owner, _, name = args.deployment.partition("/")
    with client(args) as http:
        body = {"to": args.to} if args.to is not None else {}
        deployment = _check(http.post(f"/v1/deployments/{owner}/{name}/rollback", json=body))
    release = deployment["current_release"]
    print(
        f"{owner}/{name} is at release {release['number']}: {release['model']}:{release['version']}"
    )


def run(func: Callable[[argparse.Namespace], None], args: argparse.Namespace) -> None:
    try:
        func(args)
    except CLIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except httpx.TransportError as exc:
        print(f"error: cannot reach the gateway: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
