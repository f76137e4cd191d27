"""Group commit (``server.predictions.writer``) and merging a batch's ops (``dbwrite.coalesce``)."""

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, String, Table

from server.dbwrite import Insert, Op, Update, coalesce
from server.predictions import writer
from server.predictions.writer import GroupCommit

META = MetaData()
ROWS = Table(
    "rows",
    META,
    Column("id", String, primary_key=True),
    *(Column(name, Integer) for name in "abc"),
)
LOG = Table("log", META, Column("seq", Integer, primary_key=True), Column("a", Integer))

KEYS = st.sampled_from(["k1", "k2", "k3"])
VALUES = st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(0, 9), min_size=1)
OPS: st.SearchStrategy[Op] = st.one_of(
    st.builds(lambda k, v: Insert(ROWS, {"id": k, **v}), KEYS, VALUES),
    st.builds(lambda k, v: Update(ROWS, k, v), KEYS, VALUES),
    st.builds(lambda v: Insert(LOG, {"a": v}), st.integers(0, 9)),
)


class DuplicateRow(Exception):
    pass


def apply(ops: Sequence[Op]) -> tuple[dict[str, dict[str, Any]], list[int]]:
    """A model of the database: rows by key (an insert of an existing key fails, an update of
    a missing one changes nothing) and the autoincrement log in order."""
    rows: dict[str, dict[str, Any]] = {}
    log: list[int] = []
    for op in ops:
        if op.table is LOG:
            log.append(op.values["a"])
        elif isinstance(op, Insert):
            key = op.values["id"]
            if key in rows:
                raise DuplicateRow(key)
            rows[key] = {"a": None, "b": None, "c": None, **op.values}
        elif op.key in rows:
            rows[op.key].update(op.values)
    return rows, log


def outcome(ops: Sequence[Op]) -> object:
    try:
        return apply(ops)
    except DuplicateRow:
        return "fails"


@given(st.lists(OPS, max_size=12))
def test_coalesced_ops_leave_the_same_rows(ops: list[Op]) -> None:
    merged = coalesce(ops)
    assert outcome(merged) == outcome(ops)
    assert len(merged) <= len(ops)
    assert sum(isinstance(op, Insert) for op in merged) == sum(isinstance(op, Insert) for op in ops)


def test_a_prediction_that_starts_and_finishes_in_one_batch_is_one_update() -> None:
    ops: list[Op] = [
        Update(ROWS, "k1", {"a": 1, "b": 1}),  # processing
        Insert(LOG, {"a": 7}),
        Update(ROWS, "k1", {"a": 2, "c": 3}),  # terminal
        Insert(LOG, {"a": 8}),  # its usage record
    ]
    assert coalesce(ops) == [
        Update(ROWS, "k1", {"a": 2, "b": 1, "c": 3}),
        Insert(LOG, {"a": 7}),
        Insert(LOG, {"a": 8}),
    ]
    created: list[Op] = [Insert(ROWS, {"id": "k2", "a": 0}), Update(ROWS, "k2", {"a": 5})]
    assert coalesce(created) == [Insert(ROWS, {"id": "k2", "a": 5})]


class RecordingExecutor:
    def __init__(self) -> None:
        self.batches: list[list[Op]] = []
        self.fail_on: int | None = None  # a value of "a" that makes a batch fail
        self.contexts: list[dict[str, Any]] = []  # structlog's context vars of each batch
        self.can_run_now = True  # False: as if another connection held the write lock

    async def run(self, ops: Sequence[Op]) -> None:
        self.contexts.append(structlog.contextvars.get_contextvars())
        if any(op.values.get("a") == self.fail_on for op in ops):
            raise RuntimeError("constraint failed")
        self.batches.append(list(ops))

    def run_now(self, ops: Sequence[Op]) -> bool:
        if not self.can_run_now:
            return False
        if any(op.values.get("a") == self.fail_on for op in ops):
            raise RuntimeError("constraint failed")
        self.batches.append(list(ops))
        return True

    async def close(self) -> None:
        return None


@pytest.mark.anyio
async def test_a_later_write_rides_along_with_the_next_one() -> None:
    executor = RecordingExecutor()
    writes = GroupCommit(executor)
    writes.write_later([Update(ROWS, "k1", {"a": 1})])
    await writes.write([Update(ROWS, "k1", {"b": 2}), Insert(LOG, {"a": 3})])
    assert executor.batches == [[Update(ROWS, "k1", {"a": 1, "b": 2}), Insert(LOG, {"a": 3})]]
    await writes.stop()


@pytest.mark.anyio
async def test_the_writer_does_not_run_in_the_context_of_the_request_that_started_it() -> None:
    executor = RecordingExecutor()
    writes = GroupCommit(executor)
    with structlog.contextvars.bound_contextvars(request_id="r1"):  # the first write starts it
        await writes.write([Insert(LOG, {"a": 1})])
    with structlog.contextvars.bound_contextvars(request_id="r2"):
        await writes.write([Insert(LOG, {"a": 2})])
    assert executor.contexts == [{}, {}]  # its log lines carry neither request's id
    await writes.stop()


@pytest.mark.anyio
async def test_a_write_alone_commits_in_its_own_call_with_what_is_queued() -> None:
    """No hand-off to the writer task: the call finishes without once yielding to the loop."""
    executor = RecordingExecutor()
    writes = GroupCommit(executor)
    writes.write_later([Update(ROWS, "k1", {"a": 1})])
    call = writes.write([Update(ROWS, "k1", {"b": 2}), Insert(LOG, {"a": 3})], alone=True)
    with pytest.raises(StopIteration):
        call.send(None)  # ran to the end at once
    assert executor.batches == [[Update(ROWS, "k1", {"a": 1, "b": 2}), Insert(LOG, {"a": 3})]]
    await asyncio.sleep(writer.LATER_S * 4)  # the later write's timer is gone with it
    assert len(executor.batches) == 1
    executor.fail_on = 13  # a failed batch goes to the task, which fails only its writer
    with pytest.raises(RuntimeError):
        await writes.write([Insert(LOG, {"a": 13})], alone=True)
    await writes.write([Insert(LOG, {"a": 5})], alone=True)  # nothing of the failed one left
    assert executor.batches[-1] == [Insert(LOG, {"a": 5})]
    executor.can_run_now = False  # the lock is taken: the task commits it, waiting
    await writes.write([Insert(LOG, {"a": 4})], alone=True)
    assert executor.batches[-1] == [Insert(LOG, {"a": 4})]
    await writes.stop()


class GatedExecutor(RecordingExecutor):
    """Its first batch waits for ``gate``: a commit under way."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def run(self, ops: Sequence[Op]) -> None:
        if not self.batches and not self.gate.is_set():
            self.waiting.set()
            await self.gate.wait()
        await super().run(ops)


@pytest.mark.anyio
async def test_a_write_alone_waits_its_turn_behind_a_commit_under_way() -> None:
    executor = GatedExecutor()
    writes = GroupCommit(executor)
    first = asyncio.ensure_future(writes.write([Insert(LOG, {"a": 1})]))
    await executor.waiting.wait()
    second = asyncio.ensure_future(writes.write([Insert(LOG, {"a": 2})], alone=True))
    await asyncio.sleep(0)
    assert not second.done()
    executor.gate.set()
    await asyncio.gather(first, second)
    assert executor.batches == [[Insert(LOG, {"a": 1})], [Insert(LOG, {"a": 2})]]
    await writes.stop()


@pytest.mark.anyio
async def test_a_later_write_alone_commits_after_a_short_while() -> None:
    executor = RecordingExecutor()
    writes = GroupCommit(executor)
    writes.write_later([Update(ROWS, "k1", {"a": 1})])
    await asyncio.sleep(0)
    assert executor.batches == []  # not at once: it waits for company
    await asyncio.sleep(writer.LATER_S * 4)
    assert executor.batches == [[Update(ROWS, "k1", {"a": 1})]]
    await writes.stop()


@pytest.mark.anyio
async def test_stop_commits_what_is_queued() -> None:
    executor = RecordingExecutor()
    writes = GroupCommit(executor)
    await writes.write([Insert(LOG, {"a": 1})])
    writes.write_later([Update(ROWS, "k1", {"a": 2})])
    await asyncio.wait_for(writes.stop(), 1)
    assert executor.batches == [[Insert(LOG, {"a": 1})], [Update(ROWS, "k1", {"a": 2})]]
    with pytest.raises(RuntimeError):
        await writes.write([Insert(LOG, {"a": 3})])


@pytest.mark.anyio
async def test_one_bad_write_fails_only_its_caller() -> None:
    executor = RecordingExecutor()
    executor.fail_on = 13
    writes = GroupCommit(executor)
    results = await asyncio.gather(
        writes.write([Insert(LOG, {"a": 1})]),
        writes.write([Insert(LOG, {"a": 13})]),
        writes.write([Insert(LOG, {"a": 2})]),
        return_exceptions=True,
    )
    assert results[0] is None
    assert results[2] is None
    assert isinstance(results[1], RuntimeError)
    assert [op.values["a"] for batch in executor.batches for op in batch] == [1, 2]
    await writes.stop()


@pytest.mark.anyio
async def test_an_update_of_a_row_whose_insert_failed_fails_too() -> None:
    """Retried alone after a failed batch: what commits with the update (a usage record) must
    not land without the row."""
    executor = RecordingExecutor()
    executor.fail_on = 13
    writes = GroupCommit(executor)
    inserted = writes.write_soon([Insert(ROWS, {"id": "k1", "a": 13})])
    other = writes.write_soon([Insert(ROWS, {"id": "k2", "a": 1})])
    finished = writes.write([Update(ROWS, "k1", {"b": 2}), Insert(LOG, {"a": 5})])
    results = await asyncio.gather(inserted, other, finished, return_exceptions=True)
    assert isinstance(results[0], RuntimeError)
    assert results[1] is None
    assert isinstance(results[2], RuntimeError)
    assert executor.batches == [[Insert(ROWS, {"id": "k2", "a": 1})]]
    await writes.stop()
