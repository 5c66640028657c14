"""The head-end's side of the audit witness: sign heads on a schedule and get them cosigned.

:class:`WitnessLink` runs the witness's command (``meterguard audit witness serve --state
DIR``, or the same behind ``ssh`` on another machine) as a child process and speaks its line
protocol (:func:`meterguard.audit.witness.handle`) over the pipes, each answer awaited at most
``timeout`` seconds. :class:`AuditSigner` signs a tree head when the log grew (LOG-3) and
hands the witness the head and the leaf hashes since the last head it cosigned; the answer's
cosignature is checked and stored. A refusal is a security event (``witness_refused``): it
means the log no longer extends what the witness saw. A dead or silent witness is retried
next time; nothing here blocks the log itself.

It does not judge consistency: the witness does, and the auditor trusts only cosigned heads.
"""

from __future__ import annotations

import json
import logging
import select
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError

from meterguard.audit.log import TreeHead
from meterguard.audit.witness import MAX_LEAVES, Cosignature
from meterguard.crypto.ecc import SigningKey, VerifyingKey
from meterguard.errors import SignatureInvalidError, TransportError
from meterguard.headend.store.repository import Store

__all__ = ["AuditSigner", "WitnessLink"]

log = logging.getLogger(__name__)


class WitnessLink:
    """A witness process and its line protocol."""

    def __init__(self, command: Sequence[str], witness_key: VerifyingKey, *, timeout: float = 10.0):
        self.command = list(command)
        self.witness_key = witness_key
        self.timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"WitnessLink({self.command[:1]!r}…)"

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request, one answer.

        Raises:
            TransportError: the witness is not running, died, or did not answer in time.
        """
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(  # noqa: S603 - the configured witness command
                self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None  # noqa: S101
        try:
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], self.timeout)
            line = proc.stdout.readline() if ready else b""
            if not line:
                raise TransportError("the witness did not answer")
            answer = json.loads(line)
        except (OSError, ValueError) as exc:
            self.close()
            raise TransportError(f"the witness link failed: {type(exc).__name__}") from None
        except TransportError:
            self.close()
            raise
        if not isinstance(answer, dict):
            raise TransportError("the witness answered nonsense")
        return answer

    def cosign(self, store: Store, head: TreeHead, log_key: VerifyingKey) -> Cosignature | str:
        """Have ``head`` cosigned; the cosignature (checked), or the witness's refusal.

        Raises:
            TransportError: the witness is unreachable or answered something unverifiable.
        """
        seen = self._ask({"op": "size"})
        size = int(seen.get("size", -1))
        if not 0 <= size <= head.size:
            return f"the witness has seen {size} entries, more than the log's head {head.size}"
        if head.size - size > MAX_LEAVES:
            return f"{head.size - size} entries since the witness's last head: too many at once"
        answer = self._ask(
            {
                "op": "cosign",
                "head": {
                    "size": head.size,
                    "root": head.root.hex(),
                    "at": head.at,
                    "sig": head.signature.hex(),
                },
                "leaves": [leaf.hex() for leaf in store.audit.leaves(size, head.size)],
            }
        )
        if "error" in answer:
            return f"{answer.get('error')}: {answer.get('detail', '')}"[:300]
        try:
            cosig = Cosignature.from_json(answer["cosignature"])
            cosig.verify(self.witness_key, log_key)
        except (KeyError, TypeError, ValueError, SignatureInvalidError):
            raise TransportError("the witness's answer does not verify") from None
        if (cosig.size, cosig.root) != (head.size, head.root):
            raise TransportError("the witness cosigned another head")
        return cosig

    def close(self) -> None:
        """Stop the witness process (it holds nothing that is not on disk)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


class AuditSigner:
    """Signs tree heads on a schedule and has each cosigned by the witness, if there is one."""

    def __init__(
        self,
        store: Store,
        key: SigningKey,
        *,
        witness: WitnessLink | None = None,
        every: float = 10.0,
    ) -> None:
        self.store = store
        self._key = key
        self.witness = witness
        self.every = every
        self.cosigned = 0
        self.refusals = 0
        self._refusing = False

    def __repr__(self) -> str:
        return f"AuditSigner(every={self.every}, cosigned={self.cosigned})"

    def once(self) -> None:
        """Sign a head if the log grew; have the newest head cosigned if it is not yet."""
        now = int(time.time())
        self.store.audit.sign_head(self._key, now=now)
        if self.witness is None:
            return
        head = self.store.audit.newest_head()
        if head is None or self.store.audit.cosigned_size() >= head.size:
            return
        try:
            result = self.witness.cosign(self.store, head, self._key.verifying_key())
        except TransportError as exc:
            log.warning("audit head %d not cosigned: %s", head.size, exc)
            return
        if isinstance(result, Cosignature):
            self.store.audit.add_cosignature(result)
            self.cosigned += 1
            self._refusing = False
        else:
            self.refusals += 1
            log.error("the witness refused audit head %d: %s", head.size, result)
            if not self._refusing:
                # One event when the witness starts refusing, not one per retry (the event is
                # itself an audit entry, so each would make a new head to refuse).
                self._refusing = True
                self.store.security_event(
                    at=now, event="witness_refused", detail=f"head {head.size}: {result}"
                )

    def run(self, stop: threading.Event) -> None:
        """Sign every ``every`` seconds until ``stop``; one last head on the way out."""
        while not stop.wait(self.every):
            self._guarded()
        self._guarded()
        if self.witness is not None:
            self.witness.close()

    def _guarded(self) -> None:
        try:
            self.once()
        except (OperationalError, InterfaceError) as exc:  # the database is down: next time
            log.warning("audit signing failed: %s", type(exc).__name__)
