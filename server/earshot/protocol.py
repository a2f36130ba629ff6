"""The ``/v1/listen`` wire contract (../shared/PROTOCOL.md): parameters, messages,
close codes. Pure functions and dataclasses; no sockets here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from earshot.audio import ENCODINGS
from earshot.endpointing import ENDPOINTING_MS_RANGE, MAX_UTTERANCE_S_RANGE, EndpointingConfig

# Close codes.
NORMAL = 1000
GOING_AWAY = 1001
UNSUPPORTED_DATA = 1003
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013

CONTROL_TYPES = frozenset({"finalize", "close_stream", "keepalive"})
LANGUAGE_AUTO = "auto"


class ParameterError(ValueError):
    """A query parameter with an unknown name or an invalid value (HTTP 400)."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message

    def body(self) -> dict[str, str]:
        return {"error": "invalid_parameter", "parameter": self.parameter, "message": self.message}


@dataclass(frozen=True)
class SessionOptions:
    sample_rate: int = 16000
    encoding: str = "pcm_s16le"
    language: str | None = None
    """ISO-639-1 code, or None for per-utterance detection."""
    interim_results: bool = True
    word_timestamps: bool = False
    format: str = "json"
    endpointing_ms: int = EndpointingConfig.endpointing_ms
    max_utterance_s: float = EndpointingConfig.max_utterance_s
    prompt: str | None = None
    token: str | None = None


def _boolean(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ParameterError(name, f"expected true or false, got {value!r}")


def _integer(name: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ParameterError(name, f"expected an integer, got {value!r}") from None
    if not low <= number <= high:
        raise ParameterError(name, f"must be between {low} and {high}, got {number}")
    return number


def _number(name: str, value: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ParameterError(name, f"expected a number, got {value!r}") from None
    if not low <= number <= high:
        raise ParameterError(name, f"must be between {low} and {high}, got {number}")
    return number


def parse_options(
    query: Mapping[str, str], languages: frozenset[str] | None = None
) -> SessionOptions:
    """Validate ``/v1/listen`` query parameters; raise ``ParameterError`` on the first bad one.

    ``languages`` is what the loaded model can transcribe (None: don't check).
    """
    known = set(SessionOptions.__dataclass_fields__)
    for name in query:
        if name not in known:
            raise ParameterError(name, "unknown parameter")
    options: dict[str, Any] = {}
    if "sample_rate" in query:
        options["sample_rate"] = _integer("sample_rate", query["sample_rate"], 8000, 48000)
    if "encoding" in query:
        if query["encoding"] not in ENCODINGS:
            raise ParameterError("encoding", f"must be one of {sorted(ENCODINGS)}")
        options["encoding"] = query["encoding"]
    if "language" in query:
        language = query["language"].lower()
        if language != LANGUAGE_AUTO:
            if languages is not None and language not in languages:
                raise ParameterError("language", f"{language!r} is not supported by this model")
            options["language"] = language
    for flag in ("interim_results", "word_timestamps"):
        if flag in query:
            options[flag] = _boolean(flag, query[flag])
    if "format" in query:
        if query["format"] not in ("json", "msgpack"):
            raise ParameterError("format", "must be json or msgpack")
        options["format"] = query["format"]
    if "endpointing_ms" in query:
        options["endpointing_ms"] = _integer(
            "endpointing_ms", query["endpointing_ms"], *ENDPOINTING_MS_RANGE
        )
    if "max_utterance_s" in query:
        options["max_utterance_s"] = _number(
            "max_utterance_s", query["max_utterance_s"], *MAX_UTTERANCE_S_RANGE
        )
    if "prompt" in query:
        if len(query["prompt"]) > 1000:
            raise ParameterError("prompt", "longer than 1000 characters")
        options["prompt"] = query["prompt"] or None
    if "token" in query:
        options["token"] = query["token"]
    return SessionOptions(**options)


class ControlError(ValueError):
    """A text frame that is not a known control message (close 1003)."""


class ControlTooLarge(ControlError):
    """A text frame far longer than any control message (close 1009)."""


MAX_CONTROL_CHARS = 4096
"""Control messages are a few bytes; anything longer is refused before parsing."""


def parse_control(text: str) -> str:
    """Return the control message type of a client text frame."""
    if len(text) > MAX_CONTROL_CHARS:
        raise ControlTooLarge(f"text frame longer than {MAX_CONTROL_CHARS} characters")
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        raise ControlError("text frame is not JSON") from None
    kind = message.get("type") if isinstance(message, dict) else None
    if not isinstance(kind, str) or kind not in CONTROL_TYPES:
        raise ControlError(f"unknown control message; expected type in {sorted(CONTROL_TYPES)}")
    return kind


def encode_message(message: Mapping[str, Any], fmt: str) -> str | bytes:
    """A server message as a text frame (json) or a binary frame (msgpack)."""
    if fmt == "msgpack":
        return msgpack.packb(message, use_bin_type=True)
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def error_message(code: str, message: str, *, utterance: int | None = None) -> dict[str, Any]:
    """``utterance``: the one an ``engine_error`` belongs to (it comes right before that
    utterance's final); None for errors about the whole stream."""
    error: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if utterance is not None:
        error["utterance"] = utterance
    return error
