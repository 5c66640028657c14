"""DH-6 / KEY-2: rotate a served meter's unicast key from the key store, recoverably."""

from __future__ import annotations

from pathlib import Path

import pytest

from meterguard.cosem.axdr import Array, Enum, OctetString, Structure
from meterguard.cosem.connection import (
    ActionCompleted,
    ClientConnection,
    ClientSettings,
    SecurityMaterial,
)
from meterguard.cosem.counters import SendCounter
from meterguard.cosem.obis import Obis
from meterguard.cosem.xdlms import MethodDescriptor
from meterguard.crypto.keys import KeyId, SecretKey
from meterguard.crypto.keystore import KeyState, KeyStore, LocalKek
from meterguard.crypto.keywrap import wrap_key
from meterguard.errors import AssociationRejectedError
from meterguard.headend.reader import READINGS, bootstrap_counter, read_meter, rotate_unicast_key
from meterguard.headend.transport.tcp import BlockingDlmsClient
from tests.conftest import AK_HEX, EK_HEX
from tests.interop.conftest import KEK_HEX, MeterProcess, start_meter

pytestmark = pytest.mark.interop
METER = "MGD0000000001"


def keystore(tmp_path: Path) -> KeyStore:
    ks = KeyStore(tmp_path / "keys.db", LocalKek(SecretKey.generate(32)))
    for kind, hexkey in (
        (KeyId.GLOBAL_UNICAST, EK_HEX),
        (KeyId.AUTHENTICATION, AK_HEX),
        (KeyId.MASTER, KEK_HEX),
    ):
        ks.import_active(METER, kind, SecretKey.from_hex(hexkey))
    return ks


def test_rotation_confirms_and_survives_a_meter_restart(
    meter: MeterProcess, tmp_path: Path
) -> None:
    ks = keystore(tmp_path)
    version = rotate_unicast_key(
        "127.0.0.1", meter.port, ks, METER, expected_title=bytes.fromhex("4D47440000000001")
    )
    new = ks.active(METER, KeyId.GLOBAL_UNICAST)
    assert version == 2 and new != SecretKey.from_hex(EK_HEX)
    assert [c.state for c in ks.candidates(METER, KeyId.GLOBAL_UNICAST)] == [KeyState.ACTIVE]
    ak = SecretKey.from_hex(AK_HEX)
    with pytest.raises(AssociationRejectedError):
        read_meter(
            "127.0.0.1",
            meter.port,
            unicast_key=SecretKey.from_hex(EK_HEX),
            authentication_key=ak,
            requests=READINGS[:1],
        )
    meter.stop()
    again = start_meter(meter.state)  # the meter kept the new key in its state
    try:
        assert read_meter(
            "127.0.0.1", again.port, unicast_key=new, authentication_key=ak, requests=READINGS[:1]
        )
    finally:
        again.stop()


def test_interrupted_rotation_is_recovered_from_the_candidates(
    meter: MeterProcess, tmp_path: Path
) -> None:
    ks = keystore(tmp_path)
    ak = SecretKey.from_hex(AK_HEX)
    # The head-end stores the new key, sends key_transfer... and crashes before confirming.
    new = ks.begin_rotation(METER, KeyId.GLOBAL_UNICAST)
    wrapped = wrap_key(SecretKey.from_hex(KEK_HEX), new.key)
    conn = ClientConnection(
        ClientSettings(),
        SecurityMaterial(
            system_title=b"MGH\x00\x00\x00\x00\x02",
            unicast_key=SecretKey.from_hex(EK_HEX),
            authentication_key=ak,
            send_counter=SendCounter(bootstrap_counter("127.0.0.1", meter.port) + 1),
        ),
    )
    with BlockingDlmsClient("127.0.0.1", meter.port, conn) as c:
        c.run(conn.associate)
        [done] = c.run(
            lambda: conn.action(
                MethodDescriptor(64, Obis(0, 0, 43, 0, 0, 255), 2),
                Array((Structure((Enum(0), OctetString(wrapped))),)),
            )
        )
    assert isinstance(done, ActionCompleted)
    # Recovery after the restart: both keys are candidates; exactly the new one works.
    cands = KeyStore(tmp_path / "keys.db", ks.kek).candidates(METER, KeyId.GLOBAL_UNICAST)
    assert [c.state for c in cands] == [KeyState.NEW, KeyState.ACTIVE]
    working = [c for c in cands if _works(meter.port, c.key, ak)]
    assert [c.version for c in working] == [new.version]
    ks.confirm(METER, KeyId.GLOBAL_UNICAST, new.version)
    assert ks.active(METER, KeyId.GLOBAL_UNICAST) == new.key


def _works(port: int, key: SecretKey, ak: SecretKey) -> bool:
    try:
        read_meter("127.0.0.1", port, unicast_key=key, authentication_key=ak, requests=READINGS[:1])
    except AssociationRejectedError:
        return False
    return True
