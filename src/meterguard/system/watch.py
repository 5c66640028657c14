"""Running workers follow the meter registry that any process may change (PKI-5).

The database is the source of truth: a revocation, a decommissioning or a disabling made
from the CLI of another process, from the API or by the demo bumps the registry version
(:class:`~meterguard.headend.store.meters.MeterRepository`). :class:`RegistryWatch` reads
that one row every ``every`` seconds; when it moved it reloads the meters' states into the
ingest :class:`~meterguard.headend.ingest.admission.Admission` — so the meter's later
messages are refused, also those on a session it opened before — and calls ``on_change``,
which the process that owns the broker uses to reload the CRL (a new TLS session with the
revoked certificate is refused). The PKI's own revocations (``meterguard pki revoke``
without a head-end) are picked up from the CRL file's change the same way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from meterguard.errors import TransportError
from meterguard.headend.ingest.admission import Admission
from meterguard.headend.store.meters import MeterRepository

log = logging.getLogger(__name__)

__all__ = ["RegistryWatch"]


class RegistryWatch:
    """Polls the registry version (and the CRL file) and applies a change."""

    def __init__(
        self,
        registry: MeterRepository,
        admission: Admission,
        *,
        pki_files: Sequence[Path] = (),
        revoked_by_pki: Callable[[], set[str]] | None = None,
        on_change: Callable[[], None] | None = None,
        every: float = 1.0,
    ) -> None:
        self.registry = registry
        self.admission = admission
        self.pki_files = tuple(pki_files)
        """The PKI files watched: both CRLs. Not the registry: it changes with every
        certificate issued (EST), and each broker reload drops offline sessions (ADR 11)."""
        self.revoked_by_pki = revoked_by_pki
        self.on_change = on_change
        self.every = every
        self._version: int | None = None
        self._pki_stamp: tuple[tuple[int, int], ...] | None = None
        self.changes = 0

    def _pki_changed(self) -> bool:
        if not self.pki_files:
            return False
        stamps = []
        for path in self.pki_files:
            try:
                st = path.stat()
            except FileNotFoundError:
                stamps.append((0, 0))
                continue
            stamps.append((st.st_mtime_ns, st.st_size))
        stamp = tuple(stamps)
        changed = stamp != self._pki_stamp
        self._pki_stamp = stamp
        return changed

    def poll(self) -> bool:
        """Look once; apply and return True if the registry or the PKI's files changed.

        Raises:
            TransportError: the database cannot be reached (the admission stays as it was).
        """
        pki_changed = self._pki_changed()
        if self.registry.version() == self._version and not pki_changed:
            return False
        version, states = self.registry.snapshot()
        pki_revoked = self.revoked_by_pki() if self.revoked_by_pki is not None else set()
        self.admission.load(states, pki_revoked)
        first = self._version is None
        self._version = version
        if not first:
            self.changes += 1
            if self.on_change is not None:
                self.on_change()
        return True

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set; a database outage is retried, never fatal."""
        while not stop.wait(self.every):
            try:
                self.poll()
            except TransportError as exc:
                log.warning("registry watch: %s", exc)

    def start(self, stop: threading.Event) -> threading.Thread:
        """Poll once now (so admission is right from the start), then in a thread."""
        self.poll()
        thread = threading.Thread(target=self.run, args=(stop,), name="registry-watch", daemon=True)
        thread.start()
        return thread
