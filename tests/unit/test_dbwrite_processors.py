"""The raw-sqlite3 executor's own bind processors give exactly what SQLAlchemy's would."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import JSON, Table, null
from sqlalchemy.dialects import sqlite

from server import jsoncodec
from server.db import UTCDateTime
from server.dbwrite import SqliteExecutor
from server.predictions.tables import PredictionRow

PREDICTIONS: Table = PredictionRow.__table__  # type: ignore[assignment]
DIALECT = sqlite.dialect(json_serializer=jsoncodec.dumps)
EXECUTOR = SqliteExecutor("unused.db", DIALECT)


def sqlalchemys(column: str) -> Any:
    """What SQLAlchemy binds for a column: the type's own processing, then the dialect's."""
    col_type = PREDICTIONS.columns[column].type
    impl = col_type.dialect_impl(DIALECT)
    process = impl.bind_processor(DIALECT)
    assert process is not None, column
    if isinstance(col_type, UTCDateTime):
        return lambda v: process(col_type.process_bind_param(v, DIALECT))
    return process


zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)
aware = st.datetimes(
    min_value=datetime(1000, 1, 1), max_value=datetime(9998, 12, 31), timezones=zones
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)


@given(st.none() | aware)
def test_datetimes_bind_as_sqlalchemy_binds_them(value: datetime | None) -> None:
    ours = EXECUTOR._processor(PREDICTIONS, "created_at")
    assert ours is not None
    assert ours(value) == sqlalchemys("created_at")(value)


@given(json_values | st.just(JSON.NULL) | st.just(null()))
def test_json_binds_as_sqlalchemy_binds_it(value: Any) -> None:
    ours = EXECUTOR._processor(PREDICTIONS, "output")
    assert ours is not None
    assert ours(value) == sqlalchemys("output")(value)
