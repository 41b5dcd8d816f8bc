"""The soak run's verdicts and its markdown: memory per process, throughput per slice, the log store.

Rules (also in bench/README.md, "Soak"):
- RSS is *flat* when the least-squares slope of a process's RSS over the last 80 % of the load is
  under 0.5 MB/minute in size; the first 20 % is left out because caches, pools and the allocator's
  arenas fill there, which is growth that stops, not a leak.
- "log rows == answered requests": rows in the `logs` table equal the requests that got an answer
  (every probe, warm-up and load request, counted by tag); anything less is records lost.
- "all replayed": every process reports nothing pending in its spill file, no spill file holds a
  line, and no record is missing from the store.
"""

from __future__ import annotations

import statistics

FLAT_MB_PER_MINUTE = 0.5
SETTLING_SHARE = 0.2  # the slope ignores this first share of the load
EARLY_SHARE = 0.1  # "RSS at 10 %"


def slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB) points, in MB per minute; None under 3 points."""
    if len(points) < 3:
        return None
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return None
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread * 60


def _nearest(points: list[tuple[float, float]], t: float) -> float:
    return min(points, key=lambda p: abs(p[0] - t))[1]


def memory_summary(series: list[tuple[float, float, float]], load_seconds: float) -> dict:
    """One process's (t, RSS MB, anonymous RSS MB) samples over the load -> its RSS figures."""
    rss = [(t, v) for t, v, _ in series]
    anon = [(t, a) for t, _, a in series]
    settled_from = SETTLING_SHARE * load_seconds
    slope = slope_per_minute([p for p in rss if p[0] >= settled_from])
    return {
        "samples": len(series),
        "peak_rss_mb": max(v for _, v in rss),
        "rss_at_10pct_mb": _nearest(rss, EARLY_SHARE * load_seconds),
        "rss_at_end_mb": rss[-1][1],
        "slope_mb_per_min": slope,
        "anon_slope_mb_per_min": slope_per_minute([p for p in anon if p[0] >= settled_from]),
        "anon_at_10pct_mb": _nearest(anon, EARLY_SHARE * load_seconds),
        "anon_at_end_mb": anon[-1][1],
        "flat": None if slope is None else abs(slope) < FLAT_MB_PER_MINUTE,
    }


def throughput_summary(slices: list[dict]) -> dict[str, dict]:
    """Per scenario: req/s of its slices, min/median/max, first and last."""
    found: dict[str, dict] = {}
    for name in dict.fromkeys(s["scenario"] for s in slices):
        rates = [s["rps"] for s in slices if s["scenario"] == name]
        found[name] = {"slices": len(rates), "min": min(rates), "median": statistics.median(rates),
                       "max": max(rates), "first": rates[0], "last": rates[-1],
                       "last_vs_first_pct": (rates[-1] / rates[0] - 1) * 100 if rates[0] else None}
    return found


def log_verdict(answered: int, rows: int, cut_off: int) -> tuple[bool, str]:
    """Compare rows with answered requests. `cut_off`: requests sent but never answered to wrk
    (drain too short, or errors); the server may have answered and logged those, so up to that many
    extra rows are no fault and the comparison is a range rather than an equality."""
    if rows == answered:
        return True, "yes (0 lost)"
    if rows < answered:
        return False, f"no ({answered - rows:,} lost)"
    if rows - answered <= cut_off:
        return True, (f"yes, within the {cut_off:,} requests wrk stopped waiting for "
                      f"({rows - answered:,} of them logged)")
    return False, f"no ({rows - answered:,} rows more than requests: duplicates?)"


def _mb(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.2f}" if signed else f"{value:.1f}"


def memory_table(processes: list[dict]) -> str:
    lines = ["| process | pid | peak RSS MB | RSS at 10 % | RSS at end | slope MB/min (last 80 %) | flat? "
             "| anon RSS 10 % → end MB (slope) |",
             "|---|---:|---:|---:|---:|---:|---|---:|"]
    for p in processes:
        m = p["memory"]
        flat = {True: "yes", False: "**no**", None: "–"}[m["flat"]]
        lines.append(f"| {p['label']} | {p['pid']} | {_mb(m['peak_rss_mb'])} | {_mb(m['rss_at_10pct_mb'])} "
                     f"| {_mb(m['rss_at_end_mb'])} | {_mb(m['slope_mb_per_min'], True)} | {flat} "
                     f"| {_mb(m['anon_at_10pct_mb'])} → {_mb(m['anon_at_end_mb'])} "
                     f"({_mb(m['anon_slope_mb_per_min'], True)}) |")
    return "\n".join(lines)


def throughput_table(found: dict[str, dict]) -> str:
    lines = ["| scenario | slices | req/s min | median | max | first slice | last slice | last vs first |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, t in found.items():
        change = "–" if t["last_vs_first_pct"] is None else f"{t['last_vs_first_pct']:+.1f} %"
        lines.append(f"| {name} | {t['slices']} | {t['min']:,.0f} | {t['median']:,.0f} | {t['max']:,.0f} "
                     f"| {t['first']:,.0f} | {t['last']:,.0f} | {change} |")
    return "\n".join(lines)


def slice_table(slices: list[dict]) -> str:
    lines = ["| slice | scenario | from s | req/s | answered | sent | errors | p50 ms | p99 ms "
             "| log rows | ModelPort CPU % | other CPU % |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in slices:
        lines.append(f"| {s['slice']} | {s['scenario']} | {s['from_s']:.0f} | {s['rps']:,.0f} "
                     f"| {s['requests']:,} | {s['sent']:,} | {s['errors']} | {s['p50_ms']:.2f} "
                     f"| {s['p99_ms']:.2f} | {s.get('log_rows', 0):,} | {s['modelport_cpu_pct']:.0f} "
                     f"| {s['other_cpu_pct']:.0f} |")
    return "\n".join(lines)


def timeline_table(document: dict, rows: int = 10) -> str:
    """About `rows` samples spread over the load, plus the last one taken while the store settled:
    RSS of each process next to the log queue, since a full queue (records with their bodies) is
    memory that comes back, not a leak."""
    samples, processes = document["samples"], document["processes"]
    load = [s for s in samples if s["phase"] != "settle"]
    step = max(1, len(load) // rows)
    picked = load[::step] + ([load[-1]] if load and (len(load) - 1) % step else [])
    picked += [s for s in samples if s["phase"] == "settle"][-1:]
    header = " | ".join(f"{p['label']} MB" for p in processes)
    lines = [f"| t s | phase | {header} | queue | spill pending | spilled | written | spill files MB |",
             "|---:|---|" + "---:|" * (len(processes) + 5)]
    for s in picked:
        rss = " | ".join(_mb(s["memory"].get(str(p["pid"]), {}).get("rss_mb")) for p in processes)
        log = s["log"].values()
        total = {name: sum(n.get(name, 0) for n in log) for name in
                 ("modelport_log_queue_depth", "modelport_log_spill_pending",
                  "modelport_log_spilled_records_total", "modelport_log_written_records_total")}
        lines.append(f"| {s['t']:.0f} | {s['phase']} | {rss} | {total['modelport_log_queue_depth']:,.0f} "
                     f"| {total['modelport_log_spill_pending']:.0f} "
                     f"| {total['modelport_log_spilled_records_total']:,.0f} "
                     f"| {total['modelport_log_written_records_total']:,.0f} "
                     f"| {s['spill_bytes'] / 2**20:,.1f} |")
    return "\n".join(lines)


def _other_cpu(slices: list[dict]) -> str:
    other = sorted(s["other_cpu_pct"] for s in slices)
    if not other:
        return "–"
    return f"median {statistics.median(other):.0f} %, max {other[-1]:.0f} % of a core (noise)"


def render(document: dict) -> str:
    m, s, log = document["machine"], document["settings"], document["log_store"]
    memory = document["processes"]
    flat = [p for p in memory if p["memory"]["flat"] is not None]
    rising = [p["label"] for p in flat if not p["memory"]["flat"]]
    parts = [
        f"## ModelPort soak, {document['started_at']}",
        "",
        f"{m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Linux {m['kernel']}, Python {m['python']}; "
        f"ModelPort from {document['modelport_source']} ({s['workers']} worker(s)), c={s['concurrency']}, "
        f"{document['load_seconds'] / 60:.1f} min of load in {len(document['slices'])} slices of "
        f"{s['slice_seconds']:g} s ({', '.join(s['scenarios'])}), "
        f"a sample every {s['sample_seconds']:g} s.",
        "",
        "### Verdicts",
        "",
        f"- log rows == answered requests: {log['verdict']} — {log['rows']:,} rows for {log['answered']:,} "
        f"answered requests ({log['breakdown']}); {log['rows_after_stop']:,} rows in all once ModelPort "
        "had stopped",
        f"- spilled: {log['spilled']:,.0f} records, all replayed: {'yes' if log['all_replayed'] else 'no'} "
        f"(modelport_log_spilled_records_total; the spill files held at most {log['max_spill_mb']:,.1f} MB "
        f"at a sample, {log['spill_lines_left']:,} records at the end)",
        f"- RSS flat (|slope| < {FLAT_MB_PER_MINUTE} MB/min over the last 80 %): "
        + ("yes, every process" if flat and not rising else
           f"no: {', '.join(rising)}" if rising else "not enough samples"),
        "- throughput, last slice vs first: " + "; ".join(
            f"{name} {t['first']:,.0f} → {t['last']:,.0f} req/s"
            for name, t in document["throughput"].items())
        + f"; CPU of other processes on the machine: {_other_cpu(document['slices'])}",
        f"- errors: {sum(x['errors'] for x in document['slices'])}; log store settled "
        f"{log['settle_seconds']:.1f} s after the load "
        + ("" if log["settled"] else f"(**not settled** within {s['settle_limit']:g} s) ")
        + f"(largest queue seen {log['max_queue_depth']:,.0f}; written_records_total "
        f"{log['written_total']:,.0f})",
        "",
        "### Memory per process",
        "",
        memory_table(memory),
        "",
        "### Over time (log numbers summed over the processes reporting them)",
        "",
        timeline_table(document),
        "",
        "### Throughput",
        "",
        throughput_table(document["throughput"]),
        "",
        slice_table(document["slices"]),
    ]
    return "\n".join(parts)
