"""Service logging: one setup for every serve command, plain text or JSON lines, each line carrying the id of the
HTTP request it was written for.

The request id lives in `REQUEST_ID`, a context variable: the services' middleware sets it for each request and
every record written while the request is handled (uvicorn's access line included, threads run through
`run_in_threadpool` too) reads it. `setup_logging` sends the root logger and uvicorn's loggers to one stderr
handler; uvicorn is then started with `log_config=None` so that it keeps them.
"""

from __future__ import annotations

import enum
import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

REQUEST_ID: ContextVar[str | None] = ContextVar("tclearn_request_id", default=None)
"""The id of the HTTP request being handled (None outside a request)."""

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
QUIET_LOGGERS = ("httpx", "httpcore")  # one line per duty or request, not one per outgoing HTTP call
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


class LogLevel(enum.StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class LogFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


class RequestIdFilter(logging.Filter):
    """Gives every record a `request_id` attribute: the current request's id, or None."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [request id or -]: message`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        shown = getattr(record, "request_id", None) or "-"
        original = record.__dict__.get("request_id")
        record.request_id = shown
        try:
            return super().format(record)
        finally:
            record.request_id = original


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id, and the exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record is emitted, not the one set up with: a command run
    again in one process (a test runner's captured stderr, closed since) still logs somewhere open."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr


def setup_logging(
    level: LogLevel | str = LogLevel.INFO, fmt: LogFormat | str = LogFormat.TEXT, stream: IO[str] | None = None
) -> None:
    """Every record at `level` or above, from tclearn, the services and uvicorn, as `fmt` on `stream` (stderr).

    Replaces the root logger's handlers (calling it twice leaves one handler); uvicorn's own loggers lose their
    handlers and propagate to the root, so start uvicorn with `log_config=None`.
    """
    level, fmt = LogLevel(level), LogFormat(fmt)
    handler: logging.Handler = StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt is LogFormat.JSON else TextFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
