"""The node's shared window counters and the limit windows, on a real counters file.

Rollover is tested by moving the clock the limiter reads, not by sleeping through windows.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from datetime import datetime, timezone
from pathlib import Path

import pytest

from modelport.gateway.limits import LimitExceeded, Limiter, LimitsUnavailable, Rule, headers_for, rules_for
from modelport.store.counters import PROBE, LocalCounters
from modelport.usage.limits import Charge


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def rule(unit: str, value: int, owner: str = "key:k1", position: int = 0) -> Rule:
    return Rule(owner, "gateway API key k1 (test)", unit, value, position)


run = asyncio.run


def run_budgets(limiter: Limiter, rules, reserves):
    return asyncio.run(limiter.admit_with_budgets(rules, reserves))


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("unit", "moment", "start", "end"), [
    ("rpm", "2026-12-03 10:15:42", "2026-12-03 10:15:00", "2026-12-03 10:16:00"),
    ("rph", "2026-12-03 10:15:42", "2026-12-03 10:00:00", "2026-12-03 11:00:00"),
    ("rpd", "2026-12-03 10:15:42", "2026-12-03 00:00:00", "2026-12-04 00:00:00"),
    ("rpw", "2026-12-03 10:15:42", "2026-11-30 00:00:00", "2026-12-07 00:00:00"),  # ISO weeks start on Monday
    ("rpw", "2026-11-30 00:00:00", "2026-11-30 00:00:00", "2026-12-07 00:00:00"),
])  # fmt: skip
def test_windows_are_aligned_to_the_utc_clock(unit, moment, start, end) -> None:
    assert rule(unit, 1).window(epoch(moment)) == (epoch(start), epoch(end))


def test_a_window_admits_its_value_then_refuses_until_the_next_window(tmp_path: Path) -> None:
    clock = Clock(epoch("2026-12-03 10:15:58"))
    limiter = Limiter(LocalCounters(tmp_path / "counters"), clock)
    limits = [rule("rpm", 3)]
    assert [run(limiter.admit(limits))[0].remaining for _ in range(3)] == [2, 1, 0]
    with pytest.raises(LimitExceeded) as refused:
        run(limiter.admit(limits))
    assert refused.value.headers["retry-after"] == "2" and refused.value.detail["resets_at"] == "2026-12-03T10:16:00Z"
    clock.now = epoch("2026-12-03 10:16:00")  # the next minute: a fresh window
    assert run(limiter.admit(limits))[0].remaining == 2


def test_admission_is_all_or_nothing(tmp_path: Path) -> None:
    limiter = Limiter(LocalCounters(tmp_path / "counters"), Clock(epoch("2026-12-03 10:15:00")))
    roomy, tight = rule("rph", 10, position=0), rule("rpm", 1, position=1)
    run(limiter.admit([roomy, tight]))
    with pytest.raises(LimitExceeded):
        run(limiter.admit([roomy, tight]))
    assert limiter.usage([roomy])[0]["used"] == 1  # the refused request was not counted on the roomy rule


def test_counters_are_shared_by_every_handle_on_the_file(tmp_path: Path) -> None:
    clock = Clock(epoch("2026-12-03 10:15:00"))
    first, second = (Limiter(LocalCounters(tmp_path / "counters"), clock) for _ in range(2))
    limits = [rule("rpd", 2)]
    run(first.admit(limits))
    run(second.admit(limits))
    with pytest.raises(LimitExceeded):
        run(first.admit(limits))


def _hammer(path: str, rounds: int, start, queue) -> None:
    counters = LocalCounters(Path(path))
    charge = Charge(b"k" * 16, 10**9, 2**40)
    start.wait()  # all at once, so the increments interleave
    queue.put([asyncio.run(counters.admit([charge], 0)).counts[0] for _ in range(rounds)])


def test_processes_never_see_the_same_count(tmp_path: Path) -> None:
    """Four processes increment one counter as fast as they can: every count is handed out once."""
    context = multiprocessing.get_context("spawn")
    queue, start = context.Queue(), context.Barrier(4)
    rounds = 20000
    workers = [context.Process(target=_hammer, args=(str(tmp_path / "counters"), rounds, start, queue)) for _ in range(4)]
    for worker in workers:
        worker.start()
    counts = sorted(count for _ in workers for count in queue.get(timeout=60))
    for worker in workers:
        worker.join()
    assert counts == list(range(1, 4 * rounds + 1))


def test_a_full_neighbourhood_fails_closed(tmp_path: Path) -> None:
    counters = LocalCounters(tmp_path / "counters", slots=1)  # every key hashes to slot 0: one run of PROBE
    limiter = Limiter(counters, Clock(epoch("2026-12-03 10:15:00")))
    for owner in range(PROBE):
        run(limiter.admit([rule("rpm", 5, owner=f"key:{owner}")]))
    with pytest.raises(LimitsUnavailable, match="not let through unchecked"):
        run(limiter.admit([rule("rpm", 5, owner="key:one-too-many")]))


def test_zero_disables_a_rule_and_token_rules_are_not_taken() -> None:
    stored = [{"type": "requests", "unit": "rpm", "value": 0}, {"type": "requests", "unit": "rph", "value": 7}]
    assert [(r.unit, r.value, r.position) for r in rules_for("key:k", "k", stored)] == [("rph", 7, 1)]
    assert rules_for("key:k", "k", None) == ()


def test_headers_show_the_tightest_limit() -> None:
    from modelport.gateway.limits import Standing

    now = epoch("2026-12-03 10:15:30")
    standings = [Standing(rule("rph", 100), 100, 10, int(epoch("2026-12-03 11:00:00"))),
                 Standing(rule("rpm", 20, position=1), 20, 18, int(epoch("2026-12-03 10:16:00")))]
    assert headers_for(standings, now) == {"x-ratelimit-limit-requests": "20", "x-ratelimit-remaining-requests": "2",
                                           "x-ratelimit-reset-requests": "30s"}  # fmt: skip


def test_two_new_windows_of_one_request_get_two_slots(tmp_path: Path) -> None:
    counters = LocalCounters(tmp_path / "counters", slots=1)  # both keys hash to the same run
    first, second = Charge(b"a" * 16, 5, 2**40), Charge(b"b" * 16, 5, 2**40)
    assert asyncio.run(counters.admit([first, second], 0)).counts == [1, 1]
    assert (counters.count(first.key, 0), counters.count(second.key, 0)) == (1, 1)


def test_a_budget_refuses_past_its_limit_and_a_new_period_admits_again(tmp_path: Path) -> None:
    from modelport.gateway.limits import BudgetExhausted
    from modelport.usage.limits import budget_from

    clock = Clock(epoch("2026-12-31 23:59:00"))
    limiter = Limiter(LocalCounters(tmp_path / "counters"), clock)
    budget = budget_from("key:k1", "gateway API key k1 (test)", {"type": "tokens", "credit_limit": 100,
                                                                 "periodic_reset": "monthly"}, 0)
    _, _, reserved = run_budgets(limiter, [], [(budget, 60)])
    with pytest.raises(BudgetExhausted, match="could add up to 60 tokens"):
        run_budgets(limiter, [], [(budget, 60)])
    run(limiter.release(reserved))  # the attempt failed: its 60 go back
    run_budgets(limiter, [], [(budget, 100)])
    with pytest.raises(BudgetExhausted, match="has used 100 tokens"):
        run_budgets(limiter, [], [(budget, 0)])  # nothing left: even a request that reserves 0 waits
    clock.now = epoch("2027-01-01 00:00:00")  # a new calendar month
    assert run_budgets(limiter, [], [(budget, 100)]).held[0].amount == 100
