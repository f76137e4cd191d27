"""The metering writer: ships usage records from the outbox to the sink, exactly once.

A batch is claimed (its rows get the object key) in one transaction, then put, then its rows
are deleted (the sink holds them now). Keys are named from the batch's first and last sequence
numbers, so after a crash or a failed put the same rows go to the same key again: a retry
overwrites, never duplicates.
Batches close at ``batch_records`` records or when the oldest record is ``batch_age`` old.
A failing sink is retried with capped exponential backoff while records wait in the outbox;
``stop()`` flushes what is left.
"""

import asyncio
import contextlib
import random
from datetime import datetime

import structlog
from sqlalchemy import delete, func, select, update

from server.clock import Clock
from server.db import Database
from server.metering.sinks import Sink, encode_batch, key_range, object_key
from server.metering.tables import UsageRow
from server.settings import MeteringSettings

log = structlog.get_logger("server.metering.writer")

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
FLUSH_TIMEOUT_S = 30.0  # how long stop() keeps trying to ship what is left
IDLE_WAIT_S = 60.0  # with nothing pending, look again after this long (or when woken)


def backoff(attempt: int, *, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S) -> float:
    """Delay before retry ``attempt`` (1, 2, …): base * 2^(attempt-1), capped, +-20 % jitter."""
    delay = min(cap, base * 2 ** max(attempt - 1, 0))
    return float(delay * random.uniform(0.8, 1.2))


class MeteringWriter:
    def __init__(self, db: Database, sink: Sink, settings: MeteringSettings, clock: Clock) -> None:
        self.db = db
        self.sink = sink
        self.settings = settings
        self.clock = clock
        self.shipped_records = 0
        self.failures = 0
        self._wake = asyncio.Event()  # set by notify() and stop()
        self._idle = True  # sleeping with no record pending
        self._recorded = 0  # records notified since the writer last looked
        # Whether a claimed batch may be waiting to be shipped (after a start, a failed put,
        # or a quiet spell); while the writer ships its own claims one by one, there is none.
        self._maybe_claimed = True
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def notify(self) -> None:
        """A record was written. Wake the writer only when that can change what it does: it
        sleeps with nothing pending (the record starts the age clock), or a full batch may be
        ready. Otherwise it is already sleeping until the oldest record's batch is due."""
        self._recorded += 1
        if self._idle or self._recorded >= self.settings.batch_records:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="metering-writer")

    async def stop(self) -> None:
        """Close the open batch and ship everything left (bounded by FLUSH_TIMEOUT_S)."""
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, FLUSH_TIMEOUT_S)
            except TimeoutError:
                log.warning("metering_flush_incomplete", pending=await self.pending())
            self._task = None

    async def pending(self) -> int:
        async with self.db.session() as session:
            count = await session.scalar(select(func.count()).select_from(UsageRow))
        return int(count or 0)

    async def _ensure_bucket(self) -> None:
        """Create the bucket if the sink has one and it is missing (a store that came back
        empty, a first start); best effort, the puts report real failures."""
        ensure = getattr(self.sink, "ensure_bucket", None)
        if ensure is not None:
            try:
                await ensure()
            except Exception as exc:
                log.warning("metering_bucket_check_failed", error=repr(exc)[:300])

    async def _run(self) -> None:
        await self._ensure_bucket()
        attempt = 0
        while True:
            # Cleared before looking for work, so a notify() that lands meanwhile is not lost.
            self._wake.clear()
            self._recorded = 0
            stopping = self._stop.is_set()
            try:
                shipped = await self.ship_once(force=stopping)
                attempt = 0
            except Exception as exc:
                attempt += 1
                self.failures += 1
                delay = backoff(attempt)
                log.warning(
                    "metering_put_failed", error=repr(exc)[:300], attempt=attempt, retry_in=delay
                )
                if stopping and attempt >= 3:
                    return
                await _wait(self._stop, delay)  # new records do not cut a backoff short
                await self._ensure_bucket()
                continue
            if shipped:
                continue
            if stopping:
                return
            self._idle = True  # before the query: a record written meanwhile wakes us
            delay = await self._next_due()
            self._idle = delay >= IDLE_WAIT_S
            full = self._recorded >= self.settings.batch_records
            if not (self._idle or full or self._stop.is_set()):
                # Records written during the query woke us, but the oldest one it found decides
                # when the next batch is due: without this, at hundreds of records a second
                # some always landed in that query and the writer looked again at once, and
                # again (two queries per turn, ~4 % of the gateway's CPU at 16 clients).
                self._wake.clear()
            if self._idle:  # look for batches another run of the gateway claimed, now and then
                self._maybe_claimed = True
            await _wait(self._wake, delay)
            self._idle = False

    async def _next_due(self) -> float:
        """Seconds until the oldest unclaimed record makes a batch due (idle: a while)."""
        async with self.db.session() as session:  # the first by sequence, as _claim() ages it
            oldest = await session.scalar(
                select(UsageRow.completed_at)
                .where(UsageRow.batch_key.is_(None))
                .order_by(UsageRow.seq)
                .limit(1)
            )
        if oldest is None:
            return IDLE_WAIT_S
        age = (self.clock.now() - oldest).total_seconds()
        return max(0.0, self.settings.batch_age - age)

    async def ship_once(self, *, force: bool = False) -> bool:
        """Ship one batch: an already claimed one first (crash recovery), else a due one."""
        key = await self._claimed_batch() if self._maybe_claimed else None
        key = key or await self._claim(force=force)
        if key is None:
            self._maybe_claimed = False
            return False
        self._maybe_claimed = True  # until it is marked shipped
        first, last = key_range(key)
        in_batch = (UsageRow.seq.between(first, last), UsageRow.batch_key == key)
        async with self.db.session() as session:  # columns, not ORM objects: 500 at a time
            rows = (
                await session.execute(
                    select(UsageRow.seq, UsageRow.record).where(*in_batch).order_by(UsageRow.seq)
                )
            ).all()
        records = [{**record, "sequence": seq} for seq, record in rows]
        await self.sink.put(key, encode_batch(records))
        async with self.db.session() as session:  # in the sink now: off the outbox
            await session.execute(delete(UsageRow).where(*in_batch))
            await session.commit()
        self._maybe_claimed = False
        self.shipped_records += len(records)
        log.info("metering_batch_shipped", key=key, records=len(records))
        return True

    async def _claimed_batch(self) -> str | None:
        async with self.db.session() as session:
            key: str | None = await session.scalar(
                select(UsageRow.batch_key)
                .where(UsageRow.batch_key.is_not(None))
                .order_by(UsageRow.seq)
                .limit(1)
            )
        return key

    async def _claim(self, *, force: bool) -> str | None:
        """Give the next due batch of unclaimed records its object key, atomically."""
        limit = self.settings.batch_records
        async with self.db.session() as session:
            stmt = (
                select(UsageRow.seq, UsageRow.completed_at)
                .where(UsageRow.batch_key.is_(None))
                .order_by(UsageRow.seq)
                .limit(limit)
            )
            if not self.db.is_sqlite:
                stmt = stmt.with_for_update(skip_locked=True)
            rows = (await session.execute(stmt)).all()
            if not rows or not (force or len(rows) >= limit or self._aged(rows[0][1])):
                return None
            first, last = rows[0][0], rows[-1][0]
            key = object_key(first, last, rows[0][1])
            await session.execute(
                update(UsageRow)
                .where(UsageRow.seq.between(first, last), UsageRow.batch_key.is_(None))
                .values(batch_key=key)
            )
            await session.commit()
        return key

    def _aged(self, completed_at: datetime) -> bool:
        return (self.clock.now() - completed_at).total_seconds() >= self.settings.batch_age


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Wait until ``event`` is set or ``seconds`` pass, whichever is first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
