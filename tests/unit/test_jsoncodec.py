"""The hot path's JSON codec reads and writes what the standard library does (orjson inside)."""

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server import jsoncodec

# Any JSON value json.loads can give back: big integers, non-ASCII and surrogate-free text.
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"])),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_round_trips_like_the_standard_library(value: Any) -> None:
    text = jsoncodec.dumps(value)
    assert json.loads(text) == value
    assert jsoncodec.loads(text) == value
    assert jsoncodec.loads(text.encode()) == value
    assert jsoncodec.loads(json.dumps(value)) == json.loads(json.dumps(value))


@pytest.mark.parametrize("digits", [19, 20, 40])
def test_big_integers_keep_every_digit(digits: int) -> None:
    big = int("9" * digits)
    text = f'{{"seed": {big}, "n": -{big}}}'
    # orjson alone would read these as floats
    assert jsoncodec.loads(text) == {"seed": big, "n": -big}
    assert jsoncodec.loads(text.encode()) == {"seed": big, "n": -big}
    assert json.loads(jsoncodec.dumps({"seed": big})) == {"seed": big}


def test_what_orjson_refuses_to_read_is_read_as_json_reads_it() -> None:
    assert math.isnan(jsoncodec.loads("[NaN]")[0])
    assert jsoncodec.loads('{"a": 1e400}') == {"a": math.inf}
    assert jsoncodec.loads('"\\ud800"') == "\ud800"
    with pytest.raises(json.JSONDecodeError):
        jsoncodec.loads(b"{not json")


def test_what_orjson_refuses_to_write_is_written_by_json() -> None:
    assert json.loads(jsoncodec.dumps({1: "a", "b": 2})) == {"1": "a", "b": 2}
    assert jsoncodec.dumpb({"b": 1, "a": [2**70]}, sort_keys=True) == b'{"a":[%d],"b":1}' % 2**70


def test_sorted_keys_are_stable_whatever_the_insertion_order() -> None:
    a = jsoncodec.dumpb({"b": 1, "a": {"z": 1, "y": "é"}}, sort_keys=True)
    b = jsoncodec.dumpb({"a": {"y": "é", "z": 1}, "b": 1}, sort_keys=True)
    assert a == b == '{"a":{"y":"é","z":1},"b":1}'.encode()


def test_not_a_number_is_written_as_null_not_as_invalid_json() -> None:
    assert jsoncodec.dumps({"x": math.nan, "y": math.inf}) == '{"x":null,"y":null}'


def test_log_lines_write_what_json_cannot_hold_as_its_repr() -> None:
    class Thing:
        def __repr__(self) -> str:
            return "<thing>"

    assert json.loads(jsoncodec.log_dumps({"event": "x", "obj": Thing()})) == {
        "event": "x",
        "obj": "<thing>",
    }
    assert json.loads(jsoncodec.log_dumps({"big": 2**70, "obj": Thing()})) == {
        "big": 2**70,
        "obj": "<thing>",
    }
