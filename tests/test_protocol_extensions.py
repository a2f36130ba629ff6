"""Extensions of the native protocol: new encodings, ``eager_eot``, ``configure``."""

from __future__ import annotations

import json

import pytest

from earshot.client import EagerEndOfTurn, TurnResumed, parse_message
from earshot.protocol import (
    CONTROL_TYPES,
    MAX_PROMPT_CHARS,
    Configure,
    ControlError,
    ParameterError,
    effective_prompt,
    parse_control,
    parse_control_message,
    parse_options,
)


@pytest.mark.parametrize("encoding", ["pcm_mulaw", "pcm_alaw", "ogg_opus", "webm_opus"])
def test_new_encodings_are_accepted(encoding: str) -> None:
    assert parse_options({"encoding": encoding, "sample_rate": "8000"}).encoding == encoding


def test_an_unknown_encoding_names_the_accepted_ones() -> None:
    with pytest.raises(ParameterError, match="pcm_mulaw") as info:
        parse_options({"encoding": "mp3"})
    assert info.value.parameter == "encoding"


def test_eager_eot_is_off_unless_asked() -> None:
    assert parse_options({}).eager_eot is False
    assert parse_options({"eager_eot": "true"}).eager_eot is True
    with pytest.raises(ParameterError):
        parse_options({"eager_eot": "soon"})


def test_configure_parses_prompt_and_keyterms() -> None:
    message = parse_control_message(
        json.dumps({"type": "configure", "prompt": "Acme call", "keyterms": [" gRPC ", "Kafka"]})
    )
    assert message == Configure("Acme call", ("gRPC", "Kafka"), set_prompt=True)
    assert parse_control(json.dumps({"type": "configure", "keyterms": []})) == "configure"
    assert "configure" in CONTROL_TYPES


def test_configure_fields_that_are_absent_keep_their_setting() -> None:
    keyterms_only = parse_control_message(json.dumps({"type": "configure", "keyterms": ["x"]}))
    assert isinstance(keyterms_only, Configure)
    assert keyterms_only.apply("old", ("a",)) == ("old", ("x",))
    clear = parse_control_message(json.dumps({"type": "configure", "prompt": None}))
    assert isinstance(clear, Configure)
    assert clear.apply("old", ("a",)) == (None, ("a",))


def test_effective_prompt_appends_keyterms() -> None:
    assert effective_prompt("Hello", ("A", "B")) == "Hello A, B"
    assert effective_prompt(None, ("A",)) == "A"
    assert effective_prompt(None, ()) is None


@pytest.mark.parametrize(
    ("message", "complaint"),
    [
        ({"type": "configure", "language": "de"}, "unknown field 'language'"),
        ({"type": "configure", "prompt": 5}, "prompt must be a string"),
        ({"type": "configure", "prompt": "x" * (MAX_PROMPT_CHARS + 1)}, "longer than"),
        ({"type": "configure", "keyterms": "gRPC"}, "list of strings"),
        ({"type": "configure", "keyterms": [1]}, "list of strings"),
        ({"type": "configure", "keyterms": ["  "]}, "1-100 characters"),
        ({"type": "configure", "keyterms": ["x"] * 101}, "more than 100"),
        (
            {"type": "configure", "prompt": "p" * 900, "keyterms": ["k" * 60, "k" * 60]},
            "together longer",
        ),
    ],
)
def test_bad_configure_messages_are_refused_clearly(
    message: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ControlError, match=complaint):
        parse_control_message(json.dumps(message))


def test_the_sdk_parses_the_eager_messages() -> None:
    eager = {"type": "eager_end_of_turn", "utterance": 2, "start": 1.0, "end": 2.5, "text": "hi"}
    assert parse_message(eager) == EagerEndOfTurn(2, 1.0, 2.5, "hi")
    assert parse_message({"type": "turn_resumed", "utterance": 2}) == TurnResumed(2)
