"""Audit entries and signed tree heads: what is hashed and what is signed (LOG-1, LOG-3).

An :class:`AuditEntry` is one security-relevant action — UTC time, actor, target, action,
result, request id, detail — with its position ``seq`` (1, 2, …) in the log. Its leaf in
the Merkle tree is ``leaf_hash(canonical bytes)``: compact JSON with sorted keys, so any
change to any field, or a move to another position, changes the leaf.

A :class:`TreeHead` states "the log had ``size`` entries with this root at this time",
signed by the audit key (ECDSA P-256, a key of its own, LOG-3) over a domain-separated
encoding. Pure data and crypto recipes: storing entries is the head-end's store, checking
the whole log is :mod:`meterguard.audit.auditor`.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass

from meterguard.audit.merkle import leaf_hash
from meterguard.crypto.ecc import SigningKey, VerifyingKey

__all__ = ["AuditEntry", "TreeHead"]

_HEAD_DOMAIN = b"meterguard audit tree head v1\n"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One append-only audit record."""

    seq: int
    at: int
    """Unix seconds, UTC."""
    actor: str
    target: str
    action: str
    result: str
    request_id: str = ""
    detail: str = ""

    def canonical(self) -> bytes:
        """The bytes the leaf hash covers."""
        return json.dumps(
            asdict(self), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()

    def leaf(self) -> bytes:
        """RFC 9162 leaf hash of :meth:`canonical`."""
        return leaf_hash(self.canonical())


@dataclass(frozen=True, slots=True)
class TreeHead:
    """A signed statement of the log's size and root at a time."""

    size: int
    root: bytes
    at: int
    signature: bytes = b""

    def signed_bytes(self) -> bytes:
        """Domain tag, size, root, time: what the signature covers."""
        return _HEAD_DOMAIN + struct.pack(">Q", self.size) + self.root + struct.pack(">q", self.at)

    def sign(self, key: SigningKey) -> TreeHead:
        """This head, signed with the audit key."""
        return TreeHead(self.size, self.root, self.at, key.sign(self.signed_bytes()))

    def verify(self, key: VerifyingKey) -> None:
        """Check the signature.

        Raises:
            SignatureInvalidError: not signed by ``key``, or altered.
        """
        key.verify(self.signature, self.signed_bytes())
