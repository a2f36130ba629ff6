import json

import msgpack
import pytest

from earshot.protocol import (
    ControlError,
    ParameterError,
    SessionOptions,
    encode_message,
    parse_control,
    parse_options,
)


def test_defaults() -> None:
    assert parse_options({}) == SessionOptions()


def test_all_parameters_parse() -> None:
    options = parse_options(
        {
            "sample_rate": "8000",
            "encoding": "pcm_f32le",
            "language": "de",
            "interim_results": "false",
            "word_timestamps": "true",
            "format": "msgpack",
            "endpointing_ms": "300",
            "max_utterance_s": "10",
            "prompt": "Earshot",
        },
        languages=frozenset({"en", "de"}),
    )
    assert options == SessionOptions(
        sample_rate=8000,
        encoding="pcm_f32le",
        language="de",
        interim_results=False,
        word_timestamps=True,
        format="msgpack",
        endpointing_ms=300,
        max_utterance_s=10.0,
        prompt="Earshot",
    )


def test_auto_language_means_detection() -> None:
    assert parse_options({"language": "auto"}).language is None


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"sample_rate": "7999"}, "sample_rate"),
        ({"sample_rate": "48001"}, "sample_rate"),
        ({"sample_rate": "fast"}, "sample_rate"),
        ({"encoding": "mp3"}, "encoding"),
        ({"language": "xx"}, "language"),
        ({"interim_results": "maybe"}, "interim_results"),
        ({"format": "xml"}, "format"),
        ({"endpointing_ms": "5"}, "endpointing_ms"),
        ({"max_utterance_s": "60"}, "max_utterance_s"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_values_name_the_parameter(query: dict[str, str], parameter: str) -> None:
    with pytest.raises(ParameterError) as info:
        parse_options(query, languages=frozenset({"en"}))
    assert info.value.parameter == parameter
    assert info.value.body()["parameter"] == parameter


@pytest.mark.parametrize("kind", ["finalize", "close_stream", "keepalive"])
def test_control_messages(kind: str) -> None:
    assert parse_control(json.dumps({"type": kind})) == kind


@pytest.mark.parametrize("text", ["", "nope", "[]", '{"type": "dance"}', '{"kind": "finalize"}'])
def test_bad_control_messages(text: str) -> None:
    with pytest.raises(ControlError):
        parse_control(text)


def test_encodings_carry_the_same_fields() -> None:
    message = {"type": "final", "utterance": 0, "text": "héllo"}
    assert json.loads(encode_message(message, "json")) == message
    packed = encode_message(message, "msgpack")
    assert isinstance(packed, bytes) and msgpack.unpackb(packed) == message
