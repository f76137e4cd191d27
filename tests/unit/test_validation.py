"""Input validation against a version's OpenAPI Input schema."""

from typing import Any

import pytest

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
