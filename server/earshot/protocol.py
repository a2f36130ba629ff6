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
from earshot.endpointing import (
    ENDPOINTING_MS_RANGE,
    MAX_UTTERANCE_S_RANGE,
    EndpointingConfig,
    TurnDetection,
)

# Close codes.
NORMAL = 1000
GOING_AWAY = 1001
UNSUPPORTED_DATA = 1003
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013

CONTROL_TYPES = frozenset({"finalize", "close_stream", "keepalive", "configure"})
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
    eager_eot: bool = False
    """*Extension*: send ``eager_end_of_turn`` when a pause may end the turn (a
    speculative final's text) and ``turn_resumed`` when speech goes on."""
    vad_endpointing: bool = True
    """False: silence never ends an utterance, only ``finalize`` (or the
    ``max_utterance_s`` cut) does: OpenAI's manual commits. Not a ``/v1/listen``
    parameter (``DIALECT_ONLY``)."""


DIALECT_ONLY = frozenset({"vad_endpointing"})
"""``SessionOptions`` fields that only other dialects set: not ``/v1/listen`` parameters."""
MAX_PROMPT_CHARS = 1000
"""``prompt`` (query parameter or ``configure``), keyterms included."""
MAX_KEYTERMS = 100
MAX_KEYTERM_CHARS = 100


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
    known = set(SessionOptions.__dataclass_fields__) - DIALECT_ONLY
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
    for flag in ("interim_results", "word_timestamps", "eager_eot"):
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
        if len(query["prompt"]) > MAX_PROMPT_CHARS:
            raise ParameterError("prompt", f"longer than {MAX_PROMPT_CHARS} characters")
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


@dataclass(frozen=True)
class Configure:
    """*Extension*: ``{"type": "configure", "prompt": ..., "keyterms": [...]}``. A field
    that is present replaces that setting (``null``, ``""`` or ``[]`` clears it); an absent
    one keeps it. Utterances that start afterwards use the new prompt."""

    prompt: str | None = None
    keyterms: tuple[str, ...] | None = None
    set_prompt: bool = False
    """Whether the message had ``prompt`` (absent: keep the current one)."""
    language: str | None = None
    """Set by other dialects only (OpenAI's ``session.update``), as ``turns``: the
    language of utterances that open from now on (None: detect)."""
    set_language: bool = False
    """Whether ``language`` applies (False: keep the current one)."""
    turns: TurnDetection | None = None
    """New endpointing settings, from the next audio on (None: keep them)."""

    def apply(
        self, prompt: str | None, keyterms: tuple[str, ...]
    ) -> tuple[str | None, tuple[str, ...]]:
        """The (prompt, keyterms) after this message, given the current ones."""
        return (
            self.prompt if self.set_prompt else prompt,
            keyterms if self.keyterms is None else self.keyterms,
        )


CONFIGURE_FIELDS = frozenset({"type", "prompt", "keyterms"})


def effective_prompt(prompt: str | None, keyterms: tuple[str, ...]) -> str | None:
    """The prompt the engine gets: the client's prompt, then its keyterms (spelled as
    given, comma-separated, so the decoder is biased towards them)."""
    parts = [p for p in (prompt, ", ".join(keyterms)) if p]
    return " ".join(parts) or None


def _configure(message: dict[str, Any]) -> Configure:
    unknown = sorted(set(message) - CONFIGURE_FIELDS)
    if unknown:
        expected = sorted(CONFIGURE_FIELDS - {"type"})
        raise ControlError(f"configure: unknown field {unknown[0]!r}; expected {expected}")
    prompt: str | None = None
    if "prompt" in message:
        value = message["prompt"]
        if value is not None and not isinstance(value, str):
            raise ControlError("configure: prompt must be a string or null")
        if value is not None and len(value) > MAX_PROMPT_CHARS:
            raise ControlError(f"configure: prompt longer than {MAX_PROMPT_CHARS} characters")
        prompt = value or None
    keyterms: tuple[str, ...] | None = None
    if "keyterms" in message:
        terms = message["keyterms"]
        if terms is None:
            terms = []
        if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
            raise ControlError("configure: keyterms must be a list of strings")
        if len(terms) > MAX_KEYTERMS:
            raise ControlError(f"configure: more than {MAX_KEYTERMS} keyterms")
        keyterms = tuple(t.strip() for t in terms)
        if not all(0 < len(t) <= MAX_KEYTERM_CHARS for t in keyterms):
            raise ControlError(f"configure: each keyterm must be 1-{MAX_KEYTERM_CHARS} characters")
    configure = Configure(prompt, keyterms, set_prompt="prompt" in message)
    combined = effective_prompt(prompt, keyterms or ())
    if combined is not None and len(combined) > MAX_PROMPT_CHARS:
        raise ControlError(
            f"configure: prompt and keyterms together longer than {MAX_PROMPT_CHARS} characters"
        )
    return configure


def parse_control_message(text: str) -> str | Configure:
    """A client text frame: its type, or for ``configure`` the validated message."""
    if len(text) > MAX_CONTROL_CHARS:
        raise ControlTooLarge(f"text frame longer than {MAX_CONTROL_CHARS} characters")
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        raise ControlError("text frame is not JSON") from None
    kind = message.get("type") if isinstance(message, dict) else None
    if not isinstance(kind, str) or kind not in CONTROL_TYPES:
        raise ControlError(f"unknown control message; expected type in {sorted(CONTROL_TYPES)}")
    if kind == "configure":
        return _configure(message)
    return kind


def parse_control(text: str) -> str:
    """Return the control message type of a client text frame (validated in full)."""
    message = parse_control_message(text)
    return "configure" if isinstance(message, Configure) else message


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
