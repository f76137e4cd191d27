"""The prediction status machine."""

import pytest

from server.predictions.status import TERMINAL, Status, can_transition


@pytest.mark.parametrize(
    ("current", "new", "allowed"),
    [
        (Status.STARTING, Status.PROCESSING, True),
        (Status.STARTING, Status.CANCELED, True),  # canceled while queued
        (Status.STARTING, Status.FAILED, True),  # setup failed before it ran
        (Status.PROCESSING, Status.SUCCEEDED, True),
        (Status.PROCESSING, Status.STARTING, False),  # never backwards
        (Status.PROCESSING, Status.PROCESSING, False),
        (Status.SUCCEEDED, Status.FAILED, False),  # a late terminal is ignored
        (Status.CANCELED, Status.PROCESSING, False),  # a late start is ignored
    ],
)
def test_transitions(current: Status, new: Status, allowed: bool) -> None:
    assert can_transition(current, new) is allowed


def test_terminal_statuses_are_replicates() -> None:
    assert {s.value for s in TERMINAL} == {"succeeded", "failed", "canceled"}
    assert [s.value for s in Status] == [
        "starting",
        "processing",
        "succeeded",
        "failed",
        "canceled",
    ]
    assert all(s.is_terminal() for s in TERMINAL)
    assert not Status.PROCESSING.is_terminal()
