"""What a pool keeps per prediction it holds (``Job``) and its counters (``PoolStats``)."""

import asyncio
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PoolStats:
    """Counters since the pool was created (``GET /metrics``)."""

    boots: int = 0
    cold_start_seconds: float = 0.0
    lost: int = 0
    busy_retries: int = 0
    """409s from an instance with a free slot by the pool's count, retried."""
    outcomes: Counter[str] = field(default_factory=Counter)
    recent_cold_starts: deque[float] = field(default_factory=lambda: deque(maxlen=10))


@dataclass
class Job:
    prediction_id: str
    input: dict[str, Any]
    submitted: float
    instance_id: str | None = None
    stop_reason: str | None = None
    """Why the gateway stopped it: canceled, deadline or max_run_time."""
    canceling: bool = False
    """A task is forwarding the cancel to the instance (at most one per job)."""
    started_at: float | None = None
    """When Cog's start event arrived."""
    timers: list[asyncio.TimerHandle] = field(default_factory=list)

    def clear_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()
