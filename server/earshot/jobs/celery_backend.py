"""Distributed mode: Celery with Redis as broker, job records and audio in Redis
(``redis_store.py``), and ``earshot worker`` processes that run the engine.

Theory of operation
-------------------
The API stores the job (``queued``) and publishes a ``earshot.transcribe_job(job_id)``
task. A worker (``run_worker``: Celery's solo pool, one task at a time per process,
the model loaded once) claims the job with the same transitions as the embedded
backend (``models.py``), transcribes it through a ``BatchScheduler`` of its own
(``pipeline.py``; no live sessions here, so no yielding) and records the outcome.
A failed attempt is re-published with the backoff as countdown (``Task.retry``).

Tasks are acknowledged late (after they ran) and rejected back to the queue if their
worker is lost, so a message outlives a killed worker: Redis redelivers it after
``redelivery_s`` (Celery's ``visibility_timeout``). Redelivery can also hit a job that
is still running elsewhere (a long job); the job's lease says so, and the duplicate
steps aside, checking back when the lease would expire. A worker that died mid-job left
an expired lease: the next delivery counts the attempt as failed and runs it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import redis
from celery import Celery, Task
from kombu.exceptions import OperationalError

from earshot.config import EngineConfig, SchedulerConfig
from earshot.jobs.config import JobsConfig
from earshot.jobs.models import Job, JobStatus, StoreFull
from earshot.jobs.redis_store import RedisJobStore, redis_url
from earshot.scheduler import Engine
from earshot.vad import SileroVad

log = logging.getLogger(__name__)
TASK = "earshot.transcribe_job"
QUEUE = "earshot-jobs"


def make_celery(config: JobsConfig) -> Celery:
    url = redis_url(config.backend)  # with EARSHOT_REDIS_PASSWORD, if the URL has none
    app = Celery("earshot", broker=url, backend=url)
    app.conf.update(
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,  # outcomes live in the job records
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={
            "visibility_timeout": config.redelivery_s,
            # Look for messages of dead workers every ~tenth of that (kombu's default
            # sweep is every ~100 s whatever the timeout).
            "unacked_restore_interval": max(1, min(10, int(config.redelivery_s / 10))),
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


class CeleryDispatcher:
    """API side: publish a task per queued job."""

    def __init__(self, config: JobsConfig) -> None:
        self.app = make_celery(config)

    async def dispatch(self, job: Job) -> None:
        try:
            await asyncio.to_thread(self.app.send_task, TASK, args=[job.id])
        except (redis.exceptions.OutOfMemoryError, OperationalError) as exc:
            # The queue lives in that Redis too; kombu wraps its OOM answer.
            if "maxmemory" not in str(exc):
                raise
            raise StoreFull(f"the job queue is full (Redis: {exc}); try again later") from None

    def start(self) -> None:
        """Nothing runs here: ``earshot worker`` processes do the work."""

    async def stop(self) -> None:
        self.app.close()


@dataclass
class _Worker:
    """What one worker process loads once and keeps across tasks."""

    config: JobsConfig
    store: RedisJobStore
    engine: Engine
    """The model, wrapped by ``faults.with_faults`` (a test hook, off unless set)."""
    device: str
    workers: int
    vad: SileroVad


_worker: _Worker | None = None


def run_worker(config: JobsConfig, engine_config: EngineConfig, *, loglevel: str = "info") -> int:
    """Load the model, then serve tasks until stopped (SIGTERM: finish the current one)."""
    global _worker
    from earshot.engine import WhisperEngine
    from earshot.faults import with_faults

    engine = WhisperEngine(engine_config)
    engine.warm_up()
    _worker = _Worker(
        config,
        RedisJobStore(config.backend),
        with_faults(engine),
        engine.device,
        engine.workers,
        SileroVad(),
    )
    app = make_celery(config)
    app.task(name=TASK, bind=True, max_retries=None)(transcribe_job)
    log.info("earshot worker: model %s on %s, queue %s", engine.model_name, engine.device, QUEUE)
    app.worker_main(
        ["worker", "--pool=solo", "--concurrency=1", f"--loglevel={loglevel.upper()}",
         f"--queues={QUEUE}", "--without-gossip", "--without-mingle"]
    )  # fmt: skip
    return 0


def transcribe_job(task: Task, job_id: str) -> None:
    """The Celery task: claim ``job_id``, run one attempt, re-publish it if it is to be
    retried."""
    assert _worker is not None, "transcribe_job runs in `earshot worker` only"
    config, store = _worker.config, _worker.store
    now = time.time()
    job = store.get(job_id)
    if job is None or job.status.terminal:
        return  # deleted, cancelled or already done (a redelivered duplicate)
    if job.status is JobStatus.RUNNING and job.lease_until > now:
        raise task.retry(countdown=job.lease_until - now + 1)  # running elsewhere
    if job.status is JobStatus.RUNNING:  # its worker died
        job = store.update(job_id, lambda j: _orphaned(j, config)) or job
        if job.status.terminal:
            store.drop_audio(job_id)
            return
    if job.not_before > now:
        raise task.retry(countdown=job.not_before - now)
    claimed = False

    def claim(current: Job) -> Job | None:
        nonlocal claimed
        claimed = current.status is JobStatus.QUEUED and current.not_before <= time.time()
        return current.claimed(time.time(), config.lease_s) if claimed else None

    job = store.update(job_id, claim) or job
    if not claimed:
        return
    log.info("job %s: attempt %d started", job_id, job.attempts)
    ended = asyncio.run(_attempt(job))
    log.info("job %s: attempt %d ended %s", job_id, job.attempts, ended.status)
    if ended.status is JobStatus.QUEUED:
        raise task.retry(countdown=max(0.0, ended.not_before - time.time()))


def _orphaned(job: Job, config: JobsConfig) -> Job | None:
    now = time.time()
    if job.status is not JobStatus.RUNNING or job.lease_until > now:
        return None
    return job.orphaned(now, config.retry, config.result_ttl_s)


async def _attempt(job: Job) -> Job:
    from earshot.jobs.pipeline import FileTranscriber
    from earshot.jobs.worker import run_attempt
    from earshot.scheduler import BatchScheduler

    assert _worker is not None
    config = _worker.config
    policy = SchedulerConfig().policy(_worker.device, workers=_worker.workers)
    scheduler = BatchScheduler(_worker.engine, policy, workers=_worker.workers)
    scheduler.start(asyncio.get_running_loop())
    try:
        transcriber = FileTranscriber(
            scheduler,
            _worker.vad,
            in_flight=policy.max_batch * _worker.workers,
            max_seconds=config.max_duration_s,
        )
        return await run_attempt(job, _worker.store, transcriber, config)
    finally:
        await asyncio.to_thread(scheduler.stop)
