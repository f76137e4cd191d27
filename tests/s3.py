"""A real S3-compatible store for tests: moto's server as a subprocess, and a TCP proxy to cut it.

Stopping moto would lose its buckets, so outages are simulated by a proxy in front of it:
``S3Proxy.stop()`` refuses new connections and drops open ones; ``start()`` listens again on the
same port. Import the fixtures into a test module (they are registered under their ``name=``):

    from tests.s3 import aws_env_fixture, moto_server_fixture, s3_proxy_fixture  # noqa: F401
"""

import contextlib
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import boto3
import httpx
import pytest

from tests.conftest import unavailable

MOTO_READY_TIMEOUT_S = 30.0
ACCEPT_POLL_S = 0.05  # how often the proxy's accept loop checks whether it should stop
CHUNK_BYTES = 64 * 1024
TEST_REGION = "us-east-1"


@dataclass
class MotoServer:
    endpoint_url: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unavailable(reason: str) -> NoReturn:
    unavailable("moto_server", reason)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session", name="moto_server")
def moto_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto's S3 server on a free loopback port, for the whole session."""
    binary = Path(sys.executable).parent / "moto_server"
    if not binary.is_file():
        _unavailable(f"{binary} does not exist")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with log_path.open("wb") as log:
        try:
            proc = subprocess.Popen(
                [str(binary), "-H", "127.0.0.1", "-p", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        except OSError as exc:
            _unavailable(repr(exc))
    server = MotoServer(f"http://127.0.0.1:{port}", port, proc, log_path)
    try:
        deadline = time.monotonic() + MOTO_READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                _unavailable(f"exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                httpx.get(f"{server.endpoint_url}/moto-api/", timeout=1)
                break  # any HTTP answer means it serves
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                _unavailable(
                    f"no answer in {MOTO_READY_TIMEOUT_S}s: {log_path.read_text()[-2000:]}"
                )
            time.sleep(0.05)
        yield server
    finally:
        _stop(proc)


@pytest.fixture(name="aws_env")
def aws_env_fixture(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials from the environment; no profile or config file from the machine."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", TEST_REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config-absent"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials-absent"))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


def s3_client(endpoint_url: str) -> Any:
    """A plain boto3 client for test setup (explicit dummy credentials, path-style)."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=TEST_REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def fresh_bucket(endpoint_url: str) -> str:
    """Create a bucket with a unique name and return the name."""
    name = f"cogway-test-{uuid.uuid4().hex[:16]}"
    s3_client(endpoint_url).create_bucket(Bucket=name)
    return name


class S3Proxy:
    """A threaded TCP forwarder on a fixed loopback port; stop() and start() simulate an outage."""

    def __init__(self, target_port: int, *, port: int | None = None) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = port or _free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen (again) on the same port."""
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(ACCEPT_POLL_S)
        self._listener = listener
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._accept, args=(listener, self._stopping), name="s3-proxy", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Close the listening socket (new connections are refused) and every open connection."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            _close(conn)

    def _accept(self, listener: socket.socket, stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if stopping.is_set():
                    _close(client)
                    _close(upstream)
                    return
                self._conns |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            with contextlib.suppress(OSError):
                while data := src.recv(CHUNK_BYTES):
                    dst.sendall(data)
        finally:
            with self._lock:
                self._conns -= {src, dst}
            _close(src)
            _close(dst)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@pytest.fixture(name="s3_proxy")
def s3_proxy_fixture(moto_server: MotoServer) -> Iterator[S3Proxy]:
    """A proxy in front of the session's moto server, listening; stopped at the end."""
    proxy = S3Proxy(moto_server.port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
