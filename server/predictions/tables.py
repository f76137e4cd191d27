"""Predictions: the gateway owns every field (Cog forgets a prediction once it finishes)."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UTCDateTime


class PredictionRow(Base):
    __tablename__ = "predictions"
    __table_args__ = (
        Index("ix_predictions_account_created", "account_id", "created_at", "id"),
        Index("ix_predictions_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("versions.id"))
    deployment: Mapped[str | None] = mapped_column(String(200), default=None)
    status: Mapped[str] = mapped_column(String(16))
    input: Mapped[dict[str, Any]]
    output: Mapped[Any | None] = mapped_column(JSON, default=None)
    logs: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text, default=None)
    metrics: Mapped[dict[str, Any]]
    source: Mapped[str] = mapped_column(String(8), default="api")
    webhook: Mapped[str | None] = mapped_column(Text, default=None)
    webhook_events_filter: Mapped[list[Any] | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    stream_token: Mapped[str | None] = mapped_column(String(64), default=None)
    """The secret in ``urls.stream`` (a capability URL: no Authorization needed)."""
