"""False-data-injection theft models: what a stealing meter reports instead of what was drawn.

Each model maps days of true slot energies ``x`` (shape ``(days, T)``, ``T`` slots a day:
24 hourly in the evaluation, 96 quarter-hours in the fleet) to the reported energies. The
forms are ANALYTICS.md §1.3: Jokar et al. 2016 h1-h6 as commonly re-implemented, the
extended stress set (Chuwa & Wang 2021) and two evasive attacks in the spirit of F-DETA
(Krishna et al. 2016): ``band`` reports the lower edge of a forecaster's band built from
its own recent history (the "integrated ARIMA" idea: the band follows the reported values
down), and ``profile`` reports its own average weekly shape, scaled down, so shape checks
pass.

Parameters that the protocol keeps fixed for a whole attack (h1's alpha, h2's window, the
ramp's end) are drawn once by :func:`draw`; per-reading ones (h3's gamma_t) come from the
generator at each call. A model is pure: the same generator state gives the same output.
``physical`` models are done with a hand on the meter (a shunt, a bypass, a magnet) and
leave tamper evidence with some probability; the others are done to the meter's data or
firmware and leave configuration-change or failed-login events instead (§3.1.5).

This module does not decide who steals or when (:mod:`.synthetic` and the fleet do).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from meterguard.errors import ConfigurationError

__all__ = [
    "BASIC",
    "EVASIVE",
    "EXTENDED",
    "MODELS",
    "TheftModel",
    "apply",
    "draw",
    "model",
]

Days = npt.NDArray[np.float64]
Kind = Literal["physical", "cyber"]


@dataclass(frozen=True, slots=True)
class TheftModel:
    """One attack model: its name, how it is done and what it models."""

    name: str
    kind: Kind
    family: Literal["jokar", "extended", "evasive"]
    description: str


MODELS: dict[str, TheftModel] = {
    m.name: m
    for m in (
        TheftModel(
            "h1", "physical", "jokar", "constant under-registration: alpha*x, alpha ~ U(0.1, 0.8)"
        ),
        TheftModel("h2", "physical", "jokar", "off or bypassed for a window of at least 4 h a day"),
        TheftModel(
            "h3",
            "physical",
            "jokar",
            "time-varying under-reporting: gamma_t*x, gamma_t ~ U(0.1, 0.8)",
        ),
        TheftModel("h4", "cyber", "jokar", "random fractions of the day's mean: gamma_t*mean(x)"),
        TheftModel("h5", "cyber", "jokar", "flattened profile, the day's mean"),
        TheftModel("h6", "cyber", "jokar", "the day reversed (load moved to cheap hours)"),
        TheftModel("zero", "physical", "extended", "nothing registered"),
        TheftModel("cap", "physical", "extended", "peak capping at 0.6 of the day's maximum"),
        TheftModel("subtract", "cyber", "extended", "a constant subtracted from every slot"),
        TheftModel("progressive", "cyber", "extended", "theft ramping from 0 to 30-100%"),
        TheftModel("substitute", "cyber", "extended", "another home's profile (≤ 40% of the use)"),
        TheftModel(
            "intermittent", "physical", "extended", "random slots zeroed (a switched bypass)"
        ),
        TheftModel("peakshift", "cyber", "extended", "30% of the evening peak spread elsewhere"),
        TheftModel("band", "cyber", "evasive", "the lower edge of its own forecast band"),
        TheftModel("profile", "cyber", "evasive", "its own average weekly shape, scaled down"),
    )
}
BASIC = tuple(n for n, m in MODELS.items() if m.family == "jokar")
EXTENDED = tuple(n for n, m in MODELS.items() if m.family == "extended")
EVASIVE = tuple(n for n, m in MODELS.items() if m.family == "evasive")


def model(name: str) -> TheftModel:
    """The model called ``name``.

    Raises:
        ConfigurationError: no such model (the message lists them).
    """
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigurationError(
            f"no theft model {name!r}: choose one of {', '.join(MODELS)}"
        ) from None


def draw(name: str, rng: np.random.Generator, slots: int) -> dict[str, float]:
    """The parameters a model keeps for the whole attack (``slots`` slots a day)."""
    model(name)
    min_off = slots // 6  # h2: at least 4 h off
    if name == "h1":
        return {"alpha": float(rng.uniform(0.1, 0.8))}
    if name == "h2":
        ts = int(rng.integers(0, slots - min_off + 1))
        return {"start": ts, "length": int(rng.integers(min_off, slots - ts + 1))}
    if name == "subtract":
        return {"fraction": float(rng.uniform(0.3, 0.8))}
    if name == "progressive":
        return {"max": float(rng.uniform(0.3, 1.0))}
    if name == "intermittent":
        return {"p": float(rng.uniform(0.3, 0.7))}
    if name == "band":
        return {"z": float(rng.uniform(1.0, 2.0))}
    if name == "profile":
        return {"beta": float(rng.uniform(0.5, 0.85))}
    if name == "substitute":
        return {"share": float(rng.uniform(0.15, 0.4))}
    return {}


def apply(
    name: str,
    x: Days,
    rng: np.random.Generator,
    params: dict[str, float],
    *,
    history: Days | None = None,
    offset: npt.NDArray[np.int64] | None = None,
    duration: int = 1,
    donor: Days | None = None,
) -> Days:
    """What a meter under model ``name`` reports for the true days ``x`` (shape (days, T)).

    ``history``: the reported days before these (at least one), for the evasive models;
    ``offset``: each day's number since the attack started, and ``duration`` its length in
    days, for the progressive ramp; ``donor``: another home's true days, for substitution.

    Raises:
        ConfigurationError: an unknown model, or context a model needs is missing.
    """
    model(name)
    x = np.asarray(x, dtype=np.float64)
    days, slots = x.shape
    mean = x.mean(axis=1, keepdims=True)
    if name == "h1":
        return x * params["alpha"]
    if name == "h2":
        y = x.copy()
        s = int(params["start"])
        y[:, s : s + int(params["length"])] = 0.0
        return y
    if name == "h3":
        return x * rng.uniform(0.1, 0.8, size=x.shape)
    if name == "h4":
        return np.asarray(mean * rng.uniform(0.1, 0.8, size=x.shape), dtype=np.float64)
    if name == "h5":
        return np.repeat(mean, slots, axis=1)
    if name == "h6":
        return x[:, ::-1].copy()
    if name == "zero":
        return np.zeros_like(x)
    if name == "cap":
        return np.asarray(np.minimum(x, 0.6 * x.max(axis=1, keepdims=True)), dtype=np.float64)
    if name == "subtract":
        return np.asarray(np.maximum(x - params["fraction"] * mean, 0.0), dtype=np.float64)
    if name == "progressive":
        if offset is None:
            raise ConfigurationError("the progressive model needs each day's offset")
        ramp = np.clip(offset / max(duration - 1, 1), 0.0, 1.0) * params["max"]
        return x * (1.0 - ramp[:, None])
    if name == "intermittent":
        return x * (rng.random(x.shape) >= params["p"])
    if name == "peakshift":
        peak = np.zeros(slots, dtype=bool)
        peak[slots * 17 // 24 : slots * 21 // 24] = True
        cut = 0.3 * x[:, peak]
        y = x.copy()
        y[:, peak] -= cut
        y[:, ~peak] += cut.sum(axis=1, keepdims=True) / int((~peak).sum())
        return y
    if name == "substitute":
        if donor is None:
            raise ConfigurationError("the substitution model needs a donor's days")
        scale = params["share"] * x.sum() / max(float(donor.sum()), 1e-9)
        return np.asarray(np.asarray(donor, dtype=np.float64) * scale, dtype=np.float64)
    if history is None or len(history) == 0:
        raise ConfigurationError(f"the {name} model needs the reported history")
    ref = np.asarray(history, dtype=np.float64)[-28:]
    if name == "band":
        # Day by day: each reported day joins the history the next day's band is built from.
        window = list(ref)
        out = np.empty_like(x)
        for d in range(days):
            h = np.array(window[-28:])
            lower = np.maximum(np.nanmean(h, axis=0) - params["z"] * np.nanstd(h, axis=0), 0.0)
            out[d] = np.minimum(x[d], np.maximum(lower, 0.3 * np.nanmean(h, axis=0)))
            window.append(out[d])
        return out
    # profile: the average day of its history, scaled, with the day-to-day noise of a real home
    shape = np.nanmean(ref, axis=0)
    noise = rng.normal(1.0, 0.08, size=x.shape).clip(0.7, 1.3)
    return np.asarray(
        np.repeat(shape[None, :] * params["beta"], days, axis=0) * noise, dtype=np.float64
    )
