"""Tamper-evident audit log (LOG-1…4): Merkle tree hashing and proofs, tree heads, auditor."""
