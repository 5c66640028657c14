"""An in-memory meter and head-end pair: both sans-IO connections joined by a byte pipe.

The pipe carries real wrapper frames, split at arbitrary points, so every test
also exercises framing. ``tap`` sees every APDU in both directions and may
replace it (tampering, replay).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from meterguard.cosem.acse import ApplicationContext, Mechanism
from meterguard.cosem.axdr import (
    Array,
    Data,
    DoubleLongUnsigned,
    Integer,
    LongUnsigned,
    OctetString,
    Structure,
)
from meterguard.cosem.connection import (
    AssociationPolicy,
    ClientConnection,
    ClientSettings,
    Event,
    RequestContext,
    SecurityMaterial,
    ServerConnection,
    ServerSettings,
)
from meterguard.cosem.cosemtime import CosemDateTime
from meterguard.cosem.counters import ReceiveCounter, SendCounter
from meterguard.cosem.obis import Obis
from meterguard.cosem.wrapper import WrapperDecoder, WrapperFrame
from meterguard.cosem.xdlms import (
    ActionResult,
    ActionReturn,
    AttributeWithSelection,
    DataAccessResult,
    GetResult,
    MethodDescriptor,
)
from meterguard.crypto.keys import SecretKey
from tests.conftest import AK_HEX, EK_HEX

METER_TITLE = bytes.fromhex("4D4D4D0000BC614E")
HEADEND_TITLE = bytes.fromhex("4D4D4D0000000001")
CLOCK = Obis(0, 0, 1, 0, 0, 255)
ENERGY = Obis(1, 0, 1, 8, 0, 255)
PROFILE = Obis(1, 0, 99, 1, 0, 255)
DISCONNECT = Obis(0, 0, 96, 3, 10, 255)


@dataclass
class MiniMeter:
    """A tiny object model: clock, one register, a 600-entry profile, a writable value, a method."""

    writes: list[tuple[AttributeWithSelection, Data]] = field(default_factory=list)
    actions: list[tuple[MethodDescriptor, Data | None]] = field(default_factory=list)
    contexts: list[RequestContext] = field(default_factory=list)

    def get(self, ctx: RequestContext, attribute: AttributeWithSelection) -> GetResult:
        self.contexts.append(ctx)
        d = attribute.descriptor
        if ctx.client_sap == 16 and d.instance != CLOCK:
            return DataAccessResult.READ_WRITE_DENIED
        if d.instance == CLOCK and d.attribute == 2:
            return OctetString(bytes.fromhex("07EA0B18FF12041800000000"))
        if d.instance == ENERGY and d.attribute == 2:
            return DoubleLongUnsigned(123456)
        if d.instance == ENERGY and d.attribute == 3:
            return Structure((Integer(0), LongUnsigned(30)))
        if d.instance == PROFILE and d.attribute == 2:
            stamp = CosemDateTime.from_bytes(
                bytes.fromhex("07E80101FF000000000000 00".replace(" ", ""))
            ).to_bytes()
            return Array(
                tuple(Structure((OctetString(stamp), DoubleLongUnsigned(i))) for i in range(600))
            )
        return DataAccessResult.OBJECT_UNDEFINED

    def set(
        self, ctx: RequestContext, attribute: AttributeWithSelection, value: Data
    ) -> DataAccessResult:
        self.contexts.append(ctx)
        self.writes.append((attribute, value))
        return DataAccessResult.SUCCESS

    def action(
        self, ctx: RequestContext, method: MethodDescriptor, parameters: Data | None
    ) -> ActionReturn:
        self.contexts.append(ctx)
        self.actions.append((method, parameters))
        return ActionReturn(ActionResult.SUCCESS)


def keys() -> tuple[SecretKey, SecretKey]:
    return SecretKey.from_hex(EK_HEX), SecretKey.from_hex(AK_HEX)


def meter_material(**kw: object) -> SecurityMaterial:
    ek, ak = keys()
    args: dict[str, object] = {
        "system_title": METER_TITLE,
        "unicast_key": ek,
        "authentication_key": ak,
    }
    args.update(kw)
    return SecurityMaterial(**args)  # type: ignore[arg-type]


def headend_material(**kw: object) -> SecurityMaterial:
    ek, ak = keys()
    args: dict[str, object] = {
        "system_title": HEADEND_TITLE,
        "unicast_key": ek,
        "authentication_key": ak,
    }
    args.update(kw)
    return SecurityMaterial(**args)  # type: ignore[arg-type]


def server(
    material: SecurityMaterial | None = None,
    *,
    mechanism: Mechanism = Mechanism.HLS_GMAC,
    max_pdu: int = 1024,
    app: MiniMeter | None = None,
) -> ServerConnection:
    policy = AssociationPolicy(
        application_context=ApplicationContext.LN_CIPHERED,
        mechanism=mechanism,
        security=material or meter_material(),
    )
    return ServerConnection(
        ServerSettings(
            system_title=METER_TITLE,
            associations={1: policy, 16: AssociationPolicy()},
            max_receive_pdu_size=max_pdu,
        ),
        app or MiniMeter(),
    )


Tap = Callable[[str, bytes], bytes | None]


@dataclass
class Link:
    """Pumps APDUs between a client and a server through wrapper framing."""

    client: ClientConnection
    server: ServerConnection
    tap: Tap | None = None
    split: int = 7
    log: list[tuple[str, bytes]] = field(default_factory=list)
    server_errors: list[Exception] = field(default_factory=list)

    def _carry(self, apdu: bytes, direction: str, src: int, dst: int) -> list[WrapperFrame]:
        self.log.append((direction, apdu))
        if self.tap is not None:
            replaced = self.tap(direction, apdu)
            if replaced is None:
                return []
            apdu = replaced
        raw = WrapperFrame(src, dst, apdu).to_bytes()
        decoder = WrapperDecoder()
        frames: list[WrapperFrame] = []
        for i in range(0, len(raw), self.split):  # deliver in small TCP-like segments
            frames += decoder.feed(raw[i : i + self.split])
        return frames

    def pump(self, *, raise_server: bool = True) -> list[Event]:
        events: list[Event] = []
        sap = self.client.settings.client_sap
        for _ in range(10_000):
            out = self.client.outgoing()
            if not out:
                return events
            for apdu in out:
                for frame in self._carry(apdu, "C->S", sap, 1):
                    try:
                        self.server.receive(frame.apdu, client_sap=frame.source_wport)
                    except Exception as exc:
                        self.server_errors.append(exc)
                        for reply in self.server.outgoing():
                            self._deliver(reply, events)
                        if raise_server:
                            raise
                        continue
                    for reply in self.server.outgoing():
                        self._deliver(reply, events)
        raise AssertionError("the connections never went quiet")

    def _deliver(self, reply: bytes, events: list[Event]) -> None:
        for frame in self._carry(reply, "S->C", 1, self.client.settings.client_sap):
            events += self.client.receive(frame.apdu)


def pair(
    *,
    client_settings: ClientSettings | None = None,
    client_material: SecurityMaterial | None = None,
    srv: ServerConnection | None = None,
    tap: Tap | None = None,
) -> Link:
    settings = client_settings or ClientSettings(expected_server_system_title=METER_TITLE)
    material = client_material if client_material is not None else headend_material()
    return Link(ClientConnection(settings, material), srv or server(), tap)


__all__ = ["ReceiveCounter", "SendCounter"]
