"""Prediction ids: Replicate's shape, unique, and in the order they were made."""

import base64
import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server import ids

SHAPE = re.compile(r"[a-z2-7]{26}")


def test_prediction_ids_have_replicates_shape_and_do_not_repeat() -> None:
    made = [ids.prediction_id() for _ in range(20_000)]
    assert all(SHAPE.fullmatch(i) for i in made)
    assert len(set(made)) == len(made)  # most share a millisecond: the random part differs


def test_later_prediction_ids_sort_later(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the milliseconds, so every index on them grows at its end."""
    stamps = iter([1, 31, 32, 1_000, 2**20, 1_766_000_000_000, 1_766_000_000_001, 2**48 - 1])
    monkeypatch.setattr(time, "time_ns", lambda: next(stamps) * 1_000_000)
    made = [ids.prediction_id() for _ in range(8)]
    assert made == sorted(made)
    assert all(SHAPE.fullmatch(i) for i in made)


def test_file_ids_are_all_random() -> None:
    a, b = ids.file_id(), ids.file_id()
    assert SHAPE.fullmatch(a)
    assert a[:8] != b[:8]  # no shared time prefix to guess from


@given(st.integers(min_value=0, max_value=2**128 - 1))
def test_sorted_base32_is_base32_with_the_digits_first(value: int) -> None:
    rfc4648 = base64.b32encode(value.to_bytes(16, "big")).decode().rstrip("=")
    table = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", ids.SORTED_BASE32)
    assert ids.sorted_base32(value) == rfc4648.translate(table)
