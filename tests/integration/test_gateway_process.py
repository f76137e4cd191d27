"""The gateway as a process: SIGKILL and restart, the tokens CLI."""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import FIXTURES, ROOT
from tests.integration.gateway import run_gateway

pytestmark = pytest.mark.integration


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_sigkill_then_restart_loses_nothing(tmp_path: Path) -> None:
    """After kill -9: no orphan Cog process; queued predictions run after the restart and the
    one that was running fails with a clear error."""
    data = tmp_path / "gw"
    models = {"acme/slow": FIXTURES / "slow"}
    with run_gateway(data, models) as gw:
        auth = {"Authorization": f"Bearer {gw.token}"}
        url = f"{gw.url}/v1/models/acme/slow/predictions"
        running = httpx.post(url, json={"input": {"seconds": 30}}, headers=auth).json()
        queued = httpx.post(url, json={"input": {"seconds": 0.2}}, headers=auth).json()

        def started() -> bool:
            got = httpx.get(running["urls"]["get"], headers=auth).json()
            return bool(got["status"] == "processing")

        wait_for(started)
        # Each create's one request log line names its prediction.
        creates: list[dict[str, Any]] = []

        def both_logged() -> bool:  # a request's line is written just after its answer
            nonlocal creates
            text = gw.log_path.read_text().splitlines()
            lines = [json.loads(line) for line in text if line.startswith("{")]
            creates = [
                e for e in lines if e.get("event") == "http_request" and e["method"] == "POST"
            ]
            return len(creates) >= 2

        wait_for(both_logged, timeout=5.0)
        assert [e.get("prediction_id") for e in creates] == [running["id"], queued["id"]]
        cog = gw.cog_pids()
        assert cog
        gw.proc.send_signal(signal.SIGKILL)
        gw.proc.wait()
        wait_for(lambda: not gw.cog_pids(), timeout=10)  # they die with the gateway
    with run_gateway(data, models) as gw:
        auth = {"Authorization": f"Bearer {gw.token}"}

        def done() -> bool:
            got = httpx.get(f"{gw.url}/v1/predictions/{queued['id']}", headers=auth).json()
            return bool(got["status"] == "succeeded")

        wait_for(done)
        lost = httpx.get(f"{gw.url}/v1/predictions/{running['id']}", headers=auth).json()
        assert lost["status"] == "failed"
        assert "gateway restarted" in lost["error"]
        # A Prefer: wait create's one line tells how it ended; the async ones log their end.
        url = f"{gw.url}/v1/models/acme/slow/predictions"
        held = httpx.post(
            url, json={"input": {"seconds": 0.01}}, headers={**auth, "Prefer": "wait"}
        ).json()
        assert held["status"] == "succeeded"
        lines: list[dict[str, Any]] = []

        def logged() -> bool:  # the request's line is written just after its answer
            nonlocal lines
            text = gw.log_path.read_text().splitlines()
            lines = [json.loads(line) for line in text if line.startswith("{")]
            return any(e.get("prediction_id") == held["id"] for e in lines)

        wait_for(logged, timeout=5.0)
        ends = {e["prediction_id"]: e["status"] for e in lines if e["event"] == "prediction_status"}
        assert ends == {queued["id"]: "succeeded", running["id"]: "failed"}
        [request] = [e for e in lines if e.get("prediction_id") == held["id"]]
        assert (request["event"], request["prediction_status"]) == ("http_request", "succeeded")


def test_tokens_create_makes_an_isolated_account(tmp_path: Path) -> None:
    """`cogway tokens create` prints a token for a new account that sees only its own work."""
    data = tmp_path / "gw"
    with run_gateway(data, {"acme/echo": FIXTURES / "echo"}) as gw:
        admin = {"Authorization": f"Bearer {gw.token}"}
        mine = httpx.post(
            f"{gw.url}/v1/models/acme/echo/predictions",
            json={"input": {"text": "admin's"}},
            headers={**admin, "Prefer": "wait"},
        ).json()
        env = {**os.environ, "COGWAY_DATA_DIR": str(data)}
        out = subprocess.run(
            [sys.executable, "-m", "server", "tokens", "create", "--username", "bob"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        token = out.stdout.strip().splitlines()[-1]
        assert token.startswith("cgw_")
        bob = {"Authorization": f"Token {token}"}
        assert httpx.get(f"{gw.url}/v1/account", headers=bob).json()["username"] == "bob"
        assert httpx.get(mine["urls"]["get"], headers=bob).status_code == 404
        ran = httpx.post(
            f"{gw.url}/v1/models/acme/echo/predictions",
            json={"input": {"text": "bob's"}},
            headers={**bob, "Prefer": "wait"},
        ).json()
        assert ran["output"] == "bob's"
        listed = httpx.get(f"{gw.url}/v1/predictions", headers=bob).json()["results"]
        assert [p["id"] for p in listed] == [ran["id"]]
