"""RFC 9162 Merkle tree hashing, inclusion and consistency proofs and their checks (LOG-2, LOG-4).

Leaf hash ``SHA-256(0x00 || entry)``, node hash ``SHA-256(0x01 || left || right)``, the
tree head ``MTH`` of RFC 9162 §2.1.1 (the empty tree hashes to ``SHA-256("")``), audit
paths (§2.1.3.1) and consistency proofs (§2.1.4.1) produced from the leaf hashes, and the
verification algorithms of §2.1.3.2 and §2.1.4.2, which need only the proof, the sizes and
the roots. Verification failures raise
:class:`~meterguard.errors.AuditProofError`: an auditor that holds an earlier signed tree
head catches a rewritten or deleted entry this way even if the signing key was used to sign
the rewritten log (its new head is not consistent with the old one).

A :class:`Frontier` is the tree's right edge — the roots of its perfect subtrees, one per
set bit of the size (a "compact range" in Trillian's and Sigsum's words). It takes leaves one
at a time and gives the root of the tree so far, so whoever holds the frontier of a verified
head checks a later head by hashing only the entries added since: that is how the auditor
and the witness verify in linear time, and incrementally.

Pure functions over bytes: no IO, no database, no signing (tree heads are signed by the
audit service with its own key). Producing proofs from a list of leaf hashes is linear in
the tree size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from meterguard.errors import AuditProofError, ConfigurationError

__all__ = [
    "EMPTY_ROOT",
    "Frontier",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    """``SHA-256(0x00 || entry)``."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


class Frontier:
    """The right edge of an RFC 9162 tree: append leaves, read the root (both O(log n)).

    Raises:
        ConfigurationError: ``hashes`` does not fit ``size`` (one 32-byte hash per set bit).
    """

    __slots__ = ("_hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != size.bit_count() or any(len(h) != 32 for h in hashes):
            raise ConfigurationError(f"not the frontier of a tree of {size}")
        self.size = size
        self._hashes = list(hashes)

    def __repr__(self) -> str:
        return f"Frontier(size={self.size})"

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The perfect subtrees' roots, largest (leftmost) first."""
        return tuple(self._hashes)

    def copy(self) -> Frontier:
        """An independent frontier of the same tree."""
        return Frontier(self.size, self._hashes)

    def append(self, leaf: bytes) -> None:
        """Add the next leaf *hash*."""
        h, s = leaf, self.size
        while s & 1:  # each trailing one bit is a perfect subtree the new leaf completes
            h = node_hash(self._hashes.pop(), h)
            s >>= 1
        self._hashes.append(h)
        self.size += 1

    def root(self) -> bytes:
        """MTH of the tree so far (RFC 9162 §2.1.1)."""
        if not self._hashes:
            return EMPTY_ROOT
        r = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            r = node_hash(h, r)
        return r


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf *hashes* (RFC 9162 §2.1.1)."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = _split(n)
    return node_hash(root(leaves[:k]), root(leaves[k:]))


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]) over leaf hashes (§2.1.3.1).

    Raises:
        ConfigurationError: ``index`` is not a leaf of the tree.
    """
    if not 0 <= index < len(leaves):
        raise ConfigurationError(f"leaf {index} is not in a tree of {len(leaves)}")
    return _path(leaves, index)


def _path(leaves: Sequence[bytes], m: int) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*_path(leaves[:k], m), root(leaves[k:])]
    return [*_path(leaves[k:], m - k), root(leaves[:k])]


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(old_size, D[n]) over leaf hashes (§2.1.4.1).

    Raises:
        ConfigurationError: ``old_size`` is not between 1 and the tree size.
    """
    if not 0 < old_size <= len(leaves):
        raise ConfigurationError(f"no consistency proof from {old_size} to {len(leaves)}")
    return _subproof(old_size, leaves, complete=True)


def _subproof(m: int, leaves: Sequence[bytes], *, complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete=complete), root(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], complete=False), root(leaves[:k])]


def verify_inclusion(
    entry_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], expected_root: bytes
) -> None:
    """Check that ``entry_hash`` is leaf ``index`` of the tree with ``expected_root`` (§2.1.3.2).

    Raises:
        AuditProofError: the proof does not lead to the root, or does not fit the sizes.
    """
    if not 0 <= index < tree_size:
        raise AuditProofError(f"leaf {index} cannot be in a tree of {tree_size}")
    fn, sn = index, tree_size - 1
    r = entry_hash
    for p in proof:
        if sn == 0:
            raise AuditProofError("inclusion proof longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != expected_root:
        raise AuditProofError(f"entry {index} is not in the tree of {tree_size} with that root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``new_size`` extends the one of ``old_size`` (§2.1.4.2).

    Raises:
        AuditProofError: the new tree rewrote or dropped entries of the old one, or the proof
            does not fit the sizes.
    """
    if not 0 < old_size <= new_size:
        raise AuditProofError(f"no consistency between sizes {old_size} and {new_size}")
    if old_size == new_size:
        if proof or old_root != new_root:
            raise AuditProofError("same size, different trees")
        return
    if not proof:
        raise AuditProofError("empty consistency proof")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise AuditProofError("consistency proof longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != old_root or sr != new_root:
        raise AuditProofError(
            f"the tree of {new_size} is not an extension of the tree of {old_size}"
        )
