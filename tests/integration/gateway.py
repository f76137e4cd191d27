"""Run ``cogway serve`` as a real subprocess on a free port, for client and CLI tests."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import ADMIN_TOKEN, ENV_CACHE, ROOT

READY_TIMEOUT_S = 240.0


@dataclass
class Gateway:
    url: str
    token: str
    data_dir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path

    def cog_pids(self) -> list[int]:
        """Cog server/worker processes whose cwd is inside this gateway's data dir."""
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cwd = os.readlink(proc / "cwd")
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if cwd.startswith(str(self.data_dir)) and b"python" in cmdline:
                pids.append(int(proc.name))
        return pids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def run_gateway(
    data_dir: Path, models: dict[str, Path], *, env: dict[str, str] | None = None
) -> Iterator[Gateway]:
    port = free_port()
    extra = env or {}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("COGWAY_")},
        **extra,
        "COGWAY_DATA_DIR": str(data_dir),
        "COGWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "COGWAY_RUNTIME__ENV_CACHE_DIR": str(ENV_CACHE),
        "COGWAY_LOG_JSON": "true",
    }
    args = [sys.executable, "-m", "server", "serve", "--port", str(port)]
    for name, directory in models.items():
        args += ["--model", f"{name}={directory}"]
    log_path = data_dir / "gateway.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    gateway = Gateway(f"http://127.0.0.1:{port}", ADMIN_TOKEN, data_dir, proc, log_path)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{gateway.url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway not ready: {log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        yield gateway
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
