"""What the services record through: the audit log and security events, as protocols.

The services hold no SQL; the store's :class:`~meterguard.headend.store.audit.AuditWriter`
and :meth:`~meterguard.headend.store.repository.Store.security_event` satisfy these. One
definition each, shared by every service that records.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["AuditLog", "SecurityEvents"]


class AuditLog(Protocol):
    """Where security-relevant actions go (LOG-1)."""

    def append(
        self, *, at: int, actor: str, target: str, action: str, result: str, detail: str = ""
    ) -> object:
        """Append one entry."""


class SecurityEvents(Protocol):
    """Where security events go (with ``summarise``, repeats within a window count on one)."""

    def security_event(
        self,
        *,
        at: int,
        event: str,
        detail: str,
        meter_id: str | None = None,
        summarise: bool = False,
    ) -> None:
        """Record (or count into a summary) one event."""
