"""Our own sans-IO client, over real TCP, reads a `meterguard meter serve` process."""

from __future__ import annotations

import pytest

from meterguard.cosem.axdr import Array, DoubleLongUnsigned, Enum, Integer, Structure
from meterguard.cosem.connection import (
    AssociationEstablished,
    AssociationReleased,
    ClientConnection,
    ClientSettings,
    GetCompleted,
    SecurityMaterial,
)
from meterguard.cosem.counters import SendCounter
from meterguard.cosem.obis import Obis
from meterguard.cosem.xdlms import AttributeDescriptor, EntryDescriptor
from meterguard.crypto.keys import SecretKey
from meterguard.errors import AssociationRejectedError
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
