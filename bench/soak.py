"""A soak run of ModelPort: steady load for minutes; is memory flat, does the log writer keep up, is
any log record lost?

    python bench/soak.py                          # 10 minutes, 1 worker, 32 connections
    python bench/soak.py --minutes 1 --workers 2  # a short check

Built from bench/run.py's pieces: the nginx upstream, the `modelport` contender with the full
pipeline (gateway key, stored @slug credential, logging with bodies, cost), wrk with wrk/post.lua.
The load runs in consecutive wrk slices (openai-0ms and replicate-0ms alternating, or one scenario);
every few seconds the RSS of each process of ModelPort's tree and the log writer's numbers from
`GET /metrics` are sampled. Afterwards it waits for the log store to settle and counts its rows
against the requests wrk saw answered. Writes bench/results/soak-<stamp>.md and .json.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import json
import resource
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import peers
import soak_report
from contenders import ModelPort
from gateway_metrics import (
    QUEUE_DEPTH,
    SPILL_PENDING,
    SPILLED,
    WRITTEN,
    reporting_processes,
    scrape_processes,
)
from load import Target, probe, run_wrk
from process_roles import GatewayProcess, gateway_processes, memory_mb
from resources import children_by_parent, cpu_seconds, machine_busy_seconds, tree_pids
from run import RESULTS, machine, source_revision
from upstreams import Upstreams, start_upstreams
from workload import SCENARIOS, Scenario

ALTERNATING = ("openai-0ms", "replicate-0ms")
# x-portkey-metadata key naming what a request was for ("probe", "warmup", "slice-3"): ModelPort
# stores metadata with each log row, so rows can be counted per slice and probes told from load.
TAG = "bench_soak"
# Each slice sends nothing in its last second (wrk/post.lua's drain mode), so every request sent is
# answered before wrk exits and its count is exact. A stream needs its 2 s to finish as well.
DRAIN_SECONDS = 1.0
STREAM_DRAIN_SECONDS = 4.0
WARMUP_SECONDS = 2  # 1 s of sending at 8 connections, as bench/run.py warms up
WARMUP_CONNECTIONS = 8
ROLE_ORDER = ("supervisor", "worker", "log service", "resource tracker")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of load (default 10)")
    parser.add_argument("--workers", type=int, default=1, help="ModelPort worker processes (default 1)")
    parser.add_argument("--concurrency", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS),
                        help=f"one scenario for every slice (default: {' and '.join(ALTERNATING)} "
                        "alternating)")
    parser.add_argument("--sample-seconds", type=float, default=5.0,
                        help="seconds between samples of RSS and /metrics (default 5)")
    parser.add_argument("--slice-seconds", type=int, default=30, help="seconds per wrk slice (default 30)")
    parser.add_argument("--settle-limit", type=float, default=120.0, help="longest wait after the load "
                        "for the log queue to empty and the spill file to be replayed, s (default 120)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (capped at connections)")
    parser.add_argument("--timeout", type=float, default=10.0, help="wrk per-request timeout, s")
    parser.add_argument("--keep-workdir", action="store_true", help="keep configs, logs and the database")
    args = parser.parse_args(argv)
    args.scenarios = [SCENARIOS[args.scenario]] if args.scenario else [SCENARIOS[n] for n in ALTERNATING]
    return args


@dataclass(frozen=True)
class SlicePlan:
    number: int
    scenario: Scenario
    seconds: int


def plan_slices(minutes: float, slice_seconds: int, scenarios: list[Scenario]) -> list[SlicePlan]:
    """Whole slices of `slice_seconds`, scenarios taking turns; a remainder under 2 s (1 s of sending
    and the drain) joins the last slice."""
    total = max(2, round(minutes * 60))
    lengths = [slice_seconds] * (total // slice_seconds)
    rest = total - sum(lengths)
    if rest >= 2 or not lengths:
        lengths.append(rest)
    else:
        lengths[-1] += rest
    return [SlicePlan(i + 1, scenarios[i % len(scenarios)], seconds) for i, seconds in enumerate(lengths)]


def tagged(target: Target, tag: str) -> Target:
    return Target(target.url, {**target.headers, "x-portkey-metadata": json.dumps({TAG: tag})})


def drain_for(scenario: Scenario) -> float:
    return STREAM_DRAIN_SECONDS if scenario.stream else DRAIN_SECONDS


@dataclass
class Sampler:
    """Samples RSS per process and the log numbers per worker, every `interval` s in a thread
    while the load runs, or on demand (take) while the log store settles."""

    root: int
    port: int
    origin: str
    spill: Path  # ModelPort's spill directory
    interval: float
    started: float = 0.0  # monotonic time the load began; samples' t counts from it
    phase: str = ""  # the slice running, or "settle"
    processes: dict[int, GatewayProcess] = field(default_factory=dict)
    samples: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._every_interval, daemon=True)

    def start(self, started: float) -> None:
        self.started = started
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _every_interval(self) -> None:
        self.take()
        while not self._stop.wait(self.interval):
            self.take()

    def take(self) -> dict:
        t = time.monotonic() - self.started
        found = gateway_processes(self.root, self.port)
        self.processes.update({p.pid: p for p in found})
        memory = {p.pid: m for p in found if (m := memory_mb(p.pid)) is not None}
        workers = {p.pid for p in found if p.role == "worker"}
        sample = {"t": t, "phase": self.phase, "memory": memory, "workers": sorted(workers),
                  "log": scrape_processes(self.origin, workers), "spill_bytes": spill_bytes(self.spill)}
        self.samples.append(sample)
        return sample


def _unanswered(result: dict) -> int:
    """Requests of a slice the server may have answered without wrk counting it: sent but never
    answered (the drain was too short), and those on a connection that failed mid-request (wrk
    sends them again on a new one)."""
    detail = result["error_detail"]
    return max(0, result["sent"] - result["requests"]) + detail["read"] + detail["write"]


def check_and_warm(contender: ModelPort, upstreams: Upstreams, args: argparse.Namespace) -> dict:
    """Probe each scenario once (a wrong answer ends the run: a fast error is no soak), then warm
    up; returns the requests answered in each phase, which the log store must hold too."""
    answered = {"probe": 0, "warmup": 0, "warmup_cut_off": 0}
    for scenario in args.scenarios:
        target = contender.target(scenario, upstreams)
        problem = probe(tagged(target, "probe"), scenario.body, scenario.expect)
        answered["probe"] += 1
        if problem:
            raise SystemExit(f"[soak] {scenario.name}: the probe failed: {problem}")
        if not scenario.stream:
            result = run_wrk(tagged(target, "warmup"), scenario.body, WARMUP_CONNECTIONS, WARMUP_SECONDS,
                             args.threads, args.timeout, drain=DRAIN_SECONDS)
            answered["warmup"] += result.requests
            answered["warmup_cut_off"] += _unanswered(result.as_dict())
    return answered


def cpu_reading(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each tree in `roots`, of this runner (sampler thread included) and of
    the whole machine."""
    parents = children_by_parent()
    reading = {name: cpu_seconds(tree_pids(pid, parents)) for name, pid in roots.items()}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    reading["runner"] = usage.ru_utime + usage.ru_stime
    reading["machine"] = machine_busy_seconds()
    return reading


def cpu_shares(before: dict[str, float], after: dict[str, float], wall: float, load_cpu: float) -> dict:
    """ModelPort's CPU during a slice, and that of processes outside the benchmark (% of one core):
    on a shared machine, a slice slower than its neighbours with high 'other' is noise, not decay."""
    used = {name: after[name] - before[name] for name in before}
    ours = sum(v for name, v in used.items() if name != "machine") + load_cpu
    return {"modelport_cpu_pct": used["modelport"] / wall * 100,
            "other_cpu_pct": max(0.0, used["machine"] - ours) / wall * 100}


def run_slices(contender: ModelPort, upstreams: Upstreams, plan: list[SlicePlan], sampler: Sampler,
               args: argparse.Namespace) -> list[dict]:
    assert contender.pid is not None
    slices: list[dict] = []
    roots = {"modelport": contender.pid, "fixed": upstreams.fixed.pid, "slow": upstreams.slow.pid}
    try:
        for planned in plan:
            tag = f"slice-{planned.number}"
            target = tagged(contender.target(planned.scenario, upstreams), tag)
            sampler.phase = tag
            begun = time.monotonic() - sampler.started
            drain = drain_for(planned.scenario)
            seconds = max(planned.seconds, int(drain) + 1)  # at least a second of sending
            before = cpu_reading(roots)
            result = run_wrk(target, planned.scenario.body, args.concurrency, seconds, args.threads,
                             args.timeout, drain=drain)
            ended = time.monotonic() - sampler.started
            slices.append({"slice": planned.number, "tag": tag, "scenario": planned.scenario.name,
                           "from_s": begun, "to_s": ended, **result.as_dict(),
                           **cpu_shares(before, cpu_reading(roots), ended - begun, result.load_cpu_seconds)})
            print(f"[soak] slice {planned.number}/{len(plan)} {planned.scenario.name}: "
                  f"{result.rps:,.0f} req/s, {result.requests:,} answered of {result.sent:,} sent, "
                  f"p99 {result.p99_ms:.1f} ms, errors {result.errors}", file=sys.stderr)
    except (KeyboardInterrupt, RuntimeError) as error:
        # The slice cut short has no count, so its rows are left out of the comparison (as "other").
        print(f"[soak] load stopped early ({error or 'interrupted'}): reporting {len(slices)} slices",
              file=sys.stderr)
    return slices


def log_rows(contender: ModelPort) -> int:
    """Rows in the `logs` table, counted as bench/run.py counts them (ModelPort.recorded)."""
    return contender.recorded().get("logs", 0)


def rows_by_tag(contender: ModelPort) -> dict[str, int]:
    assert contender.home is not None
    database = contender.home / "data" / "modelport.db"
    query = f"SELECT json_extract(metadata, '$.{TAG}'), count(*) FROM logs GROUP BY 1"
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        return {tag or "(untagged)": count for tag, count in db.execute(query)}


def spill_bytes(directory: Path) -> int:
    """Bytes in the spill files (<data>/spill/*.jsonl, replay backlogs included): records not yet in
    the store, whichever process spilled them (a worker's spills are in no metric when a log service
    writes the store). Sizes, not lines: the files reach hundreds of MB, too much to read every
    sample on the machine under test."""
    size = 0
    for path in directory.glob("*.jsonl"):
        try:
            size += path.stat().st_size
        except FileNotFoundError:
            pass  # replayed and removed while we looked
    return size


def spill_lines(directory: Path) -> int:
    """Records left in the spill files, counted once at the end."""
    lines = 0
    for path in directory.glob("*.jsonl"):
        try:
            with open(path, "rb") as f:
                lines += sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        except FileNotFoundError:
            pass
    return lines


def _log_idle(sample: dict) -> bool:
    """The processes that keep the log numbers answered /metrics with an empty queue and nothing
    pending, and the spill files are empty."""
    numbers = sample["log"]
    sources = reporting_processes(numbers, set(sample["workers"]))
    return bool(sources) and sample["spill_bytes"] == 0 and all(
        pid in numbers and numbers[pid].get(QUEUE_DEPTH, 0) == 0 and numbers[pid].get(SPILL_PENDING, 0) == 0
        for pid in sources)


def wait_for_log_store(sampler: Sampler, contender: ModelPort, limit: float) -> dict:
    """After the load: wait (bounded) until the queues and spill files are empty, nothing is pending
    and the row count holds still for a second (a batch taken off the queue may still be in its write)."""
    sampler.phase = "settle"
    started, previous = time.monotonic(), None
    while True:
        idle = _log_idle(sampler.take())
        rows = log_rows(contender)
        waited = time.monotonic() - started
        if idle and rows == previous:
            return {"settled": True, "settle_seconds": waited}
        if waited > limit:
            return {"settled": False, "settle_seconds": waited}
        previous = rows
        time.sleep(1.0)


def last_per_process(samples: list[dict], name: str) -> float:
    """A counter's latest value in each process, summed (a process missed by the last scrape keeps
    the value it reported before)."""
    latest: dict[int, float] = {}
    for sample in samples:
        for pid, numbers in sample["log"].items():
            if name in numbers:
                latest[pid] = numbers[name]
    return sum(latest.values())


def log_store_summary(contender: ModelPort, warmed: dict, slices: list[dict], sampler: Sampler,
                      settled: dict) -> dict:
    samples, spill = sampler.samples, sampler.spill
    tags = rows_by_tag(contender)
    load_rows = sum(tags.get(s["tag"], 0) for s in slices)
    for s in slices:
        s["log_rows"] = tags.get(s["tag"], 0)
    answered = warmed["probe"] + warmed["warmup"] + sum(s["requests"] for s in slices)
    counted = tags.get("probe", 0) + tags.get("warmup", 0) + load_rows
    cut_off = warmed["warmup_cut_off"] + sum(_unanswered(s) for s in slices)
    ok, verdict = soak_report.log_verdict(answered, counted, cut_off)
    final = samples[-1]
    return {
        **settled,
        "verdict": verdict, "ok": ok, "rows": counted, "answered": answered, "cut_off": cut_off,
        "rows_total": sum(tags.values()), "rows_by_tag": tags,
        "breakdown": f"probes {tags.get('probe', 0)}/{warmed['probe']}, warm-up "
                     f"{tags.get('warmup', 0):,}/{warmed['warmup']:,}, load {load_rows:,}/"
                     f"{sum(s['requests'] for s in slices):,}; other rows "
                     f"{sum(tags.values()) - counted:,}",
        "spilled": last_per_process(samples, SPILLED), "spill_lines_left": spill_lines(spill),
        "max_spill_mb": max(s["spill_bytes"] for s in samples) / 2**20,
        "all_replayed": settled["settled"] and _log_idle(final),
        "written_total": last_per_process(samples, WRITTEN),
        "max_queue_depth": max((sum(n.get(QUEUE_DEPTH, 0) for n in s["log"].values()) for s in samples),
                               default=0),
    }


def process_summaries(sampler: Sampler, load_seconds: float) -> list[dict]:
    """Each process's role, a label ("worker 2") and its memory figures over the load."""
    ordered = sorted(sampler.processes.values(),
                     key=lambda p: (ROLE_ORDER.index(p.role) if p.role in ROLE_ORDER else 9, p.pid))
    counts = {role: sum(p.role == role for p in ordered) for role in {p.role for p in ordered}}
    seen: dict[str, int] = {}
    found = []
    for process in ordered:
        series = [(s["t"], *s["memory"][process.pid]) for s in sampler.samples
                  if s["phase"] != "settle" and process.pid in s["memory"]]
        if not series:
            continue
        seen[process.role] = seen.get(process.role, 0) + 1
        label = process.role + (f" {seen[process.role]}" if counts[process.role] > 1 else "")
        found.append({"pid": process.pid, "role": process.role, "label": label, "name": process.name,
                      "cmdline": process.cmdline, "memory": soak_report.memory_summary(series, load_seconds)})
    return found


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so `timeout`/kill still stops ModelPort and reports


def measure(contender: ModelPort, upstreams: Upstreams, plan: list[SlicePlan],
            args: argparse.Namespace) -> dict:
    """Warm up, run the slices while sampling, let the log store settle; everything measured."""
    assert contender.home is not None and contender.pid is not None
    warmed = check_and_warm(contender, upstreams, args)
    sampler = Sampler(contender.pid, contender.port, contender.origin,
                      contender.home / "data" / "spill", args.sample_seconds)
    sampler.start(time.monotonic())
    slices = run_slices(contender, upstreams, plan, sampler, args)
    load_seconds = time.monotonic() - sampler.started
    sampler.stop()
    settled = wait_for_log_store(sampler, contender, args.settle_limit)
    return {"load_seconds": load_seconds, "processes": process_summaries(sampler, load_seconds),
            "throughput": soak_report.throughput_summary(slices) if slices else {},
            "log_store": log_store_summary(contender, warmed, slices, sampler, settled),
            "slices": slices, "samples": _json_samples(sampler.samples)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 <pid> prints where a slow run is
    plan = plan_slices(args.minutes, args.slice_seconds, args.scenarios)
    workdir = Path(tempfile.mkdtemp(prefix="modelport-soak-"))
    print(f"[soak] work dir (config, logs, database): {workdir}", file=sys.stderr)
    run = {"started_at": datetime.now(UTC).isoformat(timespec="seconds"),
           "modelport_source": source_revision()}
    name = "modelport" if args.workers == 1 else f"modelport-{args.workers}w"
    contender = ModelPort(name, "full pipeline: key check, @slug credential, logs with bodies, cost",
                          workers=args.workers)
    upstreams = start_upstreams(workdir, peers.bare_python())
    try:
        contender.start(workdir, upstreams)
        measured = measure(contender, upstreams, plan, args)
    finally:
        contender.stop()  # graceful: ModelPort drains its log records into the store before exiting
        upstreams.stop()
    measured["log_store"]["rows_after_stop"] = log_rows(contender)
    save({**run, "finished_at": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
          "versions": peers.versions(), "settings": settings(args), **measured})
    if args.keep_workdir:
        print(f"[soak] work dir kept: {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if measured["log_store"]["ok"] else 1  # lost log records fail the command


def settings(args: argparse.Namespace) -> dict:
    return {"minutes": args.minutes, "workers": args.workers, "concurrency": args.concurrency,
            "scenarios": [s.name for s in args.scenarios], "slice_seconds": args.slice_seconds,
            "sample_seconds": args.sample_seconds, "settle_limit": args.settle_limit,
            "wrk_threads": args.threads, "timeout": args.timeout, "drain_seconds": DRAIN_SECONDS}


def _json_samples(samples: list[dict]) -> list[dict]:
    """Samples with pids as string keys (JSON) and memory as {"rss_mb", "anon_mb"}."""
    return [{**s, "memory": {str(pid): {"rss_mb": rss, "anon_mb": anon}
                             for pid, (rss, anon) in s["memory"].items()},
             "log": {str(pid): numbers for pid, numbers in s["log"].items()}} for s in samples]


def save(document: dict) -> None:
    """Print the markdown; write bench/results/soak-<stamp>.md and .json."""
    RESULTS.mkdir(exist_ok=True)
    stamp = document["started_at"].replace("-", "").replace(":", "").replace("+0000", "Z")
    text = soak_report.render(document)
    (RESULTS / f"soak-{stamp}.md").write_text(text + "\n")
    out = RESULTS / f"soak-{stamp}.json"
    out.write_text(json.dumps(document, indent=1))
    print(text)
    print(f"\n[soak] results: {out}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
