"""Prediction ids: Replicate's shape, unique, and in the order they were made."""

import re
import time

import pytest

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
