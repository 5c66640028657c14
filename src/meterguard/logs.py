"""Structured logs: one JSON object per line, each carrying the request it was written for.

:data:`REQUEST_ID` is the request being served (the web API's middleware sets it for the
request's task and threads); :class:`JsonFormatter` writes a record as JSON with its time,
level, logger, message, that request id and the record's ``extra`` fields;
:func:`log_json_to` sends meterguard's loggers to a size-bounded, rotated file in that form
(what a log shipper reads). It does not decide what is logged: keys, passwords and reading
values are never passed to a logger by the callers (the redacted key types' ``repr`` holds
nothing either).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.handlers
from contextvars import ContextVar
from pathlib import Path
from typing import Any

__all__ = ["REQUEST_ID", "JsonFormatter", "log_json_to"]

REQUEST_ID: ContextVar[str] = ContextVar("meterguard_request_id", default="")
"""The request being served ("" outside one): its log lines, audit entries and its
``X-Request-ID`` response header carry it."""

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


class JsonFormatter(logging.Formatter):
    """A log record as one line of JSON (UTC time in ISO 8601, milliseconds)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record, its request id and its extra fields, as JSON."""
        doc: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id:
            doc["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in doc and key != "request_id":
                doc[key] = value if isinstance(value, int | float | bool | None) else str(value)
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def log_json_to(path: Path, *, level: int = logging.INFO, keep: int = 5) -> logging.Handler:
    """Send the ``meterguard`` loggers to ``path`` as JSON lines (10 MB a file, ``keep`` old).

    Warnings and errors also go to standard error. Returns the file's handler.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=10 << 20, backupCount=keep, encoding="utf-8"
    )
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("meterguard")
    logger.addHandler(handler)
    # Warnings still reach the terminal, as they did before the file had a handler.
    shout = logging.StreamHandler()
    shout.setLevel(logging.WARNING)
    shout.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(shout)
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)
    return handler
