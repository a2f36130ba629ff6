"""Deepgram's Flux API (``/deepgram/v2/listen``, the SDK's ``listen.v2``) as a dialect of
the one streaming session.

Flux speaks in *turns*: one ``TurnInfo`` message per change, with an ``event``. Earshot's
turn is its utterance (voice-detector onset to endpointing), and the session's own
messages already say everything a turn needs, so this is only an encoder:

========================  =============================================================
session message           ``TurnInfo`` event
========================  =============================================================
``ready``                 ``Connected`` (not a ``TurnInfo``)
``speech_started``        ``StartOfTurn`` (empty transcript)
``partial``               ``Update`` (the transcript so far)
``eager_end_of_turn``     ``EagerEndOfTurn`` (only with ``eager_eot_threshold`` set, as
                          Flux): the session's speculative final at a 250 ms pause
``turn_resumed``          ``TurnResumed``: speech went on after that pause
``final``                 ``EndOfTurn`` with the words; ``trigger`` is ``timeout``
                          (endpointing: ``eot_timeout_ms`` of silence) or ``manual``
                          (``ForceEndTurn``, ``CloseStream``, the 15 s cut)
``error``                 ``Warning`` for an utterance the engine failed (its empty
                          ``EndOfTurn`` follows), ``Error`` for one that ends the stream
``closed``                nothing: the server closes 1000
========================  =============================================================

Turns never interleave: a turn that opens while the previous one's final is still being
decoded is held (its ``StartOfTurn`` and ``Update`` messages) until that ``EndOfTurn``
is out. Every message carries ``request_id`` (the session id) and ``sequence_id``
(0, 1, ... in the order they go out). docs/deepgram.md says what is accepted and refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket

from earshot.dialects.base import Frame
from earshot.dialects.deepgram import (
    DeepgramDialect,
    _flag,
    _integer,
    keyterm_prompt,
    parse_audio_format,
    parse_control_type,
)
from earshot.endpointing import ENDPOINTING_MS_RANGE
from earshot.listen import serve_stream
from earshot.protocol import ParameterError, SessionOptions
from earshot.session import StreamSession

MODEL_MULTI = "flux-general-multi"
"""Flux's multilingual model: the language is detected per turn (``languages``)."""
EOT_THRESHOLD_RANGE = (0.5, 1.0)
EAGER_EOT_THRESHOLD_RANGE = (0.3, 0.9)
DEFAULT_EOT_THRESHOLD = 0.7
EOT_TIMEOUT_MS_RANGE = (ENDPOINTING_MS_RANGE[0], 60_000)
"""Flux takes 500–60000; Earshot also takes its own lowest endpointing (100 ms), and
waits at most its longest (10 s)."""
REFUSED = frozenset({"redact", "diarize", "multichannel", "callback"})
"""Refused unless ``false`` (Flux has none of these either)."""


@dataclass(frozen=True)
class FluxOptions(SessionOptions):
    """``SessionOptions`` plus what only the Flux encoder reads."""

    eot_threshold: float = DEFAULT_EOT_THRESHOLD
    eager_eot_threshold: float | None = None


def _threshold(name: str, value: str, bounds: tuple[float, float]) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ParameterError(name, f"expected a number, got {value!r}") from None
    if not bounds[0] <= number <= bounds[1]:
        raise ParameterError(name, f"must be between {bounds[0]} and {bounds[1]}, got {number}")
    return number


def parse_options(query: Mapping[str, str], languages: frozenset[str] | None) -> FluxOptions:
    """Flux query parameters → ``FluxOptions``. ``model``: any is accepted (the served
    model answers); ``flux-general-multi`` detects the language per turn, any other is
    English, as ``flux-general-en``. ``eot_timeout_ms`` is Earshot's endpointing (the
    silence that ends a turn); ``eot_threshold`` is validated and has no other effect
    (Earshot ends turns on silence, not on a confidence); ``eager_eot_threshold``, when
    set, turns the eager end-of-turn events on. Accepted without effect: ``tag``,
    ``mip_opt_out``, ``numerals``, ``profanity_filter``, ``language_hint`` and unknown
    names."""
    for name in REFUSED:
        if name in query and query[name].strip().lower() not in ("false", "0", ""):
            raise ParameterError(name, f"{name} is not supported by this server")
    options: dict[str, Any] = parse_audio_format(query, "linear16")
    multi = query.get("model", "").strip().lower() == MODEL_MULTI
    if not multi and languages is not None and "en" not in languages:
        raise ParameterError("model", "this server's model does not transcribe English")
    options["language"] = None if multi else "en"
    prompt = keyterm_prompt(query)
    if prompt:
        options["prompt"] = prompt
    if "eot_threshold" in query:
        options["eot_threshold"] = _threshold(
            "eot_threshold", query["eot_threshold"], EOT_THRESHOLD_RANGE
        )
    if "eager_eot_threshold" in query:
        options["eager_eot_threshold"] = _threshold(
            "eager_eot_threshold", query["eager_eot_threshold"], EAGER_EOT_THRESHOLD_RANGE
        )
    if "eot_timeout_ms" in query:
        timeout = _integer("eot_timeout_ms", query["eot_timeout_ms"])
        low, high = EOT_TIMEOUT_MS_RANGE
        if not low <= timeout <= high:
            raise ParameterError("eot_timeout_ms", f"must be between {low} and {high}")
        options["endpointing_ms"] = min(timeout, ENDPOINTING_MS_RANGE[1])
    if "numerals" in query:
        _flag("numerals", query["numerals"])  # Whisper writes numerals already
    return FluxOptions(
        word_timestamps=True,
        interim_results=True,  # Flux always sends Update
        eager_eot=options.get("eager_eot_threshold") is not None,
        **options,
    )


# -- the codec ----------------------------------------------------------------------------
CONTROL_TYPES = {
    "CloseStream": "close_stream",
    "ForceEndTurn": "finalize",
    "KeepAlive": "keepalive",
}


class FluxCodec:
    def __init__(self, session: StreamSession, model: str) -> None:
        self.session = session
        options = session.options
        self.options = options if isinstance(options, FluxOptions) else FluxOptions()
        self.request_id = session.id
        self.model = model
        self._sequence = 0
        self._turn: int | None = None
        """The open turn: ``StartOfTurn`` sent, ``EndOfTurn`` not yet."""
        self._held: list[Mapping[str, Any]] = []
        """Messages of a later turn, held until the open one has ended."""
        self._latest: dict[str, Any] = {"text": "", "start": 0.0, "end": 0.0}
        """The open turn's transcript and audio window so far."""
        self._forced_at: float | None = None
        """Stream time (s) of the client's ``ForceEndTurn``/``CloseStream``: the turn
        that ends there is ``manual``."""

    # -- client → session ---------------------------------------------------------------
    def parse_control(self, text: str) -> str:
        return parse_control_type(text, CONTROL_TYPES)

    def applied(self, control: str) -> None:
        if control in ("finalize", "close_stream"):
            self._forced_at = self.session.audio_seconds

    # -- session → client ---------------------------------------------------------------
    def encode(self, message: Mapping[str, Any]) -> list[Frame]:
        utterance = message.get("utterance")
        kind = message["type"]
        if (
            utterance is not None
            and kind != "error"
            and self._turn is not None
            and utterance != self._turn
        ):
            self._held.append(message)  # a later turn: after this one's EndOfTurn
            return []
        out = self._encode(message)
        if kind == "final":
            held, self._held = self._held, []
            for later in held:
                out += self._encode(later)
        return [json.dumps(m, ensure_ascii=False, separators=(",", ":")) for m in out]

    def _encode(self, message: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = message["type"]
        if kind == "ready":
            return [self._stamp({"type": "Connected", "request_id": self.request_id})]
        if kind == "speech_started":
            self._turn = int(message["utterance"])
            start = float(message["start"])
            self._latest = {"text": "", "start": start, "end": start}
            return [self._turn_info("StartOfTurn", confidence=0.0)]
        if kind == "partial":
            self._latest = {k: message[k] for k in ("text", "start", "end")}
            return [self._turn_info("Update", confidence=0.0)]
        if kind == "eager_end_of_turn":
            if self.options.eager_eot_threshold is None:
                return []
            self._latest = {k: message[k] for k in ("text", "start", "end")}
            return [self._turn_info("EagerEndOfTurn", confidence=self.options.eager_eot_threshold)]
        if kind == "turn_resumed":
            if self.options.eager_eot_threshold is None:
                return []
            return [self._turn_info("TurnResumed", confidence=0.0)]
        if kind == "final":
            return [self._end_of_turn(message)]
        if kind == "error":
            code, description = str(message["code"]), str(message["message"])
            kind = "Warning" if message.get("utterance") is not None else "Error"
            body = {"type": kind, "code": code, "description": description}
            if kind == "Warning":
                body["request_id"] = self.request_id
            return [self._stamp(body)]
        return []  # closed: the close frame says it; anything Flux has no word for

    def _end_of_turn(self, message: Mapping[str, Any]) -> dict[str, Any]:
        self._latest = {k: message[k] for k in ("text", "start", "end")}
        end = float(message["end"])
        forced = self._forced_at is not None and abs(end - self._forced_at) < 0.01
        if self._forced_at is not None and (forced or end > self._forced_at):
            self._forced_at = None
        cut = end - float(message["start"]) >= self.options.max_utterance_s - 0.05
        words = [
            {
                "word": w["word"].strip(),
                "confidence": w["probability"],
                "start": w["start"],
                "end": w["end"],
            }
            for w in message.get("words", [])
            if w["word"].strip()
        ]
        info = self._turn_info("EndOfTurn", confidence=1.0, words=words)
        info["trigger"] = "manual" if forced or cut else "timeout"
        if self.options.language is None and message.get("language") and words:
            info["languages"] = [message["language"]]
        self._turn = None
        return info

    def _turn_info(
        self, event: str, *, confidence: float, words: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        return self._stamp(
            {
                "type": "TurnInfo",
                "request_id": self.request_id,
                "event": event,
                "turn_index": self._turn if self._turn is not None else 0,
                "audio_window_start": float(self._latest["start"]),
                "audio_window_end": float(self._latest["end"]),
                "transcript": str(self._latest["text"]).strip(),
                "words": words or [],
                "end_of_turn_confidence": confidence,
            }
        )

    def _stamp(self, message: dict[str, Any]) -> dict[str, Any]:
        message["sequence_id"] = self._sequence
        self._sequence += 1
        return message


# -- the handshake ------------------------------------------------------------------------
class FluxDialect(DeepgramDialect):
    """Credentials, subprotocol and refusals as Deepgram's v1 (the same error bodies, 429
    for a full server); Flux's parameters and messages."""

    name = "deepgram_v2"

    def parse_options(  # type: ignore[override]
        self, query: Mapping[str, str], languages: frozenset[str] | None
    ) -> FluxOptions:
        return parse_options(query, languages)

    def codec(self, session: StreamSession, model: str) -> FluxCodec:  # type: ignore[override]
        return FluxCodec(session, model)


FLUX = FluxDialect()


async def deepgram_v2_listen(websocket: WebSocket) -> None:
    """``/deepgram/v2/listen``: Deepgram's Flux API over the shared stream machinery."""
    await serve_stream(websocket, FLUX)
