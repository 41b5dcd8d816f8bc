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

Several nodes share their counters through Redis instead (``store/redis_counters.py``, chosen by
``open_counters`` when ``redis_url`` is set). Admission and release are coroutines, so a network store
never blocks the event loop; here they simply do their ``flock`` work. Settlement (the log service's
writer thread) and reads (control-plane usage) stay synchronous.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol, Sequence

from ..usage.limits import Charge

if TYPE_CHECKING:
    from ..settings import Settings

SLOT = struct.Struct("<16sqq")  # key, window end (epoch s), count
KEY_SIZE = 16
_ENDS, _COUNT = struct.Struct("<q"), struct.Struct("<q")
_SLOT_FROM = SLOT.unpack_from
_COUNT_AT = KEY_SIZE + 8
_SLOT_PACK = SLOT.pack_into
MAX_REMEMBERED = 4096
PROBE = 64
SETTLE_PER_LOCK = 32
DEFAULT_SLOTS = 1 << 15  # 1 MiB: room for tens of thousands of live windows


class CountersFull(Exception):
    """No free slot near a new key: refuse rather than count nothing."""


class CountersUnavailable(Exception):
    """The counters cannot be reached (a network store that is down): nothing was checked or counted."""


class Admission(NamedTuple):
    refused: int | None  # index of the first charge over its limit; None = all admitted (and counted)
    counts: list[int]  # each charge's count, after this request when admitted


class Counters(Protocol):
    async def admit(self, charges: Sequence[Charge], now: float) -> Admission:
        """Add every charge's amount if every window stays within its limit (and is not full already);
        otherwise add nothing. Raises ``CountersUnavailable`` when the counters cannot be reached."""
        ...

    async def release(self, charges: Sequence[Charge], now: float) -> None:
        """Give each charge's whole amount back (the attempt reached no upstream usage), as ``settle``."""
        ...

    def settle(self, charge: Charge, delta: int, now: float) -> int:
        """Add ``delta`` (negative: give back part of a reservation) to a window still open; the count
        never goes below 0. Returns the new count (0 for a window that has ended)."""
        ...

    def settle_all(self, settlements: Sequence[tuple[Charge, int]], now: float) -> None:
        """``settle`` for many at once (a log writer's batch): one lock, or one round trip."""
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
        # Where this process last found each key: checked (16 bytes compared) before it is trusted, so
        # a slot another process has since reused is noticed, and the run is searched again.
        self._offsets: dict[bytes, int] = {}

    async def admit(self, charges: Sequence[Charge], now: float) -> Admission:
        view, remembered = self._map, self._offsets
        offsets: list[int] = []
        counts: list[int] = []
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            for key, limit, ends_at, amount in charges:
                offset = remembered.get(key)  # the usual case, inline: the slot this process last found it in
                slot = _SLOT_FROM(view, offset) if offset is not None else None  # key and count in one read
                if slot is not None and slot[0] == key:
                    count = slot[2]
                else:
                    offset, count = self._locate(key, now, offsets)  # two new windows: two free slots
                if count >= limit or count + amount > limit:
                    return Admission(len(counts), counts + [count])
                offsets.append(offset)
                counts.append(count + amount)
            for offset, count, charge in zip(offsets, counts, charges):
                _SLOT_PACK(view, offset, charge[0], charge[2], count)
            return Admission(None, counts)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    async def release(self, charges: Sequence[Charge], now: float) -> None:
        self.settle_all([(charge, -charge.amount) for charge in charges], now)

    def settle(self, charge: Charge, delta: int, now: float) -> int:
        if charge.ends_at <= now:
            return 0  # the period is over: what it reserved went with it
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            return self._add(charge, delta, now)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def settle_all(self, settlements: Sequence[tuple[Charge, int]], now: float) -> None:
        open_ones = [(charge, delta) for charge, delta in settlements if charge.ends_at > now]
        # A few dozen per lock: a worker's admission waits on it with its event loop stopped, so a whole
        # batch under one lock (or the log service's thread preempted holding it) would stall requests.
        for start in range(0, len(open_ones), SETTLE_PER_LOCK):
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                for charge, delta in open_ones[start : start + SETTLE_PER_LOCK]:
                    self._add(charge, delta, now)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _add(self, charge: Charge, delta: int, now: float) -> int:
        """Under the lock: the charge's window plus ``delta``, never below 0."""
        offset, count = self._locate(charge.key, now, [])
        count = max(0, count + delta)
        _SLOT_PACK(self._map, offset, charge.key, charge.ends_at, count)
        return count

    def count(self, key: bytes, now: float) -> int:
        offset = self._find(key)
        if offset is None:
            return 0
        _, ends_at, count = SLOT.unpack_from(self._map, offset)
        return count if ends_at > now else 0

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

    def _locate(self, key: bytes, now: float, taken: list[int]) -> tuple[int, int]:
        """The offset of the key's slot (its own, or a free one in its run) and its count there."""
        view = self._map
        offset = self._offsets.get(key)
        if offset is None or view[offset : offset + KEY_SIZE] != key:
            offset = self._find(key)
        if offset is not None:
            return offset, _COUNT.unpack_from(view, offset + _COUNT_AT)[0]
        start = self._start(key)
        for offset in range(start, start + PROBE * SLOT.size, SLOT.size):
            if _ENDS.unpack_from(view, offset + KEY_SIZE)[0] <= now and offset not in taken:  # free: unused or ended
                if len(self._offsets) >= MAX_REMEMBERED:
                    self._offsets.clear()
                self._offsets[key] = offset
                return offset, 0
        raise CountersFull("the rate-limit counters have no free slot for a new window")

    def _find(self, key: bytes) -> int | None:
        start = self._start(key)
        end = start + PROBE * SLOT.size
        at = self._map.find(key, start, end)
        while at >= 0 and (at - start) % SLOT.size:  # a match across slot fields: keep looking
            at = self._map.find(key, at + 1, end)
        if at < 0:
            return None
        self._offsets[key] = at
        return at

    def _start(self, key: bytes) -> int:
        return int.from_bytes(key[:8], "little") % self._slots * SLOT.size


def local_counters(data_dir: Path) -> LocalCounters:
    return LocalCounters(Path(data_dir) / "counters")


def open_counters(settings: "Settings") -> Counters:
    """The gateway's counters: on Redis when ``redis_url`` is set (shared by every node), else the node's file."""
    if settings.redis_url:
        from .redis import open_redis
        from .redis_counters import RedisCounters

        return RedisCounters(open_redis(settings))
    return local_counters(settings.data_dir)
