"""The Deepgram dialect's parts on plain values: query parameters → options, control
frames → session actions, session messages → Deepgram's messages (parsed back with the
``deepgram-sdk`` package's own types), and its refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest
from deepgram.core.unchecked_base_model import construct_type
from deepgram.listen.v1.socket_client import V1SocketClientResponse
from deepgram.listen.v1.types import (
    ListenV1Error,
    ListenV1Metadata,
    ListenV1Results,
    ListenV1SpeechStarted,
    ListenV1UtteranceEnd,
)
from deepgram.types import ListenV1Response
from starlette.datastructures import QueryParams

from earshot import protocol
from earshot.access import Denied
from earshot.audio import ENCODINGS
from earshot.dialects.deepgram import (
    DEEPGRAM,
    DeepgramCodec,
    DeepgramOptions,
    format_text,
    normalize_authorization,
    parse_options,
)
from earshot.dialects.deepgram_rest import response_body
from earshot.dialects.native import NATIVE
from earshot.jobs.models import JobResult, ResultSegment, ResultWord
from earshot.protocol import ParameterError, SessionOptions
from earshot.session import StreamSession
from fakes import LoudnessVad

LANGUAGES = frozenset({"en", "de", "es"})


def options(query: str) -> DeepgramOptions:
    return parse_options(QueryParams(query), LANGUAGES)


def test_query_parameters_become_session_options() -> None:
    default = options("")
    # No encoding, as with Deepgram: an audio file whose header says what it is.
    assert (default.encoding, default.sample_rate, default.language) == ("container", 16000, "en")
    assert options("encoding=linear16").encoding == "pcm_s16le"
    assert default.interim_results is False and default.word_timestamps is True
    assert default.vad_events is False and default.utterance_end_ms is None
    parsed = options(
        "model=nova-3&encoding=linear32&sample_rate=8000&channels=1&language=de-DE"
        "&interim_results=true&endpointing=300&utterance_end_ms=1000&vad_events=true"
        "&punctuate=true&smart_format=false&keyterm=Earshot&keyterm=Whisper"
        "&keywords=Deepgram:2&diarize=false&version=latest&tag=x&unknown=1"
        "&profanity_filter=true&filler_words=true&numerals=true"
    )
    assert (parsed.encoding, parsed.sample_rate, parsed.language) == ("pcm_f32le", 8000, "de")
    assert parsed.interim_results and parsed.vad_events and parsed.punctuate
    assert (parsed.endpointing_ms, parsed.utterance_end_ms) == (300, 1000)
    assert parsed.prompt == "Earshot, Whisper, Deepgram"
    assert options("language=multi").language is None
    # G.711 and Ogg Opus are offered exactly when audio.py decodes them.
    for deepgram_name, earshot_name in (
        ("mulaw", "pcm_mulaw"),
        ("alaw", "pcm_alaw"),
        ("ogg-opus", "ogg_opus"),
    ):
        if earshot_name in ENCODINGS:
            assert options(f"encoding={deepgram_name}").encoding == earshot_name
        else:
            with pytest.raises(ParameterError):
                options(f"encoding={deepgram_name}")
    # Deepgram's 10 ms default is shorter than Earshot allows: clamped, not refused.
    assert options("endpointing=10").endpointing_ms == 100
    off = options("endpointing=false")
    assert off.endpointing is False and off.endpointing_ms == 10_000


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("diarize=true", "diarize"),
        ("redact=pci", "redact"),
        ("search=word", "search"),
        ("multichannel=true", "multichannel"),
        ("channels=2", "channels"),
        ("encoding=opus", "encoding"),
        ("encoding=flac", "encoding"),
        ("sample_rate=4000", "sample_rate"),
        ("language=xx", "language"),
        ("interim_results=maybe", "interim_results"),
        ("utterance_end_ms=abc", "utterance_end_ms"),
        ("keyterm=" + "x" * 1001, "keyterm"),
    ],
)
def test_unsupported_or_bad_parameters_are_refused(query: str, parameter: str) -> None:
    with pytest.raises(ParameterError) as refused:
        options(query)
    assert refused.value.parameter == parameter
    response = DEEPGRAM.parameter_refusal(refused.value)
    body = json.loads(bytes(response.body))
    assert response.status_code == 400 and body["err_code"] == "Bad Request"
    assert parameter in body["err_msg"] and response.headers["dg-error"] == body["err_msg"]


def test_credentials_and_refusal_bodies() -> None:
    assert normalize_authorization("Token abc") == "Bearer abc"
    assert normalize_authorization("Bearer es_tok") == "Bearer es_tok"
    assert normalize_authorization(None) is None
    denied = DEEPGRAM.access_refusal(Denied(401, "unauthorized", "invalid API key"))
    assert denied.status_code == 401
    assert json.loads(bytes(denied.body))["err_code"] == "INVALID_AUTH"
    busy = DEEPGRAM.busy_refusal(429, "server at its limit")
    assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
    # The native dialect's refusals are the contract's.
    native_busy = NATIVE.busy_refusal(503, "full")
    assert json.loads(bytes(native_busy.body)) == protocol.error_message("overloaded", "full")
    bad = ParameterError("format", "must be json or msgpack")
    assert json.loads(bytes(NATIVE.parameter_refusal(bad).body)) == bad.body()


def codec(query: str = "encoding=linear16") -> DeepgramCodec:
    session = StreamSession(options(query), LoudnessVad(), session_id="abc123")  # type: ignore[arg-type]
    return DeepgramCodec(session, "base")


def decoded(frames: list[Any]) -> list[Any]:
    """Frames as the SDK parses them."""
    return [construct_type(type_=V1SocketClientResponse, object_=json.loads(f)) for f in frames]  # type: ignore[arg-type]


FINAL = {
    "type": "final",
    "utterance": 0,
    "start": 0.5,
    "end": 2.0,
    "text": " Hello, world.",
    "language": "en",
    "words": [
        {"word": " Hello,", "start": 0.6, "end": 1.0, "probability": 0.9},
        {"word": " world.", "start": 1.1, "end": 1.6, "probability": 0.7},
    ],
}


def test_session_messages_become_deepgram_messages() -> None:
    c = codec("vad_events=true&utterance_end_ms=1000&punctuate=true")
    assert c.encode({"type": "ready", "session_id": "abc123"}) == []
    (started,) = decoded(c.encode({"type": "speech_started", "utterance": 0, "start": 0.5}))
    assert isinstance(started, ListenV1SpeechStarted) and started.timestamp == 0.5
    partial = {"type": "partial", "utterance": 0, "start": 0.5, "end": 1.5, "text": " Hello"}
    (interim,) = decoded(c.encode(partial))
    assert isinstance(interim, ListenV1Results) and interim.is_final is False
    assert interim.channel.alternatives[0].transcript == "Hello"
    results, end = decoded(c.encode(FINAL))
    assert isinstance(results, ListenV1Results)
    assert (results.is_final, results.speech_final, results.from_finalize) == (True, True, False)
    assert (results.start, results.duration) == (0.5, 1.5)
    alternative = results.channel.alternatives[0]
    assert alternative.transcript == "Hello, world."
    assert alternative.confidence == pytest.approx(0.8)
    assert [(w.word, w.punctuated_word, w.confidence) for w in alternative.words] == [
        ("hello", "Hello,", 0.9),
        ("world", "world.", 0.7),
    ]
    assert results.metadata.request_id == "abc123" and results.metadata.model_info.name == "base"
    assert isinstance(end, ListenV1UtteranceEnd) and end.last_word_end == 1.6
    (error,) = decoded(c.encode(protocol.error_message("idle_timeout", "nothing received")))
    assert isinstance(error, ListenV1Error) and error.variant == "idle_timeout"
    (metadata,) = decoded(c.encode({"type": "closed"}))
    assert isinstance(metadata, ListenV1Metadata) and metadata.request_id == "abc123"
    assert metadata.channels == 1 and metadata.duration == 0.0


def test_events_only_when_asked_and_text_as_deepgram_formats_it() -> None:
    c = codec()
    assert c.encode({"type": "speech_started", "utterance": 0, "start": 0.5}) == []
    (results,) = decoded(c.encode(FINAL))  # no UtteranceEnd without utterance_end_ms
    alternative = results.channel.alternatives[0]
    assert alternative.transcript == "hello world"  # punctuate=false
    assert [w.punctuated_word for w in alternative.words] == ["hello", "world"]
    assert format_text(" Don't stop—now!", punctuated=False) == "don't stop—now"
    (multi,) = decoded(codec("language=multi").encode(FINAL))
    assert multi.channel.alternatives[0].languages == ["en"]
    empty = {**FINAL, "text": "", "words": []}
    (blank,) = decoded(codec("utterance_end_ms=1000").encode(empty))
    assert blank.channel.alternatives[0].transcript == "" and blank.is_final


def test_control_frames_and_finalize() -> None:
    c = codec()
    assert c.parse_control('{"type": "KeepAlive"}') == "keepalive"
    assert c.parse_control('{"type": "CloseStream"}') == "close_stream"
    assert c.parse_control('{"type": "Finalize"}') == "finalize"
    for bad in ("not json", '{"type": "finalize"}', "[]", '{"type": "Configure"}'):
        with pytest.raises(protocol.ControlError):
            c.parse_control(bad)
    with pytest.raises(protocol.ControlTooLarge):
        c.parse_control(" " * (protocol.MAX_CONTROL_CHARS + 1))
    # Finalize applied at 2.0 s of stream audio: the final that ends there is from it.
    c.session.receive_audio(bytes(32000))
    c.session.receive_audio(bytes(32000))
    c.applied("finalize")
    (results,) = decoded(c.encode(FINAL))
    assert (results.from_finalize, results.speech_final) == (True, False)
    (later,) = decoded(c.encode({**FINAL, "start": 3.0, "end": 4.0}))
    assert later.from_finalize is False and later.speech_final is True


def test_codec_over_plain_session_options_uses_deepgram_defaults() -> None:
    session = StreamSession(SessionOptions(), LoudnessVad(), session_id="s")  # type: ignore[arg-type]
    (results,) = decoded(DeepgramCodec(session, "base").encode(FINAL))
    assert results.channel.alternatives[0].transcript == "hello world"


def test_prerecorded_response_parses_as_the_sdks() -> None:
    words = (ResultWord(" Hello,", 0.0, 0.4, 0.8), ResultWord(" there.", 0.5, 0.9, 0.6))
    result = JobResult(
        "Hello, there.", "en", 1.5, (ResultSegment(0.0, 0.9, " Hello, there.", words),)
    )
    body = response_body(result, model="base", sha256="ab", punctuated=True, detected=True)
    parsed = construct_type(type_=ListenV1Response, object_=body)
    assert isinstance(parsed, ListenV1Response)
    channel = parsed.results.channels[0]
    assert channel.detected_language == "en"
    assert channel.alternatives[0].transcript == "Hello, there."
    assert [w.word for w in channel.alternatives[0].words] == ["hello", "there"]
    assert parsed.metadata.duration == 1.5 and parsed.metadata.sha256 == "ab"
