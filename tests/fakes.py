"""Small fakes for unit tests of the session core (never for end-to-end paths)."""

from __future__ import annotations

import numpy as np

from earshot.vad import FRAME_SAMPLES


class LoudnessVad:
    """Calls a 512-sample frame speech when its RMS is above ``level``: enough to drive
    the session state machine with synthetic tones and silence."""

    def __init__(self, level: float = 0.01) -> None:
        self.level = level
        self._pending = np.zeros(0, np.float32)

    def process(self, samples: np.ndarray) -> np.ndarray:
        audio = np.concatenate([self._pending, samples])
        n = len(audio) // FRAME_SAMPLES
        self._pending = audio[n * FRAME_SAMPLES :]
        frames = audio[: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES)
        rms = np.sqrt((frames**2).mean(axis=1)) if n else np.zeros(0)
        return (rms > self.level).astype(np.float32)


def tone(seconds: float, freq: float = 220.0, level: float = 0.3, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def silence(seconds: float, rate: int = 16000) -> np.ndarray:
    return np.zeros(int(seconds * rate), np.float32)


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
