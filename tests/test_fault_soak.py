"""The fault soak at test scale: thousands of requests that meet a broken upstream or a client that
leaves (tests/fault_mix.py) leak no file descriptor, task or memory, each gets the answer it should
within its deadline, and none loses its log record. bench/fault_soak.py runs the same mix at 100,000.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import httpx
import pytest

from tests import fault_mix
from tests.fakes.faulty import FaultyUpstream
from tests.harness import GatewayProcess

REQUESTS = 3000  # about 15 s of load on 2 cores
CONCURRENCY = 128
WORKERS = 2
FD_SLACK = 8
TASK_SLACK = 2
# A worker reads at most WHOLE_LIMIT (32 MiB) of a body whole, and the mix has bodies past it; the
# allocator may keep what two of them took. A leak of anything per request would pass this in ~3,000.
RSS_GROWTH_MB = 64
_TASKS = re.compile(r'^modelport_tasks\{pid="(\d+)"\} (\d+)$', re.M)


def tree(root: int) -> list[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" (", 1)
        except OSError:
            continue
        children.setdefault(int(rest.rsplit(") ", 1)[1].split()[1]), []).append(int(pid))
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending += children.get(pid, [])
    return found


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def worker_tasks(gateway: GatewayProcess) -> dict[int, int]:
    """Each worker's ``modelport_tasks``: scraped on fresh connections until every worker answered."""
    found: dict[int, int] = {}
    for _ in range(48):
        text = httpx.get(gateway.url + "/metrics", headers={"connection": "close"}, timeout=5).text
        found.update((int(pid), int(n)) for pid, n in _TASKS.findall(text))
        if len(found) == WORKERS:
            return found
    raise AssertionError(f"only workers {sorted(found)} reported their tasks")


def figures(gateway: GatewayProcess) -> dict:
    assert gateway.process is not None
    pids = tree(gateway.process.pid)
    return {"fds": {pid: len(os.listdir(f"/proc/{pid}/fd")) for pid in pids},
            "rss": {pid: rss_mb(pid) for pid in pids}, "tasks": worker_tasks(gateway)}


@pytest.mark.slow
def test_faults_and_clients_that_leave_leak_nothing_and_lose_no_record(tmp_path):
    with FaultyUpstream() as upstream, GatewayProcess(
        tmp_path / "data", settings=fault_mix.gateway_settings(), providers=[fault_mix.stored_provider(upstream.url)],
        env={fault_mix.STORED_SECRET_ENV: "sk-fault-soak-stored"}, workers=WORKERS,
    ) as gateway:
        target = fault_mix.Target("127.0.0.1", gateway.port, upstream.url)
        results: list[fault_mix.Result] = []
        asyncio.run(fault_mix.drive(fault_mix.MIX * 2, target, CONCURRENCY, results))  # every case: pools, caches
        upstream.close_idle()
        before = figures(gateway)

        asyncio.run(fault_mix.drive(fault_mix.pick(REQUESTS), target, CONCURRENCY, results))

        wrong = fault_mix.unexpected(results)
        assert not wrong, [f"{r.case.name}: {r.outcome} {r.status} {r.detail}" for r in wrong[:10]]
        assert all(r.seconds < r.case.deadline for r in results)  # never a hang (HUNG is unexpected too)

        seen = sum(r.case.recorded for r in results)
        deadline = time.monotonic() + 30
        while len(records := fault_mix.exported_records(gateway.v1, gateway.admin_key, target.run)) < seen:
            assert time.monotonic() < deadline, f"{len(records)} records for {seen} requests the gateway saw"
            time.sleep(0.5)
        check = fault_mix.check_records(results, records)
        assert not fault_mix.records_lost(check), check
        assert check["status_disagrees"] == 0, check["status_disagrees_examples"]

        upstream.close_idle()  # as an upstream's idle timeout would: the gateway's pooled connections go
        after = figures(gateway)
        for pid, fds in before["fds"].items():
            assert after["fds"][pid] <= fds + FD_SLACK, f"process {pid}: {fds} fds before, {after['fds'][pid]} after"
        for pid, tasks in before["tasks"].items():
            assert after["tasks"][pid] <= tasks + TASK_SLACK, f"worker {pid}: {tasks} tasks before, {after['tasks'][pid]} after"
        for pid, rss in before["rss"].items():
            assert after["rss"][pid] - rss <= RSS_GROWTH_MB, f"process {pid}: {rss:.0f} MB before, {after['rss'][pid]:.0f} after"
    assert "Traceback" not in gateway.log_text()
