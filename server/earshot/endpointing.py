"""Endpointing: per-frame speech probabilities → utterance boundaries.

Theory of operation
-------------------
``UtteranceSegmenter`` is a table-driven state machine fed one VAD probability per
512-sample frame (32 ms). Each frame is classified ``VOICE`` (p ≥ threshold),
``SILENT`` (p < threshold − hysteresis, as in Silero's own iterator) or
``UNSURE`` (between), and ``_TRANSITIONS[(state, frame_kind)]`` names the handler
that decides the next state:

    SILENCE ──voice──> ONSET ──enough voice──> SPEECH <──voice── TRAILING
       ^                 │                       │ silent           │
       └────too quiet────┘                       └──────────> TRAILING
       ^                                                             │
       └───────────────── endpointing_ms of silence ─────────────────┘

``ONSET`` is tentative: a click or a breath never becomes an utterance, so no
``speech_started`` is sent for it. An utterance starts ``preroll`` before its first
voiced frame (first words aren't clipped) and ends ``postroll`` after its last voiced
frame. One longer than ``max_utterance`` is cut and a new one starts at the cut while
speech goes on. Positions are sample indices on the stream's 16 kHz clock; the
segmenter never touches audio, so it is testable with plain lists of numbers.

Every setting is one ``EndpointingConfig``: live streams use ``SessionTuning.endpointing``
with their client's ``endpointing_ms`` and ``max_utterance_s`` (whose defaults and bounds
``protocol.py`` takes from here); files use ``file_segments.FILE_ENDPOINTING``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace

from earshot.transcript import SAMPLE_RATE
from earshot.vad import FRAME_SAMPLES

FRAME_S = FRAME_SAMPLES / SAMPLE_RATE
"""One VAD frame: 32 ms."""

ENDPOINTING_MS_RANGE = (100, 10_000)
"""What a client may ask for as ``endpointing_ms``."""
MAX_UTTERANCE_S_RANGE = (1.0, 29.0)
"""What a client may ask for as ``max_utterance_s``: Whisper decodes at most 30 s at
once, and pre-/post-roll must still fit."""


class State(enum.Enum):
    SILENCE = "silence"
    ONSET = "onset"
    SPEECH = "speech"
    TRAILING = "trailing"


class Frame(enum.Enum):
    VOICE = "voice"
    UNSURE = "unsure"
    SILENT = "silent"


def _samples(seconds: float) -> int:
    return round(seconds * SAMPLE_RATE)


@dataclass(frozen=True)
class EndpointingConfig:
    """Every endpointing setting, for live streams (``SessionTuning.endpointing``, with
    the client's ``endpointing_ms``/``max_utterance_s``) and files (``file_segments``).

    Durations are in seconds (``endpointing_ms``: milliseconds, as on the wire); the
    segmenter works in samples of the 16 kHz stream clock (the ``*_samples`` properties).
    """

    threshold: float = 0.5
    """VAD probability from which a frame is voice."""
    hysteresis: float = 0.15
    """Below ``threshold - hysteresis`` a frame is silent; between, unsure (as in
    Silero's own iterator): unsure frames keep an utterance open but start none."""
    endpointing_ms: int = 500
    """Silence after the last voiced frame that ends an utterance (client-settable)."""
    max_utterance_s: float = 15.0
    """Longer utterances are cut, and a new one starts at the cut (client-settable)."""
    min_speech_s: float = 5 * FRAME_S
    """Voiced audio needed before an onset counts as speech (160 ms)."""
    onset_gap_s: float = 4 * FRAME_S
    """Silence that abandons a tentative onset (128 ms)."""
    preroll_s: float = 0.3
    """An utterance starts this long before its first voiced frame: first words intact."""
    postroll_s: float = 0.2
    """... and ends this long after its last voiced frame."""
    speculate_after_s: float | None = 0.25
    """Live streams: pause after which the final is requested early, so decoding overlaps
    the rest of the endpointing wait (None: never). It must exceed ``postroll_s``, so the
    speculative audio is exactly what the final would cover."""
    vad_endpointing: bool = True
    """False: silence never ends an utterance; only ``end_now`` (the client's
    ``finalize``, e.g. OpenAI's manual ``commit``) or the ``max_utterance`` cut do. VAD
    still opens utterances, and nothing is speculated."""

    def __post_init__(self) -> None:
        if self.speculate_after_s is not None and self.speculate_after_s <= self.postroll_s:
            raise ValueError("speculate_after_s must exceed postroll_s")

    @property
    def endpointing_samples(self) -> int:
        return _samples(self.endpointing_ms / 1000)

    @property
    def max_utterance_samples(self) -> int:
        return _samples(self.max_utterance_s)

    @property
    def min_speech_samples(self) -> int:
        return _samples(self.min_speech_s)

    @property
    def onset_gap_samples(self) -> int:
        return _samples(self.onset_gap_s)

    @property
    def preroll_samples(self) -> int:
        return _samples(self.preroll_s)

    @property
    def postroll_samples(self) -> int:
        return _samples(self.postroll_s)

    @property
    def max_onset_samples(self) -> int:
        """Longest an onset stays tentative: from where it may start (its first voiced
        frame, or the cut that ended the previous utterance) to the end of the frame that
        confirms it. At worst each of the ``min_speech`` voiced frames (at least 2: the
        first only opens the onset) comes after a gap one frame short of ``onset_gap``
        (a full gap abandons the onset). A stream keeps this much audio, plus the
        pre-roll, between utterances: the next one may still reach back into it."""
        voiced = max(2, -(-self.min_speech_samples // FRAME_SAMPLES))
        gap = max(0, -(-self.onset_gap_samples // FRAME_SAMPLES) - 1)
        return voiced * (gap + 1) * FRAME_SAMPLES


@dataclass(frozen=True)
class TurnDetection:
    """The endpointing settings a client may change mid-stream (OpenAI's
    ``turn_detection``: ``threshold``, ``silence_duration_ms``, ``prefix_padding_ms``, or
    ``null`` for manual commits); ``with_turns`` applies them."""

    vad_endpointing: bool = True
    threshold: float = EndpointingConfig.threshold
    endpointing_ms: int = EndpointingConfig.endpointing_ms
    preroll_s: float = EndpointingConfig.preroll_s


def with_turns(
    config: EndpointingConfig, turns: TurnDetection, speculate_after_s: float | None
) -> EndpointingConfig:
    """``config`` with ``turns`` applied; ``speculate_after_s`` (the server's setting)
    only while silence ends utterances."""
    return replace(
        config,
        vad_endpointing=turns.vad_endpointing,
        threshold=turns.threshold,
        endpointing_ms=turns.endpointing_ms,
        preroll_s=turns.preroll_s,
        speculate_after_s=speculate_after_s if turns.vad_endpointing else None,
    )


@dataclass(frozen=True)
class UtteranceStart:
    start: int


@dataclass(frozen=True)
class UtteranceEnd:
    end: int
    cut: bool = False
    """True when ``max_utterance`` cut it while speech goes on."""


Boundary = UtteranceStart | UtteranceEnd


class UtteranceSegmenter:
    def __init__(self, config: EndpointingConfig) -> None:
        self.reconfigure(config)
        self.state = State.SILENCE
        self.position = 0
        """Samples classified so far (end of the last frame)."""
        self._onset = 0
        self._voiced = 0
        self._last_voice_end = 0
        self._utterance_start = 0
        self._last_end = 0
        """Where the previous utterance ended: the next one never starts before it."""
        self._events: list[Boundary] = []

    def reconfigure(self, config: EndpointingConfig) -> None:
        """Use ``config`` from the next frame on (an open utterance stays open)."""
        self.config = config
        self._threshold = config.threshold
        self._silent_below = config.threshold - config.hysteresis
        self._endpointing = config.endpointing_samples
        self._vad_endpointing = config.vad_endpointing
        self._max_utterance = config.max_utterance_samples
        self._min_speech = config.min_speech_samples
        self._onset_gap = config.onset_gap_samples
        self._preroll = config.preroll_samples
        self._postroll = config.postroll_samples

    def feed(self, probabilities: list[float] | tuple[float, ...]) -> list[Boundary]:
        """Advance by one frame per probability; return the boundaries crossed."""
        for p in probabilities:
            if p >= self._threshold:
                kind = Frame.VOICE
            elif p < self._silent_below:
                kind = Frame.SILENT
            else:
                kind = Frame.UNSURE
            frame_start = self.position
            self.position += FRAME_SAMPLES
            self.state = _TRANSITIONS[(self.state, kind)](self, frame_start)
        return self.drain()

    def end_now(self, at: int) -> list[Boundary]:
        """Close the open utterance at sample ``at`` (``finalize``/``close_stream``)."""
        if self.state in (State.SPEECH, State.TRAILING):
            self._end(max(self._utterance_start, at))
        self.state = State.SILENCE
        self._voiced = 0
        return self.drain()

    def likely_end(self, min_silence: int) -> int | None:
        """Where the open utterance will end if the current pause turns out to be its
        endpoint, once the pause is ``min_silence`` samples long; None otherwise."""
        if self.state is not State.TRAILING or not self._vad_endpointing:
            return None
        if self.position - self._last_voice_end < min_silence:
            return None
        return min(self.position, self._last_voice_end + self._postroll)

    def drain(self) -> list[Boundary]:
        events, self._events = self._events, []
        return events

    # -- handlers: each returns the next state ---------------------------------------
    def _stay(self, frame_start: int) -> State:
        return self.state

    def _begin_onset(self, frame_start: int) -> State:
        self._onset = frame_start
        self._voiced = FRAME_SAMPLES
        self._last_voice_end = self.position
        return State.ONSET

    def _onset_voice(self, frame_start: int) -> State:
        self._voiced += FRAME_SAMPLES
        self._last_voice_end = self.position
        if self._voiced < self._min_speech:
            return State.ONSET
        self._utterance_start = max(self._last_end, self._onset - self._preroll)
        self._events.append(UtteranceStart(self._utterance_start))
        return State.SPEECH

    def _onset_quiet(self, frame_start: int) -> State:
        if self.position - self._last_voice_end >= self._onset_gap:
            return State.SILENCE
        return State.ONSET

    def _speech_voice(self, frame_start: int) -> State:
        self._last_voice_end = self.position
        return self._check_cut(State.SPEECH)

    def _speech_quiet(self, frame_start: int) -> State:
        return self._check_cut(State.TRAILING)

    def _trailing_quiet(self, frame_start: int) -> State:
        if self._vad_endpointing and self.position - self._last_voice_end >= self._endpointing:
            self._end(min(self.position, self._last_voice_end + self._postroll))
            return State.SILENCE
        return self._check_cut(State.TRAILING)

    def _check_cut(self, next_state: State) -> State:
        if self.position - self._utterance_start < self._max_utterance:
            return next_state
        self._end(self.position, cut=True)
        self._voiced = 0
        if next_state is State.TRAILING:
            # Speech paused just before the cut: the rest is silence, not a new utterance.
            return State.SILENCE
        # Speech goes on: the next utterance starts at the cut, but like any onset only once
        # enough voice follows, so speech that ends right at the cut leaves no utterance of
        # silence behind (a spurious speech_started and a hallucination risk).
        self._onset = self._last_voice_end = self.position
        return State.ONSET

    def _end(self, at: int, cut: bool = False) -> None:
        self._last_end = at
        self._events.append(UtteranceEnd(at, cut=cut))


_Handler = Callable[[UtteranceSegmenter, int], State]

_TRANSITIONS: dict[tuple[State, Frame], _Handler] = {
    (State.SILENCE, Frame.VOICE): UtteranceSegmenter._begin_onset,
    (State.SILENCE, Frame.UNSURE): UtteranceSegmenter._stay,
    (State.SILENCE, Frame.SILENT): UtteranceSegmenter._stay,
    (State.ONSET, Frame.VOICE): UtteranceSegmenter._onset_voice,
    (State.ONSET, Frame.UNSURE): UtteranceSegmenter._onset_quiet,
    (State.ONSET, Frame.SILENT): UtteranceSegmenter._onset_quiet,
    (State.SPEECH, Frame.VOICE): UtteranceSegmenter._speech_voice,
    (State.SPEECH, Frame.UNSURE): UtteranceSegmenter._speech_voice,
    (State.SPEECH, Frame.SILENT): UtteranceSegmenter._speech_quiet,
    (State.TRAILING, Frame.VOICE): UtteranceSegmenter._speech_voice,
    (State.TRAILING, Frame.UNSURE): UtteranceSegmenter._trailing_quiet,
    (State.TRAILING, Frame.SILENT): UtteranceSegmenter._trailing_quiet,
}
