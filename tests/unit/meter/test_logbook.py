"""LOG-5: hash-chained log books detect rewritten and missing entries."""

from __future__ import annotations

from meterguard.meter.logbook import EventCode, LogBook, LogEntry


def test_chain_verifies_and_reports_status() -> None:
    book = LogBook("fraud", capacity=5)
    for i in range(12):
        book.append(1_700_000_000 + i, EventCode.METER_COVER_REMOVED)
    assert book.verify()
    seq, head = book.status()
    assert seq == 12 and head == book.entries[-1].chain_hash
    assert len(book.entries) == 5 and book.entries[0].sequence == 8


def test_rewritten_entry_breaks_the_chain() -> None:
    book = LogBook("fraud")
    for i in range(4):
        book.append(i, EventCode.TERMINAL_COVER_REMOVED)
    state = book.to_state()
    state["entries"][1][2] = int(EventCode.TERMINAL_COVER_CLOSED)  # someone hides a tamper event
    assert not LogBook.from_state("fraud", state).verify()


def test_deleted_entry_breaks_the_chain() -> None:
    book = LogBook("fraud")
    for i in range(4):
        book.append(i, EventCode.STRONG_DC_FIELD_DETECTED)
    state = book.to_state()
    del state["entries"][2]
    assert not LogBook.from_state("fraud", state).verify()


def test_round_trip() -> None:
    book = LogBook("standard")
    book.append(5, EventCode.POWER_DOWN)
    back = LogBook.from_state("standard", book.to_state())
    assert back.verify() and back.entries == book.entries
    assert isinstance(back.entries[0], LogEntry)
