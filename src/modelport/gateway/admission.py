"""One request's standing with its limits (step 3, admit): what it has counted, holds and must report.

The key's request limits count each request once: in the first attempt's admission, in one step with
the provider's limits and both budgets (one lock on the node's file, one round trip to Redis), or at the
end if no attempt got that far (a cache hit, an early failure). Each attempt holds amounts on its budgets
until the response hands them to the log record (the log service settles them to the real usage) or the
attempt fails and they go back. The limits themselves are gateway/limits.py, the amounts gateway/budgets.py.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from ..asgi import Headers
from ..usage.limits import Charge
from .auth import Principal
from .budgets import Reserver
from .forward import Outbound
from .limits import LimitExceeded, Limiter, Rule, Standing, header_pairs


class KeyRefused(Exception):
    """The key's own limit refused the request in an attempt's admission: the whole request ends there,
    no fallback tried, as if it had been refused on arrival."""

    def __init__(self, error: LimitExceeded) -> None:
        self.error = error


class Admission:
    __slots__ = ("limiter", "reserver", "principal", "key_pending", "key_standings", "provider_standings",
                 "token_standings", "held")

    def __init__(self, limiter: Limiter, reserver: Reserver, principal: Principal) -> None:
        self.limiter, self.reserver, self.principal = limiter, reserver, principal
        # Empty tuples until an admission says otherwise: a request under no limit allocates nothing here.
        self.key_pending: tuple[Rule, ...] = principal.rate_limits  # until an admission counts them
        self.key_standings: Sequence[Standing] = ()
        self.provider_standings: Sequence[Standing] = ()  # the limits of the provider the last attempt reached
        self.token_standings: Sequence[Standing] = ()  # the token limits (key's and provider's) it holds amounts on
        self.held: Sequence[tuple[Charge, str]] = ()  # what the last attempt holds on its budgets, with their kinds

    async def next_attempt(self) -> None:
        """A new attempt: the last one failed, and what it held goes back."""
        self.provider_standings = self.token_standings = ()
        if self.held:
            await self.release()

    async def admit(self, resolved: Any, outbound: Outbound, translator: Any) -> None:
        """The provider's rate limits and both budgets (and the key's limits, on the first admission), in
        one step, just before the upstream call. ``translator`` is the attempt's unified call (None:
        proxied, which nothing bounds). Raises ``KeyRefused`` when the key's own limit refuses it."""
        principal, key_rules = self.principal, self.key_pending
        budgets = [b for b in (principal.budget, resolved.budget) if b is not None]
        budgets += principal.token_limits + resolved.token_limits
        if not budgets and not resolved.rate_limits and not key_rules:
            return
        reserves = self._reserves(budgets, resolved, outbound, translator) if budgets else ()
        try:
            standings, self.token_standings, charges = await self.limiter.admit_with_budgets(
                key_rules + resolved.rate_limits, reserves)
        except LimitExceeded as refusal:
            if refusal.rule in key_rules:
                raise KeyRefused(refusal) from None
            raise
        self.key_pending = ()
        if key_rules:
            self.key_standings, standings = standings[:len(key_rules)], standings[len(key_rules):]
        self.provider_standings = standings
        self.held = [(charge, budget.kind) for charge, (budget, _) in zip(charges, reserves)]

    def _reserves(self, budgets: list[Any], resolved: Any, outbound: Outbound, translator: Any) -> list[Any]:
        body = None  # proxied: nothing bounds what it may cost
        if translator is not None:  # the bytes may have gone unparsed (an OpenAI-compatible provider): read now
            body = translator.body or outbound.json.fields()
        return self.reserver.amounts(budgets, resolved.spec.id, outbound.endpoint, body, len(outbound.body or b""))

    async def count_key(self) -> None:
        """Count the request on its key's limits if no attempt's admission did (raises on a refusal)."""
        rules, self.key_pending = self.key_pending, ()
        if rules:
            self.key_standings = await self.limiter.admit(rules)

    async def release(self) -> None:
        """Give back what the last attempt holds (it failed, or the request ended before its answer)."""
        if self.held:
            held, self.held = self.held, ()
            await self.limiter.release([charge for charge, _ in held])

    def hand_over(self) -> list[tuple[str, int, int, int, str]] | None:
        """What the answered attempt holds, as the log record carries it for the log service to settle."""
        if not self.held:
            return None
        held, self.held = self.held, ()
        return [(charge.key.hex(), *charge[1:], kind) for charge, kind in held]

    def headers(self) -> Headers:
        """The rate-limit headers of every limit the request was counted on."""
        if not (self.key_standings or self.provider_standings or self.token_standings):
            return []
        now = time.time()
        headers = header_pairs([*self.key_standings, *self.provider_standings], now)
        if self.token_standings:
            headers += header_pairs(self.token_standings, now, "tokens")
        return headers
