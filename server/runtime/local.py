"""Local runtime: each instance is ``python -m cog.server.http`` in the version's venv.

The recipe (shared/spec/cog-runtime.md §1, §14): venv ``bin`` first on PATH (coglet starts its
worker as bare ``python``), cwd = the model directory, ``--host 127.0.0.1`` on a free port, its own
process session so the whole group can be killed, stdout to /dev/null and stderr (JSON lines)
read into the log. It runs under ``launcher.py``, which kills the whole process group (server
and worker) if the gateway dies, even mid-predict.
"""

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import uuid
from collections import deque
from pathlib import Path
from typing import Any

import structlog

from server.logging import detached_task
from server.runtime.base import InstanceHandle, InstanceSpec

log = structlog.get_logger("server.runtime.local")

LAUNCHER = Path(__file__).with_name("launcher.py")
LOG_TAIL_LINES = 200
LISTEN_TIMEOUT_S = 30.0  # spawn -> the HTTP port accepts connections
LISTEN_POLL_S = 0.02  # a connection is tried at least this often, and whenever it logs,
LISTEN_POLL_GAP_S = 0.002  # but never more often than this
PORT_RETRIES = 3  # a port picked free can be taken before the server binds it


class InstanceStartFailed(Exception):
    """The instance process exited before it listened for HTTP."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalInstance:
    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        port: int,
        version_id: str,
        *,
        cpu_policy: str = "normal",
    ) -> None:
        self.proc = proc
        self.port = port
        self.version_id = version_id
        self.cpu_policy = cpu_policy
        self._id = f"local-{uuid.uuid4().hex[:8]}"
        self._tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self._reader: asyncio.Task[None] | None = None
        self._output = asyncio.Event()  # a line (or the end of stderr) since next_output()

    @property
    def id(self) -> str:
        return self._id

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def is_running(self) -> bool:
        return self.proc.returncode is None

    def log_tail(self) -> list[str]:
        return [_message(line) for line in self._tail]

    async def settle(self) -> None:
        if self.cpu_policy == "batch" and hasattr(os, "SCHED_BATCH") and self.is_running():
            await asyncio.to_thread(_set_batch_policy, self.proc.pid)

    async def next_output(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._output.wait()
        self._output.clear()

    def start_reading(self) -> None:
        self._reader = detached_task(self._read_stderr(), name=f"stderr-{self._id}")

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        bound = log.bind(instance_id=self._id, version_id=self.version_id[:12])
        # Cog logs a few lines per prediction: parsed only when asked for (debug, log_tail).
        debug = bound.is_enabled_for(logging.DEBUG)
        try:
            async for raw in self.proc.stderr:
                self._output.set()
                line = raw.decode(errors="replace").rstrip()
                if not line:
                    continue
                if debug:
                    record = _record(line)
                    fields = record.get("fields")
                    bound.debug(
                        "instance_log",
                        message=_message(line, record),
                        target=record.get("target"),
                        prediction_id=fields.get("prediction_id")
                        if isinstance(fields, dict)
                        else None,
                    )
                self._tail.append(line)
        finally:
            self._output.set()

    async def wait_listening(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if not self.is_running():
                if self._reader is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(self._reader, 1.0)
                raise InstanceStartFailed("\n".join(self.log_tail()[-20:]))
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(LISTEN_POLL_GAP_S)
                await self.next_output(LISTEN_POLL_S - LISTEN_POLL_GAP_S)  # it logs as it listens
        raise InstanceStartFailed(f"no HTTP listener on port {self.port} after {timeout:.0f}s")


class LocalRuntime:
    """Starts and stops Cog servers as child processes of the gateway."""

    def __init__(self, *, cpu_policy: str = "batch") -> None:
        self._instances: dict[str, LocalInstance] = {}
        self.cpu_policy = cpu_policy
        """``batch`` or ``normal`` (``RuntimeSettings.cpu_policy``), applied once an instance
        is READY (``LocalInstance.settle``)."""

    async def start(self, spec: InstanceSpec) -> InstanceHandle:
        last: Exception | None = None
        for _ in range(PORT_RETRIES):
            instance = await self._spawn(spec, _free_port())
            try:
                await instance.wait_listening(LISTEN_TIMEOUT_S)
                return instance
            except InstanceStartFailed as exc:
                last = exc
                await self._kill(instance)
                if "Address already in use" not in str(exc):
                    break
        raise InstanceStartFailed(str(last))

    async def _spawn(self, spec: InstanceSpec, port: int) -> LocalInstance:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("COGWAY_")},
            **spec.environment,
            "PATH": f"{spec.env_dir / 'bin'}:{os.environ.get('PATH', '')}",
            "VIRTUAL_ENV": str(spec.env_dir),
            "PORT": str(port),
            "PYTHONUNBUFFERED": "1",
            "COG_PREDICT_TYPE_STUB": spec.predict_ref,
            "COG_MAX_CONCURRENCY": str(spec.concurrency),
            "COG_SETUP_TIMEOUT": str(int(spec.setup_timeout)),
            "COG_LOG_LEVEL": "info",
            # Not coglet's two lines per prediction (start, completed; a predictor's prints are
            # in the prediction's logs anyway): formatting them cost Cog and reading them cost
            # the gateway CPU on every prediction. Setup output and warnings still come.
            "RUST_LOG": "info,coglet::prediction=warn",
        }
        env.pop("PYTHONPATH", None)
        env["COGWAY_GATEWAY_PID"] = str(os.getpid())
        python = str(spec.env_dir / "bin" / "python")
        argv = [python, str(LAUNCHER), python, "-m", "cog.server.http"]
        argv += ["--host", "127.0.0.1"]
        if spec.upload_url:
            argv += ["--upload-url", spec.upload_url]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=spec.source_dir,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        instance = LocalInstance(proc, port, spec.version_id, cpu_policy=self.cpu_policy)
        instance.start_reading()
        self._instances[instance.id] = instance
        log.info("instance_spawned", instance_id=instance.id, pid=proc.pid, port=port)
        return instance

    async def stop(self, handle: InstanceHandle, *, grace: float) -> None:
        instance = self._instances.get(handle.id)
        if instance is None:
            return
        try:
            await asyncio.wait_for(instance.proc.wait(), grace)
        except TimeoutError:
            log.warning("instance_kill", instance_id=instance.id, reason="grace_expired")
        await self._kill(instance)

    async def _kill(self, instance: LocalInstance) -> None:
        # The worker shares the server's process group: kill the group, always.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(instance.proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(instance.proc.wait(), 5.0)
        if instance._reader is not None:
            instance._reader.cancel()
            with contextlib.suppress(BaseException):
                await instance._reader
        self._instances.pop(instance.id, None)
        log.info("instance_stopped", instance_id=instance.id, returncode=instance.proc.returncode)

    async def aclose(self) -> None:
        await asyncio.gather(*(self._kill(i) for i in list(self._instances.values())))


def _set_batch_policy(group: int) -> None:
    """``SCHED_BATCH`` for every thread of process group ``group`` (the launcher, the Cog server,
    its worker): README, "Why instances run as SCHED_BATCH". Threads they start later inherit
    it; a second pass over the same processes catches one started during the first."""
    processes = _group_processes(group)  # one scan of /proc
    for _ in range(2):
        for tid in _threads(processes):
            with contextlib.suppress(OSError):  # gone meanwhile
                if os.sched_getscheduler(tid) != os.SCHED_BATCH:
                    os.sched_setscheduler(tid, os.SCHED_BATCH, os.sched_param(0))


def _threads(processes: list[int]) -> list[int]:
    threads: list[int] = []
    for pid in processes:
        with contextlib.suppress(OSError):  # gone meanwhile
            threads += [int(task) for task in os.listdir(f"/proc/{pid}/task")]
    return threads


def _group_processes(group: int) -> list[int]:
    processes: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            if int(stat.rpartition(")")[2].split()[2]) == group:  # state ppid pgrp ...
                processes.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return processes


def _record(line: str) -> dict[str, Any]:
    """One of Cog's JSON log lines (``{"fields": {"message", ...}, "target", ...}``), or {}."""
    try:
        record = json.loads(line)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _message(line: str, record: dict[str, Any] | None = None) -> str:
    """The message of one of Cog's log lines (``record``: the line already parsed)."""
    fields = (_record(line) if record is None else record).get("fields")
    if isinstance(fields, dict) and "message" in fields:
        return str(fields["message"])
    return line
