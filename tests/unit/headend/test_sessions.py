"""MQ-4: repeated takeovers of one meter identity quarantine it; a service identity never."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import text

from meterguard.broker.monitor import ClientIdMismatch, SessionTakeover
from meterguard.crypto.keys import SecretKey
from meterguard.crypto.keystore import KeyStore, LocalKek
from meterguard.crypto.pki.store import Pki
from meterguard.errors import AccessDeniedError
from meterguard.headend.services.meters import SYSTEM_ROLE, Meters
from meterguard.headend.services.sessions import TAKEOVER_LIMIT, TAKEOVER_WINDOW, TakeoverGuard
from meterguard.headend.store.db import open_database
from meterguard.headend.store.repository import Store

NOW = 1_796_000_000
MID = "MGD0000000007"


@pytest.fixture
def rig(tmp_path: Path) -> tuple[TakeoverGuard, Store, Meters, Pki]:
    store = Store(open_database(f"sqlite:///{tmp_path / 'h.db'}"))
    pki = Pki.init(tmp_path / "pki", now=dt.datetime.fromtimestamp(NOW, dt.UTC))
    keys = KeyStore(tmp_path / "keys.db", LocalKek(SecretKey.generate(32)))
    meters = Meters(store.registry, pki, keys, store.audit)
    meters.provision("ella", "engineer", MID[3:], now=NOW)
    pki.enrol_meter(MID[3:], tmp_path / "m", now=dt.datetime.fromtimestamp(NOW, dt.UTC))
    return TakeoverGuard(meters, store), store, meters, pki


def _events(store: Store) -> list[tuple[str | None, str, int]]:
    with store.engine.connect() as c:
        rows = c.execute(text("SELECT meter_id, event, count FROM security_events ORDER BY id"))
        return [tuple(r) for r in rows]  # type: ignore[misc]


def test_repeated_takeovers_quarantine_the_meter(
    rig: tuple[TakeoverGuard, Store, Meters, Pki],
) -> None:
    guard, store, _, pki = rig
    spread = TAKEOVER_WINDOW // (TAKEOVER_LIMIT - 1) + 1
    # Now and then (a reconnect before the broker noticed the old connection died): no action.
    for i in range(TAKEOVER_LIMIT + 2):
        guard.observe([SessionTakeover(MID)], now=NOW + i * spread)
    assert store.registry.state(MID) == "active" and guard.quarantined == []
    # Again and again: two devices hold this identity.
    t = NOW + 10 * TAKEOVER_WINDOW
    lines = []
    for i in range(TAKEOVER_LIMIT):
        lines += guard.observe([SessionTakeover(MID)], now=t + i)
    assert store.registry.state(MID) == "quarantined"
    assert guard.quarantined == [MID]
    assert lines[-1] == f"security: {MID} quarantined (repeated session takeovers)"
    assert pki.registry.held  # its operational certificate is on hold (the CRL)
    with store.engine.connect() as c:
        trail = c.execute(text("SELECT actor, action FROM audit_entries ORDER BY seq")).all()
    assert ("system:broker-monitor", "meter_quarantined") in [tuple(r) for r in trail]
    # More takeovers of a quarantined meter change nothing and grow one summary row.
    for i in range(50):
        guard.observe([SessionTakeover(MID)], now=t + 10 + i)
    events = _events(store)
    assert ("MGD0000000007", "identity_quarantined", 1) in events
    assert len(events) <= 6, events


def test_a_service_identity_is_recorded_never_quarantined(
    rig: tuple[TakeoverGuard, Store, Meters, Pki],
) -> None:
    guard, store, _, _ = rig
    for i in range(10 * TAKEOVER_LIMIT):
        guard.observe([SessionTakeover("headend-ingest-1")], now=NOW + i)
    assert guard.quarantined == []
    assert _events(store) == [(None, "session_taken_over", 10 * TAKEOVER_LIMIT)]
    guard.observe([ClientIdMismatch("MGD0000000007", "MGD0000000008", "1.2.3.4:5")], now=NOW)
    assert _events(store)[-1] == ("MGD0000000007", "client_id_mismatch", 1)


def test_release_is_the_security_administrators(
    rig: tuple[TakeoverGuard, Store, Meters, Pki],
) -> None:
    _, store, meters, pki = rig
    assert meters.move("system:broker-monitor", SYSTEM_ROLE, MID, "quarantine", now=NOW) == (
        "quarantined"
    )
    for role in (SYSTEM_ROLE, "engineer", "operator"):
        with pytest.raises(AccessDeniedError):
            meters.move("x", role, MID, "release", now=NOW)
    assert meters.move("sam", "security_admin", MID, "release", now=NOW) == "active"
    assert pki.registry.held == {} and store.registry.state(MID) == "active"
