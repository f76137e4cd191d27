"""Push and build: a predictor directory becomes a version, built in the background.

``push`` checks what can be checked at once (cog.yaml, the Python version) and answers with the
version in status ``building``; a named background task builds the environment and reads the
schema, then marks the version ``ready`` or ``failed`` with its log. Pushing the same content
again returns the same version and changes nothing (a failed one is built again).
"""

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from sqlalchemy import update

from server import errors
from server.accounts.service import Account
from server.clock import Clock
from server.db import Database
from server.models import source
from server.models.service import Builder, ModelService, VersionInfo, may_write, split_name
from server.models.tables import VersionRow
from server.runtime import cogyaml
from server.runtime.envs import find_python

log = structlog.get_logger("server.models.builds")

INTERRUPTED_BUILD = "The build was interrupted by a gateway restart; push again to rebuild."


@dataclass
class Build:
    """A build in progress: its log lines so far, and a task to await."""

    lines: list[str] = field(default_factory=list)
    task: "asyncio.Task[None] | None" = None


@dataclass(frozen=True)
class BuildStatus:
    status: str
    logs: str
    offset: int
    error: str | None


class BuildService:
    def __init__(
        self, db: Database, clock: Clock, models: ModelService, builder: Builder, data_dir: Path
    ) -> None:
        self.db = db
        self.clock = clock
        self.models = models
        self.builder = builder
        self.versions_dir = data_dir.resolve() / "versions"
        self._builds: dict[str, Build] = {}

    async def push(
        self, account: Account, full_name: str, directory: Path, *, wait: bool = False
    ) -> VersionInfo:
        """Make ``directory`` a version of the (existing) model ``full_name``."""
        owner, name = split_name(full_name)
        model = await self.models.get_model(account, owner, name)
        if not may_write(account, owner):
            raise errors.Forbidden(f"You cannot push versions to {full_name}.")
        config = cogyaml.load(directory)
        find_python(config.python_version)  # a clear 422 now rather than a failed build later
        version_id = source.digest(directory, full_name)
        existing = await self.models.version(version_id)
        in_flight = version_id in self._builds
        reusable = (
            existing is not None
            and not existing.deleted
            and (existing.status == "ready" or (existing.status == "building" and in_flight))
        )
        if reusable:
            build = self._builds.get(version_id)
            if wait and build is not None and build.task is not None:
                await asyncio.shield(build.task)
            return await self._info(version_id)
        snapshot = self.versions_dir / version_id
        source.snapshot(directory, snapshot)
        async with self.db.session() as session:
            values = dict(
                status="building",
                cog_version=self.builder_cog_version(),
                source_dir=str(snapshot),
                predict_ref=config.predict_ref,
                python_version=config.python_version,
                environment=config.environment,
                build_log="",
                build_error=None,
                deleted_at=None,
            )
            if existing is None:
                session.add(
                    VersionRow(
                        id=version_id, model_id=model.id, created_at=self.clock.now(), **values
                    )
                )
            else:
                await session.execute(
                    update(VersionRow).where(VersionRow.id == version_id).values(**values)
                )
            await session.commit()
        self.models.forget(version_id)
        created = await self._info(version_id)  # read before the build can finish: "building"
        build = self._builds[version_id] = Build()
        build.task = asyncio.create_task(
            self._build(version_id, snapshot, config, build), name=f"build-{version_id[:12]}"
        )
        log.info("version_build_started", model=full_name, version_id=version_id)
        if wait:
            await asyncio.shield(build.task)
            return await self._info(version_id)
        return created

    def builder_cog_version(self) -> str:
        envs = getattr(self.builder, "envs", None)
        return str(getattr(envs, "cog_version", "0.23.1"))

    async def _info(self, version_id: str) -> VersionInfo:
        info = await self.models.version(version_id)
        assert info is not None
        return info

    async def _build(
        self, version_id: str, snapshot: Path, config: cogyaml.CogConfig, build: Build
    ) -> None:
        began = time.monotonic()
        values: dict[str, object]
        try:
            result = await self.builder.build(snapshot, config, log=build.lines.append)
        except Exception as exc:
            detail = exc.detail if isinstance(exc, errors.APIError) else repr(exc)
            build.lines.append(f"Build failed: {detail.splitlines()[0] if detail else ''}")
            values = {"status": "failed", "build_error": detail}
            log.warning("version_build_failed", version_id=version_id, error=detail[:500])
        else:
            build.lines.append(f"Version {version_id} is ready.")
            values = {
                "status": "ready",
                "openapi_schema": result.openapi_schema,
                "env_dir": str(result.env_dir),
                "concurrency": result.concurrency,
                "cog_version": result.cog_version,
            }
        seconds = round(time.monotonic() - began, 3)
        async with self.db.session() as session:
            await session.execute(
                update(VersionRow)
                .where(VersionRow.id == version_id)
                .values(build_log="\n".join(build.lines), build_seconds=seconds, **values)
            )
            await session.commit()
        self.models.forget(version_id)
        self._builds.pop(version_id, None)
        log.info("version_build_finished", version_id=version_id, status=values["status"])

    async def status(self, version: VersionInfo, offset: int = 0) -> BuildStatus:
        """The build's status and its log from character ``offset`` on (for streaming)."""
        build = self._builds.get(version.id)
        if build is not None:
            text = "\n".join(build.lines) + ("\n" if build.lines else "")
            status, error = "building", None
        else:
            async with self.db.session() as session:
                row = await session.get(VersionRow, version.id)
            assert row is not None
            text = row.build_log + ("\n" if row.build_log else "")
            status, error = row.status, row.build_error
        return BuildStatus(status, text[offset:], len(text), error)

    async def recover(self) -> int:
        """Fail the builds a previous run left ``building`` (their task died with it); the
        next push of the same content builds them again. Returns how many there were."""
        async with self.db.session() as session:
            result = await session.execute(
                update(VersionRow)
                .where(VersionRow.status == "building")
                .values(status="failed", build_error=INTERRUPTED_BUILD)
            )
            await session.commit()
        count = int(getattr(result, "rowcount", 0) or 0)
        if count:
            log.warning("version_builds_interrupted", count=count)
        return count

    async def stop(self) -> None:
        """Cancel builds in flight (they are redone by the next push of the same content)."""
        tasks = [b.task for b in self._builds.values() if b.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
