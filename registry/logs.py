"""Log lines as JSON objects (one per line) carrying the current trace and span ids, so logs and
traces join up in whatever collects them. Text stays available for people at a terminal.

Every line's time is ISO-8601 in UTC (``2026-01-31T09:15:02.123Z``): sortable, unambiguous
across regions, and what log collectors parse without configuration.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal, get_args

LogFormat = Literal["auto", "json", "text"]
LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)

# Libraries that log every credential lookup, retry or connection at INFO: chatter next to
# regfront's own lines. Their warnings and errors still show; --log-level debug shows it all.
CHATTY = ("httpx", "httpcore", "botocore", "aiobotocore", "boto3", "aioboto3", "urllib3",
          "s3transfer", "asyncio", "azure", "gcloud")
# azure.identity warns, in twenty lines, on every failed token attempt - the failure the store
# then raises as StoreAccessDenied, which regfront reports itself.
RESTATED = ("azure.identity",)


def iso_time(created: float) -> str:
    """``created`` (seconds since the epoch) as ISO-8601 UTC with milliseconds."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class TextFormatter(logging.Formatter):
    """``2026-01-31T09:15:02.123Z INFO regfront: message``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return iso_time(record.created)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": iso_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        span = _span_context()
        if span is not None:
            entry["trace_id"], entry["span_id"] = span
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        for key, value in getattr(record, "fields", {}).items():
            entry[key] = value
        return json.dumps(entry, default=str)


def _span_context() -> tuple[str, str] | None:
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def configure(log_format: LogFormat = "auto", level: LogLevel | int = logging.INFO) -> None:
    """Root logging for a regfront process: JSON unless stderr is a terminal (``auto``)."""
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    numeric = level if isinstance(level, int) else logging.getLevelNamesMapping()[level.upper()]
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in CHATTY:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING)
                                         if numeric > logging.DEBUG else logging.NOTSET)
    for name in RESTATED:
        logging.getLogger(name).setLevel(max(numeric, logging.ERROR)
                                         if numeric > logging.DEBUG else logging.NOTSET)
    # uvicorn's loggers keep their own handlers: route them through ours too - except its
    # access log, a line per request on the hot path (regfront samples its own instead).
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = []
    access.propagate = False
