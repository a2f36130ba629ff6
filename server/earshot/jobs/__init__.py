"""File transcription jobs: ``/v1/jobs`` (asynchronous, durable), the OpenAI-compatible
``/v1/audio/transcriptions`` (synchronous), and the two backends behind them.

Modules, one job each::

    models (Job, its state machine)   formats (json/text/srt/vtt)   config
    uploads (413/415 at the door) ──> service (accept, get, cancel) ──> store protocol
        ├─ sqlite_store + worker (embedded: SQLite, in-process asyncio workers)
        └─ redis_store + celery_backend (distributed: Redis, ``earshot worker``)
    pipeline (decode, split_speech, Priority.FILE requests through a BatchScheduler)
    routes, openai_compat (HTTP)   cli (submit/status/result/worker)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from earshot.jobs.config import JobsConfig
    from earshot.jobs.service import JobService
    from earshot.runtime import Runtime


def open_jobs(config: JobsConfig, runtime: Runtime) -> JobService:
    """The job service of a server: embedded (SQLite) or distributed (Celery + Redis).
    Call ``start()`` on it from the running event loop."""
    from earshot.jobs.pipeline import FileTranscriber
    from earshot.jobs.service import JobService

    policy = runtime.scheduler.policy
    # On a CPU, one file segment at a time, in pauses of live traffic, keeps a final
    # from waiting behind file work. On a GPU batches are nearly free.
    gpu = runtime.engine.device == "cuda"
    in_flight = config.segments_in_flight or (policy.max_batch if gpu else 1)
    live_yield_s = config.live_yield_s if config.live_yield_s is not None else 0.0 if gpu else 1.5
    transcriber = FileTranscriber(
        runtime.scheduler,
        runtime.vad,
        in_flight=in_flight,
        live_yield_s=live_yield_s,
        max_seconds=config.max_duration_s,
    )
    if config.distributed:
        from earshot.jobs.celery_backend import CeleryDispatcher
        from earshot.jobs.redis_store import RedisJobStore

        redis_store = RedisJobStore(config.backend, audio_ttl_s=config.audio_ttl_s)
        return JobService(redis_store, config, transcriber, CeleryDispatcher(config))
    from earshot.jobs.sqlite_store import SqliteJobStore
    from earshot.jobs.worker import EmbeddedWorker

    store = SqliteJobStore(config.data_dir)
    runtime.metrics.set_jobs_source(store.counts)
    return JobService(store, config, transcriber, EmbeddedWorker(store, transcriber, config))
