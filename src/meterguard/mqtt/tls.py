"""The TLS client context of every MQTT party: TLS 1.2+, the private root pinned (PKI-7).

System CAs are never loaded for device or service traffic; host names are checked against
the broker's certificate. A client certificate (the meter's or a service's identity) is
loaded when given. Deliberately weak contexts for attack scenarios do not live here.
"""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = ["pinned_client_context"]


def pinned_client_context(
    root: Path, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    """A client context trusting only ``root``, presenting ``cert``/``key`` if given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=str(root))  # the pinned private root, nothing else
    if cert is not None and key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx
