"""Admission of meter messages before any cryptography (PKI-5, MQ-4, DOS-1).

The broker enforces the CRL at connection time only: a revoked meter whose TLS
session is already up stays connected after a CRL reload. :class:`Admission`
closes that gap on the head-end side: every message's meter id (from the topic,
which the broker's ACL ties to the certificate CN) is checked against the
revoked and disabled identities *before* the message costs any decryption; a
refusal is an :class:`~meterguard.errors.AccessDeniedError`, a security event.

Sans-IO: the sets of revoked and disabled ids are supplied by the caller (from
the PKI registry and the meter registry) and can be swapped at any time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from meterguard.errors import AccessDeniedError, DecodeError

__all__ = ["Admission", "meter_id_from_topic"]

_TOPIC = re.compile(r"^meters/(MGD\d{10})/(data|alarms|events|status)$")


def meter_id_from_topic(topic: str) -> tuple[str, str]:
    """Split ``meters/<id>/<kind>``.

    Raises:
        DecodeError: not a meter upstream topic.
    """
    m = _TOPIC.match(topic)
    if m is None:
        raise DecodeError(f"not a meter upstream topic: {topic!r}")
    return m.group(1), m.group(2)


@dataclass
class Admission:
    """Known, revoked and disabled meter ids."""

    known: set[str] = field(default_factory=set)
    revoked: set[str] = field(default_factory=set)
    disabled: set[str] = field(default_factory=set)
    refused: int = 0

    def check(self, topic: str) -> str:
        """Return the meter id if its messages may be processed.

        Raises:
            DecodeError: malformed topic.
            AccessDeniedError: unknown, revoked or disabled meter.
        """
        meter, _ = meter_id_from_topic(topic)
        if meter in self.revoked or meter in self.disabled:
            self.refused += 1
            raise AccessDeniedError(
                f"meter {meter} is {'revoked' if meter in self.revoked else 'disabled'}"
            )
        if meter not in self.known:
            self.refused += 1
            raise AccessDeniedError(f"meter {meter} is not registered")
        return meter
