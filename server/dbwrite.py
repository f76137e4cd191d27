"""Writes as data, and the two executors that commit a list of them as one transaction.

The hot path (a prediction's status changes, with the usage and webhook rows that commit with
them) describes its writes as ``Insert`` and ``Update`` values and hands them to
``server.predictions.writer.GroupCommit``, which commits many requests' writes at once through
an ``Executor``:

- ``SqliteExecutor`` (the embedded default): a plain ``sqlite3`` connection, one
  ``BEGIN IMMEDIATE … COMMIT`` per batch, statements compiled once per table and column set.
  A batch runs right on the event loop when the write lock is free (WAL with
  ``synchronous=NORMAL``: a commit appends to the WAL and does not wait for the disk; this
  connection never checkpoints, so it never waits for an fsync). When another connection holds
  the lock, the batch goes to a writer thread with its own connection that waits for it; that
  thread also runs the WAL checkpoints. Values go through the bind processors SQLAlchemy uses
  for the same columns (JSON, UTC datetimes), so what SQLAlchemy reads back is what it would
  have written itself. Why: through the async engine every statement cost several hops to
  aiosqlite's thread plus SQLAlchemy's execution machinery, about half of the gateway's CPU
  per prediction, and each hand-off to a thread about 0.2 ms of latency
  (README, "Why a raw SQLite writer").
- ``CoreExecutor`` (PostgreSQL, in-memory SQLite): SQLAlchemy Core on the engine, one
  ``executemany`` per run of like statements.
"""

import asyncio
import contextlib
import functools
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import JSON, Column, Table, bindparam, insert, inspect, update
from sqlalchemy.engine import Dialect

from server.db import Database, UTCDateTime, sqlite_pragmas


@dataclass(frozen=True, slots=True)
class Insert:
    """One row; columns left out get their scalar default (as an ORM insert would)."""

    table: Table
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Update:
    """``UPDATE table SET values WHERE <primary key> = key``."""

    table: Table
    key: Any
    values: dict[str, Any]


Op = Insert | Update


def coalesce(ops: Sequence[Op]) -> list[Op]:
    """The same writes with every ``Update`` of a row already written by an earlier op in
    ``ops`` merged into that earlier op (the update's values win). Inserts are never merged
    away (a second insert of a row must still fail).

    Within one transaction the result is the same rows: a prediction that starts and finishes
    in one batch costs one ``UPDATE`` (or none beside its ``INSERT``) instead of two. Moving a
    later op's values forward past ops on *other* rows is safe here: those ops never read the
    merged columns (no triggers; no unique or foreign key is ever updated). Rows are known by
    their table and primary key; an insert whose key the database assigns is never merged.
    """
    merged: list[Op] = []
    first: dict[tuple[str, Any], int] = {}
    for op in ops:
        row = row_of(op)
        at = first.get(row) if row is not None else None
        if at is None or isinstance(op, Insert):
            if row is not None:
                first[row] = len(merged)
            merged.append(op)
            continue
        earlier = merged[at]
        values = {**earlier.values, **op.values}
        if isinstance(earlier, Insert):
            merged[at] = Insert(earlier.table, values)
        else:
            merged[at] = Update(earlier.table, earlier.key, values)
    return merged


def row_of(op: Op) -> tuple[str, Any] | None:
    """(table, primary key) of the row ``op`` writes; None for an insert the database keys."""
    if isinstance(op, Update):
        return op.table.name, op.key
    pk = _single_key(op.table)
    if pk is None or pk not in op.values:
        return None
    return op.table.name, op.values[pk]


@functools.cache
def _single_key(table: Table) -> str | None:
    """The key of ``table``'s one primary-key column (None for a composite key); once per
    table, as ``coalesce`` asks for every op of every batch."""
    (pk, *more) = table.primary_key.columns
    return None if more else pk.key


def insert_of(obj: object) -> Insert:
    """The ``Insert`` for a mapped object (the attributes that were set, defaults for the rest)."""
    state = inspect(obj)
    table = state.mapper.local_table
    assert isinstance(table, Table)
    values = {
        prop.columns[0].key: state.dict[prop.key]
        for prop in state.mapper.column_attrs
        if prop.key in state.dict
    }
    return Insert(table, values)


def with_defaults(op: Insert) -> dict[str, Any]:
    """The row with every column: scalar defaults and NULL for what was left out, except an
    autoincrement key or a server default (the database fills those)."""
    return {**op.values, **_left_out(op.table, tuple(op.values))}


@functools.cache
def _left_out(table: Table, given: tuple[str, ...]) -> dict[str, Any]:
    """The values of the columns an insert of ``given`` leaves out (once per table and shape:
    the hot path inserts the same few shapes over and over). Read-only: callers copy."""
    values: dict[str, Any] = {}
    for col in table.columns:
        if col.key in given or col.server_default is not None or _autoincrement(col):
            continue
        default = col.default
        if default is None:
            values[col.key] = None
        elif getattr(default, "is_scalar", False):
            values[col.key] = getattr(default, "arg", None)
        else:
            raise ValueError(f"{table.name}.{col.key}: only scalar defaults are supported")
    return values


def _autoincrement(col: Column[Any]) -> bool:
    return bool(col.primary_key and col.table._autoincrement_column is col)


def _runs(ops: Sequence[Op]) -> list[tuple[Op, list[dict[str, Any]]]]:
    """Consecutive ops of the same shape (kind, table, columns), for one executemany each:
    the run's first op and each op's parameters (an insert's whole row; an update's values
    and ``_key``, its primary key)."""
    runs: list[tuple[Op, list[dict[str, Any]]]] = []
    last: tuple[Any, ...] | None = None
    for op in ops:
        shape = (type(op), op.table.name, tuple(op.values))
        params = with_defaults(op) if isinstance(op, Insert) else {**op.values, "_key": op.key}
        if shape == last:
            runs[-1][1].append(params)
        else:
            runs.append((op, [params]))
            last = shape
    return runs


class Executor(Protocol):
    async def run(self, ops: Sequence[Op]) -> None:
        """Execute ``ops`` in order in one transaction; raise (and roll back) if any fails."""
        ...

    def run_now(self, ops: Sequence[Op]) -> bool:
        """``run`` without waiting for anything: False (nothing written) when that is not
        possible (another connection holds the lock; an executor that always waits on I/O)."""
        ...

    async def close(self) -> None: ...


# --- SQLite: raw sqlite3, on the event loop or a writer thread -----------------------------------

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class _Compiled:
    sql: str
    columns: tuple[str, ...]
    processors: tuple[Processor, ...]

    def params(self, values: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(
            [
                values[c] if proc is None else proc(values[c])
                for c, proc in zip(self.columns, self.processors, strict=True)
            ]
        )


def _sqlite_datetime(value: datetime | None) -> str | None:
    """``UTCDateTime``'s bind value on SQLite, as SQLAlchemy would store it (naive UTC,
    ``YYYY-MM-DD HH:MM:SS.ffffff``) in one ``isoformat`` instead of two conversions and a
    ``%`` format with a dict (7 datetimes per prediction: about 4 % of its CPU)."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]


def _fast_json(
    serialize: Callable[[Any], str], general: Callable[[Any], Any]
) -> Callable[[Any], Any]:
    """A JSON column's bind processor: objects and arrays go straight to the serializer;
    everything else (None, ``JSON.NULL``, ``null()``) the way SQLAlchemy's processor takes it."""

    def process(value: Any) -> Any:
        if type(value) is dict or type(value) is list:
            return serialize(value)
        return general(value)

    return process


class SqliteExecutor:
    """Commits batches on the event loop when it can, on a writer thread when it must wait."""

    CHECKPOINT_EVERY = 256  # commits on the loop between two WAL checkpoints (on the thread)
    CHECKPOINT_WAIT_MS = 100  # how long a checkpoint waits for readers (writers wait too)

    def __init__(self, path: str, dialect: Dialect) -> None:
        self.path = path
        self.dialect = dialect
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._inline: sqlite3.Connection | None = None  # the event loop's: never waits
        self._waiting: sqlite3.Connection | None = None  # the thread's: waits for the lock
        self._compiled: dict[tuple[Any, ...], _Compiled] = {}
        self._since_checkpoint = 0
        self.deferred = 0  # batches that found the lock taken and went to the thread

    async def run(self, ops: Sequence[Op]) -> None:
        if not self.run_now(ops):
            self.deferred += 1
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._thread, self._run_waiting, ops)

    def run_now(self, ops: Sequence[Op]) -> bool:
        try:
            self._run(self._inline_connection(), ops)
        except _LockTaken:
            return False
        self._since_checkpoint += 1
        if self._since_checkpoint >= self.CHECKPOINT_EVERY:
            self._since_checkpoint = 0
            self._thread.submit(self._checkpoint)
        return True

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close_waiting)
        self._thread.shutdown(wait=True)
        if self._inline is not None:
            self._inline.close()
            self._inline = None

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are exactly the BEGIN/COMMIT in _run.
        conn = sqlite3.connect(self.path, isolation_level=None)
        sqlite_pragmas(conn, None)
        return conn

    def _inline_connection(self) -> sqlite3.Connection:
        if self._inline is None:
            conn = self._connect()
            conn.execute("PRAGMA busy_timeout=0")  # a taken lock -> the thread, not a wait
            conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints (fsync) -> the thread
            self._inline = conn
        return self._inline

    # The rest runs on the writer thread.

    def _waiting_connection(self) -> sqlite3.Connection:
        if self._waiting is None:
            self._waiting = self._connect()
        return self._waiting

    def _run_waiting(self, ops: Sequence[Op]) -> None:
        self._run(self._waiting_connection(), ops)

    def _checkpoint(self) -> None:
        # RESTART, not PASSIVE: under steady load some reader always holds an old snapshot,
        # a passive checkpoint never completes, and the WAL grows without end (51 MB in a 5 s
        # benchmark, all of it written back to disk). This one waits for those readers (new
        # commits meanwhile go to this thread), so the next commit starts the WAL over. It
        # waits at most CHECKPOINT_WAIT_MS; what it could not finish, the next one does.
        conn = self._waiting_connection()
        (busy_timeout,) = conn.execute("PRAGMA busy_timeout").fetchone()
        conn.execute(f"PRAGMA busy_timeout={self.CHECKPOINT_WAIT_MS}")
        try:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(RESTART)")
        finally:
            conn.execute(f"PRAGMA busy_timeout={int(busy_timeout)}")

    def _close_waiting(self) -> None:
        if self._waiting is not None:
            self._waiting.close()
            self._waiting = None

    # Either connection.

    def _run(self, conn: sqlite3.Connection, ops: Sequence[Op]) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise _LockTaken() from exc
            raise
        try:
            for first, rows in _runs(ops):
                if isinstance(first, Insert):
                    compiled = self._insert(first.table, tuple(rows[0]))
                else:
                    compiled = self._update(first.table, tuple(first.values))
                params = [compiled.params(row) for row in rows]
                if len(params) == 1:
                    conn.execute(compiled.sql, params[0])
                else:
                    conn.executemany(compiled.sql, params)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _processor(self, table: Table, column: str) -> Processor:
        col_type = table.columns[column].type
        if isinstance(col_type, UTCDateTime):
            return _sqlite_datetime
        general = col_type.dialect_impl(self.dialect).bind_processor(self.dialect)
        serialize = getattr(self.dialect, "_json_serializer", None)
        if isinstance(col_type, JSON) and general is not None and serialize is not None:
            return _fast_json(serialize, general)
        return general

    def _insert(self, table: Table, columns: tuple[str, ...]) -> _Compiled:
        key = ("insert", table.name, columns)
        found = self._compiled.get(key)
        if found is None:
            quote = self.dialect.identifier_preparer.quote
            names = ", ".join(quote(table.columns[c].name) for c in columns)
            marks = ", ".join("?" for _ in columns)
            sql = f"INSERT INTO {quote(table.name)} ({names}) VALUES ({marks})"
            processors = tuple(self._processor(table, c) for c in columns)
            found = self._compiled[key] = _Compiled(sql, columns, processors)
        return found

    def _update(self, table: Table, columns: tuple[str, ...]) -> _Compiled:
        key = ("update", table.name, columns)
        found = self._compiled.get(key)
        if found is None:
            quote = self.dialect.identifier_preparer.quote
            (pk,) = table.primary_key.columns
            sets = ", ".join(f"{quote(table.columns[c].name)} = ?" for c in columns)
            sql = f"UPDATE {quote(table.name)} SET {sets} WHERE {quote(pk.name)} = ?"
            processors = (
                *(self._processor(table, c) for c in columns),
                self._processor(table, pk.key),
            )
            found = self._compiled[key] = _Compiled(sql, (*columns, "_key"), processors)
        return found


class _LockTaken(Exception):
    """Another connection holds SQLite's write lock (only the loop's connection says so)."""


# --- everything else: SQLAlchemy Core ------------------------------------------------------------


class CoreExecutor:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def run(self, ops: Sequence[Op]) -> None:
        async with self.db.engine.begin() as conn:
            for first, rows in _runs(ops):
                if isinstance(first, Insert):
                    await conn.execute(insert(first.table), rows)
                else:
                    (pk,) = first.table.primary_key.columns
                    await conn.execute(update(first.table).where(pk == bindparam("_key")), rows)

    def run_now(self, ops: Sequence[Op]) -> bool:
        return False  # every statement awaits the engine

    async def close(self) -> None:
        return None


def executor_for(db: Database) -> Executor:
    """Raw ``sqlite3`` for a SQLite database file; SQLAlchemy Core otherwise."""
    path = db.engine.url.database
    if db.is_sqlite and path and path != ":memory:" and not path.startswith("file:"):
        return SqliteExecutor(path, db.engine.dialect)
    return CoreExecutor(db)
