"""How much one attempt reserves on the budgets that apply to it (its key's and its provider's).

The reservation is the most the attempt can cost: every byte of the request body counted as a prompt
token (a token is at least one byte of text, so this bounds any text prompt), plus the request's
``max_tokens`` (or ``max_completion_tokens`` / ``max_output_tokens``; the operator's default allowance
when it states none), at the highest rates the model's price lists. The log service settles it to the
real usage once the response is recorded. A proxied request (Replicate's predictions, any provider's
own API) has no such bound: it reserves nothing and is admitted while the budget has anything left,
so a budget can be overshot by what such requests in flight cost (docs/limits.md).
"""

from __future__ import annotations

from typing import Any, Sequence

from ..settings import Settings
from ..usage.limits import Budget, CostBound, cost_bound, reservation
from ..usage.pricing import PriceBook
from .limits import BudgetUnpriced

_OUTPUT_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
_MAX_BOUNDS = 4096


class Reserver:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._prices: PriceBook | None = None  # loaded the first time a budget needs a price
        self._bounds: dict[tuple[str, str], CostBound | None] = {}  # per provider and model: the prices do not change

    def amounts(self, budgets: Sequence[Budget], provider: str, endpoint: str | None, body: dict[str, Any] | None,
                body_bytes: int) -> list[tuple[Budget, int]]:  # fmt: skip
        """``(budget, amount)`` for each budget; ``body`` is the unified request (None: proxied)."""
        if body is None:
            return [(budget, 0) for budget in budgets]
        output = 0 if endpoint == "embeddings" else self._output_bound(body)
        choices = body.get("n")
        if isinstance(choices, int) and not isinstance(choices, bool) and choices > 1:
            output *= choices  # each choice may use the whole allowance
        model = body.get("model")
        if not isinstance(model, str):
            model = ""
        price = None
        for budget in budgets:  # a loop, not any(): a generator costs more than the lookup it guards
            if budget.kind == "cost":
                price = self._price(provider, model)
                break
        reserves = []
        for budget in budgets:
            amount = reservation(budget.kind, body_bytes, output, price)
            if amount is None:
                if not self._settings.budget_admit_unpriced:
                    raise BudgetUnpriced(
                        f"{budget.who} has a cost budget, and the cost of model '{model}' on {provider} cannot be "
                        "bounded (no known token price): add its price (MODELPORT_PRICING_FILE), or let such "
                        "requests through unreserved with MODELPORT_BUDGET_ADMIT_UNPRICED=true"
                    )
                amount = 0
            reserves.append((budget, amount))
        return reserves

    def _output_bound(self, body: dict[str, Any]) -> int:
        for name in _OUTPUT_FIELDS:
            value = body.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
        return self._settings.budget_max_tokens

    def _price(self, provider: str, model: str) -> CostBound | None:
        found = self._bounds.get((provider, model), False)
        if found is not False:
            return found  # type: ignore[return-value]
        if self._prices is None:
            self._prices = PriceBook.load(self._settings.pricing_file)
        if len(self._bounds) >= _MAX_BOUNDS:  # model names come from callers: keep the table bounded
            self._bounds.clear()
        bound = self._bounds[(provider, model)] = cost_bound(self._prices.price_for(provider, model))
        return bound
