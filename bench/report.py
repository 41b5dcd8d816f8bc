"""Turns measured cells into one markdown table, the peer ratios, and a JSON document.

Each row is the median over rounds of one (scenario, concurrency, contender); the rps range shows
how far the rounds drifted. "Added" is the contender's median latency minus direct's, measured in
the same run on the same upstream.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

MODELPORT = "modelport"
PEERS = ("portkey", "litellm")


@dataclass
class Row:
    scenario: str
    concurrency: int
    contender: str
    rounds: int
    rps: float
    rps_min: float
    rps_max: float
    p50_ms: float | None  # None when no request completed in any round
    p99_ms: float | None
    errors: int
    requests: int
    peak_rss_mb: float
    cpu_us_per_request: float | None
    other_cpu_pct: float
    added_p50_ms: float | None = None
    added_p99_ms: float | None = None


def summarise(cells: list[dict], order: list[str]) -> list[Row]:
    groups: dict[tuple[str, int, str], list[dict]] = {}
    for cell in cells:
        groups.setdefault((cell["scenario"], cell["concurrency"], cell["contender"]), []).append(cell)
    rows = []
    for (scenario, concurrency, contender), group in groups.items():
        cpu = [c["cpu_us_per_request"] for c in group if c["cpu_us_per_request"] is not None]
        done = [c for c in group if c["requests"]]  # wrk reports 0 ms latencies for an empty cell
        rows.append(Row(
            scenario=scenario, concurrency=concurrency, contender=contender, rounds=len(group),
            rps=statistics.median(c["rps"] for c in group),
            rps_min=min(c["rps"] for c in group), rps_max=max(c["rps"] for c in group),
            p50_ms=statistics.median(c["p50_ms"] for c in done) if done else None,
            p99_ms=statistics.median(c["p99_ms"] for c in done) if done else None,
            errors=sum(c["errors"] for c in group), requests=sum(c["requests"] for c in group),
            peak_rss_mb=max(c["peak_rss_mb"] for c in group),
            cpu_us_per_request=statistics.median(cpu) if cpu else None,
            other_cpu_pct=statistics.median(c["other_cpu_pct"] for c in group),
        ))
    direct = {(r.scenario, r.concurrency): r for r in rows if r.contender == "direct"}
    for row in rows:
        base = direct.get((row.scenario, row.concurrency))
        if base and row.contender != "direct" and None not in (row.p50_ms, base.p50_ms):
            row.added_p50_ms = row.p50_ms - base.p50_ms
            row.added_p99_ms = row.p99_ms - base.p99_ms
    rank = {name: i for i, name in enumerate(order)}
    scenario_rank = {name: i for i, name in enumerate(dict.fromkeys(c["scenario"] for c in cells))}
    rows.sort(key=lambda r: (scenario_rank[r.scenario], r.concurrency, rank.get(r.contender, 99)))
    return rows


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _signed(value: float | None) -> str:
    return "–" if value is None else ("+" if value >= 0 else "") + _ms(value)


def table(rows: list[Row]) -> str:
    lines = [
        ("| scenario | c | contender | req/s (min–max) | p50 ms | p99 ms | +p50 ms | +p99 ms "
        "| errors | peak RSS MB | CPU µs/req | other CPU % |"),
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cpu = "–" if r.cpu_us_per_request is None else f"{r.cpu_us_per_request:,.0f}"
        rss = "–" if r.contender == "direct" else f"{r.peak_rss_mb:,.0f}"
        lines.append(
            f"| {r.scenario} | {r.concurrency} | {r.contender} | {_rate(r.rps)} "
            f"({_rate(r.rps_min)}–{_rate(r.rps_max)}) | {_ms(r.p50_ms)} | {_ms(r.p99_ms)} "
            f"| {_signed(r.added_p50_ms)} | {_signed(r.added_p99_ms)} | {r.errors} | {rss} | {cpu} "
            f"| {r.other_cpu_pct:.0f} |")
    return "\n".join(lines)


def ratios(rows: list[Row]) -> list[dict]:
    """ModelPort against each peer per cell: throughput (>1 = ModelPort serves more), added p50
    latency and CPU per request (<1 = ModelPort costs less)."""
    by_key = {(r.scenario, r.concurrency, r.contender): r for r in rows}
    found = []
    for r in rows:
        if r.contender != MODELPORT:
            continue
        for peer in PEERS:
            other = by_key.get((r.scenario, r.concurrency, peer))
            if not other:
                continue
            found.append({
                "scenario": r.scenario, "concurrency": r.concurrency, "peer": peer,
                "rps": _ratio(r.rps, other.rps),
                "added_p50": _ratio(r.added_p50_ms, other.added_p50_ms),
                "cpu_per_request": _ratio(r.cpu_us_per_request, other.cpu_us_per_request),
            })
    return found


def _ratio(mine: float | None, theirs: float | None) -> float | None:
    if mine is None or theirs is None or theirs <= 0 or mine < 0:
        return None
    return mine / theirs


def ratio_table(found: list[dict]) -> str:
    if not found:
        return "(no ModelPort/peer pairs measured)"
    lines = ["| scenario | c | ModelPort / | req/s × | added p50 × | CPU/req × |",
             "|---|---:|---|---:|---:|---:|"]
    for f in found:
        cells = ["–" if f[k] is None else f"{f[k]:.2f}" for k in ("rps", "added_p50", "cpu_per_request")]
        lines.append(f"| {f['scenario']} | {f['concurrency']} | {f['peer']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rows_as_dicts(rows: list[Row]) -> list[dict]:
    return [asdict(r) for r in rows]
