"""The fast load-profile push decoder never disagrees with the generic decoder."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterguard.cosem import axdr as x
from meterguard.cosem.cosemtime import CosemDateTime
from meterguard.cosem.push import profile_entries
from meterguard.cosem.security import ApduUnprotector
from meterguard.cosem.xdlms import DataNotification, decode_xdlms
from meterguard.crypto.aead import GcmKey
from meterguard.errors import MeterguardError
from meterguard.meter.fleet import Fleet
from tests.strategies import data, datetimes

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
u32 = st.integers(0, 0xFFFFFFFF)
# Field by field, around the edges: month ends (Feb 29 in and out of leap years), deviations.
edge_stamps = st.builds(
    lambda y, m, d, h, dev, hs: (
        y.to_bytes(2, "big")
        + bytes((m, d, 0xFF, h, 59, 59, hs))
        + (dev & 0xFFFF).to_bytes(2, "big")
        + b"\x00"
    ),
    st.sampled_from([1, 1900, 1970, 2000, 2023, 2024, 2100, 9999, 10000]),
    st.integers(1, 12),
    st.integers(27, 32),
    st.integers(0, 24),
    st.integers(-721, 721) | st.just(-0x8000),
    st.integers(0, 100) | st.just(0xFF),
)
# Mostly plausible stamps, some with wildcards or arbitrary bytes (invalid calendar dates too).
stamps = st.one_of(
    edge_stamps,
    st.datetimes(
        min_value=dt.datetime(1, 1, 2),  # noqa: DTZ001 - hypothesis wants naive bounds
        max_value=dt.datetime(9999, 12, 30),  # noqa: DTZ001 - as above
        timezones=st.just(dt.UTC),
    ).map(lambda d: CosemDateTime.from_datetime(d).to_bytes()),
    datetimes.map(CosemDateTime.to_bytes),
    st.binary(min_size=12, max_size=12),
)
entries = st.builds(
    lambda s, i, e: x.Structure(
        (x.OctetString(s), x.DoubleLongUnsigned(i), x.DoubleLongUnsigned(e))
    ),
    stamps,
    u32,
    u32,
)
bodies = st.one_of(
    entries,
    st.lists(entries, min_size=1, max_size=6).map(lambda v: x.Array(tuple(v))),
    data,
)
headers = st.none() | datetimes


def generic(plain: bytes) -> list[tuple[dt.datetime, int, int]] | None:
    """What the generic path makes of ``plain``: entries, or None if it refuses it."""
    try:
        note = decode_xdlms(plain)
        assert isinstance(note, DataNotification)
        body = note.body
        items = body.items if isinstance(body, x.Array) else (body,)
        out = []
        for e in items:
            assert isinstance(e, x.Structure) and len(e.items) == 3
            stamp, imp, exp = e.items
            assert isinstance(stamp, x.OctetString)
            assert isinstance(imp, x.DoubleLongUnsigned) and isinstance(exp, x.DoubleLongUnsigned)
            out.append((CosemDateTime.from_bytes(stamp.value).to_datetime(), imp.value, exp.value))
    except (MeterguardError, AssertionError):
        return None
    return out


@settings(max_examples=3000)
@given(u32, headers, bodies)
def test_fast_path_agrees_with_the_generic_decoder(
    invoke: int, header: CosemDateTime | None, body: x.Data
) -> None:
    plain = DataNotification(invoke, header, body).to_bytes()
    fast = profile_entries(plain)
    if fast is None:
        return  # the caller falls back to the generic path: nothing to compare
    slow = generic(plain)
    assert slow is not None, "fast path accepted what the generic path refuses"
    assert len(fast) == len(slow)
    for (sec, hs, imp, exp), (when, gimp, gexp) in zip(fast, slow, strict=True):
        # As a difference: 9999-12-31T23:00-02:00 is a valid date-time whose UTC is past 9999.
        assert when - EPOCH == dt.timedelta(seconds=sec, milliseconds=10 * hs)
        assert (imp, exp) == (gimp, gexp)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    fast = profile_entries(raw)
    if fast is not None:
        assert generic(raw) is not None


def test_the_fleet_pushes_take_the_fast_path() -> None:
    now = dt.datetime(2026, 3, 29, tzinfo=dt.UTC)
    fleet = Fleet.create(1, now=now)
    ek, ak, _ = fleet.keys(0)
    opener = ApduUnprotector(
        key=GcmKey(ek), authentication_key=ak, peer_system_title=fleet.system_title(0)
    )
    pushes: list[bytes] = []
    fleet.step(now + dt.timedelta(hours=1), lambda _i, apdu: pushes.append(apdu))
    fleet.step(now + dt.timedelta(hours=3), lambda _i, apdu: pushes.append(apdu), per_push=4)
    decoded = [profile_entries(opener.unprotect(p)[1]) for p in pushes]
    assert [len(d) if d is not None else None for d in decoded] == [1, 1, 1, 1, 4, 4]
    assert decoded[0] is not None and decoded[0][0][0] == int(now.timestamp()) + 900


@pytest.mark.parametrize(
    ("year", "month", "day", "hs"),
    [
        (1900, 2, 29, 0),  # not a leap year
        (2000, 2, 29, 0),  # leap year
        (2100, 2, 29, 0),
        (2024, 2, 29, 0),
        (2023, 4, 31, 0),
        (2023, 12, 31, 99),
        (2023, 12, 31, 100),  # hundredths out of range
        (2023, 12, 31, 0xFF),  # hundredths not specified
        (9999, 12, 31, 0),
        (10000, 1, 1, 0),
        (0, 1, 1, 0),
    ],
)
def test_calendar_edges_agree(year: int, month: int, day: int, hs: int) -> None:
    stamp = year.to_bytes(2, "big") + bytes((month, day, 0xFF, 23, 59, 59, hs)) + b"\x80\x00\x00"
    body = x.Structure((x.OctetString(stamp), x.DoubleLongUnsigned(1), x.DoubleLongUnsigned(2)))
    plain = DataNotification(7, None, body).to_bytes()
    fast, slow = profile_entries(plain), generic(plain)
    if fast is not None:
        assert slow is not None
        sec, hundredths, _, _ = fast[0]
        assert EPOCH + dt.timedelta(seconds=sec, milliseconds=10 * hundredths) == slow[0][0]
    else:
        assert slow is None or (year, month, day) == (9999, 12, 31)  # fast path is conservative
