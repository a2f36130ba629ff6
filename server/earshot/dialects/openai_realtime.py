"""OpenAI's Realtime API, transcription sessions (``/v1/realtime?intent=transcription``),
as a dialect of the one streaming session (docs/openai-realtime.md).

The official ``openai`` SDK's realtime client, with ``websocket_base_url`` pointed at
``ws://HOST:PORT/v1``, streams to Earshot unchanged. Every client event is a JSON text
frame, audio included (``input_audio_buffer.append``: base64), and the stream's settings
come after the handshake, in ``session.update``. So the codec decodes the audio itself
(``audio/pcm`` at 24 kHz, ``audio/pcmu``, ``audio/pcma``) into the session's fixed
encoding, 16 kHz float PCM (``OPENAI_ENCODING``): the session never needs another
decoder, and the pacer counts the audio as a binary frame's. Shapes and names follow the
SDK's ``openai.types.realtime`` (GA) and, for ``transcription_session.update``, its beta
types.

Client events (``OpenAICodec.parse_control``):

- ``session.update`` (``session.type`` ``transcription``) and the beta
  ``transcription_session.update``: format (before the first audio only), language,
  prompt and keywords (a ``Configure``: utterances that open afterwards), turn detection
  (``server_vad`` with ``threshold``, ``prefix_padding_ms``, ``silence_duration_ms``, or
  ``null``: manual commits); answered by ``session.updated`` (beta:
  ``transcription_session.updated``) with the effective configuration;
- ``input_audio_buffer.append``: audio; ``commit``: ``finalize`` (an empty buffer is
  OpenAI's ``input_audio_buffer_commit_empty`` error); ``clear``: the session's ``clear``.

Anything else is a recoverable ``error`` event in OpenAI's shape (the session goes on).
Parsing the session configuration is ``openai_session.py``'s job; this module applies it.

Server events (``OpenAICodec.encode``), one conversation item per utterance (``item_id``
stable from ``speech_started`` to ``completed``; ``previous_item_id`` chains them):

- ``ready``: ``session.created``;
- ``speech_started``: ``input_audio_buffer.speech_started`` (server VAD only);
- ``partial``: ``conversation.item.input_audio_transcription.delta``, the text the partial
  adds to what was already sent (none when Whisper revised it);
- ``final``: ``speech_stopped`` (server VAD, unless the client committed), ``committed``
  (unless already sent on the client's commit), the rest of the text as a ``delta``, then
  ``completed``; an engine failure is ``...transcription.failed``;
- ``error``: ``error``; ``closed``, ``eager_end_of_turn``, ``turn_resumed``: nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket

from earshot.access import AccessPolicy, Denied, principal_of
from earshot.audio import AudioFormatError, PcmDecoder
from earshot.dialects.base import Frame, Inbound, Reply
from earshot.dialects.openai_session import (
    EventError,
    OpenAIOptions,
    SessionConfig,
    check_prompt,
    json_object,
    parse_session,
)
from earshot.endpointing import MAX_UTTERANCE_S_RANGE, TurnDetection
from earshot.listen import serve_stream
from earshot.protocol import Configure, ParameterError
from earshot.session import StreamSession
from earshot.transcript import SAMPLE_RATE

OPENAI_ENCODING = "pcm_f32le"
"""What the codec hands the session: 16 kHz float PCM, whatever the client's format."""
MIN_COMMIT_S = 0.1
"""OpenAI refuses to commit less audio than this (``input_audio_buffer_commit_empty``)."""
CHUNK_SAMPLES = SAMPLE_RATE // 2
"""Decoded audio goes to the session in pieces of at most 0.5 s (a frame's limit is 1 s)."""
MAX_ERROR_CHARS = 300
REPLY_ERROR = "openai.error"
"""A ``Reply``'s type for the ``error`` event answering a bad client event (not the
session's ``error``, which the metrics count by its code)."""


def new_id(prefix: str) -> str:
    """An id in OpenAI's style: ``event_…``, ``item_…``, ``sess_…``."""
    return f"{prefix}_{secrets.token_hex(10)}"


def error_event(
    message: str,
    *,
    kind: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """OpenAI's ``error`` event, less its own ``event_id`` (the encoder adds it)."""
    return {
        "type": "error",
        "error": {
            "type": kind,
            "code": code,
            "message": message,
            "param": param,
            "event_id": event_id,
        },
    }


# -- the codec ----------------------------------------------------------------------------
class OpenAICodec:
    def __init__(self, session: StreamSession, model: str) -> None:
        self.session = session
        options = session.options
        self.languages = options.languages if isinstance(options, OpenAIOptions) else None
        self.session_id = f"sess_{session.id}"
        self.expires_at = int(time.time()) + 3600
        self.config = SessionConfig(language=options.language)
        self._decoder = PcmDecoder(self.config.audio_format())
        self._audio_started = False
        self._uncommitted_s = 0.0
        """Audio appended since the last commit or clear (checked on arrival)."""
        # Encoder state (the sender's order).
        self._items: dict[int, str] = {}
        """Item id per utterance, from its ``speech_started``."""
        self._open: int | None = None
        """The utterance whose ``speech_started`` went out and whose audio is uncommitted."""
        self._committed_utterances: set[int] = set()
        self._failed: set[int] = set()
        self._sent_words: dict[int, list[str]] = {}
        """Per utterance, the words its deltas carried so far (``_plain``)."""
        self._previous_item: str | None = None

    # -- client → session ---------------------------------------------------------------
    def parse_control(self, text: str) -> Inbound | tuple[Inbound, ...]:
        try:
            event = json.loads(text)
        except (ValueError, RecursionError):
            return self._error("The event is not valid JSON.", code="invalid_json")
        if not isinstance(event, dict):
            return self._error("The event must be a JSON object.", code="invalid_json")
        event_id = event.get("event_id")
        event_id = event_id if isinstance(event_id, str) else None
        try:
            return self._parse(event)
        except EventError as exc:
            return self._error(exc.message, code=exc.code, param=exc.param, event_id=event_id)

    def _parse(self, event: dict[str, Any]) -> Inbound | tuple[Inbound, ...]:
        kind = event.get("type")
        if kind == "input_audio_buffer.append":
            return self._append(event.get("audio"))
        if kind == "input_audio_buffer.commit":
            if self._uncommitted_s < MIN_COMMIT_S:
                raise EventError(
                    "Error committing input audio buffer: buffer too small. Expected at least"
                    f" 100ms of audio, but buffer only has {self._uncommitted_s * 1000:.2f}ms"
                    " of audio.",
                    code="input_audio_buffer_commit_empty",
                )
            self._uncommitted_s = 0.0
            tail = self._restart_decoder()  # the resampler's delay: the buffer's last ms
            return *tail, Reply({"type": "input_audio_buffer.committed"}), "finalize"
        if kind == "input_audio_buffer.clear":
            self._uncommitted_s = 0.0
            self._restart_decoder()
            return Reply({"type": "input_audio_buffer.cleared"}), "clear"
        if kind in ("session.update", "transcription_session.update"):
            return self._update(event.get("session"), beta=kind != "session.update")
        if isinstance(kind, str) and kind.startswith(("response.", "conversation.", "output_")):
            raise EventError(
                f"{kind!r} is not supported in a transcription session.",
                code="unsupported_event",
                param="type",
            )
        raise EventError(f"Invalid value: {kind!r}. Unknown event type.", param="type")

    def _append(self, audio: Any) -> Inbound | tuple[Inbound, ...]:
        if not isinstance(audio, str):
            raise EventError("Missing required parameter: 'audio'.", param="audio")
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise EventError(
                "Invalid 'audio'. Expected base64-encoded audio.", param="audio"
            ) from None
        try:
            samples = self._decode(data)
        except AudioFormatError as exc:
            raise EventError(f"Invalid 'audio': {exc}.", param="audio") from None
        self._audio_started = True
        self._uncommitted_s += len(data) / self._decoder.format.bytes_per_second
        return _pieces(samples.astype("<f4"))

    def _restart_decoder(self) -> tuple[bytes, ...]:
        """The audio the resampler still holds (up to ~90 ms at 8 kHz), then a fresh
        decoder for what comes after the commit."""
        tail = self._decoder.flush().astype("<f4")
        self._decoder = PcmDecoder(self._decoder.format)
        return _pieces(tail)

    def _decode(self, data: bytes) -> np.ndarray:
        """The client's audio at 16 kHz, in pieces the decoder takes (1 s at most)."""
        width = self._decoder.format.bytes_per_sample
        if len(data) % width:
            raise AudioFormatError(f"{len(data)} bytes are not whole {width}-byte samples")
        limit = self._decoder.format.max_frame_bytes
        step = limit - limit % width
        pieces = [self._decoder.decode(data[i : i + step]) for i in range(0, len(data), step)]
        return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)

    def _update(self, session: Any, *, beta: bool) -> Inbound | tuple[Inbound, ...]:
        config = parse_session(
            self.config, json_object(session, "session"), self.languages, beta=beta
        )
        check_prompt(config)
        if config.format != self.config.format:
            if self._audio_started:
                raise EventError(
                    "The audio format cannot change once audio was appended.",
                    param="session.audio.input.format",
                )
            self._decoder = PcmDecoder(config.audio_format())
        configure = Configure(
            prompt=config.prompt or None,
            keyterms=config.keywords,
            set_prompt=True,
            language=config.language,
            set_language=True,
            turns=config.turns or TurnDetection(vad_endpointing=False),
        )
        self.config = config
        if beta:
            body = {"type": "transcription_session.updated", "session": self._beta_session()}
        else:
            body = {"type": "session.updated", "session": self._session()}
        return configure, Reply(body)

    def _error(
        self,
        message: str,
        *,
        code: str,
        param: str | None = None,
        event_id: str | None = None,
    ) -> Reply:
        event = error_event(message, code=code, param=param, event_id=event_id)
        return Reply({**event, "type": REPLY_ERROR})

    def applied(self, control: str) -> None:
        pass

    def _session(self) -> dict[str, Any]:
        return self.config.session(self.session_id, self.expires_at)

    def _beta_session(self) -> dict[str, Any]:
        return self.config.beta_session(self.session_id, self.expires_at)

    # -- session → client ---------------------------------------------------------------
    def encode(self, message: Mapping[str, Any]) -> list[Frame]:
        kind = message["type"]
        out: list[dict[str, Any]]
        if kind == "ready":
            out = [{"type": "session.created", "session": self._session()}]
        elif kind == "speech_started":
            out = self._speech_started(message)
        elif kind == "partial":
            out = self._delta(int(message["utterance"]), str(message["text"]), final=False)
        elif kind == "final":
            out = self._final(message)
        elif kind == "error":
            out = self._session_error(message)
        elif kind == "input_audio_buffer.committed":
            out = self._client_commit()
        elif kind == "input_audio_buffer.cleared":
            self._open = None  # its audio is dropped: that utterance never completes
            out = [dict(message)]
        elif kind == REPLY_ERROR:
            out = [{**message, "type": "error"}]
        elif kind in ("session.updated", "transcription_session.updated"):
            out = [dict(message)]
        else:  # closed, eager_end_of_turn, turn_resumed: OpenAI has no word for them
            out = []
        return [_frame({"event_id": new_id("event"), **m}) for m in out]

    def _item(self, utterance: int) -> str:
        if utterance not in self._items:
            self._items[utterance] = new_id("item")
        return self._items[utterance]

    def _speech_started(self, message: Mapping[str, Any]) -> list[dict[str, Any]]:
        utterance = int(message["utterance"])
        self._open = utterance
        item = self._item(utterance)
        if self.config.turns is None:
            return []  # no VAD events without server VAD
        return [
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": round(float(message["start"]) * 1000),
                "item_id": item,
            }
        ]

    def _committed_event(self, item: str) -> dict[str, Any]:
        event = {
            "type": "input_audio_buffer.committed",
            "previous_item_id": self._previous_item,
            "item_id": item,
        }
        self._previous_item = item
        return event

    def _client_commit(self) -> list[dict[str, Any]]:
        """The client's commit, in its turn: the open utterance's audio is the item; with
        no utterance open (no speech heard since the last commit) an empty one."""
        if self._open is not None:
            utterance, self._open = self._open, None
            self._committed_utterances.add(utterance)
            return [self._committed_event(self._item(utterance))]
        item = new_id("item")
        return [self._committed_event(item), self._completed(item, "", 0.0)]

    def _delta(self, utterance: int, text: str, *, final: bool) -> list[dict[str, Any]]:
        """The words ``text`` adds to those the item's deltas carried, where it agrees
        with them (compared without case and punctuation: Whisper's partials move
        commas). A partial's last word is held back, the one most often revised; a
        partial that revised earlier words adds nothing (a delta can't take words back)."""
        words = text.split()
        stable = words if final else words[:-1]
        sent = self._sent_words.get(utterance, [])
        if len(stable) <= len(sent) or [_plain(w) for w in stable[: len(sent)]] != sent:
            return []
        self._sent_words[utterance] = [_plain(w) for w in stable]
        added = " ".join(stable[len(sent) :])
        return [
            {
                "type": "conversation.item.input_audio_transcription.delta",
                "item_id": self._item(utterance),
                "content_index": 0,
                "delta": f" {added}" if sent else added,
            }
        ]

    def _completed(self, item: str, text: str, seconds: float) -> dict[str, Any]:
        return {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": item,
            "content_index": 0,
            "transcript": text,
            "usage": {"type": "duration", "seconds": round(seconds, 3)},
        }

    def _final(self, message: Mapping[str, Any]) -> list[dict[str, Any]]:
        utterance = int(message["utterance"])
        item = self._item(utterance)
        out = []
        if self._open == utterance:
            self._open = None
        if utterance not in self._committed_utterances:
            if self.config.turns is not None:
                end_ms = round(float(message["end"]) * 1000)
                out.append(
                    {
                        "type": "input_audio_buffer.speech_stopped",
                        "audio_end_ms": end_ms,
                        "item_id": item,
                    }
                )
            out.append(self._committed_event(item))
        self._committed_utterances.discard(utterance)
        if utterance in self._failed:
            self._failed.discard(utterance)
        else:
            text = str(message["text"]).strip()
            out += self._delta(utterance, text, final=True)
            seconds = float(message["end"]) - float(message["start"])
            out.append(self._completed(item, text, seconds))
        self._items.pop(utterance, None)
        self._sent_words.pop(utterance, None)
        return out

    def _session_error(self, message: Mapping[str, Any]) -> list[dict[str, Any]]:
        code, detail = str(message["code"]), str(message["message"])[:MAX_ERROR_CHARS]
        utterance = message.get("utterance")
        if code == "engine_error" and utterance is not None:
            self._failed.add(int(utterance))
            return [
                {
                    "type": "conversation.item.input_audio_transcription.failed",
                    "item_id": self._item(int(utterance)),
                    "content_index": 0,
                    "error": {
                        "type": "server_error",
                        "code": code,
                        "message": detail,
                        "param": None,
                    },
                }
            ]
        kind = "server_error" if code in SERVER_ERRORS else "invalid_request_error"
        return [error_event(detail, kind=kind, code=code)]


SERVER_ERRORS = frozenset({"internal_error", "overloaded", "draining", "engine_error"})


def _plain(word: str) -> str:
    return word.strip(_PUNCTUATION).lower()


_PUNCTUATION = "\"'.,;:!?¿¡«»…()[]{}“”‘’„—–-*"


def _pieces(pcm: np.ndarray) -> tuple[bytes, ...]:
    return tuple(pcm[i : i + CHUNK_SAMPLES].tobytes() for i in range(0, len(pcm), CHUNK_SAMPLES))


def _frame(event: Mapping[str, Any]) -> str:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


# -- the handshake ------------------------------------------------------------------------
INSECURE_KEY_PREFIX = "openai-insecure-api-key."
"""Browsers can't set headers: the OpenAI browser client offers
``Sec-WebSocket-Protocol: realtime, openai-insecure-api-key.<key>``."""
ERROR_TYPES = {
    400: ("invalid_request_error", "invalid_value"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "forbidden"),
    429: ("rate_limit_exceeded", "rate_limit_exceeded"),
    503: ("server_error", "server_overloaded"),
}


def error_response(
    status: int,
    message: str,
    headers: Mapping[str, str] | None = None,
    *,
    code: str | None = None,
    param: str | None = None,
) -> Response:
    """OpenAI's HTTP error body: ``{"error": {"message", "type", "param", "code"}}``."""
    kind, default_code = ERROR_TYPES.get(status, ("server_error", "server_error"))
    body = {
        "error": {"message": message, "type": kind, "param": param, "code": code or default_code}
    }
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def parse_options(query: Mapping[str, str], languages: frozenset[str] | None) -> OpenAIOptions:
    """The handshake's query: ``intent=transcription`` (or nothing); ``model`` and
    anything else are ignored (the served model answers). Everything else arrives in
    ``session.update``."""
    intent = query.get("intent")
    if intent is not None and intent != "transcription":
        raise ParameterError("intent", "this server has transcription sessions only")
    return OpenAIOptions(
        sample_rate=SAMPLE_RATE,
        encoding=OPENAI_ENCODING,
        interim_results=True,
        max_utterance_s=MAX_UTTERANCE_S_RANGE[1],
        languages=languages,
    )


def _offered(websocket: WebSocket) -> list[str]:
    return [str(p) for p in websocket.scope.get("subprotocols") or []]


class OpenAIDialect:
    name = "openai"
    busy_status: int | None = 503
    """A full server refuses the handshake with HTTP 503 and OpenAI's error body."""

    def parse_options(
        self, query: Mapping[str, str], languages: frozenset[str] | None
    ) -> OpenAIOptions:
        return parse_options(query, languages)

    def credentials(self, websocket: WebSocket) -> tuple[str | None, str | None]:
        authorization = websocket.headers.get("authorization")
        if authorization is None:
            for offered in _offered(websocket):
                if offered.startswith(INSECURE_KEY_PREFIX):
                    authorization = f"Bearer {offered.removeprefix(INSECURE_KEY_PREFIX)}"
                    break
        return authorization, websocket.query_params.get("token")

    def subprotocol(self, websocket: WebSocket) -> str | None:
        # The browser requires the answer to be one it offered: ``realtime``.
        return "realtime" if "realtime" in _offered(websocket) else None

    def parameter_refusal(self, error: ParameterError) -> Response:
        return error_response(400, error.message, param=error.parameter)

    def access_refusal(self, denied: Denied) -> Response:
        return error_response(denied.status, denied.message, denied.headers, code=denied.code)

    def busy_refusal(self, status: int, reason: str) -> Response:
        return error_response(status, reason, {"Retry-After": "1"})

    def codec(self, session: StreamSession, model: str) -> OpenAICodec:
        return OpenAICodec(session, model)


OPENAI = OpenAIDialect()


async def openai_realtime(websocket: WebSocket) -> None:
    """``/v1/realtime``: OpenAI's Realtime transcription sessions."""
    await serve_stream(websocket, OPENAI)


async def client_secrets(request: Request) -> Response:
    """``POST /v1/realtime/client_secrets`` (the SDK's ``realtime.client_secrets.create``):
    an Earshot short-lived token (POST /v1/auth/token's) in OpenAI's response shape, for
    a browser to pass as ``openai-insecure-api-key.<value>``. The ``session`` asked for is
    echoed, not stored: the browser sends its ``session.update`` as usual."""
    policy: AccessPolicy = request.app.state.runtime.access
    principal = principal_of(request)
    if principal.via_token:
        return error_response(403, "a client secret cannot mint client secrets; use an API key")
    try:
        body = json.loads(await request.body() or b"{}")
        if not isinstance(body, dict):
            raise ValueError(body)
        expires = body.get("expires_after") or {}
        seconds = expires.get("seconds") if isinstance(expires, dict) else None
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int)):
            raise ValueError(seconds)
        config = SessionConfig()
        if body.get("session") is not None:
            config = parse_session(
                config, json_object(body["session"], "session"), None, beta=False
            )
    except EventError as exc:
        return error_response(400, exc.message, param=exc.param)
    except (ValueError, RecursionError):
        return error_response(400, "the body must be a JSON object ({session, expires_after})")
    token, expires_at, _ = policy.mint(principal, float(seconds) if seconds else None)
    session = config.session(new_id("sess"), expires_at)
    return JSONResponse(
        {"value": token, "expires_at": expires_at, "session": session},
        headers={"Cache-Control": "no-store"},
    )
