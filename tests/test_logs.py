"""Log formatters: context fields travel, transcript text stays out unless asked for."""

from __future__ import annotations

import json
import logging

from earshot.logs import JsonFormatter, QueryStringFilter, TextFormatter


def record(message: str = "final %d sent", *args: object, **extra: object) -> logging.LogRecord:
    entry = logging.makeLogRecord(
        {"name": "earshot.listen", "levelno": logging.DEBUG, "levelname": "DEBUG", "msg": message}
    )
    entry.args = args
    entry.__dict__.update(extra)
    return entry


def test_json_lines_carry_ids_but_no_transcript_by_default() -> None:
    line = JsonFormatter().format(record("final %d sent", 3, session_id="abc", text="secret"))
    entry = json.loads(line)
    assert entry["message"] == "final 3 sent"
    assert entry["session_id"] == "abc" and entry["level"] == "debug"
    assert "text" not in entry and "secret" not in line


def test_transcripts_are_logged_only_when_asked() -> None:
    entry = json.loads(JsonFormatter(log_transcripts=True).format(record(text="secret")))
    assert entry["text"] == "secret"
    plain = TextFormatter().format(record(job_id="j1", text="secret"))
    assert 'job_id="j1"' in plain and "secret" not in plain


def test_query_strings_are_blanked_in_uvicorn_lines() -> None:
    line = record(
        '%s - "WebSocket %s" [accepted]', "127.0.0.1:1", "/v1/listen?prompt=Secret&token=t"
    )
    line.name = "uvicorn.error"
    assert QueryStringFilter().filter(line)
    assert line.getMessage() == '127.0.0.1:1 - "WebSocket /v1/listen?…" [accepted]'
