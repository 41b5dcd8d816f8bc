"""Tokens, pricing tables and cost.

``usage_from_body``, ``usage_from_chunks``, ``usage_from_sse`` and ``StreamUsage`` (incremental)
read what a response used; ``PriceBook.cost`` prices it from the shipped tables plus an operator
override; ``ReplicatePricer`` prices a finished Replicate prediction from its metrics and hardware.
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
from modelport.usage.replicate import (
    TERMINAL_STATUSES,
    DeploymentHardware,
    OfficialPrice,
    PredictionRef,
    ReplicatePricer,
    ReplicateTables,
    hardware_from_deployment,
    is_terminal,
    prediction_usage,
    ref_from_path,
    ref_from_prediction,
)
from modelport.usage.tokens import (
    StreamUsage,
    Usage,
    usage_from_body,
    usage_from_chunks,
    usage_from_sse,
)

__all__ = [
    "TERMINAL_STATUSES",
    "Cost",
    "CostStatus",
    "DeploymentHardware",
    "ModelPrice",
    "OfficialPrice",
    "PredictionRef",
    "PriceBook",
    "PriceMatch",
    "PriceTier",
    "ReplicatePricer",
    "ReplicateTables",
    "StreamUsage",
    "Usage",
    "hardware_from_deployment",
    "is_terminal",
    "parse_price_tables",
    "prediction_usage",
    "ref_from_path",
    "ref_from_prediction",
    "usage_from_body",
    "usage_from_chunks",
    "usage_from_sse",
]
