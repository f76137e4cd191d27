"""Group commit: the prediction writes of many requests in one transaction.

Every status change is still written before anyone is told about it (``write`` returns once
its transaction has committed), but writes that arrive while a commit is in progress go
together in the next one. Under load that turns N transactions into one; with a single
writer there is also no lock contention between connections (SQLite's busy waits were
the long tail of ``Prefer: wait`` at 16 clients). ``write_later`` queues a write nobody waits
for (``processing``), in order with the writes after it; it does not start a commit of its own
but rides along with the next write, or commits by itself ``LATER_S`` after it was queued.
Before a batch goes to the executor, ops on the same row are merged (``dbwrite.coalesce``): a
prediction that starts and finishes within one batch is one ``UPDATE``, not two.

A write is a list of ``server.dbwrite`` operations (data, not code), so a batch goes to the
executor in one piece: on SQLite, one transaction on the event loop's own connection.
If a batch fails, each write in it is retried alone, so one bad write fails only its caller.
The task ``prediction-writer`` is started on first use and flushed by ``stop()`` at shutdown,
before the database closes.

A caller that expects no other write to share its transaction (the only prediction in flight)
passes ``alone=True``: when no commit is under way and the executor can commit without waiting
(SQLite, its write lock free), the queued writes and its own are committed right in its call,
without the hand-off to the task and back (two turns of the event loop). Nothing is awaited
there, so a caller cancelled meanwhile cannot leave a commit half done; a batch that fails or
cannot start goes to the task as usual.
"""

import asyncio
import contextlib
from collections.abc import Sequence

import structlog

from server.dbwrite import Executor, Op, Update, coalesce, row_of
from server.logging import detached_task

log = structlog.get_logger("server.predictions.writer")

Work = Sequence[Op]
Item = tuple[Work, asyncio.Future[None] | None]

LATER_S = 0.005
"""How long a ``write_later`` waits for another write to ride along with (at most)."""


def _merged(batch: list[Item]) -> list[Op]:
    """A batch's ops, in order, with the updates of one row merged (``coalesce``)."""
    return coalesce([op for work, _ in batch for op in work])


class GroupCommit:
    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self._items: list[Item] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._timer: asyncio.TimerHandle | None = None
        self._committing = False  # the task's commit is under way (it may be waiting)

    async def write(self, work: Work, *, alone: bool = False) -> None:
        """Write ``work`` in a transaction and return once it has committed. ``alone``: the
        caller expects no other write to share it, so it may commit right here (after the
        queued writes, in the same transaction)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue((work, future))
        if not (alone and self._commit_now()):
            self._wake.set()
        await future

    def _commit_now(self) -> bool:
        """Commit what is queued right here if nothing is under way and the executor need not
        wait; False leaves it queued (a failed batch too: the task retries it write by write)."""
        if self._committing or self._stopping:
            return False
        batch = self._items
        try:
            if not self.executor.run_now(_merged(batch)):
                return False
        except Exception:  # rolled back; the task finds out which write it was
            return False
        self._items = []
        self._cancel_timer()
        for item in batch:
            self._succeeded(item)
        return True

    def write_soon(self, work: Work) -> asyncio.Future[None]:
        """``write_later`` with a future that is done once ``work`` has committed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue_later((work, future))
        return future

    def write_later(self, work: Work) -> None:
        """Queue ``work`` without waiting; it commits with the next write (in order, before
        it), or alone after ``LATER_S``."""
        self._enqueue_later((work, None))

    def _enqueue_later(self, item: Item) -> None:
        self._enqueue(item)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(LATER_S, self._wake.set)

    def _enqueue(self, item: Item) -> None:
        if self._task is None or self._task.done():
            if self._stopping:
                raise RuntimeError("the prediction writer has stopped")
            self._task = detached_task(self._run(), name="prediction-writer")
        self._items.append(item)

    async def _run(self) -> None:
        while self._items or not self._stopping:  # stopping: commit what is left, then end
            if not self._stopping:
                await self._wake.wait()
            self._wake.clear()
            self._cancel_timer()
            batch, self._items = self._items, []
            if batch:
                self._committing = True
                try:
                    await self._commit(batch)
                finally:
                    self._committing = False

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _commit(self, batch: list[Item]) -> None:
        try:
            await self.executor.run(_merged(batch))
        except Exception as exc:
            if len(batch) == 1:
                self._failed(batch[0], exc)
                return
            # Find the bad one: each write alone, in order. A write that updates a row whose
            # insert just failed fails too (the row is not there; what commits with the update,
            # a usage record say, must not land without it).
            lost: set[tuple[str, object]] = set()
            for item in batch:
                work, _ = item
                if any(isinstance(op, Update) and row_of(op) in lost for op in work):
                    self._failed(item, RuntimeError("the row it updates was not written"))
                    continue
                try:
                    await self.executor.run(coalesce(work))
                except Exception as alone:
                    self._failed(item, alone)
                    lost.update(row for op in work if (row := row_of(op)) is not None)
                else:
                    self._succeeded(item)
            return
        for item in batch:
            self._succeeded(item)

    @staticmethod
    def _succeeded(item: Item) -> None:
        _, future = item
        if future is not None and not future.done():
            future.set_result(None)

    @staticmethod
    def _failed(item: Item, exc: Exception) -> None:
        _, future = item
        if future is None:
            log.error("prediction_write_failed", error=repr(exc))
        elif not future.done():
            future.set_exception(exc)  # the caller sees what went wrong

    async def stop(self) -> None:
        """Commit what is queued, end the task, close the executor."""
        self._stopping = True
        if self._task is not None:
            self._wake.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.executor.close()
