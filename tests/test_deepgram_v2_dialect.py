"""The Deepgram Flux (v2) dialect's parts on plain values: query parameters → options,
control frames → session actions, session messages → ``TurnInfo`` and the other v2
messages, parsed back with the ``deepgram-sdk`` package's own v2 types."""

from __future__ import annotations

import json
from typing import Any

import pytest
from deepgram.core.unchecked_base_model import construct_type
from deepgram.listen.v2.socket_client import V2SocketClientResponse
from deepgram.listen.v2.types import (
    ListenV2Connected,
    ListenV2FatalError,
    ListenV2TurnInfo,
    ListenV2Warning,
)
from starlette.datastructures import QueryParams

from earshot import protocol
from earshot.dialects.deepgram_v2 import FLUX, FluxCodec, FluxOptions, parse_options
from earshot.protocol import ParameterError, SessionOptions
from earshot.session import StreamSession
from fakes import LoudnessVad

LANGUAGES = frozenset({"en", "de"})


def options(query: str) -> FluxOptions:
    return parse_options(QueryParams(query), LANGUAGES)


def test_query_parameters_become_session_options() -> None:
    default = options("model=flux-general-en")
    assert (default.encoding, default.sample_rate, default.language) == ("pcm_s16le", 16000, "en")
    assert default.interim_results and default.word_timestamps
    assert not default.eager_eot and default.eager_eot_threshold is None
    assert default.endpointing_ms == SessionOptions().endpointing_ms
    parsed = options(
        "model=flux-general-en&encoding=linear16&sample_rate=8000&eot_threshold=0.8"
        "&eager_eot_threshold=0.5&eot_timeout_ms=700&keyterm=Earshot&keyterm=Flux"
        "&tag=x&mip_opt_out=true&numerals=true&redact=false&unknown=1"
    )
    assert parsed.sample_rate == 8000 and parsed.eot_threshold == 0.8
    assert parsed.eager_eot and parsed.eager_eot_threshold == 0.5
    assert parsed.endpointing_ms == 700 and parsed.prompt == "Earshot, Flux"
    assert options("model=flux-general-multi").language is None
    # Earshot's lowest endpointing is accepted; a long timeout waits Earshot's longest.
    assert options("eot_timeout_ms=100").endpointing_ms == 100
    assert options("eot_timeout_ms=60000").endpointing_ms == 10_000


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("eot_threshold=0.2", "eot_threshold"),
        ("eager_eot_threshold=0.95", "eager_eot_threshold"),
        ("eager_eot_threshold=soon", "eager_eot_threshold"),
        ("eot_timeout_ms=50", "eot_timeout_ms"),
        ("eot_timeout_ms=70000", "eot_timeout_ms"),
        ("encoding=opus", "encoding"),
        ("sample_rate=4000", "sample_rate"),
        ("redact=pci", "redact"),
        ("numerals=maybe", "numerals"),
    ],
)
def test_refused_parameters(query: str, parameter: str) -> None:
    with pytest.raises(ParameterError) as error:
        options(query)
    assert error.value.parameter == parameter
    refusal = FLUX.parameter_refusal(error.value)
    assert refusal.status_code == 400 and parameter in json.loads(bytes(refusal.body))["err_msg"]


def codec(query: str = "eager_eot_threshold=0.5") -> FluxCodec:
    session = StreamSession(options(query), LoudnessVad(), session_id="abc123")  # type: ignore[arg-type]
    return FluxCodec(session, "base")


def decoded(frames: list[Any]) -> list[Any]:
    return [construct_type(type_=V2SocketClientResponse, object_=json.loads(f)) for f in frames]  # type: ignore[arg-type]


def events(parsed: list[Any]) -> list[str]:
    return [m.event if isinstance(m, ListenV2TurnInfo) else type(m).__name__ for m in parsed]


WORDS = [
    {"word": " Hello,", "start": 0.5, "end": 0.9, "probability": 0.9},
    {"word": " world.", "start": 1.0, "end": 1.4, "probability": 0.8},
]


def turn(utterance: int, start: float = 0.5) -> list[dict[str, Any]]:
    """A turn's session messages: start, partial, eager, resumed, eager, final."""
    return [
        {"type": "speech_started", "utterance": utterance, "start": start},
        {"type": "partial", "utterance": utterance, "start": start, "end": 1.1, "text": "Hello"},
        {"type": "eager_end_of_turn", "utterance": utterance, "start": start, "end": 1.2,
         "text": "Hello,"},
        {"type": "turn_resumed", "utterance": utterance},
        {"type": "eager_end_of_turn", "utterance": utterance, "start": start, "end": 1.5,
         "text": "Hello, world."},
        {"type": "final", "utterance": utterance, "start": start, "end": 1.5,
         "text": " Hello, world.", "words": WORDS, "language": "en"},
    ]  # fmt: skip


def test_a_turn_as_turn_info_events_the_sdk_parses() -> None:
    flux = codec()
    parsed = decoded([f for m in [{"type": "ready"}, *turn(0)] for f in flux.encode(m)])
    assert events(parsed) == [
        "ListenV2Connected",
        "StartOfTurn",
        "Update",
        "EagerEndOfTurn",
        "TurnResumed",
        "EagerEndOfTurn",
        "EndOfTurn",
    ]
    assert isinstance(parsed[0], ListenV2Connected) and parsed[0].request_id == "abc123"
    assert [m.sequence_id for m in parsed] == list(range(len(parsed)))
    infos = parsed[1:]
    assert all(m.turn_index == 0 and m.request_id == "abc123" for m in infos)
    assert [m.transcript for m in infos] == [
        "", "Hello", "Hello,", "Hello,", "Hello, world.", "Hello, world."
    ]  # fmt: skip
    assert infos[2].end_of_turn_confidence == 0.5
    end = infos[-1]
    assert (end.audio_window_start, end.audio_window_end) == (0.5, 1.5)
    assert [(w.word, w.confidence, w.start, w.end) for w in end.words] == [
        ("Hello,", 0.9, 0.5, 0.9),
        ("world.", 0.8, 1.0, 1.4),
    ]
    assert end.end_of_turn_confidence == 1.0 and end.trigger == "timeout"
    assert all(m.trigger is None for m in infos[:-1])


def test_eager_events_only_with_eager_eot_threshold() -> None:
    """The session sends no eager messages without ``eager_eot``; the codec drops them
    too, as Flux sends none without ``eager_eot_threshold``."""
    flux = codec("")
    parsed = decoded([f for m in turn(0) for f in flux.encode(m)])
    assert events(parsed) == ["StartOfTurn", "Update", "EndOfTurn"]


def test_turns_never_interleave() -> None:
    """A turn that opens while the previous one's final is decoded is held until that
    ``EndOfTurn`` is out."""
    flux = codec()
    first, second = turn(0), turn(1, start=2.0)
    order = [*first[:2], *second[:2], first[-1], *second[2:]]
    parsed = decoded([f for m in order for f in flux.encode(m)])
    assert [(m.turn_index, m.event) for m in parsed] == [
        (0, "StartOfTurn"),
        (0, "Update"),
        (0, "EndOfTurn"),
        (1, "StartOfTurn"),
        (1, "Update"),
        (1, "EagerEndOfTurn"),
        (1, "TurnResumed"),
        (1, "EagerEndOfTurn"),
        (1, "EndOfTurn"),
    ]
    assert [m.sequence_id for m in parsed] == list(range(len(parsed)))


def test_force_end_turn_is_a_manual_end() -> None:
    flux = codec()
    assert flux.parse_control('{"type": "ForceEndTurn"}') == "finalize"
    assert flux.parse_control('{"type": "CloseStream"}') == "close_stream"
    assert flux.parse_control('{"type": "KeepAlive"}') == "keepalive"
    flux.session._received = 24_000  # 1.5 s of audio when the ForceEndTurn applies
    flux.applied("finalize")
    parsed = decoded([f for m in turn(0) for f in flux.encode(m)])
    assert parsed[-1].event == "EndOfTurn" and parsed[-1].trigger == "manual"
    for bad in ("not json", '{"type": "Configure"}', '{"type": "Finalize"}', "[]"):
        with pytest.raises(protocol.ControlError):
            flux.parse_control(bad)


def test_errors_warnings_and_language() -> None:
    flux = codec("model=flux-general-multi")
    engine = protocol.error_message("engine_error", "decoder failed", utterance=0)
    parsed = decoded(
        [f for m in [turn(0)[0], engine, turn(0)[-1]] for f in flux.encode(m)]
        + flux.encode(protocol.error_message("idle_timeout", "nothing received"))
    )
    warning, end, fatal = parsed[1:]
    assert isinstance(warning, ListenV2Warning) and warning.code == "engine_error"
    assert end.event == "EndOfTurn" and end.languages == ["en"]
    assert isinstance(fatal, ListenV2FatalError) and fatal.code == "idle_timeout"
    assert flux.encode({"type": "closed"}) == []


def test_codec_over_plain_session_options() -> None:
    session = StreamSession(SessionOptions(), LoudnessVad(), session_id="s")  # type: ignore[arg-type]
    flux = FluxCodec(session, "base")
    (end,) = decoded(flux.encode(turn(0)[-1]))
    assert end.event == "EndOfTurn" and end.transcript == "Hello, world."
