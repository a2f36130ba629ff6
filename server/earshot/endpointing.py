"""Endpointing: per-frame speech probabilities → utterance boundaries.

Theory of operation
-------------------
``UtteranceSegmenter`` is a table-driven state machine fed one VAD probability per
512-sample frame (32 ms). Each frame is classified ``VOICE`` (p ≥ threshold),
``SILENT`` (p < threshold − 0.15: hysteresis, as in Silero's own iterator) or
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
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from earshot.vad import FRAME_SAMPLES


class State(enum.Enum):
    SILENCE = "silence"
    ONSET = "onset"
    SPEECH = "speech"
    TRAILING = "trailing"


class Frame(enum.Enum):
    VOICE = "voice"
    UNSURE = "unsure"
    SILENT = "silent"


@dataclass(frozen=True)
class SegmenterConfig:
    threshold: float = 0.5
    endpointing_samples: int = 8000
    max_utterance_samples: int = 15 * 16000
    min_speech_samples: int = 5 * FRAME_SAMPLES
    """Voiced audio needed before an onset counts as speech (160 ms)."""
    onset_gap_samples: int = 4 * FRAME_SAMPLES
    """Silence that abandons a tentative onset."""
    preroll_samples: int = 4800
    postroll_samples: int = 3200


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
    def __init__(self, config: SegmenterConfig) -> None:
        self.config = config
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

    def feed(self, probabilities: list[float] | tuple[float, ...]) -> list[Boundary]:
        """Advance by one frame per probability; return the boundaries crossed."""
        threshold = self.config.threshold
        for p in probabilities:
            if p >= threshold:
                kind = Frame.VOICE
            elif p < threshold - 0.15:
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

    @property
    def in_utterance(self) -> bool:
        return self.state in (State.SPEECH, State.TRAILING)

    def likely_end(self, min_silence: int) -> int | None:
        """Where the open utterance will end if the current pause turns out to be its
        endpoint, once the pause is ``min_silence`` samples long; None otherwise."""
        if self.state is not State.TRAILING:
            return None
        if self.position - self._last_voice_end < min_silence:
            return None
        return min(self.position, self._last_voice_end + self.config.postroll_samples)

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
        if self._voiced < self.config.min_speech_samples:
            return State.ONSET
        self._utterance_start = max(self._last_end, self._onset - self.config.preroll_samples)
        self._events.append(UtteranceStart(self._utterance_start))
        return State.SPEECH

    def _onset_quiet(self, frame_start: int) -> State:
        if self.position - self._last_voice_end >= self.config.onset_gap_samples:
            return State.SILENCE
        return State.ONSET

    def _speech_voice(self, frame_start: int) -> State:
        self._last_voice_end = self.position
        return self._check_cut(State.SPEECH)

    def _speech_quiet(self, frame_start: int) -> State:
        return self._check_cut(State.TRAILING)

    def _trailing_quiet(self, frame_start: int) -> State:
        if self.position - self._last_voice_end >= self.config.endpointing_samples:
            self._end(min(self.position, self._last_voice_end + self.config.postroll_samples))
            return State.SILENCE
        return self._check_cut(State.TRAILING)

    def _check_cut(self, next_state: State) -> State:
        if self.position - self._utterance_start < self.config.max_utterance_samples:
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
