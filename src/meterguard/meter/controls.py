"""The meter's controls, once: the COSEM objects a command acts on, for every form of the meter.

Disconnect control (class 70, 0-0:96.3.10), the limiter (class 71, 0-0:17.0.0; attribute 4
the threshold in W), the active tariff (data, class 1, 0-0:96.14.0; 1…8), the import
register (class 3, 1-0:1.8.0) and security setup's key_transfer (class 64) — built over a
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
    Data,
    DoubleLongUnsigned,
    Integer,
    OctetString,
    Structure,
    Unsigned,
)
from meterguard.cosem.command import DISCONNECT_CONTROL, LIMITER, TARIFF
from meterguard.cosem.obis import Obis
from meterguard.cosem.server_app import RequestContext
from meterguard.cosem.xdlms import (
    ActionRequestNormal,
    ActionResult,
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

__all__ = ["MANAGEMENT", "Controls", "Limiter", "add_controls", "command_model", "execute"]

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
) -> CosemModel:
    """The objects a signed command may reach.

    The controls, the import register, key_transfer, and the alarm acknowledgement (TAMP-3)
    where the meter keeps alarms pending.
    """
    model = CosemModel()
    add_controls(model, controls)
    model.add(import_wh, {MANAGEMENT: Rights.read_only(import_wh)})
    model.add(security, {MANAGEMENT: Rights(read=frozenset({1}), methods=frozenset({2}))})
    if acknowledgement is not None:
        model.add(
            acknowledgement, {MANAGEMENT: Rights(read=frozenset({1, 2}), write=frozenset({2}))}
        )
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
