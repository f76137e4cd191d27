"""A Cog server for benchmarks: its venv, a trivial async predictor with a schema, start/stop.

Used by ``dispatch_mechanisms.py``; everything lives under ``.cache/bench`` (gitignored).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COG_VERSION = "0.23.1"
HOST = "127.0.0.1"
COG_MAX_CONCURRENCY = 32
READY_TIMEOUT_S = 60.0

PREDICT_PY = """\
from cog import BasePredictor, Input


class Predictor(BasePredictor):
    async def predict(self, text: str = Input(default="x")) -> str:
        return text[::-1]
"""

OPENAPI_SCHEMA: dict[str, Any] = {
    "openapi": "3.0.2",
    "info": {"title": "Cog", "version": "0.1.0"},
    "paths": {"/predictions": {"post": {"x-cog-streaming": True}}},
    "components": {
        "schemas": {
            "Input": {
                "type": "object",
                "title": "Input",
                "properties": {
                    "text": {"type": "string", "title": "Text", "x-order": 0, "default": "x"}
                },
            },
            "Output": {"type": "string", "title": "Output"},
        }
    },
}


# --------------------------------------------------------------------------- setup


def ensure_cog_venv(venv_dir: Path) -> Path:
    """Create (once) a venv holding ``cog==COG_VERSION``; return its python."""
    python = venv_dir / "bin" / "python"
    probe = f"import importlib.metadata as m; assert m.version('cog') == '{COG_VERSION}'"
    if python.exists():
        ok = subprocess.run([str(python), "-c", probe], capture_output=True, check=False)
        if ok.returncode == 0:
            return python
        shutil.rmtree(venv_dir)
    base_python = shutil.which("python3") or sys.executable
    subprocess.run([base_python, "-m", "venv", str(venv_dir)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            f"cog=={COG_VERSION}",
        ],
        check=True,
    )
    subprocess.run([str(python), "-c", probe], check=True)
    return python


def write_predictor(model_dir: Path) -> None:
    (model_dir / ".cog").mkdir(parents=True, exist_ok=True)
    (model_dir / "predict.py").write_text(PREDICT_PY)
    (model_dir / ".cog" / "openapi_schema.json").write_text(json.dumps(OPENAPI_SCHEMA, indent=2))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def health_status(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/health-check", timeout=2) as resp:
            body: dict[str, Any] = json.loads(resp.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
        return None
    status = body.get("status")
    return status if isinstance(status, str) else None


@dataclass
class CogServer:
    proc: subprocess.Popen[bytes]
    port: int
    stderr_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def cpu_seconds(self) -> float:
        """utime+stime of every live process in the server's process group (server + worker)."""
        return process_group_cpu_seconds(self.proc.pid)

    def kill(self) -> None:
        """SIGTERM the process group, SIGKILL it after 3 s, and SIGKILL any straggling worker."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=3)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def start_cog(
    venv_python: Path,
    model_dir: Path,
    stderr_path: Path,
    extra_env: dict[str, str] | None = None,
    *,
    poll_s: float = 0.05,
) -> CogServer:
    """Start Cog's server and return once ``/health-check`` says READY (asked every ``poll_s``)."""
    venv_bin = venv_python.parent
    for _attempt in range(3):
        port = free_port()
        env = dict(os.environ)
        env.update(
            PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '')}",
            PORT=str(port),
            COG_PREDICT_TYPE_STUB="predict.py:Predictor",
            COG_MAX_CONCURRENCY=str(COG_MAX_CONCURRENCY),
        )
        env.update(extra_env or {})
        env.pop("VIRTUAL_ENV", None)
        with stderr_path.open("wb") as stderr:
            proc = subprocess.Popen(
                [str(venv_python), "-m", "cog.server.http", "--host", HOST],
                cwd=model_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        server = CogServer(proc, port, stderr_path)
        deadline = time.monotonic() + READY_TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    break  # e.g. "Address already in use": try another port
                if health_status(port) == "READY":
                    return server
                time.sleep(poll_s)
            else:
                raise RuntimeError(f"Cog not READY after {READY_TIMEOUT_S}s; see {stderr_path}")
        except BaseException:
            server.kill()
            raise
        server.kill()
    tail = stderr_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"Cog server failed to start:\n{tail}")


def lean_ca_env(venv_python: Path, cache: Path) -> dict[str, str]:
    """Env giving coglet a small CA store: certifi's bundle only, and an empty CA directory.

    coglet 0.23.1 appears to build a new webhook HTTP client per prediction, loading the whole
    system CA store each time (~5 ms of CPU before the 202 on this machine); the cost follows
    SSL_CERT_DIR/SSL_CERT_FILE. https webhooks to public hosts still verify with certifi.
    """
    where = subprocess.run(
        [str(venv_python), "-c", "import certifi; print(certifi.where())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    empty_dir = cache / "empty-ca-dir"
    empty_dir.mkdir(exist_ok=True)
    return {"SSL_CERT_FILE": where, "SSL_CERT_DIR": str(empty_dir)}


def process_group_cpu_seconds(pgid: int) -> float:
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        # fields[0] is field 3 (state); pgrp is field 5, utime 14, stime 15
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")
