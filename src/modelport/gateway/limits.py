"""Request rate limits on gateway API keys and stored providers (Portkey's ``rate_limits``).

A key's limits count the requests it makes to the gateway (checked once, right after authentication);
a provider's limits count the requests the gateway sends to it (checked per attempt, just before the
upstream call, so a fallback moves on to the next target and a cache hit costs nothing). Windows are
fixed and aligned to the UTC clock — minute, hour, day, ISO week — so "N per window" has one meaning
on every worker; the counters behind them are exact across a node's workers (``store.counters``).
A refused request is not counted. A limit of 0 disables its rule.

When the counters cannot be reached (Redis down), admission fails closed with a 503 naming the cause,
unless the operator chose ``limits_fail_open``: then the request is admitted, nothing is counted, the
outage is logged once and each such request is tallied in the node's own counters file
(``modelport_limits_unchecked_total``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, NamedTuple, Sequence

import orjson

from ..store.base import Store
from ..store.counters import Admission, Counters, CountersFull, CountersUnavailable, LocalCounters
from ..usage.limits import (
    NANO_USD,
    WINDOW_WORDS,
    Budget,
    Charge,
    digest,
    key_budget,
    key_who,
    provider_budget,
    provider_who,
    rate_window,
    window_key,
)
from ..errors import GatewayError, RateLimited

log = logging.getLogger("modelport.limits")



@dataclass(frozen=True, slots=True)
class Rule:
    owner: str  # "key:<id>" or "provider:<slug>"; names the counter
    who: str  # for people: "gateway API key key_… (my-app)", "provider @openai-prod"
    unit: str  # rpm | rph | rpd | rpw
    value: int
    position: int  # index in the owner's list: two rules with one unit keep separate counters
    base: bytes = field(init=False, repr=False)  # names owner, position and unit; a window's key adds its start
    _current: list[tuple[float, int, Charge]] = field(init=False, repr=False, compare=False)  # the last window

    def __post_init__(self) -> None:
        object.__setattr__(self, "base", digest(f"{self.owner}|{self.position}|{self.unit}"))  # once per rule
        object.__setattr__(self, "_current", [(0.0, 0, Charge(b"", self.value, 0))])

    def window(self, now: float) -> tuple[int, int]:
        """Start and end (epoch seconds) of the UTC-aligned window holding ``now``."""
        return rate_window(self.unit, now)

    def charge(self, now: float) -> Charge:
        """The request's charge in the window holding ``now``: one ``Charge`` a window (a request always adds
        1), named and built when the window starts rather than per request."""
        start, end, charge = self._current[0]
        if not start <= now < end:
            start, end = self.window(now)
            charge = Charge(window_key(self.base, start), self.value, end)
            self._current[0] = (start, end, charge)
        return charge

    def describe(self) -> dict[str, Any]:
        return {"type": "requests", "unit": self.unit, "value": self.value}


def key_rules(key_id: str, name: str, stored: Any) -> tuple[Rule, ...]:
    return rules_for(f"key:{key_id}", key_who(key_id, name), stored)


def provider_rules(slug: str, stored: Any) -> tuple[Rule, ...]:
    return rules_for(f"provider:{slug}", provider_who(slug), stored)




def rules_for(owner: str, who: str, stored: Any) -> tuple[Rule, ...]:
    """The enforced rules of a stored ``rate_limits`` list (validated on the way in)."""
    return tuple(
        Rule(owner, who, item["unit"], int(item["value"]), position)
        for position, item in enumerate(stored or ())
        if item.get("type") == "requests" and item.get("value")
    )


class Standing(NamedTuple):
    """Where one request left one rate limit, for the ``x-ratelimit-*`` headers: a request rule, or a
    token limit (whose count includes what requests in flight hold on it)."""

    limit: Any  # the Rule, or the token limit's Budget
    value: int
    count: int
    resets_at: int

    @property
    def remaining(self) -> int:
        return max(0, self.value - self.count)


class _Refusal(GatewayError):
    """A limit's refusal: the error body names the limit (``detail_name``) as well as saying why."""

    detail_name = "limit"
    detail: dict[str, Any]

    def body(self) -> bytes:
        return orjson.dumps({"error": {"message": self.message, "type": self.type, "code": self.code,
                                       self.detail_name: self.detail}})


class LimitExceeded(_Refusal, RateLimited):
    def __init__(self, standing: Standing, now: float) -> None:
        rule, wait = standing.limit, max(1, math.ceil(standing.resets_at - now))
        resets = _iso(standing.resets_at)
        self.rule = rule
        super().__init__(
            f"rate limit reached: {rule.who} allows {rule.value} requests per {WINDOW_WORDS[rule.unit]} "
            f"({rule.unit}); the window resets at {resets} (in {wait} s)",
            headers={"retry-after": str(wait), **headers_for([standing], now)},
        )
        self.detail = {"owner": rule.owner, **rule.describe(), "resets_at": resets}


class TokenLimitExceeded(_Refusal, RateLimited):
    def __init__(self, limit: Budget, used: int, amount: int, resets_at: int, now: float) -> None:
        unit, wait, resets = limit.window or "rpm", max(1, math.ceil(resets_at - now)), _iso(resets_at)
        super().__init__(
            f"rate limit reached: {limit.who} allows {limit.limit} tokens per {WINDOW_WORDS[unit]} ({unit}); "
            f"{used} are used or reserved in this window and this request could add up to {amount} (its size and "
            f"max tokens); the window resets at {resets} (in {wait} s)",
            headers={"retry-after": str(wait), **headers_for([Standing(limit, limit.limit, used, resets_at)], now, "tokens")},
        )
        self.detail = {"owner": limit.owner, "type": "tokens", "unit": unit, "value": limit.limit, "resets_at": resets}


class Admitted(NamedTuple):
    standings: list[Standing]  # request rate limits, for the x-ratelimit-*-requests headers
    token_standings: list[Standing]  # token rate limits, for the x-ratelimit-*-tokens headers
    held: list[Charge]  # what each budget now holds for this request, settled once the real usage is known


class LimitsUnavailable(GatewayError):
    status, type, code = 503, "service_unavailable", "rate_limits_unavailable"


class BudgetExhausted(_Refusal):
    status, type, code = 412, "budget_error", "budget_exhausted"
    detail_name = "budget"

    def __init__(self, budget: Budget, used: int, amount: int, ends_at: int) -> None:
        message = (f"budget exhausted: {budget.who} has used {budget.show(used)} of its {budget.kind} budget of "
                   f"{budget.show(budget.limit)} for the period ending {_iso(ends_at)}")
        if used < budget.limit:
            message += (f"; this request could add up to {budget.show(amount)} (its size and max tokens at the "
                        f"model's price), more than the {budget.show(budget.limit - used)} left: ask for fewer "
                        "max tokens, or wait for the period to end")
        super().__init__(message)
        self.detail = {**budget.describe(), "period_ends_at": _iso(ends_at)}


class BudgetUnpriced(GatewayError):
    status, type, code = 412, "budget_error", "budget_unpriced"


# The node-wide tally of requests admitted unchecked: a counter in the node's own file, whose window
# never ends, shared by its workers (each scrape reaches one worker; every one shows the node's total).
_UNCHECKED = Charge(digest("limits-unchecked").ljust(16, b"\0"), 2**62, 2**62)


class Limiter:
    def __init__(self, counters: Counters, clock=time.time, fail_open: bool = False,
                 tally: LocalCounters | None = None) -> None:  # fmt: skip
        self._counters = counters
        self._clock = clock
        self._fail_open = fail_open
        self._tally = tally  # where requests admitted unchecked are counted (fail open only)
        self._unchecked_logged = False

    async def admit(self, rules: Sequence[Rule]) -> list[Standing]:
        """Count this request against every rule, or raise ``LimitExceeded`` for the first it breaks."""
        if not rules:
            return []
        return (await self.admit_with_budgets(rules, ())).standings

    async def admit_with_budgets(self, rules: Sequence[Rule], reserves: Sequence[tuple[Budget, int]]) -> Admitted:
        """One step for all of them: count the request on every rule and reserve ``amount`` on every
        budget (token rate limits are budgets over a rate window), or do none of it and raise for the
        first that refuses."""
        now = self._clock()
        charges = [rule.charge(now) for rule in rules]
        held = [budget.charge(now, amount) for budget, amount in reserves] if reserves else []
        try:
            admission: Admission = await self._counters.admit(charges + held if held else charges, now)
        except CountersFull as exc:
            raise LimitsUnavailable(f"limits cannot be checked: {exc}; the request was refused, not "
                                    "let through unchecked") from None
        except CountersUnavailable as exc:
            return self._unchecked(exc)
        self._unchecked_logged = False
        standings = [Standing(rule, rule.value, count, charge[2])
                     for rule, count, charge in zip(rules, admission.counts, charges)]
        refused = admission.refused
        if refused is not None:
            if refused < len(rules):
                raise LimitExceeded(standings[refused], now)
            budget, amount = reserves[refused - len(rules)]
            used, ends_at = admission.counts[refused], held[refused - len(rules)].ends_at
            if budget.window is not None:
                raise TokenLimitExceeded(budget, used, amount, ends_at, now)
            raise BudgetExhausted(budget, used, amount, ends_at)
        tokens = []
        if reserves:
            for (budget, _), used, charge in zip(reserves, admission.counts[len(rules):], held):
                if budget.window is not None:
                    tokens.append(Standing(budget, budget.limit, used, charge.ends_at))
                elif budget.alert_at is not None and used >= budget.alert_at:
                    await self._alert(budget, used, now)
        return Admitted(standings, tokens, held)

    def _unchecked(self, cause: CountersUnavailable) -> Admitted:
        """The counters are away: refuse (the default), or admit counting nothing (``limits_fail_open``)."""
        if not self._fail_open:
            raise LimitsUnavailable(f"rate limits and budgets cannot be checked: {cause}; the request was refused, "
                                    "not let through unchecked (MODELPORT_LIMITS_FAIL_OPEN=true admits such "
                                    "requests unchecked)")
        if not self._unchecked_logged:
            self._unchecked_logged = True
            log.warning("admitting requests without checking their limits (MODELPORT_LIMITS_FAIL_OPEN): %s", cause)
        if self._tally is not None:
            self._tally.settle(_UNCHECKED, 1, 0)
        return Admitted([], [], [])

    def unchecked_total(self) -> int:
        return self._tally.count(_UNCHECKED.key, 0) if self._tally is not None else 0

    async def _alert(self, budget: Budget, used: int, now: float) -> None:
        """Once per period, whichever process sees the crossing first (the flag is a counter of 1)."""
        try:
            first = (await self._counters.admit([budget.alert_charge(now)], now)).refused is None
        except CountersUnavailable:
            return  # the next request past the threshold raises it
        if first:
            log.warning("budget alert: %s has used %s (in flight included) of its %s, past its alert threshold of %s",
                        budget.who, budget.show(used), budget.show(budget.limit), budget.show(budget.alert_at or 0))

    def alerted(self, budget: Budget) -> bool:
        now = self._clock()
        return self._count(budget.alert_charge(now).key, now) > 0

    async def release(self, held: Sequence[Charge]) -> None:
        """Give reservations back whole: the attempt they were made for reached no upstream usage. With
        the counters away they are given back once they answer (RedisCounters keeps them)."""
        try:
            await self._counters.release(held, self._clock())
        except CountersUnavailable:
            pass

    def _count(self, key: bytes, now: float) -> int:
        try:
            return self._counters.count(key, now)
        except CountersUnavailable as exc:
            raise LimitsUnavailable(f"usage cannot be read: {exc}") from None

    def budget_usage(self, budget: Budget | None) -> dict[str, Any] | None:
        if budget is None:
            return None
        now = self._clock()
        charge = budget.charge(now, 0)
        used = self._count(charge.key, now)
        scale = NANO_USD if budget.kind == "cost" else 1
        return {**budget.describe(), "used": used / scale, "remaining": max(0, budget.limit - used) / scale,
                "period_ends_at": _iso(charge.ends_at), "alerted": self.alerted(budget)}

    def token_usage(self, limits: Iterable[Budget]) -> list[dict[str, Any]]:
        """Each token rate limit with its current window's count (reservations in flight included)."""
        now = self._clock()
        shown = []
        for limit in limits:
            charge = limit.charge(now, 0)
            used = self._count(charge.key, now)
            shown.append({"type": "tokens", "unit": limit.window, "value": limit.limit, "used": used,
                          "remaining": max(0, limit.limit - used), "resets_at": _iso(charge.ends_at)})
        return shown

    def usage(self, rules: Iterable[Rule]) -> list[dict[str, Any]]:
        """Each rule with its current window's count, for the control plane."""
        now = self._clock()
        shown = []
        for rule in rules:
            charge = rule.charge(now)
            used = self._count(charge.key, now)
            shown.append({**rule.describe(), "used": used, "remaining": max(0, rule.value - used),
                          "resets_at": _iso(charge.ends_at)})
        return shown


def enforced_limits(store: Store) -> tuple[list[Rule], list[Budget]]:
    """Every enforced rule and budget of every stored key and provider (for the metrics; admin lists
    are small)."""
    rules: list[Rule] = []
    budgets: list[Budget | None] = []
    for key in _every(store.list_api_keys):
        rules.extend(key_rules(key.id, key.name, key.rate_limits))
        budgets.append(key_budget(key.id, key.name, key.usage_limits, key.usage_anchor))
    for provider in _every(store.list_providers):
        rules.extend(provider_rules(provider.slug, provider.rate_limits))
        budgets.append(provider_budget(provider.slug, provider.usage_limits, provider.usage_anchor))
    return rules, [budget for budget in budgets if budget is not None]


def _every(lister: Any) -> Iterable[Any]:
    cursor = None
    while True:
        page = lister(limit=1000, cursor=cursor)
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


_GAUGES = (
    ("modelport_rate_limit_requests", "The request limit of each enforced rate limit, per window."),
    ("modelport_rate_limit_used_requests", "Requests counted in the current window of each rate limit."),
    ("modelport_budget_limit", "Each budget's credit limit (USD for cost budgets, else tokens)."),
    ("modelport_budget_used", "Each budget's use in its current period, reservations in flight included."),
    ("modelport_budget_alerted", "1 once a budget has crossed its alert threshold this period."),
)


def gauges(limiter: Limiter, rules: Sequence[Rule], budgets: Sequence[Budget]) -> str:
    """Prometheus gauges: each enforced limit and budget and where it stands (on this node's counters, or
    Redis's), and the node's count of requests admitted unchecked."""
    lines = [line for name, text in _GAUGES for line in (f"# HELP {name} {text}", f"# TYPE {name} gauge")]
    try:
        for rule, usage in zip(rules, limiter.usage(rules)):
            labels = f'owner="{_label(rule.owner)}",unit="{rule.unit}",rule="{rule.position}"'
            lines.append(f"modelport_rate_limit_requests{{{labels}}} {rule.value}")
            lines.append(f"modelport_rate_limit_used_requests{{{labels}}} {usage['used']}")
        for budget in budgets:
            usage = limiter.budget_usage(budget) or {}
            labels = f'owner="{_label(budget.owner)}",type="{budget.kind}"'
            lines.append(f"modelport_budget_limit{{{labels}}} {usage['credit_limit']}")
            lines.append(f"modelport_budget_used{{{labels}}} {usage['used']}")
            lines.append(f"modelport_budget_alerted{{{labels}}} {int(usage['alerted'])}")
    except LimitsUnavailable:
        pass  # the counters are away: no gauge rather than a wrong one (/health says why)
    lines += ["# HELP modelport_limits_unchecked_total Requests admitted without checking their limits because the "
              "counters (Redis) were unreachable and MODELPORT_LIMITS_FAIL_OPEN is true, on this node.",
              "# TYPE modelport_limits_unchecked_total counter",
              f"modelport_limits_unchecked_total {limiter.unchecked_total()}"]
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def headers_for(standings: Sequence[Standing], now: float, unit: str = "requests") -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*-requests`` (or ``-tokens``) headers for the tightest of the limits that
    applied: the one with the least left."""
    return {name.decode(): value.decode() for name, value in header_pairs(standings, now, unit)}


_HEADER_NAMES = {unit: tuple(f"x-ratelimit-{part}-{unit}".encode() for part in ("limit", "remaining", "reset"))
                 for unit in ("requests", "tokens")}


def header_pairs(standings: Sequence[Standing], now: float, unit: str = "requests") -> list[tuple[bytes, bytes]]:
    """``headers_for`` as the raw header pairs a response carries."""
    if not standings:
        return []
    tightest = standings[0]
    for standing in standings[1:]:  # the least left, then the soonest reset (a loop: min's key costs a call each)
        left, tightest_left = max(0, standing.value - standing.count), max(0, tightest.value - tightest.count)
        if left < tightest_left or (left == tightest_left and standing.resets_at < tightest.resets_at):
            tightest = standing
    limit, remaining, reset = _HEADER_NAMES[unit]
    left = tightest.value - tightest.count
    return [(limit, b"%d" % tightest.value), (remaining, b"%d" % left if left > 0 else b"0"),
            (reset, _reset_bytes(tightest.resets_at - now))]


_last_reset: list[tuple[int, bytes]] = [(-1, b"")]  # every response of one second says the same


def _reset_bytes(seconds: float) -> bytes:
    whole = max(0, math.ceil(seconds))
    last, text = _last_reset[0]
    if whole != last:
        text = _duration(whole).encode()
        _last_reset[0] = (whole, text)
    return text


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
