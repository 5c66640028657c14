"""The EST endpoint (RFC 7030 paths, PKI-4): an HTTPS app of its own, apart from the dashboard.

Routes, under ``/.well-known/est``:

* ``GET /cacerts`` — the CA certificates (device CA, device root, the root meters pin), as
  base64 ``application/pkcs7-mime`` certs-only;
* ``POST /simpleenroll`` — the factory certificate → an operational certificate;
* ``POST /simplereenroll`` — an operational certificate → its renewal.

An enrolment request's body is the base64 DER CSR (``application/pkcs10``, RFC 7030 §4.2.1);
the authenticating certificate travels in the ``Meterguard-Credential`` header (base64 DER),
and a key roll adds ``Meterguard-Possession`` (base64 signature by the old key over the CSR).
That replaces RFC 7030's TLS client authentication, which a factory certificate cannot do
(its usage is enrolment only, so TLS stacks refuse it as a client). The answer is the base64
certs-only PKCS#7 of the new certificate and the device CA.

Errors carry one generic word and the security headers: 400 malformed, 403 refused, 429 too
often (``Retry-After``), 411/413 before a large body is read. Every rule is in
:class:`~meterguard.headend.services.enrolment.Enrolment`; this module only translates HTTP.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from meterguard.errors import DecodeError, EnrolmentError, RateLimitedError
from meterguard.headend.api.app import HEADERS, BodyLimit, add_security_headers
from meterguard.headend.services.enrolment import Enrolment

__all__ = ["CREDENTIAL_HEADER", "EST_PREFIX", "MAX_EST_BODY", "POSSESSION_HEADER", "create_est_app"]

EST_PREFIX = "/.well-known/est"
CREDENTIAL_HEADER = "Meterguard-Credential"
POSSESSION_HEADER = "Meterguard-Possession"
MAX_EST_BODY = 8 * 1024
"""A base64 P-256 CSR is well under 1 KiB."""
_CERTS_ONLY = "application/pkcs7-mime; smime-type=certs-only"


def _b64(text: str | bytes) -> bytes:
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        raise DecodeError("not base64") from None


def _error(status: int, word: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": word}, status_code=status, headers={**HEADERS, **(headers or {})})


def create_est_app(enrolment: Enrolment, *, clock: Callable[[], float] = time.time) -> FastAPI:
    """The EST app over ``enrolment`` (served by :func:`meterguard.system.web.serve_https`)."""
    app = FastAPI(title="meterguard EST", docs_url=None, redoc_url=None, openapi_url=None)

    add_security_headers(app)

    @app.get(f"{EST_PREFIX}/cacerts")
    def cacerts() -> Response:
        der = pkcs7.serialize_certificates(enrolment.cacerts(), Encoding.DER)
        return Response(
            base64.b64encode(der),
            media_type="application/pkcs7-mime",
            headers={"Content-Transfer-Encoding": "base64"},
        )

    async def enrol(request: Request, *, renew: bool) -> Response:
        credential = request.headers.get(CREDENTIAL_HEADER)
        if credential is None:
            return _error(400, f"{CREDENTIAL_HEADER} header required")
        possession = request.headers.get(POSSESSION_HEADER)
        body = await request.body()
        try:
            issued = await run_in_threadpool(  # the PKI and the store do blocking IO
                lambda: enrolment.enrol(
                    _b64(body),
                    _b64(credential),
                    renew=renew,
                    now=clock(),
                    proof=None if possession is None else _b64(possession),
                    peer=request.client.host if request.client else "",
                )
            )
        except DecodeError:
            return _error(400, "malformed request")
        except RateLimitedError as exc:
            return _error(429, "slow down", {"Retry-After": str(exc.retry_after)})
        except EnrolmentError:
            return _error(403, "enrolment refused")
        der = pkcs7.serialize_certificates(list(issued.chain), Encoding.DER)
        return Response(
            base64.b64encode(der),
            media_type=_CERTS_ONLY,
            headers={"Content-Transfer-Encoding": "base64"},
        )

    @app.post(f"{EST_PREFIX}/simpleenroll")
    async def simpleenroll(request: Request) -> Response:
        return await enrol(request, renew=False)

    @app.post(f"{EST_PREFIX}/simplereenroll")
    async def simplereenroll(request: Request) -> Response:
        return await enrol(request, renew=True)

    app.add_middleware(BodyLimit, max_bytes=MAX_EST_BODY)
    return app
