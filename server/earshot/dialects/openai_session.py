"""The configuration of an OpenAI Realtime transcription session: ``session.update``
(GA) and ``transcription_session.update`` (beta) parsed into a ``SessionConfig``, with
OpenAI's error for what is refused (``EventError``). Pure: no socket, no session; the
codec in ``openai_realtime.py`` applies what this returns.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from earshot import protocol
from earshot.audio import AudioFormat
from earshot.endpointing import ENDPOINTING_MS_RANGE, TurnDetection
from earshot.protocol import SessionOptions

FORMATS: dict[str, tuple[int, str]] = {
    "audio/pcm": (24000, "pcm_s16le"),
    "audio/pcmu": (8000, "pcm_mulaw"),
    "audio/pcma": (8000, "pcm_alaw"),
}
"""OpenAI's ``audio.input.format.type`` → (sample rate, Earshot encoding)."""
BETA_FORMATS = {"pcm16": "audio/pcm", "g711_ulaw": "audio/pcmu", "g711_alaw": "audio/pcma"}
"""The beta ``input_audio_format`` names."""
DEFAULT_FORMAT = "audio/pcm"
THRESHOLD_RANGE = (0.2, 0.99)
"""``turn_detection.threshold`` is clamped here: below 0.2 Earshot's VAD hysteresis
would leave no frame silent, and no utterance would ever end."""
PREFIX_PADDING_MS_RANGE = (0, 2000)


class EventError(Exception):
    """A client event the server answers with an ``error`` event (the session goes on)."""

    def __init__(
        self, message: str, *, code: str = "invalid_value", param: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param


@dataclass(frozen=True)
class OpenAIOptions(SessionOptions):
    """``SessionOptions`` plus what the codec needs to check ``session.update``."""

    languages: frozenset[str] | None = None
    """What the served model transcribes (None: not checked)."""


def json_object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise EventError(f"Invalid type for '{param}': expected an object.", param=param)
    return value


def _number(value: Any, param: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EventError(f"Invalid type for '{param}': expected a number.", param=param)
    return float(value)


def _clamp(value: float, bounds: tuple[float, float]) -> float:
    return min(bounds[1], max(bounds[0], value))


SERVER_VAD = TurnDetection()
"""OpenAI's ``server_vad`` defaults (threshold 0.5, 300 ms padding, 500 ms silence):
Earshot's."""


@dataclass(frozen=True)
class SessionConfig:
    """A transcription session's effective configuration (what ``session.updated``
    shows), with the defaults OpenAI's transcription sessions start with."""

    format: str = DEFAULT_FORMAT
    model: str = "whisper-1"
    language: str | None = None
    prompt: str = ""
    keywords: tuple[str, ...] = ()
    turns: TurnDetection | None = SERVER_VAD
    """None: ``turn_detection: null`` (manual commits)."""
    noise_reduction: Any = None
    include: tuple[str, ...] = ()

    def audio_format(self) -> AudioFormat:
        rate, encoding = FORMATS[self.format]
        return AudioFormat(rate, encoding)

    def turn_detection(self) -> dict[str, Any] | None:
        if self.turns is None:
            return None
        return {
            "type": "server_vad",
            "threshold": self.turns.threshold,
            "prefix_padding_ms": round(self.turns.preroll_s * 1000),
            "silence_duration_ms": self.turns.endpointing_ms,
        }

    def transcription(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "language": self.language}
        out["prompt"] = self.prompt
        if self.keywords:
            out["keywords"] = list(self.keywords)
        return out

    def session(self, session_id: str, expires_at: int) -> dict[str, Any]:
        """The GA ``session`` object (``RealtimeTranscriptionSessionCreateRequest``)."""
        fmt: dict[str, Any] = {"type": self.format}
        if self.format == "audio/pcm":
            fmt["rate"] = 24000
        return {
            "type": "transcription",
            "object": "realtime.transcription_session",
            "id": session_id,
            "expires_at": expires_at,
            "audio": {
                "input": {
                    "format": fmt,
                    "noise_reduction": self.noise_reduction,
                    "transcription": self.transcription(),
                    "turn_detection": self.turn_detection(),
                }
            },
            "include": list(self.include),
        }

    def beta_session(self, session_id: str, expires_at: int) -> dict[str, Any]:
        """The beta ``transcription_session`` object."""
        beta_format = {v: k for k, v in BETA_FORMATS.items()}[self.format]
        return {
            "id": session_id,
            "object": "realtime.transcription_session",
            "expires_at": expires_at,
            "input_audio_format": beta_format,
            "input_audio_transcription": self.transcription(),
            "input_audio_noise_reduction": self.noise_reduction,
            "turn_detection": self.turn_detection(),
            "include": list(self.include),
        }


def parse_session(
    current: SessionConfig,
    session: dict[str, Any],
    languages: frozenset[str] | None,
    *,
    beta: bool,
) -> SessionConfig:
    """A ``session.update``'s ``session`` (GA) or ``transcription_session.update``'s
    (beta) over ``current``: fields present replace, absent ones keep. Raises
    ``EventError`` on the first bad one."""
    changes: dict[str, Any] = {}
    if beta:
        prefix = "session"
        fmt = session.get("input_audio_format")
        if fmt is not None:
            if fmt not in BETA_FORMATS:
                raise EventError(
                    f"Invalid value: {fmt!r}. Supported values are: {sorted(BETA_FORMATS)}.",
                    param=f"{prefix}.input_audio_format",
                )
            changes["format"] = BETA_FORMATS[fmt]
        audio_in = {
            key: session[name]
            for key, name in (
                ("transcription", "input_audio_transcription"),
                ("turn_detection", "turn_detection"),
                ("noise_reduction", "input_audio_noise_reduction"),
            )
            if name in session
        }
        names = {
            "transcription": f"{prefix}.input_audio_transcription",
            "turn_detection": f"{prefix}.turn_detection",
        }
    else:
        prefix = "session"
        kind = session.get("type")
        if kind != "transcription":
            raise EventError(
                f"Invalid value: {kind!r}. This server has transcription sessions only:"
                " 'transcription'.",
                param="session.type",
            )
        audio = json_object(session.get("audio", {}), "session.audio")
        if "output" in audio:
            raise EventError(
                "Transcription sessions have no audio output.",
                code="unknown_parameter",
                param="session.audio.output",
            )
        audio_in = json_object(audio.get("input", {}), "session.audio.input")
        names = {
            "transcription": "session.audio.input.transcription",
            "turn_detection": "session.audio.input.turn_detection",
        }
        if "format" in audio_in:
            param = "session.audio.input.format"
            fmt = json_object(audio_in["format"], param)
            kind = fmt.get("type", DEFAULT_FORMAT)
            if kind not in FORMATS:
                raise EventError(
                    f"Invalid value: {kind!r}. Supported values are: {sorted(FORMATS)}.",
                    param=f"{param}.type",
                )
            if kind == "audio/pcm" and fmt.get("rate", 24000) != 24000:
                raise EventError(
                    "Invalid value: only a 24000 Hz rate is supported for audio/pcm.",
                    param=f"{param}.rate",
                )
            changes["format"] = kind
    if "noise_reduction" in audio_in:
        changes["noise_reduction"] = audio_in["noise_reduction"]  # accepted, not applied
    if "include" in session:
        include = session["include"]
        if not isinstance(include, list) or not all(isinstance(i, str) for i in include):
            raise EventError("Invalid type for 'session.include'.", param="session.include")
        changes["include"] = tuple(include)
    if audio_in.get("transcription") is not None:
        param = names["transcription"]
        transcription = json_object(audio_in["transcription"], param)
        if "model" in transcription:
            changes["model"] = str(transcription["model"])  # the served model answers
        if "language" in transcription:
            language = transcription["language"]
            if language is not None and not isinstance(language, str):
                raise EventError("Invalid type: expected a string.", param=f"{param}.language")
            language = (language or "").strip().lower().split("-")[0] or None
            if language is not None and languages is not None and language not in languages:
                raise EventError(
                    f"Invalid value: {language!r} is not a language this model transcribes.",
                    param=f"{param}.language",
                )
            changes["language"] = language
        if "prompt" in transcription:
            prompt = transcription["prompt"]
            if prompt is not None and not isinstance(prompt, str):
                raise EventError("Invalid type: expected a string.", param=f"{param}.prompt")
            changes["prompt"] = prompt or ""
        if "keywords" in transcription:
            keywords = transcription["keywords"]
            if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
                raise EventError(
                    "Invalid type: expected a list of strings.", param=f"{param}.keywords"
                )
            changes["keywords"] = tuple(k.strip() for k in keywords if k.strip())
    if "turn_detection" in audio_in:
        changes["turns"] = parse_turn_detection(
            audio_in["turn_detection"], current.turns, names["turn_detection"]
        )
    return replace(current, **changes)


def check_prompt(config: SessionConfig) -> None:
    """The limits of the native ``configure`` message (protocol.py)."""
    param = "session.audio.input.transcription"
    if len(config.keywords) > protocol.MAX_KEYTERMS:
        raise EventError(f"More than {protocol.MAX_KEYTERMS} keywords.", param=f"{param}.keywords")
    if any(len(k) > protocol.MAX_KEYTERM_CHARS for k in config.keywords):
        raise EventError(
            f"A keyword longer than {protocol.MAX_KEYTERM_CHARS} characters.",
            param=f"{param}.keywords",
        )
    combined = protocol.effective_prompt(config.prompt or None, config.keywords) or ""
    if len(combined) > protocol.MAX_PROMPT_CHARS:
        raise EventError(
            f"The prompt and keywords together are longer than {protocol.MAX_PROMPT_CHARS}"
            " characters.",
            param=f"{param}.prompt",
        )


def parse_turn_detection(
    value: Any, current: TurnDetection | None, param: str
) -> TurnDetection | None:
    """``turn_detection``: ``null`` (manual commits) or ``server_vad`` and its settings
    (absent ones as they were, or OpenAI's defaults when VAD was off)."""
    if value is None:
        return None
    detection = json_object(value, param)
    kind = detection.get("type", "server_vad")
    if kind != "server_vad":
        raise EventError(
            f"Invalid value: {kind!r}. This server supports 'server_vad' or null.",
            param=f"{param}.type",
        )
    turns = current or TurnDetection()
    if "threshold" in detection:
        threshold = _number(detection["threshold"], f"{param}.threshold")
        turns = replace(turns, threshold=round(_clamp(threshold, THRESHOLD_RANGE), 3))
    if "prefix_padding_ms" in detection:
        padding = _number(detection["prefix_padding_ms"], f"{param}.prefix_padding_ms")
        turns = replace(turns, preroll_s=_clamp(padding, PREFIX_PADDING_MS_RANGE) / 1000)
    if "silence_duration_ms" in detection:
        silence = _number(detection["silence_duration_ms"], f"{param}.silence_duration_ms")
        turns = replace(turns, endpointing_ms=round(_clamp(silence, ENDPOINTING_MS_RANGE)))
    return replace(turns, vad_endpointing=True)
