"""The fleet: per-meter keys and titles, protected pushes, counters that survive restarts."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from meterguard.cosem.command import CommandResult, seal_command
from meterguard.cosem.counters import ReceiveCounter
from meterguard.cosem.security import ApduUnprotector
from meterguard.cosem.xdlms import DataNotification, decode_xdlms
from meterguard.crypto.aead import GcmKey
from meterguard.crypto.ecc import SigningKey
from meterguard.crypto.keys import SecretKey
from meterguard.crypto.keywrap import wrap_key
from meterguard.errors import AuthenticationFailedError, UnexpectedSystemTitleError
from meterguard.headend.services.commands import ack_request, plain_request
from meterguard.meter.device import TamperKind
from meterguard.meter.fleet import FLEET_FILE, PENDING_SLOTS, Fleet

NOW = dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.UTC)


def unprotector(fleet: Fleet, i: int) -> ApduUnprotector:
    ek, ak, _ = fleet.keys(i)
    return ApduUnprotector(
        key=GcmKey(ek), authentication_key=ak, peer_system_title=fleet.system_title(i)
    )


def sealed(fleet: Fleet, key: SigningKey, headend: bytes, plain: bytes, counter: int) -> bytes:
    """A command for meter 0 of ``fleet``, signed with ``key``."""
    ek, ak, _ = fleet.keys(0)
    return seal_command(
        plain,
        counter=counter,
        command_key=key,
        headend_title=headend,
        meter_title=fleet.system_title(0),
        unicast_key=ek,
        authentication_key=ak,
        signed_at=NOW,
    )


def test_each_meter_has_its_own_keys_and_title(tmp_path: Path) -> None:
    fleet = Fleet.create(20, now=NOW, path=tmp_path / FLEET_FILE)
    assert len({fleet.keys(i)[0].fingerprint() for i in range(20)}) == 20
    assert len({fleet.system_title(i) for i in range(20)}) == 20
    assert fleet.nbytes / len(fleet) < 2048


def test_pushes_verify_only_with_the_senders_keys(tmp_path: Path) -> None:
    fleet = Fleet.create(3, now=NOW, path=tmp_path / FLEET_FILE)
    pushes: list[tuple[int, bytes]] = []
    stats = fleet.step(NOW + dt.timedelta(hours=2), lambda i, apdu: pushes.append((i, apdu)))
    assert stats.readings == 3 * 8 and len(pushes) == 24
    counters = {i: ReceiveCounter() for i in range(3)}
    previous: dict[int, int] = {}
    for i, apdu in pushes:
        _, plain = unprotector(fleet, i).unprotect(apdu, counters[i])
        note = decode_xdlms(plain)
        assert isinstance(note, DataNotification)
        reading = note.body.items[1].value  # type: ignore[union-attr]
        assert reading >= previous.get(i, 0)  # the import register never goes back
        previous[i] = reading
    i, apdu = pushes[0]
    with pytest.raises(UnexpectedSystemTitleError):
        unprotector(fleet, (i + 1) % 3).unprotect(apdu)
    other_key = ApduUnprotector(
        key=GcmKey(fleet.keys(1)[0]),
        authentication_key=fleet.keys(1)[1],
        peer_system_title=fleet.system_title(0),
    )
    with pytest.raises(AuthenticationFailedError):
        other_key.unprotect(pushes[0][1])


def test_counters_never_reused_after_reload(tmp_path: Path) -> None:
    path = tmp_path / FLEET_FILE
    fleet = Fleet.create(2, now=NOW, path=path)
    seen: list[int] = []

    def collect(i: int, apdu: bytes) -> None:
        if i == 0:
            seen.append(unprotector(fleet, 0).unprotect(apdu)[0])

    fleet.step(NOW + dt.timedelta(hours=1), collect)
    fleet = Fleet.load(path)  # a restart, possibly after a crash right after the last push
    fleet.step(NOW + dt.timedelta(hours=2), collect)
    assert seen == sorted(set(seen)) and len(seen) == 8


def test_tamper_push(tmp_path: Path) -> None:
    fleet = Fleet.create(2, now=NOW, path=tmp_path / FLEET_FILE)
    pushes: list[bytes] = []
    seq = fleet.tamper(1, TamperKind.MAGNETIC_FIELD, lambda _i, apdu: pushes.append(apdu))
    assert seq == 1 and int(fleet.a["alarm"][1]) == 1 << TamperKind.MAGNETIC_FIELD.bit
    note = decode_xdlms(unprotector(fleet, 1).unprotect(pushes[0])[1])
    assert isinstance(note, DataNotification)
    assert note.body.items[2].value == TamperKind.MAGNETIC_FIELD.code  # type: ignore[union-attr]


def test_cli_fleet_run(tmp_path: Path) -> None:
    out = tmp_path / "pushes.txt"
    res = subprocess.run(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "meterguard",
            "fleet",
            "run",
            "--meters",
            "5",
            "--state",
            str(tmp_path / "f"),
            "--duration",
            "2",
            "--speed",
            "3600",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert "protected pushes" in res.stdout
    lines = out.read_text().splitlines()
    assert lines and all(len(line.split()) == 2 for line in lines)
    assert (tmp_path / "f" / FLEET_FILE).stat().st_mode & 0o777 == 0o600


def test_a_key_transfer_wrapped_under_another_master_key_is_logged_as_fraud() -> None:
    """One rule for both forms (the device logs it too): a bad wrap changes no key, the
    command fails, and the fraud log gains an entry."""
    fleet = Fleet.create(1, now=NOW)
    key = SigningKey.generate()
    headend = b"MGH\x00\x00\x00\x00\x01"
    fleet.trust_commands(key.verifying_key(), headend)
    ek, _, kek = fleet.keys(0)
    results: list[bytes] = []

    def send(counter: int, wrap_under: SecretKey) -> None:
        plain = plain_request("key_change", None, wrap_key(wrap_under, SecretKey.generate(16)))
        envelope = sealed(fleet, key, headend, plain, counter)
        fleet.command(0, envelope, result=lambda _i, apdu: results.append(apdu))

    before = int(fleet.a["fraud_seq"][0])
    send(1, SecretKey.generate(16))  # not this meter's master key
    assert int(fleet.a["fraud_seq"][0]) == before + 1
    assert fleet.keys(0)[0] == ek  # nothing changed
    send(2, kek)  # the right master key: accepted, and no fraud entry
    assert int(fleet.a["fraud_seq"][0]) == before + 1
    assert len(results) == 2


def test_an_alarm_stays_pending_until_the_headend_acknowledges_it() -> None:
    """TAMP-3: re-sent under a fresh counter until a signed acknowledgement names it."""
    fleet = Fleet.create(1, now=NOW)
    key = SigningKey.generate()
    headend = b"MGH\x00\x00\x00\x00\x01"
    fleet.trust_commands(key.verifying_key(), headend)
    pushes: list[bytes] = []
    first = fleet.tamper(0, TamperKind.MAIN_COVER_OPEN, lambda _i, apdu: pushes.append(apdu))
    fleet.tamper(0, TamperKind.MAGNETIC_FIELD, lambda _i, apdu: pushes.append(apdu))
    assert fleet.pending_alarms(0) == [1, 2] and first == 1
    assert fleet.resend_pending(lambda _i, apdu: pushes.append(apdu)) == 2
    rx = unprotector(fleet, 0)
    counters, sequences = set(), []
    for apdu in pushes:
        ic, plain = rx.unprotect(apdu)
        counters.add(ic)
        note = decode_xdlms(plain)
        assert isinstance(note, DataNotification)
        sequences.append(note.body.items[1].value)  # type: ignore[union-attr]
    assert sequences == [1, 2, 1, 2] and len(counters) == 4  # the same alarms, fresh counters

    def acknowledge(
        counter: int, seqs: list[int], *, signer: SigningKey = key
    ) -> CommandResult | None:
        envelope = sealed(fleet, signer, headend, ack_request(seqs), counter)
        return fleet.command(0, envelope, alarm=lambda _i, _apdu: None)

    # Only the head-end's signature clears an alarm (a forged acknowledgement alarms instead).
    assert acknowledge(1, [1, 2], signer=SigningKey.generate()) is None
    assert fleet.pending_alarms(0) == [1, 2, 3]  # ...the refusal is itself a pending alarm
    result = acknowledge(2, [1, 99])
    assert result is not None and result.result == 0
    assert fleet.pending_alarms(0) == [2, 3]
    assert acknowledge(3, [2, 3]) is not None and fleet.pending_alarms(0) == []
    pushes.clear()
    assert fleet.resend_pending(lambda _i, apdu: pushes.append(apdu)) == 0 and pushes == []


def test_pending_alarms_are_bounded_and_survive_a_restart(tmp_path: Path) -> None:
    fleet = Fleet.create(1, now=NOW, path=tmp_path / FLEET_FILE)
    for _ in range(PENDING_SLOTS + 3):
        fleet.tamper(0, TamperKind.MAIN_COVER_OPEN)
    newest = list(range(4, PENDING_SLOTS + 4))
    assert fleet.pending_alarms(0) == newest  # the oldest gave way
    fleet.save()
    assert Fleet.load(tmp_path / FLEET_FILE).pending_alarms(0) == newest
