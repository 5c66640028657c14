"""The firmware endpoint (ADR 13): the TUF repository's metadata and images over mutual TLS.

``GET /firmware/metadata/<name>`` and ``GET /firmware/targets/<name>`` serve the files of the
repository's served directories (:mod:`meterguard.firmware.repository`), nothing else: a name
is one path segment of letters, digits and ``._+-`` (no traversal, no listing). The server
asks every client for a certificate chaining to the device CA (the meters' operational
certificates), so only the fleet can fetch; what it serves needs no secrecy for its integrity —
the meter trusts nothing here that its pinned TUF root does not sign — and a missing file is a
404, which ngclient reads as "no newer root".

This module only translates HTTP; the repository's rules are in its own module and the meter's
checks in :mod:`meterguard.meter.firmware`.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse, Response

from meterguard.headend.api.app import HEADERS, add_security_headers

__all__ = ["FIRMWARE_PREFIX", "create_firmware_app"]

FIRMWARE_PREFIX = "/firmware"
_NAME = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,200}$")


def create_firmware_app(repository: Path) -> FastAPI:
    """The endpoint over the repository directory ``repository``.

    It serves ``metadata/`` and ``targets/``, through :func:`meterguard.system.web.serve_https`
    with client certificates required.
    """
    app = FastAPI(title="meterguard firmware", docs_url=None, redoc_url=None, openapi_url=None)
    add_security_headers(app)

    def serve(kind: str, name: str) -> Response:
        if not _NAME.match(name) or ".." in name:
            return JSONResponse({"error": "bad name"}, status_code=400, headers=HEADERS)
        path = repository / kind / name
        if not path.is_file():
            return JSONResponse({"error": "not found"}, status_code=404, headers=HEADERS)
        media = "application/json" if kind == "metadata" else "application/octet-stream"
        return FileResponse(path, media_type=media, headers={"Cache-Control": "no-store"})

    @app.get(FIRMWARE_PREFIX + "/metadata/{name}")
    def metadata(name: str) -> Response:
        return serve("metadata", name)

    @app.get(FIRMWARE_PREFIX + "/targets/{name}")
    def targets(name: str) -> Response:
        return serve("targets", name)

    return app
