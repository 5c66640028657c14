"""Red-team scenarios, one per threat, defined as data and run against real components.

The test suite runs every scenario through one parametrised test; a CLI can
run the same objects against a live deployment on loopback.
"""
