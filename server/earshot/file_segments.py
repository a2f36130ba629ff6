"""Cut a whole recording into utterance-sized segments with the same VAD and
endpointing as live streams, so files and streams are transcribed alike and file
segments can be batched with live utterances.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from earshot.endpointing import EndpointingConfig, UtteranceEnd, UtteranceSegmenter, UtteranceStart
from earshot.transcript import SAMPLE_RATE
from earshot.vad import VoiceDetector

FILE_ENDPOINTING = EndpointingConfig(
    endpointing_ms=400, max_utterance_s=25.0, speculate_after_s=None
)
"""Files split on a 400 ms pause, into segments of at most 25 s (within Whisper's 30 s
window); otherwise the live defaults. No speculative finals: there is no live stream."""
VAD_CHUNK_SAMPLES = 1 << 19
"""The VAD reads a file in pieces of this many samples (33 s; a multiple of its frame):
at once, its windows and activations of a 30 min file took ~1 GB (same results)."""


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


class SplitStopped(Exception):
    """``stop()`` said so: nobody wants the segments any more."""


def split_speech(
    audio: np.ndarray,
    vad: VoiceDetector,
    config: EndpointingConfig = FILE_ENDPOINTING,
    stop: Callable[[], bool] | None = None,
) -> list[Segment]:
    """Speech segments of ``audio`` (16 kHz float32); silence is never sent to Whisper.
    ``stop`` is asked between pieces (its caller went away): True raises SplitStopped."""
    segmenter = UtteranceSegmenter(config)
    boundaries = []
    for i in range(0, len(audio), VAD_CHUNK_SAMPLES):
        if stop is not None and stop():
            raise SplitStopped()
        boundaries += segmenter.feed(vad.process(audio[i : i + VAD_CHUNK_SAMPLES]).tolist())
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
