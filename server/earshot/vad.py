"""Streaming Silero VAD through onnxruntime, no torch.

The v6 ONNX graph that faster-whisper ships takes ``[frames, 576]`` windows (64 samples
of context + 512 new samples at 16 kHz) and LSTM state ``h``, ``c``; dimension 0 is
consecutive frames of *one* stream. So one ``SileroVad`` (the loaded graph) is shared
and each stream keeps a ``VadStream``: its LSTM state, its last 64 samples and any
incomplete frame. At ~90 µs per 32 ms frame this is cheap next to Whisper.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Protocol

import numpy as np

FRAME_SAMPLES = 512
CONTEXT_SAMPLES = 64
SILERO_ASSET = "silero_vad_v6.onnx"


def bundled_model_path() -> str:
    """The Silero graph faster-whisper ships, found without importing faster-whisper
    (which would load CTranslate2 into every process that only needs a VAD)."""
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"faster_whisper is not installed: no {SILERO_ASSET}")
    return str(Path(next(iter(spec.submodule_search_locations))) / "assets" / SILERO_ASSET)


class VoiceDetector(Protocol):
    """Per-stream speech probability for each completed 512-sample frame."""

    def process(self, samples: np.ndarray) -> np.ndarray: ...


class SileroVad:
    """The loaded Silero graph, shared by all streams of a process."""

    def __init__(self, model_path: str | None = None) -> None:
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 4
        self._session = onnxruntime.InferenceSession(
            model_path or bundled_model_path(),
            providers=["CPUExecutionProvider"],
            sess_options=opts,
        )

    def stream(self) -> VadStream:
        return VadStream(self)

    def run(
        self, windows: np.ndarray, h: np.ndarray, c: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        probs, h, c = self._session.run(None, {"input": windows, "h": h, "c": c})
        return np.asarray(probs).reshape(-1), h, c


class VadStream:
    """One stream's VAD state; feed any number of samples, get one prob per frame."""

    def __init__(self, model: SileroVad) -> None:
        self._model = model
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, np.float32)
        self._pending = np.zeros(0, np.float32)

    def process(self, samples: np.ndarray) -> np.ndarray:
        audio = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        n = len(audio) // FRAME_SAMPLES
        self._pending = audio[n * FRAME_SAMPLES :]
        if n == 0:
            return np.zeros(0, np.float32)
        frames = audio[: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES)
        context = np.empty((n, CONTEXT_SAMPLES), np.float32)
        context[0] = self._context
        context[1:] = frames[:-1, -CONTEXT_SAMPLES:]
        self._context = frames[-1, -CONTEXT_SAMPLES:].copy()
        windows = np.ascontiguousarray(np.concatenate([context, frames], axis=1))
        probs, self._h, self._c = self._model.run(windows, self._h, self._c)
        return probs
