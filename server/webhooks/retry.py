"""When to retry a completed webhook: capped exponential backoff, stopping on attempts or time.

``delay(n) = min(cap, base * 2**(n-1)) * (1 ± jitter)`` after failed attempt ``n``, and never
past ``max_elapsed`` seconds after the event: the retry that would land later is moved to land
exactly then, and it is the last. With the defaults (1 s, cap 20 s, 60 s) and no jitter the
attempts go out at 0, 1, 3, 7, 15, 31, 51 and 60 s.
"""

import random
from collections.abc import Callable
from dataclasses import dataclass

from server.settings import WebhookSettings

JITTER = 0.1


@dataclass(frozen=True)
class RetryPolicy:
    base: float
    cap: float
    max_elapsed: float
    max_attempts: int
    jitter: float = JITTER

    @classmethod
    def from_settings(cls, settings: WebhookSettings) -> "RetryPolicy":
        return cls(
            base=settings.backoff_base,
            cap=settings.backoff_cap,
            max_elapsed=settings.retry_max_elapsed,
            max_attempts=settings.retry_max_attempts,
        )

    def next_delay(
        self, attempt: int, elapsed: float, *, rand: Callable[[], float] = random.random
    ) -> float | None:
        """Seconds to wait after failed attempt ``attempt`` (1, 2, …), ``elapsed`` seconds after
        the event; None: give up."""
        if attempt >= self.max_attempts:
            return None
        left = self.max_elapsed - elapsed
        if left <= 0:
            return None
        delay = min(self.cap, self.base * float(2 ** max(attempt - 1, 0)))
        delay *= 1 + self.jitter * (2 * rand() - 1)
        return min(delay, left)
