"""A witness that cosigns the audit log's tree heads (issue 12 item 10, LOG-4).

The audit key alone can rewrite or drop every entry added since the auditor's last run:
whoever holds it re-signs the heads. A witness — in the spirit of Certificate Transparency
and Sigsum witnesses — is a separate process, ideally on another machine, with a key of its
own and an append-only record of every head it cosigned. It cosigns a head only if

1. the log's signature on it verifies (the witness is configured with the log's public key),
2. it extends the last head the witness cosigned: the log sends the leaf hashes added since,
   and the witness, holding the :class:`~meterguard.audit.merkle.Frontier` of its last head,
   computes the new root itself (linear in what is new; no entry content is sent).

A rewrite of anything the witness has seen is then refused, and the auditor
(:mod:`meterguard.audit.auditor`) trusts only heads that carry the witness's cosignature: a
rewrite needs both keys. Entries not yet in a cosigned head (up to one signing interval) are
reported by the auditor as not covered.

:class:`Witness` is the state (a directory: ``witness-key.pem`` 0600, its ``.pub``, the
log's key, ``seen.json`` and the append-only ``cosigned.jsonl``) and the checks;
:func:`handle` answers one request of the line protocol that ``meterguard audit witness
serve`` speaks on stdin/stdout (one JSON object per line; run it over ssh for a remote
witness). No network listener of its own, no database.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meterguard.audit.log import TreeHead
from meterguard.audit.merkle import Frontier
from meterguard.crypto.ecc import SigningKey, VerifyingKey
from meterguard.errors import AuditProofError, ConfigurationError, SignatureInvalidError
from meterguard.files import atomic_file

__all__ = ["Cosignature", "Witness", "handle"]

_DOMAIN = b"meterguard audit witness cosignature v1\n"
MAX_LEAVES = 1_000_000
"""Leaf hashes one request may carry (a log that grew more is cosigned in steps)."""


@dataclass(frozen=True, slots=True)
class Cosignature:
    """The witness's statement "I saw the log of ``log_key`` at (size, root), at ``at``"."""

    size: int
    root: bytes
    at: int
    signature: bytes

    @staticmethod
    def signed_bytes(log_key: VerifyingKey, size: int, root: bytes, at: int) -> bytes:
        """Domain, the log key's hash, size, root, time."""
        return (
            _DOMAIN
            + hashlib.sha256(log_key.to_bytes()).digest()
            + struct.pack(">Q", size)
            + root
            + struct.pack(">q", at)
        )

    def verify(self, witness_key: VerifyingKey, log_key: VerifyingKey) -> None:
        """Check the cosignature.

        Raises:
            SignatureInvalidError: not the witness's, or for another head or log.
        """
        witness_key.verify(
            self.signature, self.signed_bytes(log_key, self.size, self.root, self.at)
        )

    def to_json(self) -> dict[str, Any]:
        """The wire form."""
        return {
            "size": self.size,
            "root": self.root.hex(),
            "at": self.at,
            "sig": self.signature.hex(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cosignature:
        """Parse the wire form.

        Raises:
            ValueError, KeyError, TypeError: malformed.
        """
        return cls(
            int(data["size"]),
            bytes.fromhex(data["root"]),
            int(data["at"]),
            bytes.fromhex(data["sig"]),
        )


class Witness:
    """One witness's key, its view of one log, and its record."""

    def __init__(self, directory: Path, key: SigningKey, log_key: VerifyingKey) -> None:
        self.directory = directory
        self._key = key
        self.log_key = log_key

    def __repr__(self) -> str:
        return f"Witness({str(self.directory)!r})"

    @property
    def public_key(self) -> VerifyingKey:
        """What auditors pin."""
        return self._key.verifying_key()

    @classmethod
    def init(cls, directory: Path, log_key: VerifyingKey) -> Witness:
        """Create a witness of the log with ``log_key`` (a key of its own; nothing seen yet).

        Raises:
            ConfigurationError: ``directory`` already holds a witness of another log.
        """
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        key_path = directory / "witness-key.pem"
        if key_path.exists():
            w = cls.open(directory)
            if w.log_key != log_key:
                raise ConfigurationError(f"{directory} already witnesses another log")
            return w
        key = SigningKey.generate()
        key.save(key_path)
        (directory / "witness-key.pub").write_text(key.verifying_key().to_bytes().hex() + "\n")
        (directory / "log-key.pub").write_text(log_key.to_bytes().hex() + "\n")
        return cls(directory, key, log_key)

    @classmethod
    def open(cls, directory: Path) -> Witness:
        """Open an existing witness.

        Raises:
            ConfigurationError: no witness there.
        """
        try:
            key = SigningKey.load(directory / "witness-key.pem")
            log_key = VerifyingKey.from_bytes(
                bytes.fromhex((directory / "log-key.pub").read_text().strip())
            )
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"no witness in {directory} ({type(exc).__name__})") from None
        return cls(directory, key, log_key)

    # ------------------------------------------------------------------ state

    def seen(self) -> tuple[Frontier, bytes]:
        """The frontier of the last head cosigned (empty before the first) and its root."""
        path = self.directory / "seen.json"
        if not path.exists():
            f = Frontier()
            return f, f.root()
        try:
            data = json.loads(path.read_text())
            f = Frontier(int(data["size"]), [bytes.fromhex(h) for h in data["frontier"]])
        except (OSError, ValueError, KeyError, TypeError, ConfigurationError) as exc:
            raise ConfigurationError(
                f"the witness state is unreadable ({type(exc).__name__})"
            ) from None
        return f, f.root()

    def cosign(self, head: TreeHead, leaves: Sequence[bytes], *, now: int) -> Cosignature:
        """Cosign ``head`` if it is the log's and extends what this witness saw.

        ``leaves`` are the leaf hashes from the witness's size (see :meth:`seen`) to the
        head's size. One request at a time (a file lock): two logs racing cannot fork it.

        Raises:
            SignatureInvalidError: the head is not signed by the log's key.
            AuditProofError: it does not extend the last head cosigned (a rewrite, a removal,
                a fork) or the leaves do not give its root.
        """
        head.verify(self.log_key)
        with open(self.directory / "lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            frontier, _ = self.seen()
            if head.size < frontier.size:
                raise AuditProofError(
                    f"head {head.size} is smaller than the last head cosigned ({frontier.size})"
                )
            if len(leaves) != head.size - frontier.size:
                raise AuditProofError(
                    f"{len(leaves)} leaves cannot take the log from {frontier.size} to {head.size}"
                )
            for leaf in leaves:
                frontier.append(leaf)
            if frontier.root() != head.root:
                raise AuditProofError(
                    f"head {head.size} is not consistent with the last head cosigned:"
                    " entries were rewritten or removed"
                )
            sig = self._key.sign(Cosignature.signed_bytes(self.log_key, head.size, head.root, now))
            cosig = Cosignature(head.size, head.root, now, sig)
            self._record(cosig, frontier)
        return cosig

    def _record(self, cosig: Cosignature, frontier: Frontier) -> None:
        """Append to the record (fsync), then move the state (atomically)."""
        fd = os.open(
            self.directory / "cosigned.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600
        )
        with os.fdopen(fd, "a") as f:
            f.write(json.dumps(cosig.to_json()) + "\n")
            f.flush()
            os.fsync(f.fileno())
        seen = {"size": frontier.size, "frontier": [h.hex() for h in frontier.hashes]}
        with atomic_file(self.directory / "seen.json") as f:
            f.write(json.dumps(seen).encode())


def handle(witness: Witness, request: dict[str, Any], *, now: int) -> dict[str, Any]:
    """Answer one request of the line protocol; refusals are answers, not exceptions.

    ``{"op": "size"}`` → ``{"size": n, "root": hex}``;
    ``{"op": "cosign", "head": {size, root, at, sig}, "leaves": [hex, …]}`` →
    ``{"cosignature": {…}}``; anything wrong → ``{"error": kind, "detail": text}``.
    """
    op = request.get("op")
    if op == "size":
        frontier, root = witness.seen()
        return {"size": frontier.size, "root": root.hex()}
    if op != "cosign":
        return {"error": "bad_request", "detail": "op must be size or cosign"}
    try:
        h = request["head"]
        head = TreeHead(
            int(h["size"]), bytes.fromhex(h["root"]), int(h["at"]), bytes.fromhex(h["sig"])
        )
        raw = request["leaves"]
        if not isinstance(raw, list) or len(raw) > MAX_LEAVES:
            raise ValueError("leaves must be a list of at most 10^6 hashes")
        leaves = [bytes.fromhex(x) for x in raw]
        if any(len(x) != 32 for x in leaves) or len(head.root) != 32:
            raise ValueError("hashes are 32 bytes")
    except (KeyError, TypeError, ValueError) as exc:
        return {"error": "bad_request", "detail": str(exc)[:200]}
    try:
        return {"cosignature": witness.cosign(head, leaves, now=now).to_json()}
    except SignatureInvalidError:
        return {"error": "not_the_log", "detail": "the head is not signed by the log's key"}
    except AuditProofError as exc:
        return {"error": "inconsistent", "detail": str(exc)}
