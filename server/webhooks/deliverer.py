"""The webhook deliverer: follows predictions (a ``PredictionListener``) and POSTs their webhooks.

Events (``webhook_events_filter``, all four when omitted):

- ``start`` — when the prediction is created (status ``starting``), staged in the create's own
  transaction. Replicate sends it "immediately on prediction start"; sending it at creation tells
  the receiver at once, even while the prediction waits for an instance.
- ``output`` / ``logs`` — the latest state, at least ``throttle`` seconds apart per prediction.
- ``completed`` — staged (body rendered) in the terminal status change's transaction; retried
  with capped exponential backoff (``server/webhooks/retry.py``) until about ``retry_max_elapsed``
  after completion, across gateway restarts. A completion supersedes pending output/logs.

Every body is what ``GET /v1/predictions/{id}`` returns at that moment, signed the Standard
Webhooks way with the account's secret (``webhook-id`` stays the same across retries). One
prediction's messages go out in order, one at a time; redirects are not followed (a 3xx is a
failure). One named task (``webhook-deliverer``) owns the loop; attempts run as tasks it tracks.
It assumes one gateway (one deliverer) per database, as ``PredictionService.recover`` does.
"""

import asyncio
import contextlib
import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import httpx
import structlog

from server import __version__, ids, urls
from server.clock import Clock
from server.db import Database
from server.predictions.prediction import Prediction, PredictionEvent
from server.predictions.schemas import render
from server.settings import WebhookSettings
from server.webhooks import signing
from server.webhooks.outbox import INTERMEDIATE, Message, Outbox, Outcome
from server.webhooks.retry import RetryPolicy
from server.webhooks.service import WebhookService
from server.webhooks.tables import WebhookTargetRow
from server.webhooks.throttle import Throttle

log = structlog.get_logger("server.webhooks")

ALL_EVENTS = ("start", "output", "logs", "completed")
USER_AGENT = f"Cogway-Webhooks/{__version__}"
IDLE_WAIT_S = 60.0  # with nothing due, look at the outbox again after this long (or when woken)
ERROR_PAUSE_S = 1.0  # after an unexpected error in the loop (the database away, say)
ERROR_CHARS = 300


def wants(p: Prediction, event: str) -> bool:
    return event in (p.webhook_events_filter or ALL_EVENTS)


def encode(body: dict[str, Any]) -> str:
    """JSON exactly as the API writes it (FastAPI's ``JSONResponse`` settings)."""
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


class WebhookDeliverer:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        settings: WebhookSettings,
        secrets: WebhookService,
        *,
        default_base_url: str,
        http: httpx.AsyncClient | None = None,
        resolver: urls.Resolver = urls.resolve,
    ) -> None:
        self.clock = clock
        self.settings = settings
        self.secrets = secrets
        self.default_base_url = default_base_url.rstrip("/")
        self.outbox = Outbox(db, clock)
        self.policy = RetryPolicy.from_settings(settings)
        self.throttle = Throttle(settings.throttle)
        self.resolver = resolver
        self._http = http
        self._owns_http = http is None
        self._bases: dict[str, str] = {}  # prediction id -> base URL its bodies render with
        self._live: dict[str, Prediction] = {}  # running predictions that have a webhook
        self._completed: set[str] = set()  # whose pending output/logs messages to supersede
        self._busy: set[str] = set()  # predictions with an attempt in flight
        self._start_unsent: set[str] = set()
        """Predictions whose start message is in the outbox but not yet sent: their output and
        logs wait for it (a prediction that starts logging before the loop looks at the outbox
        would otherwise have its logs webhook overtake its start)."""
        self._inflight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._db_dirty = True  # the outbox may hold something new: look before sleeping
        self._db_due = float("inf")  # loop time when the next stored message falls due
        self._sleeping_until: float | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    # -- PredictionListener ----------------------------------------------------------------

    def stage(self, event: PredictionEvent) -> Sequence[object]:
        """Rows for the status change's transaction: the prediction's base URL and its start
        message (created), its completed message (completed)."""
        p = event.prediction
        if not p.webhook:
            return []
        now = self.clock.now()
        rows: list[object] = []
        if event.kind == "created":
            base = (event.base_url or self.default_base_url).rstrip("/")
            self._bases[p.id] = base
            rows.append(WebhookTargetRow(prediction_id=p.id, base_url=base, created_at=now))
            if wants(p, "start"):
                rows.append(self._message(p, "start").row(now))
        elif event.kind == "completed" and wants(p, "completed"):
            rows.append(self._message(p, "completed").row(now))
        return rows

    def publish(self, event: PredictionEvent) -> None:
        p = event.prediction
        if not p.webhook:
            return
        if event.kind == "completed":
            self._live.pop(p.id, None)
            self._bases.pop(p.id, None)
            self._start_unsent.discard(p.id)
            self.throttle.forget(p.id)
            if self.settings.intermediate_attempts > 1:  # else none is ever left pending
                self._completed.add(p.id)
            self._poke()
            return
        self._live[p.id] = p
        if event.kind == "created" and wants(p, "start"):
            self._start_unsent.add(p.id)
            self._poke()
        elif event.kind in INTERMEDIATE and wants(p, event.kind):
            due = self.throttle.note(p.id, event.kind)
            sleeping_past_due = self._sleeping_until is not None and due < self._sleeping_until
            if sleeping_past_due and p.id not in self._busy:  # (an attempt's end wakes it)
                self._wake.set()

    def _poke(self) -> None:
        """Something was committed to the outbox: look at it now."""
        self._db_dirty = True
        self._wake.set()

    def _message(self, p: Prediction, event: str, *, stored: bool = True) -> Message:
        base = self._bases.get(p.id, self.default_base_url)
        assert p.webhook is not None
        return Message(
            id=ids.webhook_message_id(),
            prediction_id=p.id,
            account_id=p.account_id,
            url=p.webhook,
            event=event,
            payload=encode(render(p, base)),
            created_at=self.clock.now(),
            stored=stored,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Resume: forget output/logs left over from the previous run, learn the base URLs of
        unfinished predictions, then start the loop (pending messages go out when due)."""
        dropped = await self.outbox.drop_stale()
        self._bases.update(await self.outbox.targets())
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=self.settings.timeout,
                follow_redirects=False,
                trust_env=False,  # no proxy from the environment: we checked the destination
                limits=httpx.Limits(max_connections=self.settings.max_concurrency),
            )
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="webhook-deliverer")
        log.info("webhook_deliverer_started", pending=await self.outbox.pending(), dropped=dropped)

    async def stop(self) -> None:
        """Start what is due now (e.g. completions from the scheduler's shutdown), give attempts
        in flight ``stop_grace`` seconds, cancel the rest (they stay pending for the next run)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._inflight:
            _, late = await asyncio.wait(set(self._inflight), timeout=self.settings.stop_grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._http is not None and self._owns_http:
            await self._http.aclose()
            self._http = None
        log.info("webhook_deliverer_stopped", pending=await self.outbox.pending())

    async def quiet(self) -> None:
        """Wait until no attempt is in flight (and so every attempt so far is recorded)."""
        while self._inflight:
            await asyncio.wait(set(self._inflight))

    # -- the loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()  # before looking: a wake-up that lands meanwhile is not lost
            stopping = self._stopping
            try:
                wait = await self._pass(stopping=stopping)
            except Exception:
                log.exception("webhook_deliverer_error")
                self._db_dirty = True
                wait = ERROR_PAUSE_S
            if stopping:
                return
            self._sleeping_until = loop.time() + wait
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            self._sleeping_until = None

    async def _pass(self, *, stopping: bool) -> float:
        """Start every attempt that is due and there is room for; return how long to sleep."""
        loop = asyncio.get_running_loop()
        if self._completed:
            done, self._completed = self._completed, set()
            await self.outbox.supersede(done)
        if not stopping:
            self._start_intermediates()
        free = self.settings.max_concurrency - len(self._inflight)
        if free > 0 and (self._db_dirty or loop.time() >= self._db_due):
            self._db_dirty = False
            for message in await self.outbox.due(busy=set(self._busy), limit=free):
                if message.prediction_id not in self._busy:
                    self._spawn(message)
            due = await self.outbox.next_due(busy=set(self._busy))
            wait = (due - self.clock.now()).total_seconds() if due is not None else None
            self._db_due = loop.time() + max(wait, 0.0) if wait is not None else float("inf")
        now = loop.time()
        if len(self._inflight) >= self.settings.max_concurrency:
            return IDLE_WAIT_S  # a finishing attempt wakes the loop
        intermediate = self.throttle.next_due(skip=self._busy | self._start_unsent)
        candidates = [IDLE_WAIT_S, self._db_due - now]
        if intermediate is not None:
            candidates.append(intermediate - now)
        return max(0.0, min(candidates))

    def _start_intermediates(self) -> None:
        room = self.settings.max_concurrency - len(self._inflight)
        if room <= 0 or not len(self.throttle):
            return
        now = asyncio.get_running_loop().time()
        waiting = self._busy | self._start_unsent
        for prediction_id, kinds in self.throttle.take(now, skip=waiting, limit=room):
            p = self._live.get(prediction_id)
            if p is None or p.status.is_terminal() or not p.webhook:
                continue  # its completed message supersedes this one
            event = "output" if "output" in kinds else "logs"
            self._spawn(self._message(p, event, stored=False))

    def _spawn(self, message: Message) -> None:
        self._busy.add(message.prediction_id)
        if message.event == "start":
            self._start_unsent.discard(message.prediction_id)
        task = asyncio.create_task(self._deliver(message), name=f"webhook-{message.id}")
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    # -- one attempt -------------------------------------------------------------------------

    async def _deliver(self, message: Message) -> None:
        try:
            outcome = await self._attempt(message, message.attempts + 1)
            retry_at = None
            if not outcome.ok:
                delay = self._retry_delay(message, outcome)
                if delay is not None:
                    retry_at = self.clock.now() + timedelta(seconds=delay)
            state = await self.outbox.record(message, outcome, retry_at=retry_at)
            if not outcome.ok:
                report = log.warning
            else:  # output/logs can be two a second per prediction: keep them out of info
                report = log.debug if message.event in INTERMEDIATE else log.info
            report(
                "webhook_delivered" if outcome.ok else "webhook_delivery_failed",
                prediction_id=message.prediction_id,
                webhook_id=message.id,
                webhook_event=message.event,
                attempt=outcome.attempt,
                status_code=outcome.status_code,
                error=outcome.error,
                state=state,
                retry_at=retry_at.isoformat() if retry_at else None,
            )
        except Exception:
            log.exception("webhook_attempt_error", webhook_id=message.id)
        finally:
            prediction_id = message.prediction_id
            self._busy.discard(prediction_id)
            if message.event in INTERMEDIATE and prediction_id in self._live:
                self.throttle.sent(prediction_id, asyncio.get_running_loop().time())
            self._poke()

    def _retry_delay(self, message: Message, outcome: Outcome) -> float | None:
        if outcome.permanent:
            return None
        if message.event == "completed":
            elapsed = (self.clock.now() - message.created_at).total_seconds()
            return self.policy.next_delay(outcome.attempt, elapsed)
        if outcome.attempt < self.settings.intermediate_attempts:
            return self.policy.next_delay(outcome.attempt, 0.0)
        return None

    async def _attempt(self, message: Message, attempt: int) -> Outcome:
        """POST the message once; never raises for what the receiver or network did."""
        loop = asyncio.get_running_loop()
        started_at = self.clock.now()
        began = loop.time()

        def outcome(**kwargs: Any) -> Outcome:
            return Outcome(attempt, started_at, loop.time() - began, **kwargs)

        try:
            await urls.check(
                message.url,
                allow_private=self.settings.allow_private_urls,
                resolver=self.resolver,
            )
        except urls.Unresolvable as exc:
            return outcome(error=exc.reason)
        except urls.UrlRefused as exc:
            return outcome(error=f"destination refused: {exc.reason}", permanent=True)
        try:
            secret = await self.secrets.secret_for(message.account_id)
        except Exception as exc:  # the database away: a failed attempt like any other
            return outcome(error=f"no signing secret: {exc!r}"[:ERROR_CHARS])
        body = message.payload.encode()
        timestamp = int(started_at.timestamp())
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **signing.headers(secret, msg_id=message.id, timestamp=timestamp, body=body),
        }
        assert self._http is not None, "start() the deliverer first"
        try:
            request = self._http.build_request("POST", message.url, content=body, headers=headers)
        except httpx.InvalidURL as exc:
            return outcome(error=f"invalid URL: {exc}"[:ERROR_CHARS], permanent=True)
        try:
            async with asyncio.timeout(self.settings.timeout):
                response = await self._http.send(request, stream=True, follow_redirects=False)
                await response.aclose()  # the answer's body is not read
        except (TimeoutError, httpx.TimeoutException):
            return outcome(error=f"timed out after {self.settings.timeout:g}s")
        except httpx.HTTPError as exc:
            return outcome(error=f"{type(exc).__name__}: {exc}"[:ERROR_CHARS])
        code = response.status_code
        if 200 <= code < 300:
            return outcome(status_code=code)
        if 300 <= code < 400:
            return outcome(status_code=code, error="redirect not followed")
        return outcome(status_code=code, error=f"HTTP {code}")
