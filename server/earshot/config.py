"""Explicit configuration objects, one per layer.

Every option has a sane default, defined once on its field; the CLI options and their
``EARSHOT_*`` variables are made from these fields (options.py) and only override them.
Plain dataclasses keep them cheap to build in tests.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field, replace

from earshot.batch_policy import SchedulingPolicy
from earshot.jobs.config import JobsConfig
from earshot.limits import MIB, KeyLimits
from earshot.session import SessionTuning
from earshot.transcript import SAMPLE_RATE as SAMPLE_RATE  # re-exported


@dataclass(frozen=True)
class EngineConfig:
    """How the Whisper model is loaded and decoded."""

    model: str = "base"
    """Bundled name (``base``, ``tiny.en``), faster-whisper hub name, or local CT2 dir."""
    device: str = "auto"
    compute_type: str = "default"
    """``default`` picks int8 on CPU and float16 on CUDA."""
    cpu_threads: int = 0
    """Threads per model replica. 0 = auto: 1 on CPU (measured on 2 cores: a short
    window decodes in 0.20 s on one thread vs 0.31 s on two, so cores are better spent
    on more replicas), CTranslate2's default on CUDA."""
    workers: int = 0
    """Model replicas transcribing at once (CTranslate2 ``inter_threads``), one scheduler
    thread each. 0 = auto: ``cores // cpu_threads`` on CPU, 1 on CUDA (a GPU batches)."""
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
class SecurityConfig:
    """Who may connect, from where, and how much they may use (see access.py)."""

    api_keys: tuple[str, ...] = ()
    """Keys-file entries (a key or ``sha256:<hex>``, then ``name=``, ``streams=``, ``rpm=``,
    ``upload_mb=``); empty = open access, meant for loopback only."""
    token_secret: str | None = None
    """HMAC secret for ``/v1/auth/token`` tokens; None = random per process, so replicas
    behind one load balancer must share one."""
    token_ttl_s: float = 300.0
    allowed_origins: tuple[str, ...] | None = None
    """Browser origins that may open WebSockets; None = same-origin and loopback pages
    only; ``("*",)`` = any."""
    cors_origins: tuple[str, ...] = ()
    """Origins the HTTP API answers with CORS headers; empty = no CORS."""
    key_limits: KeyLimits = field(default_factory=KeyLimits)
    """Per-key limits for keys that set none of their own."""
    max_body_bytes: int = 100 * MIB
    """Largest HTTP request body where no key's ``max_upload_bytes`` applies."""


@dataclass(frozen=True)
class StreamLimits:
    """Per-connection bounds that keep one misbehaving client from hurting the others."""

    idle_timeout_s: float = 30.0
    """No frame at all (audio or ``keepalive``) for this long: finals flushed, close 1008."""
    max_input_lead_s: float = 20.0
    """How far a stream's audio may run ahead of ``max_input_speed``: the first half is
    taken at once, the second half waits (throttled); beyond, close 1008 (see pacing.py).
    0 = no pacing."""
    max_input_speed: float = 3.0
    """Sustained input rate allowed past the burst, in × real time."""
    max_outbound_messages: int = 256
    """Unsent messages (after coalescing partials) before a non-reading client is cut off."""
    ws_ping_interval_s: float = 20.0
    ws_ping_timeout_s: float = 20.0
    """A peer that doesn't answer a ping within this is gone (half-open): closed."""
    handshake_timeout_s: float = 10.0
    """A connection must have sent its request headers within this."""
    max_connections: int = 1000
    """Open connections (HTTP and WebSocket) beyond which new ones get HTTP 503."""


@dataclass(frozen=True)
class SchedulerConfig:
    """The batching settings an operator may give (``--max-batch``, ``--batch-wait-ms``);
    None: by device. ``policy`` is the one place a server's ``SchedulingPolicy`` is built,
    once the device is known (``Runtime.load``)."""

    max_batch: int | None = None
    batch_wait_s: float | None = None
    idle_beam_size: int | None = None
    """Beam width for finals while the engine has room (1 = always greedy); None: by
    device (``default_policy``)."""

    def policy(self, device: str, workers: int = 1) -> SchedulingPolicy:
        policy = default_policy(device, self.max_batch, workers, batch_wait_s=self.batch_wait_s)
        if self.idle_beam_size is None:
            return policy
        return replace(policy, idle_beam_size=self.idle_beam_size)


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    engine: EngineConfig = field(default_factory=EngineConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    """Batching settings; the rest is picked by device (see ``default_policy``)."""
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)
    partial_interval_s: float = SessionTuning.partial_interval_s
    """New audio between two partials of one utterance (see session.py)."""
    log_level: str = "info"
    jobs: JobsConfig = field(default_factory=JobsConfig)
    """File transcription jobs: backend, data dir, limits (see jobs/config.py)."""
    replica_id: str = ""
    """Names this replica in ``ready`` messages and ``/readyz``; "" = ``hostname:port``."""
    drain_timeout_s: float = 30.0
    """SIGTERM: longest wait for open sessions to send their finals before stopping."""
    security: SecurityConfig = field(default_factory=SecurityConfig)
    streams: StreamLimits = field(default_factory=StreamLimits)

    @property
    def replica(self) -> str:
        return self.replica_id or f"{socket.gethostname()}:{self.port}"


def default_policy(
    device: str,
    max_batch: int | None = None,
    workers: int = 1,
    *,
    batch_wait_s: float | None = None,
) -> SchedulingPolicy:
    """GPU: batches of up to 16, no wait, partials ride along. CPU: finals alone.
    ``max_batch``/``batch_wait_s`` given: those instead (a server builds its policy
    through ``SchedulerConfig.policy``)."""
    wait = 0.0 if batch_wait_s is None else batch_wait_s
    if device == "cuda":
        # Measured through WhisperEngine on an H100 (large-v3-turbo shape, float16;
        # loadtest/results/gpu_h100_engine.json): encoder time and feature extraction grow
        # linearly with the batch past ~8, so a bigger batch buys little throughput and
        # makes a final that arrives meanwhile wait longer. Simulated capacity at p95
        # final <= 500 ms peaks at 16 (vs 32: +4% finals only, +19% with partials every
        # 1 s). The wait changes capacity by <= 3% (0 best): under load the engine's wait
        # ends at the next request anyway, at light load it only adds latency.
        return SchedulingPolicy(
            max_batch=max_batch or 16,
            batch_wait_s=wait,
            partials_with_finals=True,
            max_partials=max_batch or 16,
            # Not measured on a GPU yet: a batch whose finals decode wider than the
            # partials riding along needs an encode per width (engine.py), so finals stay
            # greedy there until it is.
            idle_beam_size=1,
        )
    return SchedulingPolicy(
        max_batch=max_batch or 4,
        batch_wait_s=wait,
        partials_with_finals=False,
        max_partials=1,
        # One worker: partials leave it idle half the time so a final finds it free.
        # More: the scheduler keeps a worker free for finals anyway (see batch_policy.py).
        max_partial_share=0.5 if workers == 1 else 1.0,
    )
