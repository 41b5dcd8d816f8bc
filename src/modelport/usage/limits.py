"""What a limit charges against the shared counters: UTC-aligned windows, budgets and their periods.

Pure arithmetic, below the store and the gateway so both the request path (which reserves) and the log
service (which settles) name a counter the same way. A counter is named by a 16-byte key: 8 bytes of a
digest naming the limit, 8 bytes of its window's start.

A budget (Portkey's ``usage_limits``) counts nano-dollars (type ``cost``) or tokens (type ``tokens``)
over a period: a calendar month or ISO week (``periodic_reset``), a run of ``periodic_reset_days`` days
from the budget's anchor, or, with neither, one period from the anchor on. The anchor is when usage
was last reset (``reset_usage``) or the record was made, and is part of the counter's name, so a reset
starts a fresh counter on every process at once.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, NamedTuple

from .pricing import PER_MILLION, ModelPrice

NANO_USD = 1_000_000_000  # cost budgets count whole nano-dollars: exact integers in every counter
_DAY = 86400
MONDAY = 4 * _DAY  # the epoch was a Thursday; ISO weeks start on Monday 1970-01-05
_FOREVER = 100 * 365 * _DAY  # a budget with no reset: one period, a century long
WINDOW_SECONDS = {"rpm": 60, "rph": 3600, "rpd": _DAY, "rpw": 7 * _DAY}
WINDOW_WORDS = {"rpm": "minute", "rph": "hour", "rpd": "day", "rpw": "week"}


class Charge(NamedTuple):
    key: bytes  # 16 bytes: names the limit and the window
    limit: int  # the window admits while its count stays at or below this
    ends_at: int  # epoch seconds when the window ends
    amount: int = 1  # what this request adds: 1 request, a token or nano-dollar reservation


def window_key(base: bytes, start: int) -> bytes:
    return base + start.to_bytes(8, "little", signed=True)


def digest(name: str) -> bytes:
    return hashlib.blake2b(name.encode(), digest_size=8).digest()


def aligned_window(length: int, now: float, offset: int = 0) -> tuple[int, int]:
    start = int((now - offset) // length) * length + offset
    return start, start + length


def rate_window(unit: str, now: float) -> tuple[int, int]:
    """The UTC-aligned minute, hour, day or ISO week holding ``now``."""
    return aligned_window(WINDOW_SECONDS[unit], now, MONDAY if unit == "rpw" else 0)


@dataclass(frozen=True, slots=True)
class Budget:
    owner: str  # "key:<id>" or "provider:<slug>"
    who: str  # for people
    kind: str  # "cost" | "tokens"
    limit: int  # in nano-dollars or tokens
    anchor: int  # epoch seconds: the last reset, or when the record was made
    reset: str | None = None  # "monthly" | "weekly" | None
    reset_days: int | None = None
    alert_at: int | None = None  # nano-dollars or tokens
    window: str | None = None  # a token rate limit's unit (rpm, rph, rpd, rpw): answered with 429, not 412
    position: int = 0  # a token rate limit's index in its owner's rate_limits
    base: bytes = field(init=False, repr=False)
    _current: list[tuple[float, int, bytes]] = field(init=False, repr=False, compare=False)  # the last period

    def __post_init__(self) -> None:
        name = f"budget|{self.owner}|{self.kind}|{self.anchor}|{self.window}|{self.position}"
        object.__setattr__(self, "base", digest(name))
        object.__setattr__(self, "_current", [(0.0, 0, b"")])

    def period(self, now: float) -> tuple[int, int]:
        if self.window is not None:
            return rate_window(self.window, now)
        if self.reset == "monthly":
            moment = datetime.fromtimestamp(now, timezone.utc)
            start = datetime(moment.year, moment.month, 1, tzinfo=timezone.utc)
            end = datetime(moment.year + moment.month // 12, moment.month % 12 + 1, 1, tzinfo=timezone.utc)
            return int(start.timestamp()), int(end.timestamp())
        if self.reset == "weekly":
            return aligned_window(7 * _DAY, now, MONDAY)
        length = self.reset_days * _DAY if self.reset_days else _FOREVER
        return aligned_window(length, now, self.anchor % length)

    def charge(self, now: float, amount: int) -> Charge:
        start, end, key = self._current[0]  # the period's key, named once per period rather than per request
        if not start <= now < end:
            start, end = self.period(now)
            key = window_key(self.base, start)
            self._current[0] = (start, end, key)
        return Charge(key, self.limit, end, amount)

    def alert_charge(self, now: float) -> Charge:
        """A once-per-period flag: admitted the first time only, so one process raises the alert."""
        start, end = self.period(now)
        return Charge(window_key(digest(f"alert|{self.owner}|{self.anchor}"), start), 1, end)

    def show(self, amount: int) -> str:
        return f"${amount / NANO_USD:.6f}".rstrip("0").rstrip(".") if self.kind == "cost" else f"{amount} tokens"

    def describe(self) -> dict[str, Any]:
        limit = self.limit / NANO_USD if self.kind == "cost" else self.limit
        return {"owner": self.owner, "type": self.kind, "credit_limit": limit,
                "periodic_reset": self.reset, "periodic_reset_days": self.reset_days}


def key_who(key_id: str, name: str) -> str:
    return f"gateway API key {key_id} ({name})"


def provider_who(slug: str) -> str:
    return f"provider @{slug}"


def key_budget(key_id: str, name: str, stored: Any, anchor: datetime | None) -> Budget | None:
    return budget_from(f"key:{key_id}", key_who(key_id, name), stored, _epoch(anchor))


def provider_budget(slug: str, stored: Any, anchor: datetime | None) -> Budget | None:
    return budget_from(f"provider:{slug}", provider_who(slug), stored, _epoch(anchor))


def _epoch(moment: datetime | None) -> float:
    return moment.timestamp() if moment is not None else 0.0


def budget_from(owner: str, who: str, stored: Mapping[str, Any] | None, anchor: float) -> Budget | None:
    """The enforced budget of a stored ``usage_limits`` (validated on the way in); None when unset."""
    if not stored or not stored.get("credit_limit"):
        return None
    kind = stored.get("type", "cost")
    scale = NANO_USD if kind == "cost" else 1
    alert = stored.get("alert_threshold")
    return Budget(owner, who, kind, int(round(stored["credit_limit"] * scale)), int(anchor),
                  stored.get("periodic_reset"), stored.get("periodic_reset_days"),
                  int(round(alert * scale)) if alert else None)


def token_limits(owner: str, who: str, stored: Any) -> tuple[Budget, ...]:
    """The ``type: tokens`` rules of a stored ``rate_limits`` list: budgets over a rate window, reserved
    and settled like any budget (a limit of 0 disables its rule)."""
    return tuple(
        Budget(owner, who, "tokens", int(item["value"]), 0, window=item["unit"], position=position)
        for position, item in enumerate(stored or ())
        if item.get("type") == "tokens" and item.get("value")
    )


def key_token_limits(key_id: str, name: str, stored: Any) -> tuple[Budget, ...]:
    return token_limits(f"key:{key_id}", key_who(key_id, name), stored)


def provider_token_limits(slug: str, stored: Any) -> tuple[Budget, ...]:
    return token_limits(f"provider:{slug}", provider_who(slug), stored)


class CostBound(NamedTuple):
    """The highest rates a model's price lists (USD per million tokens), and its price per request."""

    input: float
    output: float
    per_request: float


def cost_bound(price: ModelPrice | None) -> CostBound | None:
    """What bounds a request's cost under ``price``; None when nothing can (per image or second, an estimate)."""
    if price is None or price.per_image or price.per_second or price.estimate:
        return None
    if price.input is None and price.output is None and not price.per_request:
        return None
    rates_in = [r for r in (price.input, price.cache_write, price.cache_write_1h, *(t.input for t in price.tiers)) if r]
    rates_out = [r for r in (price.output, *(t.output for t in price.tiers)) if r]
    return CostBound(max(rates_in, default=0.0), max(rates_out, default=0.0), price.per_request or 0.0)


def reservation(kind: str, prompt_bound: int, output_bound: int, bound: CostBound | None) -> int | None:
    """The most a request can add to a budget; None when a cost cannot be bounded (no usable price).

    ``prompt_bound`` bounds the input tokens (a token is at least one byte of the request body);
    ``output_bound`` is the request's ``max_tokens`` or the default allowance."""
    if kind == "tokens":
        return prompt_bound + output_bound
    if bound is None:
        return None
    usd = (prompt_bound * bound.input + output_bound * bound.output) / PER_MILLION + bound.per_request
    return math.ceil(usd * NANO_USD)


def spent(kind: str, cost_usd: float | None, total_tokens: int | None) -> int:
    """What a finished request really added, in the budget's unit (an unknown cost adds nothing)."""
    if kind == "tokens":
        return int(total_tokens or 0)
    return math.ceil((cost_usd or 0.0) * NANO_USD)
