"""The metering writer against a recording fake sink: batching, retries, exactly-once."""

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.db import Database
from server.metering.records import usage_row
from server.metering.sinks import decode_object
from server.metering.tables import UsageRow
from server.metering.writer import MeteringWriter, backoff
from server.settings import MeteringSettings

T0 = datetime(2026, 11, 27, 10, 59, 58, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.t = T0

    def now(self) -> datetime:
        return self.t


class FlakySink:
    """Stores objects in memory; scripted puts fail before storing ('down') or after ('lost
    ack': stored, but the writer sees an error, as when a gateway dies right after the put)."""

    def __init__(self, script: list[str] | None = None) -> None:
        self.objects: dict[str, bytes] = {}
        self.puts = 0
        self.script = list(script or [])

    async def put(self, key: str, body: bytes) -> None:
        self.puts += 1
        mode = self.script.pop(0) if self.script else "ok"
        if mode == "down":
            raise ConnectionError("sink unreachable")
        self.objects[key] = body
        if mode == "lost-ack":
            raise TimeoutError("no answer")

    async def keys(self) -> list[str]:
        return sorted(self.objects)

    async def get(self, key: str) -> bytes:
        return self.objects[key]

    def describe(self) -> str:
        return "memory"


async def record(db: Database, clock: FakeClock, n: int, settings: MeteringSettings) -> None:
    async with db.session() as session:
        row = usage_row(
            prediction_id=f"p{n:05d}",
            account="admin",
            model="acme/echo",
            version="v" * 64,
            deployment=None,
            hardware="cpu",
            status="succeeded",
            created_at=clock.now() - timedelta(seconds=1),
            started_at=clock.now() - timedelta(seconds=0.5),
            completed_at=clock.now(),
            predict_time=0.5,
            settings=settings,
        )
        session.add(UsageRow(**row.values))
        await session.commit()


def shipped_ids(sink: FlakySink) -> list[str]:
    return [r["prediction_id"] for body in sink.objects.values() for r in decode_object(body)]


@contextlib.asynccontextmanager
async def writer_on_a_fresh_database(
    settings: MeteringSettings, sink: FlakySink
) -> AsyncIterator[tuple[Database, FakeClock, MeteringWriter]]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite+aiosqlite:///{Path(tmp) / 'm.db'}")
        await db.create()
        clock = FakeClock()
        try:
            yield db, clock, MeteringWriter(db, sink, settings, clock)
        finally:
            await db.dispose()


async def scenario(steps: list[tuple[str, int]], batch: int, script: list[str]) -> None:
    settings = MeteringSettings(batch_records=batch, batch_age=5.0)
    sink = FlakySink(script)
    async with writer_on_a_fresh_database(settings, sink) as (db, clock, writer):
        made = 0
        for action, amount in steps:
            if action == "record":
                for _ in range(amount):
                    await record(db, clock, made, settings)
                    made += 1
            elif action == "tick":
                clock.t += timedelta(seconds=amount)
            else:  # a writer step; a failing put leaves the batch claimed for the next step
                with contextlib.suppress(ConnectionError, TimeoutError):
                    await writer.ship_once(force=action == "flush")
        sink.script.clear()
        while await writer.ship_once(force=True):
            pass
        ids = shipped_ids(sink)
        assert sorted(ids) == [f"p{i:05d}" for i in range(made)]  # each exactly once
        assert await writer.pending() == 0
        sequences = [r["sequence"] for b in sink.objects.values() for r in decode_object(b)]
        assert sorted(sequences) == list(range(1, made + 1))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["record", "tick", "ship", "flush"]), st.integers(0, 7)),
        max_size=25,
    ),
    batch=st.integers(1, 6),
    script=st.lists(st.sampled_from(["ok", "down", "lost-ack"]), max_size=10),
)
def test_every_record_lands_exactly_once(
    steps: list[tuple[str, int]], batch: int, script: list[str]
) -> None:
    """Whatever the interleaving of records, clock, batches and sink failures, the objects
    together hold each prediction once, with sequence numbers 1..N."""
    asyncio.run(scenario(steps, batch, script))


def test_batches_close_by_count_and_by_age() -> None:
    async def run() -> None:
        settings = MeteringSettings(batch_records=3, batch_age=5.0)
        sink = FlakySink()
        async with writer_on_a_fresh_database(settings, sink) as (db, clock, writer):
            for i in range(4):
                await record(db, clock, i, settings)
            assert await writer.ship_once() is True  # 3 records: full batch
            assert await writer.ship_once() is False  # 1 young record waits
            clock.t += timedelta(seconds=5)
            assert await writer.ship_once() is True  # now old enough
            assert sorted(sink.objects) == [
                "dt=2026-11-27/hour=10/usage-000000000001-000000000003.jsonl.gz",
                "dt=2026-11-27/hour=10/usage-000000000004-000000000004.jsonl.gz",
            ]

    asyncio.run(run())


def test_a_retried_batch_overwrites_the_same_key() -> None:
    async def run() -> None:
        settings = MeteringSettings(batch_records=2, batch_age=5.0)
        sink = FlakySink(["lost-ack"])
        async with writer_on_a_fresh_database(settings, sink) as (db, clock, writer):
            for i in range(2):
                await record(db, clock, i, settings)
            with contextlib.suppress(TimeoutError):
                await writer.ship_once()
            first = dict(sink.objects)
            await record(db, clock, 2, settings)
            await record(db, clock, 3, settings)
            assert await writer.ship_once() is True  # the claimed batch goes again, same bytes
            assert sink.objects == first | {
                k: sink.objects[k] for k in sink.objects if k not in first
            }
            assert len(sink.objects) == 1
            assert await writer.ship_once() is True
            assert sorted(shipped_ids(sink)) == ["p00000", "p00001", "p00002", "p00003"]

    asyncio.run(run())


def test_backoff_is_capped_exponential() -> None:
    assert 0.4 <= backoff(1) <= 0.6
    assert 3.2 <= backoff(4) <= 4.8
    assert backoff(30) <= 36.0


def test_records_written_while_it_looks_do_not_keep_the_writer_looking() -> None:
    """The writer looks for the oldest record to know when its batch is due; records written
    during that query must not send it straight back to look again (at hundreds of records a
    second one always was, and the writer spun: two queries per turn)."""

    async def run() -> None:
        settings = MeteringSettings(batch_records=1000, batch_age=30.0)
        async with writer_on_a_fresh_database(settings, FlakySink()) as (db, clock, writer):
            await record(db, clock, 0, settings)
            looks = 0
            next_due = writer._next_due

            async def next_due_with_a_record_written_meanwhile() -> float:
                nonlocal looks
                looks += 1
                delay = await next_due()
                writer.notify()  # as a prediction completing during the query does
                return delay

            writer._next_due = next_due_with_a_record_written_meanwhile  # type: ignore[method-assign]
            writer.start()
            await asyncio.sleep(0.3)
            assert looks == 1  # then it sleeps until the oldest record's batch is due
            stopping = asyncio.get_running_loop().time()
            await writer.stop()  # a stop still wakes it at once, and the record is shipped
            assert asyncio.get_running_loop().time() - stopping < 5
            assert writer.shipped_records == 1

    asyncio.run(run())
