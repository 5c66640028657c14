"""Raw primitives. Only :mod:`meterguard.crypto` imports this package.

Everything here assumes validated inputs and returns raw bytes; the typed,
checked entry points are the recipes one level up.
"""
