"""The fleet's grid: feeder meters measure what their homes drew; thieves register less."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from meterguard.errors import ConfigurationError
from meterguard.meter.fleet import Fleet

START = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)


def _fleet() -> Fleet:
    fleet = Fleet.create(7, now=START)
    assert fleet.use_grid(homes_per_feeder=6) == [6]
    return fleet


def test_the_feeder_meter_measures_the_homes_and_the_losses() -> None:
    fleet = _fleet()
    before = fleet.a["import_wh"].copy()
    fleet.step(START + dt.timedelta(days=2))
    homes = fleet.a["true_wh"][:6] - before[:6]
    feeder = fleet.a["import_wh"][6] - before[6]
    # Honest homes register what they drew (no creep threshold here, no limiter).
    assert np.allclose(fleet.a["import_wh"][:6] - before[:6], homes)
    losses = feeder + fleet.a["export_wh"][6] - (homes.sum() - (fleet.a["export_wh"][:6]).sum())
    assert 0.005 * homes.sum() < losses < 0.08 * homes.sum()  # no-load + load losses, noise


def test_a_thief_registers_less_while_the_feeder_still_sees_the_draw() -> None:
    fleet, honest = _fleet(), _fleet()
    honest.a["keys"][:] = fleet.a["keys"]
    fleet.steal(2, "h1", seed=7)
    assert fleet.theft(2) == "h1"
    start = float(fleet.a["import_wh"][2])
    for f in (fleet, honest):
        f.step(START + dt.timedelta(days=3))
    registered = fleet.a["import_wh"][2] - start
    drawn = fleet.a["true_wh"][2] - start
    assert drawn == pytest.approx(honest.a["true_wh"][2] - start)
    assert registered < 0.85 * drawn  # h1: alpha <= 0.8 of what was drawn
    assert fleet.a["import_wh"][6] == pytest.approx(honest.a["import_wh"][6])  # same physics


def test_a_vacation_draws_base_load_and_shows_on_the_feeder_too() -> None:
    fleet, honest = _fleet(), _fleet()
    fleet.vacation(1, 3)
    for f in (fleet, honest):
        f.step(START + dt.timedelta(days=3))
    assert fleet.a["true_wh"][1] < honest.a["true_wh"][1]
    assert fleet.a["import_wh"][1] == pytest.approx(fleet.a["true_wh"][1])  # honest: no gap
    assert fleet.a["import_wh"][6] < honest.a["import_wh"][6]


def test_feeder_meters_do_not_steal_and_unknown_models_are_refused() -> None:
    fleet = _fleet()
    with pytest.raises(ConfigurationError, match="feeder meter"):
        fleet.steal(6, "h1", seed=1)
    with pytest.raises(ConfigurationError, match="no theft model"):
        fleet.steal(0, "h9", seed=1)
    with pytest.raises(ConfigurationError, match="does not simulate"):
        fleet.steal(0, "substitute", seed=1)
    with pytest.raises(ConfigurationError, match="probability"):
        fleet.steal(0, "h1", seed=1, evidence=1.5)
    assert fleet.theft(0) is None  # nothing changed
    with pytest.raises(ConfigurationError, match="vacation"):
        fleet.vacation(0, 0)


def test_the_grid_and_the_theft_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "fleet.npz"
    fleet = Fleet.create(7, now=START, path=path)
    fleet.use_grid(6)
    fleet.steal(3, "h2", seed=3)
    again = Fleet.load(path)
    assert again.feeder_of(3) == 6 and again.theft(3) == "h2"
    assert again.use_grid(6) == [6]  # kept, not redrawn
