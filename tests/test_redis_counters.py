"""The window counters on Redis: the same semantics as the node's file, exact across processes, on a real Redis.

The semantics run against both implementations (the node's file and Redis), so they cannot drift.
Rollover is tested by moving the clock the limiter reads (the Redis counters take their expiry from that
clock too), not by sleeping through windows.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import redis

from modelport.gateway.limits import BudgetExhausted, LimitExceeded, Limiter, Rule
from modelport.store.counters import LocalCounters
from modelport.store.redis import RedisLink, RedisUnavailable
from modelport.store.redis_counters import GRACE_SECONDS, RedisCounters
from modelport.usage.limits import Charge, budget_from
from tests.redis_support import SHARED_URL, PrivateRedis, prefix  # noqa: F401 (fixture)


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rule(unit: str, value: int, owner: str = "key:k1", position: int = 0) -> Rule:
    return Rule(owner, "gateway API key k1 (test)", unit, value, position)


@pytest.fixture(params=["file", "redis"])
def open_handle(request, tmp_path: Path, prefix: str):
    """Opens a handle on one set of counters (each call a new handle: another process, as it were)."""
    if request.param == "file":
        return lambda: LocalCounters(tmp_path / "counters")
    return lambda: RedisCounters(RedisLink(SHARED_URL, prefix))


async def test_a_window_admits_its_value_then_refuses_until_the_next_window(open_handle) -> None:
    clock = Clock(epoch("2026-12-03 10:15:58"))
    limiter = Limiter(open_handle(), clock)
    limits = [rule("rpm", 3)]
    assert [(await limiter.admit(limits))[0].remaining for _ in range(3)] == [2, 1, 0]
    with pytest.raises(LimitExceeded) as refused:
        await limiter.admit(limits)
    assert refused.value.headers["retry-after"] == "2"
    clock.now = epoch("2026-12-03 10:16:00")  # the next minute: a fresh window
    assert (await limiter.admit(limits))[0].remaining == 2


async def test_admission_is_all_or_nothing_and_shared_by_every_handle(open_handle) -> None:
    clock = Clock(epoch("2026-12-03 10:15:00"))
    first, second = Limiter(open_handle(), clock), Limiter(open_handle(), clock)
    roomy, tight = rule("rph", 10, position=0), rule("rpm", 1, position=1)
    await first.admit([roomy, tight])
    with pytest.raises(LimitExceeded):
        await second.admit([roomy, tight])
    assert second.usage([roomy])[0]["used"] == 1  # the refused request was not counted on the roomy rule


async def test_a_budget_releases_settles_and_starts_again_next_period(open_handle) -> None:
    clock = Clock(epoch("2026-12-31 23:59:00"))
    counters = open_handle()
    limiter = Limiter(counters, clock)
    budget = budget_from("key:k1", "gateway API key k1 (test)", {"type": "tokens", "credit_limit": 100,
                                                                 "periodic_reset": "monthly"}, 0)
    reserved = (await limiter.admit_with_budgets([], [(budget, 60)])).held
    with pytest.raises(BudgetExhausted, match="could add up to 60 tokens"):
        await limiter.admit_with_budgets([], [(budget, 60)])
    await limiter.release(reserved)  # the attempt failed: its 60 go back
    held = (await limiter.admit_with_budgets([], [(budget, 100)])).held[0]
    assert counters.settle(held, -30, clock.now) == 70  # it used 70 of the 100 it reserved
    assert counters.settle(held, -500, clock.now) == 0  # never below 0
    clock.now = epoch("2027-01-01 00:00:00")  # a new calendar month
    assert counters.settle(held, 25, clock.now) == 0  # the ended period takes no settlement
    assert (await limiter.admit_with_budgets([], [(budget, 100)])).held[0].amount == 100


async def test_nano_dollar_counts_stay_exact(open_handle) -> None:
    """Cost budgets count nano-dollars: a million dollars is 10**15, past a float's exact integers in Lua's
    number formatting, so amounts travel as strings."""
    counters = open_handle()
    big = Charge(b"n" * 16, 10**16, 2**40, 10**15 + 1)
    assert (await counters.admit([big], 0)).counts == [10**15 + 1]
    assert counters.settle(big, 2, 0) == 10**15 + 3
    assert counters.count(big.key, 0) == 10**15 + 3


async def test_a_window_expires_in_redis_once_it_has_ended(prefix: str) -> None:
    link = RedisLink(SHARED_URL, prefix)
    now = epoch("2026-12-03 10:15:42")
    charge = rule("rpm", 5).charge(now)
    await RedisCounters(link).admit([charge], now)
    ttl = link.sync.ttl(link.key("counter", charge.key.hex()))
    assert 18 + GRACE_SECONDS - 1 <= ttl <= 18 + GRACE_SECONDS  # 18 s of the minute left, then the grace


async def test_scripts_are_loaded_again_after_redis_forgets_them(tmp_path: Path) -> None:
    """EVALSHA first; on NOSCRIPT (a restarted Redis, SCRIPT FLUSH) the script is sent again. On a private
    server, since flushing scripts would touch every user of the shared one."""
    with PrivateRedis(tmp_path / "redis") as server:
        counters = RedisCounters(RedisLink(server.url, "t:"))
        charge = Charge(b"s" * 16, 10, 2**40)
        assert (await counters.admit([charge], 0)).counts == [1]
        redis.Redis(port=server.port).script_flush()
        assert (await counters.admit([charge], 0)).counts == [2]
        assert counters.settle(charge, -1, 0) == 1


def _admit_many(url: str, prefix: str, attempts: int, start: Any, queue: Any) -> None:
    counters = RedisCounters(RedisLink(url, prefix, timeout=10))  # exactness, not speed, on a busy machine
    window, budget = Charge(b"w" * 16, 300, 2**40), Charge(b"b" * 16, 10_000, 2**40, 37)

    async def admit_all() -> list[tuple[int | None, list[int]]]:
        return [tuple(await counters.admit([window, budget], 0)) for _ in range(attempts)]  # type: ignore[misc]

    async def concurrently() -> list[tuple[int | None, list[int]]]:
        batches = await asyncio.gather(*(admit_all() for _ in range(16)))  # 16 in flight on one process
        return [answer for batch in batches for answer in batch]

    start.wait()  # all processes at once, so the scripts interleave
    queue.put(asyncio.run(concurrently()))


def test_processes_admit_exactly_the_limit_never_one_more(prefix: str) -> None:
    """Four processes, 16 admissions in flight each, 800 in all, against a window of 300 and a budget of
    10,000 (37 a request, so 270 fit): exactly 270 admitted, each count handed out once, and every refused
    request counted nowhere."""
    context = multiprocessing.get_context("spawn")
    queue, start = context.Queue(), context.Barrier(4)
    workers = [context.Process(target=_admit_many, args=(SHARED_URL, prefix, 12, start, queue)) for _ in range(4)]
    for worker in workers:
        worker.start()
    answers = [answer for _ in workers for answer in queue.get(timeout=60)]
    for worker in workers:
        worker.join()
    admitted = [counts for refused, counts in answers if refused is None]
    assert len(answers) == 4 * 16 * 12 and len(admitted) == 270
    assert sorted(counts[0] for counts in admitted) == list(range(1, 271))
    assert sorted(counts[1] for counts in admitted) == [37 * n for n in range(1, 271)]
    assert {refused for refused, _ in answers if refused is not None} == {1}  # the budget ran out first
    link = RedisLink(SHARED_URL, prefix)
    assert int(link.sync.get(link.key("counter", (b"w" * 16).hex()))) == 270


async def test_settlements_wait_out_an_outage_and_are_applied_after(tmp_path: Path) -> None:
    with PrivateRedis(tmp_path / "redis") as server:
        counters = RedisCounters(RedisLink(server.url, "t:"))
        charge = Charge(b"p" * 16, 1000, 2**40, 100)
        await counters.admit([charge], 0)
        port = server.port
        server.kill()
        assert counters.settle(charge, -40, 0) == 0  # Redis away: kept, not lost
        with pytest.raises(RedisUnavailable, match=f"Redis at 127.0.0.1:{port}/0 is unreachable"):
            await counters.admit([charge], 0)
        server.start()  # same port, empty (no persistence): the admission's 100 went with the old one
        counters.link._retry_at = 0  # no need to wait out the backoff in a test
        assert counters.settle(charge, 10, 0) == 10  # the kept -40 first (clamped at 0 on the empty counter), then +10
        await counters.admit([charge], 0)
        assert counters.count(charge.key, 0) == 110


async def test_errors_name_redis_but_never_its_password(tmp_path: Path) -> None:
    with PrivateRedis(tmp_path / "redis", "--requirepass", "the-right-one") as server:
        link = RedisLink(f"redis://:not-the-password-4242@127.0.0.1:{server.port}/0", "t:")
        with pytest.raises(RedisUnavailable) as refused:
            await RedisCounters(link).admit([Charge(b"x" * 16, 1, 2**40)], 0)
        message = str(refused.value)
        assert f"Redis at 127.0.0.1:{server.port}/0 is unreachable" in message
        assert "not-the-password-4242" not in message and "the-right-one" not in message
