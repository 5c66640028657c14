"""Electricity theft: attack models, a synthetic grid with ground truth, detectors, evaluation.

* :mod:`.attacks` — the false-data-injection models (Jokar h1-h6, the extended set, two
  evasive attacks) as functions over days of slot energies, used by the simulated meters
  and by the evaluation alike;
* :mod:`.synthetic` — a seeded population of homes behind feeders, with confounders,
  thieves, tamper events and the feeder meters' measurements;
* :mod:`.features` and :mod:`.detect` — the evidence (tamper events, consumption against
  the home's own history and its peers, feeder energy balance) and the scores;
* :mod:`.evaluate` — the customer-disjoint protocol and its metrics, with baselines.
"""
