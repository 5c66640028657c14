"""The head-end's writer of the audit log: append entries, sign tree heads (LOG-1…3).

:class:`AuditWriter` appends :class:`~meterguard.audit.log.AuditEntry` rows with
consecutive sequence numbers and their RFC 9162 leaf hashes, inside the caller's
transaction when there is one (so an alarm and its audit entry commit together), and
signs tree heads with the audit key. A batch of entries costs one sequence lookup and one
multi-row insert. On PostgreSQL every write runs as the append-only
role ``meterguard_audit_writer`` (migration 0003), which may insert and read but never
update or delete (LOG-2); appends are serialised by an advisory lock so sequence numbers
never collide across worker processes.

It does not verify anything: that is the independent
:class:`~meterguard.audit.auditor.Auditor`. The writer keeps the tree's
:class:`~meterguard.audit.merkle.Frontier` at its last head, so signing a head reads and
hashes only the entries added since (it starts from the beginning once per process, or when
another process signed in between).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NotRequired, TypedDict

from sqlalchemy import ColumnElement, Connection, Engine, func, insert, select, update

from meterguard.audit.log import AuditEntry, TreeHead
from meterguard.audit.merkle import Frontier
from meterguard.audit.witness import Cosignature
from meterguard.crypto.ecc import SigningKey
from meterguard.headend.store.models import (
    AuditCosignature,
    AuditRecord,
    AuditTreeHead,
    Quarantined,
    SecurityEvent,
)
from meterguard.logs import REQUEST_ID

__all__ = ["SUMMARY_WINDOW", "AuditWriter", "Fields", "count_in_window"]

SUMMARY_WINDOW = 300
"""Seconds over which repeated refusals of one meter and kind are one row with a count."""

_LOCK = 7_295_002


class Fields(TypedDict):
    """An entry before it has its sequence number."""

    at: int
    actor: str
    target: str
    action: str
    result: str
    request_id: NotRequired[str]
    detail: NotRequired[str]


def count_in_window(
    conn: Connection,
    table: type[SecurityEvent] | type[Quarantined],
    match: ColumnElement[bool],
    *,
    meter_id: str | None,
    count: int,
    now: int,
) -> bool:
    """Add ``count`` to the meter's open summary row matching ``match``; False if none.

    A row is open for ``SUMMARY_WINDOW`` seconds after it was first written; without one the
    caller writes a new row. This keeps repeats at one row per meter, kind and window.
    """
    row = conn.execute(
        select(table.id)
        .where(
            table.meter_id.is_(None) if meter_id is None else table.meter_id == meter_id,
            match,
            table.at > now - SUMMARY_WINDOW,
        )
        .order_by(table.id.desc())
        .limit(1)
    ).scalar()
    if row is None:
        return False
    conn.execute(
        update(table).where(table.id == row).values(count=table.count + count, last_at=now)
    )
    return True


class AuditWriter:
    """Appends to the audit log of one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pg = engine.dialect.name == "postgresql"
        self._frontier = Frontier()

    def __repr__(self) -> str:
        return f"AuditWriter({self.engine.url.render_as_string(hide_password=True)})"

    def _enter(self, conn: Connection) -> None:
        """Take the log's write lock before the next sequence number is read (LOG-2).

        Without it two writers read the same ``max(seq)`` and one entry is lost to the
        unique constraint. PostgreSQL: an advisory lock, as the append-only role. SQLite:
        a write statement (that changes nothing) takes the database's write lock first.
        """
        if self._pg:
            conn.exec_driver_sql("SET LOCAL ROLE meterguard_audit_writer")
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK})")
        else:
            conn.exec_driver_sql("UPDATE audit_tree_heads SET size = size WHERE 0")

    def _leave(self, conn: Connection) -> None:
        if self._pg:
            conn.exec_driver_sql("RESET ROLE")

    def append_in(self, conn: Connection, entries: Sequence[Fields]) -> list[AuditEntry]:
        """Append entries, in order, inside the caller's transaction; return them numbered.

        An entry without a ``request_id`` gets the current request's (``logs.REQUEST_ID``).
        """
        if not entries:
            return []
        current = REQUEST_ID.get()
        self._enter(conn)
        try:
            last = int(conn.scalar(select(func.coalesce(func.max(AuditRecord.seq), 0))) or 0)
            out = [
                AuditEntry(
                    last + n,
                    f["at"],
                    f["actor"],
                    f["target"],
                    f["action"],
                    f["result"],
                    f.get("request_id") or current,
                    f.get("detail", "")[:1000],
                )
                for n, f in enumerate(entries, start=1)
            ]
            conn.execute(
                insert(AuditRecord),
                [{**dataclasses.asdict(e), "leaf": e.leaf()} for e in out],
            )
        finally:
            self._leave(conn)
        return out

    def append(
        self,
        *,
        at: int,
        actor: str,
        target: str,
        action: str,
        result: str,
        request_id: str = "",
        detail: str = "",
    ) -> AuditEntry:
        """Append one entry in a transaction of its own."""
        entry = Fields(
            at=at,
            actor=actor,
            target=target,
            action=action,
            result=result,
            request_id=request_id,
            detail=detail,
        )
        with self.engine.begin() as conn:
            return self.append_in(conn, [entry])[0]

    def sign_head(self, key: SigningKey, *, now: int) -> TreeHead | None:
        """Sign and store a tree head over the whole log, unless the log did not grow."""
        with self.engine.begin() as conn:
            self._enter(conn)
            try:
                last = conn.execute(
                    select(AuditTreeHead.size, AuditTreeHead.root)
                    .order_by(AuditTreeHead.size.desc())
                    .limit(1)
                ).first()
                f = self._frontier.copy()
                if last is not None and (f.size, f.root()) != (int(last[0]), bytes(last[1])):
                    f = Frontier()  # someone else signed since: start from the beginning
                for leaf in conn.scalars(
                    select(AuditRecord.leaf)
                    .where(AuditRecord.seq > f.size)
                    .order_by(AuditRecord.seq)
                    .execution_options(yield_per=20_000)
                ):
                    f.append(bytes(leaf))
                if f.size == 0 or (last is not None and int(last[0]) == f.size):
                    return None
                head = TreeHead(f.size, f.root(), now).sign(key)
                conn.execute(
                    insert(AuditTreeHead).values(
                        size=head.size, root=head.root, at=head.at, signature=head.signature
                    )
                )
            finally:
                self._leave(conn)
        self._frontier = f
        return head

    def security_event_in(
        self,
        conn: Connection,
        *,
        at: int,
        event: str,
        detail: str,
        meter_id: str | None = None,
        target: str | None = None,
        count: int = 1,
        summarise: bool = False,
        actor: str = "headend",
        result: str = "detected",
    ) -> None:
        """A security event and its audit entry, in the caller's transaction.

        The one place security events are written (the detail must hold no key material).
        With ``summarise``, ``count`` repeats of (meter, event) within ``SUMMARY_WINDOW``
        seconds of the row that opened the window are added to that row's count: one row and
        one audit entry per meter, event and window, however many arrive.
        """
        if summarise and count_in_window(
            conn,
            SecurityEvent,
            SecurityEvent.event == event,
            meter_id=meter_id,
            count=count,
            now=at,
        ):
            return
        conn.execute(
            insert(SecurityEvent).values(
                at=at, meter_id=meter_id, event=event, detail=detail[:1000], count=count, last_at=at
            )
        )
        self.append_in(
            conn,
            [
                Fields(
                    at=at,
                    actor=actor,
                    target=target if target is not None else meter_id or "",
                    action=event,
                    result=result,
                    detail=detail
                    + (f" (repeats within {SUMMARY_WINDOW} s are counted on the event)"
                       if summarise else ""),
                )
            ],
        )  # fmt: skip

    # ------------------------------------------------------------------ witness

    def newest_head(self) -> TreeHead | None:
        """The newest signed tree head."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(
                    AuditTreeHead.size,
                    AuditTreeHead.root,
                    AuditTreeHead.at,
                    AuditTreeHead.signature,
                )
                .order_by(AuditTreeHead.size.desc())
                .limit(1)
            ).first()
        return (
            None
            if row is None
            else TreeHead(int(row[0]), bytes(row[1]), int(row[2]), bytes(row[3]))
        )

    def leaves(self, after: int, upto: int) -> list[bytes]:
        """Leaf hashes of entries ``after`` < seq ≤ ``upto``, in order (what a witness needs)."""
        with self.engine.connect() as conn:
            return [
                bytes(b)
                for b in conn.scalars(
                    select(AuditRecord.leaf)
                    .where(AuditRecord.seq > after, AuditRecord.seq <= upto)
                    .order_by(AuditRecord.seq)
                )
            ]

    def add_cosignature(self, cosig: Cosignature) -> None:
        """Store a witness's cosignature (once per head size)."""
        with self.engine.begin() as conn:
            self._enter(conn)
            try:
                exists = conn.scalar(
                    select(AuditCosignature.size).where(AuditCosignature.size == cosig.size)
                )
                if exists is None:
                    conn.execute(
                        insert(AuditCosignature).values(
                            size=cosig.size, root=cosig.root, at=cosig.at, signature=cosig.signature
                        )
                    )
            finally:
                self._leave(conn)

    def cosigned_size(self) -> int:
        """Size of the newest head the witness cosigned (0: none)."""
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.coalesce(func.max(AuditCosignature.size), 0))) or 0)
