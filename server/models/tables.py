"""Models (the Replicate resource) and their immutable versions."""

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
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
    __tablename__ = "versions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    cog_version: Mapped[str] = mapped_column(String(32))
    openapi_schema: Mapped[dict[str, Any]]
    source_dir: Mapped[str] = mapped_column(Text)
    env_dir: Mapped[str] = mapped_column(Text)
    predict_ref: Mapped[str] = mapped_column(Text)
    concurrency: Mapped[int] = mapped_column(default=1)
    environment: Mapped[dict[str, Any]]
