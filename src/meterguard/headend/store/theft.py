"""The SQL of the grid and of revenue protection: feeders, their meters, scores, cases.

Every change of a case is one transaction with its audit entry (LOG-1). Scores keep one row
per meter (the latest), so scoring never grows storage. The rules — who may see suspicion,
what a case's states are, how a score is made — are the revenue-protection service's
(:mod:`meterguard.headend.services.theft`); this module only stores.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select, update

from meterguard.headend.store.audit import AuditWriter, Fields
from meterguard.headend.store.models import (
    Alarm,
    Feeder,
    FeederMember,
    TheftCase,
    TheftScore,
)

__all__ = ["CaseView", "FeederView", "ScoreView", "TheftStore"]


@dataclass(frozen=True, slots=True)
class FeederView:
    """A feeder, its feeder meter and the meters behind it."""

    id: int
    name: str
    meter_id: str
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ScoreView:
    """A meter's latest score."""

    meter_id: str
    score: float
    week_end: int
    scored_at: int
    evidence: str


@dataclass(frozen=True, slots=True)
class CaseView:
    """A revenue-protection case."""

    id: int
    meter_id: str
    state: str
    opened_by: str
    opened_at: int
    score: float
    assignee: str | None
    closed_by: str | None
    closed_at: int | None
    outcome: str | None
    note: str


class TheftStore:
    """Grid and revenue-protection rows over one engine."""

    def __init__(self, engine: Engine, audit: AuditWriter) -> None:
        self.engine, self._audit = engine, audit

    def __repr__(self) -> str:
        return "TheftStore()"

    # -- the grid -------------------------------------------------------------------------------

    def put_feeder(
        self, name: str, meter_id: str, members: list[str], *, actor: str, now: int
    ) -> int:
        """Create or update a feeder and set the meters behind it (audited); its id."""
        with self.engine.begin() as conn:
            fid = conn.scalar(select(Feeder.id).where(Feeder.name == name))
            if fid is None:
                fid = conn.scalar(
                    insert(Feeder)
                    .values(name=name, meter_id=meter_id, created_at=now)
                    .returning(Feeder.id)
                )
            conn.execute(delete(FeederMember).where(FeederMember.feeder_id == fid))
            conn.execute(delete(FeederMember).where(FeederMember.meter_id.in_(members)))
            if members:
                conn.execute(
                    insert(FeederMember), [{"meter_id": m, "feeder_id": fid} for m in members]
                )
            self._audit.append_in(
                conn,
                [
                    Fields(
                        at=now, actor=actor, target=meter_id, action="grid.feeder",
                        result="ok", detail=f"{name}: {len(members)} meters",
                    )
                ],
            )  # fmt: skip
        return int(fid or 0)

    def feeders(self) -> list[FeederView]:
        """Every feeder with its members, by name."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Feeder.id, Feeder.name, Feeder.meter_id).order_by(Feeder.name)
            )
            members: dict[int, list[str]] = {}
            for m, f in conn.execute(
                select(FeederMember.meter_id, FeederMember.feeder_id).order_by(
                    FeederMember.meter_id
                )
            ):
                members.setdefault(int(f), []).append(m)
            return [FeederView(int(i), n, m, tuple(members.get(int(i), []))) for i, n, m in rows]

    def fraud_events(self, meters: list[str], since: int) -> list[tuple[str, int, int]]:
        """(meter, code, raised at) of the meters' alarms raised at or after ``since``."""
        if not meters:
            return []
        q = select(Alarm.meter_id, Alarm.code, Alarm.raised_at).where(
            Alarm.meter_id.in_(meters), Alarm.raised_at >= since
        )
        with self.engine.connect() as conn:
            return [(m, int(c), int(t)) for m, c, t in conn.execute(q)]

    # -- scores ---------------------------------------------------------------------------------

    def put_scores(self, rows: list[ScoreView]) -> None:
        """Replace the meters' latest scores."""
        if not rows:
            return
        with self.engine.begin() as conn:
            conn.execute(
                delete(TheftScore).where(TheftScore.meter_id.in_([r.meter_id for r in rows]))
            )
            conn.execute(
                insert(TheftScore),
                [
                    {"meter_id": r.meter_id, "score": r.score, "week_end": r.week_end,
                     "scored_at": r.scored_at, "evidence": r.evidence[:4000]}
                    for r in rows
                ],
            )  # fmt: skip

    def scores(self, limit: int = 100, meter_id: str | None = None) -> list[ScoreView]:
        """The highest scores first."""
        q = select(
            TheftScore.meter_id, TheftScore.score, TheftScore.week_end, TheftScore.scored_at,
            TheftScore.evidence,
        ).order_by(TheftScore.score.desc(), TheftScore.meter_id).limit(limit)  # fmt: skip
        if meter_id is not None:
            q = q.where(TheftScore.meter_id == meter_id)
        with self.engine.connect() as conn:
            return [ScoreView(m, float(s), int(w), int(a), e) for m, s, w, a, e in conn.execute(q)]

    # -- cases ----------------------------------------------------------------------------------

    def open_case(self, meter_id: str, score: float, *, actor: str, note: str, now: int) -> int:
        """A new open case (audited); its id."""
        with self.engine.begin() as conn:
            cid = conn.scalar(
                insert(TheftCase).values(
                    meter_id=meter_id, state="open", opened_by=actor, opened_at=now,
                    score=score, note=note,
                ).returning(TheftCase.id)
            )  # fmt: skip
            self._audit.append_in(
                conn,
                [Fields(at=now, actor=actor, target=meter_id, action="theft.case.open",
                        result="ok", request_id=f"case-{cid}", detail=f"score {score:.3f}")],
            )  # fmt: skip
        return int(cid or 0)

    def move_case(
        self, case_id: int, *, from_states: tuple[str, ...], actor: str, now: int,
        action: str, detail: str, **values: object,
    ) -> str | None:  # fmt: skip
        """Change a case in one of ``from_states`` (audited); its meter, or None."""
        with self.engine.begin() as conn:
            meter = conn.execute(
                update(TheftCase)
                .where(TheftCase.id == case_id, TheftCase.state.in_(from_states))
                .values(**values)
                .returning(TheftCase.meter_id)
            ).scalar()
            if meter is not None:
                self._audit.append_in(
                    conn,
                    [Fields(at=now, actor=actor, target=meter, action=action, result="ok",
                            request_id=f"case-{case_id}", detail=detail[:500])],
                )  # fmt: skip
        return meter

    def cases(self, *, meter_id: str | None = None, limit: int = 200) -> list[CaseView]:
        """Cases, newest first."""
        q = select(
            TheftCase.id, TheftCase.meter_id, TheftCase.state, TheftCase.opened_by,
            TheftCase.opened_at, TheftCase.score, TheftCase.assignee, TheftCase.closed_by,
            TheftCase.closed_at, TheftCase.outcome, TheftCase.note,
        ).order_by(TheftCase.id.desc()).limit(limit)  # fmt: skip
        if meter_id is not None:
            q = q.where(TheftCase.meter_id == meter_id)
        with self.engine.connect() as conn:
            return [CaseView(*r) for r in conn.execute(q)]
