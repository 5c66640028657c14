"""How the store seals readings at rest and opens them back (PRIV-4), over a vault.

With a :class:`Vault` (:class:`meterguard.crypto.vault.ReadingVault` in the running
system), :func:`seal_row` turns a reading into the row the database keeps — ``-1`` in the
value columns, the values sealed under the meter's data key in ``sealed`` — and
:func:`open_values` gives the values back, or None for a reading whose key was shredded
(the row is then as good as deleted). Rows without ``sealed`` (stored before, or without a
vault) are read as they are. No SQL here; the repositories call these.
"""

from __future__ import annotations

from typing import Any, Protocol

from meterguard.errors import ConfigurationError

__all__ = ["SEALED_MARK", "Vault", "open_values", "seal_row"]

SEALED_MARK = -1
"""What the value columns hold for a sealed reading (registers are never negative)."""


class Vault(Protocol):
    """Seals and opens readings (:class:`~meterguard.crypto.vault.ReadingVault`)."""

    def seal(self, meter: str, start: int, import_wh: int, export_wh: int) -> tuple[int, bytes]:
        """(key version, sealed bytes)."""

    def open(self, meter: str, start: int, version: int, sealed: bytes) -> tuple[int, int] | None:
        """(import, export), or None when the key was shredded."""

    def forget(self, meter: str) -> None:
        """Drop cached keys of ``meter`` (after shredding it)."""


def seal_row(
    vault: Vault, meter: str, start: int, import_wh: int, export_wh: int, received_at: int
) -> tuple[Any, ...]:
    """(meter, start, -1, -1, received_at, key version, sealed)."""
    version, sealed = vault.seal(meter, start, import_wh, export_wh)
    return (meter, start, SEALED_MARK, SEALED_MARK, received_at, version, sealed)


def open_values(
    vault: Vault | None,
    meter: str,
    start: int,
    import_wh: int,
    export_wh: int,
    version: int | None,
    sealed: bytes | None,
) -> tuple[int, int] | None:
    """The reading's (import, export), or None when it is unreadable (shredded).

    Raises:
        AuthenticationFailedError: a sealed value was altered or moved.
        ConfigurationError: the reading is sealed and this store has no vault.
    """
    if sealed is None or version is None:
        return int(import_wh), int(export_wh)
    if vault is None:
        raise ConfigurationError(
            "readings are sealed at rest: open the store with the key store's vault"
        )
    return vault.open(meter, start, int(version), bytes(sealed))
