"""The runtime seam: how a built version becomes running Cog server processes.

The local runtime starts subprocesses; Docker and Kubernetes runtimes implement the same two
methods with containers and pods. Readiness, dispatch and supervision live above this seam (in
``server.scheduler``) and talk to the instance only over HTTP at ``handle.base_url``.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class InstanceSpec:
    """Everything needed to run one Cog server for one version."""

    version_id: str
    source_dir: Path
    """The version's files (cwd of the server; holds ``.cog/openapi_schema.json``)."""
    env_dir: Path
    """The venv with cog and the predictor's packages."""
    predict_ref: str
    concurrency: int
    setup_timeout: float = 300.0
    environment: dict[str, str] = field(default_factory=dict)
    upload_url: str | None = None


class InstanceHandle(Protocol):
    """A started instance as the runtime sees it."""

    @property
    def id(self) -> str: ...

    @property
    def base_url(self) -> str: ...

    def is_running(self) -> bool:
        """Whether the process (container, pod) still exists."""
        ...

    def log_tail(self) -> list[str]:
        """The last lines the instance wrote, for error messages."""
        ...

    async def settle(self) -> None:
        """The instance is READY and serving: what only suits a booted instance happens now
        (the local runtime's CPU policy: a boot under ``SCHED_BATCH`` takes ~30 ms longer)."""
        ...

    async def next_output(self, timeout: float) -> None:
        """Return once the instance has written a line since the last call (or has exited),
        or after ``timeout``. Cog has no readiness push, but it logs as it starts listening
        and as setup completes: readiness is polled on its lines, not only on a timer."""
        ...


class Runtime(Protocol):
    async def start(self, spec: InstanceSpec) -> InstanceHandle:
        """Start an instance and return once it listens for HTTP (not yet READY)."""
        ...

    async def stop(self, handle: InstanceHandle, *, grace: float) -> None:
        """Stop it: the caller already drained it and asked it to shut down; kill after grace."""
        ...

    async def aclose(self) -> None:
        """Stop every instance this runtime started."""
        ...
