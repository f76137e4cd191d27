"""The completed webhook's retry schedule: capped exponential backoff within a deadline."""

import itertools

import pytest

from server.settings import WebhookSettings
from server.webhooks.retry import RetryPolicy


def schedule(policy: RetryPolicy, *, took: float = 0.0) -> list[float]:
    """Seconds after the event at which each attempt starts, if every attempt fails and takes
    ``took`` seconds."""
    starts = [0.0]
    for attempt in itertools.count(1):
        elapsed = starts[-1] + took
        delay = policy.next_delay(attempt, elapsed, rand=lambda: 0.5)  # no jitter
        if delay is None:
            return starts
        starts.append(round(elapsed + delay, 6))
    raise AssertionError("unreachable")


def test_default_schedule_reaches_about_a_minute() -> None:
    """Defaults: 1 s doubling, capped at 20 s, the last retry exactly 60 s after the event."""
    policy = RetryPolicy.from_settings(WebhookSettings())
    assert schedule(policy) == [0, 1, 3, 7, 15, 31, 51, 60]


def test_the_cap_bounds_each_wait() -> None:
    """No wait is longer than the cap, however many attempts."""
    policy = RetryPolicy(base=1, cap=4, max_elapsed=20, max_attempts=100)
    assert schedule(policy) == [0, 1, 3, 7, 11, 15, 19, 20]


def test_max_attempts_stops_first() -> None:
    """Attempts are counted with the first one: max_attempts=3 means two retries."""
    policy = RetryPolicy(base=1, cap=20, max_elapsed=60, max_attempts=3)
    assert schedule(policy) == [0, 1, 3]


def test_slow_attempts_count_against_the_deadline() -> None:
    """Time spent in attempts (timeouts) is part of the elapsed time."""
    policy = RetryPolicy(base=1, cap=20, max_elapsed=30, max_attempts=100)
    assert schedule(policy, took=10) == [0, 11, 23]  # the third ends at 33 s


def test_past_the_deadline_gives_up() -> None:
    """After a long outage (a gateway down for minutes) one failed attempt is the last."""
    policy = RetryPolicy.from_settings(WebhookSettings())
    assert policy.next_delay(1, 61.0) is None
    assert policy.next_delay(1, 60.0) is None


@pytest.mark.parametrize(("rand", "factor"), [(0.0, 0.9), (1.0, 1.1), (0.5, 1.0)])
def test_jitter_is_ten_percent_either_way(rand: float, factor: float) -> None:
    """Jitter spreads retries of many webhooks that failed together by ±10 %."""
    policy = RetryPolicy(base=2, cap=100, max_elapsed=1000, max_attempts=10)
    assert policy.next_delay(3, 0.0, rand=lambda: rand) == pytest.approx(8 * factor)
