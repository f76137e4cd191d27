"""Output and logs webhooks of one prediction go out at least ``interval`` seconds apart.

Events only mark a prediction as having news; when its window opens, one webhook carries the
latest state. The window is measured from the end of the previous such attempt, so a receiver
sees them at least ``interval`` apart whatever the network did. Times are plain floats (the
event loop's clock in the deliverer, numbers in tests).
"""

from collections.abc import Container


class Throttle:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._pending: dict[str, set[str]] = {}  # prediction id -> event kinds waiting
        self._last: dict[str, float] = {}  # prediction id -> end of its last attempt

    def note(self, key: str, kind: str) -> float:
        """``key`` has news of ``kind``; returns when it may be sent."""
        self._pending.setdefault(key, set()).add(kind)
        return self.due_at(key)

    def due_at(self, key: str) -> float:
        last = self._last.get(key)
        return float("-inf") if last is None else last + self.interval

    def next_due(self, *, skip: Container[str] = ()) -> float | None:
        """The earliest time a pending prediction not in ``skip`` may be sent (None: none)."""
        return min((self.due_at(k) for k in self._pending if k not in skip), default=None)

    def take(
        self, now: float, *, skip: Container[str] = (), limit: int | None = None
    ) -> list[tuple[str, frozenset[str]]]:
        """Up to ``limit`` pending predictions whose window is open (and not in ``skip``), with
        their kinds, earliest first; they stop being pending. Call ``sent`` after each attempt."""
        due = sorted(
            (k for k in self._pending if k not in skip and self.due_at(k) <= now),
            key=self.due_at,
        )[:limit]
        return [(k, frozenset(self._pending.pop(k))) for k in due]

    def sent(self, key: str, now: float) -> None:
        self._last[key] = now

    def forget(self, key: str) -> None:
        """The prediction completed: nothing of it is pending any more."""
        self._pending.pop(key, None)
        self._last.pop(key, None)

    def __len__(self) -> int:
        return len(self._pending)
