"""The independent auditor of the audit log (LOG-4): `meterguard audit verify`.

:class:`Auditor` reads the log's entries and signed tree heads straight from the database
(its own two queries, nothing of the head-end's code) and checks, with only the audit
key's *public* half and a state file of its own:

1. sequence numbers run 1, 2, … without a gap (a deleted row shows here);
2. each entry's leaf hash is the hash of its content (an edited field shows here);
3. each tree head's signature verifies, and its root is the Merkle root of the first
   ``size`` entries; consecutive heads are consistent (RFC 9162 consistency proofs);
4. the newest head is consistent with the head this auditor verified last time (its
   pinned state), and every entry added since is included in the newest head.

Check 4 is what catches someone who holds the signing key: they can rewrite entries and
re-sign every head, but the auditor's pinned (size, root) cannot be reconciled with the
new tree. A clean run moves the pin to the newest head. The state file must live where
the operators cannot write (a real auditor keeps it on its own machine).

Problems are collected, not raised one at a time, so a report shows everything wrong.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, text

from meterguard.audit.log import AuditEntry, TreeHead
from meterguard.audit.merkle import (
    consistency_proof,
    inclusion_proof,
    root,
    verify_consistency,
    verify_inclusion,
)
from meterguard.crypto.ecc import VerifyingKey
from meterguard.errors import AuditProofError, SignatureInvalidError

__all__ = ["AuditReport", "Auditor"]


@dataclass
class AuditReport:
    """What one audit run saw."""

    entries: int = 0
    heads: int = 0
    pinned_before: int | None = None
    pinned_now: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems


class Auditor:
    """Verifies one database's audit log against a pinned tree head."""

    def __init__(self, engine: Engine, key: VerifyingKey, state: Path) -> None:
        self.engine = engine
        self.key = key
        self.state = state

    def _pinned(self) -> tuple[int, bytes] | None:
        if not self.state.exists():
            return None
        data = json.loads(self.state.read_text())
        return int(data["size"]), bytes.fromhex(data["root"])

    def _pin(self, head: TreeHead) -> None:
        self.state.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state.with_name(self.state.name + ".tmp")
        tmp.write_text(json.dumps({"size": head.size, "root": head.root.hex(), "at": head.at}))
        os.replace(tmp, self.state)

    def run(self) -> AuditReport:
        """Check everything; pin the newest head if nothing is wrong."""
        report = AuditReport()
        with self.engine.connect() as c:
            rows = c.execute(
                text(
                    "SELECT seq, at, actor, target, action, result, request_id, detail, leaf"
                    " FROM audit_entries ORDER BY seq"
                )
            ).all()
            heads = [
                TreeHead(int(s), bytes(r), int(a), bytes(g))
                for s, r, a, g in c.execute(
                    text("SELECT size, root, at, signature FROM audit_tree_heads ORDER BY size")
                )
            ]
        report.entries, report.heads = len(rows), len(heads)
        leaves: list[bytes] = []
        for n, row in enumerate(rows, start=1):
            entry = AuditEntry(int(row[0]), int(row[1]), *(str(v) for v in row[2:8]))
            if entry.seq != n:
                report.problems.append(f"entry {n} is missing (next is {entry.seq}): deleted")
                break
            leaves.append(entry.leaf())
            if entry.leaf() != bytes(row[8]):
                report.problems.append(f"entry {n} does not match its leaf hash: modified")
        previous: TreeHead | None = None
        for head in heads:
            try:
                head.verify(self.key)
            except SignatureInvalidError:
                report.problems.append(f"tree head {head.size}: signature does not verify")
                continue
            if head.size > len(leaves) or root(leaves[: head.size]) != head.root:
                report.problems.append(f"tree head {head.size}: entries do not give its root")
            if previous is not None:
                self._consistent(previous.size, previous.root, head, leaves, report)
            previous = head
        pinned = self._pinned()
        report.pinned_before = pinned[0] if pinned else None
        newest = heads[-1] if heads else None
        if pinned is not None:
            if newest is None or newest.size < pinned[0]:
                report.problems.append(f"the log shrank below the pinned size {pinned[0]}")
            else:
                self._consistent(pinned[0], pinned[1], newest, leaves, report)
        if newest is not None and newest.size <= len(leaves):
            start = pinned[0] if pinned is not None and pinned[0] <= newest.size else 0
            for i in range(start, newest.size):
                try:
                    verify_inclusion(
                        leaves[i],
                        i,
                        newest.size,
                        inclusion_proof(leaves[: newest.size], i),
                        newest.root,
                    )
                except AuditProofError:
                    report.problems.append(f"entry {i + 1} is not included in head {newest.size}")
        if report.ok and newest is not None:
            self._pin(newest)
            report.pinned_now = newest.size
        else:
            report.pinned_now = report.pinned_before
        return report

    @staticmethod
    def _consistent(
        size: int, old_root: bytes, head: TreeHead, leaves: list[bytes], report: AuditReport
    ) -> None:
        if size == 0:
            return  # everything extends the empty log
        try:
            if head.size > len(leaves):
                raise AuditProofError("head larger than the log")
            proof = consistency_proof(leaves[: head.size], size)
            verify_consistency(size, head.size, old_root, head.root, proof)
        except AuditProofError:
            report.problems.append(
                f"tree head {head.size} is not consistent with the head of size {size}:"
                " entries were rewritten or removed"
            )
