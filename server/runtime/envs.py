"""Predictor venvs, built once per (python version, cog version, packages) and reused.

A code-only change to a predictor keeps its environment: the key hashes only what pip installs.
Builds happen in a temporary directory that is renamed into place, under a file lock, so two
gateways (or two tests) asking for the same key never see a half-built venv.
"""

import asyncio
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

from server import errors

log = structlog.get_logger("server.runtime.envs")

BUILD_LOG_TAIL = 4000  # characters of pip output kept in a build error

BuildLog = Callable[[str], None]


class EnvBuildFailed(errors.APIError):
    """The predictor's environment could not be built."""

    status_code = 422
    title = "Build failed"


def env_key(python_version: str, cog_version: str, packages: Sequence[str]) -> str:
    blob = json.dumps([python_version, cog_version, sorted(packages)]).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def find_python(version: str) -> Path:
    """An interpreter for ``3.X`` on this machine, or a clear error."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return Path(sys.executable)
    candidate = shutil.which(f"python{version}")
    if candidate and _runs(Path(candidate)):
        return Path(candidate)
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    for found in sorted(pyenv_root.glob(f"versions/{version}.*/bin/python{version}"), reverse=True):
        if _runs(found):
            return found
    raise EnvBuildFailed(f"Python {version} is not available on this machine.")


def _runs(python: Path) -> bool:
    try:
        return (
            subprocess.run([python, "--version"], capture_output=True, timeout=10).returncode == 0
        )
    except OSError:
        return False


class EnvCache:
    def __init__(self, root: Path, *, cog_version: str, pip_args: Sequence[str] = ()) -> None:
        self.root = root
        self.cog_version = cog_version
        self.pip_args = list(pip_args)

    def path_for(self, key: str) -> Path:
        return self.root / key

    async def ensure(
        self, python_version: str, packages: Sequence[str], *, log: BuildLog | None = None
    ) -> Path:
        """Return a ready venv for these requirements, building it if needed."""
        say = log or (lambda line: None)
        key = env_key(python_version, self.cog_version, packages)
        target = self.path_for(key)
        if (target / ".ready").exists():
            say(f"Reusing environment {key} (python {python_version}, cog {self.cog_version})")
            return target
        self.root.mkdir(parents=True, exist_ok=True)
        python = find_python(python_version)
        lock_path = self.root / f"{key}.lock"
        lock = await asyncio.to_thread(_acquire, lock_path)
        try:
            if (target / ".ready").exists():
                say(f"Reusing environment {key}")
                return target
            say(f"Building environment {key} with {python}")
            await self._build(python, target, packages, say)
            return target
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            os.close(lock)

    async def _build(
        self, python: Path, target: Path, packages: Sequence[str], say: BuildLog
    ) -> None:
        # Built in place (venvs are not relocatable); `.ready` is written last, under the lock,
        # so a crashed build is simply redone.
        shutil.rmtree(target, ignore_errors=True)
        log.info("env_build_started", env=target.name, python=str(python), packages=list(packages))
        try:
            await _run([str(python), "-m", "venv", str(target)], say)
            pip = [str(target / "bin" / "python"), "-m", "pip", "install"]
            await _run(
                [
                    *pip,
                    "--disable-pip-version-check",
                    *self.pip_args,
                    f"cog=={self.cog_version}",
                    *list(packages),
                ],
                say,
            )
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        (target / ".ready").write_text(json.dumps({"packages": list(packages)}))
        log.info("env_build_finished", env=target.name)


def _acquire(path: Path) -> int:
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


async def _run(argv: list[str], say: BuildLog) -> None:
    """Run a build step, passing each output line to ``say``; raise with the tail on failure."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    tail: deque[str] = deque(maxlen=60)
    async for raw in proc.stdout:
        line = raw.decode(errors="replace").rstrip()
        tail.append(line)
        say(line)
    await proc.wait()
    if proc.returncode != 0:
        text = "\n".join(tail)[-BUILD_LOG_TAIL:]
        raise EnvBuildFailed(f"`{' '.join(argv[:4])} …` failed:\n{text}")
