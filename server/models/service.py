"""Models and versions: create models, look them up, resolve version refs, delete versions.

Versions come from ``server.models.builds`` (push and build); here they are read. Only a
``ready``, non-deleted version can be resolved for a prediction, so a version whose build
failed, or is still running, is never reachable.
"""

import asyncio
import functools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server import errors
from server.accounts.service import Account
from server.clock import Clock
from server.db import Database
from server.models.tables import ModelRow, VersionRow
from server.pagination import Page, paginate
from server.runtime import cogyaml
from server.runtime.builder import BuildLog, BuildResult

log = structlog.get_logger("server.models")

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
VERSION_RE = re.compile(r"^[0-9a-f]{64}$")
REF_RE = re.compile(r"^(?P<owner>[^/:\s]+)/(?P<name>[^/:\s]+)(?::(?P<version>[0-9a-f]{64}))?$")
VISIBILITIES = ("public", "private")
LATEST_TTL_S = 2.0  # how stale a model's "latest version" may be seen from another replica


class Builder(Protocol):
    """Turns a predictor directory into something a runtime can start (venv, image…)."""

    async def build(
        self, source_dir: Path, config: cogyaml.CogConfig, *, log: BuildLog | None = None
    ) -> BuildResult: ...


@dataclass(frozen=True)
class VersionInfo:
    """A version as the scheduler and API need it (immutable once ``ready``)."""

    id: str
    model_id: int
    owner: str
    name: str
    created_at: datetime
    status: str
    cog_version: str
    openapi_schema: dict[str, Any]
    source_dir: Path
    env_dir: Path
    predict_ref: str
    python_version: str
    concurrency: int
    environment: dict[str, str]
    hardware: str
    visibility: str
    account_id: int
    build_error: str | None = None
    build_seconds: float | None = None
    deleted: bool = False

    @property
    def model(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def runnable(self) -> bool:
        return self.status == "ready" and not self.deleted

    @property
    def output_is_iterator(self) -> bool:
        output = self.openapi_schema.get("components", {}).get("schemas", {}).get("Output", {})
        return bool(output.get("x-cog-array-type") == "iterator")

    def visible_to(self, account: Account) -> bool:
        return bool(self.visibility == "public" or self.account_id == account.id)


def split_name(full: str) -> tuple[str, str]:
    owner, sep, name = full.partition("/")
    if not sep or not NAME_RE.match(owner) or not NAME_RE.match(name):
        raise errors.InputValidationFailed(
            [{"type": "pattern", "field": "model", "description": f"'{full}' is not owner/name"}]
        )
    return owner, name


def may_write(account: Account, owner: str) -> bool:
    """An account writes to its own namespace; the admin to any."""
    return account.is_admin or account.username == owner


LatestEntry = tuple[float, ModelRow, VersionInfo | None]
"""A model's cached latest version: (expires, monotonic seconds; its row; the version)."""


class ModelService:
    def __init__(self, db: Database, clock: Clock, *, hardware: Callable[[], list[str]]) -> None:
        self.db = db
        self.clock = clock
        self.hardware = hardware
        self._versions: dict[str, VersionInfo] = {}
        # owner/name -> (expires, model row, latest runnable version): the hot path of
        # model-scoped predictions. Local changes clear it; the TTL bounds what other gateway
        # replicas sharing the database may change meanwhile.
        self._latest: dict[tuple[str, str], LatestEntry] = {}
        # One load per model at a time: requests that find its entry expired together wait for
        # the same queries (at 16 clients each expiry used to run 16 pairs of them).
        self._latest_loading: dict[tuple[str, str], asyncio.Task[LatestEntry]] = {}

    # -- models ------------------------------------------------------------------------------

    async def create_model(
        self,
        account: Account,
        *,
        owner: str,
        name: str,
        visibility: str = "public",
        hardware: str = "cpu",
        fields: dict[str, str | None] | None = None,
    ) -> ModelRow:
        problems = []
        if not NAME_RE.match(owner):
            problems.append({"type": "pattern", "field": "owner", "description": "invalid owner"})
        if not NAME_RE.match(name):
            problems.append(
                {
                    "type": "pattern",
                    "field": "name",
                    "description": "lowercase letters, digits, '-', '_' and '.' only",
                }
            )
        if visibility not in VISIBILITIES:
            problems.append(
                {"type": "enum", "field": "visibility", "description": "public or private"}
            )
        if hardware not in self.hardware():
            problems.append(
                {
                    "type": "enum",
                    "field": "hardware",
                    "description": f"one of {', '.join(self.hardware())}",
                }
            )
        if problems:
            raise errors.InputValidationFailed(problems)
        if not may_write(account, owner):
            raise errors.Forbidden(f"You cannot create models owned by {owner}.")
        row = ModelRow(
            owner=owner,
            name=name,
            account_id=account.id,
            visibility=visibility,
            hardware=hardware,
            created_at=self.clock.now(),
            **(fields or {}),
        )
        async with self.db.session() as session:
            session.add(row)
            try:
                await session.commit()
            except IntegrityError:
                raise errors.Conflict(f"Model {owner}/{name} already exists.") from None
        self._forget_latest((owner, name))
        log.info("model_created", model=f"{owner}/{name}")
        return row

    async def _model_row(self, session: AsyncSession, owner: str, name: str) -> ModelRow | None:
        return await session.scalar(
            select(ModelRow).where(ModelRow.owner == owner, ModelRow.name == name)
        )

    async def find_model(self, owner: str, name: str) -> ModelRow | None:
        async with self.db.session() as session:
            return await self._model_row(session, owner, name)

    async def get_model(self, account: Account, owner: str, name: str) -> ModelRow:
        row = await self.find_model(owner, name)
        if row is None or not (row.visibility == "public" or row.account_id == account.id):
            raise errors.NotFound(f"Model {owner}/{name} not found.")
        return row

    async def run_count(self, model: ModelRow) -> int:
        from server.predictions.tables import PredictionRow

        async with self.db.session() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(PredictionRow)
                .where(PredictionRow.model_id == model.id)
            )
        return int(count or 0)

    async def list_models(
        self, account: Account, cursor: str | None, url_for: Callable[[str], str]
    ) -> Page[ModelRow]:
        stmt = select(ModelRow).where(
            (ModelRow.visibility == "public") | (ModelRow.account_id == account.id)
        )
        async with self.db.session() as session:
            return await paginate(
                session,
                stmt,
                cursor=cursor,
                url_for=url_for,
            )

    # -- versions ----------------------------------------------------------------------------

    def forget(self, version_id: str) -> None:
        """Drop a cached version (its row changed: build finished, deleted)."""
        self._versions.pop(version_id, None)
        self._forget_latest()

    async def mark_setup_failed(self, version_id: str, message: str) -> None:
        """An instance's setup() failed: the version is broken until pushed again."""
        async with self.db.session() as session:
            await session.execute(
                update(VersionRow)
                .where(VersionRow.id == version_id, VersionRow.status == "ready")
                .values(status="failed", build_error=message)
            )
            await session.commit()
        self.forget(version_id)
        log.warning("version_setup_failed", version_id=version_id[:12])

    async def version(self, version_id: str) -> VersionInfo | None:
        """A version by id, in any status; ready versions are cached (they never change)."""
        cached = self._versions.get(version_id)
        if cached is not None:
            return cached
        async with self.db.session() as session:
            found = (
                await session.execute(
                    select(VersionRow, ModelRow)
                    .join(ModelRow, VersionRow.model_id == ModelRow.id)
                    .where(VersionRow.id == version_id)
                )
            ).first()
        if found is None:
            return None
        row, model = found
        info = VersionInfo(
            id=row.id,
            model_id=model.id,
            owner=model.owner,
            name=model.name,
            created_at=row.created_at,
            status=row.status,
            cog_version=row.cog_version,
            openapi_schema=row.openapi_schema or {},
            source_dir=Path(row.source_dir),
            env_dir=Path(row.env_dir or row.source_dir),
            predict_ref=row.predict_ref,
            python_version=row.python_version,
            concurrency=row.concurrency,
            environment=dict(row.environment),
            hardware=model.hardware,
            visibility=model.visibility,
            account_id=model.account_id,
            build_error=row.build_error,
            build_seconds=row.build_seconds,
            deleted=row.deleted_at is not None,
        )
        if info.status != "building":
            self._versions[version_id] = info
        return info

    async def latest_version(self, model: ModelRow) -> VersionInfo | None:
        """The newest ready, non-deleted version (what model-scoped predictions run)."""
        async with self.db.session() as session:
            version_id = await session.scalar(
                select(VersionRow.id)
                .where(
                    VersionRow.model_id == model.id,
                    VersionRow.status == "ready",
                    VersionRow.deleted_at.is_(None),
                )
                .order_by(VersionRow.created_at.desc(), VersionRow.id.desc())
                .limit(1)
            )
        return None if version_id is None else await self.version(version_id)

    async def list_versions(
        self, model: ModelRow, cursor: str | None, url_for: Callable[[str], str]
    ) -> Page[VersionInfo]:
        stmt = select(VersionRow).where(
            VersionRow.model_id == model.id, VersionRow.deleted_at.is_(None)
        )
        async with self.db.session() as session:
            page = await paginate(
                session,
                stmt,
                cursor=cursor,
                url_for=url_for,
            )
        infos = [await self.version(row.id) for row in page.results]
        return Page([i for i in infos if i is not None], page.next, page.previous)

    async def get_version(
        self, account: Account, owner: str, name: str, version_id: str
    ) -> VersionInfo:
        model = await self.get_model(account, owner, name)
        info = await self.version(version_id)
        if info is None or info.model_id != model.id or info.deleted:
            raise errors.NotFound(f"Version {version_id} of {owner}/{name} not found.")
        return info

    async def delete_version(
        self, account: Account, owner: str, name: str, version_id: str, *, in_use: bool
    ) -> VersionInfo:
        """Soft-delete: the version can no longer run or be listed; its predictions remain."""
        info = await self.get_version(account, owner, name, version_id)
        if not may_write(account, owner):
            raise errors.Forbidden(f"You cannot delete versions of {owner}/{name}.")
        if in_use:
            raise errors.Conflict(
                f"Version {version_id} is the current release of a deployment; "
                "move the deployment to another version first."
            )
        async with self.db.session() as session:
            await session.execute(
                update(VersionRow)
                .where(VersionRow.id == version_id)
                .values(deleted_at=self.clock.now())
            )
            await session.commit()
        self.forget(version_id)
        log.info("version_deleted", version_id=version_id, model=info.model)
        return info

    async def _latest_for(self, account: Account, owner: str, name: str) -> VersionInfo | None:
        hit = self._latest.get((owner, name))
        if hit is None or hit[0] < time.monotonic():
            hit = await self._load_latest(owner, name)
        _, model, info = hit
        if not (model.visibility == "public" or model.account_id == account.id):
            raise errors.InvalidVersion()
        if info is None:
            raise errors.InvalidVersion(await self._no_runnable_version(model))
        return info

    async def _load_latest(self, owner: str, name: str) -> LatestEntry:
        key = (owner, name)
        loading = self._latest_loading.get(key)
        if loading is None:
            loading = asyncio.create_task(
                self._query_latest(owner, name), name=f"latest-{owner}/{name}"
            )
            self._latest_loading[key] = loading
            loading.add_done_callback(functools.partial(self._latest_loaded, key))
        return await asyncio.shield(loading)  # a caller that goes away leaves it to the others

    async def _query_latest(self, owner: str, name: str) -> LatestEntry:
        expires = time.monotonic() + LATEST_TTL_S
        model = await self.find_model(owner, name)
        if model is None:
            raise errors.InvalidVersion()
        return (expires, model, await self.latest_version(model))

    def _latest_loaded(self, key: tuple[str, str], loading: asyncio.Task[LatestEntry]) -> None:
        failed = loading.cancelled() or loading.exception() is not None  # retrieved, always
        if self._latest_loading.get(key) is not loading:
            return  # forgotten while it loaded: what it read may be stale
        del self._latest_loading[key]
        if not failed:
            self._latest[key] = loading.result()

    def _forget_latest(self, key: tuple[str, str] | None = None) -> None:
        if key is None:
            self._latest.clear()
            self._latest_loading.clear()
        else:
            self._latest.pop(key, None)
            self._latest_loading.pop(key, None)

    async def _no_runnable_version(self, model: ModelRow) -> str:
        """Why ``owner/name`` has nothing to run: its newest failure, if it has one."""
        async with self.db.session() as session:
            error = await session.scalar(
                select(VersionRow.build_error)
                .where(
                    VersionRow.model_id == model.id,
                    VersionRow.status == "failed",
                    VersionRow.deleted_at.is_(None),
                )
                .order_by(VersionRow.created_at.desc())
                .limit(1)
            )
        name = f"{model.owner}/{model.name}"
        if error:
            return f"{name} has no version that can run; the latest failed: {error}"
        return f"{name} has no version that can run yet."

    async def resolve(self, account: Account, ref: str) -> VersionInfo:
        """A runnable version from ``<id>``, ``owner/name:<id>`` or ``owner/name`` (latest)."""
        info: VersionInfo | None = None
        if VERSION_RE.match(ref):
            info = await self.version(ref)
        elif match := REF_RE.match(ref):
            if match["version"]:
                info = await self.version(match["version"])
                if info is not None and info.model != f"{match['owner']}/{match['name']}":
                    info = None
            else:
                info = await self._latest_for(account, match["owner"], match["name"])
        if info is None or not info.visible_to(account):
            raise errors.InvalidVersion()
        if not info.runnable:
            if info.status == "failed" and not info.deleted:
                raise errors.InvalidVersion(f"Version {info.id} failed: {info.build_error}")
            raise errors.InvalidVersion()
        return info
