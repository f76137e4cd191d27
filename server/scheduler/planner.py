"""A pool's decisions as plain state: what to dispatch where, when to boot, when to stop.

No I/O and no clock of its own: the pool (``pool.py``) feeds it events with the time and
carries out the actions ``plan(now)`` returns. That keeps every scheduling rule in one place
that a Hypothesis state machine drives with a fake clock (tests/unit/test_planner.py).

Rules:
- Dispatch takes the queue in FIFO order and sends each prediction to the least-loaded READY
  instance with a free slot; never to a full, booting or stopping one.
- Boot while the queue holds more than ``scale_up_threshold`` predictions per free slot
  (booting instances count with all their slots), up to ``max_instances`` and while the
  hardware has room; always keep ``min_instances`` (or one, when ``warm()`` asked for it).
- Stop a READY instance that has been idle for ``idle_timeout`` while more than
  ``min_instances`` are live; with ``min_instances = 0`` the pool scales to zero.
- After a setup failure the pool boots nothing more: its version is broken.
"""

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


@dataclass
class Policy:
    min_instances: int = 0
    max_instances: int = 1
    slots: int = 1
    """Predictions one instance runs at once (the predictor's concurrency)."""
    idle_timeout: float = 300.0
    scale_up_threshold: float = 1.0
    """Queued predictions per free slot above which another instance boots."""


class Phase(StrEnum):
    BOOTING = "booting"
    READY = "ready"
    STOPPING = "stopping"


@dataclass
class Member:
    """One instance as the planner sees it."""

    id: str
    phase: Phase
    idle_since: float
    running: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Dispatch:
    job_id: str
    instance_id: str


@dataclass(frozen=True)
class Boot:
    instance_id: str


@dataclass(frozen=True)
class Stop:
    instance_id: str


Action = Dispatch | Boot | Stop


class Planner:
    def __init__(self, policy: Policy, *, can_boot: Callable[[], bool] = lambda: True) -> None:
        self.policy = policy
        self.can_boot = can_boot
        self.queue: deque[str] = deque()
        self.members: dict[str, Member] = {}
        self.broken: str | None = None
        self.warm_wanted = False
        self._ids = itertools.count(1)

    # -- what the pool reports ----------------------------------------------------------------

    def submit(self, job_id: str) -> None:
        self.queue.append(job_id)

    def withdraw(self, job_id: str) -> bool:
        """Take a queued (not yet dispatched) job out; False if it is not queued."""
        try:
            self.queue.remove(job_id)
        except ValueError:
            return False
        return True

    def ready(self, instance_id: str, now: float) -> None:
        member = self.members.get(instance_id)
        if member is not None and member.phase is Phase.BOOTING:
            member.phase = Phase.READY
            member.idle_since = now
            self.warm_wanted = False

    def boot_failed(self, instance_id: str, *, setup_error: str | None = None) -> None:
        """The instance never became READY. ``setup_error``: the version itself is broken."""
        self.members.pop(instance_id, None)
        if setup_error is not None:
            self.broken = setup_error

    def finished(self, job_id: str, instance_id: str, now: float) -> None:
        member = self.members.get(instance_id)
        if member is not None:
            member.running.discard(job_id)
            if not member.running:
                member.idle_since = now

    def lost(self, instance_id: str) -> set[str]:
        """The instance died or was killed; returns the jobs that were running on it."""
        member = self.members.pop(instance_id, None)
        return set(member.running) if member is not None else set()

    def drain_queue(self) -> list[str]:
        jobs = list(self.queue)
        self.queue.clear()
        return jobs

    # -- views ------------------------------------------------------------------------------------

    def live(self) -> list[Member]:
        return [m for m in self.members.values() if m.phase is not Phase.STOPPING]

    def free_slots(self) -> int:
        slots = self.policy.slots
        return sum(
            slots - len(m.running) if m.phase is Phase.READY else slots
            for m in self.members.values()
            if m.phase is not Phase.STOPPING
        )

    def running(self) -> int:
        return sum(len(m.running) for m in self.members.values())

    def next_wakeup(self) -> float | None:
        """When the earliest idle instance may be stopped (None: nothing to wait for)."""
        if len(self.live()) <= self.policy.min_instances:
            return None
        idle = [
            m.idle_since + self.policy.idle_timeout
            for m in self.members.values()
            if m.phase is Phase.READY and not m.running
        ]
        return min(idle, default=None)

    # -- decisions --------------------------------------------------------------------------------

    def plan(self, now: float) -> list[Action]:
        actions: list[Action] = []
        self._dispatch(actions)
        if self.broken is None:
            self._scale_up(actions, now)
        self._scale_down(actions, now)
        return actions

    def _dispatch(self, actions: list[Action]) -> None:
        slots = self.policy.slots
        while self.queue:
            candidates = [
                m
                for m in self.members.values()
                if m.phase is Phase.READY and len(m.running) < slots
            ]
            if not candidates:
                return
            target = min(candidates, key=lambda m: len(m.running))
            job_id = self.queue.popleft()
            target.running.add(job_id)
            actions.append(Dispatch(job_id, target.id))

    def _scale_up(self, actions: list[Action], now: float) -> None:
        policy = self.policy
        floor = max(policy.min_instances, 1 if self.warm_wanted else 0)
        while len(self.live()) < policy.max_instances:
            below_floor = len(self.live()) < floor
            pressure = len(self.queue) > self.free_slots() * policy.scale_up_threshold
            if not (below_floor or (self.queue and pressure)) or not self.can_boot():
                return
            member = Member(f"b{next(self._ids)}", Phase.BOOTING, now)
            self.members[member.id] = member
            actions.append(Boot(member.id))

    def _scale_down(self, actions: list[Action], now: float) -> None:
        policy = self.policy
        idle = sorted(
            (
                m
                for m in self.members.values()
                if m.phase is Phase.READY
                and not m.running
                and now - m.idle_since >= policy.idle_timeout
            ),
            key=lambda m: m.idle_since,
        )
        for member in idle:
            if len(self.live()) <= policy.min_instances or self.queue:
                return
            member.phase = Phase.STOPPING
            actions.append(Stop(member.id))

    def stopped(self, instance_id: str) -> None:
        self.members.pop(instance_id, None)
