"""Step 4, route: turn the request into a tree of targets and walk it (Portkey config semantics).

A config (``x-portkey-config``: inline JSON or a saved config id) is a tree: leaves are targets
(provider + credential), inner nodes have a strategy — ``single``, ``fallback``, ``loadbalance``,
``conditional``. Settings (``retry``, ``request_timeout``, ``override_params``, ``custom_host``,
``forward_headers``, ``cache``) are inherited down the tree unless a child sets its own
(research/portkey.md §2.2). ``index`` is the JSON path of each node (``config.targets[1]``), reported
in ``x-portkey-last-used-option-index``. Without a config the tree is one leaf (index ``""``).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, Union

import orjson

from ..errors import BadRequest, GatewayError
from ..providers.base import Exchange
from .resolve import Resolved

DEFAULT_RETRY_CODES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 0
    on_status_codes: frozenset[int] = DEFAULT_RETRY_CODES
    use_retry_after_header: bool = True  # a provider's Retry-After wins over our backoff unless turned off
    max_retry_after: float = 60.0  # a longer Retry-After ends the retries at once: the caller decides


@dataclass(frozen=True, slots=True)
class CachePolicy:
    mode: str = "simple"
    max_age: float | None = None  # seconds


@dataclass(frozen=True, slots=True)
class Leaf:
    index: str
    resolved: Resolved
    retry: RetryPolicy = RetryPolicy()
    timeout: float | None = None
    override_params: dict[str, Any] = field(default_factory=dict)
    forward_headers: frozenset[bytes] = frozenset()
    cache: CachePolicy | None = None
    weight: float = 1.0
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Branch:
    index: str
    mode: str
    children: tuple["Node", ...]
    on_status_codes: frozenset[int] | None = None
    conditions: tuple[tuple[dict[str, Any], str], ...] = ()
    default: str | None = None
    weight: float = 1.0
    name: str | None = None
    sticky: Sticky | None = None  # loadbalance: the same hash fields pick the same target


@dataclass(frozen=True, slots=True)
class Sticky:
    """Portkey's ``strategy.sticky``: requests whose ``hash_fields`` agree go to one target, for the
    current ``ttl`` window (aligned to the UTC clock; none: for as long as the targets stay the same)."""

    hash_fields: tuple[str, ...]
    ttl: float | None = None


Node = Union[Leaf, Branch]


@dataclass(slots=True)
class Outcome:
    """The result of trying one leaf: an upstream response (still open) or a gateway error, with what the
    attempt made that answering needs (gateway/pipeline.py ``Gateway.respond`` reads only this)."""

    leaf: Leaf
    status: int
    response: Any = None  # aiohttp.ClientResponse, or a cached/ready response object
    error: GatewayError | None = None
    retries: int = 0
    retry_exhausted: bool = False
    translator: Any = None  # the unified call (gateway/unified.py UnifiedCall) that turns the answer back
    exchange: Exchange | None = None  # the proxied request as its provider's policy saw it (it screens the answer)
    cache_key: str | None = None  # where a good answer is stored, when the request asked for the cache
    cache_max_age: float | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def release(self) -> None:
        if self.response is not None and hasattr(self.response, "release"):
            self.response.release()


class Walk(Protocol):
    """How to try a leaf, and whether an outcome may be retried (the pipeline knows the method:
    a proxied POST that may have created something upstream is only retried when the status proves
    it was not, e.g. 429)."""

    async def attempt(self, leaf: Leaf, retry: int) -> Outcome: ...

    def may_retry(self, outcome: Outcome) -> bool: ...

    def routing_context(self) -> dict[str, Any]:
        """Built only if a conditional node asks (it parses the body)."""
        ...


async def execute(node: Node, walk: Walk) -> Outcome:
    """Walk the tree; return the outcome that answers the client."""
    if isinstance(node, Leaf):
        return await _with_retries(node, walk)
    if node.mode == "single":
        return await execute(node.children[0], walk)
    if node.mode == "loadbalance":
        picked = _sticky_pick(node, walk.routing_context()) if node.sticky else None
        return await execute(picked or _weighted_pick(node), walk)
    if node.mode == "conditional":
        return await execute(_conditional_pick(node, walk.routing_context()), walk)
    return await _fallback(node, walk)


async def _fallback(node: Branch, walk: Walk) -> Outcome:
    outcome: Outcome | None = None
    for position, child in enumerate(node.children):
        if outcome is not None:
            outcome.release()
        outcome = await execute(child, walk)
        last = position == len(node.children) - 1
        if last or _fallback_stops(node, outcome):
            return outcome
    assert outcome is not None
    return outcome


def _fallback_stops(node: Branch, outcome: Outcome) -> bool:
    if outcome.error is not None and outcome.error.status < 500 and outcome.error.status not in (412, 429):
        return True  # the gateway refused the request itself (bad input): another target won't help
    if node.on_status_codes is not None:
        return outcome.status not in node.on_status_codes
    return outcome.ok


def _weighted_pick(node: Branch) -> Node:
    weights = [child.weight for child in node.children]
    return random.choices(node.children, weights=weights, k=1)[0]


def _sticky_pick(node: Branch, context: dict[str, Any]) -> Node | None:
    """Weighted rendezvous hashing over the hash fields' values: the same values pick the same target on
    every worker and node with no shared state, in proportion to the weights, and removing a target
    moves only its own share. None (a weighted random pick) when the request has none of the fields."""
    from .conditions import lookup

    sticky = node.sticky
    assert sticky is not None
    values = [lookup(context, field) for field in sticky.hash_fields]
    if all(value is None for value in values):
        return None
    window = int(time.time() // sticky.ttl) if sticky.ttl else 0
    seed = orjson.dumps([values, window], option=orjson.OPT_SORT_KEYS)

    def score(child: Node) -> float:
        digest = hashlib.blake2b(seed + child.index.encode(), digest_size=8).digest()
        uniform = (int.from_bytes(digest, "big") + 1) / (2**64 + 1)  # in (0, 1)
        return -math.log(uniform) / child.weight

    return min((child for child in node.children if child.weight > 0), key=score)


async def _with_retries(leaf: Leaf, walk: Walk) -> Outcome:
    retries = 0
    while True:
        outcome = await walk.attempt(leaf, retries)
        outcome.retries = retries
        if retries >= leaf.retry.attempts or outcome.status not in leaf.retry.on_status_codes:
            if retries and retries >= leaf.retry.attempts and outcome.status in leaf.retry.on_status_codes:
                outcome.retry_exhausted = True
            return outcome
        if not walk.may_retry(outcome):
            return outcome
        delay = _backoff(retries, leaf.retry, outcome)
        if delay is None:
            outcome.retry_exhausted = True
            return outcome
        outcome.release()
        await asyncio.sleep(delay)
        retries += 1


def _backoff(retries: int, policy: RetryPolicy, outcome: Outcome) -> float | None:
    """Exponential backoff with full jitter; a Retry-After header wins when asked to honour it."""
    if policy.use_retry_after_header and outcome.response is not None:
        hinted = retry_after_seconds(getattr(outcome.response, "headers", {}))
        if hinted is not None:
            return hinted if hinted <= policy.max_retry_after else None
    base = min(0.1 * (2**retries), 4.0)
    return random.uniform(base / 2, base)


def retry_after_seconds(headers: Any) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("x-ms-retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name) if headers else None
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                return _http_date_delay(value)
    return None


def _http_date_delay(value: str) -> float | None:
    from datetime import datetime, timezone
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _conditional_pick(node: Branch, context: dict[str, Any]) -> Node:
    from .conditions import matches

    by_name = {child.name: child for child in node.children if child.name}
    for query, then in node.conditions:
        if matches(query, context):
            return by_name[then]
    if node.default is not None:
        return by_name[node.default]
    raise BadRequest("no conditional routing rule matched this request and the config has no default target",
                     code="no_route")
