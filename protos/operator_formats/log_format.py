"""Log output for both programs: the classic text line, or one JSON object per line.

Our log calls write ``key=value`` fields (``federation=demo round=3 silo=a``); the JSON
formatter lifts them, and the same names passed as ``extra``, into top-level fields so a log
pipeline can filter by federation, round, silo or phase without regexes. It adds nothing the
text line does not carry: what is logged is decided at the call site, which never logs
secrets, updates, losses or data.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Literal

_FIELD = re.compile(r"(?<!\S)([a-z][a-z0-9_]*)=(\S+)")
_INTEGER = re.compile(r"-?\d+")
# `extra={...}` names our call sites use; other record attributes are logging's own.
EXTRA_FIELDS = ("federation", "round", "attempt", "silo", "phase", "method", "reason")
_RESERVED = frozenset({"ts", "level", "logger", "message", "exc"})
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", <fields>, "exc"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        doc: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        for key, value in _FIELD.findall(message):
            if key not in _RESERVED:
                doc.setdefault(key, int(value) if _INTEGER.fullmatch(value) else value)
        for key in EXTRA_FIELDS:
            if key in record.__dict__:
                doc.setdefault(key, record.__dict__[key])
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure_logging(level: str, fmt: Literal["text", "json"]) -> None:
    """Set the root logger's level and format for a CLI process (replaces earlier handlers)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
