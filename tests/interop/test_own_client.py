"""Our own sans-IO client, over real TCP, reads a `meterguard meter serve` process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from meterguard.cosem.axdr import Array, DoubleLongUnsigned, Enum, Integer, OctetString, Structure
from meterguard.cosem.connection import (
    AssociationEstablished,
    AssociationReleased,
    ClientConnection,
    ClientSettings,
    GetCompleted,
    SecurityMaterial,
)
from meterguard.cosem.counters import ReceiveCounter, SendCounter
from meterguard.cosem.obis import Obis
from meterguard.cosem.xdlms import AttributeDescriptor, EntryDescriptor
from meterguard.crypto.keys import SecretKey
from meterguard.errors import AssociationRejectedError, UnexpectedSystemTitleError
from meterguard.headend.reader import read_meter
from meterguard.headend.transport.tcp import BlockingDlmsClient
from tests.conftest import AK_HEX, EK_HEX
from tests.interop.conftest import MeterProcess

pytestmark = pytest.mark.interop
METER_TITLE = bytes.fromhex("4D47440000000001")


def counter(port: int) -> int:
    conn = ClientConnection(ClientSettings.public())
    with BlockingDlmsClient("127.0.0.1", port, conn) as c:
        c.run(conn.associate)
        [ev] = c.run(lambda: conn.get(AttributeDescriptor(1, Obis(0, 0, 43, 1, 0, 255), 2)))
        c.run(conn.release)
    assert isinstance(ev, GetCompleted) and isinstance(ev.result, DoubleLongUnsigned)
    return ev.result.value


def management(port: int, ek: str = EK_HEX) -> ClientConnection:
    material = SecurityMaterial(
        system_title=b"OWN\x00\x00\x00\x00\x01",
        unicast_key=SecretKey.from_hex(ek),
        authentication_key=SecretKey.from_hex(AK_HEX),
        send_counter=SendCounter(counter(port) + 1),
    )
    return ClientConnection(
        ClientSettings(expected_server_system_title=METER_TITLE, max_receive_pdu_size=512), material
    )


def test_own_client_reads_the_meter(meter: MeterProcess) -> None:
    conn = management(meter.port)
    with BlockingDlmsClient("127.0.0.1", meter.port, conn) as c:
        [ev] = c.run(conn.associate)
        assert isinstance(ev, AssociationEstablished) and ev.peer_system_title == METER_TITLE
        [ev] = c.run(lambda: conn.get(AttributeDescriptor(3, Obis(1, 0, 1, 8, 0, 255), 3)))
        assert isinstance(ev, GetCompleted) and ev.result == Structure((Integer(0), Enum(30)))
        [ev] = c.run(lambda: conn.get(AttributeDescriptor(7, Obis(1, 0, 99, 1, 0, 255), 2)))
        assert (
            isinstance(ev, GetCompleted)
            and isinstance(ev.result, Array)
            and len(ev.result.items) == 960
        )
        [ev] = c.run(
            lambda: conn.get(
                AttributeDescriptor(7, Obis(1, 0, 99, 1, 0, 255), 2),
                EntryDescriptor(1, 5).to_access(),
            )
        )
        assert (
            isinstance(ev, GetCompleted)
            and isinstance(ev.result, Array)
            and len(ev.result.items) == 5
        )
        [ev] = c.run(conn.release)
        assert isinstance(ev, AssociationReleased)


def test_own_client_with_wrong_key_is_rejected(meter: MeterProcess) -> None:
    conn = management(meter.port, ek="00" * 16)
    with (
        BlockingDlmsClient("127.0.0.1", meter.port, conn) as c,
        pytest.raises(AssociationRejectedError),
    ):
        c.run(conn.associate)


def test_on_demand_read_with_counter_bootstrap(meter: MeterProcess) -> None:
    keys = {
        "unicast_key": SecretKey.from_hex(EK_HEX),
        "authentication_key": SecretKey.from_hex(AK_HEX),
    }
    first = read_meter("127.0.0.1", meter.port, expected_title=METER_TITLE, **keys)
    assert isinstance(first["clock"], OctetString)
    assert first["active_import_scaler_unit"] == Structure((Integer(0), Enum(30)))
    # A second read bootstraps its counter again (DH-1) and is accepted; the meter's counter grows.
    meter_counter = ReceiveCounter()
    second = read_meter("127.0.0.1", meter.port, meter_counter=meter_counter, **keys)
    assert isinstance(second["active_import_wh"], DoubleLongUnsigned)
    assert meter_counter.last is not None
    with pytest.raises(UnexpectedSystemTitleError):
        read_meter("127.0.0.1", meter.port, expected_title=b"MGD\x00\x00\x00\x00\x99", **keys)


def test_read_cli(meter: MeterProcess) -> None:
    env = {**os.environ, "MG_EK": EK_HEX, "MG_AK": AK_HEX}
    res = subprocess.run(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "meterguard",
            "read",
            f"127.0.0.1:{meter.port}",
            "--system-title",
            METER_TITLE.hex(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    assert "active_import_scaler_unit: structure[2] Integer 0 Enum 30" in res.stdout
    assert EK_HEX not in res.stdout.upper() + res.stderr.upper()
