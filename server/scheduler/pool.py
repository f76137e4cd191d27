"""One pool: the queue and the instances of one version (or one deployment's release).

The pool carries out what its ``Planner`` decides (dispatch, boot, stop) and reports back what
happened; all the rules live in ``planner.py``. Its tasks, all owned here and ended by
``stop()``: the planning loop ``pool-<key>``, the health supervisor ``health-<key>``, and one
task per boot, run and stop.

Dispatch only ever goes to a free slot of a READY instance, so Cog's 409 is not part of
normal traffic (one right after a completion is retried; cog-runtime.md §14). A worker crash,
a dead process or failing health checks fail only that instance's in-flight predictions; the
planner boots a replacement for the queue. A setup failure breaks the version: its queue fails
with the setup logs.
"""

import asyncio
import contextlib
import itertools
import math
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
import structlog

from server.hardware import Allocation, Inventory
from server.logging import detached_task
from server.models.service import VersionInfo
from server.runtime.base import InstanceHandle, InstanceSpec, Runtime
from server.runtime.cog_client import CogResult, InstanceAPI, InstanceBusy, InstanceUnavailable
from server.scheduler.events import PredictionEvents
from server.scheduler.instance import Instance, InstanceState, SetupFailed
from server.scheduler.job import Job, PoolStats
from server.scheduler.placement import Placement
from server.scheduler.planner import Boot, Dispatch, Planner, Policy, Stop
from server.settings import RuntimeSettings

log = structlog.get_logger("server.scheduler.pool")

BUSY_RETRY_FIRST_S = 0.005
BUSY_RETRY_FOR_S = 1.0
"""A 409 from an instance that has a free slot by the pool's count is retried, the delay
doubling from ``BUSY_RETRY_FIRST_S``, for up to ``BUSY_RETRY_FOR_S``. Cog 0.23.1 answers 409 for
a moment after a completion, and on a loaded machine for tens of ms even with half its slots
free (``make bench``, 16 clients on 32 slots: 5-14 409s per 3 s when called directly)."""
CANCEL_RETRY_S = (0.05, 0.1, 0.2, 0.4, 0.8)
"""When a cancel Cog answered 404 is asked again (then every 0.8 s)."""
CANCEL_RECHECK_S = 0.25
"""When a cancel Cog accepted early in the prediction is asked again, if it still runs."""
CANCEL_SETTLE_S = 0.5
"""How long after its start event Cog may still drop a cancel it accepts (measured: 2 ms)."""
CRASH_ERRORS = ("Worker crashed",)
RETRY_AFTER_MAX_S = 60


class Pool:
    def __init__(
        self,
        version: VersionInfo,
        placement: Placement,
        *,
        runtime: Runtime,
        events: PredictionEvents,
        client_for: Callable[[InstanceHandle], InstanceAPI],
        settings: RuntimeSettings,
        inventory: Inventory,
        on_setup_failed: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        self.version = version
        self.placement = placement
        self.runtime = runtime
        self.events = events
        self.client_for = client_for
        self.settings = settings
        self.inventory = inventory
        self.on_setup_failed = on_setup_failed
        self.planner = Planner(
            Policy(
                min_instances=placement.min_instances,
                max_instances=placement.max_instances,
                slots=version.concurrency,
                idle_timeout=settings.idle_timeout,
                scale_up_threshold=settings.scale_up_threshold,
            ),
            can_boot=lambda: inventory.can_place(placement.hardware),
        )
        self.jobs: dict[str, Job] = {}
        self.instances: dict[str, Instance] = {}
        self.stopping: dict[str, Instance] = {}
        """Out of ``instances`` (nothing is dispatched to them) until their process has exited:
        still shown (state ``stopping``) and still holding their hardware."""
        self.allocations: dict[str, Allocation] = {}
        self.stats = PoolStats()
        self.run_time_avg: float | None = None
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()  # an instance became ready, or booting failed
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._loop = asyncio.get_running_loop()
        self.log = log.bind(pool=placement.key[:24], model=version.model)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        key = self.placement.key[:24]
        self._loops = [
            detached_task(self._plan_loop(), name=f"pool-{key}"),
            detached_task(self._supervise(), name=f"health-{key}"),
        ]

    def update(self, placement: Placement) -> None:
        """A deployment's bounds changed (or its release moved on: min 0 lets it drain away)."""
        self.placement = placement
        self.planner.policy.min_instances = placement.min_instances
        self.planner.policy.max_instances = placement.max_instances
        self._wake.set()

    def wake(self) -> None:
        """Plan again now (e.g. hardware another pool held is free)."""
        self._wake.set()

    def now(self) -> float:
        return self._loop.time()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = detached_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- intake ---------------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        return len(self.planner.queue)

    def retry_after(self) -> int:
        """Seconds until the queue has likely moved on (for 429's Retry-After)."""
        slots = max(1, self.planner.policy.max_instances * self.planner.policy.slots)
        per_run = self.run_time_avg or 1.0
        return max(1, min(RETRY_AFTER_MAX_S, math.ceil(self.queued * per_run / slots)))

    def submit(self, prediction_id: str, input: dict[str, Any], deadline: float | None) -> None:
        job = Job(prediction_id, input, self.now())
        self.jobs[prediction_id] = job
        if self.planner.broken is not None:
            self._spawn(self._fail([job], self.planner.broken), f"fail-{prediction_id}")
            return
        if deadline is not None:
            job.timers.append(
                self._loop.call_at(max(deadline, self.now()), self._expire, job, "deadline")
            )
        self.planner.submit(prediction_id)
        # Planned here and now, not on the loop's next turn: a free slot gets it at once
        # (one event-loop turn less between a request and Cog). The loop still wakes to
        # re-arm its timer.
        self._plan_now()
        self._wake.set()

    def dequeue(self, prediction_id: str) -> bool:
        """Take a queued prediction out (it was canceled before it ran)."""
        if not self.planner.withdraw(prediction_id):
            return False
        job = self.jobs.pop(prediction_id, None)
        if job is not None:
            job.clear_timers()
        return True

    async def warm(self) -> float | None:
        """Boot an instance now unless one is live; the cold start in seconds, or None."""
        self.planner.warm_wanted = True
        self._wake.set()
        while True:
            if self.planner.broken is not None:
                raise SetupFailed(self.planner.broken)
            if any(i.state is InstanceState.READY for i in self.instances.values()):
                recent = self.stats.recent_cold_starts
                return recent[-1] if recent else None
            self._changed.clear()
            await self._changed.wait()

    # -- the planning loop ----------------------------------------------------------------------

    async def _plan_loop(self) -> None:
        while True:
            self._wake.clear()
            self._plan_now()
            wake_at = self.planner.next_wakeup()
            timeout = None if wake_at is None else max(0.0, wake_at - self.now()) + 0.001
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):  # no task per wait, unlike wait_for (3.11)
                    await self._wake.wait()

    def _plan_now(self) -> None:
        """Carry out what the planner decides now: dispatch, boot, stop."""
        for action in self.planner.plan(self.now()):
            if isinstance(action, Dispatch):
                self._start_run(action)
            elif isinstance(action, Boot):
                allocation = self.inventory.acquire(self.placement.hardware)
                if allocation is None:  # another pool took the last device meanwhile
                    self.planner.boot_failed(action.instance_id)
                    continue
                self.allocations[action.instance_id] = allocation
                self._spawn(self._boot(action.instance_id, allocation), f"boot-{self.key}")
            elif isinstance(action, Stop):
                self._spawn(self._stop_idle(action.instance_id), f"stop-{self.key}")

    @property
    def key(self) -> str:
        return self.placement.key[:24]

    def _start_run(self, action: Dispatch) -> None:
        job = self.jobs.get(action.job_id)
        instance = self.instances.get(action.instance_id)
        if job is None or instance is None:  # withdrawn or lost between plan and apply
            self.planner.finished(action.job_id, action.instance_id, self.now())
            return
        job.instance_id = action.instance_id
        if self.settings.max_run_time is not None:
            job.timers.append(
                self._loop.call_later(self.settings.max_run_time, self._expire, job, "max_run_time")
            )
        self._spawn(self._run(instance, job), f"run-{job.prediction_id}")

    # -- boot and stop ----------------------------------------------------------------------------

    async def _boot(self, iid: str, allocation: Allocation) -> None:
        spec = InstanceSpec(
            version_id=self.version.id,
            source_dir=self.version.source_dir,
            env_dir=self.version.env_dir,
            predict_ref=self.version.predict_ref,
            concurrency=self.version.concurrency,
            setup_timeout=self.settings.start_timeout,
            environment={**self.version.environment, **allocation.environment()},
        )
        began = self.now()
        try:
            handle = await self.runtime.start(spec)
        except Exception as exc:
            self._release(iid)
            await self._broken(iid, f"The instance could not start: {exc}")
            return
        instance = Instance(handle, self.client_for(handle), self.version.concurrency)
        self.instances[iid] = instance
        try:
            await instance.wait_ready(self.settings.start_timeout)
        except SetupFailed as exc:
            self.instances.pop(iid, None)
            self._spawn(self._stop_instance(iid, instance, drain=0.0), f"stop-{self.key}")
            await self._broken(iid, f"Setup failed: {exc}")
            return
        except BaseException:
            self.instances.pop(iid, None)
            await self.runtime.stop(handle, grace=0)
            self._release(iid)
            raise
        instance.booted_at = self.now()
        instance.boot_s = instance.booted_at - began
        self.stats.boots += 1
        self.stats.cold_start_seconds += instance.boot_s
        self.stats.recent_cold_starts.append(instance.boot_s)
        self.planner.ready(iid, self.now())
        self.log.info(
            "instance_ready", instance_id=instance.id, cold_start_s=round(instance.boot_s, 3)
        )
        self._changed.set()
        self._wake.set()
        await handle.settle()  # after the wake: its first prediction does not wait for it

    async def _broken(self, iid: str, message: str) -> None:
        self.log.warning("version_setup_failed", error=message)
        self.planner.boot_failed(iid, setup_error=message)
        self._changed.set()
        if self.on_setup_failed is not None:  # first: no new prediction is accepted for it
            await self.on_setup_failed(self.version.id, message)
        queued = [self.jobs[j] for j in self.planner.drain_queue() if j in self.jobs]
        await self._fail(queued, message)

    async def _fail(self, jobs: list[Job], message: str) -> None:
        for job in jobs:
            job.clear_timers()
            self.jobs.pop(job.prediction_id, None)
            await self.events.completed(job.prediction_id, CogResult("failed", error=message))

    async def _stop_idle(self, iid: str) -> None:
        instance = self.instances.pop(iid, None)
        if instance is not None:
            self.log.info("instance_idle_stop", instance_id=instance.id)
            await self._stop_instance(iid, instance, drain=self.settings.drain_timeout)
        self.planner.stopped(iid)

    async def _stop_instance(self, iid: str, instance: Instance, *, drain: float) -> None:
        self.stopping[iid] = instance
        try:
            await instance.stop(self.runtime, drain_timeout=drain, grace=self.settings.stop_grace)
        finally:
            self.stopping.pop(iid, None)
            self._release(iid)
            self._wake.set()

    def listed(self) -> list[Instance]:
        """Every instance with a process: serving, booting, or still stopping."""
        return [*self.instances.values(), *self.stopping.values()]

    def _release(self, iid: str) -> None:
        allocation = self.allocations.pop(iid, None)
        if allocation is not None:
            self.inventory.release(allocation)

    def lose(self, iid: str, reason: str) -> None:
        """The instance is dead or must die: kill it; its in-flight predictions fail."""
        instance = self.instances.pop(iid, None)
        if instance is None:
            return
        instance.state = InstanceState.DEFUNCT
        instance.lost_reason = reason
        self.stats.lost += 1
        self.planner.lost(iid)
        self.log.warning("instance_lost", instance_id=instance.id, reason=reason)
        self._spawn(self._stop_instance(iid, instance, drain=0.0), f"kill-{self.key}")

    # -- running one prediction -------------------------------------------------------------------

    async def _run(self, instance: Instance, job: Job) -> None:
        pid = job.prediction_id
        iid = job.instance_id or ""
        instance.begin(pid)
        began = self.now()
        try:
            result = await self._predict(instance, job)
        except Exception as exc:
            self.log.exception("dispatch_error", prediction_id=pid)
            result = CogResult("failed", error=f"Internal error while running: {exc!r}")
        except BaseException:  # cancelled: nothing to record, so re-plan at once
            self._wake.set()
            raise
        finally:
            instance.end(pid)
            job.clear_timers()
            self.jobs.pop(pid, None)
            self.planner.finished(pid, iid, self.now())
            if self.planner.queue:  # the freed slot goes to the next in line at once
                self._plan_now()
        ran = self.now() - began
        self.run_time_avg = (
            ran if self.run_time_avg is None else 0.8 * self.run_time_avg + 0.2 * ran
        )
        if result.status == "failed" and result.error in CRASH_ERRORS:
            self.lose(iid, "its worker crashed")
            result.error = (
                "Worker crashed: the predictor's process died while running this prediction; "
                "the instance was replaced."
            )
        if instance.booted_at is not None and instance.booted_at >= job.submitted:
            result.metrics["cold_start_time"] = round(instance.boot_s, 6)
        outcome = self._outcome(job, result)
        self.stats.outcomes[outcome.status] += 1
        try:
            await self.events.completed(pid, outcome)
        except Exception:  # not written (the database failed): restart recovery has the row
            self.log.exception("completion_not_recorded", prediction_id=pid)
        finally:
            # The rest of the plan (idle timers, scaling) once the completion is recorded: woken
            # before it, the loop's turn came ahead of the commit and the answer to the client.
            self._wake.set()

    def _outcome(self, job: Job, result: CogResult) -> CogResult:
        """Apply why the gateway stopped a prediction to what the instance reported."""
        if job.stop_reason in ("canceled", "deadline") and result.status != "succeeded":
            return CogResult("canceled", result.output, result.logs, None, result.metrics)
        if job.stop_reason == "max_run_time" and result.status != "succeeded":
            limit = self.settings.max_run_time
            error = f"The prediction ran longer than the maximum run time ({limit:g}s)."
            return CogResult("failed", result.output, result.logs, error, result.metrics)
        return result

    async def _predict(self, instance: Instance, job: Job) -> CogResult:
        async def on_event(event: str, payload: dict[str, Any]) -> None:
            if event == "start":
                job.started_at = self.now()
                await self.events.started(job.prediction_id)
            elif event in ("log", "output"):
                await self.events.progress(job.prediction_id, event, payload)

        delay, give_up = BUSY_RETRY_FIRST_S, self.now() + BUSY_RETRY_FOR_S
        while True:
            try:
                return await instance.client.predict(job.prediction_id, job.input, on_event)
            except InstanceBusy:
                if self.now() + delay > give_up:
                    break
                self.stats.busy_retries += 1
                await asyncio.sleep(delay)
                delay *= 2
            except InstanceUnavailable as exc:
                if instance.lost_reason is None:
                    self.lose(job.instance_id or "", f"it stopped unexpectedly ({exc})")
                return CogResult(
                    "failed",
                    error=f"The instance running this prediction was lost: {instance.lost_reason}.",
                )
        return CogResult(
            "failed",
            error=f"The instance kept answering 409 (at capacity) for {BUSY_RETRY_FOR_S:g}s"
            " although it had a free slot; the prediction did not run.",
        )

    # -- cancel and deadlines ---------------------------------------------------------------------

    async def cancel(self, prediction_id: str, reason: str = "canceled") -> bool:
        """Forward a cancel to the instance running the prediction; kill it after the grace."""
        job = self.jobs.get(prediction_id)
        if job is None or job.instance_id is None:
            return False
        instance = self.instances.get(job.instance_id)
        if instance is None:
            return False
        if job.stop_reason is None:
            job.stop_reason = reason
            job.timers.append(
                self._loop.call_later(self.settings.cancel_grace, self._kill_if_running, job)
            )
        if not job.canceling:
            job.canceling = True
            self._spawn(self._forward_cancel(instance, job), f"cancel-{job.prediction_id}")
        return True  # it stops: Cog cancels it, or the grace runs out and the instance dies

    async def _forward_cancel(self, instance: Instance, job: Job) -> None:
        """Ask the instance to cancel ``job`` until Cog surely has it (or the job ends).

        Cog 0.23.1 answers 404 for a prediction whose POST it has not taken yet (dispatched a
        moment ago): ask again, backing off. It answers 200 to a cancel that lands while its
        worker is still entering ``predict()`` (up to a few ms after the start event) and
        then drops it, about 2 in 100 create-then-cancel calls: while the prediction is that
        young, ask again a moment later if it still runs. Once a cancel is accepted later
        than that, never ask again: a second cancel interrupts the predictor's own clean-up
        (measured). The grace kill is the backstop.
        """
        give_up = self.now() + self.settings.cancel_grace
        delays = itertools.chain(CANCEL_RETRY_S, itertools.repeat(CANCEL_RETRY_S[-1]))
        while self.jobs.get(job.prediction_id) is job and self.now() < give_up:
            started_at = job.started_at
            settled = started_at is not None and self.now() - started_at >= CANCEL_SETTLE_S
            accepted = False
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                accepted = await instance.client.cancel(job.prediction_id)
            if accepted and settled:
                return
            await asyncio.sleep(CANCEL_RECHECK_S if accepted else next(delays))

    def _expire(self, job: Job, reason: str) -> None:
        if self.jobs.get(job.prediction_id) is not job:
            return
        if job.instance_id is None:  # still queued: it never runs
            self.dequeue(job.prediction_id)
            status = "canceled" if reason == "deadline" else "failed"
            self._spawn(
                self.events.completed(job.prediction_id, CogResult(status)),
                f"expire-{job.prediction_id}",
            )
            return
        self.log.info("prediction_expired", prediction_id=job.prediction_id, reason=reason)
        self._spawn(self.cancel(job.prediction_id, reason), f"expire-{job.prediction_id}")

    def _kill_if_running(self, job: Job) -> None:
        if self.jobs.get(job.prediction_id) is job and job.instance_id in self.instances:
            grace = self.settings.cancel_grace
            self.lose(
                job.instance_id, f"prediction {job.prediction_id} ignored cancel for {grace:g}s"
            )

    # -- supervision ------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        failures: dict[str, int] = {}
        while True:
            await asyncio.sleep(self.settings.health_interval)
            for iid, instance in list(self.instances.items()):
                if instance.state is not InstanceState.READY:
                    continue
                reason = await instance.check_health()
                if reason is None:
                    failures.pop(iid, None)
                    continue
                failures[iid] = failures.get(iid, 0) + 1
                fatal = not instance.handle.is_running() or "UNHEALTHY" in reason
                if fatal or failures[iid] >= self.settings.health_failures:
                    failures.pop(iid, None)
                    self.lose(iid, reason)

    # -- shutdown ---------------------------------------------------------------------------------

    async def stop(self, *, drain_timeout: float, fail_queued: str | None = None) -> None:
        """Stop planning; wait for in-flight work up to ``drain_timeout``, cancel the rest,
        stop every instance. Queued predictions stay queued in the database (a restarted
        gateway resumes them) unless ``fail_queued`` gives the reason they fail."""
        for loop_task in self._loops:
            loop_task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        queued = [self.jobs.pop(j) for j in self.planner.drain_queue() if j in self.jobs]
        for job in queued:
            job.clear_timers()
        if fail_queued is not None:
            await self._fail(queued, fail_queued)
        running = [t for t in self._tasks if t.get_name().startswith("run-")]
        if running:
            _, pending = await asyncio.wait(running, timeout=drain_timeout)
            if pending:
                self.log.warning("drain_timeout", left=len(pending))
                for job in list(self.jobs.values()):
                    await self.cancel(job.prediction_id, "canceled")
                await asyncio.wait(pending, timeout=self.settings.cancel_grace)
        for iid, instance in list(self.instances.items()):
            self.instances.pop(iid, None)
            await self._stop_instance(iid, instance, drain=0.0)
        # Runs whose instance was just killed record their outcome before the tasks end.
        running = [t for t in self._tasks if t.get_name().startswith("run-")]
        if running:
            await asyncio.wait(running, timeout=self.settings.stop_grace)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
