"""Admission of meter messages before any cryptography (PKI-5, MQ-4, DOS-1).

The broker enforces the CRL at connection time only: a revoked meter whose TLS
session is already up stays connected after a CRL reload. :class:`Admission`
closes that gap on the head-end side: every message's meter id (from the topic,
which the broker's ACL ties to the certificate CN) is checked against the
revoked, disabled and quarantined identities *before* the message costs any decryption; a
refusal is an :class:`~meterguard.errors.AccessDeniedError`, a security event.

Sans-IO: the sets of revoked and disabled ids are supplied by the caller (from
the PKI registry and the meter registry) and can be swapped at any time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from meterguard.errors import AccessDeniedError
from meterguard.identity import meter_id
from meterguard.mqtt.contract import parse_upstream

__all__ = ["Admission", "meter_id_from_topic"]

RETIRED = frozenset({"revoked", "decommissioned"})
"""Registry states whose certificates are revoked."""
SUSPENDED = frozenset({"disabled", "quarantined"})
"""Registry states whose messages are refused until a move brings the meter back."""


def meter_id_from_topic(topic: str) -> tuple[str, str]:
    """Split ``meters/<id>/<kind>``.

    Raises:
        DecodeError: not a meter upstream topic.
    """
    return parse_upstream(topic)


@dataclass
class Admission:
    """Known, revoked and suspended (disabled or quarantined) meter ids."""

    known: set[str] = field(default_factory=set)
    revoked: set[str] = field(default_factory=set)
    suspended: dict[str, str] = field(default_factory=dict)
    """Meter id → its suspending state."""
    refused: int = 0

    def load(self, states: Mapping[str, str], pki_revoked: Iterable[str] = ()) -> None:
        """Replace the sets from the registry (meter id → state) and the PKI's revoked serials.

        Each set is swapped whole, so a worker thread reading them meanwhile sees either the
        old or the new one, never half of a change.
        """
        self.known = set(states)
        self.revoked = {m for m, s in states.items() if s in RETIRED} | {
            meter_id(s) for s in pki_revoked
        }
        self.suspended = {m: s for m, s in states.items() if s in SUSPENDED}

    def check(self, topic: str) -> str:
        """Return the meter id if its messages may be processed.

        Raises:
            DecodeError: malformed topic.
            AccessDeniedError: unknown, revoked, disabled or quarantined meter.
        """
        meter, _ = meter_id_from_topic(topic)
        if meter in self.revoked or meter in self.suspended:
            self.refused += 1
            state = "revoked" if meter in self.revoked else self.suspended[meter]
            raise AccessDeniedError(f"meter {meter} is {state}")
        if meter not in self.known:
            self.refused += 1
            raise AccessDeniedError(f"meter {meter} is not registered")
        return meter
