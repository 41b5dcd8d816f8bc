"""Memory and CPU of a process tree, read from /proc (Linux only).

RSS is summed over the tree (pages shared between workers count once per worker, so multi-process
figures lean high); CPU is utime+stime of every live process plus what reaped children used
(cutime+cstime), so a cell's CPU is the difference of two readings.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Self

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:
        return None
    # The command name may hold spaces and parentheses; fields resume after the last ')'.
    return raw[raw.rindex(")") + 2:].split()


def children_by_parent() -> dict[int, list[int]]:
    """One scan of /proc (this kernel has no /proc/<pid>/task/<tid>/children)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields:
                parents.setdefault(int(fields[1]), []).append(int(entry))
    return parents


def tree_pids(root: int, parents: dict[int, list[int]] | None = None) -> list[int]:
    """The root and all its descendants."""
    parents = children_by_parent() if parents is None else parents
    found, frontier = [root], [root]
    while frontier:
        children = parents.get(frontier.pop(), [])
        found += children
        frontier += children
    return found


def cpu_seconds(pids: list[int]) -> float:
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:  # fields[11:15] = utime stime cutime cstime (stat fields 14-17)
            ticks += sum(int(v) for v in fields[11:15])
    return ticks / _TICK


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * _PAGE
        except OSError:
            pass
    return total


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot, all cores (from /proc/stat).

    Interrupt time is left out: loopback packet processing lands there, belongs to no process, and
    grows with our own request rate, so counting it would read as noise from elsewhere."""
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = _machine_ticks()
    return (user + nice + system + steal) / _TICK


def machine_idle_seconds() -> float:
    """CPU seconds the whole machine has spent idle since boot, all cores (from /proc/stat)."""
    return _machine_ticks()[3] / _TICK


def _machine_ticks() -> list[int]:
    """The first eight columns of /proc/stat's "cpu" line: user nice system idle iowait irq softirq steal."""
    with open("/proc/stat") as f:
        return [int(v) for v in f.readline().split()[1:9]]


def listen_overflows() -> int:
    """Machine-wide count of connections dropped because an accept queue was full (TcpExt
    ListenOverflows). A rise during a cell means clients waited for SYN retransmits (1 s, 3 s...),
    which shows up as p99 outliers that are about accept starvation, not forwarding."""
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split()))["ListenOverflows"])
    return 0


@dataclass
class Usage:
    cpu_seconds: float = 0.0
    peak_rss: int = 0


@dataclass
class UsageMeter:
    """Samples the trees of some root pids in a background thread while a cell runs."""

    roots: dict[str, int]
    interval: float = 0.2
    usage: dict[str, Usage] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._cpu_start: dict[str, float] = {}

    def __enter__(self) -> Self:
        for name, root in self.roots.items():
            pids = tree_pids(root)
            self._cpu_start[name] = cpu_seconds(pids)
            self.usage[name] = Usage(peak_rss=rss_bytes(pids))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for name, root in self.roots.items():
            pids = tree_pids(root)
            self.usage[name].cpu_seconds = cpu_seconds(pids) - self._cpu_start[name]
            self._record_rss(name, pids)

    def _record_rss(self, name: str, pids: list[int]) -> None:
        self.usage[name].peak_rss = max(self.usage[name].peak_rss, rss_bytes(pids))

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            parents = children_by_parent()
            for name, root in self.roots.items():
                self._record_rss(name, tree_pids(root, parents))
