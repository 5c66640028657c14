"""The meter's object model with per-association access rights (DM-2, DM-15).

:class:`CosemModel` implements :class:`meterguard.cosem.connection.CosemServerApplication`:
it finds the object, checks the association's rights for that attribute or
method, and only then asks the object. An association sees only the objects
in its rights table; anything else is ``READ_WRITE_DENIED`` for it (DM-2: the
public client reads the clock, the logical device name, the invocation
counter and its own object list, and nothing else). Management-only objects
— disconnect control, image transfer, security setup — have no public rights
at all (DM-15).

This module does no IO and keeps no time; the device wires the objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from meterguard.cosem.axdr import (
    Array,
    Boolean,
    Data,
    Enum,
    Integer,
    LongUnsigned,
    NullData,
    OctetString,
    Structure,
    Unsigned,
)
from meterguard.cosem.connection import RequestContext
from meterguard.cosem.obis import Obis
from meterguard.cosem.xdlms import (
    ActionResult,
    ActionReturn,
    AttributeWithSelection,
    DataAccessResult,
    GetResult,
    MethodDescriptor,
)
from meterguard.meter.objects import AssociationLN, CosemObject

__all__ = ["CosemModel", "Rights"]

CURRENT_ASSOCIATION = Obis(0, 0, 40, 0, 0, 255)


@dataclass(frozen=True, slots=True)
class Rights:
    """What one association may do with one object."""

    read: frozenset[int] = frozenset()
    write: frozenset[int] = frozenset()
    methods: frozenset[int] = frozenset()

    @classmethod
    def read_only(cls, obj: CosemObject) -> Rights:
        """Every attribute readable, nothing else."""
        return cls(read=frozenset(obj.ATTRIBUTES))


@dataclass
class CosemModel:
    """Objects plus a rights table per client SAP."""

    objects: dict[tuple[int, Obis], CosemObject] = field(default_factory=dict)
    rights: dict[int, dict[tuple[int, Obis], Rights]] = field(default_factory=dict)
    on_action: Callable[[RequestContext, MethodDescriptor, ActionReturn], None] | None = None

    def add(self, obj: CosemObject, rights: Mapping[int, Rights]) -> CosemObject:
        """Register ``obj`` with its rights per client SAP."""
        key = (obj.CLASS_ID, obj.obis)
        self.objects[key] = obj
        for sap, r in rights.items():
            self.rights.setdefault(sap, {})[key] = r
        return obj

    def visible(self, client_sap: int) -> Iterable[tuple[CosemObject, Rights]]:
        """Objects the association of ``client_sap`` can see."""
        table = self.rights.get(client_sap, {})
        for key, r in table.items():
            yield self.objects[key], r

    def object_list(self, client_sap: int) -> Data:
        """Association LN attribute 2 for ``client_sap``, with access rights (Blue Book 4.4.3)."""
        entries = []
        for obj, r in self.visible(client_sap):
            attrs = Array(
                tuple(
                    Structure(
                        (
                            Integer(a),
                            Enum((1 if a in r.read else 0) | (2 if a in r.write else 0)),
                            NullData(),
                        )
                    )
                    for a in obj.ATTRIBUTES
                )
            )
            methods = Array(
                tuple(Structure((Integer(m), Boolean(m in r.methods))) for m in obj.METHODS)
            )
            entries.append(
                Structure(
                    (
                        LongUnsigned(obj.CLASS_ID),
                        Unsigned(obj.VERSION),
                        OctetString(obj.obis.to_bytes()),
                        Structure((attrs, methods)),
                    )
                )
            )
        return Array(tuple(entries))

    def _lookup(
        self, ctx: RequestContext, class_id: int, obis: Obis
    ) -> tuple[CosemObject | None, Rights | None]:
        if obis == CURRENT_ASSOCIATION and class_id == AssociationLN.CLASS_ID:
            obis = Obis(0, 0, 40, 0, ctx.client_sap if ctx.client_sap < 256 else 0, 255)
            if (class_id, obis) not in self.objects:
                obis = CURRENT_ASSOCIATION
        key = (class_id, obis)
        return self.objects.get(key), self.rights.get(ctx.client_sap, {}).get(key)

    # -- CosemServerApplication

    def get(self, ctx: RequestContext, attribute: AttributeWithSelection) -> GetResult:
        """Read, after checking the association may read that attribute."""
        d = attribute.descriptor
        obj, r = self._lookup(ctx, d.class_id, d.instance)
        if obj is None or r is None:
            return (
                DataAccessResult.READ_WRITE_DENIED
                if obj is not None or ctx.client_sap != 1
                else DataAccessResult.OBJECT_UNDEFINED
            )
        if d.attribute not in r.read:
            return DataAccessResult.READ_WRITE_DENIED
        return obj.get(d.attribute, attribute.access)

    def set(
        self, ctx: RequestContext, attribute: AttributeWithSelection, value: Data
    ) -> DataAccessResult:
        """Write, after checking the association may write that attribute."""
        d = attribute.descriptor
        obj, r = self._lookup(ctx, d.class_id, d.instance)
        if obj is None or r is None:
            return (
                DataAccessResult.READ_WRITE_DENIED
                if obj is not None or ctx.client_sap != 1
                else DataAccessResult.OBJECT_UNDEFINED
            )
        if d.attribute not in r.write or attribute.access is not None:
            return DataAccessResult.READ_WRITE_DENIED
        return obj.set(d.attribute, value)

    def action(
        self, ctx: RequestContext, method: MethodDescriptor, parameters: Data | None
    ) -> ActionReturn:
        """Invoke, after checking the association may invoke that method."""
        obj, r = self._lookup(ctx, method.class_id, method.instance)
        if obj is None or r is None:
            result = (
                ActionResult.READ_WRITE_DENIED
                if obj is not None or ctx.client_sap != 1
                else ActionResult.OBJECT_UNDEFINED
            )
            return ActionReturn(result)
        if method.method not in r.methods:
            return ActionReturn(ActionResult.READ_WRITE_DENIED)
        ret = obj.invoke(method.method, parameters)
        if self.on_action is not None:
            self.on_action(ctx, method, ret)
        return ret
