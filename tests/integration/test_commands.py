"""Dual-control commands (API-10) through the real signing, a real fleet meter and real ingest.

The head-end's service proposes, approves (second person), signs and "publishes" into a
list; the fleet meter verifies and acts; its result push goes through the ingest processor
and ``commit_ingest`` into the database, on SQLite and PostgreSQL. Forged, replayed,
misaddressed and re-signed commands are refused by the meter, which alarms.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from meterguard.cosem.command import ControlState
from meterguard.crypto.ecc import SigningKey
from meterguard.crypto.keys import KeyId, SecretKey
from meterguard.crypto.keystore import KeyStore, LocalKek
from meterguard.crypto.keywrap import wrap_key
from meterguard.errors import AccessDeniedError, InvalidValueError
from meterguard.headend.ingest.admission import Admission
from meterguard.headend.ingest.processor import IngestProcessor, Refused
from meterguard.headend.services.accounts import Principal
from meterguard.headend.services.commands import Commands, DualControlError
from meterguard.headend.services.usage import consumption_data
from meterguard.headend.store.models import AuditRecord
from meterguard.headend.store.repository import Store
from meterguard.meter.fleet import Fleet
from meterguard.meter.logbook import EventCode
from meterguard.meter.rules import TamperKind
from meterguard.system.acks import AlarmAcks
from tests.accounts import test_accounts

pytestmark = pytest.mark.integration

HEADEND = b"MGH\x00\x00\x00\x00\x01"
T0 = dt.datetime(2026, 3, 2, 0, 0, tzinfo=dt.UTC)
OLGA = Principal(1, "olga", "operator")
ERIK = Principal(2, "erik", "engineer")


class Rig:
    def __init__(self, store: Store, tmp: Path) -> None:
        self.store = store
        self.fleet = Fleet.create(2, now=T0)
        self.key = SigningKey.generate()
        self.fleet.trust_commands(self.key.verifying_key(), HEADEND)
        self.ids = [f"MGD{int(s):010d}" for s in self.fleet.a["serial"]]
        keys: dict[str, tuple[bytes, SecretKey, SecretKey]] = {}
        for i, mid in enumerate(self.ids):
            store.registry.add_meter(
                mid, serial=mid[3:], system_title=self.fleet.system_title(i), now=0
            )
            ek, ak, _ = self.fleet.keys(i)
            keys[mid] = (self.fleet.system_title(i), ek, ak)
        self.keys = keys
        self.sent: list[tuple[str, bytes]] = []
        self.reads = consumption_data(store, test_accounts(store, tmp))
        self.commands = Commands(
            store.commands, keys.__getitem__, self.key, HEADEND, self._publish, reads=self.reads
        )
        self.processor = IngestProcessor(
            Admission(known=set(self.ids), revoked=set()),
            keys.__getitem__,
            store.last_counter,
        )
        self.pushed: list[tuple[str, bytes]] = []

    def _publish(self, meter_id: str, envelope: bytes) -> bool:
        self.sent.append((meter_id, envelope))
        return True

    def push(self, topic: str) -> object:
        def f(i: int, apdu: bytes) -> None:
            self.pushed.append((f"meters/{self.ids[i]}/{topic}", apdu))

        return f

    def deliver(self, i: int, envelope: bytes) -> object:
        return self.fleet.command(
            i,
            envelope,
            result=self.push("events"),
            alarm=self.push("alarms"),  # type: ignore[arg-type]
        )

    def ingest(self) -> None:
        accepted, refused = [], []
        for topic, payload in self.pushed:
            out = self.processor.handle(topic, payload, now=1.0)
            (refused if isinstance(out, Refused) else accepted).append(out)
        assert not refused, refused
        self.store.commit_ingest(accepted, [], now=2)
        self.pushed.clear()


def _audit(store: Store) -> list[tuple[str, str, str]]:
    with store.engine.connect() as c:
        return [
            (r.actor, r.action, r.result)
            for r in c.execute(select(AuditRecord).order_by(AuditRecord.seq))
        ]


def test_dual_approved_disconnect_reaches_the_meter_and_the_result_comes_back(
    store: Store, tmp_path: Path
) -> None:
    rig = Rig(store, tmp_path)
    mid = rig.ids[0]
    cmd = rig.commands.propose(OLGA, mid, "disconnect", None, "unpaid bills", now=100)
    assert cmd.state == "proposed" and cmd.counter is None
    with pytest.raises(DualControlError):
        rig.commands.approve(OLGA, cmd.id, now=101)  # one person cannot do both halves
    assert rig.sent == [] and rig.commands.get(cmd.id).state == "proposed"  # type: ignore[union-attr]
    approved = rig.commands.approve(ERIK, cmd.id, now=102)
    assert approved is not None and approved.state == "sent" and approved.counter == 1
    assert [m for m, _ in rig.sent] == [mid]

    before = float(rig.fleet.a["import_wh"][0])
    result = rig.deliver(0, rig.sent[0][1])
    assert result is not None and rig.fleet.control_state(0) is ControlState.DISCONNECTED
    rig.ingest()
    done = rig.commands.get(cmd.id)
    assert done is not None and done.state == "executed" and done.result == 0
    assert done.control_state == int(ControlState.DISCONNECTED)
    # A disconnected meter records no consumption; the other meter still does.
    rig.fleet.step(T0 + dt.timedelta(hours=6))
    assert float(rig.fleet.a["import_wh"][0]) == before
    assert float(rig.fleet.a["import_wh"][1]) > 1_000_000 + 7919 * 2 % 40_000_000

    trail = _audit(store)
    assert ("olga", "command_proposed:disconnect", "proposed") in trail
    assert ("olga", "command_approved:disconnect", "denied_same_person") in trail
    assert ("erik", "command_approved:disconnect", "signed_and_sent") in trail
    assert ("meter", "command_result:disconnect", "executed") in trail

    # Reconnect, with the roles swapped: the counter moves on.
    again = rig.commands.propose(ERIK, mid, "reconnect", None, "paid", now=200)
    sent = rig.commands.approve(OLGA, again.id, now=201)
    assert sent is not None and sent.counter == 2
    rig.deliver(0, rig.sent[-1][1])
    assert rig.fleet.control_state(0) is ControlState.CONNECTED
    rig.ingest()
    assert rig.commands.get(again.id).state == "executed"  # type: ignore[union-attr]


def _alarm_codes(store: Store) -> list[int]:
    return [a.code for a in store.alarm_rows(None)]


def test_the_meter_refuses_and_alarms_what_it_cannot_verify(store: Store, tmp_path: Path) -> None:
    rig = Rig(store, tmp_path)
    cmd = rig.commands.propose(OLGA, rig.ids[0], "load_limit", 2000, "peak", now=10)
    rig.commands.approve(ERIK, cmd.id, now=11)
    envelope = rig.sent[-1][1]

    forged = bytearray(envelope)
    forged[-5] ^= 0x01  # inside the ECDSA signature
    other_key = Commands(
        store.commands,
        rig.keys.__getitem__,
        SigningKey.generate(),
        HEADEND,
        rig._publish,
        reads=rig.reads,
    )
    # A command re-signed by someone else's key (e.g. a stolen meter key, no command key):
    stray = rig.commands.propose(ERIK, rig.ids[0], "disconnect", None, "x", now=12)
    other_key.approve(OLGA, stray.id, now=13)
    resigned = rig.sent[-1][1]

    for bad in (bytes(forged), resigned, b"\xdf" + b"\x00" * 10, envelope[:-1]):
        assert rig.deliver(0, bad) is None
    assert int(rig.fleet.a["limit_w"][0]) == 0 and int(rig.fleet.a["cmd_counter"][0]) == 0
    # Addressed to meter 0, delivered to meter 1: refused there.
    assert rig.deliver(1, envelope) is None
    # The genuine one acts once; its replay is refused.
    assert rig.deliver(0, envelope) is not None
    assert int(rig.fleet.a["limit_w"][0]) == 2000
    assert rig.deliver(0, envelope) is None
    rig.ingest()
    codes = _alarm_codes(store)
    assert codes.count(EventCode.AUTHENTICATION_FAILURE) == 3  # forged, re-signed, misaddressed
    assert codes.count(EventCode.DECRYPTION_OR_AUTHENTICATION_FAILURE) == 2  # malformed
    assert codes.count(EventCode.REPLAY_ATTACK) == 1
    assert rig.commands.get(cmd.id).state == "executed"  # type: ignore[union-attr]


def test_only_utility_command_roles_propose_and_values_are_checked(
    store: Store, tmp_path: Path
) -> None:
    rig = Rig(store, tmp_path)
    for who in (Principal(5, "alice", "consumer"), Principal(6, "audrey", "auditor")):
        with pytest.raises(AccessDeniedError):
            rig.commands.propose(who, rig.ids[0], "disconnect", None, "x", now=1)
    for kind, value in (
        ("load_limit", None),
        ("load_limit", 10),
        ("tariff_change", 9),
        ("disconnect", 3),
        ("self_destruct", None),
    ):
        with pytest.raises(InvalidValueError):
            rig.commands.propose(OLGA, rig.ids[0], kind, value, "x", now=1)
    with pytest.raises(InvalidValueError):
        rig.commands.propose(OLGA, "MGD0000000099", "disconnect", None, "x", now=1)
    # A proposal expires unapproved after the approval window.
    late = rig.commands.propose(OLGA, rig.ids[1], "tariff_change", 2, "winter", now=1)
    assert rig.commands.approve(ERIK, late.id, now=1 + 3601) is None
    assert rig.commands.get(late.id).state == "expired"  # type: ignore[union-attr]
    assert rig.sent == []
    assert json.dumps([c.state for c in rig.commands.list()]) == '["expired"]'


def test_key_change_moves_meter_and_head_end_to_a_new_key(store: Store, tmp_path: Path) -> None:
    rig = Rig(store, tmp_path)
    keystore = KeyStore(tmp_path / "keys.db", LocalKek(SecretKey.generate(32)))
    for i, mid in enumerate(rig.ids):
        for kind, key in zip(
            (KeyId.GLOBAL_UNICAST, KeyId.AUTHENTICATION, KeyId.MASTER),
            rig.fleet.keys(i),
            strict=True,
        ):
            keystore.import_active(mid, kind, key)

    def keys(mid: str) -> tuple[bytes, SecretKey, SecretKey]:
        title = rig.keys[mid][0]
        return (
            title,
            keystore.active(mid, KeyId.GLOBAL_UNICAST),
            keystore.active(mid, KeyId.AUTHENTICATION),
        )

    def rotate(mid: str) -> bytes:
        new = keystore.begin_rotation(mid, KeyId.GLOBAL_UNICAST)
        return wrap_key(keystore.active(mid, KeyId.MASTER), new.key)

    rig.commands = Commands(
        store.commands, keys, rig.key, HEADEND, rig._publish, rotate_key=rotate, reads=rig.reads
    )
    rig.processor = IngestProcessor(
        Admission(known=set(rig.ids), revoked=set()),
        keys,
        store.last_counter,
        candidates=lambda m: [
            (k.version, k.key) for k in keystore.candidates(m, KeyId.GLOBAL_UNICAST)
        ],
        on_rotated=lambda m, v: keystore.confirm(m, KeyId.GLOBAL_UNICAST, v),
    )
    old = rig.fleet.keys(0)[0]
    cmd = rig.commands.propose(OLGA, rig.ids[0], "key_change", None, "yearly rotation", now=5)
    rig.commands.approve(ERIK, cmd.id, now=6)
    assert keystore.active(rig.ids[0], KeyId.GLOBAL_UNICAST) == old  # until the meter proves it
    assert rig.deliver(0, rig.sent[-1][1]) is not None
    new = rig.fleet.keys(0)[0]
    assert new != old and new == keystore.candidates(rig.ids[0], KeyId.GLOBAL_UNICAST)[0].key
    # The result travels under the old key, the next readings under the new one: all accepted.
    rig.fleet.step(T0 + dt.timedelta(hours=2), rig.push("data"))  # type: ignore[arg-type]
    rig.ingest()
    assert rig.commands.get(cmd.id).state == "executed"  # type: ignore[union-attr]
    assert keystore.active(rig.ids[0], KeyId.GLOBAL_UNICAST) == new
    assert keystore.active(rig.ids[1], KeyId.GLOBAL_UNICAST) == rig.fleet.keys(1)[0]
    assert len(store.readings(rig.ids[0], 0, 2**40)) == 8
    # The next command is sealed under the new key and the meter accepts it.
    nxt = rig.commands.propose(ERIK, rig.ids[0], "disconnect", None, "after rotation", now=7)
    rig.commands.approve(OLGA, nxt.id, now=8)
    assert rig.deliver(0, rig.sent[-1][1]) is not None
    assert rig.fleet.control_state(0) is ControlState.DISCONNECTED


def test_on_demand_read_is_signed_answered_and_audited(store: Store, tmp_path: Path) -> None:
    rig = Rig(store, tmp_path)
    with pytest.raises(AccessDeniedError):
        rig.commands.read_now(Principal(9, "audrey", "auditor"), rig.ids[1], now=1)
    sent = rig.commands.read_now(OLGA, rig.ids[1], now=2)  # one person is enough for a read
    assert sent.state == "sent" and sent.counter == 1 and sent.reading is None
    result = rig.deliver(1, rig.sent[-1][1])
    assert result is not None and result.value == int(rig.fleet.a["import_wh"][1])
    rig.ingest()
    done = rig.commands.get(sent.id)
    assert done is not None and done.state == "executed"
    assert done.reading == int(rig.fleet.a["import_wh"][1])
    assert ("olga", "on_demand_read", "signed_and_sent") in _audit(store)
    # A replayed read is refused like any other command.
    assert rig.deliver(1, rig.sent[-1][1]) is None


def test_a_throttled_meters_alarm_arrives_in_the_end_and_is_acknowledged(
    store: Store, tmp_path: Path
) -> None:
    """TAMP-3 (issue 12 item 1): a meter floods its own alarms topic and its genuine tamper
    alarm is throttled with the flood; the meter keeps it pending and re-sends it, the head-end
    stores it once the flood is over and acknowledges it (signed, counted, audited), and the
    meter stops re-sending."""
    rig = Rig(store, tmp_path)
    rig.processor = IngestProcessor(
        Admission(known=set(rig.ids), revoked=set()),
        rig.keys.__getitem__,
        store.last_counter,
        rate=1,
        burst=5,
    )
    acks = AlarmAcks(rig.commands.acknowledge_alarms)
    mid, topic = rig.ids[0], f"meters/{rig.ids[0]}/alarms"
    for _ in range(50):  # the flood: junk on its own alarms topic, throttled before crypto
        rig.processor.handle(topic, b"\xdb" + bytes(60), now=10.0)
    seq = rig.fleet.tamper(0, TamperKind.MAIN_COVER_OPEN, rig.push("alarms"))  # type: ignore[arg-type]
    [(t, apdu)] = rig.pushed
    rig.pushed.clear()
    out = rig.processor.handle(t, apdu, now=10.5)
    assert isinstance(out, Refused) and out.kind == "throttled"  # lost, as before the fix...
    assert rig.fleet.pending_alarms(0) == [seq]  # ...but the meter still holds it

    def ingest(now: float) -> None:
        accepted = []
        for topic_, payload in rig.pushed:
            got = rig.processor.handle(topic_, payload, now=now)
            assert not isinstance(got, Refused), got
            accepted.append(got)
        rig.pushed.clear()
        acks.offer(store.commit_ingest(accepted, [], now=int(now)))

    # The flood is over; the meter's periodic re-send arrives under a fresh counter.
    assert rig.fleet.resend_pending(rig.push("alarms")) == 1  # type: ignore[arg-type]
    ingest(now=30.0)
    assert [a.sequence for a in store.alarm_rows([mid])] == [seq]
    assert rig.sent == []  # nothing acknowledged before the acknowledger's round
    assert acks.flush(now=31) == 1
    [(to, envelope)] = rig.sent
    assert to == mid
    result = rig.deliver(0, envelope)
    assert result is not None and result.result == 0
    assert rig.fleet.pending_alarms(0) == [] and rig.fleet.resend_pending(rig.push("alarms")) == 0  # type: ignore[arg-type]
    ingest(now=32.0)  # the acknowledgement's own result comes back as a command result
    [cmd] = [c for c in rig.commands.list(meter_id=mid) if c.kind == "alarm_ack"]
    assert cmd.state == "executed" and cmd.proposed_by == "system:ingest"
    assert ("system:ingest", "alarm_acknowledged", "signed_and_sent") in _audit(store)
    # A re-send that crossed the acknowledgement is stored once and acknowledged again.
    rig.fleet.a["pending"][0][0] = (seq, int(TamperKind.MAIN_COVER_OPEN.code), 0)
    rig.fleet.resend_pending(rig.push("alarms"))  # type: ignore[arg-type]
    ingest(now=40.0)
    assert [a.sequence for a in store.alarm_rows([mid])] == [seq]
    assert acks.flush(now=41) == 1
