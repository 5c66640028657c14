"""On-demand DLMS/TCP operations on one meter: reads (DH-1…3) and key rotation (DH-6, KEY-2).

:func:`read_meter` does what a head-end engineer's reader does: it opens the
public association to read the invocation counter 0.0.43.1.0.255 and uses
value + 1 (DH-1, Gurux's reference pattern; the persisted per-meter counter wins
when it is higher), opens the management association with HLS-GMAC (the meter's
f(CtoS) is verified, fail closed), optionally checks the meter's system title,
reads the requested attributes, releases, and returns plain Python values.
Errors are the typed ones of :mod:`meterguard.errors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from meterguard.cosem.axdr import Array, Data, DoubleLongUnsigned, Enum, OctetString, Structure
from meterguard.cosem.connection import (
    ActionCompleted,
    ClientConnection,
    ClientSettings,
    GetCompleted,
    SecurityMaterial,
)
from meterguard.cosem.counters import ReceiveCounter, SendCounter
from meterguard.cosem.obis import Obis
from meterguard.cosem.xdlms import (
    ActionResult,
    AttributeDescriptor,
    DataAccessResult,
    MethodDescriptor,
    SelectiveAccess,
)
from meterguard.crypto.keys import KeyId, SecretKey
from meterguard.crypto.keystore import KeyStore
from meterguard.crypto.keywrap import wrap_key
from meterguard.errors import AssociationRejectedError, MeterguardError, RemoteProtocolError
from meterguard.headend.transport.tcp import BlockingDlmsClient

__all__ = ["READINGS", "ReadRequest", "bootstrap_counter", "read_meter", "rotate_unicast_key"]

INVOCATION_COUNTER = AttributeDescriptor(1, Obis(0, 0, 43, 1, 0, 255), 2)


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One attribute to read, with an optional selective access."""

    name: str
    attribute: AttributeDescriptor
    access: SelectiveAccess | None = None


READINGS: tuple[ReadRequest, ...] = (
    ReadRequest("clock", AttributeDescriptor(8, Obis(0, 0, 1, 0, 0, 255), 2)),
    ReadRequest("active_import_wh", AttributeDescriptor(3, Obis(1, 0, 1, 8, 0, 255), 2)),
    ReadRequest("active_import_scaler_unit", AttributeDescriptor(3, Obis(1, 0, 1, 8, 0, 255), 3)),
    ReadRequest("active_export_wh", AttributeDescriptor(3, Obis(1, 0, 2, 8, 0, 255), 2)),
    ReadRequest("alarm_register", AttributeDescriptor(1, Obis(0, 0, 97, 98, 0, 255), 2)),
)


def bootstrap_counter(host: str, port: int, *, timeout: float = 10.0) -> int:
    """DH-1: read 0.0.43.1.0.255 over the public association; return the value."""
    conn = ClientConnection(ClientSettings.public())
    with BlockingDlmsClient(host, port, conn, timeout=timeout) as c:
        c.run(conn.associate)
        events = c.run(lambda: conn.get(INVOCATION_COUNTER))
        c.run(conn.release)
    result = events[0] if events else None
    if not (isinstance(result, GetCompleted) and isinstance(result.result, DoubleLongUnsigned)):
        raise RemoteProtocolError(f"meter did not return its invocation counter: {result!r}")
    return result.result.value


def read_meter(
    host: str,
    port: int,
    *,
    unicast_key: SecretKey,
    authentication_key: SecretKey,
    client_title: bytes = b"MGH\x00\x00\x00\x00\x01",
    expected_title: bytes | None = None,
    meter_counter: ReceiveCounter | None = None,
    client_counter_floor: int = 0,
    requests: Sequence[ReadRequest] = READINGS,
    timeout: float = 10.0,
) -> dict[str, Data | DataAccessResult]:
    """Associate with HLS-GMAC and read ``requests``; returns name → value (or why not)."""
    start = max(bootstrap_counter(host, port, timeout=timeout), client_counter_floor) + 1
    material = SecurityMaterial(
        system_title=client_title,
        unicast_key=unicast_key,
        authentication_key=authentication_key,
        send_counter=SendCounter(start),
        peer_counter=meter_counter if meter_counter is not None else ReceiveCounter(),
    )
    conn = ClientConnection(
        ClientSettings(expected_server_system_title=expected_title, max_receive_pdu_size=1024),
        material,
    )
    out: dict[str, Data | DataAccessResult] = {}
    with BlockingDlmsClient(host, port, conn, timeout=timeout) as c:
        c.run(conn.associate)
        for req in requests:
            events = c.run(lambda req=req: conn.get(req.attribute, req.access))  # type: ignore[misc]
            ev = events[0] if events else None
            if not isinstance(ev, GetCompleted):
                raise RemoteProtocolError(f"no answer to {req.name}: {ev!r}")
            out[req.name] = ev.result
        c.run(conn.release)
    return out


def rotate_unicast_key(
    host: str,
    port: int,
    keystore: KeyStore,
    meter_id: str,
    *,
    expected_title: bytes | None = None,
    client_title: bytes = b"MGH\x00\x00\x00\x00\x01",
    timeout: float = 10.0,
) -> int:
    """DH-6 / KEY-2: rotate a meter's unicast key with key_transfer, recoverably.

    1. The new key is stored as ``new`` next to the ``active`` one (a crash now loses nothing).
    2. Associate with the active key; key_transfer the new key wrapped (RFC 3394) under the
       master key; the meter answers with the old key and switches right after.
    3. Drop the transport, re-associate with the new key and check the old one is refused.
    4. Only then confirm: new → active, old → retired. On failure the rotation is abandoned if
       the meter still takes the old key; if neither key works both stay recorded for recovery.

    Returns the new key's version.

    Raises:
        MeterguardError: the rotation could not be confirmed (see the message).
    """
    active = keystore.active(meter_id, KeyId.GLOBAL_UNICAST)
    ak = keystore.active(meter_id, KeyId.AUTHENTICATION)
    kek = keystore.active(meter_id, KeyId.MASTER)
    new = keystore.begin_rotation(meter_id, KeyId.GLOBAL_UNICAST)
    param = Array(
        (Structure((Enum(int(KeyId.GLOBAL_UNICAST)), OctetString(wrap_key(kek, new.key)))),)
    )
    method = MethodDescriptor(64, Obis(0, 0, 43, 0, 0, 255), 2)
    start = bootstrap_counter(host, port, timeout=timeout) + 1
    material = SecurityMaterial(
        system_title=client_title,
        unicast_key=active,
        authentication_key=ak,
        send_counter=SendCounter(start),
    )
    conn = ClientConnection(ClientSettings(expected_server_system_title=expected_title), material)
    with BlockingDlmsClient(host, port, conn, timeout=timeout) as c:
        c.run(conn.associate)
        events = c.run(lambda: conn.action(method, param))
    done = events[0] if events else None
    if not (isinstance(done, ActionCompleted) and done.result is ActionResult.SUCCESS):
        keystore.abandon(meter_id, KeyId.GLOBAL_UNICAST)
        raise RemoteProtocolError(f"key_transfer refused by the meter: {done!r}")
    # The transport is dropped (the meter already switched keys; a ciphered RLRQ would fail).
    try:
        read_meter(
            host,
            port,
            unicast_key=new.key,
            authentication_key=ak,
            expected_title=expected_title,
            requests=READINGS[:1],
            timeout=timeout,
        )
    except MeterguardError:
        # Does the meter still take the old key? Then the rotation did not happen: abandon it.
        # If neither key works, both stay recorded (new and active) for recovery, and this raises.
        read_meter(
            host,
            port,
            unicast_key=active,
            authentication_key=ak,
            requests=READINGS[:1],
            timeout=timeout,
        )
        keystore.abandon(meter_id, KeyId.GLOBAL_UNICAST)
        raise
    try:
        read_meter(
            host,
            port,
            unicast_key=active,
            authentication_key=ak,
            requests=READINGS[:1],
            timeout=timeout,
        )
    except AssociationRejectedError:
        pass  # the old key is refused, as it must be
    else:
        raise RemoteProtocolError("the meter still accepts the old key after key_transfer")
    keystore.confirm(meter_id, KeyId.GLOBAL_UNICAST, new.version)
    return new.version
