"""ModelPort's load benchmark: one command, every contender, side by side, in one run.

    python bench/run.py            # full: 5 scenarios x c=1,32,256 x 7 contenders x 3 rounds
    python bench/run.py --quick    # smoke run, a couple of minutes

Starts the fake upstreams (nginx + aiohttp) and every contender on loopback, installing each into
bench/.peers/ first if needed; then, round by round, runs one wrk cell per (scenario, concurrency,
contender) with the contenders interleaved (their order rotates each round) so machine drift shows
as a spread instead of as a bias. Prints one markdown table and writes bench/results/<stamp>.json.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import peers
import report
from contenders import Contender, ModelPort, all_contenders, rotated
from load import probe, run_wrk
from resources import (
    UsageMeter,
    children_by_parent,
    cpu_seconds,
    listen_overflows,
    machine_busy_seconds,
    tree_pids,
)
from service import ServiceError
from upstreams import Upstreams, start_upstreams
from workload import SCENARIOS, SLOW, Scenario

SLOW_SCENARIOS = {s.name for s in SCENARIOS.values() if s.upstream == SLOW}

RESULTS = Path(__file__).parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 round, c=1,32, 2 s cells, 3 scenarios")
    parser.add_argument("--duration", type=int, help="seconds per cell (default 5; quick 2)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; quick 1)")
    parser.add_argument("--concurrency", help="comma-separated connection counts (default 1,32,256)")
    parser.add_argument("--scenarios", help=f"comma-separated, from: {', '.join(SCENARIOS)}")
    parser.add_argument("--contenders", help="comma-separated names (default: all)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (capped at connections)")
    parser.add_argument("--timeout", type=float, default=10.0, help="wrk per-request timeout, s")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per contender "
                        "and scenario before round 1")
    parser.add_argument("--settle", type=float, default=0.5, help="seconds after each cell before "
                        "CPU is read, so deferred work (log batches) counts for the cell")
    parser.add_argument("--quiet", type=float, default=25.0, help="before each cell, wait until "
                        "the machine's other CPU use is below this %% of one core (shared machines)")
    parser.add_argument("--quiet-wait", type=float, help="longest wait for --quiet, s (default 10; "
                        "quick 0: never wait)")
    parser.add_argument("--portkey-version", help="@portkey-ai/gateway version (default latest)")
    parser.add_argument("--litellm-version", help="litellm version (default latest)")
    parser.add_argument("--keep-workdir", action="store_true", help="keep configs and logs in /tmp")
    args = parser.parse_args(argv)
    quick = args.quick
    args.duration = args.duration or (2.0 if quick else 5.0)
    args.rounds = args.rounds or (1 if quick else 3)
    if args.quiet_wait is None:
        args.quiet_wait = 0.0 if quick else 10.0
    args.concurrency = [int(c) for c in (args.concurrency or ("1,32" if quick else "1,32,256")).split(",")]
    default_scenarios = "openai-0ms,replicate-0ms,sse-2s" if quick else ",".join(SCENARIOS)
    args.scenarios = [SCENARIOS[name] for name in (args.scenarios or default_scenarios).split(",")]
    args.contenders = args.contenders.split(",") if args.contenders else None
    return args


def cell_seconds(scenario: Scenario, args: argparse.Namespace) -> float:
    # A 2 s stream needs a longer cell to complete a few requests per connection.
    floor = 3.0 if args.quick else scenario.min_seconds
    return max(args.duration, floor if scenario.stream else 0.0)


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(), "python": platform.python_version()}


def source_revision() -> str:
    """The checkout ModelPort was measured from (editable install): commit, and whether edited."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(RESULTS.parent.parent), *args], capture_output=True,
                              text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""
    commit = git("rev-parse", "--short", "HEAD") or "no commit"
    return commit + ("+uncommitted changes" if git("status", "--porcelain", "--", "src") else "")


def start_contenders(contenders: list[Contender], workdir: Path, upstreams: Upstreams,
                     skipped: dict[str, str]) -> list[Contender]:
    running = []
    for contender in contenders:
        started = time.monotonic()
        try:
            contender.start(workdir, upstreams)
        except (peers.InstallError, ServiceError, OSError) as error:
            contender.stop()
            skipped[contender.name] = " | ".join(l.strip() for l in str(error).splitlines() if l.strip())[-400:]
            print(f"[bench] {contender.name}: not measured: {error}", file=sys.stderr)
            continue
        print(f"[bench] {contender.name} ready in {time.monotonic() - started:.1f}s", file=sys.stderr)
        running.append(contender)
    return running


def check_and_warm(contenders: list[Contender], upstreams: Upstreams, args: argparse.Namespace,
                   unsupported: dict[str, str]) -> None:
    """Probe every (contender, scenario) once; refuse to load a route that answers wrongly, since a
    fast error would look like a fast gateway. Then warm connection pools and JITs."""
    for scenario in args.scenarios:
        for contender in contenders:
            target = contender.target(scenario, upstreams)
            problem = probe(target, scenario.body, scenario.expect)
            if problem:
                unsupported[f"{contender.name}/{scenario.name}"] = problem
                print(f"[bench] {contender.name}/{scenario.name}: skipped: {problem}", file=sys.stderr)
            elif args.warmup > 0 and not scenario.stream:
                run_wrk(target, scenario.body, 8, args.warmup, args.threads, args.timeout)


def wait_for_quiet(limit_pct: float, max_wait: float) -> float:
    """Wait (bounded) until the machine is nearly idle between cells; returns seconds waited.
    Other work on a shared machine would otherwise land in whichever contender's cell it hits."""
    started = time.monotonic()
    while True:
        before, t0 = machine_busy_seconds(), time.monotonic()
        time.sleep(0.3)
        busy = (machine_busy_seconds() - before) / (time.monotonic() - t0) * 100
        if busy <= limit_pct or time.monotonic() - started >= max_wait:
            return time.monotonic() - started


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_cell(contender: Contender, others: list[Contender], scenario: Scenario, connections: int,
                 upstreams: Upstreams, args: argparse.Namespace) -> dict:
    target = contender.target(scenario, upstreams)
    active, idle = ((upstreams.fixed, upstreams.slow) if scenario.upstream == "fixed"
                    else (upstreams.slow, upstreams.fixed))
    roots = {"upstream": active.pid}
    if contender.pid:
        roots["contender"] = contender.pid
    waited = wait_for_quiet(args.quiet, args.quiet_wait) if args.quiet_wait > 0 else 0.0
    parents = children_by_parent()
    bystanders = [p for root in [o.pid for o in others if o.pid] + [idle.pid]
                  for p in tree_pids(root, parents)]
    bystanders_before, busy_before, own_before = cpu_seconds(bystanders), machine_busy_seconds(), _own_cpu()
    overflows_before = listen_overflows()
    started = time.monotonic()
    with UsageMeter(roots) as meter:
        result = run_wrk(target, scenario.body, connections, cell_seconds(scenario, args),
                         args.threads, args.timeout)
        time.sleep(args.settle)
    wall = time.monotonic() - started
    usage = meter.usage
    own = usage.get("contender")
    ours = (sum(u.cpu_seconds for u in usage.values()) + result.load_cpu_seconds
            + cpu_seconds(bystanders) - bystanders_before + _own_cpu() - own_before)
    other = max(0.0, machine_busy_seconds() - busy_before - ours)
    per_second = (lambda cpu: cpu / result.seconds * 100) if result.seconds else (lambda cpu: None)
    return {
        **result.as_dict(),
        "contender": contender.name,
        "scenario": scenario.name,
        "concurrency": connections,
        "cpu_seconds": own.cpu_seconds if own else None,
        "cpu_us_per_request": own.cpu_seconds / result.requests * 1e6 if own and result.requests else None,
        "peak_rss_mb": own.peak_rss / 2**20 if own else 0.0,
        "upstream_cpu_pct": per_second(usage["upstream"].cpu_seconds),
        "load_cpu_pct": per_second(result.load_cpu_seconds),
        # CPU used by processes that are not part of this benchmark: noise on a shared machine.
        "other_cpu_pct": other / wall * 100,
        "waited_for_quiet_s": round(waited, 1),
        "listen_overflows": listen_overflows() - overflows_before,
    }


def run_rounds(contenders: list[Contender], upstreams: Upstreams, args: argparse.Namespace,
               unsupported: dict[str, str], cells: list[dict]) -> None:
    """Append one measured cell per (round, scenario, concurrency, contender) to `cells`."""
    total = args.rounds * len(args.scenarios) * len(args.concurrency) * len(contenders)
    for round_no in range(args.rounds):
        order = rotated(contenders, round_no)
        for scenario in args.scenarios:
            for connections in args.concurrency:
                for contender in order:
                    if f"{contender.name}/{scenario.name}" in unsupported:
                        continue
                    others = [c for c in contenders if c is not contender]
                    try:
                        cell = measure_cell(contender, others, scenario, connections, upstreams, args)
                    except (RuntimeError, subprocess.TimeoutExpired) as error:
                        print(f"[bench] {contender.name}/{scenario.name} c={connections}: cell lost: "
                              f"{error}", file=sys.stderr)
                        continue
                    cell["round"] = round_no + 1
                    cells.append(cell)
                    print(f"[bench] {len(cells)}/{total} r{round_no + 1} {scenario.name} c={connections} "
                          f"{contender.name}: {cell['rps']:,.0f} req/s p50 {cell['p50_ms']:.2f} ms "
                          f"p99 {cell['p99_ms']:.2f} ms errors {cell['errors']}", file=sys.stderr)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so `timeout`/kill still stops every contender and reports


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 <pid> prints where a slow run is
    candidates = all_contenders(args.portkey_version, args.litellm_version)
    if args.contenders:
        unknown = set(args.contenders) - {c.name for c in candidates}
        if unknown:
            raise SystemExit(f"unknown contenders: {', '.join(sorted(unknown))}")
        candidates = [c for c in candidates if c.name in args.contenders]
    workdir = Path(tempfile.mkdtemp(prefix="modelport-bench-"))
    print(f"[bench] work dir (configs, logs): {workdir}", file=sys.stderr)
    run = {"started_at": datetime.now(UTC).isoformat(timespec="seconds"),
           # Taken now: the editable install runs the tree as it is at start-up.
           "modelport_source": source_revision(), "not_measured": {}, "skipped_cells": {}}
    upstreams = start_upstreams(workdir, peers.bare_python())
    cells: list[dict] = []
    running: list[Contender] = []
    try:
        running = start_contenders(candidates, workdir, upstreams, run["not_measured"])
        check_and_warm(running, upstreams, args, run["skipped_cells"])
        try:
            run_rounds(running, upstreams, args, run["skipped_cells"], cells)
        except KeyboardInterrupt:
            print("[bench] interrupted: reporting the cells measured so far", file=sys.stderr)
    finally:
        for contender in candidates:  # stop() is a no-op for one that never started
            contender.stop()
        upstreams.stop()
    run["modelport_log_rows"] = {c.name: c.recorded() for c in running if isinstance(c, ModelPort)}
    out = save(run, cells, candidates, args)
    print(f"\n[bench] results: {out}", file=sys.stderr)
    if args.keep_workdir or run["not_measured"] or run["skipped_cells"]:
        print(f"[bench] logs kept in {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def save(run: dict, cells: list[dict], candidates: list[Contender], args: argparse.Namespace) -> Path:
    """Summarise, print the markdown, and write <stamp>.json and <stamp>.md under bench/results/."""
    rows = report.summarise(cells, [c.name for c in candidates])
    found = report.ratios(rows)
    document = {
        **run,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": peers.versions(),
        "settings": {"quick": args.quick, "duration": args.duration, "rounds": args.rounds,
                     "concurrency": args.concurrency, "scenarios": [s.name for s in args.scenarios],
                     "wrk_threads": args.threads, "timeout": args.timeout, "settle": args.settle,
                     "quiet": args.quiet, "quiet_wait": args.quiet_wait},
        "contenders": {c.name: c.summary for c in candidates},
        "rows": report.rows_as_dicts(rows),
        "ratios": found,
        "cells": cells,
    }
    RESULTS.mkdir(exist_ok=True)
    stamp = run["started_at"].replace("-", "").replace(":", "").replace("+0000", "Z")
    stamp += "-quick" if args.quick else ""
    text = render(document, rows, found)
    (RESULTS / f"{stamp}.md").write_text(text)
    out = RESULTS / f"{stamp}.json"
    out.write_text(json.dumps(document, indent=1))
    print(text)
    return out


def _load_check(cells: list[dict]) -> str:
    """One line showing the load generator and the slow upstream had headroom in every gateway cell."""
    gateway = [c for c in cells if c["contender"] != "direct"]
    if not gateway:
        return ""
    slow = [c["upstream_cpu_pct"] or 0 for c in gateway if c["scenario"] in SLOW_SCENARIOS]
    wrk = max(c["load_cpu_pct"] or 0 for c in gateway)
    other = sorted(c["other_cpu_pct"] for c in cells)
    return (f"Headroom: wrk used at most {wrk:.0f}% of a core in any gateway cell"
            + (f", the 60 ms/SSE upstream at most {max(slow):.0f}%" if slow else "")
            + f"; CPU of other processes on the machine during cells: median {other[len(other) // 2]:.0f}%, "
            f"max {other[-1]:.0f}% of a core (column 'other CPU %').")


def _log_check(logged: dict[str, dict[str, int]]) -> str:
    if not logged:
        return ""
    parts = [f"{name} {', '.join(f'{t}={n:,}' for t, n in tables.items()) or 'no log tables'}"
             for name, tables in logged.items()]
    return "ModelPort log rows after the run: " + "; ".join(parts) + "."


def render(document: dict, rows: list[report.Row], found: list[dict]) -> str:
    m, s = document["machine"], document["settings"]
    parts = [
        f"## ModelPort benchmark, {document['started_at']}",
        f"{m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Linux {m['kernel']}, Python {m['python']}; "
        f"{s['rounds']} round(s), {s['duration']:g} s cells, wrk {s['wrk_threads']} threads; "
        f"ModelPort from {document['modelport_source']}; "
        + ", ".join(f"{k} {v}" for k, v in document["versions"].items()),
        _load_check(document["cells"]),
        _log_check(document["modelport_log_rows"]),
        "",
        report.table(rows),
        "",
        "### ModelPort against peers",
        "",
        report.ratio_table(found),
    ]
    for title, missing in (("Not measured", document["not_measured"]),
                           ("Skipped cells", document["skipped_cells"])):
        if missing:
            parts += ["", f"### {title}", ""] + [f"- {k}: {v}" for k, v in missing.items()]
    return "\n".join(parts)


if __name__ == "__main__":
    sys.exit(main())
