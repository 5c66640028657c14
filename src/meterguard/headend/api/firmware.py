"""The firmware endpoint (ADR 13): the TUF repository's metadata and images over mutual TLS.

``GET /firmware/metadata/<name>`` and ``GET /firmware/targets/<name>`` serve the files of the
repository's served directories (:mod:`meterguard.firmware.repository`), nothing else: a name
is one path segment of letters, digits and ``._+-`` (no traversal, no listing). The server
asks every client for a certificate chaining to the device CA (the meters' operational
certificates), so only the fleet can fetch; what it serves needs no secrecy for its integrity —
the meter trusts nothing here that its pinned TUF root does not sign — and a missing file is a
404, which ngclient reads as "no newer root".

This module only translates HTTP; the repository's rules are in its own module and the meter's
checks in :mod:`meterguard.meter.firmware`. ``POST /firmware/reports`` takes a meter's signed
document (a status report or an attestation, at most 4 KiB) and hands it to the firmware
service (:mod:`meterguard.headend.services.firmware`), which checks the signature; errors
carry one word: 400 malformed, 403 refused, 429 too often, 411/413 before a large body is read.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from meterguard.errors import DecodeError, RateLimitedError, SecurityError
from meterguard.firmware.attestation import MAX_DOCUMENT
from meterguard.headend.api.app import HEADERS, add_security_headers

__all__ = ["FIRMWARE_PREFIX", "create_firmware_app"]

FIRMWARE_PREFIX = "/firmware"
_NAME = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,200}$")


def _error(status: int, word: str) -> JSONResponse:
    return JSONResponse({"error": word}, status_code=status, headers=HEADERS)


def create_firmware_app(
    repository: Path,
    receive: Callable[[bytes, int], str] | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The endpoint over the repository directory ``repository``.

    It serves ``metadata/`` and ``targets/``, through :func:`meterguard.system.web.serve_https`
    with client certificates required.
    """
    app = FastAPI(title="meterguard firmware", docs_url=None, redoc_url=None, openapi_url=None)
    add_security_headers(app)

    def serve(kind: str, name: str) -> Response:
        if not _NAME.match(name) or ".." in name:
            return _error(400, "bad name")
        path = repository / kind / name
        if not path.is_file():
            return _error(404, "not found")
        media = "application/json" if kind == "metadata" else "application/octet-stream"
        return FileResponse(path, media_type=media, headers={"Cache-Control": "no-store"})

    @app.get(FIRMWARE_PREFIX + "/metadata/{name}")
    def metadata(name: str) -> Response:
        return serve("metadata", name)

    @app.get(FIRMWARE_PREFIX + "/targets/{name}")
    def targets(name: str) -> Response:
        return serve("targets", name)

    @app.post(FIRMWARE_PREFIX + "/reports")
    async def reports(request: Request) -> Response:
        if receive is None:
            return _error(404, "not found")
        declared = request.headers.get("content-length")
        if declared is None or not declared.isdigit():
            return _error(411, "length required")
        if int(declared) > MAX_DOCUMENT:
            return _error(413, "too large")
        body = await request.body()
        if len(body) > MAX_DOCUMENT:
            return _error(413, "too large")
        try:
            result = await run_in_threadpool(receive, body, int(clock()))
        except DecodeError:
            return _error(400, "malformed")
        except RateLimitedError as exc:
            return JSONResponse(
                {"error": "too often"},
                status_code=429,
                headers={**HEADERS, "Retry-After": str(exc.retry_after)},
            )
        except SecurityError:
            return _error(403, "refused")
        return JSONResponse({"result": result}, headers=HEADERS)

    return app
