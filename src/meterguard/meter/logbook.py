"""Hash-chained log books (LOG-5) and the event codes the meter writes into them.

Every entry's hash is ``SHA-256(previous hash ‖ sequence ‖ time ‖ code)``, so
the chain head and sequence number, reported in signed status messages, let a
head-end detect a gap or a rewritten entry. A log book keeps a bounded window
of entries (like a meter's profile buffer); the chain continues past what is
kept, anchored by the hash before the oldest kept entry.

The event codes are the meter's and the head-end's shared vocabulary and live in
:mod:`meterguard.cosem.eventcodes`. This module does no IO; the meter persists
:meth:`LogBook.to_state`.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass
from typing import Any

from meterguard.cosem.eventcodes import EventCode

__all__ = ["EventCode", "LogBook", "LogEntry", "link"]

GENESIS = bytes(32)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One log book entry."""

    sequence: int
    time: int
    """Seconds since the Unix epoch, UTC."""
    code: int
    chain_hash: bytes


def link(previous: bytes, sequence: int, time: int, code: int) -> bytes:
    """The chain hash of an entry: ``SHA-256(previous ‖ sequence ‖ time ‖ code)`` (LOG-5).

    Every form of the meter chains its log books with this (the fleet keeps only the head).
    """
    return hashlib.sha256(
        previous
        + sequence.to_bytes(8, "big")
        + time.to_bytes(8, "big", signed=True)
        + code.to_bytes(2, "big")
    ).digest()


class LogBook:
    """A bounded, hash-chained event log."""

    __slots__ = ("_anchor", "_entries", "capacity", "head", "name", "sequence")

    def __init__(self, name: str, capacity: int = 100) -> None:
        self.name = name
        self.capacity = capacity
        self._entries: deque[LogEntry] = deque(maxlen=capacity)
        self._anchor = GENESIS
        self.head = GENESIS
        self.sequence = 0

    def append(self, time: int, code: int) -> LogEntry:
        """Append an event and advance the chain."""
        self.sequence += 1
        entry = LogEntry(
            self.sequence, time, int(code), link(self.head, self.sequence, time, int(code))
        )
        if len(self._entries) == self.capacity:
            self._anchor = self._entries[0].chain_hash
        self._entries.append(entry)
        self.head = entry.chain_hash
        return entry

    @property
    def entries(self) -> tuple[LogEntry, ...]:
        """The kept entries, oldest first."""
        return tuple(self._entries)

    def verify(self) -> bool:
        """Recompute the kept part of the chain from its anchor."""
        h = self._anchor
        for e in self._entries:
            h = link(h, e.sequence, e.time, e.code)
            if h != e.chain_hash:
                return False
        return h == self.head

    def status(self) -> tuple[int, bytes]:
        """``(sequence, head hash)`` for signed status reports (LOG-5)."""
        return self.sequence, self.head

    def to_state(self) -> dict[str, Any]:
        """A JSON-ready snapshot."""
        return {
            "sequence": self.sequence,
            "head": self.head.hex(),
            "anchor": self._anchor.hex(),
            "entries": [[e.sequence, e.time, e.code, e.chain_hash.hex()] for e in self._entries],
        }

    @classmethod
    def from_state(cls, name: str, state: dict[str, Any], capacity: int = 100) -> LogBook:
        """Restore a snapshot (the caller verifies it)."""
        book = cls(name, capacity)
        book.sequence = int(state["sequence"])
        book.head = bytes.fromhex(state["head"])
        book._anchor = bytes.fromhex(state["anchor"])
        for seq, time, code, h in state["entries"]:
            book._entries.append(LogEntry(int(seq), int(time), int(code), bytes.fromhex(h)))
        return book
