"""Client PCM bytes → float32 mono at 16 kHz, incrementally.

Sans-I/O: ``PcmDecoder.decode(frame)`` takes one binary frame and returns the samples
it yields. Resampling uses soxr's streaming resampler so chunk boundaries leave no
clicks and the stream's sample clock stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

from earshot.transcript import SAMPLE_RATE

ENCODINGS: dict[str, np.dtype] = {
    "pcm_s16le": np.dtype("<i2"),
    "pcm_f32le": np.dtype("<f4"),
}


class AudioFormatError(ValueError):
    """A frame that isn't valid audio in the announced format."""


class FrameTooLarge(AudioFormatError):
    """More than one second of audio in one frame (close 1009)."""


@dataclass(frozen=True)
class AudioFormat:
    sample_rate: int = SAMPLE_RATE
    encoding: str = "pcm_s16le"

    @property
    def bytes_per_sample(self) -> int:
        return ENCODINGS[self.encoding].itemsize

    @property
    def max_frame_bytes(self) -> int:
        """The protocol allows at most one second of audio per frame."""
        return self.sample_rate * self.bytes_per_sample


class PcmDecoder:
    """Decodes and resamples one stream's frames, keeping resampler state between them."""

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self._dtype = ENCODINGS[fmt.encoding]
        self._resampler = (
            None
            if fmt.sample_rate == SAMPLE_RATE
            else soxr.ResampleStream(fmt.sample_rate, SAMPLE_RATE, 1, dtype="float32")
        )

    def decode(self, frame: bytes) -> np.ndarray:
        if len(frame) > self.format.max_frame_bytes:
            raise FrameTooLarge(
                f"frame of {len(frame)} bytes is more than 1 s of audio"
                f" ({self.format.max_frame_bytes} bytes)"
            )
        if len(frame) % self._dtype.itemsize:
            raise AudioFormatError(
                f"frame of {len(frame)} bytes is not a whole number of"
                f" {self._dtype.itemsize}-byte {self.format.encoding} samples"
            )
        samples = np.frombuffer(frame, dtype=self._dtype)
        if self._dtype.kind == "i":
            pcm = samples.astype(np.float32) / 32768.0
        else:
            pcm = samples.astype(np.float32)
            if not np.all(np.isfinite(pcm)):
                raise AudioFormatError("pcm_f32le frame contains NaN or infinity")
            np.clip(pcm, -1.0, 1.0, out=pcm)
        return self._resample(pcm, last=False)

    def flush(self) -> np.ndarray:
        """The resampler's delayed tail, at end of stream."""
        return self._resample(np.zeros(0, np.float32), last=True)

    def _resample(self, pcm: np.ndarray, *, last: bool) -> np.ndarray:
        if self._resampler is None:
            return pcm
        return self._resampler.resample_chunk(pcm, last=last).astype(np.float32, copy=False)
