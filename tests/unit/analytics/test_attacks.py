"""The theft models have the forms of ANALYTICS.md §1.3 (Jokar h1-h6, extended, evasive)."""

from __future__ import annotations

import numpy as np
import pytest

from meterguard.analytics.theft.attacks import BASIC, EVASIVE, EXTENDED, MODELS, apply, draw
from meterguard.errors import ConfigurationError

RNG = np.random.default_rng(5)
X = RNG.uniform(0.1, 3.0, size=(7, 24))


def _run(name: str, x: np.ndarray = X, **kw: object) -> tuple[np.ndarray, dict[str, float]]:
    rng = np.random.default_rng(1)
    params = draw(name, rng, x.shape[1])
    return apply(name, x, rng, params, **kw), params  # type: ignore[arg-type]


def test_the_sets_are_the_protocol_s() -> None:
    assert BASIC == ("h1", "h2", "h3", "h4", "h5", "h6")
    assert len(EXTENDED) == 7 and EVASIVE == ("band", "profile")
    assert set(MODELS) == set(BASIC + EXTENDED + EVASIVE)


def test_h1_scales_by_one_alpha_for_the_whole_attack() -> None:
    y, p = _run("h1")
    assert 0.1 <= p["alpha"] <= 0.8
    assert np.allclose(y, p["alpha"] * X)


def test_h2_switches_off_a_window_of_at_least_four_hours() -> None:
    y, p = _run("h2")
    s, n = int(p["start"]), int(p["length"])
    assert n >= 4 and s + n <= 24
    assert (y[:, s : s + n] == 0).all()
    keep = np.ones(24, dtype=bool)
    keep[s : s + n] = False
    assert np.allclose(y[:, keep], X[:, keep])


def test_h3_h4_h5_h6() -> None:
    y3, _ = _run("h3")
    ratio = y3 / X
    assert (ratio >= 0.1).all() and (ratio <= 0.8).all() and ratio.std() > 0.1
    y4, _ = _run("h4")
    r4 = y4 / X.mean(axis=1, keepdims=True)
    assert (r4 >= 0.1).all() and (r4 <= 0.8).all()
    y5, _ = _run("h5")
    assert np.allclose(y5, X.mean(axis=1, keepdims=True)) and np.allclose(y5.sum(), X.sum())
    y6, _ = _run("h6")
    assert np.allclose(y6, X[:, ::-1])


def test_extended_models() -> None:
    assert (_run("zero")[0] == 0).all()
    cap = _run("cap")[0]
    assert np.allclose(cap.max(axis=1), 0.6 * X.max(axis=1))
    shifted = _run("peakshift")[0]
    assert np.allclose(shifted.sum(axis=1), X.sum(axis=1))  # energy moved, not removed
    assert (shifted[:, 17:21] < X[:, 17:21]).all()
    ramp, p = _run("progressive", offset=np.arange(7), duration=7)
    assert np.allclose(ramp[0], X[0]) and np.allclose(ramp[-1], X[-1] * (1 - p["max"]))
    donor = RNG.uniform(0.0, 0.5, size=X.shape)
    sub, p = _run("substitute", donor=donor)
    assert sub.sum() == pytest.approx(p["share"] * X.sum())
    with pytest.raises(ConfigurationError, match="donor"):
        _run("substitute")


def test_the_band_attack_stays_inside_its_own_forecast_band_and_under_the_truth() -> None:
    history = RNG.uniform(0.5, 2.0, size=(28, 24))
    y, _ = _run("band", history=history)
    assert (y <= X + 1e-12).all()
    assert (y >= 0.3 * history.mean(axis=0) - 1e-9).all() or (y == X).any()
    assert y.sum() < X.sum()
    with pytest.raises(ConfigurationError, match="history"):
        _run("band")


def test_the_profile_attack_keeps_its_own_shape() -> None:
    history = np.tile(np.linspace(0.5, 2.0, 24), (28, 1))
    y, p = _run("profile", history=history)
    assert np.corrcoef(y.mean(axis=0), history.mean(axis=0))[0, 1] > 0.95
    assert y.mean() == pytest.approx(p["beta"] * history.mean(), rel=0.1)


def test_an_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="no theft model 'h7'"):
        _run("h7")
