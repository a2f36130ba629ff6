"""Settings of the file-job subsystem, shared by the server and ``earshot worker``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/earshot``, else ``~/.local/share/earshot``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "earshot"


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failed attempt is tried again, and how long to wait before."""

    max_attempts: int = 3
    backoff_s: float = 2.0
    """Delay before the 2nd attempt; doubles for each later one."""
    max_backoff_s: float = 300.0

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th attempt failed."""
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True)
class JobsConfig:
    backend: str = "sqlite"
    """``sqlite`` (embedded: SQLite + in-process workers) or a ``redis://`` URL
    (Celery with Redis as broker and result store; ``earshot worker`` transcribes)."""
    data_dir: Path = field(default_factory=default_data_dir)
    """SQLite database and uploaded audio (embedded); upload spool (both modes)."""
    max_upload_bytes: int = 100 * 1024 * 1024
    max_duration_s: float = 4 * 3600.0
    """Longest decoded audio accepted: a guard against decompression bombs."""
    result_ttl_s: float = 24 * 3600.0
    """A finished job (and its result) is deleted this long after it ended."""
    audio_ttl_s: float = 24 * 3600.0
    """Distributed mode: a job's audio expires from Redis this long after the upload (a job
    still queued by then fails), so no upload outlives its backlog in Redis' memory."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    lease_s: float = 30.0
    """A running job whose worker stopped renewing its lease this long is re-queued
    (the worker was killed); renewed every ``lease_s / 3``."""
    redelivery_s: float = 600.0
    """Distributed mode: a task whose worker died is delivered again after this long
    (Celery's ``visibility_timeout`` on Redis). A job still running elsewhere when its
    task comes back is left alone (its lease says so)."""
    workers: int = 1
    """Jobs transcribed at once by the in-process worker."""
    sync_max_concurrent: int = 4
    """``POST /v1/audio/transcriptions`` requests served at once (more: 429). Each holds
    its decoded file (up to ``max_duration_s`` of 16 kHz float32: 230 MiB an hour) and
    the engine serves them one segment at a time anyway, so a few are enough to keep it
    busy."""
    sync_max_per_key: int = 2
    """... and of one API key (without keys, all callers are one key), so that one
    client cannot take every slot."""
    segments_in_flight: int = 0
    """File segments one job keeps queued in the scheduler; 0 = by device (CPU 1, GPU
    the policy's max_batch). Small keeps finals from waiting behind file batches."""
    live_yield_s: float | None = None
    """A file segment waits until live streams were quiet this long (at most
    ``pipeline.MAX_LIVE_YIELD_S``); None = by device (CPU 1.5 s, GPU 0: batches there
    cost little more than one request)."""

    @property
    def distributed(self) -> bool:
        return self.backend.startswith(("redis://", "rediss://"))
