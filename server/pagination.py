"""Cursor pagination in Replicate's shape: ``{"next", "previous", "results"}``, newest first.

Cursors are opaque (base64 of direction, timestamp and id) and ``next``/``previous`` are absolute
URLs, because the JS client resolves a relative ``next`` against its ``/v1`` base.
"""

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from server import errors

T = TypeVar("T")
PAGE_SIZE = 100


@dataclass
class Page(Generic[T]):
    results: Sequence[T]
    next: str | None
    previous: str | None

    def body(self, results: Sequence[Any]) -> dict[str, Any]:
        """The wire shape, with ``results`` already rendered."""
        return {"next": self.next, "previous": self.previous, "results": list(results)}


def _encode(direction: str, created_at: datetime, ident: Any) -> str:
    raw = json.dumps([direction, created_at.isoformat(), ident]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[str, datetime, Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        direction, stamp, ident = json.loads(base64.urlsafe_b64decode(padded))
        if direction not in ("next", "prev"):
            raise ValueError(direction)
        return direction, datetime.fromisoformat(stamp), ident
    except (ValueError, TypeError) as exc:
        raise errors.BadRequest("The cursor is not valid.") from exc


async def paginate(
    session: AsyncSession,
    stmt: Select[Any],
    *,
    cursor: str | None,
    url_for: Callable[[str], str],
    limit: int | None = None,
) -> Page[Any]:
    """Run ``stmt`` (a select of one table's rows) one page at a time, newest first, keyed by
    the table's ``created_at`` and ``id`` columns."""
    entity = stmt.column_descriptions[0]["entity"]
    created: InstrumentedAttribute[Any] = entity.created_at
    ident: InstrumentedAttribute[Any] = entity.id
    limit = limit or PAGE_SIZE
    direction = "next"
    if cursor:
        direction, stamp, last = _decode(cursor)
        if direction == "next":
            stmt = stmt.where(or_(created < stamp, and_(created == stamp, ident < last)))
        else:
            stmt = stmt.where(or_(created > stamp, and_(created == stamp, ident > last)))
    if direction == "next":
        stmt = stmt.order_by(created.desc(), ident.desc())
    else:
        stmt = stmt.order_by(created.asc(), ident.asc())
    rows = list((await session.scalars(stmt.limit(limit + 1))).all())
    more = len(rows) > limit
    rows = rows[:limit]
    if direction == "prev":
        rows.reverse()
    has_newer = bool(cursor) and (direction == "next" or more)
    has_older = more if direction == "next" else True

    def key(row: Any) -> tuple[datetime, Any]:
        return getattr(row, created.key), getattr(row, ident.key)

    next_url = url_for(_encode("next", *key(rows[-1]))) if rows and has_older else None
    prev_url = url_for(_encode("prev", *key(rows[0]))) if rows and has_newer else None
    return Page(results=rows, next=next_url, previous=prev_url)
