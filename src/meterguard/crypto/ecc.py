"""Elliptic-curve recipes for DLMS suites 1 and 2: ECDSA, ECDH and the SP 800-56A KDF.

* Signatures travel as raw ``r || s`` (64 bytes on P-256, 96 on P-384), as the
  Green Book and Gurux encode them; :class:`SigningKey` and
  :class:`VerifyingKey` convert to and from DER internally.
* Deterministic signing (RFC 6979) is available for reproducible self-tests.
* :func:`dlms_kdf` is the NIST SP 800-56A concatenation KDF with
  ``OtherInfo = AlgorithmID || PartyUInfo || PartyVInfo`` (reference §1.9, V8).

Private keys have redacted reprs. This module does not handle certificates
(see the PKI package) or DLMS framing.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash

from meterguard.crypto.keys import SecretKey
from meterguard.errors import ConfigurationError, SignatureInvalidError

__all__ = ["Curve", "SigningKey", "VerifyingKey", "dlms_kdf"]


class Curve(enum.Enum):
    """The curves of DLMS suites 1 (P-256/SHA-256) and 2 (P-384/SHA-384)."""

    P256 = "P-256"
    P384 = "P-384"

    @property
    def size(self) -> int:
        """Coordinate size in bytes."""
        return 32 if self is Curve.P256 else 48

    def _ec_curve(self) -> ec.EllipticCurve:
        return ec.SECP256R1() if self is Curve.P256 else ec.SECP384R1()

    def _hash(self) -> hashes.HashAlgorithm:
        return hashes.SHA256() if self is Curve.P256 else hashes.SHA384()


def _curve_of(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> Curve:
    name = key.curve.name
    if name == "secp256r1":
        return Curve.P256
    if name == "secp384r1":
        return Curve.P384
    raise ConfigurationError(f"unsupported curve {name}: DLMS uses P-256 or P-384")


class VerifyingKey:
    """An ECDSA public key that verifies raw ``r || s`` signatures."""

    __slots__ = ("_key", "curve")

    def __init__(self, key: ec.EllipticCurvePublicKey) -> None:
        self.curve = _curve_of(key)
        self._key = key

    @classmethod
    def from_bytes(cls, data: bytes, curve: Curve = Curve.P256) -> VerifyingKey:
        """Load an uncompressed point ``04 || x || y`` or a bare ``x || y``.

        Raises:
            ConfigurationError: the bytes are not a point on the curve.
        """
        if len(data) == 2 * curve.size:
            data = b"\x04" + data
        try:
            key = ec.EllipticCurvePublicKey.from_encoded_point(curve._ec_curve(), data)
        except ValueError:
            raise ConfigurationError("not a valid public key on the curve") from None
        return cls(key)

    def to_bytes(self) -> bytes:
        """Return ``x || y`` (the DLMS encoding of a public key, without the 04 prefix)."""
        point = self._key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return point[1:]

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The underlying ``cryptography`` public key (for certificates)."""
        return self._key

    def verify(self, signature: bytes, data: bytes) -> None:
        """Verify a raw ``r || s`` signature over ``data``.

        Raises:
            SignatureInvalidError: the signature is malformed or does not verify.
        """
        size = self.curve.size
        if len(signature) != 2 * size:
            raise SignatureInvalidError(f"signature must be {2 * size} bytes, got {len(signature)}")
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        try:
            self._key.verify(encode_dss_signature(r, s), data, ec.ECDSA(self.curve._hash()))
        except InvalidSignature:
            raise SignatureInvalidError("ECDSA signature does not verify") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VerifyingKey):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    def __hash__(self) -> int:
        return hash(self.to_bytes())

    def __repr__(self) -> str:
        return f"VerifyingKey({self.curve.value}, {self.to_bytes()[:8].hex()}…)"


class SigningKey:
    """An ECDSA/ECDH private key; its repr never shows the scalar."""

    __slots__ = ("_key", "curve")

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self.curve = _curve_of(key)
        self._key = key

    @classmethod
    def generate(cls, curve: Curve = Curve.P256) -> SigningKey:
        """Generate a new private key (PKI-2: the meter generates its own key)."""
        return cls(ec.generate_private_key(curve._ec_curve()))

    @classmethod
    def from_scalar(cls, value: int, curve: Curve = Curve.P256) -> SigningKey:
        """Load a private key from its integer scalar (test vectors)."""
        return cls(ec.derive_private_key(value, curve._ec_curve()))

    @property
    def private_key(self) -> ec.EllipticCurvePrivateKey:
        """The underlying ``cryptography`` private key (for CSRs and key files)."""
        return self._key

    def verifying_key(self) -> VerifyingKey:
        """Return the matching public key."""
        return VerifyingKey(self._key.public_key())

    def sign(self, data: bytes, *, deterministic: bool = False) -> bytes:
        """Sign ``data`` and return raw ``r || s``. ``deterministic`` selects RFC 6979."""
        algorithm = ec.ECDSA(self.curve._hash(), deterministic_signing=deterministic)
        der = self._key.sign(data, algorithm)
        r, s = decode_dss_signature(der)
        size = self.curve.size
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")

    def to_pem(self) -> bytes:
        """PKCS#8 PEM, unencrypted: write it only to a file of mode 0600 (see ``save``)."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def save(self, path: Path) -> None:
        """Write the key atomically to ``path`` with mode 0600."""
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.to_pem())
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        """Read a key written by :meth:`save`.

        Raises:
            ConfigurationError: not an EC private key.
        """
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigurationError(f"{path.name} does not hold an EC private key")
        return cls(key)

    def exchange(self, peer: VerifyingKey) -> bytes:
        """ECDH: return the shared secret Z (the x-coordinate)."""
        if peer.curve is not self.curve:
            raise ConfigurationError("ECDH peer key is on another curve")
        return self._key.exchange(ec.ECDH(), peer.public_key)

    def __repr__(self) -> str:
        return f"SigningKey(<redacted {self.curve.value}>)"


_ALGORITHM_IDS = {
    16: bytes.fromhex("60857405080300"),  # aes-128-gcm, 2.16.756.5.8.3.0 (suite 1)
    32: bytes.fromhex("60857405080301"),  # aes-256-gcm, 2.16.756.5.8.3.1 (suite 2)
}


def dlms_kdf(z: bytes, *, party_u: bytes, party_v: bytes, key_length: int = 16) -> SecretKey:
    """Derive a DLMS key from an ECDH secret (SP 800-56A concat KDF, Green Book §9.2.3).

    ``K = Hash(00000001 || Z || AlgorithmID || PartyUInfo || PartyVInfo)``; SHA-256 for
    16-byte keys (suite 1), SHA-384 for 32-byte keys (suite 2); the key is the leftmost
    ``key_length`` bytes.
    """
    if key_length not in _ALGORITHM_IDS:
        raise ConfigurationError("DLMS KDF derives 16- or 32-byte keys")
    algorithm: hashes.HashAlgorithm = hashes.SHA256() if key_length == 16 else hashes.SHA384()
    kdf = ConcatKDFHash(
        algorithm=algorithm,
        length=key_length,
        otherinfo=_ALGORITHM_IDS[key_length] + party_u + party_v,
    )
    return SecretKey(kdf.derive(z))
