"""Input validation against a version's OpenAPI Input schema."""

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator

from server import errors
from server.predictions.validation import InputValidator

SCHEMA: dict[str, Any] = {
    "components": {
        "schemas": {
            "Input": {
                "type": "object",
                "required": ["prompt"],
                "properties": {
                    "prompt": {"type": "string", "minLength": 1},
                    "n": {"type": "integer", "minimum": 1, "maximum": 4, "default": 1},
                    "style": {"allOf": [{"$ref": "#/components/schemas/style"}]},
                    "image": {"type": "string", "format": "uri", "nullable": True},
                    "images": {"type": "array", "items": {"type": "string", "format": "uri"}},
                    "seed": {"type": "integer", "nullable": True},
                },
            },
            "style": {"type": "string", "enum": ["a", "b"]},
        }
    }
}


def problems(value: dict[str, Any]) -> list[dict[str, str]]:
    with pytest.raises(errors.InputValidationFailed) as raised:
        InputValidator(SCHEMA).clean(value)
    return raised.value.invalid_fields


def test_valid_input_is_cleaned() -> None:
    """Unknown keys are dropped and an explicit null for an optional input means 'default'."""
    clean = InputValidator(SCHEMA).clean({"prompt": "x", "typo": 1, "seed": None, "n": 2})
    assert clean == {"prompt": "x", "n": 2}


def test_every_problem_is_listed() -> None:
    assert problems({"n": 5, "style": "c"}) == [
        {"type": "required", "field": "input", "description": "prompt is required"},
        {
            "type": "number_lte",
            "field": "input.n",
            "description": "Must be less than or equal to 4",
        },
        {
            "type": "enum",
            "field": "input.style",
            "description": 'style must be one of the following: "a", "b"',
        },
    ]


def test_required_null_is_a_type_error() -> None:
    assert problems({"prompt": None}) == [
        {
            "type": "invalid_type",
            "field": "input.prompt",
            "description": "Invalid type. Expected: string, given: null",
        }
    ]


@pytest.mark.parametrize("uri", ["/etc/passwd", "file:///etc/passwd", "ftp://x/y"])
def test_file_inputs_must_be_http_or_data(uri: str) -> None:
    """Cog would open a local path on the instance's disk: only http(s) and data: pass."""
    assert [p["type"] for p in problems({"prompt": "x", "image": uri})] == ["invalid_uri"]
    assert [p["field"] for p in problems({"prompt": "x", "images": ["https://a/b", uri]})] == [
        "input.images"
    ]


@pytest.mark.parametrize("uri", ["https://example.com/a.png", "data:,hello"])
def test_allowed_uris(uri: str) -> None:
    assert InputValidator(SCHEMA).clean({"prompt": "x", "image": uri})["image"] == uri


def test_bool_is_not_an_integer() -> None:
    assert problems({"prompt": "x", "n": True})[0]["type"] == "invalid_type"


# -- the plain checks that let a valid input skip jsonschema -------------------------------------

BOUND = st.one_of(
    st.integers(-5, 5), st.floats(-5, 5), st.sampled_from([0.5, 1.0, 10**30, float("inf")])
)


@st.composite
def properties(draw: st.DrawFn) -> dict[str, Any]:
    """Property schemas of the shapes Cog writes, and some it does not."""
    kind = draw(st.sampled_from(["string", "integer", "number", "boolean", "array", None]))
    prop: dict[str, Any] = {"title": "X"} if kind is None else {"type": kind, "title": "X"}
    keywords = {
        "string": ["minLength", "maxLength", "format", "pattern", "enum"],
        "integer": ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum"],
        "number": ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "nullable"],
        "boolean": ["default", "x-order"],
        "array": ["items"],
        None: ["allOf"],
    }[kind]
    fixed: dict[str, Any] = {
        "format": "uri",
        "pattern": "^a",
        "nullable": True,
        "default": False,
        "x-order": 0,
        "items": {"type": "string"},
        "allOf": [{"type": "string", "enum": ["a", "b"]}],
    }
    drawn: dict[str, st.SearchStrategy[Any]] = {
        "minLength": st.integers(0, 3),
        "maxLength": st.integers(0, 6),
        "enum": st.lists(st.sampled_from(["a", 1, 2.5]), min_size=1),
    }
    for keyword in draw(st.lists(st.sampled_from(keywords), unique=True, max_size=3)):
        prop[keyword] = fixed[keyword] if keyword in fixed else draw(drawn.get(keyword, BOUND))
    return prop


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10),
    st.integers(),
    st.sampled_from([10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.text(max_size=2), max_size=2),
)


EDGES = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
TYPED = {
    "string": st.text(max_size=8),
    "integer": st.one_of(st.integers(-6, 6), st.floats(-6, 6)),
    "number": st.one_of(st.integers(-6, 6), st.floats(-6, 6)),
    "boolean": st.booleans(),
}


@settings(max_examples=1000, deadline=None)
@given(
    st.dictionaries(st.sampled_from("abc"), properties(), min_size=1),
    st.lists(st.sampled_from("abc"), unique=True, max_size=2),
    st.data(),
)
def test_what_the_plain_checks_pass_draft_7_accepts(
    props: dict[str, Any], required: list[str], data: st.DataObject
) -> None:
    """Mostly values of the property's own type (where the bounds and enums decide), some of
    any type, some keys missing."""
    value: dict[str, Any] = {}
    for key, prop in props.items():
        typed = TYPED.get(prop.get("type") or "", VALUES)
        if edges := [prop[k] for k in EDGES if k in prop]:  # right on a bound
            typed = st.one_of(typed, st.sampled_from(edges))
        if data.draw(st.integers(0, 4)):
            value[key] = data.draw(st.one_of(typed, typed, VALUES))
    required = [r for r in required if r in props]
    schema = {"type": "object", "title": "Input", "properties": props, "required": required}
    validator = InputValidator({"components": {"schemas": {"Input": schema}}})
    if validator._passes_plain_checks(value):
        assert list(Draft7Validator(schema).iter_errors(value)) == []


@pytest.mark.parametrize(
    ("prop", "item"),
    [
        ({"type": "integer", "exclusiveMinimum": 1}, 1),
        ({"type": "number", "exclusiveMaximum": 1.5}, 1.5),
        ({"type": "integer", "minimum": 1.0}, True),
        ({"type": "number"}, float("nan")),
        ({"type": "number", "maximum": 10}, float("inf")),
        ({"type": "integer"}, 2.0),
        ({"type": "string", "maxLength": 2}, "abc"),
        ({"type": "string", "enum": ["a"]}, "b"),
        ({"type": "integer", "maximum": 1e308}, 10**400),
    ],
)
def test_the_plain_checks_turn_down_edges(prop: dict[str, Any], item: Any) -> None:
    """Right on an exclusive bound, a bool for an integer, NaN, an integral float, beyond a
    length, outside an enum, an integer beyond any float: jsonschema decides."""
    schema = {"type": "object", "properties": {"a": prop}}
    validator = InputValidator({"components": {"schemas": {"Input": schema}}})
    assert not validator._passes_plain_checks({"a": item})


def test_a_root_with_more_than_properties_goes_to_jsonschema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "minProperties": 1}
    validator = InputValidator({"components": {"schemas": {"Input": schema}}})
    with pytest.raises(errors.InputValidationFailed):
        validator.clean({})


def test_cog_shaped_valid_inputs_take_the_plain_path() -> None:
    schema = {
        "type": "object",
        "title": "Input",
        "required": ["text"],
        "properties": {
            "text": {"x-order": 0, "title": "Text", "type": "string", "description": "..."},
            "n": {"type": "integer", "default": 1, "minimum": 1.0, "maximum": 10.0},
            "t": {"type": "number", "default": 0.5, "minimum": 0.0, "maximum": 1.0},
            "seed": {"type": "integer", "nullable": True},
            "image": {"type": "string", "format": "uri"},
            "shout": {"type": "boolean", "default": False},
        },
    }
    validator = InputValidator({"components": {"schemas": {"Input": schema}}})
    value = {"text": "hi", "n": 3, "t": 0.25, "seed": 7, "image": "https://a/b", "shout": True}
    assert validator._passes_plain_checks(value)
    assert validator.clean(value) == value
    assert not validator._passes_plain_checks({"text": "hi", "n": 11})  # jsonschema says why
    assert not validator._passes_plain_checks({"n": 3})  # text is required
