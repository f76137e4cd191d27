"""Models and versions: register a predictor directory, look models up, resolve version refs."""

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server import errors
from server.accounts.service import Account
from server.clock import Clock
from server.db import Database
from server.models import source
from server.models.tables import ModelRow, VersionRow
from server.pagination import Page, paginate
from server.runtime import cogyaml
from server.runtime.builder import BuildResult

log = structlog.get_logger("server.models")

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
VERSION_RE = re.compile(r"^[0-9a-f]{64}$")
REF_RE = re.compile(r"^(?P<owner>[^/:\s]+)/(?P<name>[^/:\s]+)(?::(?P<version>[0-9a-f]{64}))?$")


class Builder(Protocol):
    """Turns a predictor directory into something a runtime can start (venv, image…)."""

    async def build(self, source_dir: Path, config: cogyaml.CogConfig) -> BuildResult: ...


@dataclass(frozen=True)
class VersionInfo:
    """An immutable, runnable version of a model, as the scheduler and API need it."""

    id: str
    model_id: int
    owner: str
    name: str
    created_at: datetime
    cog_version: str
    openapi_schema: dict[str, Any]
    source_dir: Path
    env_dir: Path
    predict_ref: str
    concurrency: int
    environment: dict[str, str]
    hardware: str
    visibility: str
    account_id: int

    @property
    def model(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def output_is_iterator(self) -> bool:
        output = self.openapi_schema.get("components", {}).get("schemas", {}).get("Output", {})
        return bool(output.get("x-cog-array-type") == "iterator")

    def visible_to(self, account: Account) -> bool:
        return bool(self.visibility == "public" or self.account_id == account.id)


def split_name(full: str) -> tuple[str, str]:
    owner, sep, name = full.partition("/")
    if not sep or not NAME_RE.match(owner) or not NAME_RE.match(name):
        raise errors.BadRequest(f"'{full}' is not a model name like 'owner/name'.")
    return owner, name


class ModelService:
    def __init__(self, db: Database, clock: Clock, builder: Builder, data_dir: Path) -> None:
        self.db = db
        self.clock = clock
        self.builder = builder
        self.versions_dir = data_dir.resolve() / "versions"
        self._versions: dict[str, VersionInfo] = {}

    # -- registration -------------------------------------------------------------------------

    async def register_directory(
        self, full_name: str, directory: Path, *, owner: Account, visibility: str = "public"
    ) -> VersionInfo:
        """Make ``directory`` a version of ``full_name`` (created if missing) and build it."""
        owner_name, name = split_name(full_name)
        directory = directory.resolve()
        config = cogyaml.load(directory)
        version_id = source.digest(directory, full_name)
        existing = await self.version(version_id)
        if existing is not None:
            return existing
        snapshot = self.versions_dir / version_id
        source.snapshot(directory, snapshot)
        built = await self.builder.build(snapshot, config)
        async with self.db.session() as session:
            model = await self._model_row(session, owner_name, name)
            if model is None:
                model = ModelRow(
                    owner=owner_name,
                    name=name,
                    account_id=owner.id,
                    visibility=visibility,
                    hardware="gpu" if config.gpu else "cpu",
                    created_at=self.clock.now(),
                )
                session.add(model)
                await session.flush()
            session.add(
                VersionRow(
                    id=version_id,
                    model_id=model.id,
                    created_at=self.clock.now(),
                    cog_version=built.cog_version,
                    openapi_schema=built.openapi_schema,
                    source_dir=str(snapshot),
                    env_dir=str(built.env_dir),
                    predict_ref=config.predict_ref,
                    concurrency=built.concurrency,
                    environment=config.environment,
                )
            )
            await session.commit()
        log.info("version_registered", model=full_name, version_id=version_id)
        info = await self.version(version_id)
        assert info is not None
        return info

    # -- lookups ------------------------------------------------------------------------------

    async def _model_row(self, session: AsyncSession, owner: str, name: str) -> ModelRow | None:
        return await session.scalar(
            select(ModelRow).where(ModelRow.owner == owner, ModelRow.name == name)
        )

    async def version(self, version_id: str) -> VersionInfo | None:
        """A version by id, from the in-memory cache (versions never change)."""
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
            cog_version=row.cog_version,
            openapi_schema=row.openapi_schema,
            source_dir=Path(row.source_dir),
            env_dir=Path(row.env_dir),
            predict_ref=row.predict_ref,
            concurrency=row.concurrency,
            environment=dict(row.environment),
            hardware=model.hardware,
            visibility=model.visibility,
            account_id=model.account_id,
        )
        self._versions[version_id] = info
        return info

    async def get_model(self, account: Account, owner: str, name: str) -> ModelRow:
        async with self.db.session() as session:
            row = await self._model_row(session, owner, name)
        if row is None or not (row.visibility == "public" or row.account_id == account.id):
            raise errors.NotFound(f"Model {owner}/{name} not found.")
        return row

    async def latest_version(self, model: ModelRow) -> VersionInfo | None:
        async with self.db.session() as session:
            version_id = await session.scalar(
                select(VersionRow.id)
                .where(VersionRow.model_id == model.id)
                .order_by(VersionRow.created_at.desc(), VersionRow.id.desc())
                .limit(1)
            )
        return None if version_id is None else await self.version(version_id)

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
                created=ModelRow.created_at,
                ident=ModelRow.id,
                cursor=cursor,
                url_for=url_for,
            )

    async def list_versions(
        self, model: ModelRow, cursor: str | None, url_for: Callable[[str], str]
    ) -> Page[VersionInfo]:
        stmt = select(VersionRow).where(VersionRow.model_id == model.id)
        async with self.db.session() as session:
            page = await paginate(
                session,
                stmt,
                created=VersionRow.created_at,
                ident=VersionRow.id,
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
        if info is None or info.model_id != model.id:
            raise errors.NotFound(f"Version {version_id} of {owner}/{name} not found.")
        return info

    async def resolve(self, account: Account, ref: str) -> VersionInfo:
        """A version from ``<id>``, ``owner/name:<id>`` or ``owner/name`` (its latest version)."""
        info: VersionInfo | None = None
        if VERSION_RE.match(ref):
            info = await self.version(ref)
        elif match := REF_RE.match(ref):
            if match["version"]:
                info = await self.version(match["version"])
                if info is not None and info.model != f"{match['owner']}/{match['name']}":
                    info = None
            else:
                try:
                    model = await self.get_model(account, match["owner"], match["name"])
                except errors.NotFound:
                    raise errors.InvalidVersion() from None
                info = await self.latest_version(model)
        if info is None or not info.visible_to(account):
            raise errors.InvalidVersion()
        return info
