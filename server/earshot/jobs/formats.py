"""Render a ``JobResult`` as json, plain text, SubRip (srt) or WebVTT (vtt)."""

from __future__ import annotations

import json
from collections.abc import Callable

from earshot.jobs.models import JobResult

FORMATS = ("json", "text", "srt", "vtt")
MEDIA_TYPES = {
    "json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}


def _clock(seconds: float, separator: str) -> str:
    millis = round(max(0.0, seconds) * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def to_srt(result: JobResult) -> str:
    cues = [
        f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text}\n"
        for i, s in enumerate((s for s in result.segments if s.text), start=1)
    ]
    return "\n".join(cues)


def to_vtt(result: JobResult) -> str:
    cues = [
        f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text}\n"
        for s in result.segments
        if s.text
    ]
    return "WEBVTT\n\n" + "\n".join(cues)


def to_text(result: JobResult) -> str:
    return result.text + "\n"


def to_json(result: JobResult, words: bool = True) -> str:
    return json.dumps(result.to_dict(words=words), ensure_ascii=False)


RENDERERS: dict[str, Callable[[JobResult], str]] = {
    "json": to_json,
    "text": to_text,
    "srt": to_srt,
    "vtt": to_vtt,
}
