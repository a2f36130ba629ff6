"""Explicit configuration objects, one per layer.

Every option has a sane default; the CLI and environment variables (``EARSHOT_*``)
only override them. Plain dataclasses keep them cheap to build in tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from earshot.scheduler import SchedulingPolicy

SAMPLE_RATE = 16_000
"""The engine's and VAD's native rate; everything is resampled to it."""


@dataclass(frozen=True)
class EngineConfig:
    """How the Whisper model is loaded and decoded."""

    model: str = "base"
    """Bundled name (``base``, ``tiny.en``), faster-whisper hub name, or local CT2 dir."""
    device: str = "auto"
    compute_type: str = "default"
    """``default`` picks int8 on CPU and float16 on CUDA."""
    cpu_threads: int = 0
    """0 = all cores."""
    beam_size: int = 1
    window_buckets: tuple[int, ...] = (1000, 1500, 2000, 3000)
    """Encoder window sizes in feature frames (100 per second); (3000,) = classic padding."""
    min_tail_frames: int = 100
    """Silence frames a bucketed window must leave after the audio (runaway safety)."""
    no_speech_threshold: float = 0.6
    no_speech_hard_threshold: float = 0.85
    """Above this no-speech probability a result is dropped whatever its confidence
    (Whisper's "you" on digital silence comes with p ≈ 0.9 and a decent log-prob)."""
    logprob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    min_avg_logprob: float = -1.5
    """Below this average log-probability a result is dropped whatever no_speech says."""
    download_root: str | None = None


@dataclass(frozen=True)
class AdmissionConfig:
    """When to refuse new sessions (close 1013) instead of degrading everyone."""

    max_sessions: int = 64
    max_final_delay_s: float = 1.0
    """Refuse while the oldest queued final has waited longer than this."""
    max_busy_ratio: float = 0.75
    """Refuse while finals took more than this share of recent engine time."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    engine: EngineConfig = field(default_factory=EngineConfig)
    scheduler: SchedulingPolicy | None = None
    """None: pick by device (see ``default_policy``)."""
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)
    partial_interval_s: float = 0.6
    """New audio between two partials of one utterance."""
    log_level: str = "info"


def env_default(name: str, default: str | None = None) -> str | None:
    """``EARSHOT_<NAME>`` from the environment, so every CLI option has a variable."""
    return os.environ.get(f"EARSHOT_{name.upper().replace('-', '_')}", default)


def default_policy(device: str, max_batch: int | None = None) -> SchedulingPolicy:
    """GPU: big batches, a short wait, partials ride along. CPU: finals alone."""
    if device == "cuda":
        return SchedulingPolicy(
            max_batch=max_batch or 32, batch_wait_s=0.01, partials_with_finals=True
        )
    return SchedulingPolicy(max_batch=max_batch or 4, batch_wait_s=0.0, partials_with_finals=False)
