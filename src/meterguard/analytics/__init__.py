"""Analytics over metering data: the synthetic household model, theft detection, privacy.

Everything here is pure: numpy arrays in, numbers out, seeded randomness, no files, no
network, no database and no clock (the head-end's services and the CLI do the IO). The
household model (:mod:`.household`) is what the simulated meters register and what the
evaluations generate populations from; :mod:`.theft` holds the attack models, the synthetic
population with its ground truth, the detectors and the evaluation protocol of
``../shared/ANALYTICS.md`` §3.2.
"""
