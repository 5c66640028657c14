"""The data directory's layout, named once (every process that joins a system reads it here).

::

    DATA/
      system.json            what a running system publishes for other processes (ports, db)
      pki/                   root (keep offline), device and service CAs, registry, CRL
      broker/                Mosquitto's configuration, certificates, trust files, log
      fleet/                 the fleet's compact state
      meters/<id>/           each meter's TLS key and certificates (generated there)
      outbox.db              the meters' persistent MQTT outboxes
      keys.db, kek.bin       the head-end's key store and its key-encryption key (0600)
      headend/               service certificates; command, billing keys (public halves .pub)
      audit/                 the audit signing key and its public half
      witness/               the demo's audit witness: its own key and record (in a
                             deployment it runs on another machine, under other people)
      web/                   the web server's certificate, secrets key, demo accounts (0600)
      control/               requests to a running demo (tamper)
      firmware/              the TUF firmware repository (online keys in keys/; the offline
                             root and targets keys in firmware/offline/ unless moved away)

This module only names paths; it creates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DataLayout"]


@dataclass(frozen=True, slots=True)
class DataLayout:
    """Paths under one data directory."""

    root: Path

    @property
    def info(self) -> Path:
        """What a running system publishes for other processes (``system.json``)."""
        return self.root / "system.json"

    @property
    def pki(self) -> Path:
        """The PKI's directory."""
        return self.root / "pki"

    @property
    def trust_root(self) -> Path:
        """The private root every TLS peer pins (PKI-7)."""
        return self.pki / "root" / "root.pem"

    @property
    def broker(self) -> Path:
        """The managed broker's directory."""
        return self.root / "broker"

    @property
    def fleet(self) -> Path:
        """The fleet's compact state."""
        return self.root / "fleet"

    def meter(self, mid: str) -> Path:
        """A meter's own directory (its TLS key is generated there and never leaves it)."""
        return self.root / "meters" / mid

    @property
    def outbox(self) -> Path:
        """The meters' persistent outboxes."""
        return self.root / "outbox.db"

    @property
    def keystore(self) -> Path:
        """The head-end's key store."""
        return self.root / "keys.db"

    @property
    def kek(self) -> Path:
        """The key store's key-encryption key."""
        return self.root / "kek.bin"

    @property
    def headend(self) -> Path:
        """Service certificates and head-end signing keys."""
        return self.root / "headend"

    def service(self, name: str) -> tuple[Path, Path]:
        """A service identity's certificate and key."""
        return self.headend / f"{name}.pem", self.headend / f"{name}.key"

    @property
    def audit(self) -> Path:
        """The audit signing key's directory."""
        return self.root / "audit"

    @property
    def witness(self) -> Path:
        """The demo's audit witness (a separate process with its own key and record)."""
        return self.root / "witness"

    @property
    def web(self) -> Path:
        """The web server's directory."""
        return self.root / "web"

    @property
    def firmware(self) -> Path:
        """The firmware repository (:mod:`meterguard.firmware.repository`)."""
        return self.root / "firmware"

    @property
    def control(self) -> Path:
        """Requests to a running demo."""
        return self.root / "control"

    @property
    def sqlite(self) -> str:
        """The default database URL (SQLite in the data directory)."""
        return f"sqlite:///{self.root / 'headend.db'}"
