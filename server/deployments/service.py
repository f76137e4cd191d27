"""Deployments: an owned ``owner/name`` that runs one version of a model, with a release history.

Releases are append-only: creating a deployment makes release 1, and every update or rollback
adds the next number with the whole configuration (version, hardware, instance bounds). The
release with the highest number is current; predictions sent to the deployment run its version.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import structlog
from sqlalchemy import ColumnElement, delete, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from server import errors
from server.accounts.service import Account
from server.accounts.tables import AccountRow
from server.clock import Clock
from server.db import Database
from server.deployments.tables import DeploymentReleaseRow, DeploymentRow
from server.models.service import NAME_RE, ModelService, VersionInfo, split_name
from server.models.tables import ModelRow, VersionRow
from server.pagination import Page, paginate
from server.scheduler.placement import Placement

log = structlog.get_logger("server.deployments")

MIN_INSTANCES_LIMIT = 5  # the most instances a deployment may keep warm (Replicate's OAS bound)
MAX_INSTANCES_LIMIT = 20  # the most instances a deployment may scale to (Replicate's OAS bound)


@dataclass(frozen=True)
class Release:
    """One numbered configuration of a deployment, and who made it."""

    number: int
    model: str
    version: str
    hardware: str
    min_instances: int
    max_instances: int
    created_at: datetime
    created_by: Account

    @classmethod
    def from_row(cls, row: DeploymentReleaseRow, model: ModelRow, creator: AccountRow) -> "Release":
        return cls(
            number=row.number,
            model=f"{model.owner}/{model.name}",
            version=row.version_id,
            hardware=row.hardware,
            min_instances=row.min_instances,
            max_instances=row.max_instances,
            created_at=row.created_at,
            created_by=Account.from_row(creator),
        )


@dataclass(frozen=True)
class Deployment:
    """A deployment with its current release (what the API renders)."""

    id: int
    owner: str
    name: str
    model_id: int
    release: Release

    @property
    def model(self) -> str:
        return self.release.model


def _is_current() -> ColumnElement[bool]:
    """SQL: no release of the same deployment has a higher number."""
    newer = aliased(DeploymentReleaseRow)
    return ~exists().where(
        newer.deployment_id == DeploymentReleaseRow.deployment_id,
        newer.number > DeploymentReleaseRow.number,
    )


def _invalid(field: str, kind: str, description: str) -> errors.InputValidationFailed:
    return errors.InputValidationFailed(
        [{"type": kind, "field": field, "description": description}]
    )


def _release_row(deployment_id: int, r: Release) -> DeploymentReleaseRow:
    return DeploymentReleaseRow(
        deployment_id=deployment_id,
        number=r.number,
        version_id=r.version,
        hardware=r.hardware,
        min_instances=r.min_instances,
        max_instances=r.max_instances,
        created_at=r.created_at,
        created_by_account_id=r.created_by.id,
    )


class DeploymentService:
    def __init__(self, db: Database, clock: Clock, models: ModelService) -> None:
        self.db = db
        self.clock = clock
        self.models = models
        self.on_release: Callable[[VersionInfo, Placement], None] = lambda v, p: None
        """Told of every new release (and of a deleted deployment, with no instances), so
        the scheduler can keep ``min_instances`` warm; wired in ``server.services``."""

    # -- reading -----------------------------------------------------------------------------

    async def _load(self, session: AsyncSession, rows: Sequence[DeploymentRow]) -> list[Deployment]:
        """Deployments with their current releases, in the order of ``rows``."""
        if not rows:
            return []
        found = await session.execute(
            select(DeploymentReleaseRow, ModelRow, AccountRow)
            .join(VersionRow, VersionRow.id == DeploymentReleaseRow.version_id)
            .join(ModelRow, ModelRow.id == VersionRow.model_id)
            .join(AccountRow, AccountRow.id == DeploymentReleaseRow.created_by_account_id)
            .where(DeploymentReleaseRow.deployment_id.in_([r.id for r in rows]), _is_current())
        )
        current = {r.deployment_id: (r, m, a) for r, m, a in found}
        result = []
        for row in rows:
            release, model, creator = current[row.id]
            result.append(
                Deployment(
                    row.id, row.owner, row.name, model.id, Release.from_row(release, model, creator)
                )
            )
        return result

    async def get(self, account: Account, owner: str, name: str) -> Deployment:
        """The deployment, if the caller owns it (or is the admin); otherwise NotFound."""
        async with self.db.session() as session:
            row = await session.scalar(
                select(DeploymentRow).where(
                    DeploymentRow.owner == owner, DeploymentRow.name == name
                )
            )
            if row is None or not (account.is_admin or account.username == owner):
                raise errors.NotFound(f"Deployment {owner}/{name} not found.")
            [deployment] = await self._load(session, [row])
        return deployment

    async def list(
        self, account: Account, cursor: str | None, url_for: Callable[[str], str]
    ) -> Page[Deployment]:
        stmt = select(DeploymentRow).where(DeploymentRow.owner == account.username)
        async with self.db.session() as session:
            page = await paginate(
                session,
                stmt,
                cursor=cursor,
                url_for=url_for,
            )
            results = await self._load(session, page.results)
        return Page(results, page.next, page.previous)

    async def placement(
        self, account: Account, owner: str, name: str
    ) -> tuple[VersionInfo, Placement]:
        """The current release's version and the pool it runs in (one per release)."""
        deployment = await self.get(account, owner, name)
        info = await self.models.version(deployment.release.version)
        if info is None or not info.runnable:
            raise errors.InvalidVersion()
        return info, _placement(deployment)

    async def placement_of(self, full_name: str, version_id: str) -> Placement | None:
        """The pool of a deployment prediction resumed after a restart: the deployment's, while
        its current release still runs ``version_id``; else None (the version's own pool)."""
        owner, _, name = full_name.partition("/")
        async with self.db.session() as session:
            row = await session.scalar(
                select(DeploymentRow).where(
                    DeploymentRow.owner == owner, DeploymentRow.name == name
                )
            )
            if row is None:
                return None
            [deployment] = await self._load(session, [row])
        if deployment.release.version != version_id:
            return None
        return _placement(deployment)

    async def warm_placements(self) -> Sequence[tuple[VersionInfo, Placement]]:
        """Every deployment that keeps instances warm (``min_instances`` > 0), for start-up."""
        async with self.db.session() as session:
            rows = (await session.execute(select(DeploymentRow))).scalars().all()
            deployments = await self._load(session, rows)
        found = []
        for deployment in deployments:
            info = await self.models.version(deployment.release.version)
            if deployment.release.min_instances > 0 and info is not None and info.runnable:
                found.append((info, _placement(deployment)))
        return found

    async def _announce(self, deployment: Deployment, *, deleted: bool = False) -> None:
        info = await self.models.version(deployment.release.version)
        if info is not None and info.runnable:
            placement = _placement(deployment)
            if deleted:
                placement = replace(placement, min_instances=0)
            self.on_release(info, placement)

    async def uses_version(self, version_id: str) -> bool:
        """Whether some deployment's current release runs ``version_id``."""
        async with self.db.session() as session:
            found = await session.scalar(
                select(DeploymentReleaseRow.id)
                .where(DeploymentReleaseRow.version_id == version_id, _is_current())
                .limit(1)
            )
        return found is not None

    # -- changing ----------------------------------------------------------------------------

    async def _check(self, account: Account, r: Release, model_id: int) -> None:
        """422 unless ``r`` names offered hardware, bounds within the limits, and a ready
        version of ``model_id`` that the caller may use."""
        skus = self.models.hardware()
        problems: list[dict[str, str]] = []
        if r.hardware not in skus:
            problems.append(
                {"type": "enum", "field": "hardware", "description": f"one of {', '.join(skus)}"}
            )
        for field, value, limit in (
            ("min_instances", r.min_instances, MIN_INSTANCES_LIMIT),
            ("max_instances", r.max_instances, MAX_INSTANCES_LIMIT),
        ):
            if not 0 <= value <= limit:
                problems.append(
                    {"type": "range", "field": field, "description": f"must be 0 to {limit}"}
                )
        if not problems and r.min_instances > r.max_instances:
            raise _invalid("min_instances", "range", "must not exceed max_instances")
        if problems:
            raise errors.InputValidationFailed(problems)
        info = await self.models.version(r.version)
        if info is None or info.model_id != model_id or not info.runnable:
            raise errors.InvalidVersion(f"Version {r.version} is not a ready version of {r.model}.")
        if not info.visible_to(account):
            raise errors.InvalidVersion()

    async def create(
        self,
        account: Account,
        *,
        name: str,
        model: str,
        version: str,
        hardware: str,
        min_instances: int,
        max_instances: int,
    ) -> Deployment:
        """A deployment in the caller's namespace, with release 1."""
        owner, _, short = name.rpartition("/")
        if (owner and owner != account.username) or not NAME_RE.match(short):
            raise _invalid(
                "name",
                "pattern",
                "lowercase letters, digits, '-', '_' and '.' only, "
                f"optionally prefixed by your username ({account.username}/)",
            )
        model_owner, model_name = split_name(model)
        now = self.clock.now()
        release = Release(1, model, version, hardware, min_instances, max_instances, now, account)
        try:
            model_row = await self.models.get_model(account, model_owner, model_name)
        except errors.NotFound:
            raise errors.InvalidVersion(f"Model {model} not found.") from None
        await self._check(account, release, model_row.id)
        row = DeploymentRow(
            owner=account.username, name=short, account_id=account.id, created_at=now
        )
        async with self.db.session() as session:
            session.add(row)
            try:
                await session.flush()
                session.add(_release_row(row.id, release))
                await session.commit()
            except IntegrityError:
                raise errors.Conflict(f"Deployment {row.owner}/{short} already exists.") from None
        log.info("deployment_created", deployment=f"{row.owner}/{short}", version_id=version)
        created = Deployment(row.id, row.owner, short, model_row.id, release)
        await self._announce(created)
        return created

    async def _release(
        self, account: Account, deployment: Deployment, config: Release
    ) -> Deployment:
        """Store ``config`` (a changed copy of the current release) as the next release."""
        release = replace(
            config,
            number=deployment.release.number + 1,
            created_at=self.clock.now(),
            created_by=account,
        )
        await self._check(account, release, deployment.model_id)
        async with self.db.session() as session:
            session.add(_release_row(deployment.id, release))
            try:
                await session.commit()
            except IntegrityError:
                raise errors.Conflict("The deployment changed meanwhile; try again.") from None
        log.info(
            "deployment_released",
            deployment=f"{deployment.owner}/{deployment.name}",
            release=release.number,
            version_id=release.version,
        )
        released = replace(deployment, release=release)
        await self._announce(released)
        return released

    async def update(
        self,
        account: Account,
        owner: str,
        name: str,
        *,
        version: str | None = None,
        hardware: str | None = None,
        min_instances: int | None = None,
        max_instances: int | None = None,
    ) -> Deployment:
        """A new release: the current configuration with the given fields changed."""
        if version is None and hardware is None and min_instances is None and max_instances is None:
            raise _invalid(
                "",
                "required",
                "give one or more of version, hardware, min_instances, max_instances",
            )
        deployment = await self.get(account, owner, name)
        r = deployment.release
        config = replace(
            r,
            version=r.version if version is None else version,
            hardware=r.hardware if hardware is None else hardware,
            min_instances=r.min_instances if min_instances is None else min_instances,
            max_instances=r.max_instances if max_instances is None else max_instances,
        )
        return await self._release(account, deployment, config)

    async def rollback(
        self, account: Account, owner: str, name: str, *, to: int | None = None
    ) -> Deployment:
        """A new release copying release ``to`` (default: the one before the current)."""
        deployment = await self.get(account, owner, name)
        current = deployment.release.number
        target = current - 1 if to is None else to
        if target == current or (to is None and current == 1):
            detail = "there is no earlier release" if to is None else f"release {to} is current"
            raise _invalid("to", "invalid", detail)
        async with self.db.session() as session:
            old = await session.scalar(
                select(DeploymentReleaseRow).where(
                    DeploymentReleaseRow.deployment_id == deployment.id,
                    DeploymentReleaseRow.number == target,
                )
            )
        if old is None:
            raise errors.NotFound(f"Deployment {owner}/{name} has no release {target}.")
        config = replace(
            deployment.release,
            version=old.version_id,
            hardware=old.hardware,
            min_instances=old.min_instances,
            max_instances=old.max_instances,
        )
        return await self._release(account, deployment, config)

    async def delete(self, account: Account, owner: str, name: str) -> None:
        deployment = await self.get(account, owner, name)
        async with self.db.session() as session:  # its releases go with it (ON DELETE CASCADE)
            await session.execute(delete(DeploymentRow).where(DeploymentRow.id == deployment.id))
            await session.commit()
        await self._announce(deployment, deleted=True)
        log.info("deployment_deleted", deployment=f"{owner}/{name}")


def _placement(deployment: Deployment) -> Placement:
    """A deployment's pool: one per release configuration, so a new release gets fresh
    instances while the old ones drain."""
    r = deployment.release
    full = f"{deployment.owner}/{deployment.name}"
    return Placement(
        key=f"deployment:{full}:{r.version}:{r.hardware}",
        hardware=r.hardware,
        min_instances=r.min_instances,
        max_instances=r.max_instances,
        deployment=full,
    )
