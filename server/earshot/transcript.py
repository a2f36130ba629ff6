"""Plain dataclasses passed between the session core, the scheduler and the engine.

They are the only vocabulary those layers share, so none of them imports another's
internals.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, field

import numpy as np

SAMPLE_RATE = 16_000
"""The engine's and VAD's native rate: all audio is resampled to it (``audio.py``)."""


class Priority(enum.IntEnum):
    """Lower runs first: finals before partials before offline file work."""

    FINAL = 0
    PARTIAL = 1
    FILE = 2


_request_ids = itertools.count()


@dataclass(eq=False)
class TranscriptionRequest:
    audio: np.ndarray
    """float32 mono at ``SAMPLE_RATE``."""
    priority: Priority
    language: str | None = None
    """None: detect per request."""
    language_hint: str | None = None
    """Used instead of detection when the request is too short or detection unsure
    (a stream's previous utterance language)."""
    prompt: str | None = None
    word_timestamps: bool = False
    beam_size: int = 1
    """Beam width asked for: the scheduler widens it for a final or file segment when
    the engine has room (``batch_policy.beam_for``); the engine never decodes narrower
    than its configured ``beam_size``."""
    owner: str = ""
    """Who asked (session or job id); partials of one (owner, utterance) coalesce."""
    utterance: int = 0
    start: float = 0.0
    """Stream-clock seconds of ``audio[0]``."""
    id: int = field(default_factory=lambda: next(_request_ids))

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    words: tuple[Word, ...] = ()
    suppressed: str | None = None
    """Why text was dropped as a likely hallucination (``no_speech``, ``repetition``...)."""
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    window_frames: int = 0
    """Encoder window used (shows bucketing and runaway fallbacks)."""
    beam_size: int = 0
    """Beam width of the decode that gave ``text`` (blank or not); 0: none ran (an
    engine error), which ``earshot_finals_by_beam_total`` does not count."""
    error: str | None = None
    """Set when the engine failed on this request; text is then empty."""
