"""The meter's controls, once: the COSEM objects a command acts on, for every form of the meter.

Disconnect control (class 70, 0-0:96.3.10), the limiter (class 71, 0-0:17.0.0; attribute 4
the threshold in W), the active tariff (data, class 1, 0-0:96.14.0; 1…8), the import
register (class 3, 1-0:1.8.0), security setup's key_transfer (class 64), firmware update
(image transfer, class 18, 0-0:44.0.0: initiate names a TUF target the meter pulls, activate
names the staged image's hash, FW-14) and the attestation challenge (0-128:96.99.0: a nonce
written there is answered with a signed measurement, FW-11) — built over a
small :class:`Controls` protocol that each form binds to its own state: the DLMS/TCP device
to its attributes (:mod:`meterguard.meter.device`), the compact fleet to one row of its
arrays (:mod:`meterguard.meter.fleet`). A signed command that the fleet verified is then
executed through the same object model, with the same access rights and the same result
codes, as a request over a DLMS association to the device. No IO.
"""

from __future__ import annotations

from typing import Protocol

from meterguard.cosem.acse import Mechanism
from meterguard.cosem.axdr import (
    Array,
    Boolean,
    Data,
    DoubleLongUnsigned,
    Enum,
    Integer,
    OctetString,
    Structure,
    Unsigned,
)
from meterguard.cosem.command import (
    ATTESTATION,
    DISCONNECT_CONTROL,
    IMAGE_TRANSFER,
    LIMITER,
    TARIFF,
)
from meterguard.cosem.obis import Obis
from meterguard.cosem.server_app import RequestContext
from meterguard.cosem.xdlms import (
    ActionRequestNormal,
    ActionResult,
    ActionReturn,
    DataAccessResult,
    GetRequestNormal,
    GetResult,
    SetRequestNormal,
    XdlmsApdu,
)
from meterguard.meter.model import CosemModel, Rights
from meterguard.meter.objects import (
    CosemObject,
    DataObject,
    DisconnectControl,
    Register,
    SecuritySetup,
)
from meterguard.meter.rules import MANAGEMENT, OBIS

__all__ = [
    "ATTESTATION",
    "MANAGEMENT",
    "Controls",
    "Firmware",
    "FirmwareUpdate",
    "Limiter",
    "add_controls",
    "command_model",
    "execute",
]


TARIFFS = range(1, 9)


class Controls(Protocol):
    """One meter's controllable state."""

    def connected(self) -> bool:
        """Is the relay closed?"""

    def switch(self, connect: bool) -> None:
        """Close (``True``) or open the relay."""

    def limit_w(self) -> int:
        """The limiter's threshold in W (0: no limit)."""

    def set_limit_w(self, watts: int) -> None:
        """Set the limiter's threshold."""

    def tariff(self) -> int:
        """The active tariff register (1…8)."""

    def set_tariff(self, tariff: int) -> None:
        """Switch the active tariff."""


class Limiter(CosemObject):
    """Limiter (class 71): monitored value (active power), threshold (attributes 3 and 4)."""

    CLASS_ID = 71
    ATTRIBUTES = (1, 2, 3, 4)

    def __init__(self, obis: Obis, controls: Controls) -> None:
        super().__init__(obis)
        self._controls = controls

    def _get(self, attribute: int) -> GetResult:
        if attribute == 2:  # monitored value: the import power register's value attribute
            return Structure((Unsigned(3), OctetString(OBIS.POWER_IMPORT.to_bytes()), Integer(2)))
        return DoubleLongUnsigned(self._controls.limit_w())

    def set(self, attribute: int, value: Data) -> DataAccessResult:
        """Attribute 4: the threshold in W."""
        if attribute != 4:
            return super().set(attribute, value)
        if not isinstance(value, DoubleLongUnsigned):
            return DataAccessResult.TYPE_UNMATCHED
        self._controls.set_limit_w(value.value)
        return DataAccessResult.SUCCESS


class Firmware(Protocol):
    """One meter's firmware, as a command reaches it (:mod:`meterguard.meter.firmware`)."""

    def download(self, name: str) -> ActionResult:
        """Pull, verify and stage the TUF target ``name``."""

    def activate(self, sha256: bytes) -> ActionResult:
        """Activate the staged image with this hash (trial boot, health check, confirm)."""

    def attest(self, nonce: bytes) -> DataAccessResult:
        """Answer ``nonce`` with a signed measurement."""

    def staged(self) -> tuple[int, bytes, bytes] | None:
        """The staged image: (size, name, SHA-256), if any."""


class FirmwareUpdate(CosemObject):
    """Image transfer (class 18) over the TUF update channel (ADR 13).

    Method 1 (image_transfer_initiate) takes ``(identifier, size)``: the identifier is the
    TUF target name, which the meter pulls and verifies itself — no blocks travel in the
    command. Method 4 (image_activate) takes the 32-byte SHA-256 of the staged image (FW-14:
    the activation names the image). Attribute 7 is image_to_activate_info. Methods 2 and 3
    (blocks, verify) are the DLMS/TCP device's and are not served here.
    """

    CLASS_ID = 18
    ATTRIBUTES = (1, 2, 5, 6, 7)
    METHODS = (1, 4)

    def __init__(self, obis: Obis, firmware: Firmware) -> None:
        super().__init__(obis)
        self._firmware = firmware

    def _get(self, attribute: int) -> GetResult:
        staged = self._firmware.staged()
        if attribute == 2:
            return DoubleLongUnsigned(0)
        if attribute == 5:
            return Boolean(True)
        if attribute == 6:
            return Enum(6 if staged is not None else 0)  # 6: activation ready, 0: not initiated
        if staged is None:
            return Array(())
        size, name, digest = staged
        return Array(
            (Structure((DoubleLongUnsigned(size), OctetString(name), OctetString(digest))),)
        )

    def invoke(self, method: int, parameters: Data | None) -> ActionReturn:
        """1 initiate(identifier, size) → pull and stage; 4 activate(image hash)."""
        if method == 1:
            if not (isinstance(parameters, Structure) and len(parameters.items) == 2):
                return ActionReturn(ActionResult.TYPE_UNMATCHED)
            ident = parameters.items[0]
            if not isinstance(ident, OctetString) or not 0 < len(ident.value) <= 128:
                return ActionReturn(ActionResult.TYPE_UNMATCHED)
            try:
                name = ident.value.decode("ascii")
            except UnicodeDecodeError:
                return ActionReturn(ActionResult.TYPE_UNMATCHED)
            return ActionReturn(self._firmware.download(name))
        if method == 4:
            if not isinstance(parameters, OctetString) or len(parameters.value) != 32:
                return ActionReturn(ActionResult.TYPE_UNMATCHED)
            return ActionReturn(self._firmware.activate(parameters.value))
        return super().invoke(method, parameters)


def _attestation_object(firmware: Firmware) -> DataObject:
    def challenge(value: Data) -> DataAccessResult:
        if not isinstance(value, OctetString) or not 16 <= len(value.value) <= 64:
            return DataAccessResult.TYPE_UNMATCHED
        return firmware.attest(value.value)

    return DataObject(ATTESTATION, lambda: OctetString(b""), challenge)


def _tariff_object(controls: Controls) -> DataObject:
    def set_tariff(value: Data) -> DataAccessResult:
        if not isinstance(value, Unsigned) or value.value not in TARIFFS:
            return DataAccessResult.TYPE_UNMATCHED
        controls.set_tariff(value.value)
        return DataAccessResult.SUCCESS

    return DataObject(TARIFF, lambda: Unsigned(controls.tariff()), set_tariff)


def add_controls(model: CosemModel, controls: Controls) -> None:
    """Add disconnect control, the limiter and the tariff to ``model`` (management only)."""
    dc = DisconnectControl(DISCONNECT_CONTROL, controls.connected, controls.switch)
    model.add(dc, {MANAGEMENT: Rights(read=frozenset(dc.ATTRIBUTES), methods=frozenset({1, 2}))})
    limiter = Limiter(LIMITER, controls)
    model.add(
        limiter, {MANAGEMENT: Rights(read=frozenset(limiter.ATTRIBUTES), write=frozenset({4}))}
    )
    tariff = _tariff_object(controls)
    model.add(tariff, {MANAGEMENT: Rights(read=frozenset({1, 2}), write=frozenset({2}))})


def command_model(
    controls: Controls,
    *,
    import_wh: Register,
    security: SecuritySetup,
    acknowledgement: DataObject | None = None,
    firmware: Firmware | None = None,
) -> CosemModel:
    """The objects a signed command may reach.

    The controls, the import register, key_transfer, the alarm acknowledgement (TAMP-3)
    where the meter keeps alarms pending, and firmware update and attestation where the meter
    has a firmware agent.
    """
    model = CosemModel()
    add_controls(model, controls)
    model.add(import_wh, {MANAGEMENT: Rights.read_only(import_wh)})
    model.add(security, {MANAGEMENT: Rights(read=frozenset({1}), methods=frozenset({2}))})
    if acknowledgement is not None:
        model.add(
            acknowledgement, {MANAGEMENT: Rights(read=frozenset({1, 2}), write=frozenset({2}))}
        )
    if firmware is not None:
        update = FirmwareUpdate(IMAGE_TRANSFER, firmware)
        model.add(
            update,
            {MANAGEMENT: Rights(read=frozenset(update.ATTRIBUTES), methods=frozenset({1, 4}))},
        )
        attestation = _attestation_object(firmware)
        model.add(attestation, {MANAGEMENT: Rights(read=frozenset({1}), write=frozenset({2}))})
    return model


def execute(model: CosemModel, request: XdlmsApdu) -> tuple[int, Data | None]:
    """Apply a verified GET, SET or ACTION through ``model``: (DLMS result code, value read).

    The request arrives signed and ciphered (API-10), so it acts as the management
    association would after HLS.
    """
    ctx = RequestContext(
        client_sap=MANAGEMENT, mechanism=Mechanism.HLS_GMAC, authenticated=True, protection=None
    )
    if isinstance(request, GetRequestNormal):
        got = model.get(ctx, request.attribute)
        if isinstance(got, DataAccessResult):
            return int(got), None
        return int(DataAccessResult.SUCCESS), got
    if isinstance(request, SetRequestNormal):
        return int(model.set(ctx, request.attribute, request.value)), None
    if isinstance(request, ActionRequestNormal):
        ret = model.action(ctx, request.method, request.parameters)
        for action in ctx.deferred:
            action()
        return int(ret.result), None
    return int(ActionResult.READ_WRITE_DENIED), None
