"""Whole-file transcription without a server: VAD segments → batched engine calls.

Shared by ``earshot transcribe`` and ``earshot eval`` (the offline reference that the
streaming path is compared against), so both measure the same thing.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from earshot.config import SAMPLE_RATE
from earshot.engine import WhisperEngine
from earshot.file_segments import split_speech
from earshot.transcript import Priority, Transcript, TranscriptionRequest
from earshot.vad import SileroVad

DETECTION_S = 30
"""Audio used to pick the file's language: short segments alone are too little to tell."""


@dataclass(frozen=True)
class OfflineResult:
    segments: list[tuple[TranscriptionRequest, Transcript]]
    language: str | None
    audio_s: float
    elapsed_s: float

    @property
    def text(self) -> str:
        return " ".join(t.text for _, t in self.segments if t.text)


def transcribe_audio(
    engine: WhisperEngine,
    audio: np.ndarray,
    *,
    language: str | None = None,
    word_timestamps: bool = False,
    batch: int = 8,
    vad: SileroVad | None = None,
) -> OfflineResult:
    """Transcribe 16 kHz float32 ``audio``; one language for the whole file."""
    started = time.perf_counter()
    segments = split_speech(audio, (vad or SileroVad()).stream())
    if segments and not language:
        speech = np.concatenate([audio[s.start : s.end] for s in segments])
        language = engine.detect_language(speech[: DETECTION_S * SAMPLE_RATE])
    requests = [
        TranscriptionRequest(
            audio=audio[s.start : s.end],
            priority=Priority.FILE,
            language=language,
            word_timestamps=word_timestamps,
            start=s.start_s,
        )
        for s in segments
    ]
    # Batches of at most ``batch``, spread over the engine's replicas (one core each on CPU).
    size = max(1, min(batch, -(-len(requests) // engine.workers)))
    chunks = [requests[i : i + size] for i in range(0, len(requests), size)]
    transcripts: list[Transcript] = []
    with ThreadPoolExecutor(engine.workers, thread_name_prefix="earshot-offline") as pool:
        for chunk_transcripts in pool.map(engine.transcribe, chunks):
            transcripts += chunk_transcripts
    return OfflineResult(
        segments=list(zip(requests, transcripts)),
        language=language,
        audio_s=len(audio) / SAMPLE_RATE,
        elapsed_s=time.perf_counter() - started,
    )
