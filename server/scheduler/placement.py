"""Where a prediction runs: which pool, on what hardware, with how many instances."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    """Which pool a prediction goes to, on what hardware, with how many instances."""

    key: str
    hardware: str
    min_instances: int
    max_instances: int
    deployment: str | None = None
