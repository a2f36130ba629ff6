"""The OpenAI Realtime dialect's parsing and encoding, and the session options it needs
(manual commits, ``clear``, mid-stream language and turn detection), without sockets."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from tests.fakes import LoudnessVad, pcm16, silence, tone
from tests.test_listen_state import FakeSocket, connect, serve

from earshot import protocol
from earshot.dialects.base import Frame, Inbound, Reply
from earshot.dialects.openai_realtime import (
    OPENAI,
    REPLY_ERROR,
    EventError,
    OpenAICodec,
    OpenAIOptions,
    SessionConfig,
    parse_options,
    parse_session,
)
from earshot.endpointing import EndpointingConfig, TurnDetection, UtteranceSegmenter
from earshot.protocol import Configure, ParameterError, SessionOptions
from earshot.session import StreamSession
from earshot.transcript import Priority, Transcript, TranscriptionRequest

LANGUAGES = frozenset({"en", "de", "fr"})


def codec() -> OpenAICodec:
    options = parse_options({"intent": "transcription"}, LANGUAGES)
    return OpenAICodec(StreamSession(options, LoudnessVad()), "base")


def event(**fields: Any) -> str:
    return json.dumps(fields)


def append(audio_bytes: bytes) -> str:
    return event(type="input_audio_buffer.append", audio=base64.b64encode(audio_bytes).decode())


def decoded(frames: list[str]) -> list[dict[str, Any]]:
    return [json.loads(f) for f in frames]


def error_of(parsed: object) -> dict[str, Any]:
    assert isinstance(parsed, Reply) and parsed.message["type"] == REPLY_ERROR
    error: dict[str, Any] = parsed.message["error"]
    return error


# -- session.update -----------------------------------------------------------------------
def test_ga_session_update_sets_format_language_prompt_and_vad() -> None:
    config = parse_session(
        SessionConfig(),
        {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcmu"},
                    "transcription": {
                        "model": "gpt-4o-transcribe",
                        "language": "en-US",
                        "prompt": "Names: Ada.",
                        "keywords": ["Earshot", " "],
                    },
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": 0.05,
                        "prefix_padding_ms": 150,
                        "silence_duration_ms": 20_000,
                    },
                    "noise_reduction": None,
                }
            },
        },
        LANGUAGES,
        beta=False,
    )
    assert config.format == "audio/pcmu" and config.audio_format().sample_rate == 8000
    assert config.language == "en" and config.prompt == "Names: Ada."
    assert config.keywords == ("Earshot",)
    assert config.turns == TurnDetection(
        vad_endpointing=True, threshold=0.2, endpointing_ms=10_000, preroll_s=0.15
    )
    shown = config.session("sess_x", 0)["audio"]["input"]
    assert shown["format"] == {"type": "audio/pcmu"}
    assert shown["turn_detection"]["silence_duration_ms"] == 10_000


def test_turn_detection_null_is_manual_and_absent_fields_keep_their_value() -> None:
    manual = parse_session(
        SessionConfig(language="de"),
        {"type": "transcription", "audio": {"input": {"turn_detection": None}}},
        LANGUAGES,
        beta=False,
    )
    assert manual.turns is None and manual.language == "de" and manual.format == "audio/pcm"
    assert manual.session("s", 0)["audio"]["input"]["turn_detection"] is None


def test_beta_transcription_session_update() -> None:
    config = parse_session(
        SessionConfig(),
        {
            "input_audio_format": "g711_alaw",
            "input_audio_transcription": {"model": "whisper-1", "language": "fr"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 800},
        },
        LANGUAGES,
        beta=True,
    )
    assert config.format == "audio/pcma" and config.language == "fr"
    assert config.turns is not None and config.turns.endpointing_ms == 800
    assert config.beta_session("s", 0)["input_audio_format"] == "g711_alaw"


@pytest.mark.parametrize(
    ("session", "param"),
    [
        ({"type": "realtime"}, "session.type"),
        ({"type": "transcription", "audio": {"output": {}}}, "session.audio.output"),
        (
            {"type": "transcription", "audio": {"input": {"format": {"type": "audio/opus"}}}},
            "session.audio.input.format.type",
        ),
        (
            {
                "type": "transcription",
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}},
            },
            "session.audio.input.format.rate",
        ),
        (
            {"type": "transcription", "audio": {"input": {"transcription": {"language": "xx"}}}},
            "session.audio.input.transcription.language",
        ),
        (
            {
                "type": "transcription",
                "audio": {"input": {"turn_detection": {"type": "semantic_vad"}}},
            },
            "session.audio.input.turn_detection.type",
        ),
        (
            {
                "type": "transcription",
                "audio": {"input": {"turn_detection": {"threshold": "high"}}},
            },
            "session.audio.input.turn_detection.threshold",
        ),
    ],
)
def test_bad_session_updates_name_the_parameter(session: dict[str, Any], param: str) -> None:
    with pytest.raises(EventError) as error:
        parse_session(SessionConfig(), session, LANGUAGES, beta=False)
    assert error.value.param == param


# -- the codec: client events ---------------------------------------------------------------
def test_append_decodes_24khz_pcm16_to_the_sessions_16khz_float_pieces() -> None:
    c = codec()
    audio = tone(1.2, rate=24000)
    parsed = c.parse_control(append(pcm16(audio)))
    assert isinstance(parsed, tuple) and all(isinstance(p, bytes) for p in parsed)
    samples = np.concatenate([np.frombuffer(p, "<f4") for p in parsed if isinstance(p, bytes)])
    assert len(parsed) == 3  # 0.5 s pieces: a session frame's limit is 1 s
    assert abs(len(samples) - 1.2 * 16000) < 200  # less the resampler's delay


def test_g711_formats_decode_at_8khz() -> None:
    c = codec()
    update = {"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcma"}}}}
    configure, reply = c.parse_control(event(type="session.update", session=update))
    assert isinstance(configure, Configure) and isinstance(reply, Reply)
    assert reply.message["session"]["audio"]["input"]["format"] == {"type": "audio/pcma"}
    parsed = c.parse_control(append(bytes([0xD5]) * 4000))  # 0.5 s of A-law silence
    pieces = parsed if isinstance(parsed, tuple) else (parsed,)
    samples = np.concatenate([np.frombuffer(p, "<f4") for p in pieces if isinstance(p, bytes)])
    assert 6000 < len(samples) <= 8000 and np.abs(samples).max() < 0.01  # less the delay


def test_session_update_becomes_a_configure_then_session_updated() -> None:
    c = codec()
    update = {
        "type": "transcription",
        "audio": {
            "input": {
                "transcription": {"language": "de", "prompt": "Hallo.", "keywords": ["Ohr"]},
                "turn_detection": None,
            }
        },
    }
    configure, reply = c.parse_control(event(type="session.update", session=update))
    assert configure == Configure(
        prompt="Hallo.",
        keyterms=("Ohr",),
        set_prompt=True,
        language="de",
        set_language=True,
        turns=TurnDetection(vad_endpointing=False),
    )
    assert isinstance(reply, Reply) and reply.message["type"] == "session.updated"
    frames = decoded(c.encode(reply.message))
    assert frames[0]["event_id"].startswith("event_")
    assert frames[0]["session"]["audio"]["input"]["transcription"]["language"] == "de"


def test_commit_clear_and_the_empty_commit_error() -> None:
    c = codec()
    empty = c.parse_control(event(type="input_audio_buffer.commit", event_id="e1"))
    error = error_of(empty)
    assert error["code"] == "input_audio_buffer_commit_empty" and error["event_id"] == "e1"
    c.parse_control(append(pcm16(tone(0.2, rate=24000))))
    *tail, reply, control = c.parse_control(event(type="input_audio_buffer.commit"))
    assert isinstance(reply, Reply) and control == "finalize"
    assert tail and all(isinstance(t, bytes) for t in tail)  # what the resampler held
    assert reply.message["type"] == "input_audio_buffer.committed"
    assert error_of(c.parse_control(event(type="input_audio_buffer.commit")))  # empty again
    c.parse_control(append(pcm16(tone(0.2, rate=24000))))
    reply, control = c.parse_control(event(type="input_audio_buffer.clear"))
    assert control == "clear" and isinstance(reply, Reply)
    assert error_of(c.parse_control(event(type="input_audio_buffer.commit")))  # cleared


@pytest.mark.parametrize(
    ("text", "code", "param"),
    [
        ("not json", "invalid_json", None),
        ("[1]", "invalid_json", None),
        (event(type="nope"), "invalid_value", "type"),
        (event(type="response.create"), "unsupported_event", "type"),
        (event(type="input_audio_buffer.append", audio="!!"), "invalid_value", "audio"),
        (event(type="input_audio_buffer.append"), "invalid_value", "audio"),
        (append(b"\x00\x01\x02"), "invalid_value", "audio"),  # not whole 16-bit samples
        (event(type="session.update", session=[]), "invalid_value", "session"),
    ],
)
def test_bad_events_are_error_replies(text: str, code: str, param: str | None) -> None:
    error = error_of(codec().parse_control(text))
    assert error["code"] == code and error["param"] == param
    assert error["type"] == "invalid_request_error" and error["message"]


def test_prompt_and_keywords_keep_the_configure_limits() -> None:
    def update(**transcription: Any) -> str:
        session = {"type": "transcription", "audio": {"input": {"transcription": transcription}}}
        return event(type="session.update", session=session)

    c = codec()
    too_many = error_of(c.parse_control(update(keywords=[f"w{i}" for i in range(101)])))
    assert too_many["param"] == "session.audio.input.transcription.keywords"
    too_long = error_of(c.parse_control(update(prompt="x" * 1001)))
    assert too_long["param"] == "session.audio.input.transcription.prompt"
    assert c.config.prompt == ""  # a refused update changes nothing


def test_the_format_is_fixed_once_audio_flows() -> None:
    c = codec()
    c.parse_control(append(pcm16(tone(0.1, rate=24000))))
    update = {"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcmu"}}}}
    error = error_of(c.parse_control(event(type="session.update", session=update)))
    assert error["param"] == "session.audio.input.format"


# -- the codec: server events ---------------------------------------------------------------
def encode_all(c: OpenAICodec, *messages: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for m in messages for e in decoded(c.encode(m))]


def test_server_vad_utterances_become_chained_items() -> None:
    c = codec()
    events = encode_all(
        c,
        {"type": "ready", "session_id": "s"},
        {"type": "speech_started", "utterance": 0, "start": 0.7},
        {"type": "partial", "utterance": 0, "start": 0.7, "end": 1.5, "text": "Hello"},
        {"type": "partial", "utterance": 0, "start": 0.7, "end": 2.0, "text": "Hello world"},
        {"type": "partial", "utterance": 0, "start": 0.7, "end": 2.5, "text": "Hallo world"},
        {"type": "final", "utterance": 0, "start": 0.7, "end": 3.0, "text": "Hello world, hi."},
        {"type": "speech_started", "utterance": 1, "start": 4.0},
        {"type": "final", "utterance": 1, "start": 4.0, "end": 5.0, "text": "Bye."},
        {"type": "closed"},
    )
    kinds = [e["type"] for e in events]
    assert kinds == [
        "session.created",
        "input_audio_buffer.speech_started",
        # "Hello": its last word held back; "Hello world": "Hello"
        "conversation.item.input_audio_transcription.delta",
        # the revised partial ("Hallo world") adds nothing
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
    ]
    first, second = events[1]["item_id"], events[7]["item_id"]
    assert first != second and first.startswith("item_")
    assert all(e["item_id"] == first for e in events[1:7])
    assert [e["delta"] for e in events if e["type"].endswith("delta")] == [
        "Hello",
        " world, hi.",
        "Bye.",
    ]
    assert events[1]["audio_start_ms"] == 700 and events[3]["audio_end_ms"] == 3000
    assert events[4]["previous_item_id"] is None and events[9]["previous_item_id"] == first
    assert events[6]["transcript"] == "Hello world, hi."
    assert events[6]["usage"] == {"type": "duration", "seconds": 2.3}
    assert len({e["event_id"] for e in events}) == len(events)


def test_manual_commit_marks_the_open_item_and_an_empty_one_completes_empty() -> None:
    c = codec()
    c.config = SessionConfig(turns=None)
    committed = {"type": "input_audio_buffer.committed"}
    events = encode_all(
        c,
        {"type": "speech_started", "utterance": 0, "start": 0.1},
        committed,
        {"type": "final", "utterance": 0, "start": 0.1, "end": 2.0, "text": "One."},
        committed,
    )
    kinds = [e["type"] for e in events]
    assert kinds == [
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.completed",
    ]
    assert events[0]["item_id"] == events[2]["item_id"]
    assert events[3]["previous_item_id"] == events[0]["item_id"]
    assert events[4]["transcript"] == "" and events[4]["item_id"] == events[3]["item_id"]


def test_cleared_items_never_complete_and_errors_take_openais_shape() -> None:
    c = codec()
    events = encode_all(
        c,
        {"type": "speech_started", "utterance": 0, "start": 0.1},
        {"type": "input_audio_buffer.cleared"},
        {"type": "input_audio_buffer.committed"},
        protocol.error_message("engine_error", "boom", utterance=1),
        {"type": "final", "utterance": 1, "start": 3.0, "end": 4.0, "text": ""},
        protocol.error_message("input_too_fast", "slow down"),
    )
    kinds = [e["type"] for e in events]
    assert kinds[:3] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.cleared",
        "input_audio_buffer.committed",
    ]
    assert events[2]["item_id"] != events[0]["item_id"]  # the cleared item is gone
    failed = next(e for e in events if e["type"].endswith("transcription.failed"))
    assert failed["error"]["message"] == "boom"
    assert not [
        e for e in events if e["type"].endswith("completed") and e["item_id"] == failed["item_id"]
    ]
    error = events[-1]
    assert error["type"] == "error" and error["event_id"].startswith("event_")
    assert error["error"] == {
        "type": "invalid_request_error",
        "code": "input_too_fast",
        "message": "slow down",
        "param": None,
        "event_id": None,
    }


# -- the handshake --------------------------------------------------------------------------
def test_handshake_options_and_refusal_bodies() -> None:
    options = parse_options({"intent": "transcription", "model": "x"}, LANGUAGES)
    assert isinstance(options, OpenAIOptions) and options.encoding == "pcm_f32le"
    assert options.sample_rate == 16000 and options.languages == LANGUAGES
    with pytest.raises(ParameterError):
        parse_options({"intent": "conversation"}, None)
    body = json.loads(bytes(OPENAI.busy_refusal(503, "full").body))
    assert body == {
        "error": {
            "message": "full",
            "type": "server_error",
            "param": None,
            "code": "server_overloaded",
        }
    }


# -- the session options the dialect needs --------------------------------------------------
def feed(session: StreamSession, audio: np.ndarray) -> None:
    for i in range(0, len(audio), 1600):
        session.receive_audio(pcm16(audio[i : i + 1600]))


def answer(session: StreamSession) -> list[TranscriptionRequest]:
    requests = session.requests_to_engine()
    for r in requests:
        session.receive_transcript(r, Transcript(text=f"text {r.utterance}", language="en"))
    return requests


def finals(session: StreamSession) -> list[dict[str, Any]]:
    return [m for m in session.messages_to_send() if m["type"] == "final"]


def test_without_vad_endpointing_only_finalize_ends_an_utterance() -> None:
    session = StreamSession(SessionOptions(vad_endpointing=False), LoudnessVad())
    feed(session, np.concatenate([tone(1), silence(3), tone(1), silence(3)]))
    requests = answer(session)
    assert not [r for r in requests if r.priority is Priority.FINAL]  # none speculated
    assert not finals(session)
    session.finalize()
    answer(session)
    (final,) = finals(session)
    assert final["end"] == pytest.approx(8.0, abs=0.05)  # everything up to the commit


def test_native_defaults_and_parameters_are_unchanged() -> None:
    assert SessionOptions().vad_endpointing and EndpointingConfig().vad_endpointing
    with pytest.raises(ParameterError):
        protocol.parse_options({"vad_endpointing": "false"})


def test_segmenter_reconfigure_switches_endpointing_mid_utterance() -> None:
    segmenter = UtteranceSegmenter(EndpointingConfig(vad_endpointing=False))
    assert len(segmenter.feed([1.0] * 10 + [0.0] * 40)) == 1  # started, never ended
    assert segmenter.likely_end(1) is None
    segmenter.reconfigure(EndpointingConfig(endpointing_ms=320))
    (end,) = segmenter.feed([0.0])
    assert end.end == 10 * 512 + 3200  # the last voice plus the post-roll


def test_configure_changes_language_and_turn_detection_mid_stream() -> None:
    session = StreamSession(SessionOptions(language="en"), LoudnessVad())
    session.configure(
        Configure(language="de", set_language=True, turns=TurnDetection(vad_endpointing=False))
    )
    assert session.endpointing.speculate_after_s is None
    feed(session, np.concatenate([tone(1), silence(2)]))
    assert not finals(session)
    session.finalize()
    (request,) = [r for r in session.requests_to_engine() if r.priority is Priority.FINAL]
    assert request.language == "de"
    session.configure(Configure(turns=TurnDetection(endpointing_ms=300)))
    assert session.endpointing.vad_endpointing and session.endpointing.speculate_after_s
    assert session.endpointing.endpointing_ms == 300


def test_clear_drops_the_open_utterance_and_later_finals_still_flow() -> None:
    session = StreamSession(SessionOptions(), LoudnessVad())
    feed(session, tone(1.5))
    answer(session)
    session.control("clear")
    answer(session)
    assert not finals(session)
    feed(session, np.concatenate([silence(0.5), tone(1), silence(1)]))
    answer(session)
    (final,) = finals(session)
    assert final["utterance"] == 1 and final["start"] >= 1.5  # no cleared audio in it
    session.close_stream()
    assert session.messages_to_send()[-1] == {"type": "closed"}


# -- the seam: audio and replies inside text frames ------------------------------------------
class TextAudioCodec:
    """A dialect whose text frames carry audio and get answers of its own."""

    def parse_control(self, text: str) -> Inbound | tuple[Inbound, ...]:
        if text == "audio":
            return pcm16(tone(0.5)), Reply({"type": "echo", "after": "audio"})
        return Reply({"type": "echo", "after": "nothing"}), "close_stream"

    def applied(self, control: str) -> None:
        pass

    def encode(self, message: Mapping[str, Any]) -> list[Frame]:
        return [json.dumps(dict(message))]


@pytest.mark.asyncio
async def test_text_frames_may_carry_audio_controls_and_replies_in_order() -> None:
    socket = FakeSocket()
    connection = connect(socket)
    connection.codec = TextAudioCodec()
    paced: list[tuple[type, float]] = []
    arrive = connection.pacer.arrive

    def counted(item: Inbound, seconds: float, now: float) -> None:
        paced.append((type(item), seconds))
        arrive(item, seconds, now)

    connection.pacer.arrive = counted
    socket.feed_text("audio")
    socket.feed_text("end")
    await serve(connection)
    assert paced == [(bytes, pytest.approx(0.5)), (Reply, 0.0), (Reply, 0.0), (str, 0.0)]
    assert connection.session.audio_seconds == pytest.approx(0.5)
    assert socket.sent == [
        {"type": "echo", "after": "audio"},
        {"type": "echo", "after": "nothing"},
        {"type": "closed"},
    ]
    assert socket.closed_with == (1000, "")
