"""The usage outbox: one row per terminal prediction, written in the status change's transaction.

``seq`` is the monotonically increasing sequence number. A row is *claimed* into a batch
(``batch_key`` = the object key) before the upload and deleted after the put succeeded, so a
crash between the two re-uploads exactly the same batch to the same key.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UTCDateTime


class UsageRow(Base):
    """A record on its way to the sink: written with the terminal status, deleted once its
    batch is in the sink (which then holds it). The table holds only what is on its way, so
    it needs no index beyond the key and the one-record-per-prediction guard; every index more
    was a page more to append to the WAL with each prediction."""

    __tablename__ = "usage_records"
    __table_args__ = ({"sqlite_autoincrement": True},)  # a sequence number is never reused

    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    record_id: Mapped[str] = mapped_column(String(32))  # random 128 bits: no index to keep
    prediction_id: Mapped[str] = mapped_column(String(32), unique=True)
    completed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    record: Mapped[dict[str, Any]]
    batch_key: Mapped[str | None] = mapped_column(String(200), default=None)
