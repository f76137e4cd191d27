"""The pool's rules, driven by a Hypothesis state machine with a fake clock.

The machine plays the pool: it submits and withdraws predictions, lets boots succeed or fail,
finishes runs, loses instances, lets time pass, and applies every action ``plan()`` returns.
After each step the invariants below must hold.
"""

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from server.scheduler.planner import Boot, Dispatch, Phase, Planner, Policy, Stop


class PoolMachine(RuleBasedStateMachine):
    @initialize(
        min_instances=st.integers(0, 2),
        extra=st.integers(0, 3),
        slots=st.integers(1, 4),
        capacity=st.integers(1, 5),
        threshold=st.sampled_from([0.5, 1.0, 2.0]),
    )
    def setup(
        self, min_instances: int, extra: int, slots: int, capacity: int, threshold: float
    ) -> None:
        self.now = 0.0
        self.capacity = capacity  # instances the "hardware" holds at once
        self.policy = Policy(
            min_instances=min_instances,
            max_instances=max(1, min_instances + extra),
            slots=slots,
            idle_timeout=30.0,
            scale_up_threshold=threshold,
        )
        self.planner = Planner(self.policy, can_boot=lambda: self.held() < self.capacity)
        self.next_job = 0
        self.submitted: list[str] = []
        self.withdrawn: set[str] = set()
        self.dispatched: list[str] = []
        self.finished: set[str] = set()
        self.failed: set[str] = set()  # lost with their instance
        self.stopping: set[str] = set()
        self.apply()  # the pool plans as soon as it starts

    def held(self) -> int:
        return len(self.planner.members)

    def apply(self) -> None:
        for action in self.planner.plan(self.now):
            if isinstance(action, Dispatch):
                member = self.planner.members[action.instance_id]
                assert member.phase is Phase.READY
                assert len(member.running) <= self.policy.slots
                assert action.job_id not in self.dispatched, "dispatched twice"
                self.dispatched.append(action.job_id)
            elif isinstance(action, Boot):
                assert self.planner.broken is None, "booted a broken version"
                assert self.held() <= self.capacity, "booted beyond the hardware"
            elif isinstance(action, Stop):
                member = self.planner.members[action.instance_id]
                assert not member.running, "stopped a busy instance"
                self.stopping.add(action.instance_id)

    def members(self, phase: Phase) -> list[str]:
        return sorted(m.id for m in self.planner.members.values() if m.phase is phase)

    # -- what happens to a pool -------------------------------------------------------------------

    @rule(count=st.integers(1, 6))
    def submit(self, count: int) -> None:
        for _ in range(count):
            job = f"p{self.next_job}"
            self.next_job += 1
            self.submitted.append(job)
            self.planner.submit(job)
        self.apply()

    @precondition(lambda self: bool(self.planner.queue))
    @rule(data=st.data())
    def withdraw(self, data: st.DataObject) -> None:
        job = data.draw(st.sampled_from(list(self.planner.queue)))
        assert self.planner.withdraw(job)
        self.withdrawn.add(job)
        self.apply()

    @precondition(lambda self: bool(self.members(Phase.BOOTING)))
    @rule(data=st.data())
    def boot_ready(self, data: st.DataObject) -> None:
        self.planner.ready(data.draw(st.sampled_from(self.members(Phase.BOOTING))), self.now)
        self.apply()

    @precondition(lambda self: bool(self.members(Phase.BOOTING)))
    @rule(data=st.data(), setup=st.booleans())
    def boot_fails(self, data: st.DataObject, setup: bool) -> None:
        member = data.draw(st.sampled_from(self.members(Phase.BOOTING)))
        self.planner.boot_failed(member, setup_error="setup failed" if setup else None)
        if setup:
            self.withdrawn.update(self.planner.drain_queue())  # the pool fails them
        self.apply()

    @precondition(lambda self: any(m.running for m in self.planner.members.values()))
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        running = sorted((job, m.id) for m in self.planner.members.values() for job in m.running)
        job, member = data.draw(st.sampled_from(running))
        self.planner.finished(job, member, self.now)
        self.finished.add(job)
        self.apply()

    @precondition(lambda self: bool(self.members(Phase.READY)))
    @rule(data=st.data())
    def lose(self, data: st.DataObject) -> None:
        member = data.draw(st.sampled_from(self.members(Phase.READY)))
        self.failed.update(self.planner.lost(member))
        self.apply()

    @precondition(lambda self: bool(self.members(Phase.STOPPING)))
    @rule(data=st.data())
    def stopped(self, data: st.DataObject) -> None:
        self.planner.stopped(data.draw(st.sampled_from(self.members(Phase.STOPPING))))
        self.apply()

    @rule(seconds=st.sampled_from([0.5, 5.0, 29.0, 31.0, 120.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        self.apply()

    # -- what must always hold ------------------------------------------------------------------

    @invariant()
    def every_job_is_in_exactly_one_place(self) -> None:
        queued = list(self.planner.queue)
        running = [job for m in self.planner.members.values() for job in m.running]
        places = queued + running + sorted(self.finished | self.failed | self.withdrawn)
        assert sorted(places) == sorted(self.submitted), "a prediction was lost or duplicated"

    @invariant()
    def fifo(self) -> None:
        order = [j for j in self.submitted if j in set(self.dispatched)]
        assert self.dispatched == order, "dispatch out of submission order"

    @invariant()
    def slots_and_bounds(self) -> None:
        for member in self.planner.members.values():
            assert len(member.running) <= self.policy.slots
            if member.phase is not Phase.READY:
                assert not member.running
        assert len(self.planner.live()) <= self.policy.max_instances
        assert self.held() <= self.capacity

    @invariant()
    def work_conserving(self) -> None:
        """Nothing waits in the queue while a READY instance has a free slot."""
        if self.planner.queue:
            for member in self.planner.members.values():
                if member.phase is Phase.READY:
                    assert len(member.running) == self.policy.slots

    @invariant()
    def scales_down_when_idle(self) -> None:
        """No instance idles past the timeout while more than min_instances are live."""
        if len(self.planner.live()) > self.policy.min_instances and not self.planner.queue:
            for member in self.planner.members.values():
                if member.phase is Phase.READY and not member.running:
                    assert self.now - member.idle_since < self.policy.idle_timeout

    @invariant()
    def boots_for_waiting_work(self) -> None:
        """Queued work with no instance live or booting gets one, unless it cannot."""
        if self.planner.queue and not self.planner.live() and self.planner.broken is None:
            assert self.held() >= self.capacity, "work waits with nothing booting"

    @invariant()
    def keeps_the_minimum(self) -> None:
        if self.planner.broken is None and self.held() < self.capacity:
            assert len(self.planner.live()) >= self.policy.min_instances


PoolMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestPoolMachine = PoolMachine.TestCase


def test_least_loaded_ready_instance_gets_the_next_prediction() -> None:
    planner = Planner(Policy(max_instances=2, slots=4))
    planner.submit("a")
    boots = [a for a in planner.plan(0.0) if isinstance(a, Boot)]
    assert len(boots) == 1
    planner.ready(boots[0].instance_id, 0.0)
    for job in "bcd":
        planner.submit(job)
    planner.plan(0.0)  # all four go to the only READY instance; the second is not needed
    assert len(planner.members) == 1
    for job in "efg":
        planner.submit(job)
    second = [a for a in planner.plan(0.0) if isinstance(a, Boot)]
    assert len(second) == 1, "three queued with no free slot: another instance boots"
    planner.ready(second[0].instance_id, 1.0)
    dispatched = [a for a in planner.plan(1.0) if isinstance(a, Dispatch)]
    assert {a.instance_id for a in dispatched} == {second[0].instance_id}
    planner.finished("a", boots[0].instance_id, 2.0)
    planner.finished("b", boots[0].instance_id, 2.0)
    planner.submit("h")
    (target,) = [a for a in planner.plan(2.0) if isinstance(a, Dispatch)]
    assert target.instance_id == boots[0].instance_id, "2 running beats 3 running"


def test_scales_to_zero_after_the_idle_timeout() -> None:
    planner = Planner(Policy(max_instances=1, idle_timeout=10.0))
    planner.submit("a")
    (boot,) = planner.plan(0.0)
    assert isinstance(boot, Boot)
    planner.ready(boot.instance_id, 1.0)
    planner.plan(1.0)
    planner.finished("a", boot.instance_id, 2.0)
    assert planner.plan(11.9) == []
    assert planner.next_wakeup() == 12.0
    assert planner.plan(12.0) == [Stop(boot.instance_id)]
