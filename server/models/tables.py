"""Models (the Replicate resource) and their immutable versions."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UTCDateTime


class ModelRow(Base):
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("owner", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    visibility: Mapped[str] = mapped_column(String(16), default="public")
    hardware: Mapped[str] = mapped_column(String(64), default="cpu")
    description: Mapped[str | None] = mapped_column(Text, default=None)
    github_url: Mapped[str | None] = mapped_column(Text, default=None)
    paper_url: Mapped[str | None] = mapped_column(Text, default=None)
    license_url: Mapped[str | None] = mapped_column(Text, default=None)
    cover_image_url: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class VersionRow(Base):
    """A version: immutable content (``source_dir``) plus what its build produced."""

    __tablename__ = "versions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="ready")
    """building, ready or failed; only ready versions can run."""
    cog_version: Mapped[str] = mapped_column(String(32))
    openapi_schema: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    source_dir: Mapped[str] = mapped_column(Text)
    env_dir: Mapped[str | None] = mapped_column(Text, default=None)
    predict_ref: Mapped[str] = mapped_column(Text)
    python_version: Mapped[str] = mapped_column(String(16), default="3.11")
    concurrency: Mapped[int] = mapped_column(default=1)
    environment: Mapped[dict[str, Any]]
    build_log: Mapped[str] = mapped_column(Text, default="")
    build_error: Mapped[str | None] = mapped_column(Text, default=None)
    build_seconds: Mapped[float | None] = mapped_column(default=None)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
