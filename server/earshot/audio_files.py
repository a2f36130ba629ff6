"""Decode any audio file to float32 mono 16 kHz: PyAV decodes, soxr resamples.

No ffmpeg binary is needed: PyAV wheels carry the libraries.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soxr

from earshot.config import SAMPLE_RATE


class UndecodableAudio(ValueError):
    """The file holds no audio stream PyAV can decode."""


class AudioTooLong(ValueError):
    """The decoded audio exceeds the allowed duration (e.g. a decompression bomb)."""


def probe_audio(source: str | Path) -> float | None:
    """Check cheaply that ``source`` decodes (open + first frame); its duration if known."""
    import av

    try:
        with av.open(str(source), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise UndecodableAudio(f"{source}: no audio stream")
            for _frame in container.decode(container.streams.audio[0]):
                duration = container.duration
                return duration / av.time_base if duration and duration > 0 else None
    except av.error.FFmpegError as exc:
        raise UndecodableAudio(f"{source}: {exc}") from exc
    raise UndecodableAudio(f"{source}: no audio frames")


def read_audio(
    source: str | Path, sample_rate: int = SAMPLE_RATE, *, max_seconds: float | None = None
) -> np.ndarray:
    """Mono float32 at ``sample_rate``; ``max_seconds`` stops decoding early (AudioTooLong)."""
    import av

    decoded = 0.0
    try:
        with av.open(str(source), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise UndecodableAudio(f"{source}: no audio stream")
            stream = container.streams.audio[0]
            chunks: list[np.ndarray] = []
            rate = 0
            for frame in container.decode(stream):
                rate = frame.sample_rate
                decoded += frame.samples / rate
                if max_seconds is not None and decoded > max_seconds:
                    raise AudioTooLong(f"{source}: longer than {max_seconds:.0f} s")
                data = frame.to_ndarray().astype(np.float32, copy=False)
                if frame.format.is_planar:
                    mono = data.mean(axis=0)
                else:
                    mono = data.reshape(-1, len(frame.layout.channels)).mean(axis=1)
                if frame.format.name.startswith("s16"):
                    mono = mono / 32768.0
                elif frame.format.name.startswith("s32"):
                    mono = mono / 2147483648.0
                chunks.append(mono.astype(np.float32, copy=False))
    except av.error.FFmpegError as exc:
        raise UndecodableAudio(f"{source}: {exc}") from exc
    if not chunks:
        raise UndecodableAudio(f"{source}: no audio frames")
    audio = np.concatenate(chunks)
    if rate != sample_rate:
        audio = soxr.resample(audio, rate, sample_rate).astype(np.float32, copy=False)
    return audio


def to_pcm16(audio: np.ndarray) -> bytes:
    """float32 [-1, 1] → little-endian s16 bytes, as clients send them."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
