"""Structured logs: one JSON object per line, carrying the request id.

Every request gets an id (the caller's ``X-Request-ID`` when it is a sane
token, else a new one); it is echoed in the response's ``X-Request-ID``,
added to every log record emitted while the request runs, and to error
bodies. ``soma serve`` hands ``uvicorn_log_config`` to uvicorn, so the
package's and uvicorn's records are JSON in every worker process;
``configure_logging`` does the same for an app served some other way.
"""

from __future__ import annotations

import contextvars
import json
import logging
import random
import re
import sys
import time
from typing import Any

__all__ = [
    "JsonFormatter",
    "configure_logging",
    "current_request_id",
    "new_request_id",
    "request_id_var",
    "uvicorn_log_config",
]

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("soma_request_id", default=None)
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's ANSI-coloured twin of the message
}


def current_request_id() -> str | None:
    return request_id_var.get()


def new_request_id(incoming: str | None) -> str:
    """The caller's id when it is a short token of safe characters, else a fresh one."""
    if incoming and _SANE_ID.match(incoming):
        return incoming
    # an id, not a secret: 128 random bits without a system call per request
    # (``random`` is reseeded in a forked child)
    return f"{random.getrandbits(128):032x}"


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "pid", "request_id", ...extra fields}``."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,  # which worker process (soma serve --workers N)
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            data["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in data and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure_logging(level: str | int = "INFO") -> None:
    """Send the package's logs to stderr as JSON (once; later calls only set the level)."""
    logger = logging.getLogger("somafractalmemory")
    logger.setLevel(level.upper() if isinstance(level, str) else level)
    if not any(getattr(h, "_soma_json", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._soma_json = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False


def uvicorn_log_config(level: str = "info") -> dict[str, Any]:
    """A ``logging.config`` dict that makes uvicorn's own logs JSON too."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "somafractalmemory.api.logging.JsonFormatter"}},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
        },
        "loggers": {
            "somafractalmemory": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": ["default"], "level": "WARNING", "propagate": False},
        },
    }
