"""Cut a whole recording into utterance-sized segments with the same VAD and
endpointing as live streams, so files and streams are transcribed alike and file
segments can be batched with live utterances.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from earshot.config import SAMPLE_RATE
from earshot.endpointing import SegmenterConfig, UtteranceEnd, UtteranceSegmenter, UtteranceStart
from earshot.vad import VoiceDetector


@dataclass(frozen=True)
class Segment:
    start: int
    end: int
    """Sample indices into the recording."""

    @property
    def start_s(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        return self.end / SAMPLE_RATE


def split_speech(
    audio: np.ndarray,
    vad: VoiceDetector,
    *,
    endpointing_s: float = 0.4,
    max_segment_s: float = 25.0,
) -> list[Segment]:
    """Speech segments of ``audio`` (16 kHz float32); silence is never sent to Whisper."""
    segmenter = UtteranceSegmenter(
        SegmenterConfig(
            endpointing_samples=int(endpointing_s * SAMPLE_RATE),
            max_utterance_samples=int(max_segment_s * SAMPLE_RATE),
        )
    )
    boundaries = segmenter.feed(vad.process(audio).tolist())
    boundaries += segmenter.end_now(len(audio))
    segments: list[Segment] = []
    start: int | None = None
    for boundary in boundaries:
        if isinstance(boundary, UtteranceStart):
            start = boundary.start
        elif isinstance(boundary, UtteranceEnd) and start is not None:
            segments.append(Segment(start, min(boundary.end, len(audio))))
            start = None
    return segments
