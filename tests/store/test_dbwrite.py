"""Writes as data (``server.dbwrite``): what either executor writes, SQLAlchemy reads back as if
it had written it itself, on SQLite (raw sqlite3) and on PostgreSQL (Core)."""

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Table, select

from server.accounts.tables import AccountRow
from server.db import Database
from server.dbwrite import CoreExecutor, Executor, Insert, SqliteExecutor, Update, executor_for
from server.metering.tables import UsageRow
from server.models.tables import ModelRow, VersionRow
from server.predictions.tables import PredictionRow
from server.settings import Settings
from tests.conftest import make_settings

pytestmark = pytest.mark.anyio

PREDICTIONS: Table = PredictionRow.__table__  # type: ignore[assignment]
USAGE: Table = UsageRow.__table__  # type: ignore[assignment]
NOW = datetime(2026, 11, 27, 8, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
async def store(db_settings: Settings) -> AsyncIterator[tuple[Database, Executor]]:
    async for opened in open_store(db_settings):
        yield opened


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[tuple[Database, Executor]]:
    async for opened in open_store(make_settings(tmp_path)):
        yield opened


async def open_store(db_settings: Settings) -> AsyncIterator[tuple[Database, Executor]]:
    db = Database(db_settings.resolved_database_url(), schema=db_settings.database_schema)
    await db.create()
    async with db.session() as session:
        account = AccountRow(username="ada", name="Ada", type="user", created_at=NOW)
        session.add(account)
        await session.flush()
        model = ModelRow(owner="ada", name="m", account_id=account.id, created_at=NOW)
        session.add(model)
        await session.flush()
        session.add(
            VersionRow(
                id="v" * 64,
                model_id=model.id,
                created_at=NOW,
                status="ready",
                cog_version="0.23.1",
                environment={},
                source_dir="/tmp",
                predict_ref="predict.py:Predictor",
            )
        )
        await session.commit()
    executor = executor_for(db)
    try:
        yield db, executor
    finally:
        await executor.close()
        await db.dispose()


def prediction(pid: str, **values: object) -> Insert:
    return Insert(
        PREDICTIONS,
        {
            "id": pid,
            "account_id": 1,
            "model_id": 1,
            "version_id": "v" * 64,
            "status": "starting",
            "input": {"text": "héllo", "n": [1, 2.5, None]},
            "metrics": {},
            "created_at": NOW,
            **values,
        },
    )


async def test_the_executor_fits_the_database(store: tuple[Database, Executor]) -> None:
    db, executor = store
    assert isinstance(executor, SqliteExecutor if db.is_sqlite else CoreExecutor)


async def test_rows_read_back_as_written(store: tuple[Database, Executor]) -> None:
    db, executor = store
    done = NOW + timedelta(seconds=2)
    await executor.run([prediction("p1"), prediction("p2", webhook="https://example.com/h")])
    await executor.run(
        [
            Update(PREDICTIONS, "p1", {"status": "processing", "started_at": NOW}),
            Update(
                PREDICTIONS,
                "p1",
                {"status": "succeeded", "output": ["a", {"b": 1}], "completed_at": done},
            ),
            Insert(
                USAGE,
                {"record_id": "r1", "prediction_id": "p1", "completed_at": done}
                | {"record": {"x": 1}},
            ),
        ]
    )
    async with db.session() as session:
        p1 = await session.get(PredictionRow, "p1")
        p2 = await session.get(PredictionRow, "p2")
        usage = (await session.scalars(select(UsageRow))).all()
    assert p1 is not None
    assert p2 is not None
    assert (p1.status, p1.output, p1.input) == (
        "succeeded",
        ["a", {"b": 1}],
        {"text": "héllo", "n": [1, 2.5, None]},
    )
    assert (p1.created_at, p1.started_at, p1.completed_at) == (NOW, NOW, done)
    # Columns left out get the model's defaults, as an ORM insert would give them.
    left_out = (p2.logs, p2.source, p2.error, p2.output, p2.completed_at)
    assert left_out == ("", "api", None, None, None)
    assert p2.webhook == "https://example.com/h"
    assert [(u.seq, u.prediction_id, u.record, u.batch_key) for u in usage] == [
        (1, "p1", {"x": 1}, None)
    ]
    # SQL NULL, not JSON null, where the readers ask "IS NULL".
    async with db.session() as session:
        unclaimed = await session.scalar(select(UsageRow.seq).where(UsageRow.batch_key.is_(None)))
    assert unclaimed == 1


async def test_a_failing_batch_writes_nothing(store: tuple[Database, Executor]) -> None:
    db, executor = store
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        await executor.run([prediction("p3"), prediction("p3")])
    await executor.run([prediction("p4")])  # the executor goes on after a failure
    async with db.session() as session:
        ids = (await session.scalars(select(PredictionRow.id))).all()
    assert ids == ["p4"]


async def test_sqlite_waits_for_a_taken_lock_off_the_event_loop(
    sqlite_store: tuple[Database, Executor],
) -> None:
    """A batch that finds SQLite's write lock taken by another connection waits on the writer
    thread (the event loop keeps running) and commits once the lock is free."""
    db, executor = sqlite_store
    assert isinstance(executor, SqliteExecutor)
    other = sqlite3.connect(executor.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        task = asyncio.create_task(executor.run([prediction("p5")]))
        ticks = 0
        while executor.deferred == 0 and ticks < 100:
            await asyncio.sleep(0.01)
            ticks += 1
        assert executor.deferred == 1, "the batch should have gone to the writer thread"
        await asyncio.sleep(0.1)  # the loop runs meanwhile; the batch still waits
        assert not task.done()
    finally:
        other.execute("COMMIT")
        other.close()
    await asyncio.wait_for(task, 5)
    async with db.session() as session:
        assert await session.get(PredictionRow, "p5") is not None


async def test_sqlite_wal_restarts_after_a_reader_held_it(
    sqlite_store: tuple[Database, Executor],
) -> None:
    """Under steady load some reader always holds an old snapshot, and a passive checkpoint
    then never lets the WAL start over: it grew by 20 KB per prediction (51 MB in a 5 s
    benchmark) and every page of it went to disk. The writer thread's checkpoint waits for
    such readers, so the next commit writes the WAL from its start again."""
    _, executor = sqlite_store
    assert isinstance(executor, SqliteExecutor)
    executor.CHECKPOINT_EVERY = 4
    reader = sqlite3.connect(executor.path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM predictions").fetchone()  # holds this snapshot
    for i in range(4):  # the fourth commit hands a checkpoint to the writer thread
        await executor.run([prediction(f"w{i}", logs="x" * 20_000)])
    await asyncio.sleep(0.02)  # the checkpoint waits for the reader (up to 0.1 s)
    reader.execute("COMMIT")
    reader.close()
    await asyncio.get_running_loop().run_in_executor(executor._thread, lambda: None)
    await executor.run([prediction("after", logs="x" * 20_000)])
    probe = sqlite3.connect(executor.path, isolation_level=None)
    _, wal_frames, _ = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    probe.close()
    assert wal_frames <= 12, "the WAL went on growing instead of starting over"
