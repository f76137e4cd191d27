"""Replicate's timestamp shape, for any aware datetime."""

import re
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from server.clock import isoformat

SHAPE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@given(st.datetimes(min_value=datetime(1000, 1, 2), timezones=st.just(UTC) | OFFSETS))
def test_isoformat_is_utc_with_microseconds_and_z(dt: datetime) -> None:
    text = isoformat(dt)
    assert text is not None
    assert SHAPE.fullmatch(text), text
    assert datetime.fromisoformat(text.replace("Z", "+00:00")) == dt


def test_isoformat_of_none_is_none() -> None:
    assert isoformat(None) is None
