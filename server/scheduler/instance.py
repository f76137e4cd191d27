"""One running Cog server as the scheduler sees it: state, slots and an HTTP client.

An instance counts as alive only while its process runs and ``/health-check`` answers. States:

    STARTING ──READY──▶ READY ──crash, dead process, failed health checks──▶ DEFUNCT ──▶ STOPPED
        └──setup() raised──▶ SETUP_FAILED ──────────────────▶ STOPPED
"""

import asyncio
import contextlib
from enum import StrEnum
from typing import Any

import aiohttp
import structlog

from server.runtime.base import InstanceHandle, Runtime
from server.runtime.cog_client import InstanceAPI

log = structlog.get_logger("server.scheduler.instance")

HEALTH_POLL_S = 0.02
"""During boot: /health-check (~1 ms) at least this often, and whenever the instance logs."""
POLL_GAP_S = 0.002
"""...but never more often than this, however fast a setup() prints."""


class InstanceState(StrEnum):
    STARTING = "starting"
    READY = "ready"
    SETUP_FAILED = "setup_failed"
    DEFUNCT = "defunct"
    STOPPING = "stopping"
    STOPPED = "stopped"


class SetupFailed(Exception):
    """The predictor's setup() failed (or the instance never became ready)."""


class Instance:
    def __init__(self, handle: InstanceHandle, client: InstanceAPI, slots: int) -> None:
        self.handle = handle
        self.client = client
        self.slots = slots
        self.state = InstanceState.STARTING
        self.in_flight: set[str] = set()
        self.idle = asyncio.Event()
        self.idle.set()
        self.booted_at: float | None = None
        self.boot_s = 0.0
        self.lost_reason: str | None = None

    @property
    def id(self) -> str:
        return self.handle.id

    async def wait_ready(self, timeout: float) -> float:
        """Poll health until READY (on a timer, and as the instance logs: it logs as setup
        completes); return seconds waited, or raise SetupFailed."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while loop.time() - start < timeout:
            if not self.handle.is_running():
                self.state = InstanceState.SETUP_FAILED
                raise SetupFailed(self._tail("the instance exited during setup"))
            health: dict[str, Any] = {}
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                health = await self.client.health()
            status = health.get("status")
            if status in ("READY", "BUSY"):
                self.state = InstanceState.READY
                return loop.time() - start
            if status == "SETUP_FAILED":
                self.state = InstanceState.SETUP_FAILED
                setup_logs = str(health.get("setup", {}).get("logs") or "")
                raise SetupFailed(self._tail(setup_logs.strip() or "setup() failed"))
            await asyncio.sleep(POLL_GAP_S)
            await self.handle.next_output(HEALTH_POLL_S - POLL_GAP_S)
        self.state = InstanceState.SETUP_FAILED
        raise SetupFailed(self._tail(f"the instance was not ready after {timeout:.0f}s"))

    async def check_health(self) -> str | None:
        """None while the process runs and ``/health-check`` answers READY or BUSY in time;
        otherwise why not (``UNHEALTHY`` is how Cog reports a crashed worker, §9)."""
        if not self.handle.is_running():
            return "its process exited"
        try:
            health = await self.client.health()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return f"its health check failed ({type(exc).__name__})"
        status = health.get("status")
        if status in ("READY", "BUSY"):
            return None
        detail = health.get("user_healthcheck_error") or ""
        return f"its health check reported {status}" + (f": {detail}" if detail else "")

    def _tail(self, headline: str) -> str:
        lines = [ln for ln in self.handle.log_tail() if "coglet" not in ln[:12]][-15:]
        return headline + ("\n" + "\n".join(lines) if lines else "")

    def begin(self, prediction_id: str) -> None:
        self.in_flight.add(prediction_id)
        self.idle.clear()

    def end(self, prediction_id: str) -> None:
        self.in_flight.discard(prediction_id)
        if not self.in_flight:
            self.idle.set()

    async def stop(self, runtime: Runtime, *, drain_timeout: float, grace: float) -> None:
        """Drain in-flight work, ask Cog to shut down, then let the runtime kill what is left."""
        if self.state in (InstanceState.STOPPING, InstanceState.STOPPED):
            return
        self.state = InstanceState.STOPPING
        if self.in_flight and self.handle.is_running():
            try:
                await asyncio.wait_for(self.idle.wait(), drain_timeout)
            except TimeoutError:
                log.warning("instance_drain_timeout", instance_id=self.id, left=len(self.in_flight))
        try:
            if self.handle.is_running():
                await self.client.shutdown()
            await runtime.stop(self.handle, grace=grace)
        finally:
            self.state = InstanceState.STOPPED
            self.client.close()
