"""Security material of one association: keys, titles, counters, HLS secrets.

See :mod:`meterguard.cosem.connection` for the rules both sides follow. No IO, no clock.
"""

from __future__ import annotations

from meterguard.cosem.counters import ReceiveCounter, SendCounter
from meterguard.cosem.security import (
    SYSTEM_TITLE_LENGTH,
)
from meterguard.crypto.aead import GcmKey
from meterguard.crypto.ecc import SigningKey, VerifyingKey
from meterguard.crypto.keys import SecretKey
from meterguard.errors import (
    ConfigurationError,
    InsufficientProtectionError,
)

__all__ = ["SecurityMaterial"]


class SecurityMaterial:
    """The mutable security state of one side of an association (keys, counters, titles).

    Owned by the meter or head-end, shared with the connection. Replacing a key
    (after key_transfer) takes effect for the next APDU. ``repr`` shows no key.
    """

    __slots__ = (
        "_ak",
        "_bk",
        "_bk_gcm",
        "_ek",
        "_ek_gcm",
        "peer_broadcast_counter",
        "peer_counter",
        "peer_verifying_key",
        "send_counter",
        "signing_key",
        "suite",
        "system_title",
    )

    def __init__(
        self,
        *,
        system_title: bytes,
        suite: int = 0,
        unicast_key: SecretKey | None = None,
        authentication_key: SecretKey | None = None,
        broadcast_key: SecretKey | None = None,
        send_counter: SendCounter | None = None,
        peer_counter: ReceiveCounter | None = None,
        peer_broadcast_counter: ReceiveCounter | None = None,
        signing_key: SigningKey | None = None,
        peer_verifying_key: VerifyingKey | None = None,
    ) -> None:
        if len(system_title) != SYSTEM_TITLE_LENGTH:
            raise ConfigurationError("system title must be 8 bytes")
        if suite not in (0, 1, 2):
            raise ConfigurationError("security suite must be 0, 1 or 2")
        self.system_title = system_title
        self.suite = suite
        self._ek: SecretKey | None = None
        self._ek_gcm: GcmKey | None = None
        self._bk: SecretKey | None = None
        self._bk_gcm: GcmKey | None = None
        self._ak = authentication_key
        self.unicast_key = unicast_key
        self.broadcast_key = broadcast_key
        self.send_counter = send_counter if send_counter is not None else SendCounter()
        self.peer_counter = peer_counter if peer_counter is not None else ReceiveCounter()
        self.peer_broadcast_counter = (
            peer_broadcast_counter if peer_broadcast_counter is not None else ReceiveCounter()
        )
        self.signing_key = signing_key
        self.peer_verifying_key = peer_verifying_key

    def _check_len(self, key: SecretKey | None) -> None:
        if key is not None and len(key) != (32 if self.suite == 2 else 16):
            raise ConfigurationError(
                f"suite {self.suite} needs {32 if self.suite == 2 else 16}-byte keys"
            )

    @property
    def unicast_key(self) -> SecretKey | None:
        """Global unicast encryption key (GUEK)."""
        return self._ek

    @unicast_key.setter
    def unicast_key(self, key: SecretKey | None) -> None:
        self._check_len(key)
        self._ek = key
        self._ek_gcm = None if key is None else GcmKey(key)

    @property
    def broadcast_key(self) -> SecretKey | None:
        """Global broadcast encryption key (GBEK)."""
        return self._bk

    @broadcast_key.setter
    def broadcast_key(self, key: SecretKey | None) -> None:
        self._check_len(key)
        self._bk = key
        self._bk_gcm = None if key is None else GcmKey(key)

    @property
    def authentication_key(self) -> SecretKey | None:
        """Authentication key (GAK), only ever used inside the AAD."""
        return self._ak

    @authentication_key.setter
    def authentication_key(self, key: SecretKey | None) -> None:
        self._check_len(key)
        self._ak = key

    def unicast_gcm(self) -> GcmKey:
        """The unicast key ready for GCM.

        Raises:
            ConfigurationError: no unicast key.
        """
        if self._ek_gcm is None:
            raise ConfigurationError("no global unicast key configured")
        return self._ek_gcm

    def broadcast_gcm(self) -> GcmKey:
        """The broadcast key ready for GCM.

        Raises:
            InsufficientProtectionError: no broadcast key is configured, so nothing
                protected with one can be accepted.
        """
        if self._bk_gcm is None:
            raise InsufficientProtectionError("broadcast-key APDU but no broadcast key configured")
        return self._bk_gcm

    def __repr__(self) -> str:
        return (
            f"SecurityMaterial(system_title={self.system_title.hex()}, suite={self.suite}, "
            f"send={self.send_counter!r}, peer={self.peer_counter!r})"
        )
