"""Parsing the Prefer header (checklist item 7: lenient, clamped to 1..60)."""

import pytest

from server.predictions.api import parse_prefer_wait


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("respond-async", None),
        ("wait", 60),
        ("Wait", 60),
        ("wait=5", 5),
        ("wait=120", 60),  # the JS client can send more than 60
        ("wait=0", 1),
        ("wait=2.7", 2),
        ("wait=soon", 60),
        ("return=minimal, wait=10", 10),
    ],
)
def test_parse_prefer_wait(header: str | None, expected: int | None) -> None:
    assert parse_prefer_wait(header, 60) == expected
