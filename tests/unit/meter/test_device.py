"""The meter in memory: objects, rights, counters, keys, tamper, persistence (DM-2…15, TAMP)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from meterguard.cosem.association import AssociationState
from meterguard.cosem.axdr import (
    Array,
    BitString,
    DoubleLongUnsigned,
    Enum,
    Integer,
    OctetString,
    Structure,
)
from meterguard.cosem.connection import ActionCompleted, GetCompleted, SetCompleted
from meterguard.cosem.cosemtime import CosemDateTime
from meterguard.cosem.obis import Obis
from meterguard.cosem.security import ApduUnprotector
from meterguard.cosem.xdlms import (
    ActionResult,
    AttributeDescriptor,
    CaptureObject,
    DataAccessResult,
    DataNotification,
    EntryDescriptor,
    MethodDescriptor,
    RangeDescriptor,
    decode_xdlms,
)
from meterguard.crypto.aead import GcmKey
from meterguard.crypto.keys import SecretKey
from meterguard.crypto.keywrap import wrap_key
from meterguard.errors import ConfigurationError, SecurityError
from meterguard.meter.device import OBIS, TamperKind
from meterguard.meter.logbook import EventCode
from tests.conftest import AK_HEX, EK_HEX
from tests.unit.meter.conftest import KEK, Bench


def attr(class_id: int, obis: Obis, a: int) -> AttributeDescriptor:
    return AttributeDescriptor(class_id, obis, a)


def read(bench: Bench, class_id: int, obis: Obis, a: int, *, sap: int = 1) -> object:
    s = bench.client(sap=sap).open()
    ev = s.call(s.client.get, attr(class_id, obis, a))
    assert isinstance(ev, GetCompleted)
    return ev.result


def test_public_association_sees_only_the_allowed_objects(bench: Bench) -> None:
    # DM-2: clock, logical device name, invocation counter and its object list only.
    s = bench.client(sap=16).open()
    assert s.client.state is AssociationState.ASSOCIATED
    allowed = [
        attr(8, OBIS.CLOCK, 2),
        attr(1, OBIS.LOGICAL_DEVICE_NAME, 2),
        attr(1, OBIS.INVOCATION_COUNTER, 2),
        attr(15, Obis(0, 0, 40, 0, 0, 255), 2),
    ]
    for d in allowed:
        ev = s.call(s.client.get, d)
        assert isinstance(ev, GetCompleted) and not isinstance(ev.result, DataAccessResult), d
    denied = [
        attr(3, OBIS.ACTIVE_IMPORT, 2),
        attr(7, OBIS.LOAD_PROFILE, 2),
        attr(7, OBIS.FRAUD_LOG, 2),
        attr(70, OBIS.DISCONNECT, 2),
        attr(64, OBIS.SECURITY_SETUP, 2),
        attr(1, OBIS.ALARM_REGISTER, 2),
        attr(8, OBIS.CLOCK, 3),
        attr(1, Obis(9, 9, 9, 9, 9, 9), 2),
    ]
    for d in denied:
        ev = s.call(s.client.get, d)
        assert isinstance(ev, GetCompleted) and ev.result is DataAccessResult.READ_WRITE_DENIED, d
    ev = s.call(s.client.action, MethodDescriptor(70, OBIS.DISCONNECT, 1), Integer(0))
    assert isinstance(ev, ActionCompleted) and ev.result is ActionResult.READ_WRITE_DENIED
    assert bench.meter.connected
    ol = s.call(s.client.get, attr(15, Obis(0, 0, 40, 0, 0, 255), 2))
    assert (
        isinstance(ol, GetCompleted) and isinstance(ol.result, Array) and len(ol.result.items) == 4
    )


def test_registers_have_scaler_unit_and_grow(bench: Bench) -> None:
    # DM-9: value and scaler-unit (Wh = 30).
    assert read(bench, 3, OBIS.ACTIVE_IMPORT, 3) == Structure((Integer(0), Enum(30)))
    first = read(bench, 3, OBIS.ACTIVE_IMPORT, 2)
    bench.clock.advance(dt.timedelta(hours=6))
    later = read(bench, 3, OBIS.ACTIVE_IMPORT, 2)
    assert isinstance(first, DoubleLongUnsigned) and isinstance(later, DoubleLongUnsigned)
    assert later.value > first.value


def test_clock_attributes(bench: Bench) -> None:
    # DM-8: attribute 2 is the 12-byte date-time with deviation and status; 3 and 4.
    raw = read(bench, 8, OBIS.CLOCK, 2)
    assert isinstance(raw, OctetString) and len(raw.value) == 12
    stamp = CosemDateTime.from_bytes(raw.value)
    assert stamp.to_datetime() == bench.clock.now().replace(second=0)
    assert read(bench, 8, OBIS.CLOCK, 3) is not None
    assert read(bench, 8, OBIS.CLOCK, 4) is not None


def test_load_profile_full_by_range_and_by_entry(bench: Bench) -> None:
    s = bench.client().open()
    full = s.call(s.client.get, attr(7, OBIS.LOAD_PROFILE, 2))
    assert isinstance(full, GetCompleted) and isinstance(full.result, Array)
    rows = full.result.items
    assert len(rows) == 960
    imports = [r.items[2].value for r in rows]  # type: ignore[union-attr]
    assert imports == sorted(imports)  # cumulative register, never decreasing
    ed = EntryDescriptor(from_entry=2, to_entry=4, from_selected_value=1, to_selected_value=3)
    part = s.call(s.client.get, attr(7, OBIS.LOAD_PROFILE, 2), ed.to_access())
    assert isinstance(part, GetCompleted) and isinstance(part.result, Array)
    assert [r.items for r in part.result.items] == [r.items[:3] for r in rows[1:4]]  # type: ignore[union-attr]
    lo, hi = rows[10].items[0], rows[19].items[0]  # type: ignore[union-attr]
    rd = RangeDescriptor(
        CaptureObject(8, OBIS.CLOCK, 2), lo, hi, (CaptureObject(3, OBIS.ACTIVE_IMPORT, 2),)
    )
    ranged = s.call(s.client.get, attr(7, OBIS.LOAD_PROFILE, 2), rd.to_access())
    assert isinstance(ranged, GetCompleted) and isinstance(ranged.result, Array)
    assert [r.items for r in ranged.result.items] == [(r.items[2],) for r in rows[10:20]]  # type: ignore[union-attr]
    assert read(bench, 7, OBIS.LOAD_PROFILE, 4) == DoubleLongUnsigned(900)
    assert read(bench, 7, OBIS.LOAD_PROFILE, 7) == DoubleLongUnsigned(960)


def test_disconnect_control_behind_management(bench: Bench) -> None:
    # DM-15: the management association disconnects and reconnects; the log books record it.
    s = bench.client().open()
    ev = s.call(s.client.action, MethodDescriptor(70, OBIS.DISCONNECT, 1), Integer(0))
    assert isinstance(ev, ActionCompleted) and ev.result is ActionResult.SUCCESS
    assert not bench.meter.connected
    assert s.call(s.client.get, attr(70, OBIS.DISCONNECT, 2)).result.value is False  # type: ignore[union-attr]
    s.call(s.client.action, MethodDescriptor(70, OBIS.DISCONNECT, 2), Integer(0))
    assert bench.meter.connected
    codes = [e.code for e in bench.meter.logbooks["disconnector"].entries]
    assert codes == [EventCode.REMOTE_DISCONNECTION, EventCode.REMOTE_RECONNECTION]


def test_key_transfer_applies_after_the_response(bench: Bench) -> None:
    # DM-12: RFC 3394 under the master key; the response still uses the old key.
    new_ek = SecretKey(bytes(range(0xA0, 0xB0)))
    s = bench.client().open()
    param = Array((Structure((Enum(0), OctetString(wrap_key(KEK, new_ek)))),))
    ev = s.call(s.client.action, MethodDescriptor(64, OBIS.SECURITY_SETUP, 2), param)
    assert isinstance(ev, ActionCompleted) and ev.result is ActionResult.SUCCESS
    assert bench.meter.material.unicast_key == new_ek
    old = bench.client()
    old.open()
    assert old.client.state is not AssociationState.ASSOCIATED and old.errors
    new = bench.client(ek=new_ek).open()
    assert new.client.state is AssociationState.ASSOCIATED
    # ...and it survives a restart.
    assert bench.restart().material.unicast_key == new_ek


def test_key_transfer_of_all_four_keys_at_once(bench: Bench) -> None:
    # DM-12: unicast, broadcast, authentication and master keys, all wrapped under the current KEK.
    new = {k: SecretKey(bytes([0x10 * (k + 1)] * 16)) for k in range(4)}
    s = bench.client().open()
    param = Array(
        tuple(Structure((Enum(k), OctetString(wrap_key(KEK, key)))) for k, key in new.items())
    )
    ev = s.call(s.client.action, MethodDescriptor(64, OBIS.SECURITY_SETUP, 2), param)
    assert isinstance(ev, ActionCompleted) and ev.result is ActionResult.SUCCESS
    m = bench.restart().material
    assert (m.unicast_key, m.broadcast_key, m.authentication_key) == (new[0], new[1], new[2])
    assert bench.meter.master_key == new[3]


def test_key_transfer_with_wrong_kek_changes_nothing(bench: Bench) -> None:
    s = bench.client().open()
    wrapped = wrap_key(SecretKey(bytes(16)), SecretKey(bytes(range(16))))
    bad = Array((Structure((Enum(0), OctetString(wrapped))),))
    ev = s.call(s.client.action, MethodDescriptor(64, OBIS.SECURITY_SETUP, 2), bad)
    assert isinstance(ev, ActionCompleted) and ev.result is ActionResult.OTHER_REASON
    assert bench.meter.material.unicast_key == SecretKey.from_hex(EK_HEX)


def test_security_activate_only_strengthens(bench: Bench) -> None:
    s = bench.client().open()
    weaker = s.call(s.client.action, MethodDescriptor(64, OBIS.SECURITY_SETUP, 1), Enum(0x04))
    assert isinstance(weaker, ActionCompleted) and weaker.result is ActionResult.READ_WRITE_DENIED
    stronger = s.call(
        s.client.action, MethodDescriptor(64, OBIS.SECURITY_SETUP, 1), Enum(0x6C | 0x10)
    )
    assert isinstance(stronger, ActionCompleted) and stronger.result is ActionResult.SUCCESS
    assert bench.meter.policy == 0x7C


def test_counters_are_never_reused_across_restarts(bench: Bench) -> None:
    # DM-6: a restarted meter continues above every counter it may have used.
    s = bench.client().open()
    s.call(s.client.get, attr(3, OBIS.ACTIVE_IMPORT, 2))
    used = bench.meter.material.send_counter.next_value - 1
    client_seen = bench.meter.material.peer_counter.last
    state = json.loads((bench.state / "meter.json").read_text())
    assert state["send_ceiling"] > used
    meter = bench.restart()
    assert meter.material.send_counter.next_value > used
    assert client_seen is not None and (meter.material.peer_counter.last or 0) >= client_seen
    # A replay of an old client counter is refused after the restart too.
    replay = bench.client(ic=1)
    replay.open()
    assert replay.client.state is not AssociationState.ASSOCIATED


def test_invocation_counter_object_bootstraps_the_client(bench: Bench) -> None:
    # DH-1: read 0.0.43.1.0.255 over the public association, use value + 1.
    bench.client().open()
    value = read(bench, 1, OBIS.INVOCATION_COUNTER, 2, sap=16)
    assert isinstance(value, DoubleLongUnsigned)
    s = bench.client(ic=value.value + 1).open()
    assert s.client.state is AssociationState.ASSOCIATED


def test_tamper_is_logged_latched_and_pushed(bench: Bench) -> None:
    # TAMP-1…3: fraud log, latched alarm, protected push pending until acknowledged.
    alarm = bench.meter.tamper(TamperKind.MAIN_COVER_OPEN)
    assert bench.meter.logbooks["fraud"].entries[-1].code == EventCode.METER_COVER_REMOVED
    assert bench.meter.alarm_register & 1
    [push] = bench.pushes
    unprotector = ApduUnprotector(
        key=GcmKey(SecretKey.from_hex(EK_HEX)),
        authentication_key=SecretKey.from_hex(AK_HEX),
        peer_system_title=bench.meter.identity.system_title,
    )
    _, plain = unprotector.unprotect(push)
    note = decode_xdlms(plain)
    assert isinstance(note, DataNotification)
    assert note.body.items[1] == DoubleLongUnsigned(alarm["sequence"])  # type: ignore[union-attr]
    assert note.body.items[2].value == EventCode.METER_COVER_REMOVED  # type: ignore[union-attr]
    # Not acknowledged: re-sent, and still pending after a restart.
    assert bench.meter.resend_pending() == 1
    meter = bench.restart()
    assert [a["sequence"] for a in meter.pending_alarms] == [alarm["sequence"]]
    assert meter.alarm_register & 1
    assert meter.acknowledge(alarm["sequence"])
    assert meter.pending_alarms == []


def test_tamper_while_supply_is_off(bench: Bench) -> None:
    bench.meter.power(on=False)
    bench.meter.tamper(TamperKind.TERMINAL_COVER_OPEN)
    assert bench.pushes == []  # no supply, no link: logged and pending
    assert bench.meter.logbooks["fraud"].entries[-1].code == EventCode.TERMINAL_COVER_REMOVED
    bench.meter.power(on=True)
    assert len(bench.pushes) == 1  # re-sent when the supply returns
    codes = [e.code for e in bench.meter.logbooks["power-failure"].entries]
    assert codes == [EventCode.POWER_DOWN, EventCode.POWER_UP]


def test_alarm_latched_until_an_authorised_role_clears_it(bench: Bench) -> None:
    bench.meter.tamper(TamperKind.MAGNETIC_FIELD)
    public = bench.client(sap=16).open()
    ev = public.call(
        public.client.set, attr(1, OBIS.ALARM_REGISTER, 2), DoubleLongUnsigned(0xFFFFFFFF)
    )
    assert isinstance(ev, SetCompleted) and ev.results == (DataAccessResult.READ_WRITE_DENIED,)
    assert bench.meter.alarm_register & (1 << TamperKind.MAGNETIC_FIELD.bit)
    mgmt = bench.client().open()
    ev = mgmt.call(
        mgmt.client.set,
        attr(1, OBIS.ALARM_REGISTER, 2),
        DoubleLongUnsigned(1 << TamperKind.MAGNETIC_FIELD.bit),
    )
    assert isinstance(ev, SetCompleted) and ev.results == (DataAccessResult.SUCCESS,)
    assert bench.meter.alarm_register == 0
    assert bench.meter.logbooks["fraud"].entries[-1].code == EventCode.TAMPER_CLEARED


def test_every_sensor_has_a_fraud_log_code() -> None:
    assert {k.label for k in TamperKind} >= {
        "main-cover-open",
        "terminal-cover-open",
        "magnetic-field",
        "current-without-voltage",
        "reverse-energy",
        "module-removed",
    }
    assert TamperKind.parse("cover-open") is TamperKind.MAIN_COVER_OPEN
    with pytest.raises(ConfigurationError):
        TamperKind.parse("nope")


def test_security_events_reach_the_fraud_log(bench: Bench) -> None:
    s = bench.client(ek=SecretKey(bytes(16)))
    s.open()
    security = [e for e in s.errors if isinstance(e, SecurityError)]
    assert security  # the meter raised AuthenticationFailedError on the AARQ
    for e in security:
        bench.meter.record_security_event(e)
    assert (
        bench.meter.logbooks["fraud"].entries[-1].code
        == EventCode.DECRYPTION_OR_AUTHENTICATION_FAILURE
    )


def test_altered_state_file_is_refused(bench: Bench) -> None:
    bench.meter.tamper(TamperKind.MAIN_COVER_OPEN)
    path = bench.state / "meter.json"
    state = json.loads(path.read_text())
    state["logbooks"]["fraud"]["entries"][0][2] = int(EventCode.METER_COVER_CLOSED)
    path.write_text(json.dumps(state))
    with pytest.raises(ConfigurationError, match="hash chain"):
        bench.restart()


def test_state_file_is_private(bench: Bench) -> None:
    mode = (bench.state / "meter.json").stat().st_mode & 0o777
    assert mode == 0o600


def test_image_transfer_receives_and_verifies(bench: Bench) -> None:
    s = bench.client().open()
    image = bytes(range(256)) * 3 + b"tail"
    ident = OctetString(b"fw-1.2.3")
    ev = s.call(
        s.client.action,
        MethodDescriptor(18, OBIS.IMAGE_TRANSFER, 1),
        Structure((ident, DoubleLongUnsigned(len(image)))),
    )
    assert isinstance(ev, ActionCompleted) and ev.result is ActionResult.SUCCESS
    # Verifying before all blocks arrived fails.
    size = 192
    for n in range(0, len(image), size):
        block = Structure((DoubleLongUnsigned(n // size), OctetString(image[n : n + size])))
        ev = s.call(s.client.action, MethodDescriptor(18, OBIS.IMAGE_TRANSFER, 2), block)
        assert isinstance(ev, ActionCompleted) and ev.result is ActionResult.SUCCESS
    status = s.call(s.client.get, attr(18, OBIS.IMAGE_TRANSFER, 3))
    assert isinstance(status, GetCompleted) and status.result == BitString("11111")
    ev = s.call(s.client.action, MethodDescriptor(18, OBIS.IMAGE_TRANSFER, 3), Integer(0))
    assert isinstance(ev, ActionCompleted) and ev.result is ActionResult.SUCCESS
    info = s.call(s.client.get, attr(18, OBIS.IMAGE_TRANSFER, 7))
    assert isinstance(info, GetCompleted) and isinstance(info.result, Array)
    # Activation of an unsigned image is refused (firmware signatures come with the firmware issue).
    ev = s.call(s.client.action, MethodDescriptor(18, OBIS.IMAGE_TRANSFER, 4), Integer(0))
    assert isinstance(ev, ActionCompleted) and ev.result is ActionResult.READ_WRITE_DENIED


def test_oversized_image_is_refused_up_front(bench: Bench) -> None:
    s = bench.client().open()
    ev = s.call(
        s.client.action,
        MethodDescriptor(18, OBIS.IMAGE_TRANSFER, 1),
        Structure((OctetString(b"big"), DoubleLongUnsigned(1 << 30))),
    )
    assert isinstance(ev, ActionCompleted) and ev.result is ActionResult.OTHER_REASON


def test_set_clock(bench: Bench) -> None:
    s = bench.client().open()
    target = bench.clock.now() + dt.timedelta(minutes=5)
    ev = s.call(
        s.client.set,
        attr(8, OBIS.CLOCK, 2),
        OctetString(CosemDateTime.from_datetime(target).to_bytes()),
    )
    assert isinstance(ev, SetCompleted) and ev.results == (DataAccessResult.SUCCESS,)
    assert abs((bench.meter.now() - target).total_seconds()) < 1
    assert bench.meter.logbooks["standard"].entries[-1].code == EventCode.CLOCK_ADJUSTED
