"""Revenue protection over a real SQLite store: who sees suspicion, cases, scoring from readings.

The readings are register values every 15 minutes as ingest stores them, made from a small
synthetic feeder (the feeder meter measures the homes' draw plus losses) in which one home
under-registers (h1) from day 21. The service turns them into hourly series, scores them
with the fused detector (trained on other synthetic homes) and keeps one score a meter.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from meterguard.analytics.theft.detect import train
from meterguard.analytics.theft.synthetic import population
from meterguard.errors import AccessDeniedError, ConflictError, InvalidValueError, NotFoundError
from meterguard.headend.services.accounts import Principal
from meterguard.headend.services.theft import RevenueProtection
from meterguard.headend.store.db import open_database
from meterguard.headend.store.repository import ReadingRow, Store
from meterguard.headend.store.theft import TheftStore
from meterguard.identity import system_title

RITA = Principal(1, "rita", "investigator")
OLGA = Principal(2, "olga", "operator")
ALICE = Principal(3, "alice", "consumer")
DAY = 86400
T0 = 1_767_225_600  # 2026-01-01


def _ids(n: int) -> list[str]:
    return [f"MGD{k:010d}" for k in range(1, n + 1)]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> tuple[RevenueProtection, Store]:
    path = Path(tmp_path_factory.mktemp("theft")) / "db.sqlite"
    store = Store(open_database(f"sqlite:///{path}"))
    pop = population(9, seed=3, days=35, slots=96, prevalence=0.0, feeder_size=(9, 9))
    ids = _ids(10)
    for mid in ids:
        store.registry.add_meter(
            mid, serial=mid[3:], system_title=system_title(int(mid[3:])), now=T0
        )
    reported = pop.truth.astype(np.float64).copy()
    reported[2, 21:] *= 0.4  # home 3 under-registers from day 21 (h1, alpha 0.4)
    feeder = pop.feeder[0].astype(np.float64)
    imports = [*reported, np.maximum(feeder, 0.0)]
    exports = [*pop.export.astype(np.float64), np.maximum(-feeder, 0.0)]
    rows = []
    for mid, imp, exp in zip(ids, imports, exports, strict=True):
        i_reg, e_reg = (
            np.concatenate([[1e6], 1e6 + np.cumsum(kwh.reshape(-1) * 1000.0)]) for kwh in (imp, exp)
        )
        rows += [
            ReadingRow(mid, T0 + q * 900 - 900, int(i_reg[q]), int(e_reg[q]), T0)
            for q in range(len(i_reg))
        ]
    store.add_readings(rows)
    svc = RevenueProtection(
        TheftStore(store.engine, store.audit), store.readings, scorer=lambda: train(60, days=84)
    )
    svc.set_feeder("feeder-1", ids[-1], ids[:-1], actor="test", now=T0)
    return svc, store


def test_only_investigators_see_suspicion(service: tuple[RevenueProtection, Store]) -> None:
    svc, _ = service
    for who in (OLGA, ALICE):
        with pytest.raises(AccessDeniedError):
            svc.suspects(who)
        with pytest.raises(AccessDeniedError):
            svc.open_case(who, "MGD0000000003", note="", now=T0)
        with pytest.raises(AccessDeniedError):
            svc.cases(who)
    assert [f.name for f in svc.feeders(OLGA)] == ["feeder-1"]
    with pytest.raises(AccessDeniedError):
        svc.feeders(ALICE)
    with pytest.raises(InvalidValueError):
        svc.set_feeder("f", "MGD0000000001", ["MGD0000000001"], actor="t", now=T0)


def test_the_thief_scores_highest_from_stored_readings(
    service: tuple[RevenueProtection, Store],
) -> None:
    svc, _ = service
    assert svc.score(meter_now=T0 + 35 * DAY + 600, now=T0) == 9
    ranked = svc.suspects(RITA)
    assert ranked[0].meter_id == "MGD0000000003", [(s.meter_id, s.score) for s in ranked]
    assert ranked[0].score > 0.5 > ranked[1].score
    e = ranked[0].evidence
    assert e["feeder"] == "feeder-1" and float(e["feeder_gap"]) > 0.01  # type: ignore[arg-type]
    assert len(e["week_kwh"]) == 7  # type: ignore[arg-type]
    # Scoring again replaces, never adds: one row a meter.
    svc.score(meter_now=T0 + 35 * DAY + 600, now=T0 + 1)
    assert len(svc.suspects(RITA, limit=500)) == 9
    assert "MGD0000000010" not in {s.meter_id for s in ranked}  # the feeder meter


def test_a_case_is_opened_assigned_and_closed(service: tuple[RevenueProtection, Store]) -> None:
    svc, store = service
    if not svc.suspects(RITA):
        svc.score(meter_now=T0 + 35 * DAY + 600, now=T0)
    with pytest.raises(NotFoundError):
        svc.open_case(RITA, "MGD0000000099", note="", now=T0)
    case = svc.open_case(RITA, "MGD0000000003", note="inspect", now=T0)
    with pytest.raises(ConflictError):
        svc.open_case(RITA, "MGD0000000003", note="again", now=T0)
    svc.assign(RITA, case, "rita", now=T0 + 1)
    with pytest.raises(InvalidValueError):
        svc.close(RITA, case, "guilty", note="", now=T0 + 2)
    svc.close(RITA, case, "confirmed", note="shunt in the meter box", now=T0 + 2)
    with pytest.raises(NotFoundError):
        svc.close(RITA, case, "confirmed", note="", now=T0 + 3)
    (c,) = [c for c in svc.cases(RITA) if c.id == case]
    assert (c.state, c.outcome, c.assignee, c.closed_by) == ("closed", "confirmed", "rita", "rita")
    with store.engine.connect() as conn:
        trail = [
            (a, actor)
            for a, actor in conn.execute(
                text("SELECT action, actor FROM audit_entries WHERE action LIKE 'theft.case%'")
            )
        ]
    assert trail == [
        ("theft.case.open", "rita"),
        ("theft.case.assign", "rita"),
        ("theft.case.close", "rita"),
    ]
    assert json.dumps(svc.suspects(RITA)[0].evidence)
