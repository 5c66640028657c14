"""Invocation counters: never reuse one we send, never accept one we saw (DM-6, DH-1, DH-4).

:class:`SendCounter` issues strictly increasing counters for one (system
title, key). It never hands out a value before a persistence callback has
recorded a ceiling above it, reserving blocks so that storage is touched once
per ``block`` counters. After a restart, the caller passes the last persisted
ceiling and counting resumes there: values reserved but unused are skipped,
none is ever issued twice — an (ST, IC) pair reused under one key is GCM nonce
reuse, which exposes the keystream and allows forgeries.

:class:`ReceiveCounter` remembers the last accepted counter of one peer and key.
``check`` raises :class:`~meterguard.errors.ReplayError` for any counter ≤ it;
``commit`` records a counter and must only be called after the APDU's tag
verified, so that forged APDUs cannot push the counter up.

This module does not do IO: persistence is a callback supplied by the owner.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from meterguard.errors import ConfigurationError, CounterExhaustedError, ReplayError

__all__ = [
    "MAX_COUNTER",
    "CounterCheck",
    "PushFloor",
    "ReceiveCounter",
    "SendCounter",
]

MAX_COUNTER = 0xFFFFFFFF


class SendCounter:
    """Issues invocation counters; reserves them in blocks through ``reserve``.

    Args:
        start: the first counter this instance may issue (the persisted ceiling
            after a restart; 1 on a new key, since some peers refuse 0).
        reserve: called with a new ceiling *before* any counter below it is issued;
            it must persist the ceiling durably or raise.
        block: how many counters one reservation covers.
        end: the first counter this instance may never issue — the end of a range another
            holder of the same key lent it (2**32 by default: the whole counter space).
    """

    __slots__ = ("_block", "_ceiling", "_end", "_next", "_reserve")

    def __init__(
        self,
        start: int = 1,
        *,
        reserve: Callable[[int], None] | None = None,
        block: int = 256,
        end: int = MAX_COUNTER + 1,
    ) -> None:
        if not 0 <= start <= MAX_COUNTER + 1 or not start <= end <= MAX_COUNTER + 1:
            raise ConfigurationError("counter start out of range")
        if block < 1:
            raise ConfigurationError("reservation block must be positive")
        self._next = start
        self._ceiling = start
        self._reserve = reserve
        self._block = block
        self._end = end

    @property
    def next_value(self) -> int:
        """The counter the next call to :meth:`issue` returns."""
        return self._next

    @property
    def last_issued(self) -> int | None:
        """The most recently issued counter, if any was issued by this instance."""
        return self._next - 1 if self._next > 0 else None

    def issue(self) -> int:
        """Return a fresh counter.

        Raises:
            CounterExhaustedError: 2**32 - 1 was already used: renew the key.
        """
        value = self._next
        if value >= self._end:
            raise CounterExhaustedError("invocation counter exhausted; the key must be renewed")
        if value >= self._ceiling:
            ceiling = min(value + self._block, self._end)
            if self._reserve is not None:
                self._reserve(ceiling)
            self._ceiling = ceiling
        self._next = value + 1
        return value

    def __repr__(self) -> str:
        return f"SendCounter(next={self._next}, ceiling={self._ceiling})"


class ReceiveCounter:
    """The last accepted counter of one peer under one key."""

    __slots__ = ("_last", "_on_commit")

    def __init__(
        self, last: int | None = None, *, on_commit: Callable[[int], None] | None = None
    ) -> None:
        self._last = last
        self._on_commit = on_commit

    @property
    def last(self) -> int | None:
        """The highest counter accepted so far, or None."""
        return self._last

    def check(self, value: int) -> None:
        """Refuse a counter that is not above the last accepted one.

        Raises:
            ReplayError: ``value`` ≤ last accepted (attempt to lower invocation counter).
        """
        if self._last is not None and value <= self._last:
            raise ReplayError(
                f"attempt to lower invocation counter: received {value}, last accepted {self._last}"
            )

    def commit(self, value: int) -> None:
        """Record ``value`` as accepted; call only after the APDU authenticated.

        Raises:
            ReplayError: ``value`` ≤ last accepted.
        """
        self.check(value)
        self._last = value
        if self._on_commit is not None:
            self._on_commit(value)

    def __repr__(self) -> str:
        return f"ReceiveCounter(last={self._last})"


class PushFloor:
    """The lowest push counter one ingest worker still lets through to its store (ADR 6).

    When several worker processes share a meter's pushes, "each counter accepted once" is
    decided by the store they share (``push_counters``, at commit). Locally a worker can only
    refuse, before any cryptography, what is certainly too old: a counter at or below the
    highest one it knows of minus ``size``. ``check``/``commit`` follow
    :class:`ReceiveCounter`; ``advance`` raises the floor after a commit.
    """

    __slots__ = ("_highest", "minimum", "size")

    def __init__(self, highest: int | None = None, *, size: int = 256, minimum: int = 0) -> None:
        """``minimum``: the first counter the meter was provisioned to use (its floor)."""
        if size < 1:
            raise ConfigurationError("window size must be positive")
        self.size = size
        self.minimum = minimum
        self._highest = highest

    @property
    def last(self) -> int | None:
        """The highest counter known to be accepted."""
        return self._highest

    def check(self, value: int) -> None:
        """Refuse a counter older than the window.

        Raises:
            ReplayError: at or below the highest known counter minus the window.
        """
        if value < self.minimum:  # never issued by the meter: a young meter's window is no gap
            raise ReplayError(f"invocation counter {value} is below the meter's floor")
        h = self._highest
        if h is not None and value <= h - self.size:
            raise ReplayError(
                f"attempt to lower invocation counter: {value} is older than the window below {h}"
            )

    def commit(self, value: int) -> None:
        """Nothing is recorded here: the shared store records acceptance at commit.

        Raises:
            ReplayError: older than the window.
        """
        self.check(value)

    def advance(self, highest: int) -> None:
        """Raise the floor to follow a committed counter."""
        if self._highest is None or highest > self._highest:
            self._highest = highest

    def __repr__(self) -> str:
        return f"PushFloor(highest={self._highest}, size={self.size})"


class CounterCheck(Protocol):
    """What a receiver's counter policy offers: check before the tag, commit after it."""

    def check(self, value: int) -> None:
        """Raise :class:`~meterguard.errors.ReplayError` for a counter that is refused."""

    def commit(self, value: int) -> None:
        """Record a counter whose APDU authenticated."""
