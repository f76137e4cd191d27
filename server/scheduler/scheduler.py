"""The scheduler: one pool per version, created on first use, stopped in order at shutdown."""

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import structlog

from server.models.service import VersionInfo
from server.runtime.base import InstanceHandle, Runtime
from server.runtime.cog_client import CogClient, InstanceAPI
from server.scheduler.events import PredictionEvents
from server.scheduler.pool import Pool
from server.settings import RuntimeSettings

log = structlog.get_logger("server.scheduler")

CONNECTIONS_PER_HOST = 256  # open connections from the gateway to one instance

ClientFactory = Callable[[InstanceHandle], InstanceAPI]


class Scheduler:
    def __init__(
        self,
        runtime: Runtime,
        events: PredictionEvents,
        settings: RuntimeSettings,
        *,
        client_factory: ClientFactory | None = None,
    ) -> None:
        self.client_factory = client_factory
        self.runtime = runtime
        self.events = events
        self.settings = settings
        self.pools: dict[str, Pool] = {}
        self._session: aiohttp.ClientSession | None = None
        self._accepting = True

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # A fresh connection per request: Cog's SSE on a reused keep-alive connection
            # stalls ~40 ms per prediction (README, "Why SSE to the instance").
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=CONNECTIONS_PER_HOST, force_close=True
            )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def client_for(self, handle: InstanceHandle) -> InstanceAPI:
        if self.client_factory is not None:
            return self.client_factory(handle)
        return CogClient(handle.base_url, self.session)

    def pool(self, version: VersionInfo) -> Pool:
        pool = self.pools.get(version.id)
        if pool is None:
            pool = Pool(
                version,
                runtime=self.runtime,
                events=self.events,
                client_for=self.client_for,
                settings=self.settings,
            )
            pool.start()
            self.pools[version.id] = pool
        return pool

    def submit(self, version: VersionInfo, prediction_id: str, input: dict[str, Any]) -> None:
        if not self._accepting:
            raise RuntimeError("the scheduler is shutting down")
        self.pool(version).submit(prediction_id, input)

    async def warm(self, version: VersionInfo) -> float | None:
        """Boot the version's instance now (``cogway serve`` does this for its models)."""
        pool = self.pool(version)
        await pool.ensure_instance()
        return pool.cold_start_s

    async def retire(self, version_id: str) -> None:
        """Stop a version's pool (it was deleted): drain in-flight work, stop its instance."""
        pool = self.pools.pop(version_id, None)
        if pool is not None:
            await pool.stop(drain_timeout=self.settings.drain_timeout)

    def dequeue(self, version_id: str, prediction_id: str) -> bool:
        pool = self.pools.get(version_id)
        return pool is not None and pool.dequeue(prediction_id) is not None

    async def cancel(self, version_id: str, prediction_id: str) -> bool:
        pool = self.pools.get(version_id)
        return pool is not None and await pool.cancel(prediction_id)

    async def stop(self) -> None:
        """Stop intake, drain each pool's in-flight work up to the timeout, stop instances."""
        self._accepting = False
        await asyncio.gather(
            *(p.stop(drain_timeout=self.settings.drain_timeout) for p in self.pools.values())
        )
        self.pools.clear()
        await self.runtime.aclose()
        if self._session is not None:
            await self._session.close()
        log.info("scheduler_stopped")
