"""Tariffs and signed bills over a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from meterguard.cli.main import main
from meterguard.crypto.ecc import SigningKey
from meterguard.errors import InvalidValueError, SignatureInvalidError
from meterguard.headend.services.billing import Band, Billing, TariffSpec, canonical, verify_bill
from meterguard.headend.store.repository import ReadingRow, Store

pytestmark = pytest.mark.integration

DAY0 = 1_798_761_600  # 2027-01-01 00:00 UTC
MID = "MGD0000000001"


def _store_day(store: Store, *, skip: frozenset[int] = frozenset()) -> None:
    """A day of 15-minute readings: 100 Wh per interval at night (0-7 h), 300 Wh by day."""
    store.registry.add_meter(MID, serial=MID[3:], system_title=b"MGD\x00\x00\x00\x00\x01", now=0)
    cum, rows = 50_000, [ReadingRow(MID, DAY0 - 900, 50_000, 0, 0)]
    for k in range(96):
        start = DAY0 + 900 * k
        cum += 100 if start < DAY0 + 7 * 3600 else 300
        if k not in skip:
            rows.append(ReadingRow(MID, start, cum, 0, 0))
    store.add_readings(rows)


FLAT = TariffSpec("flat-2027", "flat", "EUR", 4000, (Band(0, 24, 2500),))
TOU = TariffSpec("night-saver", "tou", "EUR", 5000, (Band(0, 7, 1200), Band(7, 24, 3100)))


def test_flat_and_time_of_use_bills_are_right_and_signed(store: Store) -> None:
    _store_day(store)
    key = SigningKey.generate()
    billing = Billing(store.billing, key)
    flat = billing.add_tariff(FLAT, now=1)
    billing.assign(MID, flat)
    bill = billing.issue(MID, DAY0, DAY0 + 86400, now=2)
    doc = bill.document
    # 28 night intervals x 100 Wh + 68 day intervals x 300 Wh = 23 200 Wh at 0.25/kWh = 5.80
    assert doc["lines"] == [{"band": "00-24h", "wh": 23_200, "rate_e4": 2500, "charge_e4": 58_000}]
    assert doc["standing_e4"] == 4000 and doc["total_e4"] == 62_000
    verify_bill(doc, bytes.fromhex(bill.signature), key.verifying_key())
    assert billing.issue(MID, DAY0, DAY0 + 86400, now=3).id == bill.id  # issued once

    tou = billing.add_tariff(TOU, now=4)
    billing.assign(MID, tou)
    doc = billing.compute(MID, DAY0, DAY0 + 86400)
    assert [(x["wh"], x["charge_e4"]) for x in doc["lines"]] == [(2_800, 3_360), (20_400, 63_240)]
    assert doc["total_e4"] == 3_360 + 63_240 + 5000 and doc["missing_intervals"] == 0


def test_a_changed_bill_fails_verification(store: Store) -> None:
    _store_day(store)
    key = SigningKey.generate()
    billing = Billing(store.billing, key)
    billing.assign(MID, billing.add_tariff(FLAT, now=1))
    bill = billing.issue(MID, DAY0, DAY0 + 86400, now=2)
    sig = bytes.fromhex(bill.signature)
    cheaper = copy.deepcopy(bill.document)
    cheaper["total_e4"] -= 10_000
    with pytest.raises(SignatureInvalidError):
        verify_bill(cheaper, sig, key.verifying_key())
    with pytest.raises(SignatureInvalidError):
        verify_bill(bill.document, sig, SigningKey.generate().verifying_key())
    # Signed by the right key but not adding up (a buggy or dishonest issuer): refused too.
    cheaper["lines"][0]["charge_e4"] -= 10_000
    with pytest.raises(InvalidValueError):
        verify_bill(
            cheaper, key.sign(b"meterguard-bill-v1\n" + canonical(cheaper)), key.verifying_key()
        )


def test_gaps_are_counted_and_missing_ends_refused(store: Store) -> None:
    _store_day(store, skip=frozenset({40, 41, 95}))
    billing = Billing(store.billing, SigningKey.generate())
    billing.assign(MID, billing.add_tariff(TOU, now=1))
    doc = billing.compute(MID, DAY0, DAY0 + 86400 - 900)  # ends at the last stored interval
    assert doc["missing_intervals"] == 2
    assert sum(x["wh"] for x in doc["lines"]) == 2_800 + 300 * 67
    with pytest.raises(InvalidValueError):
        billing.compute(MID, DAY0, DAY0 + 86400)  # no reading closes the period
    with pytest.raises(InvalidValueError):
        billing.compute(MID, DAY0 + 1, DAY0 + 900)
    with pytest.raises(InvalidValueError):
        TariffSpec("bad", "tou", "EUR", 0, (Band(0, 7, 1), Band(8, 24, 1))).check()


def test_bill_verify_cli_accepts_the_bill_and_refuses_a_changed_one(
    store: Store, tmp_path: Path
) -> None:
    _store_day(store)
    key = SigningKey.generate()
    billing = Billing(store.billing, key)
    billing.assign(MID, billing.add_tariff(TOU, now=1))
    b = billing.issue(MID, DAY0, DAY0 + 86400, now=2)
    listing = {"meter_id": MID, "bills": [{"document": b.document, "signature": b.signature}]}
    (tmp_path / "key.pub").write_text(key.verifying_key().to_bytes().hex() + "\n")
    good = tmp_path / "bills.json"
    good.write_text(json.dumps(listing))
    run = CliRunner().invoke(
        main, ["bill", "verify", str(good), "--key", str(tmp_path / "key.pub")]
    )
    assert run.exit_code == 0 and f"valid bill {MID}" in run.output and "7.16 EUR" in run.output
    listing["bills"][0]["document"]["total_e4"] = 100  # type: ignore[index]
    bad = tmp_path / "changed.json"
    bad.write_text(json.dumps(listing))
    run = CliRunner().invoke(main, ["bill", "verify", str(bad), "--key", str(tmp_path / "key.pub")])
    assert run.exit_code == 1 and "INVALID bill" in run.output
