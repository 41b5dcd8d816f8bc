"""Tokens, pricing tables and cost.

``usage_from_body``, ``usage_from_chunks``, ``usage_from_sse`` and ``StreamUsage`` (incremental)
read what a response used; ``PriceBook.cost`` prices it from the shipped tables plus an operator
override. A provider that prices its own jobs keeps its rules with it (Replicate's predictions:
``providers/replicate/pricing.py``), on top of ``Cost`` and ``Usage`` from here.
A cost that cannot be known is ``Cost(usd=None, status="unpriced", reason=...)``, never 0.
"""

from modelport.usage.pricing import (
    Cost,
    CostStatus,
    ModelPrice,
    PriceBook,
    PriceMatch,
    PriceTier,
    parse_price_tables,
)
from modelport.usage.tokens import (
    StreamUsage,
    Usage,
    usage_from_body,
    usage_from_chunks,
    usage_from_sse,
)

__all__ = [
    "Cost",
    "CostStatus",
    "ModelPrice",
    "PriceBook",
    "PriceMatch",
    "PriceTier",
    "StreamUsage",
    "Usage",
    "parse_price_tables",
    "usage_from_body",
    "usage_from_chunks",
    "usage_from_sse",
]
