"""Audio with no speech in it, generated in code: where Whisper likes to hallucinate
("Thank you.", "you", subtitles credits). Every case must produce no text at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from earshot.config import SAMPLE_RATE


@dataclass(frozen=True)
class NoSpeechCase:
    name: str
    kind: str
    """``silence``, ``noise`` or ``music``."""
    description: str
    audio: np.ndarray


def _db(level_dbfs: float) -> float:
    return float(10 ** (level_dbfs / 20))


def _scaled(signal: np.ndarray, rms_dbfs: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(signal**2))) or 1.0
    return (signal * (_db(rms_dbfs) / rms)).astype(np.float32)


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise by shaping white noise's spectrum."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1]
    return np.fft.irfft(spectrum / np.sqrt(freqs), n)


def _note(freq: float, seconds: float, harmonics: int = 4) -> np.ndarray:
    """A plucked-string-like note: a few harmonics under a decaying envelope."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wave = np.sum([np.sin(2 * np.pi * freq * k * t) / k for k in range(1, harmonics + 1)], axis=0)
    attack = np.minimum(1.0, t / 0.01)
    return np.asarray(wave * attack * np.exp(-3.0 * t))


def _fit(signal: np.ndarray, n: int) -> np.ndarray:
    return np.pad(signal[:n], (0, max(0, n - len(signal))))


def _melody(seconds: float) -> np.ndarray:
    scale = [261.63, 293.66, 329.63, 349.23, 392.0, 440.0, 493.88, 523.25]
    pattern = [0, 2, 4, 7, 4, 2, 5, 3, 1, 6, 4, 0]
    note_s = 0.4
    count = max(1, round(seconds / note_s))
    notes = [_note(scale[pattern[i % len(pattern)]], note_s) for i in range(count)]
    # A sustained bass note under the tune, as in most music.
    tune = np.concatenate(notes)
    t = np.arange(len(tune)) / SAMPLE_RATE
    return tune + 0.5 * np.sin(2 * np.pi * 130.81 * t)


def no_speech_cases(seconds: float = 8.0, seed: int = 0) -> list[NoSpeechCase]:
    """Silence, low-level noise and music-like tones, ``seconds`` long each."""
    n = int(seconds * SAMPLE_RATE)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SAMPLE_RATE
    hum = np.sum([np.sin(2 * np.pi * 50 * k * t) / k for k in (1, 2, 3, 5)], axis=0)
    chord = np.sum([np.sin(2 * np.pi * f * t) for f in (261.63, 329.63, 392.0)], axis=0)
    cases = [
        NoSpeechCase("silence", "silence", "digital zero", np.zeros(n, np.float32)),
        NoSpeechCase(
            "white_noise",
            "noise",
            "white noise at -50 dBFS RMS",
            _scaled(rng.standard_normal(n), -50),
        ),
        NoSpeechCase(
            "pink_noise", "noise", "pink noise at -45 dBFS RMS", _scaled(_pink(n, rng), -45)
        ),
        NoSpeechCase(
            "mains_hum", "noise", "50 Hz hum with harmonics at -40 dBFS RMS", _scaled(hum, -40)
        ),
        NoSpeechCase(
            "tone",
            "music",
            "440 Hz sine at -20 dBFS RMS",
            _scaled(np.sin(2 * np.pi * 440 * t), -20),
        ),
        NoSpeechCase("chord", "music", "C major triad at -20 dBFS RMS", _scaled(chord, -20)),
        NoSpeechCase(
            "melody",
            "music",
            "plucked melody over a bass note at -20 dBFS RMS",
            _scaled(_fit(_melody(seconds), n), -20),
        ),
    ]
    return cases
