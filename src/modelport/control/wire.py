"""How control-plane records go on the wire: Portkey's list envelope and paging, and its time format.

Portkey pages admin lists by number (``current_page`` from 0, ``page_size``) and answers
``{"object": "list", "total": N, "data": [...]}`` (docs: "List Virtual Keys", "List API Keys").
The store pages by cursor; admin lists are small (keys, providers, configs: hundreds, not millions),
so a page is cut from the whole list, which also gives the exact ``total`` Portkey reports.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable, Sequence, TypeVar

from ..store import Page
from .schema import Shape, integer

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50  # Portkey's default ("Page size, default to 50")
MAX_PAGE_SIZE = 1000
_FETCH = 1000  # the store's largest page

PAGING = Shape((
    integer("current_page", "Page number, from 0.", minimum=0, maximum=10**6, default=0),
    integer("page_size", "Records per page.", minimum=1, maximum=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE),
))


def collect(fetch: Callable[..., Page[T]]) -> list[T]:
    """Every record a cursor-paged store call returns; ``fetch(limit=, cursor=)``."""
    items: list[T] = []
    cursor = None
    while True:
        page = fetch(limit=_FETCH, cursor=cursor)
        items.extend(page.items)
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor


def listing(records: Sequence[T], query: dict[str, Any], render: Callable[[T], dict[str, Any]]) -> dict[str, Any]:
    size = query.get("page_size", DEFAULT_PAGE_SIZE)
    start = query.get("current_page", 0) * size
    return {"object": "list", "total": len(records), "data": [render(r) for r in records[start:start + size]]}


def listing_schema(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "object": {"const": "list"},
            "total": {"type": "integer", "minimum": 0},
            "data": {"type": "array", "items": item},
        },
        "required": ["object", "total", "data"],
    }


def iso(moment: datetime | None) -> str | None:
    """``2024-05-12T21:37:06.000Z``, the form Portkey's API uses for times."""
    if moment is None:
        return None
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


TIME = {"type": ["string", "null"], "format": "date-time"}
DELETED = {"type": "object", "description": "An empty object, as Portkey answers a delete."}


USAGE = {
    "type": "object",
    "description": "Where each enforced rate limit stands in its current window, on this node's counters.",
    "properties": {"rate_limits": {"type": "array", "items": {
        "type": "object",
        "properties": {"type": {"enum": ["requests", "tokens"]}, "unit": {"type": "string"}, "value": {"type": "integer"},
                       "used": {"type": "integer"}, "remaining": {"type": "integer"}, "resets_at": TIME},
        "required": ["type", "unit", "value", "used", "remaining", "resets_at"],
    }}, "budget": {"anyOf": [{"type": "null"}, {
        "type": "object",
        "description": "used includes what requests in flight have reserved; USD for cost budgets",
        "properties": {"type": {"enum": ["cost", "tokens"]}, "credit_limit": {"type": "number"},
                       "used": {"type": "number"}, "remaining": {"type": "number"}, "period_ends_at": TIME},
        "required": ["type", "credit_limit", "used", "remaining", "period_ends_at"],
    }]}},
}  # fmt: skip


def limit_usage(request: Any, rules: Sequence[Any], token_limits: Sequence[Any], budget: Any) -> dict[str, Any]:
    """``{"rate_limits": [...], "budget": {...} | null}`` for a GET of one key or provider."""
    limiter = request.limiter
    if limiter is None:
        return {"rate_limits": [], "budget": None}
    shown = (limiter.usage(rules) if rules else []) + (limiter.token_usage(token_limits) if token_limits else [])
    return {"rate_limits": shown, "budget": limiter.budget_usage(budget)}
