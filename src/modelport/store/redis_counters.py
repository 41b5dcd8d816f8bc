"""Window counters on Redis, shared by every worker of every node: the ``Counters`` for ``redis_url``.

The same semantics as the node's file (``store/counters.py``): an admission checks every charge and adds
all of them or none, in one Lua script, which Redis runs alone, so N nodes admit at most N-per-window
between them, never one more. A counter is one integer key named by the charge's 16-byte key (limit and
window start), expiring ``GRACE_SECONDS`` after its window ends as this node's clock sees it (a node whose
clock runs a little behind Redis's still finds its window). Settlement never takes a count below 0 and
ignores a window that has ended.

Each operation is one script, run by EVALSHA (the body is sent once, when Redis answers NOSCRIPT: first
use, or after a restart or SCRIPT FLUSH). A request's admission (its key's limits, its provider's, both
budgets) is one script call, pipelined with other requests' on the process's pinned connection
(``store/resp.py``); the log service settles a writer batch's reservations in one call. Amounts travel as ARGV strings and are
added with INCRBY, so nano-dollar counts stay exact integers (Lua numbers are doubles).

A settlement or release Redis cannot take is kept (at most ``MAX_PENDING``) and applied before the next
operation that reaches Redis: reservations are not lost to a short outage. (A call that timed out after
Redis ran it would be applied twice: rare, and it can only under-count by that settlement.)
"""

from __future__ import annotations

import logging
from typing import Sequence

from ..usage.limits import Charge
from .counters import Admission
from .redis import RedisLink, RedisUnavailable

log = logging.getLogger("modelport.limits")

GRACE_SECONDS = 60
MAX_PENDING = 100_000
MAX_NAMED = 4096

# KEYS: the windows. ARGV: now, then per key: limit, amount, ends_at.
# Returns {index of the first refused charge or -1, each charge's count (after this request if admitted)}.
ADMIT = """
local now = tonumber(ARGV[1])
local counts = {}
for i, key in ipairs(KEYS) do
  local at = 2 + (i - 1) * 3
  local limit, amount = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= limit or count + amount > limit then
    counts[i] = count
    return {i - 1, unpack(counts)}
  end
  counts[i] = count + amount
end
for i, key in ipairs(KEYS) do
  local at = 2 + (i - 1) * 3
  counts[i] = redis.call('INCRBY', key, ARGV[at + 1])
  redis.call('EXPIRE', key, string.format('%d', math.max(1, math.ceil(tonumber(ARGV[at + 2]) - now)) + GRACE))
end
return {-1, unpack(counts)}
""".replace("GRACE", str(GRACE_SECONDS))

# KEYS: the windows. ARGV: now, then per key: delta, ends_at. Returns each new count (0: window ended).
SETTLE = """
local now = tonumber(ARGV[1])
local counts = {}
for i, key in ipairs(KEYS) do
  local at = 2 + (i - 1) * 2
  local ends_at = tonumber(ARGV[at + 1])
  if ends_at <= now then
    counts[i] = 0
  else
    local count = redis.call('INCRBY', key, ARGV[at])
    if count < 0 then
      redis.call('SET', key, 0)
      count = 0
    end
    redis.call('EXPIRE', key, string.format('%d', math.max(1, math.ceil(ends_at - now)) + GRACE))
    counts[i] = count
  end
end
return counts
""".replace("GRACE", str(GRACE_SECONDS))


class RedisCounters:
    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self._admit = link.script(ADMIT)
        self._settle_async = link.script(SETTLE)
        self._settle_sync = link.sync_script(SETTLE)
        self._pending: list[tuple[Charge, int]] = []  # settlements Redis could not take yet
        self._names: dict[bytes, bytes] = {}  # a window's Redis key by its counter key: named once per window

    async def admit(self, charges: Sequence[Charge], now: float) -> Admission:
        if self._pending:
            await self._apply_pending_async(now)
        keys = [self._key(charge) for charge in charges]
        args: list[object] = [now]
        for charge in charges:
            args += (charge.limit, charge.amount, charge.ends_at)
        answer = await self.link.call(lambda: self._admit(keys=keys, args=args))
        refused = int(answer[0])
        return Admission(None if refused < 0 else refused, [int(count) for count in answer[1:]])

    async def release(self, charges: Sequence[Charge], now: float) -> None:
        settlements = [(charge, -charge.amount) for charge in charges if charge.ends_at > now]
        if self._pending:
            settlements = self._pending + settlements
            self._pending = []
        if not settlements:
            return
        keys, args = self._settlement(settlements, now)
        try:
            await self.link.call(lambda: self._settle_async(keys=keys, args=args))
        except RedisUnavailable:
            self._keep(settlements)
            raise

    def settle(self, charge: Charge, delta: int, now: float) -> int:
        if charge.ends_at <= now:
            return 0  # the period is over: what it reserved went with it
        counts = self._settle_sync_all([(charge, delta)], now)
        return int(counts[-1]) if counts else 0

    def settle_all(self, settlements: Sequence[tuple[Charge, int]], now: float) -> None:
        """A log writer's batch of settlements in one script call."""
        open_ones = [(charge, delta) for charge, delta in settlements if charge.ends_at > now]
        if open_ones:
            self._settle_sync_all(open_ones, now)

    def _settle_sync_all(self, settlements: list[tuple[Charge, int]], now: float) -> list[int]:
        settlements = self._pending + settlements
        self._pending = []
        keys, args = self._settlement(settlements, now)
        try:
            return self.link.call_sync(lambda: self._settle_sync(keys=keys, args=args))
        except RedisUnavailable as exc:
            self._keep(settlements)
            log.warning("budget settlement kept until Redis answers (%d waiting): %s", len(self._pending), exc)
            return []

    def count(self, key: bytes, now: float) -> int:
        value = self.link.call_sync(lambda: self.link.sync.get(self.link.key("counter", key.hex())))
        return int(value) if value is not None else 0

    def close(self) -> None:
        self.link.close()

    async def _apply_pending_async(self, now: float) -> None:
        if self.link.down:
            return  # still away (or backing off): the admission will say so
        settlements, self._pending = self._pending, []
        keys, args = self._settlement([s for s in settlements if s[0].ends_at > now], now)
        try:
            if keys:
                await self.link.call(lambda: self._settle_async(keys=keys, args=args))
        except RedisUnavailable:
            self._keep(settlements)

    def _keep(self, settlements: list[tuple[Charge, int]]) -> None:
        self._pending = (settlements + self._pending)[-MAX_PENDING:]

    def _settlement(self, settlements: list[tuple[Charge, int]], now: float) -> tuple[list[bytes], list[object]]:
        keys = [self._key(charge) for charge, _ in settlements]
        args: list[object] = [now]
        for charge, delta in settlements:
            args += (delta, charge.ends_at)
        return keys, args

    def _key(self, charge: Charge) -> bytes:
        name = self._names.get(charge.key)
        if name is None:
            if len(self._names) >= MAX_NAMED:
                self._names.clear()
            name = self._names[charge.key] = self.link.key("counter", charge.key.hex())
        return name
