"""COSEM interface classes of the meter (Blue Book): what each attribute and method does.

Objects hold no protocol state and do no IO. Their values come from providers
(callables) wired by :class:`meterguard.meter.device.Meter`, so the same class
serves a register backed by the metrology model or a constant. Who may read,
write or invoke what is decided by :class:`meterguard.meter.model.CosemModel`
before an object is asked; an object only says whether an operation is
meaningful (``OBJECT_UNDEFINED``/``TYPE_UNMATCHED``/``READ_WRITE_DENIED``).

Classes: Data (1), Register (3), ProfileGeneric (7) with range (selector 1) and
entry (selector 2) access, Clock (8), AssociationLN (15), ImageTransfer (18),
SecuritySetup (64, v1) and DisconnectControl (70).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from meterguard.cosem.axdr import (
    Array,
    BitString,
    Boolean,
    Data,
    DoubleLongUnsigned,
    Enum,
    Integer,
    Long,
    LongUnsigned,
    NullData,
    OctetString,
    Structure,
    Unsigned,
)
from meterguard.cosem.cosemtime import CosemDateTime
from meterguard.cosem.obis import Obis
from meterguard.cosem.xdlms import (
    ActionResult,
    ActionReturn,
    CaptureObject,
    DataAccessResult,
    EntryDescriptor,
    GetResult,
    RangeDescriptor,
    SelectiveAccess,
)
from meterguard.errors import DecodeError

__all__ = [
    "AssociationLN",
    "ClockObject",
    "CosemObject",
    "DataObject",
    "DisconnectControl",
    "ImageTransfer",
    "ProfileGeneric",
    "Register",
    "SecuritySetup",
]

Row = tuple[Data, ...]
_NOT_SPECIFIED = bytes.fromhex("FFFFFFFFFFFFFFFFFF8000FF")


class CosemObject:
    """Base of all interface classes: attribute 1 is the logical name."""

    CLASS_ID: ClassVar[int]
    VERSION: ClassVar[int] = 0
    ATTRIBUTES: ClassVar[tuple[int, ...]] = (1,)
    METHODS: ClassVar[tuple[int, ...]] = ()

    def __init__(self, obis: Obis) -> None:
        self.obis = obis

    def get(self, attribute: int, access: SelectiveAccess | None) -> GetResult:
        """Read an attribute."""
        if attribute == 1 and access is None:
            return OctetString(self.obis.to_bytes())
        if attribute not in self.ATTRIBUTES:
            return DataAccessResult.OBJECT_UNDEFINED
        if access is not None:
            return DataAccessResult.OTHER_REASON
        return self._get(attribute)

    def _get(self, attribute: int) -> GetResult:
        del attribute
        return DataAccessResult.OBJECT_UNAVAILABLE

    def set(self, attribute: int, value: Data) -> DataAccessResult:
        """Write an attribute (default: read-only)."""
        del value
        return (
            DataAccessResult.READ_WRITE_DENIED
            if attribute in self.ATTRIBUTES
            else DataAccessResult.OBJECT_UNDEFINED
        )

    def invoke(self, method: int, parameters: Data | None) -> ActionReturn:
        """Invoke a method (default: none)."""
        del parameters
        if method not in self.METHODS:
            return ActionReturn(ActionResult.OBJECT_UNDEFINED)
        return ActionReturn(ActionResult.READ_WRITE_DENIED)


class DataObject(CosemObject):
    """Data (class 1): one value attribute, optionally writable through ``setter``."""

    CLASS_ID = 1
    ATTRIBUTES = (1, 2)

    def __init__(
        self,
        obis: Obis,
        value: Callable[[], Data],
        setter: Callable[[Data], DataAccessResult] | None = None,
    ) -> None:
        super().__init__(obis)
        self._value = value
        self._setter = setter

    def _get(self, attribute: int) -> GetResult:
        del attribute  # only attribute 2 reaches here
        return self._value()

    def set(self, attribute: int, value: Data) -> DataAccessResult:
        """Write the value if a setter is wired."""
        if attribute == 2 and self._setter is not None:
            return self._setter(value)
        return super().set(attribute, value)


class Register(CosemObject):
    """Register (class 3): value (attr 2) with scaler and unit (attr 3)."""

    CLASS_ID = 3
    ATTRIBUTES = (1, 2, 3)
    METHODS = (1,)  # reset: refused, billing registers are never reset remotely

    def __init__(self, obis: Obis, value: Callable[[], Data], *, scaler: int, unit: int) -> None:
        super().__init__(obis)
        self._value = value
        self.scaler = scaler
        self.unit = unit

    def _get(self, attribute: int) -> GetResult:
        if attribute == 2:
            return self._value()
        return Structure((Integer(self.scaler), Enum(self.unit)))


class ClockObject(CosemObject):
    """Clock (class 8): time, time zone, status, DST settings, deviation, enabled, base."""

    CLASS_ID = 8
    ATTRIBUTES = (1, 2, 3, 4, 5, 6, 7, 8, 9)
    METHODS = (1, 2, 3, 4, 5, 6)

    def __init__(
        self,
        obis: Obis,
        now: Callable[[], CosemDateTime],
        adjust: Callable[[CosemDateTime], DataAccessResult],
    ) -> None:
        super().__init__(obis)
        self._now = now
        self._adjust = adjust

    def _get(self, attribute: int) -> GetResult:
        if attribute == 2:
            return OctetString(self._now().to_bytes())
        if attribute == 3:
            return Long(0)  # minutes from local time to UTC: the simulated meters keep UTC
        if attribute == 4:
            return Unsigned(self._now().clock_status or 0)
        if attribute in (5, 6):  # no daylight saving: fully wildcarded date-times
            return OctetString(_NOT_SPECIFIED)
        if attribute == 7:
            return Integer(0)
        if attribute == 8:
            return Boolean(False)
        return Enum(1)  # clock base: internal crystal

    def set(self, attribute: int, value: Data) -> DataAccessResult:
        """Only the time (attr 2) is writable."""
        if attribute != 2:
            return super().set(attribute, value)
        if not isinstance(value, OctetString):
            return DataAccessResult.TYPE_UNMATCHED
        try:
            stamp = CosemDateTime.from_bytes(value.value)
        except DecodeError:
            return DataAccessResult.TYPE_UNMATCHED
        return self._adjust(stamp)


@dataclass(frozen=True, slots=True)
class Column:
    """A profile column: its capture object definition."""

    capture: CaptureObject


class ProfileGeneric(CosemObject):
    """Profile generic (class 7): buffer with range and entry selective access (DM-10)."""

    CLASS_ID = 7
    VERSION = 1
    ATTRIBUTES = (1, 2, 3, 4, 5, 6, 7, 8)
    METHODS = (1, 2)

    def __init__(
        self,
        obis: Obis,
        columns: Sequence[CaptureObject],
        rows: Callable[[], Sequence[Row]],
        *,
        capture_period: int,
        profile_entries: int,
    ) -> None:
        super().__init__(obis)
        self.columns = tuple(columns)
        self._rows = rows
        self.capture_period = capture_period
        self.profile_entries = profile_entries

    def get(self, attribute: int, access: SelectiveAccess | None) -> GetResult:
        """Read; attribute 2 accepts selective access."""
        if attribute == 2:
            return self._buffer(access)
        return super().get(attribute, access)

    def _get(self, attribute: int) -> GetResult:
        if attribute == 3:
            return Array(tuple(c.to_data() for c in self.columns))
        if attribute == 4:
            return DoubleLongUnsigned(self.capture_period)
        if attribute == 5:
            return Enum(1)  # sort method: FIFO
        if attribute == 6:
            return Structure((LongUnsigned(0), OctetString(bytes(6)), Integer(0), LongUnsigned(0)))
        if attribute == 7:
            return DoubleLongUnsigned(len(self._rows()))
        return DoubleLongUnsigned(self.profile_entries)

    def _buffer(self, access: SelectiveAccess | None) -> GetResult:
        rows = list(self._rows())
        columns: Sequence[int] = range(len(self.columns))
        if access is not None:
            try:
                if access.selector == RangeDescriptor.SELECTOR:
                    rows, columns = self._by_range(rows, RangeDescriptor.from_access(access))
                elif access.selector == EntryDescriptor.SELECTOR:
                    rows, columns = self._by_entry(rows, EntryDescriptor.from_access(access))
                else:
                    return DataAccessResult.OTHER_REASON
            except DecodeError:
                return DataAccessResult.TYPE_UNMATCHED
            except LookupError:
                return DataAccessResult.OBJECT_UNAVAILABLE
        return Array(tuple(Structure(tuple(row[i] for i in columns)) for row in rows))

    def _column_index(self, co: CaptureObject) -> int:
        for i, c in enumerate(self.columns):
            if (c.class_id, c.instance, c.attribute) == (co.class_id, co.instance, co.attribute):
                return i
        raise LookupError(co)

    def _by_range(self, rows: list[Row], rd: RangeDescriptor) -> tuple[list[Row], Sequence[int]]:
        i = self._column_index(rd.restricting_object)

        def key(d: Data) -> bytes | int:
            if isinstance(d, OctetString):
                return d.value
            value = getattr(d, "value", None)
            if isinstance(value, int):
                return value
            raise DecodeError("range bounds must be date-time octet-strings or integers")

        lo, hi = key(rd.from_value), key(rd.to_value)
        if isinstance(lo, bytes) and isinstance(hi, bytes):
            # Compare date-times as instants where the bounds are fully specified.
            lo_t, hi_t = _instant(lo), _instant(hi)
            picked = [r for r in rows if lo_t <= _instant(key(r[i])) <= hi_t]  # type: ignore[arg-type]
        else:
            picked = [r for r in rows if lo <= key(r[i]) <= hi]  # type: ignore[operator]
        cols = [self._column_index(c) for c in rd.selected_values] or range(len(self.columns))
        return picked, cols

    def _by_entry(self, rows: list[Row], ed: EntryDescriptor) -> tuple[list[Row], Sequence[int]]:
        last = len(rows) if ed.to_entry == 0 else min(ed.to_entry, len(rows))
        picked = rows[max(ed.from_entry, 1) - 1 : last]
        last_col = len(self.columns) if ed.to_selected_value == 0 else ed.to_selected_value
        return picked, range(max(ed.from_selected_value, 1) - 1, min(last_col, len(self.columns)))


def _instant(raw: bytes) -> float:
    stamp = CosemDateTime.from_bytes(raw)
    return stamp.to_datetime().timestamp()


class AssociationLN(CosemObject):
    """Association LN (class 15): the object list this association sees, partners, status."""

    CLASS_ID = 15
    VERSION = 1
    ATTRIBUTES = (1, 2, 3, 4, 5, 6, 7, 8)
    METHODS = (1,)  # reply_to_HLS_authentication, handled by the connection

    def __init__(
        self,
        obis: Obis,
        object_list: Callable[[], Data],
        *,
        client_sap: int,
        context_oid: bytes,
        mechanism_oid: bytes,
    ) -> None:
        super().__init__(obis)
        self._object_list = object_list
        self.client_sap = client_sap
        self.context_oid = context_oid
        self.mechanism_oid = mechanism_oid

    def _get(self, attribute: int) -> GetResult:
        if attribute == 2:
            return self._object_list()
        if attribute == 3:
            return Structure((Integer(self.client_sap), LongUnsigned(1)))
        if attribute == 4:
            return OctetString(self.context_oid)
        if attribute == 6:
            return OctetString(self.mechanism_oid)
        if attribute == 8:
            return Enum(2)  # associated
        return NullData()


class DisconnectControl(CosemObject):
    """Disconnect control (class 70): output state, control state, mode; remote (dis)connect."""

    CLASS_ID = 70
    ATTRIBUTES = (1, 2, 3, 4)
    METHODS = (1, 2)

    def __init__(
        self, obis: Obis, state: Callable[[], bool], switch: Callable[[bool], None]
    ) -> None:
        super().__init__(obis)
        self._state = state
        self._switch = switch

    def _get(self, attribute: int) -> GetResult:
        connected = self._state()
        if attribute == 2:
            return Boolean(connected)
        if attribute == 3:
            return Enum(1 if connected else 0)
        return Enum(1)  # control mode 1: remote disconnect and reconnect allowed

    def invoke(self, method: int, parameters: Data | None) -> ActionReturn:
        """1 = remote_disconnect, 2 = remote_reconnect (parameter integer 0)."""
        if method not in self.METHODS:
            return super().invoke(method, parameters)
        if not isinstance(parameters, Integer):
            return ActionReturn(ActionResult.TYPE_UNMATCHED)
        self._switch(method == 2)
        return ActionReturn(ActionResult.SUCCESS)


class SecuritySetup(CosemObject):
    """Security setup (class 64, version 1): policy, suite, titles; activate and key_transfer."""

    CLASS_ID = 64
    VERSION = 1
    ATTRIBUTES = (1, 2, 3, 4, 5)
    METHODS = (1, 2)

    def __init__(
        self,
        obis: Obis,
        *,
        policy: Callable[[], int],
        activate: Callable[[int], ActionResult],
        suite: int,
        client_title: Callable[[], bytes],
        server_title: bytes,
        key_transfer: Callable[[list[tuple[int, bytes]]], ActionResult],
    ) -> None:
        super().__init__(obis)
        self._policy = policy
        self._activate = activate
        self.suite = suite
        self._client_title = client_title
        self.server_title = server_title
        self._key_transfer = key_transfer

    def _get(self, attribute: int) -> GetResult:
        if attribute == 2:
            return Enum(self._policy())
        if attribute == 3:
            return Enum(self.suite)
        if attribute == 4:
            return OctetString(self._client_title())
        return OctetString(self.server_title)

    def invoke(self, method: int, parameters: Data | None) -> ActionReturn:
        """1 = security_activate (only strengthens), 2 = key_transfer (RFC 3394 under the KEK)."""
        if method == 1:
            if not isinstance(parameters, Enum):
                return ActionReturn(ActionResult.TYPE_UNMATCHED)
            return ActionReturn(self._activate(parameters.value))
        if method == 2:
            if not isinstance(parameters, Array):
                return ActionReturn(ActionResult.TYPE_UNMATCHED)
            items: list[tuple[int, bytes]] = []
            for item in parameters.items:
                if not (
                    isinstance(item, Structure)
                    and len(item.items) == 2
                    and isinstance(item.items[0], Enum)
                    and isinstance(item.items[1], OctetString)
                ):
                    return ActionReturn(ActionResult.TYPE_UNMATCHED)
                items.append((item.items[0].value, item.items[1].value))
            return ActionReturn(self._key_transfer(items))
        return super().invoke(method, parameters)


class ImageTransfer(CosemObject):
    """Image transfer (class 18): receive an image in blocks and verify it is complete.

    Activation is refused here: firmware signature checks (TUF, anti-rollback)
    belong to the firmware issue, and an unsigned image must never run.
    """

    CLASS_ID = 18
    ATTRIBUTES = (1, 2, 3, 4, 5, 6, 7)
    METHODS = (1, 2, 3, 4)
    MAX_IMAGE = 4 << 20

    def __init__(
        self, obis: Obis, *, block_size: int = 192, on_verified: Callable[[bytes, bytes], None]
    ) -> None:
        super().__init__(obis)
        self.block_size = block_size
        self._on_verified = on_verified
        self.status = 0
        self.identifier = b""
        self.size = 0
        self._blocks: dict[int, bytes] = {}

    def _block_count(self) -> int:
        return -(-self.size // self.block_size)

    def _get(self, attribute: int) -> GetResult:
        if attribute == 2:
            return DoubleLongUnsigned(self.block_size)
        if attribute == 3:
            return BitString(
                "".join("1" if i in self._blocks else "0" for i in range(self._block_count()))
            )
        if attribute == 4:
            missing = [i for i in range(self._block_count()) if i not in self._blocks]
            return DoubleLongUnsigned(missing[0] if missing else self._block_count())
        if attribute == 5:
            return Boolean(True)
        if attribute == 6:
            return Enum(self.status)
        if self.status == 3:
            image = self._image()
            return Array(
                (
                    Structure(
                        (
                            DoubleLongUnsigned(self.size),
                            OctetString(self.identifier),
                            OctetString(hashlib.sha256(image).digest()),
                        )
                    ),
                )
            )
        return Array(())

    def _image(self) -> bytes:
        return b"".join(self._blocks[i] for i in range(self._block_count()))

    def invoke(self, method: int, parameters: Data | None) -> ActionReturn:
        """1 initiate(identifier, size), 2 block(number, value), 3 verify, 4 activate."""
        if method == 1:
            if not (isinstance(parameters, Structure) and len(parameters.items) == 2):
                return ActionReturn(ActionResult.TYPE_UNMATCHED)
            ident, size = parameters.items
            if not (isinstance(ident, OctetString) and isinstance(size, DoubleLongUnsigned)):
                return ActionReturn(ActionResult.TYPE_UNMATCHED)
            if size.value > self.MAX_IMAGE:
                return ActionReturn(ActionResult.OTHER_REASON)  # FW-3: over-length refused up front
            self.identifier, self.size, self._blocks, self.status = ident.value, size.value, {}, 1
            return ActionReturn(ActionResult.SUCCESS)
        if method == 2:
            if self.status != 1:
                return ActionReturn(ActionResult.TEMPORARY_FAILURE)
            if not (isinstance(parameters, Structure) and len(parameters.items) == 2):
                return ActionReturn(ActionResult.TYPE_UNMATCHED)
            number, value = parameters.items
            if not (isinstance(number, DoubleLongUnsigned) and isinstance(value, OctetString)):
                return ActionReturn(ActionResult.TYPE_UNMATCHED)
            last = self._block_count() - 1
            expected = (
                self.size - last * self.block_size if number.value == last else self.block_size
            )
            if number.value > last or len(value.value) != expected:
                return ActionReturn(ActionResult.OTHER_REASON)
            self._blocks[number.value] = value.value
            return ActionReturn(ActionResult.SUCCESS)
        if method == 3:
            if self.status != 1 or len(self._blocks) != self._block_count():
                self.status = 4 if self.status == 1 else self.status
                return ActionReturn(ActionResult.OTHER_REASON)
            self.status = 3
            self._on_verified(self.identifier, hashlib.sha256(self._image()).digest())
            return ActionReturn(ActionResult.SUCCESS)
        if method == 4:
            return ActionReturn(ActionResult.READ_WRITE_DENIED)
        return super().invoke(method, parameters)
