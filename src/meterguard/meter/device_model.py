"""The DLMS/TCP device's COSEM object model: which objects it serves, to whom, with what rights.

Clock, logical device name, the invocation counter (public association); registers,
instantaneous values, the load and daily profiles, the log books, the controls shared with
the fleet (:mod:`meterguard.meter.controls`), security setup and image transfer (management
association, HLS-GMAC). Built over a :class:`~meterguard.meter.device.Meter`'s state; no IO.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from meterguard.cosem.acse import ApplicationContext, Mechanism
from meterguard.cosem.axdr import (
    Data,
    DoubleLongUnsigned,
    LongUnsigned,
    OctetString,
    Unsigned,
)
from meterguard.cosem.cosemtime import CosemDateTime
from meterguard.cosem.obis import Obis
from meterguard.cosem.xdlms import (
    CaptureObject,
)
from meterguard.meter.controls import add_controls
from meterguard.meter.model import CosemModel, Rights
from meterguard.meter.objects import (
    AssociationLN,
    ClockObject,
    DataObject,
    ImageTransfer,
    ProfileGeneric,
    Register,
    SecuritySetup,
)
from meterguard.meter.rules import (
    DAILY_PROFILE_DAYS,
    LOAD_PROFILE_DAYS,
    LOAD_PROFILE_PERIOD,
    LOG_BOOKS,
    MANAGEMENT,
    OBIS,
    PUBLIC,
)

if TYPE_CHECKING:
    from meterguard.meter.device import Meter


__all__ = ["build_model"]


def build_model(self: Meter) -> CosemModel:
    """The device's COSEM object model: every object, with its rights per association."""
    model = CosemModel(on_action=self._after_action)
    read_all = Rights.read_only
    pub_read = Rights(read=frozenset({1, 2}))

    clock = ClockObject(
        OBIS.CLOCK, lambda: CosemDateTime.from_datetime(self.now()), self._adjust_clock
    )
    model.add(
        clock,
        {
            PUBLIC: pub_read,
            MANAGEMENT: Rights(read=frozenset(clock.ATTRIBUTES), write=frozenset({2})),
        },
    )
    ldn = DataObject(
        OBIS.LOGICAL_DEVICE_NAME,
        lambda: OctetString(f"MGD{self.identity.serial}".encode()[:16]),
    )
    model.add(ldn, {PUBLIC: pub_read, MANAGEMENT: read_all(ldn)})
    ic = DataObject(
        OBIS.INVOCATION_COUNTER,
        lambda: DoubleLongUnsigned(self.material.peer_counter.last or 0),
    )
    model.add(ic, {PUBLIC: pub_read, MANAGEMENT: read_all(ic)})
    for obis, value in (
        (OBIS.SERIAL, lambda: OctetString(self.identity.serial.encode())),
        (OBIS.STATUS, lambda: Unsigned(0 if self.connected else 1)),
    ):
        obj = DataObject(obis, value)
        model.add(obj, {MANAGEMENT: read_all(obj)})
    alarm = DataObject(
        OBIS.ALARM_REGISTER, lambda: DoubleLongUnsigned(self.alarm_register), self._clear_alarms
    )
    model.add(alarm, {MANAGEMENT: Rights(read=frozenset({1, 2}), write=frozenset({2}))})

    def reg(obis: Obis, value: Callable[[], Data], scaler: int, unit: int) -> None:
        r = Register(obis, value, scaler=scaler, unit=unit)
        model.add(r, {MANAGEMENT: read_all(r)})

    reg(
        OBIS.ACTIVE_IMPORT,
        lambda: DoubleLongUnsigned(int(self.registers_at(self.now())[0]) & 0xFFFFFFFF),
        0,
        30,
    )
    reg(
        OBIS.ACTIVE_EXPORT,
        lambda: DoubleLongUnsigned(int(self.registers_at(self.now())[1]) & 0xFFFFFFFF),
        0,
        30,
    )
    reg(
        OBIS.REACTIVE_IMPORT,
        lambda: DoubleLongUnsigned(int(self.registers_at(self.now())[0] * 0.25) & 0xFFFFFFFF),
        0,
        32,
    )
    reg(OBIS.REACTIVE_EXPORT, lambda: DoubleLongUnsigned(0), 0, 32)
    reg(OBIS.POWER_IMPORT, lambda: DoubleLongUnsigned(int(self._power_w())), 0, 27)
    reg(OBIS.VOLTAGE_L1, lambda: LongUnsigned(2300 if self.supply_on else 0), -1, 35)
    reg(OBIS.CURRENT_L1, lambda: LongUnsigned(int(self._power_w() / 230 * 100)), -2, 33)

    clock_col = CaptureObject(8, OBIS.CLOCK, 2)
    lp = ProfileGeneric(
        OBIS.LOAD_PROFILE,
        [
            clock_col,
            CaptureObject(1, OBIS.STATUS, 2),
            CaptureObject(3, OBIS.ACTIVE_IMPORT, 2),
            CaptureObject(3, OBIS.ACTIVE_EXPORT, 2),
        ],
        self._load_profile_rows,
        capture_period=LOAD_PROFILE_PERIOD,
        profile_entries=LOAD_PROFILE_DAYS * 96,
    )
    model.add(lp, {MANAGEMENT: Rights(read=frozenset(lp.ATTRIBUTES))})
    daily = ProfileGeneric(
        OBIS.DAILY_PROFILE,
        [
            clock_col,
            CaptureObject(3, OBIS.ACTIVE_IMPORT, 2),
            CaptureObject(3, OBIS.ACTIVE_EXPORT, 2),
        ],
        self._daily_rows,
        capture_period=86400,
        profile_entries=DAILY_PROFILE_DAYS,
    )
    model.add(daily, {MANAGEMENT: Rights(read=frozenset(daily.ATTRIBUTES))})
    for name, (obis, e) in LOG_BOOKS.items():
        book = ProfileGeneric(
            obis,
            [
                clock_col,
                CaptureObject(1, Obis(0, 0, 96, 11, e, 255), 2),
                CaptureObject(1, Obis(0, 128, 96, 11, e, 255), 2),
            ],
            self._log_rows(name),
            capture_period=0,
            profile_entries=self.logbooks[name].capacity,
        )
        model.add(book, {MANAGEMENT: Rights(read=frozenset(book.ATTRIBUTES))})

    add_controls(model, _DeviceControls(self))  # the same objects the fleet acts through
    setup = SecuritySetup(
        OBIS.SECURITY_SETUP,
        policy=lambda: self.policy,
        activate=self._activate_policy,
        suite=0,
        client_title=lambda: b"",
        server_title=self.identity.system_title,
        key_transfer=self._key_transfer,
    )
    model.add(
        setup, {MANAGEMENT: Rights(read=frozenset(setup.ATTRIBUTES), methods=frozenset({1, 2}))}
    )
    image = ImageTransfer(OBIS.IMAGE_TRANSFER, on_verified=self._image_verified)
    model.add(
        image,
        {MANAGEMENT: Rights(read=frozenset(image.ATTRIBUTES), methods=frozenset({1, 2, 3, 4}))},
    )

    for sap, ctx, mech in (
        (PUBLIC, ApplicationContext.LN, Mechanism.LOWEST),
        (MANAGEMENT, ApplicationContext.LN_CIPHERED, Mechanism.HLS_GMAC),
    ):
        assoc = AssociationLN(
            Obis(0, 0, 40, 0, sap, 255),
            lambda sap=sap: model.object_list(sap),  # type: ignore[misc]
            client_sap=sap,
            context_oid=bytes.fromhex("608574050801") + bytes((ctx,)),
            mechanism_oid=bytes.fromhex("608574050802") + bytes((mech,)),
        )
        model.add(assoc, {sap: pub_read if sap == PUBLIC else read_all(assoc)})
    return model


class _DeviceControls:
    """:class:`~meterguard.meter.controls.Controls` over the device's attributes (persisted)."""

    def __init__(self, meter: Meter) -> None:
        self._m = meter

    def connected(self) -> bool:
        return self._m.connected

    def switch(self, connect: bool) -> None:
        self._m._switch(connect)

    def limit_w(self) -> int:
        return self._m.limit_w

    def set_limit_w(self, watts: int) -> None:
        self._m.limit_w = watts
        self._m._save()

    def tariff(self) -> int:
        return self._m.active_tariff

    def set_tariff(self, tariff: int) -> None:
        self._m.active_tariff = tariff
        self._m._save()
