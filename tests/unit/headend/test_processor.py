"""The ingest processor without a broker: order of checks, throttling before crypto, decoding."""

from __future__ import annotations

import datetime as dt

from meterguard.cosem.axdr import DoubleLongUnsigned, OctetString, Structure
from meterguard.cosem.cosemtime import CosemDateTime
from meterguard.cosem.security import ApduProtector, CipheringKind, SecurityControl
from meterguard.cosem.xdlms import DataNotification
from meterguard.crypto.aead import GcmKey
from meterguard.crypto.keys import SecretKey
from meterguard.headend.ingest.admission import Admission
from meterguard.headend.ingest.processor import Accepted, IngestProcessor, Refused, TokenBucket
from meterguard.headend.store.repository import PUSH_WINDOW
from meterguard.meter.device import TamperKind
from meterguard.meter.fleet import Fleet

NOW = dt.datetime(2026, 11, 25, 0, 0, tzinfo=dt.UTC)


def setup() -> tuple[Fleet, IngestProcessor, list[bytes]]:
    fleet = Fleet.create(1, now=NOW, first_serial=7)
    pushes: list[bytes] = []
    fleet.step(NOW + dt.timedelta(hours=1), lambda _i, apdu: pushes.append(apdu))

    def keys(_meter: str) -> tuple[bytes, SecretKey, SecretKey]:
        ek, ak, _ = fleet.keys(0)
        return fleet.system_title(0), ek, ak

    proc = IngestProcessor(
        Admission(known={"MGD0000000007"}),
        keys,
        lambda _m: None,
        rate=1.0,
        burst=3.0,
        chatty_after=2,
    )
    return fleet, proc, pushes


def meter_protector(fleet: Fleet) -> ApduProtector:
    """Protection with meter 0's own keys: pushes the meter could have made (or its thief)."""
    ek, ak, _ = fleet.keys(0)
    return ApduProtector(
        key=GcmKey(ek),
        authentication_key=ak,
        system_title=fleet.system_title(0),
        security=SecurityControl(),
    )


def test_token_bucket() -> None:
    b = TokenBucket(rate=2, burst=2)
    assert [b.allow(0.0) for _ in range(3)] == [True, True, False]
    assert b.allow(0.5)  # one token back after half a second


def test_accepts_and_decodes_and_leaves_newness_to_the_store() -> None:
    _, proc, pushes = setup()
    first = proc.handle("meters/MGD0000000007/data", pushes[0], now=0)
    assert isinstance(first, Accepted) and len(first.readings) == 1
    assert first.readings[0].interval_start == int(NOW.timestamp())
    # Verified again: whether the counter is new is decided at commit, by the shared store
    # (tests/integration/test_store.py), so that several worker processes agree.
    again = proc.handle("meters/MGD0000000007/data", pushes[0], now=10)
    assert isinstance(again, Accepted) and again.ic == first.ic


def test_counters_far_below_the_committed_one_are_refused_before_crypto() -> None:
    _, proc, pushes = setup()
    first = proc.handle("meters/MGD0000000007/data", pushes[0], now=0)
    assert isinstance(first, Accepted)
    proc.committed({"MGD0000000007": first.ic + 2 + PUSH_WINDOW})
    late = proc.handle("meters/MGD0000000007/data", pushes[1], now=0)
    assert isinstance(late, Refused) and late.event == "attempt_to_lower_invocation_counter"
    forged = bytearray(pushes[2])
    forged[-1] ^= 1
    bad = proc.handle("meters/MGD0000000007/data", bytes(forged), now=0)
    assert isinstance(bad, Refused) and bad.event == "attempt_to_lower_invocation_counter"


def test_a_load_profile_block_becomes_several_readings() -> None:
    fleet = Fleet.create(1, now=NOW, first_serial=7)
    pushes: list[bytes] = []
    until = NOW + dt.timedelta(hours=2, minutes=30)
    stats = fleet.step(until, lambda _i, a: pushes.append(a), per_push=4)
    assert stats.readings == 10 and len(pushes) == 3  # 4 + 4 + 2: nothing held back

    def keys(_meter: str) -> tuple[bytes, SecretKey, SecretKey]:
        ek, ak, _ = fleet.keys(0)
        return fleet.system_title(0), ek, ak

    proc = IngestProcessor(Admission(known={"MGD0000000007"}), keys, lambda _m: None)
    results = [proc.handle("meters/MGD0000000007/data", p, now=0) for p in pushes]
    assert all(isinstance(r, Accepted) for r in results)
    starts = [row.interval_start for r in results if isinstance(r, Accepted) for row in r.readings]
    assert starts == [int(NOW.timestamp()) + 900 * k for k in range(10)]


def test_throttled_before_any_crypto_and_reported_as_chatty() -> None:
    _, proc, pushes = setup()
    garbage = b"\xdb\x08" + b"\x00" * 40  # would fail verification, but must not even get there
    results = [proc.handle("meters/MGD0000000007/data", garbage, now=0) for _ in range(6)]
    throttled = [
        r for r in results if isinstance(r, Refused) and r.reason == "over its contract rate"
    ]
    assert len(throttled) == 3 and proc.stats["throttled"] == 3
    assert [r.event for r in throttled] == ["chatty_or_compromised", None, "chatty_or_compromised"]
    del pushes


def test_bad_input_never_raises() -> None:
    fleet, proc, _ = setup()
    for topic, payload in (
        ("nonsense", b""),
        ("meters/MGD0000000007/data", b""),
        ("meters/MGD0000000007/data", b"\x00" * 5000),
        ("meters/MGD0000000008/data", b"x"),
    ):
        assert isinstance(proc.handle(topic, payload, now=0), Refused)
    alarms: list[bytes] = []
    fleet.tamper(0, TamperKind.REVERSE_ENERGY, lambda _i, apdu: alarms.append(apdu))
    result = proc.handle("meters/MGD0000000007/alarms", alarms[0], now=0)
    assert isinstance(result, Accepted) and result.alarm is not None
    assert result.alarm[1] == TamperKind.REVERSE_ENERGY.code


def test_out_of_order_pushes_verify() -> None:
    # The bulk and the alarm lane may verify one meter's pushes in any order.
    _, proc, pushes = setup()
    proc.burst = proc.rate = 100.0
    order = [2, 0, 3, 1]
    results = [proc.handle("meters/MGD0000000007/data", pushes[i], now=0) for i in order]
    assert all(isinstance(r, Accepted) for r in results)


def test_a_young_meter_s_counter_zero_is_refused() -> None:
    """Issue 12, item 7: no push accepted yet, and a push under counter 0 (which the meter
    never uses: it starts at 1) is a replay of nothing, refused before any cryptography."""
    fleet, proc, _ = setup()
    protector = meter_protector(fleet)
    note = DataNotification(
        1, None, Structure((OctetString(bytes(12)), DoubleLongUnsigned(1), DoubleLongUnsigned(0)))
    )
    zero = protector.protect(note.to_bytes(), 0, CipheringKind.GENERAL_GLO)
    out = proc.handle("meters/MGD0000000007/data", zero, now=0)
    assert isinstance(out, Refused) and out.event == "attempt_to_lower_invocation_counter"


def test_readings_far_from_the_meters_clock_are_refused() -> None:
    """Issue 12, item 7: a verified push from a meter whose clock (or whose keys' holder)
    stamps a reading in 2001, or next year, is refused; a backlog inside the window is not."""
    fleet, proc, pushes = setup()
    protector = meter_protector(fleet)

    def stamped(when: dt.datetime, ic: int) -> bytes:
        stamp = OctetString(CosemDateTime.from_datetime(when).to_bytes())
        note = DataNotification(
            ic, None, Structure((stamp, DoubleLongUnsigned(1), DoubleLongUnsigned(0)))
        )
        return protector.protect(note.to_bytes(), ic, CipheringKind.GENERAL_GLO)

    clock = NOW + dt.timedelta(hours=1)
    proc.meter_clock = clock.timestamp
    proc.burst = proc.rate = 100.0
    assert isinstance(proc.handle("meters/MGD0000000007/data", pushes[0], now=0), Accepted)
    ic = 10_000
    for when in (dt.datetime(2001, 6, 1, tzinfo=dt.UTC), clock + dt.timedelta(days=300)):
        ic += 1
        out = proc.handle("meters/MGD0000000007/data", stamped(when, ic), now=0)
        assert isinstance(out, Refused) and out.event == "implausible_time", out
        assert str(when.year) in out.reason
    week_old = stamped(clock - dt.timedelta(days=7), ic + 1)
    assert isinstance(proc.handle("meters/MGD0000000007/data", week_old, now=0), Accepted)


def test_oversized_and_refused_messages_pass_the_bucket_first() -> None:
    """Item 2: oversized payloads skipped the bucket; now every message of an identity, also
    of a revoked or unknown one, is throttled before it costs anything else."""
    _, proc, _ = setup()
    big = b"\x00" * 16_384
    results = [proc.handle("meters/MGD0000000007/data", big, now=0) for _ in range(50)]
    kinds = [r.kind for r in results if isinstance(r, Refused)]
    assert kinds[:3] == ["oversized_message"] * 3 and set(kinds[3:]) == {"throttled"}
    stranger = [proc.handle("meters/MGD0000000099/data", b"x", now=0) for _ in range(50)]
    kinds = [r.kind for r in stranger if isinstance(r, Refused)]
    assert kinds[:3] == ["access_denied"] * 3 and set(kinds[3:]) == {"throttled"}
