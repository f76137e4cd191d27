"""Deployments and their numbered releases; the release with the highest number is current."""

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UTCDateTime


class DeploymentRow(Base):
    """A stable name (``owner/name``) in front of whatever version its current release runs."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("owner", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DeploymentReleaseRow(Base):
    """One configuration of a deployment. Releases are never changed; every update adds one."""

    __tablename__ = "deployment_releases"
    __table_args__ = (UniqueConstraint("deployment_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    number: Mapped[int]
    """1 for the release made with the deployment, then one more for each update."""
    version_id: Mapped[str] = mapped_column(ForeignKey("versions.id"), index=True)
    hardware: Mapped[str] = mapped_column(String(64))
    min_instances: Mapped[int]
    max_instances: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
