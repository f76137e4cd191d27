"""The scheduler: one pool per version (and per deployment release), created on first use.

It admits work (a full queue is 429 with ``Retry-After``), routes each prediction to its
pool, forwards cancels, owns the hardware inventory the pools draw from, and stops every
pool in order at shutdown. Pools: ``pool.py``; their rules: ``planner.py``.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import structlog

from server import errors
from server.hardware import Inventory
from server.models.service import VersionInfo
from server.runtime.base import InstanceHandle, Runtime
from server.runtime.cog_client import KEEPALIVE_S, CogClient, InstanceAPI
from server.scheduler import metrics
from server.scheduler.events import PredictionEvents
from server.scheduler.placement import Placement
from server.scheduler.pool import Pool
from server.settings import RuntimeSettings

log = structlog.get_logger("server.scheduler")

CONNECTIONS_PER_HOST = 256  # open connections from the gateway to one instance

ClientFactory = Callable[[InstanceHandle], InstanceAPI]
SetupFailedHook = Callable[[str, str], Awaitable[None]]


class Scheduler:
    def __init__(
        self,
        runtime: Runtime,
        events: PredictionEvents,
        settings: RuntimeSettings,
        inventory: Inventory,
        *,
        client_factory: ClientFactory | None = None,
        on_setup_failed: SetupFailedHook | None = None,
    ) -> None:
        self.client_factory = client_factory
        self.runtime = runtime
        self.events = events
        self.settings = settings
        self.inventory = inventory
        self.on_setup_failed = on_setup_failed
        self.pools: dict[str, Pool] = {}
        inventory.on_release = self._hardware_freed
        self._session: aiohttp.ClientSession | None = None
        self._accepting = True

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Health checks, cancels and shutdowns (predictions have their own pool per
            # instance, cog_http.py); idle connections closed like the prediction pool's.
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=CONNECTIONS_PER_HOST, keepalive_timeout=KEEPALIVE_S
            )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def client_for(self, handle: InstanceHandle) -> InstanceAPI:
        if self.client_factory is not None:
            return self.client_factory(handle)
        return CogClient(handle.base_url, self.session)

    def _hardware_freed(self) -> None:
        """An instance gave its CPU or GPU back: pools waiting for hardware may boot now."""
        for pool in self.pools.values():
            pool.wake()

    def placement(self, version: VersionInfo, deployment: Placement | None = None) -> Placement:
        """A deployment's placement, or the version's own (scale to zero, its model's SKU)."""
        if deployment is not None:
            return deployment
        return Placement(
            key=version.id,
            hardware=version.hardware,
            min_instances=0,
            max_instances=self.settings.max_instances,
        )

    def pool(self, version: VersionInfo, placement: Placement | None = None) -> Pool:
        placement = self.placement(version, placement)
        pool = self.pools.get(placement.key)
        if pool is None:
            pool = Pool(
                version,
                placement,
                runtime=self.runtime,
                events=self.events,
                client_for=self.client_for,
                settings=self.settings,
                inventory=self.inventory,
                on_setup_failed=self.on_setup_failed,
            )
            pool.start()
            self.pools[placement.key] = pool
            self._retire_older_releases(placement)
        elif pool.placement != placement:
            pool.update(placement)
        return pool

    def apply(self, version: VersionInfo, placement: Placement) -> None:
        """A deployment's release changed: create or resize its pool now, so its
        ``min_instances`` boot before the first prediction; older releases drain to zero."""
        if self._accepting:
            self.pool(version, placement)
            self._retire_older_releases(placement)

    def _retire_older_releases(self, placement: Placement) -> None:
        """A deployment moved to a new release: its older pools keep no warm instances."""
        if placement.deployment is None:
            return
        for other in self.pools.values():
            old = other.placement
            if old.deployment == placement.deployment and old.key != placement.key:
                other.update(Placement(old.key, old.hardware, 0, old.max_instances, old.deployment))

    def admit(self, version: VersionInfo, placement: Placement | None = None) -> None:
        """Raise 429 (with Retry-After) when the pool's queue is full, 503 when stopping."""
        if not self._accepting:
            raise errors.ServiceUnavailable("The gateway is shutting down.")
        pool = self.pools.get(self.placement(version, placement).key)
        if pool is not None and pool.queued >= self.settings.queue_max:
            seconds = pool.retry_after()
            raise errors.Throttled(
                f"The queue for {version.model} is full ({pool.queued} predictions waiting). "
                f"Retry in about {seconds} s.",
                headers={"Retry-After": str(seconds)},
            )

    def submit(
        self,
        version: VersionInfo,
        prediction_id: str,
        input: dict[str, Any],
        *,
        placement: Placement | None = None,
        deadline: float | None = None,
    ) -> None:
        """Queue a prediction. ``deadline`` is on the event loop's clock (``loop.time()``)."""
        if not self._accepting:
            raise errors.ServiceUnavailable("The gateway is shutting down.")
        self.pool(version, placement).submit(prediction_id, input, deadline)

    def _holding(self, prediction_id: str) -> Pool | None:
        """The pool that has the prediction queued or running."""
        return next((p for p in self.pools.values() if prediction_id in p.jobs), None)

    async def warm(self, version: VersionInfo, placement: Placement | None = None) -> float | None:
        """Boot an instance now (``cogway serve`` does this for its models)."""
        return await self.pool(version, placement).warm()

    async def retire(self, version_id: str) -> None:
        """Stop a deleted version's pools: drain in-flight work, fail what is queued."""
        for key, pool in list(self.pools.items()):
            if pool.version.id == version_id:
                del self.pools[key]
                await pool.stop(
                    drain_timeout=self.settings.drain_timeout,
                    fail_queued="The version was deleted before this prediction ran.",
                )

    def dequeue(self, prediction_id: str) -> bool:
        pool = self._holding(prediction_id)
        return pool is not None and pool.dequeue(prediction_id)

    async def cancel(self, prediction_id: str) -> bool:
        pool = self._holding(prediction_id)
        return pool is not None and await pool.cancel(prediction_id)

    def snapshot(self) -> dict[str, Any]:
        return {
            "accepting": self._accepting,
            "hardware": self.inventory.usage(),
            "pools": [metrics.pool_view(pool) for pool in self.pools.values()],
        }

    async def stop(self) -> None:
        """Stop intake, drain each pool's in-flight work up to the timeout, cancel what is
        left, stop every instance. Queued predictions stay queued for the next start."""
        self._accepting = False
        await asyncio.gather(
            *(p.stop(drain_timeout=self.settings.drain_timeout) for p in self.pools.values())
        )
        self.pools.clear()
        await self.runtime.aclose()
        if self._session is not None:
            await self._session.close()
        log.info("scheduler_stopped")
