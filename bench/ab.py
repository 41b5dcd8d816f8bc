"""A one-minute A/B for working on the request path: ModelPort against the bare pass-through, in time.

    python bench/ab.py                          # c=32, 2 rounds, 3 s cells, bare + modelport + modelport-nolog
    python bench/ab.py --concurrency 1 --contenders bare,modelport

Uses run.py's own pieces (nginx upstream, contenders, wrk) on the two 0 ms scenarios, contenders
interleaved and rotated each round. Prints each contender's median req/s, its throughput as a share of
`bare` in the same round (which cancels most of a shared machine's drift) and median p50/p99. It is
for deciding whether a change helped; record results with run.py.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import peers
from contenders import all_contenders, rotated
from load import run_wrk
from upstreams import start_upstreams
from workload import SCENARIOS

SCENARIO_NAMES = ("openai-0ms", "replicate-0ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=int, default=3, help="seconds per cell")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--contenders", default="bare,modelport,modelport-nolog")
    args = parser.parse_args()
    names = args.contenders.split(",")
    contenders = [c for c in all_contenders() if c.name in names]
    workdir = Path(tempfile.mkdtemp(prefix="modelport-ab-"))
    upstreams = start_upstreams(workdir, peers.bare_python())
    results: dict[tuple[str, str], list] = {}
    try:
        for contender in contenders:
            contender.start(workdir, upstreams)
        for name in SCENARIO_NAMES:  # warm-up
            for contender in contenders:
                run_wrk(contender.target(SCENARIOS[name], upstreams), SCENARIOS[name].body, 8, 1)
        for round_ in range(args.rounds):
            for name in SCENARIO_NAMES:
                scenario = SCENARIOS[name]
                for contender in rotated(contenders, round_):
                    result = run_wrk(contender.target(scenario, upstreams), scenario.body, args.concurrency, args.duration)
                    results.setdefault((name, contender.name), []).append(result)
    finally:
        for contender in contenders:
            contender.stop()
        upstreams.stop()
    report(results, contenders)


def report(results: dict[tuple[str, str], list], contenders: list) -> None:
    for name in SCENARIO_NAMES:
        bare = results.get((name, "bare"))
        for contender in contenders:
            cells = results[(name, contender.name)]
            shares = ", ".join(f"{c.rps / b.rps:.0%}" for c, b in zip(cells, bare)) if bare else "-"
            print(f"{name:14} {contender.name:16} {statistics.median(c.rps for c in cells):8.0f} req/s"
                  f"  vs bare per round: {shares}"
                  f"  p50 {statistics.median(c.p50_ms for c in cells):.2f} ms"
                  f"  p99 {statistics.median(c.p99_ms for c in cells):.2f} ms"
                  f" (per round: {', '.join(f'{c.p99_ms:.2f}' for c in cells)})")


if __name__ == "__main__":
    main()
