"""The simulated smart meter: metrology, COSEM object model, security, tamper sensors, log books.

The meter is sans-IO like the protocol core: it takes ``now`` and returns
data; :mod:`meterguard.meter.transport` holds the adapters that serve it over
DLMS/TCP (and, later, MQTT).
"""
