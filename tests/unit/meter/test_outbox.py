"""The meter outbox: durable, and shared by several meters of one fleet process without mixing."""

from __future__ import annotations

from pathlib import Path

from meterguard.meter.transport.mqtt import Outbox


def test_meters_sharing_one_file_see_only_their_own_messages(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    a, b = Outbox(path, owner="MGD0000000001"), Outbox(path, owner="MGD0000000002")
    sa = a.add("meters/MGD0000000001/data", b"a1")
    sb = b.add("meters/MGD0000000002/data", b"b1")
    a.add("meters/MGD0000000001/data", b"a2")
    assert [p for _, _, p in a.pending()] == [b"a1", b"a2"]
    assert [t for _, t, _ in b.pending()] == ["meters/MGD0000000002/data"]
    assert len(a) == 2 and len(b) == 1
    a.remove(sb)  # not a's message: nothing happens to b's
    assert b.contains(sb) and not a.contains(sb)
    a.remove(sa)
    assert [p for _, _, p in Outbox(path, owner="MGD0000000001").pending()] == [b"a2"]  # durable
