"""The independent auditor of the audit log (LOG-4): `meterguard audit verify`.

:class:`Auditor` reads the log's entries and signed tree heads straight from the database
(its own queries, nothing of the head-end's code) and checks, with only the audit key's
*public* half and a state file of its own:

1. sequence numbers run on without a gap (a deleted row shows here);
2. each entry's leaf hash is the hash of its content (an edited field shows here);
3. each tree head's signature verifies, and its root is the Merkle root of the first
   ``size`` entries — so consecutive heads are consistent, and every entry is included in
   every head that covers it;
4. the newest head extends the head this auditor verified last time (its pinned state),
   signed by the same audit key as then (the state pins the public key too);
5. with a witness key (:mod:`meterguard.audit.witness`), only heads the witness cosigned are
   trusted and pinned: a rewrite then needs the audit key *and* the witness's.

The auditor keeps, with the pinned (size, root), the tree's
:class:`~meterguard.audit.merkle.Frontier` at that size. A run starts from it and hashes
only the entries added since: it is linear in what is new, not in the log (a ``full`` run
re-reads everything, also linear). Check 4 is what catches someone who holds the signing
key: they can rewrite entries and re-sign every head, but no head over a rewritten prefix
extends the pinned frontier. A clean run moves the pin to the newest head. An incremental
run does not re-read the entries the pin covers (it only counts them): an edit of an old
row that nobody re-signed is found by a ``full`` run.

The state file must live where the operators cannot write (a real auditor keeps it on its
own machine). Problems are collected, not raised one at a time, so a report shows everything
wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text

from meterguard.audit.log import AuditEntry, TreeHead
from meterguard.audit.merkle import Frontier
from meterguard.audit.witness import Cosignature
from meterguard.crypto.ecc import VerifyingKey
from meterguard.errors import ConfigurationError, SignatureInvalidError
from meterguard.files import atomic_file

__all__ = ["AuditReport", "Auditor", "Progress", "default_state"]

Progress = Callable[[int, int], None]
"""Called now and then with (entries verified in this run, entries this run will verify)."""

_PROGRESS_EVERY = 50_000
_FETCH = 20_000


@dataclass
class AuditReport:
    """What one audit run saw."""

    entries: int = 0
    """Entries in the log."""
    checked: int = 0
    """Entries this run read and hashed (all of them in a full run, else those since the pin)."""
    heads: int = 0
    pinned_before: int | None = None
    pinned_now: int | None = None
    uncovered: int = 0
    """Entries after the newest trusted head (signed, and cosigned when a witness is set)."""
    unwitnessed: int = 0
    """Heads newer than the pin that verify but that the witness has not cosigned (yet)."""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems

    @property
    def verified(self) -> bool:
        """No problem, and a signed head was checked: there is something to trust."""
        return self.ok and self.pinned_now is not None


def default_state(data: Path) -> Path:
    """Where the auditor of the system in ``data`` keeps its pin, unless told otherwise.

    Outside the data directory, which the operators write: under the auditing user's
    ``$XDG_STATE_HOME`` (``~/.local/state``), one file per data directory.
    """
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    digest = hashlib.sha256(str(data.resolve()).encode()).hexdigest()[:16]
    return base / "meterguard" / "auditor" / f"{digest}.json"


class Auditor:
    """Verifies one database's audit log against a pinned tree head."""

    def __init__(
        self,
        engine: Engine,
        key: VerifyingKey,
        state: Path,
        *,
        witness: VerifyingKey | None = None,
    ) -> None:
        self.engine = engine
        self.key = key
        self.state = state
        self.witness = witness
        """With a witness key, only heads it cosigned are trusted (and pinned)."""

    def __repr__(self) -> str:
        return f"Auditor(state={str(self.state)!r})"

    # ------------------------------------------------------------------ pinned state

    def _pinned(self) -> tuple[int, bytes, Frontier] | None:
        """The pinned head and its frontier.

        Raises:
            ConfigurationError: the state file is unreadable, or its frontier does not give
                its root (edited or corrupt: the auditor trusts nothing it cannot check).
        """
        if not self.state.exists():
            return None
        try:
            data = json.loads(self.state.read_text())
            size, pinned_root = int(data["size"]), bytes.fromhex(data["root"])
            frontier = Frontier(size, [bytes.fromhex(h) for h in data["frontier"]])
            key = bytes.fromhex(data["key"])
            witness = data.get("witness")
        except (OSError, ValueError, KeyError, TypeError, ConfigurationError) as exc:
            raise ConfigurationError(
                f"the auditor's state {self.state} is unreadable ({type(exc).__name__});"
                " restore it from the auditor's own copy"
            ) from None
        if frontier.root() != pinned_root:
            raise ConfigurationError(f"the auditor's state {self.state} is inconsistent")
        if key != self.key.to_bytes():
            raise ConfigurationError(
                "the audit public key is not the one this auditor pinned: someone replaced it,"
                " or the audit key was rotated (then pin afresh with a new state file)"
            )
        mine = self.witness.to_bytes().hex() if self.witness is not None else None
        if witness is not None and witness != mine:
            # Adding a witness to a pin made without one strengthens it; dropping or
            # replacing the pinned witness would let a rewrite past it.
            raise ConfigurationError(
                "the witness key is not the one this auditor pinned"
                + (" (none given)" if mine is None else "")
            )
        return size, pinned_root, frontier

    def _pin(self, head: TreeHead, frontier: Frontier) -> None:
        self.state.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        state: dict[str, Any] = {
            "size": head.size,
            "root": head.root.hex(),
            "at": head.at,
            "frontier": [h.hex() for h in frontier.hashes],
            "key": self.key.to_bytes().hex(),
            "witness": self.witness.to_bytes().hex() if self.witness is not None else None,
        }
        with atomic_file(self.state) as f:
            f.write(json.dumps(state).encode())

    # ------------------------------------------------------------------ the run

    def run(self, *, full: bool = False, progress: Progress | None = None) -> AuditReport:
        """Check the log from the pin (or from the start); pin the newest head if all is well.

        Raises:
            ConfigurationError: the pinned state is unreadable or inconsistent.
        """
        report = AuditReport()
        pinned = self._pinned()
        report.pinned_before = pinned[0] if pinned else None
        pin_size = pinned[0] if pinned else 0
        frontier = Frontier() if full or pinned is None else pinned[2].copy()
        start = frontier.size
        with self.engine.connect() as c:
            report.entries = int(c.scalar(text("SELECT count(*) FROM audit_entries")) or 0)
            report.heads = int(c.scalar(text("SELECT count(*) FROM audit_tree_heads")) or 0)
            newest_size = c.scalar(text("SELECT max(size) FROM audit_tree_heads"))
            heads = [
                TreeHead(int(s), bytes(r), int(a), bytes(g))
                for s, r, a, g in c.execute(
                    text(
                        "SELECT size, root, at, signature FROM audit_tree_heads"
                        " WHERE size >= :start AND size > 0 ORDER BY size"
                    ),
                    {"start": start},
                )
            ]
            if pinned is not None and (newest_size is None or int(newest_size) < pin_size):
                report.problems.append(f"the log shrank below the pinned size {pin_size}")
            if start:
                kept = int(
                    c.scalar(
                        text("SELECT count(*) FROM audit_entries WHERE seq <= :s"), {"s": start}
                    )
                    or 0
                )
                if kept != start:
                    report.problems.append(
                        f"{start - kept} of the {start} pinned entries are missing: deleted"
                    )
            total = max(report.entries - start, 0)
            valid = self._signed(heads, report)
            cosigned = self._cosigned(c, start, report)
            newest: tuple[TreeHead, Frontier] | None = None
            rows = c.execution_options(stream_results=True, yield_per=_FETCH).execute(
                text(
                    "SELECT seq, at, actor, target, action, result, request_id, detail, leaf"
                    " FROM audit_entries WHERE seq > :start ORDER BY seq"
                ),
                {"start": start},
            )
            pending = iter(valid)
            head = next(pending, None)
            while head is not None and head.size == start:  # a head of the pinned size
                if head.root != frontier.root():
                    report.problems.append(
                        f"tree head {head.size} is not consistent with the head of size"
                        f" {pin_size}: entries were rewritten or removed"
                    )
                head = next(pending, None)
            for row in rows:
                n = frontier.size + 1
                if int(row[0]) != n:
                    report.problems.append(f"entry {n} is missing (next is {row[0]}): deleted")
                    break
                entry = AuditEntry(n, int(row[1]), *(str(v) for v in row[2:8]))
                leaf = entry.leaf()
                if leaf != bytes(row[8]):
                    report.problems.append(f"entry {n} does not match its leaf hash: modified")
                frontier.append(leaf)
                report.checked += 1
                if full and pinned is not None and n == pin_size and frontier.root() != pinned[1]:
                    report.problems.append(
                        f"the first {pin_size} entries no longer give the pinned head:"
                        " entries were rewritten or removed"
                    )
                cosig = cosigned.pop(n, None)
                if cosig is not None and cosig.root != frontier.root():
                    report.problems.append(
                        f"the witness cosigned another tree at size {n}: entries were rewritten"
                    )
                while head is not None and head.size == n:
                    if frontier.root() == head.root:
                        if self.witness is None or cosig is not None:
                            newest = (head, frontier.copy())
                        else:
                            report.unwitnessed += 1
                    elif pinned is not None and not full:
                        report.problems.append(
                            f"tree head {head.size} is not consistent with the head of size"
                            f" {pin_size}: entries were rewritten or removed"
                        )
                    else:
                        report.problems.append(
                            f"tree head {head.size}: entries do not give its root"
                        )
                    head = next(pending, None)
                if progress is not None and report.checked % _PROGRESS_EVERY == 0:
                    progress(report.checked, total)
            rows.close()
        for missing in ([head] if head else []) + list(pending):
            report.problems.append(
                f"tree head {missing.size} covers more entries than the log holds ({frontier.size})"
            )
        if progress is not None:
            progress(report.checked, total)
        covered = max(newest[0].size if newest else 0, pin_size if pinned else 0)
        report.uncovered = max(report.entries - covered, 0)
        if report.ok and newest is not None:
            self._pin(*newest)
            report.pinned_now = newest[0].size
        else:
            report.pinned_now = report.pinned_before
        return report

    def _cosigned(self, c: Connection, start: int, report: AuditReport) -> dict[int, Cosignature]:
        """The witness's valid cosignatures from ``start`` on, by size (none without a witness)."""
        if self.witness is None:
            return {}
        out = {}
        for size, root_, at, sig in c.execute(
            text(
                "SELECT size, root, at, signature FROM audit_cosignatures"
                " WHERE size > :start ORDER BY size"
            ),
            {"start": start},
        ):
            cosig = Cosignature(int(size), bytes(root_), int(at), bytes(sig))
            try:
                cosig.verify(self.witness, self.key)
            except SignatureInvalidError:
                report.problems.append(f"the witness's cosignature of size {size} does not verify")
                continue
            out[cosig.size] = cosig
        return out

    def _signed(self, heads: list[TreeHead], report: AuditReport) -> list[TreeHead]:
        """The heads whose signature verifies; a problem for each other one."""
        good = []
        for head in heads:
            try:
                head.verify(self.key)
            except SignatureInvalidError:
                report.problems.append(f"tree head {head.size}: signature does not verify")
                continue
            good.append(head)
        return good
