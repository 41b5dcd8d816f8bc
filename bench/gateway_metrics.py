"""ModelPort's log-writer gauges and counters from `GET /metrics`, per process that reports them.

Every series carries a `pid` label (src/modelport/logs/metrics.py). Two layouts are handled:
- each worker writes its own logs and serves only its own numbers; with SO_REUSEPORT the kernel
  picks the worker per connection by a hash of its address, so one scrape reaches one worker at
  random, and scraping again on fresh connections until each worker has answered gives them all;
- a log service process writes the logs of all workers and any worker relays its numbers: then a
  pid that is not a worker's answers, and one scrape is the whole gateway.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request

QUEUE_DEPTH = "modelport_log_queue_depth"
SPILL_PENDING = "modelport_log_spill_pending"
SPILLED = "modelport_log_spilled_records_total"
WRITTEN = "modelport_log_written_records_total"
LOG_FAMILIES = (QUEUE_DEPTH, SPILL_PENDING, SPILLED, WRITTEN)
TASKS = "modelport_tasks"  # per worker (src/modelport/server/app.py): each worker answers for itself

# name{labels} value  (exposition format 0.0.4; these families carry no timestamp)
_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)")
_PID = re.compile(r'(?:^|,)pid="(\d+)"')


def parse(text: str, families: tuple[str, ...] = LOG_FAMILIES) -> dict[int, dict[str, float]]:
    """{pid: {family: value}} for `families`; series of one family in one process are summed."""
    found: dict[int, dict[str, float]] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match or match[1] not in families:
            continue
        pid = _PID.search(match[2] or "")
        numbers = found.setdefault(int(pid[1]) if pid else 0, {})
        numbers[match[1]] = numbers.get(match[1], 0.0) + float(match[3])
    return found


def scrape_once(origin: str, timeout: float = 5.0, families: tuple[str, ...] = LOG_FAMILIES) -> dict[int, dict[str, float]]:
    # urllib sends "Connection: close", so every call is a new connection (and a new hash).
    with urllib.request.urlopen(origin + "/metrics", timeout=timeout) as response:
        return parse(response.read().decode(), families)


def scrape_processes(origin: str, workers: set[int], tries: int = 24,
                     families: tuple[str, ...] = LOG_FAMILIES) -> dict[int, dict[str, float]]:
    """Scrape until every worker has answered or a non-worker pid (the log service) has; when `tries`
    runs out some are missing, which the caller sees. 24 tries miss one of two workers with
    probability 2 × 2^-24."""
    found: dict[int, dict[str, float]] = {}
    for _ in range(tries):
        try:
            found.update(scrape_once(origin, families=families))
        except (urllib.error.URLError, OSError, ValueError):
            continue
        if workers <= found.keys() or found.keys() - workers:
            break
    return found


def reporting_processes(numbers: dict[int, dict[str, float]], workers: set[int]) -> set[int]:
    """The pids whose numbers cover the whole gateway: the log service's if it reports, else every
    worker's."""
    return (numbers.keys() - workers) or workers
