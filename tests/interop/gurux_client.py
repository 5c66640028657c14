"""A Gurux (gurux-dlms, GPLv2) DLMS client run as a SEPARATE PROCESS by the interop tests.

It is never imported by meterguard or by the test suite: the tests start it
with ``subprocess`` and read one JSON object from its stdout. It connects over
TCP (wrapper), reads the invocation counter over the public association
(Gurux's reference-reader pattern, DH-1), associates as the management client
with HLS-GMAC and authenticated encryption, reads, optionally transfers a key,
and releases.

Usage: python gurux_client.py HOST PORT EK AK KEK OPS-JSON
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import sys
import traceback

from gurux_dlms import GXByteBuffer, GXReplyData
from gurux_dlms.enums import Authentication, InterfaceType, Security
from gurux_dlms.objects import (
    GXDLMSClock,
    GXDLMSData,
    GXDLMSProfileGeneric,
    GXDLMSRegister,
    GXDLMSSecuritySetup,
)
from gurux_dlms.objects.enums import GlobalKeyType
from gurux_dlms.secure import GXDLMSSecureClient


class Reader:
    def __init__(self, client: GXDLMSSecureClient, sock: socket.socket) -> None:
        self.client = client
        self.sock = sock

    def packet(self, data: bytes | bytearray | None, reply: GXReplyData) -> None:
        if data:
            self.sock.sendall(bytes(data))
        buf = GXByteBuffer()
        while not self.client.getData(buf, reply, None):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("meter closed the connection")
            buf.set(chunk)

    def block(self, data: list[bytes] | bytes, reply: GXReplyData) -> None:
        if isinstance(data, list):
            for i, item in enumerate(data):
                if i:
                    reply.clear()
                self.block(item, reply)
            return
        self.packet(data, reply)
        while reply.isMoreData():
            self.packet(self.client.receiverReady(reply), reply)

    def read(self, obj: object, attr: int) -> object:
        reply = GXReplyData()
        self.block(self.client.read(obj, attr), reply)
        return self.client.updateValue(obj, attr, reply.value)


def connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=20)
    sock.settimeout(20)
    return sock


def public_counter(host: str, port: int) -> int:
    client = GXDLMSSecureClient(True, 16, 1, Authentication.NONE, None, InterfaceType.WRAPPER)
    with contextlib.closing(connect(host, port)) as sock:
        r = Reader(client, sock)
        reply = GXReplyData()
        r.block(client.aarqRequest(), reply)
        client.parseAareResponse(reply.data)
        ic = GXDLMSData("0.0.43.1.0.255")
        value = r.read(ic, 2)
        reply = GXReplyData()
        with contextlib.suppress(Exception):
            r.block(client.releaseRequest(), reply)
    return int(value)


def management(
    host: str, port: int, ek: bytes, ak: bytes, kek: bytes, ops: dict[str, object]
) -> dict[str, object]:
    out: dict[str, object] = {}
    client = GXDLMSSecureClient(True, 1, 1, Authentication.HIGH_GMAC, None, InterfaceType.WRAPPER)
    client.ciphering.security = Security.AUTHENTICATION_ENCRYPTION
    client.ciphering.systemTitle = bytes.fromhex("4755520000000001")
    client.ciphering.blockCipherKey = ek
    client.ciphering.authenticationKey = ak
    client.ciphering.invocationCounter = public_counter(host, port) + 1
    if "pdu" in ops:
        client.setMaxReceivePDUSize(int(ops["pdu"]))
    with contextlib.closing(connect(host, port)) as sock:
        r = Reader(client, sock)
        reply = GXReplyData()
        r.block(client.aarqRequest(), reply)
        client.parseAareResponse(reply.data)
        reply = GXReplyData()
        r.block(client.getApplicationAssociationRequest(), reply)
        client.parseApplicationAssociationResponse(reply.data)
        out["associated"] = True
        out["server_system_title"] = bytes(client.getSourceSystemTitle() or b"").hex().upper()
        clock = GXDLMSClock("0.0.1.0.0.255")
        out["clock"] = str(r.read(clock, 2))
        reg = GXDLMSRegister("1.0.1.8.0.255")
        r.read(reg, 3)
        out["scaler"] = reg.scaler
        out["unit"] = int(reg.unit)
        out["energy"] = r.read(reg, 2)
        pg = GXDLMSProfileGeneric("1.0.99.1.0.255")
        r.read(pg, 3)
        rows = r.read(pg, 2)
        out["profile_rows"] = len(rows or [])
        reply = GXReplyData()
        r.block(client.readRowsByEntry(pg, 1, 3), reply)
        out["by_entry"] = len(reply.value or [])
        if rows:
            first, last = rows[0][0], rows[min(3, len(rows) - 1)][0]
            reply = GXReplyData()
            r.block(client.readRowsByRange(pg, first, last), reply)
            out["by_range"] = len(reply.value or [])
        if "new_ek" in ops:
            setup = GXDLMSSecuritySetup("0.0.43.0.0.255")
            reply = GXReplyData()
            keys = [(GlobalKeyType.UNICAST_ENCRYPTION, bytes.fromhex(str(ops["new_ek"])))]
            r.block(setup.globalKeyTransfer(client, kek, keys), reply)
            out["key_transfer"] = "sent"
            return out  # the meter switched keys after answering: drop the transport (DH-6)
        reply = GXReplyData()
        with contextlib.suppress(Exception):
            r.block(client.releaseRequest(), reply)
        out["released"] = True
    return out


def main() -> None:
    host, port, ek, ak, kek, ops = sys.argv[1:7]
    result: dict[str, object]
    sink = (
        io.StringIO()
    )  # Gurux prints debug lines (and would print keys in some paths): swallow them
    try:
        with contextlib.redirect_stdout(sink):
            result = management(
                host,
                int(port),
                bytes.fromhex(ek),
                bytes.fromhex(ak),
                bytes.fromhex(kek),
                json.loads(ops),
            )
    except Exception as exc:  # noqa: BLE001 - any failure is reported to the test as data
        result = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-1500:]}
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
