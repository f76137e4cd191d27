"""The prediction status machine, in Replicate's and Cog's exact words."""

from enum import StrEnum


class Status(StrEnum):
    #: accepted, queued or waiting for an instance to boot
    STARTING = "starting"
    #: predict() is running on an instance
    PROCESSING = "processing"
    #: predict() returned
    SUCCEEDED = "succeeded"
    #: predict() raised, the instance crashed, or setup failed
    FAILED = "failed"
    #: cancelled by the caller or by a deadline
    CANCELED = "canceled"

    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELED})

TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.STARTING: frozenset({Status.PROCESSING, *TERMINAL}),
    Status.PROCESSING: TERMINAL,
    Status.SUCCEEDED: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELED: frozenset(),
}


def can_transition(current: Status, new: Status) -> bool:
    return new in TRANSITIONS[current]
