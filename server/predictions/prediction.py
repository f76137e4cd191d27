"""The prediction as the gateway holds it, and the events other domains can listen to."""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from server.predictions.status import Status
from server.predictions.tables import PredictionRow


@dataclass
class Prediction:
    id: str
    account_id: int
    account: str
    model: str
    model_id: int
    version_id: str
    status: Status
    input: dict[str, Any]
    created_at: datetime
    output: Any = None
    logs: str = ""
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    source: str = "api"
    deployment: str | None = None
    webhook: str | None = None
    webhook_events_filter: list[str] | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    deadline: datetime | None = None
    iterator: bool = False
    stream_token: str | None = None
    hardware: str | None = None
    """The SKU it runs on when a deployment release chose it (for its usage record)."""
    done: asyncio.Event = field(default_factory=asyncio.Event, repr=False, compare=False)
    recorded: "asyncio.Future[None] | None" = field(default=None, repr=False, compare=False)
    """While its first write is on its way (a ``Prefer: wait`` create): done once committed."""
    held: bool = field(default=False, repr=False, compare=False)
    """A request is waiting for it (``Prefer: wait``): that request's log line tells how it
    ended, so its terminal status gets no line of its own."""

    @classmethod
    def from_row(cls, row: PredictionRow, model: str, account: str = "") -> "Prediction":
        p = cls(
            id=row.id,
            account_id=row.account_id,
            account=account,
            model=model,
            model_id=row.model_id,
            version_id=row.version_id,
            status=Status(row.status),
            input=row.input,
            created_at=row.created_at,
            output=row.output,
            logs=row.logs,
            error=row.error,
            metrics=row.metrics,
            source=row.source,
            deployment=row.deployment,
            webhook=row.webhook,
            webhook_events_filter=row.webhook_events_filter,
            started_at=row.started_at,
            completed_at=row.completed_at,
            deadline=row.deadline,
            stream_token=row.stream_token,
        )
        if p.status.is_terminal():
            p.done.set()
        return p

    def mutable_columns(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "output": self.output,
            "logs": self.logs,
            "error": self.error,
            "metrics": self.metrics,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
        }


EventKind = Literal["created", "start", "output", "logs", "completed"]


@dataclass(frozen=True)
class PredictionEvent:
    """Something happened to a prediction.

    ``created``, ``start`` (now processing) and ``completed`` (terminal) are status changes,
    written to the database; ``output`` and ``logs`` carry one chunk in ``data`` and live in
    memory until the prediction completes.
    """

    kind: EventKind
    prediction: Prediction
    data: Any = None
    base_url: str | None = None
    """On ``created``: the base URL the client used (for URLs rendered later)."""


class PredictionListener(Protocol):
    """Webhooks and streams follow predictions through this seam (see PredictionService)."""

    def stage(self, event: PredictionEvent) -> Sequence[object]:
        """Rows to add in the same transaction as a status change (created, start, completed).

        What is staged commits with the status or not at all: a durable outbox."""
        ...

    def publish(self, event: PredictionEvent) -> None:
        """Called after the event is visible (committed, or in memory for output/logs).
        Must not block: hand work to a task the listener owns."""
        ...
