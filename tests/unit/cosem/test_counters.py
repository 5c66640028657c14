"""DM-6 / DH-1 / DH-4: counters are never reused and never accepted twice or backwards."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterguard.cosem.counters import MAX_COUNTER, ReceiveCounter, ReplayWindow, SendCounter
from meterguard.errors import CounterExhaustedError, ReplayError


def test_send_counter_reserves_before_issuing() -> None:
    persisted: list[int] = []
    c = SendCounter(1, reserve=persisted.append, block=10)
    issued = [c.issue() for _ in range(25)]
    assert issued == list(range(1, 26))
    assert persisted == [11, 21, 31]
    # Every issued value is below a ceiling persisted before it was issued.
    assert all(v < persisted[(v - 1) // 10] for v in issued)


@given(st.lists(st.integers(1, 50), min_size=1, max_size=8), st.integers(1, 16))
def test_restarts_never_reuse(runs: list[int], block: int) -> None:
    storage = {"ceiling": 1}

    def reserve(ceiling: int) -> None:
        storage["ceiling"] = ceiling

    seen: set[int] = set()
    for n in runs:  # each run = a process that restarts from the persisted ceiling
        c = SendCounter(storage["ceiling"], reserve=reserve, block=block)
        for _ in range(n):
            v = c.issue()
            assert v not in seen
            seen.add(v)


def test_failed_reservation_issues_nothing() -> None:
    def broken(_: int) -> None:
        raise OSError("disk full")

    c = SendCounter(5, reserve=broken)
    with pytest.raises(OSError, match="disk full"):
        c.issue()
    assert c.next_value == 5


def test_exhaustion() -> None:
    c = SendCounter(MAX_COUNTER)
    assert c.issue() == MAX_COUNTER
    with pytest.raises(CounterExhaustedError):
        c.issue()


def test_receive_counter_refuses_replay_and_lowering() -> None:
    committed: list[int] = []
    r = ReceiveCounter(on_commit=committed.append)
    r.commit(10)
    with pytest.raises(ReplayError, match="attempt to lower invocation counter"):
        r.check(10)
    with pytest.raises(ReplayError):
        r.commit(9)
    r.commit(11)
    assert r.last == 11
    assert committed == [10, 11]
    assert ReplayError.event == "attempt_to_lower_invocation_counter"


def test_receive_counter_accepts_zero_first() -> None:
    r = ReceiveCounter()
    r.commit(0)
    with pytest.raises(ReplayError):
        r.check(0)


def test_replay_window_accepts_each_counter_once_in_any_order() -> None:
    w = ReplayWindow(size=8)
    for v in (5, 7, 6, 10, 8):
        w.commit(v)
    for v in (5, 6, 7, 8, 10, 2):  # repeats, and 2 is older than the window below 10
        with pytest.raises(ReplayError):
            w.check(v)
    w.commit(9)  # never seen, inside the window
    assert w.last == 10
    w.commit(100)  # a jump slides the window
    with pytest.raises(ReplayError):
        w.check(92)
    w.commit(93)


def test_replay_window_after_restart_is_strict_below_the_persisted_value() -> None:
    w = ReplayWindow(50, size=64)
    with pytest.raises(ReplayError):
        w.check(49)
    w.commit(51)


@given(st.lists(st.integers(1, 300), max_size=200))
def test_replay_window_never_accepts_twice(values: list[int]) -> None:
    w = ReplayWindow(size=32)
    accepted: set[int] = set()
    for v in values:
        try:
            w.commit(v)
        except ReplayError:
            continue
        assert v not in accepted
        accepted.add(v)
