"""Log output for operators: one JSON object per line (for log shippers) or plain text.

Context travels in ``extra=``: ``log.info("...", extra={"session_id": sid})``. Both
formats print the context fields; the text of transcripts (``text``, ``prompt``) is
dropped unless ``--log-transcripts`` asked for it, so logs never leak what people said
by accident. Audio is never logged.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

SENSITIVE = frozenset({"text", "prompt", "transcript"})
"""``extra`` keys that carry what someone said."""

_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}


def context(record: logging.LogRecord, log_transcripts: bool) -> dict[str, Any]:
    """The ``extra=`` fields of a record, less transcripts unless allowed."""
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _STANDARD and (log_transcripts or key not in SENSITIVE)
    }


class JsonFormatter(logging.Formatter):
    def __init__(self, log_transcripts: bool = False) -> None:
        super().__init__()
        self.log_transcripts = log_transcripts

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(context(record, self.log_transcripts))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...``"""

    def __init__(self, log_transcripts: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.log_transcripts = log_transcripts

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = context(record, self.log_transcripts)
        if not fields:
            return line
        extras = " ".join(
            f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in fields.items()
        )
        head, newline, tail = line.partition("\n")  # keep tracebacks after the fields
        return f"{head} {extras}{newline}{tail}"


_QUERY = re.compile(r"\?[^\s\"']*")


class QueryStringFilter(logging.Filter):
    """Blank URL query strings in uvicorn's lines: ``?prompt=`` and ``?token=`` live there."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("uvicorn") and isinstance(record.args, tuple):
            record.args = tuple(
                _QUERY.sub("?…", a) if isinstance(a, str) else a for a in record.args
            )
        return True


def configure_logging(level: str, fmt: str = "auto", log_transcripts: bool = False) -> None:
    """Send every logger (uvicorn's too) to stderr in ``fmt``: json, text, or auto
    (text on a terminal, json otherwise)."""
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler()
    formatter_type = JsonFormatter if fmt == "json" else TextFormatter
    handler.setFormatter(formatter_type(log_transcripts))
    handler.addFilter(QueryStringFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
