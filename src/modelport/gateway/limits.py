"""Request rate limits on gateway API keys and stored providers (Portkey's ``rate_limits``).

A key's limits count the requests it makes to the gateway (checked once, right after authentication);
a provider's limits count the requests the gateway sends to it (checked per attempt, just before the
upstream call, so a fallback moves on to the next target and a cache hit costs nothing). Windows are
fixed and aligned to the UTC clock — minute, hour, day, ISO week — so "N per window" has one meaning
on every worker; the counters behind them are exact across a node's workers (``store.counters``).
A refused request is not counted. A limit of 0 disables its rule.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, NamedTuple, Sequence

import orjson

from ..store.counters import Admission, Charge, Counters, CountersFull
from .errors import GatewayError, RateLimited

WINDOW_SECONDS = {"rpm": 60, "rph": 3600, "rpd": 86400, "rpw": 604800}
WINDOW_WORDS = {"rpm": "minute", "rph": "hour", "rpd": "day", "rpw": "week"}
_MONDAY = 4 * 86400  # the epoch was a Thursday; ISO weeks start on Monday 1970-01-05


@dataclass(frozen=True, slots=True)
class Rule:
    owner: str  # "key:<id>" or "provider:<slug>"; names the counter
    who: str  # for people: "gateway API key key_… (my-app)", "provider @openai-prod"
    unit: str  # rpm | rph | rpd | rpw
    value: int
    position: int  # index in the owner's list: two rules with one unit keep separate counters
    base: bytes = field(init=False, repr=False)  # names owner, position and unit; a window's key adds its start

    def __post_init__(self) -> None:
        digest = hashlib.blake2b(f"{self.owner}|{self.position}|{self.unit}".encode(), digest_size=8).digest()
        object.__setattr__(self, "base", digest)  # once per rule, when a key or provider is loaded

    def window(self, now: float) -> tuple[int, int]:
        """Start and end (epoch seconds) of the UTC-aligned window holding ``now``."""
        length = WINDOW_SECONDS[self.unit]
        offset = _MONDAY if self.unit == "rpw" else 0
        start = int((now - offset) // length) * length + offset
        return start, start + length

    def charge(self, now: float) -> Charge:
        start, end = self.window(now)
        return Charge(self.base + start.to_bytes(8, "little"), self.value, end)  # the window's own key

    def describe(self) -> dict[str, Any]:
        return {"type": "requests", "unit": self.unit, "value": self.value}


def key_rules(key_id: str, name: str, stored: Any) -> tuple[Rule, ...]:
    return rules_for(f"key:{key_id}", f"gateway API key {key_id} ({name})", stored)


def provider_rules(slug: str, stored: Any) -> tuple[Rule, ...]:
    return rules_for(f"provider:{slug}", f"provider @{slug}", stored)


def rules_for(owner: str, who: str, stored: Any) -> tuple[Rule, ...]:
    """The enforced rules of a stored ``rate_limits`` list (validated on the way in)."""
    return tuple(
        Rule(owner, who, item["unit"], int(item["value"]), position)
        for position, item in enumerate(stored or ())
        if item.get("type") == "requests" and item.get("value")
    )


class Standing(NamedTuple):
    """Where one request left one rule: for the ``x-ratelimit-*`` headers."""

    rule: Rule
    count: int
    resets_at: int

    @property
    def remaining(self) -> int:
        return max(0, self.rule.value - self.count)


class LimitExceeded(RateLimited):
    def __init__(self, standing: Standing, now: float) -> None:
        rule, wait = standing.rule, max(1, math.ceil(standing.resets_at - now))
        resets = _iso(standing.resets_at)
        super().__init__(
            f"rate limit reached: {rule.who} allows {rule.value} requests per {WINDOW_WORDS[rule.unit]} "
            f"({rule.unit}); the window resets at {resets} (in {wait} s)",
            headers={"retry-after": str(wait), **headers_for([standing], now)},
        )
        self.limit = {"owner": rule.owner, **rule.describe(), "resets_at": resets}

    def body(self) -> bytes:
        return orjson.dumps({"error": {"message": self.message, "type": self.type, "code": self.code,
                                       "limit": self.limit}})


class LimitsUnavailable(GatewayError):
    status, type, code = 503, "service_unavailable", "rate_limits_unavailable"


class Limiter:
    def __init__(self, counters: Counters, clock=time.time) -> None:
        self._counters = counters
        self._clock = clock

    def admit(self, rules: Sequence[Rule]) -> list[Standing]:
        """Count this request against every rule, or raise ``LimitExceeded`` for the first it breaks."""
        if not rules:
            return []
        now = self._clock()
        charges = [rule.charge(now) for rule in rules]
        try:
            admission: Admission = self._counters.admit(charges, now)
        except CountersFull as exc:
            raise LimitsUnavailable(f"rate limits cannot be checked: {exc}; the request was refused, not "
                                    "let through unchecked") from None
        standings = [Standing(rule, count, charge[2]) for rule, count, charge in zip(rules, admission.counts, charges)]
        if admission.refused is not None:
            raise LimitExceeded(standings[admission.refused], now)
        return standings

    def usage(self, rules: Iterable[Rule]) -> list[dict[str, Any]]:
        """Each rule with its current window's count, for the control plane."""
        now = self._clock()
        shown = []
        for rule in rules:
            charge = rule.charge(now)
            used = self._counters.count(charge.key, now)
            shown.append({**rule.describe(), "used": used, "remaining": max(0, rule.value - used),
                          "resets_at": _iso(charge.ends_at)})
        return shown


def enforced_rules(store: Any) -> list[Rule]:
    """Every enforced rule of every stored key and provider (for the metrics; admin lists are small)."""
    rules: list[Rule] = []
    for lister, rules_of in ((store.list_api_keys, lambda r: key_rules(r.id, r.name, r.rate_limits)),
                             (store.list_providers, lambda r: provider_rules(r.slug, r.rate_limits))):
        cursor = None
        while True:
            page = lister(limit=1000, cursor=cursor)
            for record in page.items:
                rules.extend(rules_of(record))
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    return rules


def gauges(limiter: Limiter, rules: Sequence[Rule]) -> str:
    """Prometheus gauges: each enforced limit and its count in the current window, on this node."""
    lines = ["# HELP modelport_rate_limit_requests The request limit of each enforced rate limit, per window.",
             "# TYPE modelport_rate_limit_requests gauge",
             "# HELP modelport_rate_limit_used_requests Requests counted in the current window of each rate limit.",
             "# TYPE modelport_rate_limit_used_requests gauge"]
    for rule, usage in zip(rules, limiter.usage(rules)):
        labels = f'owner="{_label(rule.owner)}",unit="{rule.unit}",rule="{rule.position}"'
        lines.append(f"modelport_rate_limit_requests{{{labels}}} {rule.value}")
        lines.append(f"modelport_rate_limit_used_requests{{{labels}}} {usage['used']}")
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def headers_for(standings: Sequence[Standing], now: float) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*-requests`` headers for the tightest of the limits that applied."""
    if not standings:
        return {}
    tightest = min(standings, key=lambda s: (s.remaining, s.resets_at))
    return {
        "x-ratelimit-limit-requests": str(tightest.rule.value),
        "x-ratelimit-remaining-requests": str(tightest.remaining),
        "x-ratelimit-reset-requests": _duration(tightest.resets_at - now),
    }


def _duration(seconds: float) -> str:
    """OpenAI's reset format: ``59s``, ``6m0s``, ``23h59m59s``."""
    total = max(0, math.ceil(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
