"""Deepgram's live API (``/deepgram/v1/listen``) as a dialect of the one streaming session.

An unmodified Deepgram SDK pointed at ``ws://HOST:PORT/deepgram`` streams to Earshot:
its query parameters become ``DeepgramOptions`` (``SessionOptions`` plus what only the
encoder needs), its ``KeepAlive``/``Finalize``/``CloseStream`` text frames become the
session's controls, and the session's messages become Deepgram's ``Results``,
``SpeechStarted``, ``UtteranceEnd``, ``Metadata`` and ``Error`` (the shapes of the
``deepgram-sdk`` package's ``ListenV1*`` types). docs/deepgram.md says what maps to what
and what is refused.

How the session's messages map (``DeepgramCodec.encode``):

- ``ready``: nothing (Deepgram sends nothing on open);
- ``speech_started``: ``SpeechStarted`` when ``vad_events=true``;
- ``partial``: ``Results`` with ``is_final: false`` (only with ``interim_results=true``);
- ``final``: ``Results`` with ``is_final: true``; ``speech_final`` when endpointing closed
  the utterance (not a ``Finalize``, not the ``max_utterance_s`` cut, not with
  ``endpointing=false``); ``from_finalize`` when the client's ``Finalize`` did. Then
  ``UtteranceEnd`` (``last_word_end``) when ``utterance_end_ms`` is set and it had words;
- ``error``: ``Error`` (``variant`` is Earshot's error code);
- ``closed`` (the answer to ``CloseStream``): ``Metadata``, then close 1000.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket

import earshot
from earshot import protocol
from earshot.access import Denied
from earshot.audio import CONTAINER, ENCODINGS
from earshot.dialects.base import Frame
from earshot.endpointing import ENDPOINTING_MS_RANGE
from earshot.listen import serve_stream
from earshot.protocol import ParameterError, SessionOptions
from earshot.session import StreamSession

ENCODING_NAMES = {
    "linear16": "pcm_s16le",
    "linear32": "pcm_f32le",
    "mulaw": "pcm_mulaw",
    "alaw": "pcm_alaw",
    "ogg-opus": "ogg_opus",
}
"""Deepgram's encodings → Earshot's; one is offered only when audio.py decodes it."""

LANGUAGE_MULTI = "multi"
"""Deepgram's "detect per utterance": Earshot's ``auto``."""
DEFAULT_LANGUAGE = "en"
"""Deepgram's default when ``language`` is not given."""
UTTERANCE_END_MS_RANGE = (1, 10_000)
MAX_PROMPT_CHARS = 1000

OFF_ONLY = frozenset(
    {
        "diarize",
        "multichannel",
        "detect_entities",
        "dictation",
        "sentiment",
        "summarize",
        "topics",
        "intents",
        "utterances",
        "paragraphs",
        "measurements",
        "detect_topics",
    }
)
"""Features Earshot doesn't have: ``false`` is fine, anything else is refused."""
UNSUPPORTED = frozenset(
    {
        "diarize_model",
        "redact",
        "search",
        "replace",
        "callback",
        "callback_method",
        "custom_topic",
        "custom_intent",
        "eot_threshold",
        "eager_eot_threshold",
        "eot_timeout_ms",
    }
)
"""Refused whatever the value (``redact=false`` excepted)."""


@dataclass(frozen=True)
class DeepgramOptions(SessionOptions):
    """``SessionOptions`` plus what only the Deepgram encoder reads."""

    vad_events: bool = False
    utterance_end_ms: int | None = None
    punctuate: bool = False
    smart_format: bool = False
    endpointing: bool = True
    """False: ``endpointing=false``; ``speech_final`` is then never true."""


def _flag(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ParameterError(name, f"expected true or false, got {value!r}")


def _integer(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ParameterError(name, f"expected an integer, got {value!r}") from None


def _values(query: Mapping[str, str], name: str) -> list[str]:
    getlist = getattr(query, "getlist", None)
    if getlist is not None:
        return list(getlist(name))
    return [query[name]] if name in query else []


def parse_common(
    query: Mapping[str, str], languages: frozenset[str] | None, *, streaming: bool
) -> dict[str, Any]:
    """What the live and prerecorded APIs share: language, formatting, key terms, and
    the refusal of features Earshot lacks. Raises ``ParameterError`` on the first bad
    one. Other names are accepted without effect: ``model`` (the served model answers),
    ``version``, ``tag``, ``numerals`` (Whisper writes numerals already),
    ``profanity_filter`` and ``filler_words`` (not applied: voice-agent frameworks turn
    them on by default, and refusing them would refuse those frameworks), unknown ones
    (a client library may send more)."""
    for name in query:
        value = query[name].strip().lower()
        if name in UNSUPPORTED and not (name == "redact" and value == "false"):
            raise ParameterError(name, f"{name} is not supported by this server")
        if name in OFF_ONLY and value not in ("false", "0", ""):
            raise ParameterError(name, f"{name} is not supported by this server")
    if streaming and _flag("detect_language", query.get("detect_language", "false")):
        raise ParameterError("detect_language", "use language=multi on a live stream")
    options: dict[str, Any] = {}
    language = query.get("language", DEFAULT_LANGUAGE).strip().lower()
    if language == LANGUAGE_MULTI or (
        not streaming and _flag("detect_language", query.get("detect_language", "false"))
    ):
        options["language"] = None
    else:
        base = language.split("-")[0]
        if languages is not None and base not in languages:
            raise ParameterError("language", f"{language!r} is not supported by this model")
        options["language"] = base
    for flag in ("punctuate", "smart_format"):
        if flag in query:
            options[flag] = _flag(flag, query[flag])
    prompt = keyterm_prompt(query)
    if prompt:
        options["prompt"] = prompt
    return options


def keyterm_prompt(query: Mapping[str, str]) -> str | None:
    """``keyterm`` (repeatable) and ``keywords`` (``word`` or ``word:boost``; Whisper
    takes no boost, only the words) → the recognition prompt, or None."""
    terms = [t.strip() for t in _values(query, "keyterm") if t.strip()]
    terms += [re.sub(r":-?[\d.]+$", "", k).strip() for k in _values(query, "keywords")]
    terms = [t for t in terms if t]
    if not terms:
        return None
    prompt = ", ".join(dict.fromkeys(terms))
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ParameterError("keyterm", f"key terms longer than {MAX_PROMPT_CHARS} characters")
    return prompt


def _native_encoding(name: str) -> str:
    encoding = name.strip().lower()
    native = ENCODING_NAMES.get(encoding)
    if native is None or native not in ENCODINGS:
        offered = sorted(k for k, v in ENCODING_NAMES.items() if v in ENCODINGS)
        raise ParameterError("encoding", f"{encoding!r} is not supported; one of {offered}")
    return native


def parse_audio_format(
    query: Mapping[str, str], default_encoding: str | None = None
) -> dict[str, Any]:
    """``encoding``, ``sample_rate`` and ``channels`` → the ``SessionOptions`` fields they
    set; the live APIs (v1 and v2) share them. Without ``encoding``: ``default_encoding``,
    or, when None (v1, as with Deepgram), a file whose header says what it is (WAV, Ogg
    or WebM Opus: ``CONTAINER``)."""
    options: dict[str, Any] = {}
    if "encoding" not in query and default_encoding is None:
        options["encoding"] = CONTAINER
    else:
        options["encoding"] = _native_encoding(query.get("encoding", default_encoding or ""))
    if "sample_rate" in query:
        rate = _integer("sample_rate", query["sample_rate"])
        if not 8000 <= rate <= 48000:
            raise ParameterError("sample_rate", f"must be between 8000 and 48000, got {rate}")
        options["sample_rate"] = rate
    if "channels" in query and _integer("channels", query["channels"]) != 1:
        raise ParameterError("channels", "only mono audio (channels=1) is supported")
    return options


def parse_options(query: Mapping[str, str], languages: frozenset[str] | None) -> DeepgramOptions:
    """Deepgram live query parameters → ``DeepgramOptions``."""
    options = parse_common(query, languages, streaming=True)
    options.update(parse_audio_format(query))
    for flag in ("interim_results", "vad_events"):
        if flag in query:
            options[flag] = _flag(flag, query[flag])
    endpointing = query.get("endpointing", "true").strip().lower()
    low, high = ENDPOINTING_MS_RANGE
    if endpointing in ("false", "0"):
        # No endpointing: the longest pause Earshot allows, and no speech_final.
        options["endpointing"] = False
        options["endpointing_ms"] = high
    elif endpointing != "true":
        # Deepgram's own default is 10 ms, far shorter than a pause between words;
        # Whisper needs whole phrases, so the bounds of endpointing_ms apply.
        options["endpointing_ms"] = min(high, max(low, _integer("endpointing", endpointing)))
    if "utterance_end_ms" in query:
        value = _integer("utterance_end_ms", query["utterance_end_ms"])
        if not UTTERANCE_END_MS_RANGE[0] <= value <= UTTERANCE_END_MS_RANGE[1]:
            raise ParameterError(
                "utterance_end_ms", f"must be between 1 and {UTTERANCE_END_MS_RANGE[1]}"
            )
        options["utterance_end_ms"] = value
    # Deepgram's Results always carry words; Deepgram's interim results are off by default.
    return DeepgramOptions(
        word_timestamps=True, interim_results=options.pop("interim_results", False), **options
    )


# -- text ---------------------------------------------------------------------------------
_EDGE_PUNCTUATION = "\"'.,;:!?¿¡«»…()[]{}“”‘’„—–-*"


def plain_word(token: str) -> str:
    """Deepgram's ``word``: lower case, without the punctuation around it."""
    return token.strip().strip(_EDGE_PUNCTUATION).lower()


def format_text(text: str, *, punctuated: bool) -> str:
    """Whisper writes punctuation and capitals; without ``punctuate``/``smart_format``
    Deepgram's transcript has neither."""
    if punctuated:
        return text.strip()
    return " ".join(w for w in (plain_word(t) for t in text.split()) if w)


def deepgram_words(words: list[dict[str, Any]], *, punctuated: bool) -> list[dict[str, Any]]:
    """Earshot's ``words`` (``word``, ``start``, ``end``, ``probability``) → Deepgram's."""
    out = []
    for w in words:
        plain = plain_word(w["word"])
        if not plain:
            continue  # a token that was only punctuation
        out.append(
            {
                "word": plain,
                "start": w["start"],
                "end": w["end"],
                "confidence": w["probability"],
                "punctuated_word": w["word"].strip() if punctuated else plain,
            }
        )
    return out


def model_uuid(model: str) -> str:
    """A stable id for the served model (Deepgram's ``model_uuid``)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"earshot:{model}"))


def model_info(model: str) -> dict[str, str]:
    return {"name": model, "version": earshot.__version__, "arch": "whisper"}


# -- the codec ----------------------------------------------------------------------------
CONTROL_TYPES = {"KeepAlive": "keepalive", "Finalize": "finalize", "CloseStream": "close_stream"}


def parse_control_type(text: str, types: Mapping[str, str]) -> str:
    """A Deepgram client text frame (``{"type": "KeepAlive"}``...) → the session control
    it maps to in ``types``; refused like a native control message otherwise."""
    if len(text) > protocol.MAX_CONTROL_CHARS:
        raise protocol.ControlTooLarge(
            f"text frame longer than {protocol.MAX_CONTROL_CHARS} characters"
        )
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        raise protocol.ControlError("text frame is not JSON") from None
    kind = message.get("type") if isinstance(message, dict) else None
    if not isinstance(kind, str) or kind not in types:
        raise protocol.ControlError(f"unknown control message; expected type in {sorted(types)}")
    return types[kind]


class DeepgramCodec:
    def __init__(self, session: StreamSession, model: str) -> None:
        self.session = session
        options = session.options
        self.options = options if isinstance(options, DeepgramOptions) else DeepgramOptions()
        self.punctuated = self.options.punctuate or self.options.smart_format
        self.request_id = session.id
        """Deepgram's ``request_id`` is the Earshot session id (the one in the logs)."""
        self.model = model
        self.model_uuid = model_uuid(model)
        self.created = dt.datetime.now(dt.UTC)
        self._finalized_at: float | None = None
        """Stream time (s) at which the client's ``Finalize`` ended an utterance: the
        final that ends there is ``from_finalize``."""

    # -- client → session ---------------------------------------------------------------
    def parse_control(self, text: str) -> str:
        return parse_control_type(text, CONTROL_TYPES)

    def applied(self, control: str) -> None:
        if control == "finalize":
            self._finalized_at = self.session.audio_seconds

    # -- session → client ---------------------------------------------------------------
    def encode(self, message: Mapping[str, Any]) -> list[Frame]:
        kind = message["type"]
        out: list[dict[str, Any]]
        if kind == "final":
            out = self._final(message)
        elif kind == "partial":
            out = [self._results(message, [], is_final=False)]
        elif kind == "speech_started":
            out = (
                [{"type": "SpeechStarted", "channel": [0], "timestamp": message["start"]}]
                if self.options.vad_events
                else []
            )
        elif kind == "error":
            out = [{"type": "Error", "variant": message["code"], "description": message["message"]}]
        elif kind == "closed":
            out = [self._metadata()]
        else:  # ready, and anything Deepgram has no word for
            out = []
        return [json.dumps(m, ensure_ascii=False, separators=(",", ":")) for m in out]

    def _final(self, message: Mapping[str, Any]) -> list[dict[str, Any]]:
        words = deepgram_words(message.get("words", []), punctuated=self.punctuated)
        end = float(message["end"])
        from_finalize = self._finalized_at is not None and abs(end - self._finalized_at) < 0.01
        if self._finalized_at is not None and (from_finalize or end > self._finalized_at):
            self._finalized_at = None
        duration = end - float(message["start"])
        cut = duration >= self.options.max_utterance_s - 0.05
        results = self._results(message, words, is_final=True)
        results["speech_final"] = self.options.endpointing and not (from_finalize or cut)
        results["from_finalize"] = from_finalize
        out = [results]
        if self.options.utterance_end_ms is not None and words:
            out.append(
                {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": words[-1]["end"]}
            )
        return out

    def _results(
        self, message: Mapping[str, Any], words: list[dict[str, Any]], *, is_final: bool
    ) -> dict[str, Any]:
        text = format_text(str(message["text"]), punctuated=self.punctuated)
        start = float(message["start"])
        alternative: dict[str, Any] = {
            "transcript": text,
            "confidence": (
                round(sum(w["confidence"] for w in words) / len(words), 4) if words else 0.0
            ),
            "words": words,
        }
        if self.options.language is None and message.get("language") and text:
            alternative["languages"] = [message["language"]]
        return {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(float(message["end"]) - start, 3),
            "start": start,
            "is_final": is_final,
            "speech_final": False,
            "from_finalize": False,
            "channel": {"alternatives": [alternative]},
            "metadata": {
                "request_id": self.request_id,
                "model_info": model_info(self.model),
                "model_uuid": self.model_uuid,
            },
        }

    def _metadata(self) -> dict[str, Any]:
        return {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.request_id,
            "sha256": "",
            "created": self.created.isoformat().replace("+00:00", "Z"),
            "duration": round(self.session.audio_seconds, 3),
            "channels": 1,
            "models": [self.model_uuid],
            "model_info": {self.model_uuid: model_info(self.model)},
        }


# -- the handshake ------------------------------------------------------------------------
ERROR_CODES = {400: "Bad Request", 401: "INVALID_AUTH", 403: "FORBIDDEN", 429: "TOO_MANY_REQUESTS"}


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None, *, code: str = ""
) -> Response:
    """Deepgram's error body (``err_code``, ``err_msg``, ``request_id``), also in the
    ``dg-error`` header that its WebSocket clients report."""
    request_id = str(uuid.uuid4())
    body = {
        "err_code": code or ERROR_CODES.get(status, "INTERNAL_SERVER_ERROR"),
        "err_msg": message,
        "request_id": request_id,
    }
    all_headers = {
        **(headers or {}),
        "dg-error": message.encode("ascii", "replace").decode(),
        "dg-request-id": request_id,
    }
    return JSONResponse(body, status_code=status, headers=all_headers)


def normalize_authorization(value: str | None) -> str | None:
    """Deepgram's ``Token <key>`` (its API keys) as Earshot's ``Bearer <key>``."""
    if value is None:
        return None
    scheme, _, credential = value.strip().partition(" ")
    if scheme.lower() == "token":
        return f"Bearer {credential.strip()}"
    return value


class DeepgramDialect:
    name = "deepgram"
    busy_status: int | None = 429
    """Deepgram answers a client over its concurrency limit with HTTP 429 at the
    handshake; its SDKs raise that as an ``ApiError`` with the status."""

    def parse_options(
        self, query: Mapping[str, str], languages: frozenset[str] | None
    ) -> DeepgramOptions:
        return parse_options(query, languages)

    def credentials(self, websocket: WebSocket) -> tuple[str | None, str | None]:
        authorization = normalize_authorization(websocket.headers.get("authorization"))
        if authorization is None:
            # Browsers can't set headers: Sec-WebSocket-Protocol: token, <key>
            offered = websocket.scope.get("subprotocols") or []
            if len(offered) >= 2 and offered[0].lower() in ("token", "bearer"):
                authorization = f"Bearer {offered[1]}"
        return authorization, websocket.query_params.get("token")

    def subprotocol(self, websocket: WebSocket) -> str | None:
        offered = websocket.scope.get("subprotocols") or []
        if offered and offered[0].lower() in ("token", "bearer"):
            return str(offered[0])  # the browser requires the answer to be one it offered
        return None

    def parameter_refusal(self, error: ParameterError) -> Response:
        return error_response(400, f"{error.parameter}: {error.message}")

    def access_refusal(self, denied: Denied) -> Response:
        return error_response(denied.status, denied.message, denied.headers)

    def busy_refusal(self, status: int, reason: str) -> Response:
        return error_response(status, reason, {"Retry-After": "1"})

    def codec(self, session: StreamSession, model: str) -> DeepgramCodec:
        return DeepgramCodec(session, model)


DEEPGRAM = DeepgramDialect()


async def deepgram_listen(websocket: WebSocket) -> None:
    """``/deepgram/v1/listen``: Deepgram's live API over the shared stream machinery."""
    await serve_stream(websocket, DEEPGRAM)
