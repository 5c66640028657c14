"""Assembly: one configuration, one data-directory layout, builders for a head-end and a fleet.

``meterguard demo``, ``meterguard ingest run``, the CLI's administrative commands and the
tests build the system from here, so that each of them reaches the same services.
"""
