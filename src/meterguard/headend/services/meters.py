"""The meter lifecycle, in one place: provision, disable, enable, quarantine, decommission, revoke.

Every entry point — the web API, the ``meterguard meter …`` CLI, the demo — calls
:class:`Meters`; none of them decides a rule of its own. A change is recorded in the
meter registry (the database, the source of truth that running workers watch: see
:mod:`meterguard.system.watch`), at the PKI when certificates are revoked (CRL re-published,
which the broker's owner reloads), and in the audit log (LOG-1).

States and moves (``ROLES`` says who may make each one)::

    active ──disable──▶ disabled ──enable──▶ active
    active|disabled ──quarantine──▶ quarantined ──release──▶ active   (certificates on hold)
    active|disabled|quarantined ──decommission──▶ decommissioned      (certificates revoked)
    active|disabled|quarantined|decommissioned ──revoke──▶ revoked    (certificates revoked)

Quarantine is what the head-end does on its own to an identity that keeps taking over its
own broker session (a cloned certificate, MQ-4: see :class:`TakeoverGuard`); a security
administrator may also quarantine by hand, and only a security administrator releases.

A decommissioned or revoked meter never comes back: a replacement is provisioned and
enrolled anew. Disabling is reversible and leaves the certificates alone; ingest refuses a
disabled meter's messages all the same (PKI-5). This module holds no SQL and does no IO of
its own: the registry, the PKI, the key store and the audit log are given to it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from meterguard.errors import AccessDeniedError, ConflictError, NotFoundError
from meterguard.headend.services.records import AuditLog
from meterguard.identity import meter_id, serial_of, system_title

__all__ = ["MOVES", "ROLES", "SYSTEM_ROLE", "Meters", "Move"]

SYSTEM_ROLE = "system"
"""The head-end's own monitors (no account can have it: accounts take roles from
:data:`~meterguard.headend.services.accounts.ROLES`)."""


class Registry(Protocol):
    """The meter registry (:class:`~meterguard.headend.store.meters.MeterRepository`)."""

    def add_meter(self, meter_id: str, *, serial: str, system_title: bytes, now: int) -> bool:
        """Register a meter; True if it was new."""

    def state(self, meter_id: str) -> str | None:
        """A meter's state, None if unknown."""

    def set_state(self, meter_id: str, state: str, *, expect: frozenset[str]) -> bool:
        """Compare-and-set a meter's state."""


class Certificates(Protocol):
    """The PKI's side of a meter (:class:`~meterguard.crypto.pki.store.Pki`)."""

    def register(self, serial: str) -> None:
        """Manufacturing record: the CA will certify this serial."""

    def revoke_meter(self, serial: str, *, now: dt.datetime) -> int:
        """Revoke the meter's certificates and re-publish the CRL."""

    def revoke_service(self, name: str, *, now: dt.datetime) -> int:
        """Revoke a head-end identity's client certificates (the service CA's CRL)."""

    def hold_meter(self, serial: str, *, now: dt.datetime) -> int:
        """Suspend the meter's operational certificates (``certificateHold`` on the CRL)."""

    def release_meter(self, serial: str, *, now: dt.datetime) -> int:
        """Lift the hold."""


class MeterKeys(Protocol):
    """The key store's side of a meter."""

    def provision(self, meter: str) -> object:
        """Generate the meter's DLMS key set."""


@dataclass(frozen=True, slots=True)
class Move:
    """One lifecycle move: from which states, to which, and what it does to certificates."""

    expect: frozenset[str]
    to: str
    certificates: str
    """keep | revoke | hold | release"""
    audit_action: str


MOVES: Mapping[str, Move] = {
    "disable": Move(frozenset({"active"}), "disabled", "keep", "meter_disabled"),
    "enable": Move(frozenset({"disabled"}), "active", "keep", "meter_enabled"),
    "quarantine": Move(
        frozenset({"active", "disabled"}), "quarantined", "hold", "meter_quarantined"
    ),
    "release": Move(frozenset({"quarantined"}), "active", "release", "meter_released"),
    "decommission": Move(
        frozenset({"active", "disabled", "quarantined"}),
        "decommissioned",
        "revoke",
        "meter_decommissioned",
    ),
    "revoke": Move(
        frozenset({"active", "disabled", "quarantined", "decommissioned"}),
        "revoked",
        "revoke",
        "certificate_revoked",
    ),
}
_INSTALLERS = frozenset({"engineer", "security_admin"})
ROLES: Mapping[str, frozenset[str]] = {
    "provision": _INSTALLERS,
    "disable": _INSTALLERS,
    "enable": _INSTALLERS,
    "decommission": _INSTALLERS,
    # Revocation and quarantine are the security administrator's (a compromised identity);
    # the head-end's own broker monitor quarantines too (SYSTEM_ROLE, no account has it).
    "quarantine": frozenset({"security_admin", "system"}),
    "release": frozenset({"security_admin"}),
    "revoke": frozenset({"security_admin"}),
    "revoke_service": frozenset({"security_admin"}),
}
"""Who may make each move: the API's guards read this table, and so does the service."""


class Meters:
    """The meter lifecycle service."""

    def __init__(
        self, registry: Registry, pki: Certificates, keys: MeterKeys, audit: AuditLog
    ) -> None:
        self._registry, self._pki, self._keys, self._audit = registry, pki, keys, audit

    def __repr__(self) -> str:
        return "Meters()"

    @staticmethod
    def _allowed(action: str, role: str) -> None:
        if role not in ROLES[action]:
            raise AccessDeniedError(f"{action} of a meter is not for the {role} role")

    def revoke_service(self, actor: str, role: str, name: str, *, now: int) -> int:
        """Revoke a head-end service identity (its certificates; audited).

        The broker's service listener refuses it from its next reload (the registry watch
        reloads on the CRL file). Returns how many certificates were revoked.

        Raises:
            AccessDeniedError: the role may not revoke.
            NotFoundError: no such service identity.
        """
        self._allowed("revoke_service", role)
        count = self._pki.revoke_service(name, now=dt.datetime.fromtimestamp(now, dt.UTC))
        self._audit.append(
            at=now,
            actor=actor,
            target=f"service:{name}"[:128],
            action="service_revoked",
            result="done",
            detail=f"{count} certificate(s)",
        )
        return count

    def provision(self, actor: str, role: str, serial: str, *, now: int) -> str:
        """Register a new meter: database row, PKI manufacturing record, a fresh DLMS key set.

        Its keys reach the meter at the factory, out of band; they never leave the key store
        through this service.

        Raises:
            AccessDeniedError: the role may not provision.
            InvalidValueError: not a 10-digit serial.
            ConflictError: a meter with this serial exists.
        """
        self._allowed("provision", role)
        mid = meter_id(serial)
        # The registry's primary key decides a race between two provisionings of one serial.
        if not self._registry.add_meter(
            mid, serial=serial, system_title=system_title(serial), now=now
        ):
            raise ConflictError(f"meter {mid} exists")
        self._pki.register(serial)
        self._keys.provision(mid)
        self._audit.append(
            at=now,
            actor=actor,
            target=mid,
            action="meter_provisioned",
            result="done",
            detail="serial registered for enrolment, DLMS keys generated in the key store",
        )
        return mid

    def move(self, actor: str, role: str, mid: str, action: str, *, now: int) -> str:
        """Make a lifecycle move (a key of :data:`MOVES`).

        Returns the meter's new state. Running workers refuse its later messages within
        their watch interval (PKI-5), also on a session opened before.

        Raises:
            AccessDeniedError: the role may not make this move.
            NotFoundError: no such meter.
            ConflictError: the meter's state does not allow the move.
        """
        self._allowed(action, role)
        move = MOVES[action]
        state = self._registry.state(mid)
        if state is None:
            raise NotFoundError(f"no meter {mid[:20]}")
        if state not in move.expect:
            raise ConflictError(f"meter {mid} is {state}: it cannot be {move.to}")
        detail = f"{state} -> {move.to}"
        when = dt.datetime.fromtimestamp(now, dt.UTC)
        # PKI-5: certificates first, so a meter is never marked retired (or quarantined)
        # while its certificate would still open a new session.
        if move.certificates == "revoke":
            count = self._pki.revoke_meter(serial_of(mid), now=when)
            detail += f"; {count} certificate(s) revoked, CRL re-published"
        elif move.certificates == "hold":
            count = self._pki.hold_meter(serial_of(mid), now=when)
            detail += f"; {count} certificate(s) on hold, CRL re-published"
        elif move.certificates == "release":
            count = self._pki.release_meter(serial_of(mid), now=when)
            detail += f"; hold lifted from {count} certificate(s), CRL re-published"
        if not self._registry.set_state(mid, move.to, expect=move.expect):
            raise ConflictError(f"meter {mid} changed state meanwhile")
        self._audit.append(
            at=now, actor=actor, target=mid, action=move.audit_action, result="done", detail=detail
        )
        return move.to
