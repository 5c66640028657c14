"""Privacy analytics: the synthetic cohort with its secrets, the defences, the attackers.

ANALYTICS.md §2 and §3.3. :mod:`.synthetic` generates homes with their ground truth (who
is home in each slot, days away, household size, bills); :mod:`.defences` holds the
transformations an export or a release applies (coarsening, rounding, omission,
microaggregation, pseudonym rotation) and :mod:`.dp` the differentially private aggregate
(OpenDP); :mod:`.attackers` the attackers A0-A3; :mod:`.evaluate` runs them against
every export kind and prints what leaks. Pure: arrays in, numbers out, no IO.
"""
