"""Window counters shared by every worker process of one node: the embedded ``Counters``.

A rate limit is exact only if the check and the increment are one step for every process at once.
The counters live in a memory-mapped file in the data directory; a check-and-increment holds an
exclusive ``flock`` on it for a few microseconds (two syscalls), so N workers admit at most N-per-window
between them, never one more. The kernel drops the lock of a process that dies holding it.

The file is a hash table of fixed 32-byte slots: a 16-byte key (a digest of the limit's owner, rule
and window start), the window's end (epoch seconds) and the count. A key names one window, so a slot
whose window has ended is free to take. A key is looked for in a run of ``PROBE`` slots from its hash,
found with one ``bytes.find`` over the run; the file has ``PROBE`` spare slots at its end, so a run
never wraps. A run with no free slot (``PROBE`` live windows hashed to one place) fails closed.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

SLOT = struct.Struct("<16sqq")  # key, window end (epoch s), count
PROBE = 64
DEFAULT_SLOTS = 1 << 15  # 1 MiB: room for tens of thousands of live windows


class CountersFull(Exception):
    """No free slot near a new key: refuse rather than count nothing."""


@dataclass(frozen=True, slots=True)
class Charge:
    key: bytes  # 16 bytes: names the owner, the rule and the window
    limit: int  # at most this many per window
    ends_at: int  # epoch seconds when the window ends


@dataclass(frozen=True, slots=True)
class Admission:
    refused: int | None  # index of the first charge over its limit; None = all admitted (and counted)
    counts: tuple[int, ...]  # each charge's count, after this request when admitted


class Counters(Protocol):
    def admit(self, charges: Sequence[Charge], now: float) -> Admission:
        """Count one for every charge if every one stays within its limit; otherwise count none."""
        ...

    def count(self, key: bytes, now: float) -> int:
        """The current count of a window (0 if it has none)."""
        ...

    def close(self) -> None: ...


class LocalCounters:
    def __init__(self, path: Path, slots: int = DEFAULT_SLOTS) -> None:
        self._slots = slots
        size = (slots + PROBE) * SLOT.size
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self._fd).st_size < size:
            os.ftruncate(self._fd, size)
        self._map = mmap.mmap(self._fd, size)

    def admit(self, charges: Sequence[Charge], now: float) -> Admission:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            offsets = [self._slot(charge, now) for charge in charges]
            counts = [self._count_at(offset, charge.key) for offset, charge in zip(offsets, charges)]
            for index, (count, charge) in enumerate(zip(counts, charges)):
                if count >= charge.limit:
                    return Admission(index, tuple(counts))
            for offset, count, charge in zip(offsets, counts, charges):
                SLOT.pack_into(self._map, offset, charge.key, charge.ends_at, count + 1)
            return Admission(None, tuple(count + 1 for count in counts))
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def count(self, key: bytes, now: float) -> int:
        offset = self._find(key)
        if offset is None:
            return 0
        _, ends_at, count = SLOT.unpack_from(self._map, offset)
        return count if ends_at > now else 0

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

    def _slot(self, charge: Charge, now: float) -> int:
        """The offset of the charge's slot: its own, or a free one in its run."""
        found = self._find(charge.key)
        if found is not None:
            return found
        start = self._start(charge.key)
        for offset in range(start, start + PROBE * SLOT.size, SLOT.size):
            if SLOT.unpack_from(self._map, offset)[1] <= now:  # never used, or its window has ended
                return offset
        raise CountersFull("the rate-limit counters have no free slot for a new window")

    def _count_at(self, offset: int, key: bytes) -> int:
        stored_key, _, count = SLOT.unpack_from(self._map, offset)
        return count if stored_key == key else 0

    def _find(self, key: bytes) -> int | None:
        start = self._start(key)
        run = self._map[start : start + PROBE * SLOT.size]
        at = run.find(key)
        while at >= 0 and at % SLOT.size:  # a match across slot fields: keep looking
            at = run.find(key, at + 1)
        return None if at < 0 else start + at

    def _start(self, key: bytes) -> int:
        return int.from_bytes(key[:8], "little") % self._slots * SLOT.size


def open_counters(data_dir: Path) -> LocalCounters:
    return LocalCounters(Path(data_dir) / "counters")
