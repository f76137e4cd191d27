"""Check a prediction's ``input`` against the version's OpenAPI ``Input`` schema before dispatch.

Errors come back as Replicate's ``invalid_fields`` entries (``type``, ``field``, ``description``).
Unknown keys are dropped (Cog strips them too), an explicit ``null`` for an optional input means
"use the default" (coglet would reject it), and file inputs (``format: uri``) must be ``http(s)``
or ``data:`` URLs: Cog would otherwise open a local path on the instance's disk.

Most inputs are valid and most Cog schemas are plain: each input a string, integer, number or
boolean, perhaps with bounds. ``_plain_check`` turns such a property into a few comparisons, and
an input whose every key has one and passes it skips jsonschema (about 25 us of a trivial
prediction's gateway time). Anything else (enums, arrays, a failing value) goes to jsonschema,
which stays the judge and writes every error message.
"""

import math
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError

from server import errors

URI_SCHEMES = ("http", "https", "data")

ERROR_TYPES = {
    "required": "required",
    "enum": "enum",
    "maximum": "number_lte",
    "minimum": "number_gte",
    "exclusiveMaximum": "number_lt",
    "exclusiveMinimum": "number_gt",
    "maxLength": "string_lte",
    "minLength": "string_gte",
    "pattern": "pattern",
    "type": "invalid_type",
}


class InputValidator:
    def __init__(self, openapi_schema: dict[str, Any]) -> None:
        schemas = openapi_schema.get("components", {}).get("schemas", {})
        self.input_schema: dict[str, Any] = schemas.get("Input", {"type": "object"})
        self.properties: dict[str, Any] = self.input_schema.get("properties", {})
        self.required = set(self.input_schema.get("required", []))
        # The Input schema itself as the root (its enums' ``#/components/schemas/...`` refs
        # still resolve against it): a ``$ref`` root costs a registry lookup per call, about
        # two thirds of a trivial input's 25 us.
        self._validator = Draft7Validator({**self.input_schema, "components": {"schemas": schemas}})
        self._uri_fields = {
            name
            for name, prop in self.properties.items()
            if prop.get("format") == "uri" or prop.get("items", {}).get("format") == "uri"
        }
        self._plain_root = (
            self.input_schema.keys() <= PLAIN_ROOT_KEYWORDS
            and self.input_schema.get("type", "object") == "object"
        )
        self._plain: dict[str, Check] = {}
        if self._plain_root:
            for name, prop in self.properties.items():
                check = _plain_check(prop)
                if check is not None:
                    self._plain[name] = check

    def clean(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The input to dispatch, or ``InputValidationFailed`` listing every problem."""
        value = {
            k: v
            for k, v in raw.items()
            if k in self.properties and not (v is None and k not in self.required)
        }
        if self._passes_plain_checks(value):
            problems = []
        else:
            problems = [self._describe(e) for e in self._validator.iter_errors(value)]
        problems += self._check_uris(value)
        if problems:
            problems.sort(key=lambda p: p["field"])
            raise errors.InputValidationFailed(problems)
        return value

    def _passes_plain_checks(self, value: dict[str, Any]) -> bool:
        """True only if jsonschema would find nothing wrong: every key has a plain check that
        it passes, and nothing required is missing."""
        if not self._plain_root:  # the root says more than its properties (even of {})
            return False
        plain = self._plain
        for key, item in value.items():
            check = plain.get(key)
            if check is None or not check(item):
                return False
        return self.required <= value.keys()

    def _describe(self, error: ValidationError) -> dict[str, str]:
        path = [str(p) for p in error.absolute_path]
        field = ".".join(["input", *path])
        kind = ERROR_TYPES.get(str(error.validator), str(error.validator))
        name = path[-1] if path else "input"
        expected: Any = error.validator_value
        if error.validator == "required":
            present = error.instance if isinstance(error.instance, dict) else {}
            missing = [r for r in expected if r not in present]
            return {
                "type": kind,
                "field": field,
                "description": f"{', '.join(missing)} is required",
            }
        descriptions = {
            "enum": lambda: (
                f"{name} must be one of the following: " + ", ".join(f'"{c}"' for c in expected)
            ),
            "maximum": lambda: f"Must be less than or equal to {_num(error.validator_value)}",
            "minimum": lambda: f"Must be greater than or equal to {_num(error.validator_value)}",
            "maxLength": lambda: f"String length must be at most {error.validator_value}",
            "minLength": lambda: f"String length must be at least {error.validator_value}",
            "pattern": lambda: f"Does not match pattern {error.validator_value}",
            "type": lambda: (
                f"Invalid type. Expected: {error.validator_value}, "
                f"given: {_json_type(error.instance)}"
            ),
        }
        make = descriptions.get(str(error.validator))
        return {"type": kind, "field": field, "description": make() if make else error.message}

    def _check_uris(self, value: dict[str, Any]) -> list[dict[str, str]]:
        problems = []
        for name in self._uri_fields & value.keys():
            items = value[name] if isinstance(value[name], list) else [value[name]]
            for item in items:
                if isinstance(item, str) and urlparse(item).scheme not in URI_SCHEMES:
                    problems.append(
                        {
                            "type": "invalid_uri",
                            "field": f"input.{name}",
                            "description": "Must be an http(s) URL or a data: URI",
                        }
                    )
        return problems


Check = Callable[[Any], bool]

PLAIN_ROOT_KEYWORDS = frozenset({"type", "title", "description", "properties", "required"})
ANNOTATIONS = frozenset({"title", "description", "default", "x-order", "nullable", "format"})
"""Keywords Draft 7 does not assert (without a format checker, ``format`` is one of them;
``nullable`` is OpenAPI's, unknown to Draft 7; ``uri`` formats are checked apart)."""
BOUNDS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
LENGTHS = frozenset({"minLength", "maxLength"})


def _plain_check(prop: dict[str, Any]) -> Check | None:
    """A check that passes only values Draft 7 accepts for ``prop``, or None when ``prop`` uses
    anything beyond a type with bounds (jsonschema handles it). It may turn down what Draft 7
    would accept (a float that is an integer, say): jsonschema then has the last word."""
    kind = prop.get("type")
    rest = prop.keys() - ANNOTATIONS - {"type"}
    if kind == "string" and rest <= LENGTHS and _values_are(prop, LENGTHS, _int):
        low, high = prop.get("minLength", 0), prop.get("maxLength")
        return lambda v: type(v) is str and low <= len(v) and (high is None or len(v) <= high)
    if kind in ("integer", "number") and rest <= BOUNDS and _values_are(prop, BOUNDS, _finite):
        floats = kind == "number"
        low, high = prop.get("minimum"), prop.get("maximum")
        above, below = prop.get("exclusiveMinimum"), prop.get("exclusiveMaximum")

        def number(v: Any) -> bool:
            return (
                (type(v) is int or (floats and type(v) is float and math.isfinite(v)))
                and (low is None or v >= low)
                and (high is None or v <= high)
                and (above is None or v > above)
                and (below is None or v < below)
            )

        return number
    if kind == "boolean" and not rest:
        return lambda v: type(v) is bool
    return None


def _values_are(prop: dict[str, Any], keys: frozenset[str], accept: Check) -> bool:
    """Whether every keyword of ``keys`` that ``prop`` has holds a value ``accept`` takes."""
    return all(accept(prop[k]) for k in keys & prop.keys())


def _int(value: Any) -> bool:
    return type(value) is int


def _finite(value: Any) -> bool:
    return _int(value) or (type(value) is float and math.isfinite(value))


def _num(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if value is None:
        return "null"
    return "object"
