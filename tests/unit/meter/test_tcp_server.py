"""DM-1 over real TCP: wrapper framing in arbitrary segments, unknown wPorts, garbage, limits."""

from __future__ import annotations

import asyncio

from meterguard.cosem.apdu import decode_apdu
from meterguard.cosem.connection import (
    AssociationEstablished,
    ClientConnection,
    ClientSettings,
    GetCompleted,
)
from meterguard.cosem.obis import Obis
from meterguard.cosem.wrapper import WrapperDecoder, WrapperFrame
from meterguard.cosem.xdlms import AttributeDescriptor
from meterguard.meter.transport.tcp import DlmsTcpServer
from tests.unit.meter.conftest import Bench

CLOCK = AttributeDescriptor(8, Obis(0, 0, 1, 0, 0, 255), 2)


async def _exchange(
    port: int, frames: list[bytes], *, segment: int = 3, expect: int = 1
) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    stream = b"".join(frames)
    for i in range(0, len(stream), segment):  # split into tiny TCP writes
        writer.write(stream[i : i + segment])
        await writer.drain()
    decoder = WrapperDecoder()
    got: list[bytes] = []
    try:
        while len(got) < expect:
            chunk = await asyncio.wait_for(reader.read(65536), 2.0)
            if not chunk:
                break
            got += [f.apdu for f in decoder.feed(chunk)]
    except TimeoutError:
        pass
    writer.close()
    return got


def test_public_read_over_tcp_with_split_and_merged_segments(bench: Bench) -> None:
    async def run() -> None:
        server = DlmsTcpServer(bench.meter, port=0)
        _, port = await server.start()
        try:
            client = ClientConnection(ClientSettings.public())
            client.associate()
            aarq = client.outgoing()[0]
            # AARQ and a GET sent merged in one stream, cut into 3-byte segments.
            [aare] = await _exchange(port, [WrapperFrame(16, 1, aarq).to_bytes()])
            [ev] = client.receive(aare)
            assert isinstance(ev, AssociationEstablished)
            client.get(CLOCK)
            get = client.outgoing()[0]
            replies = await _exchange(
                port,
                [WrapperFrame(16, 1, aarq).to_bytes(), WrapperFrame(16, 1, get).to_bytes()],
                expect=2,
            )
            assert len(replies) == 2
            assert isinstance(client.receive(replies[1])[0], GetCompleted)
        finally:
            await server.close()

    asyncio.run(run())


def test_unknown_destination_wport_reaches_no_association(bench: Bench) -> None:
    async def run() -> None:
        server = DlmsTcpServer(bench.meter, port=0)
        _, port = await server.start()
        try:
            client = ClientConnection(ClientSettings.public())
            client.associate()
            aarq = client.outgoing()[0]
            assert await _exchange(port, [WrapperFrame(16, 7, aarq).to_bytes()]) == []
            [aare] = await _exchange(port, [WrapperFrame(16, 1, aarq).to_bytes()])
            assert decode_apdu(aare).result == 0  # type: ignore[union-attr]
        finally:
            await server.close()

    asyncio.run(run())


def test_garbage_closes_only_that_connection(bench: Bench) -> None:
    async def run() -> None:
        server = DlmsTcpServer(bench.meter, port=0)
        _, port = await server.start()
        try:
            assert (
                await _exchange(port, [b"\x00\x02\x00\x10\x00\x01\x00\x01\x60"]) == []
            )  # wrong version
            assert (
                await _exchange(port, [WrapperFrame(16, 1, b"\xee\x00").to_bytes()]) == []
            )  # unknown APDU
            client = ClientConnection(ClientSettings.public())
            client.associate()
            [aare] = await _exchange(port, [WrapperFrame(16, 1, client.outgoing()[0]).to_bytes()])
            assert isinstance(client.receive(aare)[0], AssociationEstablished)
        finally:
            await server.close()

    asyncio.run(run())


def test_security_event_is_recorded(bench: Bench) -> None:
    async def run() -> None:
        server = DlmsTcpServer(bench.meter, port=0)
        _, port = await server.start()
        try:
            s = bench.client(ek=None)
            s.client.associate()
            aarq = bytearray(s.client.outgoing()[0])
            aarq[-1] ^= 1  # tamper with the ciphered InitiateRequest's tag
            [aare] = await _exchange(port, [WrapperFrame(1, 1, bytes(aarq)).to_bytes()])
            assert decode_apdu(aare).result != 0  # type: ignore[union-attr]
            assert server.security_events == 1
        finally:
            await server.close()

    asyncio.run(run())
    assert bench.meter.alarm_register & (1 << 8)
