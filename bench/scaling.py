"""Does a second worker double ModelPort's throughput? One and two workers at c=128, full pipeline,
each worker held to the same CPU budget by a cgroup quota.

    python bench/scaling.py                      # 0.4 of a core per worker, c=128, 3 rounds of 5 s
    python bench/scaling.py --worker-cpu 0       # no budget: what this machine gives

Why a budget: on a 2-core machine the load generator, nginx and the log service run beside the
workers, so two saturated workers cannot each get a core, and "1 → 2 workers" would measure the
machine. With every worker capped at the same fraction of a core, and that fraction small enough that
everything fits on the machine, a second worker has exactly the CPU the first had; any shortfall from
2× is then ModelPort's own (connections spread unevenly, the log service or SQLite falling behind,
contention between workers). Each cell prints the evidence that the budget, not the machine, was the
limit: every worker used ≥ 95 % of its budget, the cgroup throttled it, and the machine still had
idle CPU.

Needs root and a writable cgroup CPU controller (v1 ``/sys/fs/cgroup/cpu`` or v2 ``cpu.max``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import peers
from contenders import ModelPort, rotated
from load import run_wrk
from process_roles import gateway_processes
from resources import cpu_seconds, machine_idle_seconds
from upstreams import start_upstreams
from workload import SCENARIOS

SCENARIO_NAMES = ("openai-0ms", "replicate-0ms")
PERIOD_US = 20_000  # a short quota period: a capped worker waits at most the rest of 20 ms, not 100
V1_ROOT = Path("/sys/fs/cgroup/cpu")
V2_ROOT = Path("/sys/fs/cgroup")


class CpuBudget:
    """A cgroup that holds some processes to `cores` of CPU (cgroup v1 cpu controller, or v2)."""

    def __init__(self, name: str, cores: float) -> None:
        if (V1_ROOT / "cpu.cfs_quota_us").exists():
            self.root, self.path = V1_ROOT, V1_ROOT / name
            self.path.mkdir(exist_ok=True)
            (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (self.path / "cpu.cfs_quota_us").write_text(str(int(cores * PERIOD_US)))
        elif "cpu" in (V2_ROOT / "cgroup.controllers").read_text().split():
            self.root, self.path = V2_ROOT, V2_ROOT / name
            self.path.mkdir(exist_ok=True)
            (self.path / "cpu.max").write_text(f"{int(cores * PERIOD_US)} {PERIOD_US}")
        else:
            raise SystemExit("no writable cgroup CPU controller: run as root, or use --worker-cpu 0")

    def hold(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))  # moves every thread of the process

    def throttled(self) -> tuple[int, float]:
        """(periods throttled, seconds throttled) so far."""
        stats = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        if "nr_throttled" in stats and "throttled_time" in stats:  # v1: ns
            return int(stats["nr_throttled"]), int(stats["throttled_time"]) / 1e9
        return int(stats.get("nr_throttled", 0)), int(stats.get("throttled_usec", 0)) / 1e6

    def remove(self) -> None:
        for pid in (self.path / "cgroup.procs").read_text().split():
            try:
                (self.root / "cgroup.procs").write_text(pid)
            except OSError:
                pass  # already gone
        self.path.rmdir()


@dataclass
class Cell:
    rps: float
    worker_cpu: list[float]  # each worker's CPU, cores (CPU seconds per second)
    log_cpu: float
    throttled_periods: int
    machine_idle: float  # share of all cores idle during the cell


def measure(gateway: ModelPort, budgets: list[CpuBudget], scenario: str, upstreams, concurrency: int,
            seconds: int) -> Cell:
    workers, log_service = _pids(gateway, "worker"), _pids(gateway, "log service")
    before = [cpu_seconds([pid]) for pid in workers], cpu_seconds(log_service)
    throttled_before = sum(b.throttled()[0] for b in budgets)
    idle_before, started = machine_idle_seconds(), time.monotonic()
    result = run_wrk(gateway.target(SCENARIOS[scenario], upstreams), SCENARIOS[scenario].body, concurrency, seconds)
    elapsed = time.monotonic() - started
    idle = (machine_idle_seconds() - idle_before) / (elapsed * os.cpu_count())
    worker_cpu = [(cpu_seconds([pid]) - b) / elapsed for pid, b in zip(workers, before[0])]
    return Cell(result.rps, worker_cpu, (cpu_seconds(log_service) - before[1]) / elapsed,
                sum(b.throttled()[0] for b in budgets) - throttled_before, idle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--worker-cpu", type=float, default=0.4, help="cores per worker; 0: no budget")
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per cell")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="modelport-scaling-"))
    upstreams = start_upstreams(workdir, peers.bare_python())
    gateways = [ModelPort("modelport-1w", "one worker"), ModelPort("modelport-2w", "two workers", workers=2)]
    budgets: dict[str, list[CpuBudget]] = {}
    cells: dict[tuple[str, str], list[Cell]] = {}
    try:
        for gateway in gateways:
            gateway.start(workdir, upstreams)
            budgets[gateway.name] = _cap_workers(gateway, args.worker_cpu)
        for name in SCENARIO_NAMES:  # warm-up
            for gateway in gateways:
                run_wrk(gateway.target(SCENARIOS[name], upstreams), SCENARIOS[name].body, 8, 1)
        for round_ in range(args.rounds):
            for name in SCENARIO_NAMES:
                for gateway in rotated(gateways, round_):
                    cell = measure(gateway, budgets[gateway.name], name, upstreams, args.concurrency, args.duration)
                    cells.setdefault((name, gateway.name), []).append(cell)
    finally:
        for gateway in gateways:
            gateway.stop()
            for budget in budgets.get(gateway.name, []):
                budget.remove()
        upstreams.stop()
    report(cells, args)


def _pids(gateway: ModelPort, role: str) -> list[int]:
    return [process.pid for process in gateway_processes(gateway.pid, gateway.port) if process.role == role]


def _cap_workers(gateway: ModelPort, cores: float) -> list[CpuBudget]:
    if cores <= 0:
        return []
    budgets = []
    for pid in _pids(gateway, "worker"):
        budget = CpuBudget(f"modelport-bench-{pid}", cores)
        budget.hold(pid)
        budgets.append(budget)
    return budgets


def report(cells: dict[tuple[str, str], list[Cell]], args: argparse.Namespace) -> None:
    budget = f"{args.worker_cpu:g} core per worker" if args.worker_cpu > 0 else "no CPU budget"
    print(f"c={args.concurrency}, {budget}, {args.rounds} rounds of {args.duration} s, full pipeline")
    for name in SCENARIO_NAMES:
        one, two = cells[(name, "modelport-1w")], cells[(name, "modelport-2w")]
        ratios = [b.rps / a.rps for a, b in zip(one, two)]
        print(f"{name}: 2 workers / 1 worker = {statistics.median(ratios):.2f}x "
              f"(per round: {', '.join(f'{r:.2f}' for r in ratios)})")
        for label, runs in (("1 worker ", one), ("2 workers", two)):
            for cell in runs:
                print(f"  {label} {cell.rps:8.0f} req/s  worker CPU {' + '.join(f'{c:.2f}' for c in cell.worker_cpu)} cores"
                      f"  log service {cell.log_cpu:.2f}  throttled periods {cell.throttled_periods:4d}"
                      f"  machine idle {cell.machine_idle:.0%}")


if __name__ == "__main__":
    main()
