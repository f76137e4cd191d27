"""Output/logs webhooks of a prediction are at least the interval apart (times are numbers)."""

from server.webhooks.throttle import Throttle


def test_first_news_is_due_at_once() -> None:
    """Nothing was sent yet: the first output may go immediately."""
    t = Throttle(0.5)
    assert t.next_due() is None
    t.note("p", "output")
    assert t.take(10.0) == [("p", frozenset({"output"}))]
    assert t.take(10.0) == []


def test_news_within_the_window_waits_and_coalesces() -> None:
    """Events inside the window become one webhook when it opens, carrying every kind."""
    t = Throttle(0.5)
    t.note("p", "output")
    t.take(0.0)
    t.sent("p", 0.1)  # the attempt ended at 0.1: the window opens at 0.6
    assert t.note("p", "output") == 0.6
    t.note("p", "logs")
    t.note("p", "output")
    assert t.next_due() == 0.6
    assert t.take(0.59) == []
    assert t.take(0.6) == [("p", frozenset({"output", "logs"}))]


def test_predictions_are_throttled_apart() -> None:
    """One prediction's window does not hold back another's news."""
    t = Throttle(0.5)
    t.note("a", "output")
    t.take(0.0)
    t.sent("a", 0.0)
    t.note("a", "output")
    t.note("b", "logs")
    assert t.take(0.1) == [("b", frozenset({"logs"}))]
    assert t.take(0.5) == [("a", frozenset({"output"}))]


def test_skip_and_limit() -> None:
    """Predictions with an attempt in flight are skipped; at most ``limit`` are taken,
    earliest window first."""
    t = Throttle(1.0)
    for key, last in (("a", 0.0), ("b", 0.5), ("c", 0.2)):
        t.note(key, "output")
        t.take(last)
        t.sent(key, last)
        t.note(key, "output")
    assert t.next_due(skip={"a"}) == 1.2
    assert [k for k, _ in t.take(5.0, skip={"a"}, limit=1)] == ["c"]
    assert [k for k, _ in t.take(5.0)] == ["a", "b"]


def test_forget_drops_pending_news() -> None:
    """A completed prediction's pending output/logs are dropped (completed supersedes them)."""
    t = Throttle(0.5)
    t.note("p", "logs")
    t.forget("p")
    assert len(t) == 0
    assert t.take(100.0) == []
