"""The audit witness cosigns only the log's own heads, and only heads that extend what it saw."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meterguard.audit.log import TreeHead
from meterguard.audit.merkle import leaf_hash, root
from meterguard.audit.witness import Cosignature, Witness, handle
from meterguard.crypto.ecc import SigningKey
from meterguard.errors import AuditProofError, ConfigurationError, SignatureInvalidError

LEAVES = [leaf_hash(f"entry {i}".encode()) for i in range(40)]


def head(key: SigningKey, leaves: list[bytes], at: int = 1_800_000_000) -> TreeHead:
    return TreeHead(len(leaves), root(leaves), at).sign(key)


@pytest.fixture
def log_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def witness(tmp_path: Path, log_key: SigningKey) -> Witness:
    return Witness.init(tmp_path / "w", log_key.verifying_key())


def test_it_cosigns_a_growing_log_step_by_step(witness: Witness, log_key: SigningKey) -> None:
    a = witness.cosign(head(log_key, LEAVES[:5]), LEAVES[:5], now=1)
    b = witness.cosign(head(log_key, LEAVES[:23]), LEAVES[5:23], now=2)
    for c, n in ((a, 5), (b, 23)):
        assert (c.size, c.root) == (n, root(LEAVES[:n]))
        c.verify(witness.public_key, log_key.verifying_key())
    frontier, r = witness.seen()
    assert (frontier.size, r) == (23, root(LEAVES[:23]))
    record = (witness.directory / "cosigned.jsonl").read_text().splitlines()
    assert [json.loads(x)["size"] for x in record] == [5, 23]
    assert (witness.directory / "witness-key.pem").stat().st_mode & 0o077 == 0
    # Re-opened from disk, it remembers.
    again = Witness.open(witness.directory)
    assert again.seen()[0].size == 23 and again.public_key == witness.public_key


def test_it_refuses_a_rewritten_log(witness: Witness, log_key: SigningKey) -> None:
    witness.cosign(head(log_key, LEAVES[:10]), LEAVES[:10], now=1)
    rewritten = [*LEAVES[:3], leaf_hash(b"edited"), *LEAVES[4:15]]
    # The insider holds the audit key and signs the rewritten head: the witness still refuses.
    with pytest.raises(AuditProofError, match="rewritten or removed"):
        witness.cosign(head(log_key, rewritten), rewritten[10:], now=2)
    removed = LEAVES[:4] + LEAVES[5:15]  # one entry deleted
    with pytest.raises(AuditProofError):
        witness.cosign(head(log_key, removed), removed[10:], now=2)
    with pytest.raises(AuditProofError, match="smaller"):
        witness.cosign(head(log_key, LEAVES[:8]), [], now=2)
    with pytest.raises(AuditProofError, match="leaves cannot take"):
        witness.cosign(head(log_key, LEAVES[:15]), LEAVES[10:14], now=2)
    assert witness.seen()[0].size == 10  # nothing refused moved it


def test_it_cosigns_only_the_logs_own_heads(witness: Witness) -> None:
    other = SigningKey.generate()
    with pytest.raises(SignatureInvalidError):
        witness.cosign(head(other, LEAVES[:5]), LEAVES[:5], now=1)
    assert witness.seen()[0].size == 0


def test_a_cosignature_binds_the_log_and_the_head(witness: Witness, log_key: SigningKey) -> None:
    c = witness.cosign(head(log_key, LEAVES[:5]), LEAVES[:5], now=1)
    with pytest.raises(SignatureInvalidError):
        c.verify(witness.public_key, SigningKey.generate().verifying_key())
    with pytest.raises(SignatureInvalidError):
        Cosignature(c.size, root(LEAVES[:4]), c.at, c.signature).verify(
            witness.public_key, log_key.verifying_key()
        )
    assert Cosignature.from_json(c.to_json()) == c


def test_the_line_protocol(witness: Witness, log_key: SigningKey) -> None:
    assert handle(witness, {"op": "size"}, now=1)["size"] == 0
    h = head(log_key, LEAVES[:3])
    wire = {"size": h.size, "root": h.root.hex(), "at": h.at, "sig": h.signature.hex()}
    ok = handle(
        witness, {"op": "cosign", "head": wire, "leaves": [x.hex() for x in LEAVES[:3]]}, now=1
    )
    Cosignature.from_json(ok["cosignature"]).verify(witness.public_key, log_key.verifying_key())
    assert handle(witness, {"op": "size"}, now=1) == {"size": 3, "root": h.root.hex()}
    for bad in (
        {"op": "delete"},
        {"op": "cosign"},
        {"op": "cosign", "head": wire, "leaves": "00"},
        {"op": "cosign", "head": wire, "leaves": ["zz"]},
        {"op": "cosign", "head": wire, "leaves": ["00" * 31]},
        {"op": "cosign", "head": {**wire, "size": "x"}, "leaves": []},
    ):
        assert handle(witness, bad, now=1)["error"] == "bad_request", bad
    forged = {**wire, "sig": "00" * 64}
    assert handle(witness, {"op": "cosign", "head": forged, "leaves": []}, now=1)["error"] == (
        "not_the_log"
    )


def test_one_directory_witnesses_one_log(tmp_path: Path, log_key: SigningKey) -> None:
    Witness.init(tmp_path / "w", log_key.verifying_key())
    with pytest.raises(ConfigurationError, match="another log"):
        Witness.init(tmp_path / "w", SigningKey.generate().verifying_key())
    with pytest.raises(ConfigurationError, match="no witness"):
        Witness.open(tmp_path / "none")
    (tmp_path / "w" / "seen.json").write_text("{")
    with pytest.raises(ConfigurationError, match="unreadable"):
        Witness.open(tmp_path / "w").seen()
    assert "pem" not in repr(Witness.open(tmp_path / "w"))
