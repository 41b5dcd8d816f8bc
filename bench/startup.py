"""`modelport serve` start-up: wall time from exec to the first 200 on /health, and the CPU (user + sys of
every process of the gateway) of one start and stop, interleaved A/B between two source trees.

    python bench/startup.py --base /path/to/other/checkout/src --rounds 6

A is ``--base``, B is this checkout's src. Each round starts and stops one gateway from each tree, in
alternating order, on a fresh data dir (so bootstrap creates the database, as a test's gateway does).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness import GatewayProcess  # noqa: E402


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the gateway's own children count once it has waited for them
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="src directory of the tree to compare against (A)")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    trees = {"A": args.base, "B": str(ROOT / "src")}
    wall: dict[str, list[float]] = {"A": [], "B": []}
    cpu: dict[str, list[float]] = {"A": [], "B": []}
    for round_ in range(args.rounds):
        for name in ("AB" if round_ % 2 == 0 else "BA"):
            gateway = GatewayProcess(Path(tempfile.mkdtemp()) / "data", env={"PYTHONPATH": trees[name]})
            before, started = children_cpu(), time.monotonic()
            gateway.start()
            wall[name].append(time.monotonic() - started)
            gateway.stop()
            cpu[name].append(children_cpu() - before)
    for name in "AB":
        print(f"{name} {trees[name]}: ready in {statistics.median(wall[name]):.2f} s, "
              f"{statistics.median(cpu[name]):.2f} s CPU (medians of {args.rounds})")
    print(f"B/A: wall {statistics.median(wall['B']) / statistics.median(wall['A']):.2f}, "
          f"CPU {statistics.median(cpu['B']) / statistics.median(cpu['A']):.2f}")


if __name__ == "__main__":
    main()
