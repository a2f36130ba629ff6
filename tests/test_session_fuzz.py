"""Property-based fuzzing of what hostile or broken clients can reach without a socket:
the session state machine, the control-message and parameter parsers, the PCM decoder and
the bounded outbound queue. Random frame sizes, orders and garbage never crash anything
and never break the protocol's invariants (contiguous utterance numbers, one final per
utterance, in order, no text on silence)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tests.fakes import LoudnessVad

from earshot import protocol
from earshot.audio import ENCODINGS, AudioFormat, AudioFormatError, decoder_for
from earshot.outbound import OutboundBuffer
from earshot.protocol import SessionOptions
from earshot.session import StreamSession
from earshot.transcript import Priority, Transcript, TranscriptionRequest

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- the session state machine --------------------------------------------------------------
audio_op = st.tuples(
    st.just("audio"),
    st.sampled_from(["voice", "voice", "silence", "faint"]),
    # Samples per frame: any length, not just whole VAD frames (or what clients usually send).
    st.sampled_from([160, 320, 512, 1600, 3200]) | st.integers(1, 16000),
    st.integers(1, 40),  # frames of it in a row
    st.sampled_from([False] * 7 + [True]),  # a stray extra byte: not a whole number of samples
)
answer_op = st.tuples(
    st.just("answer"), st.integers(0, 50), st.sampled_from(["", "words", "error"])
)
op = st.one_of(
    *[audio_op] * 6,
    *[answer_op] * 3,
    st.tuples(st.just("finalize")),
    st.tuples(st.just("close_stream")),
)
session_options = st.builds(
    SessionOptions,
    endpointing_ms=st.integers(100, 1500),
    max_utterance_s=st.floats(1.0, 4.0),
    interim_results=st.booleans(),
)


def pcm(kind: str, samples: int, rng: np.random.Generator) -> bytes:
    if kind == "voice":
        audio = 0.3 * np.sin(np.arange(samples) * 0.08)
    elif kind == "faint":
        audio = rng.normal(0, 0.002, samples)  # below the fake VAD's level: still silence
    else:
        audio = np.zeros(samples)
    return (audio * 32767).astype("<i2").tobytes()


class Driver:
    """Plays ops into a session, answering engine requests in random order, and records
    everything the session says."""

    def __init__(self, options: SessionOptions) -> None:
        self.session = StreamSession(options, LoudnessVad())
        self.pending: list[TranscriptionRequest] = []
        self.requests: dict[int, TranscriptionRequest] = {}
        self.messages: list[dict[str, Any]] = []
        self.voiced = False
        self.rng = np.random.default_rng(0)

    def collect(self) -> None:
        for request in self.session.requests_to_engine():
            self.pending.append(request)
            self.requests[request.id] = request
        self.messages += self.session.messages_to_send()

    def apply(self, step: tuple[Any, ...]) -> None:
        kind = step[0]
        if kind == "audio":
            _, sound, samples, repeat, stray = step
            frame = pcm(sound, samples, self.rng) + (b"\x01" if stray else b"")
            for _ in range(repeat):
                try:
                    self.session.receive_audio(frame)
                except AudioFormatError:
                    assert stray, "a whole number of samples was refused"
                else:
                    assert not stray or self.session.closing, "a stray byte was accepted"
                    self.voiced = self.voiced or (sound == "voice" and not self.session.closing)
                self.collect()
        elif kind == "answer" and self.pending:
            request = self.pending.pop(step[1] % len(self.pending))
            self.session.receive_transcript(request, self.transcript(request, step[2]))
        elif kind == "finalize":
            self.session.finalize()
        elif kind == "close_stream":
            self.session.close_stream()
        self.collect()

    @staticmethod
    def transcript(request: TranscriptionRequest, text: str) -> Transcript:
        if text == "error":
            return Transcript(text="", language="", error="engine error")
        return Transcript(text=f"{text}:{request.id}" if text else "", language="en")

    def finish(self) -> None:
        self.session.close_stream()
        self.collect()
        while self.pending:
            request = self.pending.pop(int(self.rng.integers(len(self.pending))))
            self.session.receive_transcript(request, self.transcript(request, "words"))
            self.collect()


@FUZZ
@given(options=session_options, ops=st.lists(op, min_size=4, max_size=40))
def test_random_clients_never_break_the_session_invariants(
    options: SessionOptions, ops: list[tuple[Any, ...]]
) -> None:
    driver = Driver(options)
    for step in ops:
        driver.apply(step)
    driver.finish()
    messages, session = driver.messages, driver.session
    event(f"utterances: {min(len(driver.requests), 3)}+ engine requests")

    types = [m["type"] for m in messages]
    assert session.closed and types[-1] == "closed" and types.count("closed") == 1
    started = [m["utterance"] for m in messages if m["type"] == "speech_started"]
    finals = [m for m in messages if m["type"] == "final"]
    # Contiguous numbering; exactly one final per utterance, released in order.
    assert started == list(range(len(started)))
    assert [f["utterance"] for f in finals] == started
    # Partials and finals only between their utterance's speech_started and final.
    opened: set[int] = set()
    done: set[int] = set()
    for message in messages:
        u = message.get("utterance")
        if message["type"] == "speech_started":
            opened.add(u)
        elif message["type"] in ("partial", "final"):
            assert u in opened and u not in done
            if message["type"] == "final":
                done.add(u)
    # Each text is the engine's answer for that very utterance (no cross-talk).
    for message in messages:
        if message["type"] in ("partial", "final") and message["text"]:
            request = driver.requests[int(message["text"].rsplit(":", 1)[1])]
            assert request.utterance == message["utterance"]
            assert (request.priority is Priority.FINAL) == (message["type"] == "final")
    # Finals tile the stream clock without overlapping, inside the audio received.
    for a, b in itertools.pairwise(finals):
        assert a["end"] <= b["start"] + 1e-3
    for f in finals:
        assert 0 <= f["start"] <= f["end"] <= session.audio_seconds + 1e-3
    # Bounded work: no request is longer than an utterance may be (plus pre-roll).
    limit = options.max_utterance_s + session.endpointing.preroll_s + 0.1
    assert all(0 < r.duration <= limit for r in driver.requests.values())
    # No text on silence: without voice nothing is started, requested or said, and the
    # engine never gets an utterance that holds no voice at all.
    if not driver.voiced:
        assert not driver.requests and types == ["closed"]
    for request in driver.requests.values():
        assert np.abs(request.audio).max() > 0.05, "engine asked to transcribe silence"


def test_speech_ending_right_at_a_max_utterance_cut_leaves_no_silent_utterance() -> None:
    """Found by the fuzzer: the cut opened a new utterance at once, so speech ending on the
    cut left an utterance of pure silence (a spurious speech_started, and Whisper asked to
    transcribe 0.2 s of nothing)."""
    session = StreamSession(SessionOptions(max_utterance_s=2.0), LoudnessVad())
    samples = 63 * 512  # the frame on which the 2 s cut falls is the last voiced one
    audio = np.concatenate([0.3 * np.sin(np.arange(samples) * 0.08), np.zeros(32000)])
    for i in range(0, len(audio), 1600):
        session.receive_audio((audio[i : i + 1600] * 32767).astype("<i2").tobytes())
    session.close_stream()
    finals = [r for r in session.requests_to_engine() if r.priority is Priority.FINAL]
    assert [r.utterance for r in finals] == [0]
    started = [m for m in session.messages_to_send() if m["type"] == "speech_started"]
    assert len(started) == 1


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 4000), st.booleans()), max_size=40))
def test_arbitrary_frame_sizes_give_the_same_clock_as_one_frame(
    frames: list[tuple[int, bool]],
) -> None:
    """Splitting audio into frames of any size, with rejected garbage in between, changes
    nothing: the audio clock counts exactly the valid samples."""
    session = StreamSession(SessionOptions(), LoudnessVad())
    total = 0
    for samples, garbage in frames:
        if garbage:
            try:
                session.receive_audio(b"\x00" * (2 * samples + 1))
            except AudioFormatError:
                pass
            else:
                raise AssertionError("odd-length frame accepted")
        session.receive_audio(b"\x00\x00" * samples)
        total += samples
    assert session.audio_seconds == total / 16000


# -- the control-message and parameter parsers ----------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
control_texts = st.one_of(
    st.text(max_size=200),
    json_values.map(json.dumps),
    st.dictionaries(st.just("type"), json_values).map(json.dumps),
    st.sampled_from(sorted(protocol.CONTROL_TYPES)).map(lambda t: json.dumps({"type": t})),
    st.integers(1, 20000).map(lambda n: "[" * n),
    st.integers(4000, 10000).map(lambda n: json.dumps({"type": "keepalive", "pad": "x" * n})),
)


@FUZZ
@given(control_texts)
def test_control_parser_returns_a_known_type_or_raises_control_error(text: str) -> None:
    try:
        kind = protocol.parse_control(text)
    except protocol.ControlError:
        return
    assert kind in protocol.CONTROL_TYPES
    assert len(text) <= protocol.MAX_CONTROL_CHARS


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from([*SessionOptions.__dataclass_fields__, "bogus"]) | st.text(max_size=8),
        st.text(max_size=30) | st.integers(-(10**6), 10**6).map(str),
        max_size=6,
    )
)
def test_parameter_parser_returns_options_or_a_400(query: dict[str, str]) -> None:
    try:
        options = protocol.parse_options(query, frozenset({"en", "de"}))
    except protocol.ParameterError as exc:
        assert exc.body()["parameter"] in query
        return
    assert 8000 <= options.sample_rate <= 48000
    assert options.encoding in ENCODINGS and options.format in ("json", "msgpack")


@FUZZ
@given(
    st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000]),
    st.sampled_from(sorted(ENCODINGS)),
    st.lists(st.binary(max_size=3000), max_size=8),
)
def test_decoder_turns_any_bytes_into_bounded_audio_or_refuses(
    rate: int, encoding: str, frames: list[bytes]
) -> None:
    decoder = decoder_for(AudioFormat(rate, encoding))
    for frame in frames:
        try:
            audio = decoder.decode(frame)
        except AudioFormatError:
            continue
        assert audio.dtype == np.float32 and np.all(np.isfinite(audio))
        assert np.all(np.abs(audio) <= 1.5)  # resampling may ring a little past full scale


# -- the bounded outbound queue ---------------------------------------------------------------
outbound_op = st.one_of(
    st.tuples(st.sampled_from(["partial", "final", "speech_started"]), st.integers(0, 5)),
    st.tuples(st.just("pop"), st.just(0)),
)


@FUZZ
@given(st.integers(1, 12), st.lists(outbound_op, max_size=80))
def test_outbound_queue_is_bounded_and_never_loses_or_reorders_a_final(
    capacity: int, ops: list[tuple[str, int]]
) -> None:
    queue = OutboundBuffer(capacity)
    finals_in: list[int] = []
    out: list[dict[str, Any]] = []
    for n, (kind, utterance) in enumerate(ops):
        if kind == "pop":
            if (message := queue.pop()) is not None:
                out.append(message)
            continue
        message = {"type": kind, "utterance": utterance, "n": n}
        if not queue.push(message):
            assert len(queue) > capacity  # hopeless: only non-droppable messages remain
            return
        assert len(queue) <= capacity
        if kind == "final":
            finals_in.append(n)
    while (message := queue.pop()) is not None:
        out.append(message)
    assert [m["n"] for m in out if m["type"] == "final"] == finals_in
    # Order kept: everything but partials exactly; partials per utterance, newest last.
    kept = [m["n"] for m in out if m["type"] != "partial"]
    assert kept == sorted(kept)
    for u in {m["utterance"] for m in out}:
        partials = [m["n"] for m in out if m["type"] == "partial" and m["utterance"] == u]
        assert partials == sorted(partials)
