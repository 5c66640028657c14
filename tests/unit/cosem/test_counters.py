"""DM-6 / DH-1 / DH-4: counters are never reused and never accepted twice or backwards."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterguard.cosem.counters import MAX_COUNTER, PushFloor, ReceiveCounter, SendCounter
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


def test_push_floor_refuses_only_what_is_older_than_the_window() -> None:
    f = PushFloor(100, size=8)
    with pytest.raises(ReplayError):
        f.check(92)  # at the floor
    f.commit(93)  # inside the window: whether it is new is for the shared store to decide
    f.commit(93)
    f.advance(200)
    with pytest.raises(ReplayError):
        f.commit(150)
    f.advance(150)  # never lowers the floor
    assert f.last == 200
    PushFloor().check(0)  # no counter known yet: everything passes


def test_a_lent_range_is_never_left() -> None:
    """DM-6 with two holders of one key: a counter range lent by the other is a hard end."""
    reserved: list[int] = []
    c = SendCounter(100, reserve=reserved.append, block=8, end=110)
    assert [c.issue() for _ in range(10)] == list(range(100, 110))
    assert max(reserved) <= 110  # never reserves past the range
    with pytest.raises(CounterExhaustedError):
        c.issue()


@given(st.integers(1, 1000), st.integers(1, 50), st.integers(1, 64))
def test_issued_counters_stay_in_their_range(start: int, size: int, block: int) -> None:
    c = SendCounter(start, block=block, end=start + size)
    issued = [c.issue() for _ in range(size)]
    assert issued == list(range(start, start + size))
    with pytest.raises(CounterExhaustedError):
        c.issue()


def test_a_counter_below_the_provisioning_floor_is_refused_even_on_a_young_meter() -> None:
    """Issue 12, item 7: with no push accepted yet, counter 0 (never used) is not let in."""
    f = PushFloor(None, size=256, minimum=1)
    with pytest.raises(ReplayError, match="floor"):
        f.check(0)
    f.check(1)
