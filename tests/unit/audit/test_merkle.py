"""RFC 9162 Merkle hashing and proofs: published vectors, every shape of tree, every tampering."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterguard.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from meterguard.errors import AuditProofError, ConfigurationError

# Reference inputs and tree heads of the Certificate Transparency Merkle tree test data
# (google/certificate-transparency, RFC 6962 hashing = RFC 9162 §2.1): roots for sizes 1..8.
LEAVES = [
    bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657")
] + [bytes(range(0x60, 0x70))]
ROOTS = [bytes.fromhex(h) for h in (
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]  # fmt: skip
# Inclusion paths from the same test data: (leaf index, tree size, path).
PATHS = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]  # fmt: skip
HASHES = [leaf_hash(e) for e in LEAVES]


def test_reference_tree_heads() -> None:
    assert (
        root([])
        == EMPTY_ROOT
        == bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    )
    assert [root(HASHES[:n]) for n in range(1, 9)] == ROOTS


@pytest.mark.parametrize(("index", "size", "path"), PATHS)
def test_reference_inclusion_paths(index: int, size: int, path: list[str]) -> None:
    proof = inclusion_proof(HASHES[:size], index)
    assert proof == [bytes.fromhex(h) for h in path]
    verify_inclusion(HASHES[index], index, size, proof, ROOTS[size - 1])
    # From size 1 to 8 the consistency proof is the first leaf's audit path (§2.1.4.1).
    if index == 0:
        assert consistency_proof(HASHES, 1) == proof


@given(st.integers(1, 70), st.data())
def test_every_proof_verifies_and_every_tampering_fails(n: int, data: st.DataObject) -> None:
    hashes = [leaf_hash(i.to_bytes(2, "big")) for i in range(n)]
    top = root(hashes)
    i = data.draw(st.integers(0, n - 1))
    proof = inclusion_proof(hashes, i)
    verify_inclusion(hashes[i], i, n, proof, top)
    with pytest.raises(AuditProofError):
        verify_inclusion(leaf_hash(b"rewritten"), i, n, proof, top)
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1))
        bad = [*proof[:k], bytes(32), *proof[k + 1 :]]
        with pytest.raises(AuditProofError):
            verify_inclusion(hashes[i], i, n, bad, top)
    m = data.draw(st.integers(1, n))
    cproof = consistency_proof(hashes, m)
    old = root(hashes[:m])
    verify_consistency(m, n, old, top, cproof)
    if m < n:
        # The log rewrote entry j before the old head: no proof makes the new head consistent.
        j = data.draw(st.integers(0, m - 1))
        forged = [*hashes[:j], leaf_hash(b"rewritten"), *hashes[j + 1 :]]
        with pytest.raises(AuditProofError):
            verify_consistency(m, n, old, root(forged), consistency_proof(forged, m))
        # ... nor by deleting it and appending another entry to keep the size.
        deleted = [*hashes[:j], *hashes[j + 1 :], leaf_hash(b"filler")]
        with pytest.raises(AuditProofError):
            verify_consistency(m, n, old, root(deleted), consistency_proof(deleted, m))
        with pytest.raises(AuditProofError):
            verify_consistency(m, n, old, top, [])


def test_sizes_are_checked() -> None:
    with pytest.raises(AuditProofError):
        verify_inclusion(HASHES[0], 8, 8, [], ROOTS[7])
    with pytest.raises(AuditProofError):
        verify_consistency(0, 8, EMPTY_ROOT, ROOTS[7], [])
    with pytest.raises(AuditProofError):
        verify_consistency(8, 8, ROOTS[7], ROOTS[6], [])
    verify_consistency(8, 8, ROOTS[7], ROOTS[7], [])


@given(st.lists(st.binary(max_size=8), max_size=70))
def test_the_frontier_gives_every_prefix_root(entries: list[bytes]) -> None:
    hashes = [leaf_hash(e) for e in entries]
    f = Frontier()
    assert f.root() == EMPTY_ROOT
    for n, h in enumerate(hashes, start=1):
        f.append(h)
        assert f.size == n and f.root() == root(hashes[:n])
        again = Frontier(f.size, f.hashes)  # what a pinned state stores and reloads
        assert again.root() == f.root()


def test_frontier_reference_roots_and_shape_checks() -> None:
    f = Frontier()
    for h, expected in zip(HASHES, ROOTS, strict=True):
        f.append(h)
        assert f.root() == expected
    with pytest.raises(ConfigurationError):
        Frontier(3, [HASHES[0]])  # size 3 needs two subtree roots
    with pytest.raises(ConfigurationError):
        Frontier(1, [b"short"])
