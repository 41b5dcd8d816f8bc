"""Conditional-routing queries: Mongo-style operators over ``metadata``, ``params`` and ``url``.

Keys are dotted paths into the context (``metadata.user_plan``, ``params.model``); a bare value
means ``$eq``; ``$and``/``$or`` combine sub-queries (research/portkey.md §2.3).

``$regex`` runs Python's backtracking engine on the event loop, where one slow match stalls every
request of the worker: ``(a+)+$`` against 26 characters took seconds, ``a*a*a*b`` against 1,024 took
101 s, and there is no linear-time engine in the standard library. So a pattern is checked when its
config is (``regex_problem``) and refused if it can backtrack badly, and values longer than
``REGEX_MAX_INPUT`` never match; what remains (one open repeat over at most 1,024 characters) costs
at most a few milliseconds.
"""

from __future__ import annotations

import re
from typing import Any

try:
    import re._parser as _regex_parser  # Python 3.11+
except ImportError:  # pragma: no cover - older Pythons name it sre_parse
    import sre_parse as _regex_parser  # type: ignore[no-redef]

_MISSING = object()
REGEX_MAX_PATTERN = 256
REGEX_MAX_INPUT = 1024
# A repeat allowing more than this many items counts as open (``*``, ``+``, ``{n,}``, ``{1,100}``).
_OPEN_REPEAT = 16
# Nested repeats are allowed while the counts they multiply stay this small.
_NESTED_PATHS = 64
_REPEATS = frozenset({"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"})
_REFUSED = {"GROUPREF": "backreferences", "GROUPREF_EXISTS": "conditional groups", "ASSERT": "lookarounds",
            "ASSERT_NOT": "lookarounds"}


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
    if op == "$regex":  # checked by regex_problem when the config was
        return isinstance(value, str) and len(value) <= REGEX_MAX_INPUT and re.search(operand, value) is not None
    if value is _MISSING:
        return False
    try:
        return {"$gt": value > operand, "$gte": value >= operand, "$lt": value < operand, "$lte": value <= operand}[op]
    except TypeError:
        return False


def regex_problem(pattern: Any) -> str | None:
    """Why ``pattern`` may not be a ``$regex`` (None if it may): not a string, too long, invalid, or able
    to backtrack badly (nested quantifiers, more than one open repeat, backreferences, lookarounds)."""
    if not isinstance(pattern, str):
        return "must be a string"
    if len(pattern) > REGEX_MAX_PATTERN:
        return f"is {len(pattern)} characters long; at most {REGEX_MAX_PATTERN} are accepted"
    try:
        parsed = _regex_parser.parse(pattern)
    except re.error as exc:
        return f"is not a valid regular expression: {exc}"
    found = _Backtracking()
    found.walk(parsed, enclosing=1)
    return found.problem


class _Backtracking:
    """Walks a parsed pattern for the shapes that make a backtracking engine slow. ``enclosing`` is the
    product of the counts the repeats around an item allow: small nestings such as an IPv4 address's
    are cheap; an open repeat inside a repeat, or an alternation inside an open one, is exponential."""

    def __init__(self) -> None:
        self.problem: str | None = None
        self._open_repeats = 0

    def walk(self, items: Any, enclosing: int) -> None:
        for op, argument in items:
            name = getattr(op, "name", str(op))
            if self.problem is not None:
                return
            if name in _REFUSED:
                self.problem = f"uses {_REFUSED[name]}, which the gateway does not run"
            elif name in _REPEATS:
                self._repeat(argument, enclosing)
            elif name == "BRANCH":
                if enclosing > _OPEN_REPEAT:
                    self.problem = "repeats an alternation, e.g. (a|ab)*: it can take exponential time"
                for branch in argument[1]:
                    self.walk(branch, enclosing)
            elif name == "SUBPATTERN":
                self.walk(argument[-1], enclosing)
            elif name == "ATOMIC_GROUP":
                self.walk(argument, enclosing)

    def _repeat(self, argument: Any, enclosing: int) -> None:
        _, high, body = argument
        # The ways to split a value among nested repeats grow as high ** enclosing: 27 for an IPv4 address.
        if enclosing > 1 and high > 1 and (max(enclosing, high) > _OPEN_REPEAT or high ** enclosing > _NESTED_PATHS):
            self.problem = "nests quantifiers, e.g. (a+)+: it can take exponential time"
            return
        if high > _OPEN_REPEAT:
            self._open_repeats += 1
            if self._open_repeats > 1:
                self.problem = ("has more than one open repeat (*, +, {n,}): a backtracking match can take "
                                "polynomial time in the value's length; anchor on literals or use one repeat")
                return
        self.walk(body, enclosing * max(high, 1))
