"""Predictions: create, read, list, cancel, and ``_transition`` — the only code that changes status.

The gateway owns all prediction state. While a prediction runs on this gateway its state lives
in memory (``self._live``), so log and output events cost no database write; every status
change is written through at once, so a restart finds each accepted prediction where it was.
"""

import asyncio
import contextlib
import functools
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import Table, select

from server import errors, ids
from server.accounts.service import Account
from server.accounts.tables import AccountRow
from server.clock import Clock
from server.db import Database
from server.dbwrite import Insert, Op, Update, executor_for, insert_of
from server.metering.records import usage_row
from server.models.service import ModelService, VersionInfo
from server.pagination import Page, paginate
from server.predictions.prediction import (
    EventKind,
    Prediction,
    PredictionEvent,
    PredictionListener,
)
from server.predictions.status import Status, can_transition
from server.predictions.tables import PredictionRow
from server.predictions.validation import InputValidator
from server.predictions.writer import GroupCommit
from server.runtime.cog_client import CogResult
from server.scheduler.placement import Placement
from server.scheduler.scheduler import Scheduler
from server.settings import MeteringSettings

log = structlog.get_logger("server.predictions")

PREDICTIONS: Table = PredictionRow.__table__  # type: ignore[assignment]
INTERRUPTED = "The prediction was interrupted: the gateway restarted while it was running."

OutputStore = Callable[[int, str, Any], Awaitable[Any]]
"""(account id, prediction id, output) -> the output with inlined files stored and replaced
by their URLs (``server.files.rehost``)."""

InputResolver = Callable[[int, VersionInfo, dict[str, Any], str | None], Awaitable[dict[str, Any]]]
"""(account id, version, validated input, request base URL) -> the input to dispatch, with file
URLs made fetchable by the instance (``server.files.inputs``); raises InputValidationFailed."""


@dataclass(frozen=True)
class CreateRequest:
    input: dict[str, Any]
    webhook: str | None = None
    webhook_events_filter: list[str] | None = None
    deployment: str | None = None
    base_url: str | None = None
    """The base URL the client used; listeners render URLs with it later."""
    placement: Placement | None = None
    """A deployment's pool (hardware, instance bounds); None: the version's own pool."""
    cancel_after: float | None = None
    """Seconds after creation when the prediction is canceled if not finished (Cancel-After)."""
    hold: bool = False
    """The caller answers only once it finishes or ``wait`` gives up (``Prefer: wait``)."""


class PredictionService:
    """Owns prediction state; implements ``server.scheduler.events.PredictionEvents``."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        models: ModelService,
        *,
        metering: MeteringSettings | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.models = models
        self.metering = metering
        self.on_usage_recorded: Callable[[], None] = lambda: None
        self.resolve_inputs: InputResolver | None = None
        self.store_outputs: OutputStore | None = None
        self.placement_of: Callable[[str, str], Awaitable[Placement | None]] | None = None
        """(deployment, version id) -> that deployment's pool, for predictions resumed at start."""
        self.scheduler: Scheduler | None = None
        self._live: dict[str, Prediction] = {}
        self._validators: dict[str, InputValidator] = {}
        self.listeners: list[PredictionListener] = []
        self.writes = GroupCommit(executor_for(db))

    def attach(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def listen(self, listener: PredictionListener) -> None:
        self.listeners.append(listener)

    def _staged(self, event: PredictionEvent) -> list[object]:
        return [row for listener in self.listeners for row in listener.stage(event)]

    def _publish(self, event: PredictionEvent) -> None:
        for listener in self.listeners:
            try:
                listener.publish(event)
            except Exception:
                log.exception("listener_failed", kind=event.kind, prediction_id=event.prediction.id)

    def _dispatch(
        self,
        version: VersionInfo,
        p: Prediction,
        input: dict[str, Any],
        placement: Placement | None = None,
    ) -> None:
        assert self.scheduler is not None, "attach() a scheduler first"
        deadline = None
        if p.deadline is not None:
            left = (p.deadline - self.clock.now()).total_seconds()
            deadline = asyncio.get_running_loop().time() + left
        self.scheduler.submit(version, p.id, input, placement=placement, deadline=deadline)

    def validator(self, version: VersionInfo) -> InputValidator:
        found = self._validators.get(version.id)
        if found is None:
            found = self._validators[version.id] = InputValidator(version.openapi_schema)
        return found

    # -- the API's operations ---------------------------------------------------------------

    async def create(
        self, account: Account, version: VersionInfo, request: CreateRequest
    ) -> Prediction:
        clean = self.validator(version).clean(request.input)
        assert self.scheduler is not None, "attach() a scheduler first"
        self.scheduler.admit(version, request.placement)
        if self.resolve_inputs is not None:
            clean = await self.resolve_inputs(account.id, version, clean, request.base_url)
        now = self.clock.now()
        p = Prediction(
            id=ids.prediction_id(),
            account_id=account.id,
            account=account.username,
            model=version.model,
            model_id=version.model_id,
            version_id=version.id,
            status=Status.STARTING,
            input=request.input,
            created_at=now,
            deadline=(
                now + timedelta(seconds=request.cancel_after)
                if request.cancel_after is not None
                else None
            ),
            deployment=request.deployment,
            webhook=request.webhook,
            webhook_events_filter=request.webhook_events_filter,
            iterator=version.output_is_iterator,
            output=[] if version.output_is_iterator else None,
            stream_token=secrets.token_urlsafe(18),
            hardware=request.placement.hardware if request.placement else None,
        )
        created = PredictionEvent("created", p, base_url=request.base_url)

        row = Insert(
            PREDICTIONS,
            {
                "id": p.id,
                "account_id": p.account_id,
                "model_id": p.model_id,
                "version_id": p.version_id,
                "deployment": p.deployment,
                "input": p.input,
                "source": p.source,
                "webhook": p.webhook,
                "webhook_events_filter": p.webhook_events_filter,
                "created_at": p.created_at,
                "deadline": p.deadline,
                "stream_token": p.stream_token,
                **p.mutable_columns(),
            },
        )
        work = [row, *map(insert_of, self._staged(created))]
        p.held = request.hold
        if request.hold and not p.webhook:
            # Nobody learns of it before wait() answers, and wait() answers only once the row
            # is written, so the row rides along with a later write (often the prediction's
            # own terminal one: one INSERT instead of an INSERT and two UPDATEs) and Cog starts
            # at once. With a webhook the row (and the webhook's) commits first, as before.
            p.recorded = self.writes.write_soon(work)
            p.recorded.add_done_callback(functools.partial(self._not_recorded, p))
        else:
            await self.writes.write(work)
        self._live[p.id] = p
        self._publish(created)
        self._dispatch(version, p, clean, request.placement)
        # The request's own log line (http_request) names the prediction; this one is detail.
        structlog.contextvars.bind_contextvars(prediction_id=p.id)
        log.debug("prediction_created", prediction_id=p.id, version_id=version.id[:12])
        return p

    async def get(self, account: Account, prediction_id: str) -> Prediction:
        p = self._live.get(prediction_id)
        if p is None:
            p = await self._load(prediction_id)
        if p is None or p.account_id != account.id:
            raise errors.NotFound("Prediction not found.")
        await self._settled(p)
        return p

    @staticmethod
    async def _settled(p: Prediction) -> None:
        """A terminal status is shown only once it is written (with its usage record):
        ``_transition`` sets ``done`` after the commit."""
        if p.status.is_terminal() and not p.done.is_set():
            await p.done.wait()

    async def by_stream_token(self, prediction_id: str, token: str) -> Prediction:
        """The prediction a ``urls.stream`` capability names; 404 for a wrong token."""
        p = self._live.get(prediction_id) or await self._load(prediction_id)
        if p is None or p.stream_token is None:
            raise errors.NotFound("Prediction not found.")
        if not hmac.compare_digest(p.stream_token.encode(), token.encode()):
            raise errors.NotFound("Prediction not found.")
        return p

    async def _load(self, prediction_id: str) -> Prediction | None:
        async with self.db.session() as session:
            row = await session.get(PredictionRow, prediction_id)
        if row is None:
            return None
        version = await self.models.version(row.version_id)
        return Prediction.from_row(row, version.model if version else "unknown/unknown")

    async def list(
        self, account: Account, cursor: str | None, url_for: Callable[[str], str]
    ) -> Page[Prediction]:
        stmt = select(PredictionRow).where(PredictionRow.account_id == account.id)
        async with self.db.session() as session:
            page = await paginate(
                session,
                stmt,
                cursor=cursor,
                url_for=url_for,
            )
        results = []
        for row in page.results:
            live = self._live.get(row.id)
            if live is not None:
                await self._settled(live)
                results.append(live)
                continue
            version = await self.models.version(row.version_id)
            results.append(Prediction.from_row(row, version.model if version else "unknown"))
        return Page(results, page.next, page.previous)

    async def wait(self, p: Prediction, timeout: float) -> Prediction:
        """Wait up to ``timeout`` seconds for ``p`` to finish; return it either way, but only
        once its row is written (raises if that failed)."""
        try:
            if not p.done.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):  # no task per wait, unlike wait_for
                        await p.done.wait()
        finally:  # from now on its terminal status logs a line of its own
            p.held = False
        if p.status.is_terminal():  # on the request's log line
            structlog.contextvars.bind_contextvars(prediction_status=p.status.value)
        if p.recorded is not None:
            await asyncio.shield(p.recorded)
        return p

    def _not_recorded(self, p: Prediction, written: "asyncio.Future[None]") -> None:
        """The row of a held create failed to commit: forget the prediction (its completion,
        if any, writes nothing) and let wait() raise at once."""
        if written.cancelled() or written.exception() is None:
            return
        log.error("prediction_not_recorded", prediction_id=p.id, error=repr(written.exception()))
        self._live.pop(p.id, None)
        if self.scheduler is not None:
            self.scheduler.dequeue(p.id)
        p.done.set()

    async def cancel(self, account: Account, prediction_id: str, *, wait: float) -> Prediction:
        p = await self.get(account, prediction_id)
        if p.status.is_terminal():
            return p
        assert self.scheduler is not None
        if self.scheduler.dequeue(p.id):
            await self._transition(p, Status.CANCELED)
        elif await self.scheduler.cancel(p.id):
            await self.wait(p, wait)
        log.info("prediction_cancel_requested", prediction_id=p.id, status=p.status.value)
        return p

    # -- events from the scheduler (PredictionEvents) ----------------------------------------

    async def started(self, prediction_id: str) -> None:
        p = self._live.get(prediction_id)
        if p is not None:
            await self._transition(p, Status.PROCESSING)

    async def progress(self, prediction_id: str, event: str, payload: dict[str, Any]) -> None:
        p = self._live.get(prediction_id)
        if p is None or p.status.is_terminal():
            return
        if event == "log":
            text = str(payload.get("data", ""))
            p.logs += text
            self._publish(PredictionEvent("logs", p, data=text))
        elif event == "output" and p.iterator and isinstance(p.output, list):
            chunk = payload.get("chunk")
            p.output.append(chunk)
            self._publish(PredictionEvent("output", p, data=chunk))

    async def completed(self, prediction_id: str, result: CogResult) -> None:
        p = self._live.get(prediction_id)
        if p is None:
            log.info("late_completion_ignored", prediction_id=prediction_id)
            return
        try:
            status = Status(result.status)
        except ValueError:
            status = Status.FAILED
        if not status.is_terminal():
            status = Status.FAILED
        output = result.output if result.output is not None or not p.iterator else p.output
        if status is Status.SUCCEEDED and output is not None and self.store_outputs is not None:
            try:
                output = await self.store_outputs(p.account_id, p.id, output)
            except Exception:  # the output stays inlined: still correct, only larger
                log.exception("output_store_failed", prediction_id=p.id)
        await self._transition(
            p,
            status,
            output=output,
            logs=result.logs or p.logs,
            error=result.error,
            predict_time=result.metrics.get("predict_time"),
            extra_metrics={k: v for k, v in result.metrics.items() if k != "predict_time"},
        )

    # -- the one function that changes a prediction's status ----------------------------------

    async def _transition(
        self,
        p: Prediction,
        new: Status,
        *,
        output: Any = None,
        logs: str | None = None,
        error: str | None = None,
        predict_time: float | None = None,
        extra_metrics: dict[str, Any] | None = None,
    ) -> bool:
        """Move ``p`` to ``new``, stamp its times, write it through. Late or repeated events
        (anything after a terminal status) are ignored, so duplicate terminals are idempotent."""
        if not can_transition(p.status, new):
            return False
        now = self.clock.now()
        p.status = new
        if new is Status.PROCESSING:
            p.started_at = now
        if new.is_terminal():
            p.completed_at = now
            if output is not None or new is Status.SUCCEEDED:
                p.output = output
            if logs is not None:
                p.logs = logs
            p.error = error if new is Status.FAILED else None
            if new is Status.FAILED and not p.error:
                p.error = "Prediction failed."
            ran = (now - p.started_at).total_seconds() if p.started_at else 0.0
            p.metrics = {
                **(extra_metrics or {}),
                "predict_time": round(predict_time if predict_time is not None else ran, 6),
                "total_time": round((now - p.created_at).total_seconds(), 6),
            }
        kind: EventKind | None = (
            "completed" if new.is_terminal() else "start" if new is Status.PROCESSING else None
        )
        event = PredictionEvent(kind, p) if kind is not None else None
        usage = await self._usage_row(p) if new.is_terminal() and self.metering else None

        # The usage record and what listeners stage (the completed webhook) commit with the
        # status: never one without the other.
        values = p.mutable_columns()
        if new is Status.PROCESSING:  # only these two changed
            values = {"status": values["status"], "started_at": values["started_at"]}
        write: list[Op] = [Update(PREDICTIONS, p.id, values)]
        if usage is not None:
            write.append(usage)
        if event is not None:
            write += map(insert_of, self._staged(event))

        if new is Status.PROCESSING:
            self.writes.write_later(write)  # nobody waits for it; the terminal write follows it
        else:
            try:
                # The only prediction in flight: nothing else comes to share its commit.
                await self.writes.write(write, alone=len(self._live) == 1)
            except BaseException:
                if new.is_terminal():  # nobody waits forever; the row is recovered at restart
                    p.done.set()
                raise
        quiet = new is Status.PROCESSING or (new.is_terminal() and p.held)
        report = log.debug if quiet else log.info
        report("prediction_status", prediction_id=p.id, status=new.value)
        if event is not None:
            self._publish(event)
        if new.is_terminal() and self.metering is not None:
            self.on_usage_recorded()
        if new.is_terminal():
            p.done.set()
            self._live.pop(p.id, None)
        return True

    async def _usage_row(self, p: Prediction) -> Insert:
        assert self.metering is not None
        assert p.completed_at is not None
        version = await self.models.version(p.version_id)
        return usage_row(
            prediction_id=p.id,
            account=p.account,
            model=p.model,
            version=p.version_id,
            deployment=p.deployment,
            hardware=p.hardware or (version.hardware if version else "cpu"),
            status=p.status.value,
            created_at=p.created_at,
            started_at=p.started_at,
            completed_at=p.completed_at,
            predict_time=float(p.metrics.get("predict_time", 0.0)),
            settings=self.metering,
        )

    # -- start-up ------------------------------------------------------------------------------

    async def recover(self) -> tuple[int, int]:
        """Resume what a previous run of the gateway left unfinished.

        Queued predictions (``starting``) are dispatched again; ones that were ``processing``
        lost their instance with the old gateway and fail with a clear error.
        Returns (resumed, failed).
        """
        async with self.db.session() as session:
            rows = (
                await session.execute(
                    select(PredictionRow, AccountRow.username)
                    .join(AccountRow, AccountRow.id == PredictionRow.account_id)
                    .where(PredictionRow.status.in_([Status.STARTING, Status.PROCESSING]))
                    .order_by(PredictionRow.created_at)
                )
            ).all()
        resumed = failed = 0
        for row, username in rows:
            if row.id in self._live:
                continue
            version = await self.models.version(row.version_id)
            p = Prediction.from_row(row, version.model if version else "unknown/unknown", username)
            self._live[p.id] = p
            if version is None or p.status is Status.PROCESSING:
                await self._transition(p, Status.FAILED, error=INTERRUPTED)
                failed += 1
                continue
            p.iterator = version.output_is_iterator
            if p.iterator and not isinstance(p.output, list):
                p.output = []
            try:
                clean = self.validator(version).clean(p.input)
                if self.resolve_inputs is not None:
                    clean = await self.resolve_inputs(p.account_id, version, clean, None)
            except errors.InputValidationFailed as exc:
                await self._transition(p, Status.FAILED, error=exc.detail)
                failed += 1
                continue
            placement = None
            if p.deployment and self.placement_of is not None:
                placement = await self.placement_of(p.deployment, p.version_id)
                p.hardware = placement.hardware if placement else None
            self._dispatch(version, p, clean, placement)
            resumed += 1
        if rows:
            log.info("predictions_recovered", resumed=resumed, failed=failed)
        return resumed, failed
