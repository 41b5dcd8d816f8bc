"""Conditional-routing queries: Mongo-style operators over ``metadata``, ``params`` and ``url``.

Keys are dotted paths into the context (``metadata.user_plan``, ``params.model``); a bare value
means ``$eq``; ``$and``/``$or`` combine sub-queries (research/portkey.md §2.3).
"""

from __future__ import annotations

import re
from typing import Any

_MISSING = object()


def matches(query: dict[str, Any], context: dict[str, Any]) -> bool:
    for key, condition in query.items():
        if key == "$and":
            if not all(matches(sub, context) for sub in condition):
                return False
        elif key == "$or":
            if not any(matches(sub, context) for sub in condition):
                return False
        elif not _holds(_lookup(context, key), condition):
            return False
    return True


def lookup(context: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted path (``metadata.user``), or None when there is none."""
    value = _lookup(context, dotted)
    return None if value is _MISSING else value


def _lookup(context: dict[str, Any], dotted: str) -> Any:
    value: Any = context
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _holds(value: Any, condition: Any) -> bool:
    if not isinstance(condition, dict):
        return value is not _MISSING and value == condition
    return all(_operator(op, value, operand) for op, operand in condition.items())


def _operator(op: str, value: Any, operand: Any) -> bool:
    if op == "$eq":
        return value is not _MISSING and value == operand
    if op == "$ne":
        return value is _MISSING or value != operand
    if op == "$in":
        return value is not _MISSING and value in operand
    if op == "$nin":
        return value is _MISSING or value not in operand
    if op == "$regex":
        return isinstance(value, str) and re.search(operand, value) is not None
    if value is _MISSING:
        return False
    try:
        return {"$gt": value > operand, "$gte": value >= operand, "$lt": value < operand, "$lte": value <= operand}[op]
    except TypeError:
        return False
