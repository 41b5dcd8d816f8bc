"""``GET /v1/analytics/summary``: totals, a time series and groups over the rows a filter selects.

One pass over the matching rows (streamed from the log store); latencies are kept per total, bucket and
group to compute exact nearest-rank percentiles, so memory grows with the number of rows in range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..store.log_base import LogFilter, LogStore, iso_ms

BUCKET_MS = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
GROUP_COLUMNS = {"provider": "provider", "model": "model", "key": "key_id"}


@dataclass(slots=True)
class _Tally:
    requests: int = 0
    errors: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    latencies: list[float] = field(default_factory=list)

    def add(self, status: int | None, latency: float | None, cost: float | None, cost_status: str | None,
            input_tokens: int | None, output_tokens: int | None) -> None:
        self.requests += 1
        self.errors += 1 if (status or 0) >= 400 else 0
        self.cost_usd += cost or 0.0
        self.unpriced += 1 if cost_status == "unpriced" else 0
        self.input_tokens += input_tokens or 0
        self.output_tokens += output_tokens or 0
        if latency is not None:
            self.latencies.append(latency)

    def percentile(self, p: float) -> float | None:
        if not self.latencies:
            return None
        self.latencies.sort()
        return round(self.latencies[max(0, math.ceil(p / 100 * len(self.latencies)) - 1)], 3)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def summarize(log_store: LogStore, filters: LogFilter | None = None, bucket: str = "hour",
              group_by: str | None = None) -> dict[str, Any]:
    if bucket not in BUCKET_MS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKET_MS)}")
    if group_by is not None and group_by not in GROUP_COLUMNS:
        raise ValueError(f"group_by must be one of {', '.join(GROUP_COLUMNS)}")
    size = BUCKET_MS[bucket]
    totals = _Tally()
    series: dict[int, _Tally] = {}
    groups: dict[Any, _Tally] = {}
    for row in log_store.analytics_rows(filters or LogFilter(), GROUP_COLUMNS[group_by] if group_by else None):
        values = tuple(row[1:7])
        totals.add(*values)
        start = row[0] - row[0] % size
        series.setdefault(start, _Tally()).add(*values)
        if group_by:
            groups.setdefault(row[7], _Tally()).add(*values)
    return {
        "totals": {
            "requests": totals.requests,
            "errors": totals.errors,
            "error_rate": round(totals.errors / totals.requests, 6) if totals.requests else 0.0,
            "cost_usd": round(totals.cost_usd, 9),
            "unpriced_requests": totals.unpriced,
            "input_tokens": totals.input_tokens,
            "output_tokens": totals.output_tokens,
            "p50_ms": totals.percentile(50),
            "p95_ms": totals.percentile(95),
            "p99_ms": totals.percentile(99),
        },
        "series": [
            {"t": iso_ms(start), "requests": t.requests, "errors": t.errors, "cost_usd": round(t.cost_usd, 9),
             "tokens": t.tokens, "p50_ms": t.percentile(50), "p95_ms": t.percentile(95)}
            for start, t in sorted(series.items())
        ],
        "groups": [
            {"key": key, "requests": t.requests, "errors": t.errors, "cost_usd": round(t.cost_usd, 9),
             "tokens": t.tokens, "p50_ms": t.percentile(50)}
            for key, t in sorted(groups.items(), key=lambda item: (-item[1].requests, str(item[0])))
        ],
    }
