"""The upstream-fault soak: N requests (default 100,000) that meet a broken upstream or a client that
leaves; does any file descriptor, memory or task leak, is any log record lost?

    python bench/fault_soak.py                         # 100,000 requests, 2 workers, 128 at a time
    python bench/fault_soak.py --requests 5000         # a short check

A real `modelport serve` (2 workers, logging on, the mix's low upstream timeouts) and the faulty
upstream (tests/fakes/faulty.py) as processes of their own; the mix and its client are
tests/fault_mix.py. Before the load (after a warm-up that plays every case, once the gateway is idle),
every few seconds during it, and after it (once the log store has settled and the upstream has
closed its idle connections), each gateway process's RSS and open fds (/proc/<pid>/fd) and each
worker's asyncio tasks (`modelport_tasks` on /metrics) are sampled. Then every request the gateway
saw is looked up in the log store by its trace id, through the logs API's export. Writes
bench/results/fault-soak-<stamp>.md and .json; exits 1 on a leak, a lost record or a wrong answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))

from gateway_metrics import QUEUE_DEPTH, SPILL_PENDING, TASKS, scrape_once, scrape_processes  # noqa: E402
from process_roles import gateway_processes, memory_mb  # noqa: E402
from run import RESULTS, machine, source_revision  # noqa: E402

from tests import fault_mix  # noqa: E402
from tests.fakes.faulty import FaultyUpstream  # noqa: E402
from tests.harness import GatewayProcess  # noqa: E402

FD_SLACK = 8  # open fds a process may hold after the load beyond before it (a log file rotated, a pooled connection)
TASK_SLACK = 2  # tasks a worker may hold after beyond before (the key-use flush, a scrape in flight)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000, help="requests of the mix (default 100,000)")
    parser.add_argument("--concurrency", type=int, default=128, help="requests in flight (default 128)")
    parser.add_argument("--workers", type=int, default=2, help="modelport serve --workers (default 2)")
    parser.add_argument("--sample-seconds", type=float, default=5.0, help="seconds between samples (default 5)")
    parser.add_argument("--settle-limit", type=float, default=120.0,
                        help="longest wait after the load for every record to be stored, s (default 120)")
    parser.add_argument("--seed", type=int, default=14, help="seed of the mix's random order (default 14)")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the config, logs and database")
    return parser.parse_args(argv)


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


class Sampler:
    """Each gateway process's role, RSS and fds, and each worker's tasks: on demand, or every
    `interval` s from a thread while the load runs."""

    def __init__(self, gateway: GatewayProcess, interval: float) -> None:
        assert gateway.process is not None
        self.root, self.port, self.origin = gateway.process.pid, gateway.port, gateway.url
        self.interval = interval
        self.started = time.monotonic()
        self.phase = "before"
        self.samples: list[dict] = []
        self.roles: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._every_interval, daemon=True)

    def take(self) -> dict:
        found = gateway_processes(self.root, self.port)
        self.roles.update({p.pid: p.role for p in found})
        workers = {p.pid for p in found if p.role == "worker"}
        processes = {}
        for p in found:
            memory, fds = memory_mb(p.pid), open_fds(p.pid)
            if memory is not None and fds is not None:
                processes[p.pid] = {"role": p.role, "rss_mb": round(memory[0], 1), "anon_mb": round(memory[1], 1), "fds": fds}
        tasks = scrape_processes(self.origin, workers, families=(TASKS,))
        sample = {"t": round(time.monotonic() - self.started, 1), "phase": self.phase, "processes": processes,
                  "tasks": {pid: int(n[TASKS]) for pid, n in tasks.items() if TASKS in n}}
        self.samples.append(sample)
        return sample

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _every_interval(self) -> None:
        while not self._stop.wait(self.interval):
            self.take()


def log_idle(origin: str) -> bool:
    numbers = scrape_once(origin)
    return bool(numbers) and all(n.get(QUEUE_DEPTH, 0) == 0 and n.get(SPILL_PENDING, 0) == 0 for n in numbers.values())


def settle(gateway: GatewayProcess, run: str, seen: int, limit: float) -> tuple[list[dict], float, bool]:
    """Wait until the log store holds a record for every request seen, or has stopped growing with
    an idle log writer for 5 s (then some are lost), or `limit` s pass. Returns the run's records."""
    started, last_count, still_since = time.monotonic(), -1, time.monotonic()
    while True:
        records = fault_mix.exported_records(gateway.v1, gateway.admin_key, run)
        waited = time.monotonic() - started
        if len(records) >= seen:
            return records, waited, True
        if len(records) != last_count:
            last_count, still_since = len(records), time.monotonic()
        elif time.monotonic() - still_since > 5 and log_idle(gateway.url):
            return records, waited, False
        if waited > limit:
            return records, waited, False
        time.sleep(1.0)


def quiet(sampler: Sampler, upstream: FaultyUpstream, before: dict, limit: float) -> tuple[dict, float]:
    """After the load: the upstream closes the gateway's idle pooled connections (as its idle timeout
    would), then wait (up to `limit` s) until every process is back to its fds before, within FD_SLACK."""
    started = time.monotonic()
    upstream.close_idle()
    while True:
        sample = sampler.take()
        back = all(p["fds"] <= before["processes"].get(pid, p)["fds"] + FD_SLACK for pid, p in sample["processes"].items())
        if back or time.monotonic() - started > limit:
            return sample, time.monotonic() - started
        time.sleep(1.0)


async def load(plan: list[fault_mix.Case], target: fault_mix.Target, concurrency: int,
               results: list[fault_mix.Result]) -> None:
    """Drive the plan, printing progress every 10 s."""
    started = time.monotonic()

    async def progress() -> None:
        while True:
            await asyncio.sleep(10)
            elapsed = time.monotonic() - started
            print(f"[fault-soak] {len(results):,}/{len(plan):,} in {elapsed:.0f} s ({len(results) / elapsed:,.0f}/s), "
                  f"unexpected {len(fault_mix.unexpected(results))}", file=sys.stderr)

    reporter = asyncio.create_task(progress())
    try:
        await fault_mix.drive(plan, target, concurrency, results)
    finally:
        reporter.cancel()


def figures(samples: list[dict], before: dict, after: dict, roles: dict[int, str]) -> list[dict]:
    """Per process: RSS, fds and (workers) tasks before, at the peak during the load, and after."""
    rows = []
    during = [s for s in samples if s["phase"] == "load"]
    for pid in sorted(before["processes"], key=lambda p: (roles.get(p, ""), p)):
        b, a = before["processes"][pid], after["processes"].get(pid)
        row = {"pid": pid, "role": roles.get(pid, "?"), "rss_before": b["rss_mb"], "fds_before": b["fds"],
               "rss_peak": max([s["processes"][pid]["rss_mb"] for s in during if pid in s["processes"]], default=None),
               "fds_peak": max([s["processes"][pid]["fds"] for s in during if pid in s["processes"]], default=None),
               "rss_after": a["rss_mb"] if a else None, "fds_after": a["fds"] if a else None}
        series = [s["processes"][pid]["rss_mb"] for s in during if pid in s["processes"]]
        quarter = max(1, len(series) // 4)
        row.update(rss_first_quarter=_median(series[:quarter]), rss_last_quarter=_median(series[-quarter:]))
        if pid in before["tasks"]:
            row.update(tasks_before=before["tasks"][pid], tasks_after=after["tasks"].get(pid),
                       tasks_peak=max([s["tasks"][pid] for s in during if pid in s["tasks"]], default=None))
        rows.append(row)
    return rows


def _median(values: list[float]) -> float | None:
    return sorted(values)[len(values) // 2] if values else None


def leaks(rows: list[dict]) -> list[str]:
    found = []
    for row in rows:
        if row["fds_after"] is None:
            found.append(f"{row['role']} {row['pid']} is gone")
            continue
        if row["fds_after"] > row["fds_before"] + FD_SLACK:
            found.append(f"{row['role']} {row['pid']}: {row['fds_before']} fds before, {row['fds_after']} after")
        if "tasks_before" in row and (row["tasks_after"] is None or row["tasks_after"] > row["tasks_before"] + TASK_SLACK):
            found.append(f"{row['role']} {row['pid']}: {row['tasks_before']} tasks before, {row['tasks_after']} after")
    return found


def measure(args: argparse.Namespace, workdir: Path) -> dict:
    with FaultyUpstream() as upstream:
        gateway = GatewayProcess(workdir / "data", settings=fault_mix.gateway_settings(),
                                 providers=[fault_mix.stored_provider(upstream.url)],
                                 env={fault_mix.STORED_SECRET_ENV: "sk-fault-soak-stored"}, workers=args.workers)
        with gateway:
            target = fault_mix.Target("127.0.0.1", gateway.port, upstream.url)
            warm = fault_mix.MIX * 2 + fault_mix.pick(1000, seed=args.seed + 1)
            warmed: list[fault_mix.Result] = []
            asyncio.run(fault_mix.drive(warm, target, args.concurrency, warmed))
            sampler = Sampler(gateway, args.sample_seconds)
            upstream.close_idle()  # the warm-up's pooled connections closed (its stalls are over)
            before = sampler.take()
            plan = fault_mix.pick(args.requests, seed=args.seed)
            results: list[fault_mix.Result] = []
            sampler.phase = "load"
            sampler.start()
            started = time.monotonic()
            asyncio.run(load(plan, target, args.concurrency, results))
            load_seconds = time.monotonic() - started
            sampler.stop()
            sampler.phase = "settle"
            seen = sum(r.case.recorded for r in warmed + results)
            records, settle_seconds, settled = settle(gateway, target.run, seen, args.settle_limit)
            sampler.phase = "after"
            after, quiet_seconds = quiet(sampler, upstream, before, 60.0)
            check = fault_mix.check_records(warmed + results, records)
            rows = figures(sampler.samples, before, after, sampler.roles)
            log = gateway.log_text()
        upstream_alive = upstream.process is not None and upstream.process.poll() is None
    wrong = fault_mix.unexpected(results + warmed)
    seconds = sorted(r.seconds for r in results)
    return {
        "requests": len(results), "warmup_requests": len(warmed), "load_seconds": round(load_seconds, 1),
        "rate": round(len(results) / load_seconds, 1), "settle_seconds": round(settle_seconds, 1), "settled": settled,
        "quiet_seconds": round(quiet_seconds, 1), "upstream_alive": upstream_alive,
        "outcomes": dict(Counter(r.outcome for r in results)),
        "unexpected": len(wrong),
        "unexpected_examples": [f"{r.case.name}: {r.outcome} {r.status} {r.detail}" for r in wrong[:20]],
        "seconds_max": round(seconds[-1], 2), "seconds_p99": round(seconds[int(len(seconds) * 0.99)], 2),
        "records": check, "processes": rows, "leaks": leaks(rows),
        "server_log_errors": dict(Counter(line.strip() for line in log.splitlines()
                                          if line.startswith(("ERROR", "CRITICAL")) or "Traceback" in line).most_common(10)),
        "tally": {name: dict(c) for name, c in sorted(fault_mix.tally(results).items())},
        "samples": [{**s, "processes": {str(k): v for k, v in s["processes"].items()},
                     "tasks": {str(k): v for k, v in s["tasks"].items()}} for s in sampler.samples],
    }


def render(doc: dict) -> str:
    r = doc["records"]
    lines = [
        f"# Fault soak, {doc['started_at']} (ModelPort at {doc['modelport_source']})", "",
        f"{doc['requests']:,} requests of the mix ({len(fault_mix.MIX)} cases) in {doc['load_seconds']} s "
        f"({doc['rate']:,} req/s) at {doc['settings']['concurrency']} in flight, {doc['settings']['workers']} workers; "
        f"warm-up {doc['warmup_requests']:,} requests.", "",
        f"- Answers as expected: **{'yes' if not doc['unexpected'] else 'no'}** ({doc['unexpected']} unexpected); "
        f"outcomes {', '.join(f'{k} {v:,}' for k, v in sorted(doc['outcomes'].items()))}; slowest request "
        f"{doc['seconds_max']} s (p99 {doc['seconds_p99']} s; deadline {fault_mix.DEADLINE_S:g} s, "
        f"{fault_mix.HEAVY_DEADLINE_S:g} s for a case moving 32+ MiB).",
        f"- Log records: **{'none lost' if not fault_mix.records_lost(r) else 'LOST OR DUPLICATED'}**: {r['records']:,} "
        f"records for {r['requests_seen']:,} requests the gateway saw (missing {r['missing']}, duplicates "
        f"{r['duplicates']}, extra {r['extra']}, status differing from the answer {r['status_disagrees']}); "
        f"stored {doc['settle_seconds']} s after the load.",
        f"- Leaks: **{'none' if not doc['leaks'] else '; '.join(doc['leaks'])}** (fds within {FD_SLACK}, tasks within "
        f"{TASK_SLACK} of before; after measured {doc['quiet_seconds']} s after the records were in).", "",
        "| process | RSS MB before → peak → after | RSS median, first → last quarter of the load | "
        "fds before → peak → after | tasks before → peak → after |",
        "|---|---|---|---|---|",
    ]
    for p in doc["processes"]:
        tasks = f"{p['tasks_before']} → {p['tasks_peak']} → {p['tasks_after']}" if "tasks_before" in p else "—"
        lines.append(f"| {p['role']} {p['pid']} | {p['rss_before']} → {p['rss_peak']} → {p['rss_after']} | "
                     f"{p['rss_first_quarter']} → {p['rss_last_quarter']} | "
                     f"{p['fds_before']} → {p['fds_peak']} → {p['fds_after']} | {tasks} |")
    if doc["unexpected_examples"]:
        lines += ["", "Unexpected answers:", *[f"- {e}" for e in doc["unexpected_examples"]]]
    if r["status_disagrees_examples"]:
        lines += ["", "Records whose status differs:", *[f"- {e}" for e in r["status_disagrees_examples"]]]
    if doc["server_log_errors"]:
        lines += ["", "Server log lines at error level:", *[f"- {n} × `{line}`" for line, n in doc["server_log_errors"].items()]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="modelport-fault-soak-"))
    print(f"[fault-soak] work dir: {workdir}", file=sys.stderr)
    doc = {"started_at": datetime.now(UTC).isoformat(timespec="seconds"), "modelport_source": source_revision(),
           "machine": machine(), "settings": {k: v for k, v in vars(args).items() if k != "keep_workdir"}}
    try:
        doc.update(measure(args, workdir))
    finally:
        if not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    doc["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    RESULTS.mkdir(exist_ok=True)
    stamp = doc["started_at"].replace("-", "").replace(":", "").replace("+0000", "Z")
    text = render(doc)
    (RESULTS / f"fault-soak-{stamp}.md").write_text(text + "\n")
    (RESULTS / f"fault-soak-{stamp}.json").write_text(json.dumps(doc, indent=1))
    print(text)
    print(f"\n[fault-soak] results: {RESULTS / f'fault-soak-{stamp}.json'}", file=sys.stderr)
    return 1 if doc["unexpected"] or fault_mix.records_lost(doc["records"]) or doc["leaks"] else 0


if __name__ == "__main__":
    sys.exit(main())
