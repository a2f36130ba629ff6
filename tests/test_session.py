"""The sans-I/O session core, driven with synthetic audio and a loudness VAD."""

from __future__ import annotations

import numpy as np
import pytest
from tests.fakes import LoudnessVad, pcm16, silence, tone

from earshot.audio import AudioFormatError, FrameTooLarge
from earshot.endpointing import EndpointingConfig
from earshot.protocol import Configure, SessionOptions
from earshot.session import SessionTuning, StreamSession
from earshot.transcript import Priority, Transcript, TranscriptionRequest


def make(**options: object) -> StreamSession:
    return StreamSession(SessionOptions(**options), LoudnessVad())  # type: ignore[arg-type]


def feed(session: StreamSession, audio: np.ndarray, chunk_s: float = 0.1) -> None:
    step = int(16000 * chunk_s)
    for i in range(0, len(audio), step):
        session.receive_audio(pcm16(audio[i : i + step]))


def answer_all(session: StreamSession, text: str = "hello") -> list[TranscriptionRequest]:
    requests = session.requests_to_engine()
    for r in requests:
        session.receive_transcript(r, Transcript(text=f"{text} {r.utterance}", language="en"))
    return requests


def test_silence_produces_no_requests_and_no_messages() -> None:
    session = make()
    feed(session, silence(5))
    session.close_stream()
    assert session.requests_to_engine() == []
    assert session.messages_to_send() == [{"type": "closed"}]
    assert session.closed


def test_one_utterance_gives_started_partials_then_one_final() -> None:
    session = make()
    feed(session, np.concatenate([silence(1), tone(2.5), silence(1)]))
    requests = answer_all(session)
    kinds = [r.priority for r in requests]
    assert kinds.count(Priority.FINAL) == 1 and kinds[-1] is Priority.FINAL
    assert kinds.count(Priority.PARTIAL) >= 2
    messages = session.messages_to_send()
    types = [m["type"] for m in messages]
    assert types[0] == "speech_started" and types[-1] == "final"
    final = messages[-1]
    # Pre-roll reaches back before the tone starts at 1.0 s; post-roll past its end at 3.5 s.
    assert 0.6 <= final["start"] < 1.0
    assert 3.5 < final["end"] <= 3.8
    assert final["text"] == "hello 0"


def test_final_audio_covers_the_utterance() -> None:
    session = make()
    feed(session, np.concatenate([silence(1), tone(2.0), silence(1)]))
    final = next(r for r in session.requests_to_engine() if r.priority is Priority.FINAL)
    assert final.duration == pytest.approx(2.0 + 0.3 + 0.2, abs=0.1)
    assert final.start == pytest.approx(0.7, abs=0.05)


def test_finals_are_released_in_order_even_if_answered_out_of_order() -> None:
    session = make()
    feed(session, np.concatenate([tone(1), silence(1), tone(1), silence(1)]))
    finals = [r for r in session.requests_to_engine() if r.priority is Priority.FINAL]
    assert [f.utterance for f in finals] == [0, 1]
    session.messages_to_send()
    session.receive_transcript(finals[1], Transcript(text="second", language="en"))
    assert session.messages_to_send() == []
    session.receive_transcript(finals[0], Transcript(text="first", language="en"))
    out = [m["text"] for m in session.messages_to_send() if m["type"] == "final"]
    assert out == ["first", "second"]


def test_partials_after_the_final_was_requested_are_dropped() -> None:
    session = make()
    feed(session, tone(2))
    partial = [r for r in session.requests_to_engine() if r.priority is Priority.PARTIAL][-1]
    feed(session, silence(1))
    session.messages_to_send()
    session.receive_transcript(partial, Transcript(text="late", language="en"))
    assert session.messages_to_send() == []


def test_an_older_partial_never_replaces_a_newer_one() -> None:
    session = make()
    feed(session, tone(2.5))
    partials = [r for r in session.requests_to_engine() if r.priority is Priority.PARTIAL]
    assert len(partials) >= 2
    session.messages_to_send()
    session.receive_transcript(partials[-1], Transcript(text="newer", language="en"))
    session.receive_transcript(partials[0], Transcript(text="older", language="en"))
    assert [m["text"] for m in session.messages_to_send()] == ["newer"]


def test_interim_results_false_sends_no_partials() -> None:
    session = make(interim_results=False)
    feed(session, np.concatenate([tone(3), silence(1)]))
    assert {r.priority for r in session.requests_to_engine()} == {Priority.FINAL}


def test_finalize_ends_the_open_utterance_now() -> None:
    session = make()
    feed(session, tone(1.5))
    session.requests_to_engine()
    session.finalize()
    (final,) = session.requests_to_engine()
    assert final.priority is Priority.FINAL and final.utterance == 0
    feed(session, tone(1.0))
    assert any(
        m["type"] == "speech_started" and m["utterance"] == 1 for m in session.messages_to_send()
    )


def test_close_stream_flushes_then_closed_comes_after_the_last_final() -> None:
    session = make()
    feed(session, np.concatenate([tone(1), silence(1), tone(1)]))
    session.close_stream()
    requests = session.requests_to_engine()
    finals = [r for r in requests if r.priority is Priority.FINAL]
    assert [f.utterance for f in finals] == [0, 1]
    session.messages_to_send()
    session.receive_transcript(finals[0], Transcript(text="a", language="en"))
    assert not session.closed
    session.receive_transcript(finals[1], Transcript(text="b", language="en"))
    types = [m["type"] for m in session.messages_to_send()]
    assert types == ["final", "final", "closed"] and session.closed


def test_audio_after_close_stream_is_ignored() -> None:
    session = make()
    session.close_stream()
    feed(session, tone(2))
    assert session.requests_to_engine() == []


def test_empty_final_text_is_still_sent() -> None:
    session = make()
    feed(session, np.concatenate([tone(1), silence(1)]))
    (final,) = [r for r in session.requests_to_engine() if r.priority is Priority.FINAL]
    session.messages_to_send()
    session.receive_transcript(final, Transcript(text="", language="en", suppressed="no_speech"))
    (message,) = session.messages_to_send()
    assert message["type"] == "final" and message["text"] == "" and message["utterance"] == 0


def test_engine_error_gives_an_error_message_and_an_empty_final() -> None:
    session = make()
    feed(session, np.concatenate([tone(1), silence(1)]))
    (final,) = [r for r in session.requests_to_engine() if r.priority is Priority.FINAL]
    session.messages_to_send()
    session.receive_transcript(final, Transcript(text="", language="", error="boom"))
    error, message = session.messages_to_send()
    assert error == {"type": "error", "code": "engine_error", "message": "boom", "utterance": 0}
    assert message["type"] == "final" and message["text"] == "" and message["utterance"] == 0


def test_engine_errors_come_in_utterance_order_with_the_finals() -> None:
    session = make()
    feed(session, np.concatenate([tone(1), silence(1), tone(1), silence(1), tone(1), silence(1)]))
    finals = finals_of(session.requests_to_engine())
    assert [f.utterance for f in finals] == [0, 1, 2]
    session.messages_to_send()
    # The engine answers out of order and fails utterance 1: its error must not jump
    # ahead of utterance 0's final, nor trail utterance 2's.
    session.receive_transcript(finals[2], Transcript(text="third", language="en"))
    session.receive_transcript(finals[1], Transcript(text="", language="", error="boom"))
    assert session.messages_to_send() == []
    session.receive_transcript(finals[0], Transcript(text="first", language="en"))
    out = [(m["type"], m["utterance"]) for m in session.messages_to_send()]
    assert out == [("final", 0), ("error", 1), ("final", 1), ("final", 2)]


def test_word_timestamps_are_shifted_to_the_stream_clock() -> None:
    from earshot.transcript import Word

    session = make(word_timestamps=True)
    feed(session, np.concatenate([silence(2), tone(1), silence(1)]))
    (final,) = [r for r in session.requests_to_engine() if r.priority is Priority.FINAL]
    assert final.word_timestamps
    session.messages_to_send()
    words = (Word("hi", 0.1, 0.4, 0.9),)
    session.receive_transcript(final, Transcript(text="hi", language="en", words=words))
    (message,) = session.messages_to_send()
    assert message["words"][0]["start"] == pytest.approx(final.start + 0.1, abs=1e-3)


def test_resampled_input_keeps_the_stream_clock() -> None:
    session = StreamSession(SessionOptions(sample_rate=8000), LoudnessVad())
    audio = np.concatenate([silence(1, 8000), tone(1, rate=8000), silence(1, 8000)])
    for i in range(0, len(audio), 800):
        session.receive_audio(pcm16(audio[i : i + 800]))
    # soxr holds back its filter delay (< 0.1 s) until the stream ends.
    assert 2.9 <= session.audio_seconds <= 3.0
    session.close_stream()
    assert session.audio_seconds == pytest.approx(3.0, abs=0.002)
    (final,) = [r for r in session.requests_to_engine() if r.priority is Priority.FINAL]
    assert final.start == pytest.approx(0.7, abs=0.05)


def test_malformed_frames_are_rejected() -> None:
    session = make()
    with pytest.raises(AudioFormatError):
        session.receive_audio(b"\x00\x01\x02")
    with pytest.raises(FrameTooLarge):
        session.receive_audio(b"\x00" * (16000 * 2 + 2))
    f32 = make(encoding="pcm_f32le")
    with pytest.raises(AudioFormatError):
        f32.receive_audio(np.array([np.nan], "<f4").tobytes())


def test_language_hint_follows_the_previous_final() -> None:
    session = make()
    feed(session, np.concatenate([tone(1), silence(1)]))
    (final,) = [r for r in session.requests_to_engine() if r.priority is Priority.FINAL]
    session.receive_transcript(final, Transcript(text="hallo", language="de"))
    feed(session, np.concatenate([tone(1), silence(1)]))
    later = session.requests_to_engine()
    assert later and all(r.language_hint == "de" for r in later)


def test_tuning_partial_interval() -> None:
    session = StreamSession(
        SessionOptions(), LoudnessVad(), tuning=SessionTuning(partial_interval_s=0.3)
    )
    feed(session, tone(3.0))
    partials = [r for r in session.requests_to_engine() if r.priority is Priority.PARTIAL]
    assert len(partials) >= 7


def finals_of(requests: list[TranscriptionRequest]) -> list[TranscriptionRequest]:
    return [r for r in requests if r.priority is Priority.FINAL]


def test_a_pause_requests_the_final_early_and_the_endpoint_reuses_it() -> None:
    session = make()
    feed(session, np.concatenate([tone(1.5), silence(0.3)]))
    (early,) = finals_of(session.requests_to_engine())
    session.receive_transcript(early, Transcript(text="early", language="en"))
    assert not [m for m in session.messages_to_send() if m["type"] == "final"]
    feed(session, silence(0.5))  # endpointing confirms: no second final request
    assert finals_of(session.requests_to_engine()) == []
    (final,) = [m for m in session.messages_to_send() if m["type"] == "final"]
    assert final["text"] == "early"
    assert final["end"] == pytest.approx(early.start + early.duration)


def test_an_early_final_answered_after_the_endpoint_is_still_the_final() -> None:
    session = make()
    feed(session, np.concatenate([tone(1.5), silence(1.0)]))
    (early,) = finals_of(session.requests_to_engine())
    session.messages_to_send()
    session.receive_transcript(early, Transcript(text="late but right", language="en"))
    (final,) = [m for m in session.messages_to_send() if m["type"] == "final"]
    assert final["text"] == "late but right"


def test_speech_after_the_pause_cancels_the_early_final() -> None:
    session = make()
    feed(session, np.concatenate([tone(1.5), silence(0.3)]))
    (early,) = finals_of(session.requests_to_engine())
    feed(session, tone(1.0))
    assert session.requests_to_cancel() == [early]
    session.receive_transcript(early, Transcript(text="stale", language="en"))
    # Not the final, but still the newest hypothesis of the open utterance: a partial.
    assert [m["type"] for m in session.messages_to_send()][-1:] == ["partial"]
    feed(session, silence(1.0))
    finals = finals_of(session.requests_to_engine())
    real = finals[-1]
    assert real is not early and real.duration > early.duration
    session.receive_transcript(real, Transcript(text="whole", language="en"))
    texts = [m["text"] for m in session.messages_to_send() if m["type"] == "final"]
    assert texts == ["whole"]


def test_finalize_during_a_pause_does_not_reuse_a_shorter_early_final() -> None:
    session = make()
    feed(session, np.concatenate([tone(1.5), silence(0.3)]))
    (early,) = finals_of(session.requests_to_engine())
    feed(session, tone(0.2))
    session.finalize()
    assert early in session.requests_to_cancel()
    (final,) = finals_of(session.requests_to_engine())
    assert final.duration > early.duration


def test_speculation_can_be_turned_off() -> None:
    session = StreamSession(
        SessionOptions(),
        LoudnessVad(),
        tuning=SessionTuning(endpointing=EndpointingConfig(speculate_after_s=None)),
    )
    feed(session, np.concatenate([tone(1.5), silence(0.3)]))
    assert finals_of(session.requests_to_engine()) == []


# -- extensions: eager end of turn, configure -----------------------------------------
def of_type(messages: list[dict[str, object]], kind: str) -> list[dict[str, object]]:
    return [m for m in messages if m["type"] == kind]


def test_eager_end_of_turn_then_the_final_at_the_endpoint() -> None:
    session = make(eager_eot=True)
    feed(session, np.concatenate([tone(1.5), silence(0.3)]))
    (early,) = finals_of(session.requests_to_engine())
    session.messages_to_send()
    session.receive_transcript(early, Transcript(text="maybe done", language="en"))
    assert session.messages_to_send() == [
        {
            "type": "eager_end_of_turn",
            "utterance": 0,
            "text": "maybe done",
            "start": round(early.start, 3),
            "end": round(early.start + early.duration, 3),
        }
    ]
    feed(session, silence(0.5))
    messages = session.messages_to_send()
    assert [m["type"] for m in messages] == ["final"]
    assert messages[0]["text"] == "maybe done" and messages[0]["end"] == round(
        early.start + early.duration, 3
    )


def test_speech_after_an_eager_end_of_turn_sends_turn_resumed_then_one_final() -> None:
    session = make(eager_eot=True, interim_results=False)
    feed(session, np.concatenate([tone(1.5), silence(0.3)]))
    (early,) = finals_of(session.requests_to_engine())
    session.receive_transcript(early, Transcript(text="half", language="en"))
    assert of_type(session.messages_to_send(), "eager_end_of_turn")
    feed(session, tone(1.0))
    assert session.messages_to_send() == [{"type": "turn_resumed", "utterance": 0}]
    assert session.requests_to_cancel() == [early]
    feed(session, silence(1.0))
    (real,) = finals_of(session.requests_to_engine())
    session.receive_transcript(real, Transcript(text="half and whole", language="en"))
    messages = session.messages_to_send()
    # Answered after the endpoint: the final at once, with no eager message before it.
    assert [m["type"] for m in messages] == ["final"]
    assert messages[0]["utterance"] == 0 and messages[0]["text"] == "half and whole"


def test_no_turn_resumed_when_speech_resumes_before_the_eager_text_was_ready() -> None:
    session = make(eager_eot=True)
    feed(session, np.concatenate([tone(1.5), silence(0.3)]))
    (early,) = finals_of(session.requests_to_engine())
    feed(session, tone(1.0))
    session.receive_transcript(early, Transcript(text="stale", language="en"))
    types = [m["type"] for m in session.messages_to_send()]
    assert "eager_end_of_turn" not in types and "turn_resumed" not in types


def test_eager_end_of_turn_waits_for_earlier_finals() -> None:
    session = make(eager_eot=True)
    feed(session, np.concatenate([tone(1.0), silence(1.0), tone(1.5), silence(0.3)]))
    first, early = finals_of(session.requests_to_engine())
    session.messages_to_send()
    session.receive_transcript(early, Transcript(text="second", language="en"))
    assert not of_type(session.messages_to_send(), "eager_end_of_turn")
    session.receive_transcript(first, Transcript(text="first", language="en"))
    messages = session.messages_to_send()
    assert [(m["type"], m["utterance"]) for m in messages] == [
        ("final", 0),
        ("eager_end_of_turn", 1),
    ]


def test_old_clients_see_no_eager_messages() -> None:
    session = make()
    feed(session, np.concatenate([tone(1.5), silence(0.3)]))
    (early,) = finals_of(session.requests_to_engine())
    session.receive_transcript(early, Transcript(text="x", language="en"))
    feed(session, np.concatenate([tone(1.0), silence(1.0)]))
    answer_all(session)
    types = {m["type"] for m in session.messages_to_send()}
    assert not types & {"eager_end_of_turn", "turn_resumed"}


def test_no_eager_end_of_turn_for_an_engine_failure() -> None:
    session = make(eager_eot=True)
    feed(session, np.concatenate([tone(1.5), silence(0.3)]))
    (early,) = finals_of(session.requests_to_engine())
    session.receive_transcript(early, Transcript(text="", language="", error="engine failed"))
    assert not of_type(session.messages_to_send(), "eager_end_of_turn")


def test_configure_changes_the_prompt_of_utterances_that_open_afterwards() -> None:
    session = make(prompt="Earshot")
    feed(session, tone(1.0))
    session.configure(Configure(keyterms=("Kubernetes", "gRPC")))
    feed(session, np.concatenate([silence(1.0), tone(1.0), silence(1.0)]))
    session.control(Configure(prompt="Acme", set_prompt=True))
    feed(session, np.concatenate([tone(1.0), silence(1.0)]))
    session.control(Configure(prompt=None, keyterms=(), set_prompt=True))
    feed(session, np.concatenate([tone(1.0), silence(1.0)]))
    prompts = {r.utterance: r.prompt for r in session.requests_to_engine()}
    assert prompts == {
        0: "Earshot",  # open when configure came: keeps its prompt
        1: "Earshot Kubernetes, gRPC",
        2: "Acme Kubernetes, gRPC",  # keyterms absent: kept
        3: None,
    }


def test_control_dispatches_every_control_message() -> None:
    session = make()
    feed(session, tone(1.0))
    session.control("keepalive")
    session.control("finalize")
    assert finals_of(session.requests_to_engine())
    session.control("close_stream")
    assert session.closing
