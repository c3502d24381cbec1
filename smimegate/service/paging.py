"""Search, sort and paging of a listing (certificates, roots, CRLs ...), the same for the web
pages and the REST API: a case-insensitive substring in any of the searched keys; sorted by
one key's text, in either order; a slice. Listings are small enough (thousands of rows) to
do this over the described rows rather than in SQL, and so every front end sees one order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

MAX_LIMIT = 1000  # one API page; more is asked for with offset
MAX_QUERY = 200


def text_of(value: Any) -> str:
    """What search and sort compare: lists joined, None empty, lower case."""
    if isinstance(value, list | tuple):
        return ", ".join(text_of(v) for v in value)
    return "" if value is None else str(value).lower()


def matching(rows: Iterable[dict[str, Any]], q: str,
             keys: Sequence[str]) -> list[dict[str, Any]]:
    """The rows with q (trimmed, any case) in one of keys; every row when q is empty."""
    wanted = q.strip().lower()
    if not wanted:
        return list(rows)
    return [r for r in rows if any(wanted in text_of(r.get(k)) for k in keys)]


def ordered(rows: Iterable[dict[str, Any]], key: str,
            descending: bool = False) -> list[dict[str, Any]]:
    """The rows sorted by key: numbers as numbers, anything else by its text (ISO dates sort
    as dates); stable for equal keys."""
    def rank(row: dict[str, Any]) -> tuple[int, float, str]:
        value = row.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return (0, value, "")
        return (1, 0, text_of(value))

    return sorted(rows, key=rank, reverse=descending)
