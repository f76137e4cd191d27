"""The work of one version: a FIFO queue, its instance, and the slots that bound dispatch.

Dispatch only ever goes to a free slot of a READY instance, so Cog's 409 is not part of normal
traffic (one right after a completion is retried; cog-runtime.md §14). A worker crash fails only
the predictions that were on that instance, and the next one boots a replacement.
"""

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from server.models.service import VersionInfo
from server.runtime.base import InstanceHandle, InstanceSpec, Runtime
from server.runtime.cog_client import (
    CogResult,
    InstanceAPI,
    InstanceBusy,
    InstanceUnavailable,
)
from server.scheduler.events import PredictionEvents
from server.scheduler.instance import Instance, InstanceState, SetupFailed
from server.settings import RuntimeSettings

log = structlog.get_logger("server.scheduler.pool")

BUSY_RETRIES = 3
BUSY_RETRY_DELAY_S = 0.01
CRASH_ERRORS = ("Worker crashed",)


@dataclass
class Job:
    prediction_id: str
    input: dict[str, Any]
    canceled: bool = False
    running: bool = field(default=False)


class Pool:
    def __init__(
        self,
        version: VersionInfo,
        *,
        runtime: Runtime,
        events: PredictionEvents,
        client_for: Callable[[InstanceHandle], InstanceAPI],
        settings: RuntimeSettings,
    ) -> None:
        self.version = version
        self.runtime = runtime
        self.events = events
        self.client_for = client_for
        self.settings = settings
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.jobs: dict[str, Job] = {}
        self.slots = asyncio.Semaphore(version.concurrency)
        self.instance: Instance | None = None
        self.setup_error: str | None = None
        self.cold_start_s: float | None = None
        self._instance_lock = asyncio.Lock()
        self._runs: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None
        self.log = log.bind(version_id=version.id[:12], model=version.model)

    def start(self) -> None:
        self._loop = asyncio.create_task(self._dispatch(), name=f"pool-{self.version.id[:12]}")

    def submit(self, prediction_id: str, input: dict[str, Any]) -> None:
        job = Job(prediction_id, input)
        self.jobs[prediction_id] = job
        self.queue.put_nowait(job)

    def dequeue(self, prediction_id: str) -> Job | None:
        """Mark a not-yet-running job canceled; returns it, or None if running/unknown."""
        job = self.jobs.get(prediction_id)
        if job is None or job.running:
            return None
        job.canceled = True
        self.jobs.pop(prediction_id, None)
        return job

    async def ensure_instance(self) -> Instance:
        """The READY instance, booting one if there is none (a cold start)."""
        async with self._instance_lock:
            if self.setup_error is not None:
                raise SetupFailed(self.setup_error)
            current = self.instance
            if current is not None and current.state is InstanceState.READY:
                if current.handle.is_running():
                    return current
                current.state = InstanceState.DEFUNCT
            if current is not None:
                self._retire(current)
            spec = InstanceSpec(
                version_id=self.version.id,
                source_dir=self.version.source_dir,
                env_dir=self.version.env_dir,
                predict_ref=self.version.predict_ref,
                concurrency=self.version.concurrency,
                setup_timeout=self.settings.start_timeout,
                environment=self.version.environment,
            )
            loop = asyncio.get_running_loop()
            began = loop.time()
            try:
                handle = await self.runtime.start(spec)
            except Exception as exc:
                self.setup_error = f"The instance could not start: {exc}"
                raise SetupFailed(self.setup_error) from exc
            instance = Instance(handle, self.client_for(handle), self.version.concurrency)
            self.instance = instance
            try:
                await instance.wait_ready(self.settings.start_timeout)
            except SetupFailed as exc:
                self.setup_error = f"Setup failed: {exc}"
                self.log.warning("version_setup_failed", error=self.setup_error)
                self._retire(instance)
                raise SetupFailed(self.setup_error) from exc
            self.cold_start_s = loop.time() - began
            self.log.info(
                "instance_ready", instance_id=instance.id, cold_start_s=round(self.cold_start_s, 3)
            )
            return instance

    def _retire(self, instance: Instance) -> None:
        """Stop an instance in the background (after its in-flight work, if it is healthy)."""
        if self.instance is instance:
            self.instance = None
        drain = self.settings.drain_timeout if instance.state is InstanceState.READY else 0.0
        task = asyncio.create_task(
            instance.stop(self.runtime, drain_timeout=drain, grace=self.settings.stop_grace),
            name=f"retire-{instance.id}",
        )
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)

    async def _dispatch(self) -> None:
        while True:
            job = await self.queue.get()
            if job.canceled:
                continue
            try:
                instance = await self.ensure_instance()
            except SetupFailed as exc:
                await self._fail_queued(job, str(exc))
                continue
            await self.slots.acquire()
            if job.canceled:
                self.slots.release()
                continue
            job.running = True
            task = asyncio.create_task(self._run(instance, job), name=f"run-{job.prediction_id}")
            self._runs.add(task)
            task.add_done_callback(self._runs.discard)

    async def _fail_queued(self, first: Job, message: str) -> None:
        failed = [first]
        while not self.queue.empty():
            failed.append(self.queue.get_nowait())
        for job in failed:
            if not job.canceled:
                self.jobs.pop(job.prediction_id, None)
                await self.events.completed(job.prediction_id, CogResult("failed", error=message))

    async def _run(self, instance: Instance, job: Job) -> None:
        pid = job.prediction_id
        instance.begin(pid)
        try:
            result = await self._predict(instance, job)
        except Exception as exc:
            self.log.exception("dispatch_error", prediction_id=pid)
            result = CogResult("failed", error=f"Internal error while running: {exc!r}")
        finally:
            instance.end(pid)
            self.jobs.pop(pid, None)
            self.slots.release()
        if result.status == "failed" and result.error in CRASH_ERRORS:
            self.log.warning("instance_crashed", instance_id=instance.id, prediction_id=pid)
            instance.state = InstanceState.DEFUNCT
            if self.instance is instance:
                self._retire(instance)
        await self.events.completed(pid, result)

    async def _predict(self, instance: Instance, job: Job) -> CogResult:
        async def on_event(event: str, payload: dict[str, Any]) -> None:
            if event == "start":
                await self.events.started(job.prediction_id)
            elif event in ("log", "output"):
                await self.events.progress(job.prediction_id, event, payload)

        for attempt in range(BUSY_RETRIES):
            try:
                return await instance.client.predict(job.prediction_id, job.input, on_event)
            except InstanceBusy:
                await asyncio.sleep(BUSY_RETRY_DELAY_S * (attempt + 1))
            except InstanceUnavailable as exc:
                instance.state = InstanceState.DEFUNCT
                if self.instance is instance:
                    self._retire(instance)
                return CogResult("failed", error=f"The instance stopped unexpectedly ({exc}).")
        return CogResult("failed", error="The instance stayed at capacity.")

    async def cancel(self, prediction_id: str) -> bool:
        """Forward a cancel to the instance running the prediction."""
        instance = self.instance
        if instance is None or prediction_id not in instance.in_flight:
            return False
        return await instance.client.cancel(prediction_id)

    async def stop(self, *, drain_timeout: float) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        instance = self.instance
        if instance is not None:
            self.instance = None
            await instance.stop(
                self.runtime, drain_timeout=drain_timeout, grace=self.settings.stop_grace
            )
        for task in list(self._runs):
            task.cancel()
        await asyncio.gather(*self._runs, return_exceptions=True)
