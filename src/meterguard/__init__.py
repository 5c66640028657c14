"""meterguard: secure smart metering, from the DLMS/COSEM byte to the head-end.

This package root only exposes the version. Protocol code lives in
:mod:`meterguard.cosem`, cryptographic recipes in :mod:`meterguard.crypto`, and
every error in :mod:`meterguard.errors`.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
