"""JSON on the hot path: orjson where it gives the same answer, the standard library elsewhere.

A trivial prediction is encoded or decoded about ten times in the gateway (the request body,
the body sent to Cog, Cog's events, the JSON columns, the response, the log lines); with the
standard library that was about 5 % of the gateway's CPU at 16 clients (README, "Gateway
figures"). orjson is several times faster, but it differs from ``json`` in a few places, so:

- ``loads`` reads integers of more than 18 digits with ``json`` (orjson turns integers beyond
  64 bits into floats, silently losing digits), and text orjson refuses (``NaN``, lone
  surrogates, numbers beyond a double) also with ``json``, so whatever ``json`` accepted is
  still accepted and read the same way;
- ``dumps`` falls back to ``json`` for what orjson refuses (integers beyond 64 bits, keys that
  are not strings); it writes non-ASCII as UTF-8 and no spaces. Where ``json`` would write
  ``NaN`` or ``Infinity`` (not JSON), orjson writes ``null``, which every client can read.
"""

import json
import re
from typing import Any

import orjson
from starlette.responses import JSONResponse as _StarletteJSONResponse

# Any run of 19 or more digits (also inside a string: then json only reads it, correctly).
_LONG_DIGITS = re.compile(rb"[0-9]{19}")
_LONG_DIGITS_STR = re.compile(r"[0-9]{19}")


def loads(data: str | bytes) -> Any:
    """``json.loads``, faster."""
    long = _LONG_DIGITS_STR.search(data) if isinstance(data, str) else _LONG_DIGITS.search(data)
    if long is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def dumpb(value: Any, *, sort_keys: bool = False) -> bytes:
    """Compact JSON as UTF-8 bytes."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
    except TypeError:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys)
        return text.encode()


def dumps(value: Any, **_: Any) -> str:
    """Compact JSON text (keyword arguments are accepted and ignored, for callers such as
    SQLAlchemy and structlog that pass their own)."""
    return dumpb(value).decode()


def log_dumps(value: Any, **_: Any) -> str:
    """For log lines: what JSON cannot hold is written as its ``repr``."""
    try:
        return orjson.dumps(value, default=repr).decode()
    except TypeError:
        return json.dumps(value, default=repr, ensure_ascii=False)


class JSONResponse(_StarletteJSONResponse):
    """Starlette's ``JSONResponse`` rendered with ``dumpb``."""

    def render(self, content: Any) -> bytes:
        return dumpb(content)
