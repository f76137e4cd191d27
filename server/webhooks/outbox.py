"""The delivery outbox in the database: messages waiting to go out, and the record of attempts.

A message is the exact body of one event of one prediction plus where its delivery stands.
Completed messages are staged in the status change's own transaction, so a webhook the client is
owed survives any crash; the deliverer reads due messages from here and writes every attempt
back. One prediction's messages go out in order: a message is due only when no earlier message
of the same prediction is still pending.
"""

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, exists, func, select, true, update
from sqlalchemy.orm import aliased

from server.clock import Clock
from server.db import Database
from server.predictions.status import Status
from server.predictions.tables import PredictionRow
from server.webhooks.tables import WebhookAttemptRow, WebhookDeliveryRow, WebhookTargetRow

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
SUPERSEDED = "superseded"
INTERMEDIATE = ("output", "logs")


@dataclass(frozen=True)
class Message:
    """One webhook message as the deliverer handles it (a snapshot of its outbox row)."""

    id: str
    prediction_id: str
    account_id: int
    url: str
    event: str
    payload: str
    created_at: datetime
    attempts: int = 0
    stored: bool = True
    """False for an output/logs message not written yet: its first attempt writes it."""

    @classmethod
    def from_row(cls, row: WebhookDeliveryRow) -> "Message":
        return cls(
            id=row.id,
            prediction_id=row.prediction_id,
            account_id=row.account_id,
            url=row.url,
            event=row.event,
            payload=row.payload,
            created_at=row.created_at,
            attempts=row.attempts,
        )

    def row(self, now: datetime) -> WebhookDeliveryRow:
        return WebhookDeliveryRow(
            id=self.id,
            prediction_id=self.prediction_id,
            account_id=self.account_id,
            url=self.url,
            event=self.event,
            payload=self.payload,
            state=PENDING,
            attempts=self.attempts,
            created_at=self.created_at,
            next_attempt_at=now,
        )


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to."""

    attempt: int
    started_at: datetime
    duration: float
    status_code: int | None = None
    error: str | None = None
    permanent: bool = False
    """Retrying cannot help (the destination is refused)."""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _heads(busy: Collection[str]) -> list[ColumnElement[bool]]:
    """Pending messages with no earlier pending message of the same prediction, outside
    ``busy`` predictions (those with an attempt in flight)."""
    earlier = aliased(WebhookDeliveryRow)
    conditions = [
        WebhookDeliveryRow.state == PENDING,
        ~exists().where(
            and_(
                earlier.prediction_id == WebhookDeliveryRow.prediction_id,
                earlier.state == PENDING,
                earlier.seq < WebhookDeliveryRow.seq,
            )
        ),
    ]
    if busy:
        conditions.append(WebhookDeliveryRow.prediction_id.not_in(list(busy)))
    return conditions


class Outbox:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def due(self, *, busy: Collection[str], limit: int) -> list[Message]:
        """Pending messages due now, the earliest of each prediction only, oldest first."""
        stmt = (
            select(WebhookDeliveryRow)
            .where(*_heads(busy), WebhookDeliveryRow.next_attempt_at <= self.clock.now())
            .order_by(WebhookDeliveryRow.seq)
            .limit(limit)
        )
        async with self.db.session() as session:
            rows = (await session.scalars(stmt)).all()
        return [Message.from_row(row) for row in rows]

    async def next_due(self, *, busy: Collection[str]) -> datetime | None:
        """When the next message (the earliest of its prediction) falls due."""
        stmt = select(func.min(WebhookDeliveryRow.next_attempt_at)).where(*_heads(busy))
        async with self.db.session() as session:
            found: datetime | None = await session.scalar(stmt)
        return found

    async def record(self, message: Message, outcome: Outcome, *, retry_at: datetime | None) -> str:
        """Write the attempt and the message's new state (pending again at ``retry_at``,
        delivered, or failed) in one transaction; returns the state. A message superseded
        while its attempt was in flight stays superseded."""
        now = self.clock.now()
        state = DELIVERED if outcome.ok else PENDING if retry_at is not None else FAILED
        async with self.db.session() as session:
            if not message.stored:
                session.add(message.row(now))
                await session.flush()
            result = await session.execute(
                update(WebhookDeliveryRow)
                .where(WebhookDeliveryRow.id == message.id, WebhookDeliveryRow.state == PENDING)
                .values(
                    state=state,
                    attempts=outcome.attempt,
                    next_attempt_at=retry_at or now,
                    finished_at=None if state == PENDING else now,
                    last_status_code=outcome.status_code,
                    last_error=outcome.error,
                )
            )
            session.add(
                WebhookAttemptRow(
                    delivery_id=message.id,
                    prediction_id=message.prediction_id,
                    url=message.url,
                    event=message.event,
                    attempt=outcome.attempt,
                    status_code=outcome.status_code,
                    error=outcome.error,
                    duration=round(outcome.duration, 6),
                    created_at=outcome.started_at,
                )
            )
            await session.commit()
        return state if getattr(result, "rowcount", 1) else SUPERSEDED

    async def supersede(self, prediction_ids: Collection[str]) -> int:
        """Pending output/logs messages of these (completed) predictions will not be sent."""
        if not prediction_ids:
            return 0
        return await self._close_intermediates(
            WebhookDeliveryRow.prediction_id.in_(list(prediction_ids))
        )

    async def drop_stale(self) -> int:
        """At start: output/logs messages left pending by an earlier run are out of date."""
        return await self._close_intermediates(true())

    async def _close_intermediates(self, condition: ColumnElement[bool]) -> int:
        async with self.db.session() as session:
            result = await session.execute(
                update(WebhookDeliveryRow)
                .where(
                    condition,
                    WebhookDeliveryRow.state == PENDING,
                    WebhookDeliveryRow.event.in_(INTERMEDIATE),
                )
                .values(state=SUPERSEDED, finished_at=self.clock.now())
            )
            await session.commit()
        return int(getattr(result, "rowcount", 0) or 0)

    async def targets(self) -> Mapping[str, str]:
        """prediction id -> base URL, for predictions with a webhook that have not finished."""
        async with self.db.session() as session:
            rows = (
                await session.execute(
                    select(WebhookTargetRow.prediction_id, WebhookTargetRow.base_url)
                    .join(PredictionRow, PredictionRow.id == WebhookTargetRow.prediction_id)
                    .where(PredictionRow.status.in_([Status.STARTING, Status.PROCESSING]))
                )
            ).all()
        return {prediction_id: base for prediction_id, base in rows}

    async def pending(self) -> int:
        async with self.db.session() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(WebhookDeliveryRow)
                .where(WebhookDeliveryRow.state == PENDING)
            )
        return int(count or 0)
