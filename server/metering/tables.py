"""The usage outbox: one row per terminal prediction, written in the status change's transaction.

``seq`` is the monotonically increasing sequence number. A row is *claimed* into a batch
(``batch_key`` = the object key) before the upload and *shipped* after the put succeeded, so a
crash between the two re-uploads exactly the same batch to the same key.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UTCDateTime


class UsageRow(Base):
    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_records_batch", "batch_key"),
        Index("ix_usage_records_unshipped", "shipped_at", "seq"),
        {"sqlite_autoincrement": True},
    )

    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    record_id: Mapped[str] = mapped_column(String(32))  # random 128 bits: no index to keep
    prediction_id: Mapped[str] = mapped_column(String(32), unique=True)
    completed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    record: Mapped[dict[str, Any]]
    batch_key: Mapped[str | None] = mapped_column(String(200), default=None)
    shipped_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
