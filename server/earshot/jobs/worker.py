"""Running jobs: one attempt of a claimed job (``run_attempt``, shared by both
backends) and the embedded backend's in-process worker.

Theory of operation
-------------------
State: the job's row in the store is the only state that matters (``status``,
``attempts``, the lease's expiry, ``progress``); a worker keeps nothing a crash could
lose. In memory there are only the ``--job-workers`` claim loops, the janitor, and a
wake-up event that ``dispatch`` sets when a job is queued so it is claimed at once
rather than at the next poll (every ``POLL_S``).

The in-process worker is a few asyncio tasks in the server's loop. Each one claims
the next due job from SQLite (a transaction: the job becomes ``running`` under a
lease), decodes and splits the file in a thread and feeds its segments to the
server's scheduler as ``Priority.FILE`` requests (``pipeline.py``), so file work is
batched with, and yields to, live streams. While it runs, the attempt renews its lease
(with its progress) every ``lease_s / 3`` and after segments; a renewal that finds the
job no longer ``running`` under this attempt (cancelled) aborts it.

Crash safety: a killed server leaves its jobs ``running`` with a lease nobody renews;
after ``lease_s`` any worker sharing the data dir (the restarted server too) takes them
back as a failed attempt, and they run again. A clean shutdown hands running jobs back
to the queue at once without counting the attempt. Failures are retried with
exponential backoff until ``RetryPolicy.max_attempts``, then the job is ``failed`` with
the reason; undecodable or over-long audio fails at once (trying again cannot help).
A janitor deletes ended jobs ``result_ttl_s`` after they ended, with their files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from earshot.audio_files import AudioTooLong, UndecodableAudio
from earshot.jobs.config import JobsConfig
from earshot.jobs.models import Job, JobResult, JobStatus
from earshot.jobs.pipeline import FileTranscriber, Progress
from earshot.jobs.sqlite_store import SqliteJobStore
from earshot.jobs.store import Change, JobStore

log = logging.getLogger(__name__)
POLL_S = 1.0
PROGRESS_EVERY_S = 1.0


class JobAborted(Exception):
    """The job left ``running`` under this attempt (cancelled, or taken over)."""


async def run_attempt(
    job: Job, store: JobStore, transcriber: FileTranscriber, config: JobsConfig
) -> Job:
    """Run one claimed attempt to its end and record the outcome; return the job as
    stored afterwards (``queued`` again when it is to be retried)."""
    attempt = job.attempts
    last_renewal = time.monotonic()
    progress = 0.0

    def mine(current: Job) -> bool:
        return current.status is JobStatus.RUNNING and current.attempts == attempt

    async def renew() -> None:
        nonlocal last_renewal
        last_renewal = time.monotonic()
        now, share = time.time(), progress
        stored = await asyncio.to_thread(
            store.update,
            job.id,
            lambda j: j.renewed(now, config.lease_s, share) if mine(j) else None,
        )
        if stored is None or not mine(stored):
            raise JobAborted(job.id)

    async def on_progress(share: float) -> None:
        nonlocal progress
        progress = share
        if time.monotonic() - last_renewal >= PROGRESS_EVERY_S:
            await renew()

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(config.lease_s / 3)
            await renew()

    work = asyncio.create_task(_transcribe(job, store, transcriber, on_progress))
    beat = asyncio.create_task(heartbeat())
    try:
        await asyncio.wait({work, beat}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            beat.result()  # the heartbeat ended first: JobAborted or a store error
        result = work.result()
        change: Change = lambda j: j.succeeded(result, time.time(), config.result_ttl_s)  # noqa: E731
    except JobAborted:
        log.info("job %s stopped: no longer running under attempt %d", job.id, attempt)
        return await asyncio.to_thread(store.get, job.id) or job
    except asyncio.CancelledError:
        await asyncio.to_thread(
            store.update, job.id, lambda j: j.interrupted(time.time()) if mine(j) else None
        )
        raise
    except (UndecodableAudio, AudioTooLong) as exc:
        change = _failure(str(exc), config, permanent=True)
    except Exception as exc:
        log.warning("job %s attempt %d failed: %s", job.id, attempt, exc)
        change = _failure(str(exc) or type(exc).__name__, config, permanent=False)
    finally:
        for task in (work, beat):
            task.cancel()
        await asyncio.gather(work, beat, return_exceptions=True)
    stored = await asyncio.to_thread(store.update, job.id, lambda j: change(j) if mine(j) else None)
    if stored is not None and stored.status.terminal:
        await asyncio.to_thread(store.drop_audio, job.id)
    return stored or job


async def _transcribe(
    job: Job, store: JobStore, transcriber: FileTranscriber, progress: Progress
) -> JobResult:
    audio = store.audio(job.id)
    path = await asyncio.to_thread(audio.__enter__)  # may download (Redis backend)
    try:
        return await transcriber.transcribe_path(path, job.options, owner=job.id, progress=progress)
    finally:
        await asyncio.to_thread(audio.__exit__, None, None, None)


def _failure(reason: str, config: JobsConfig, *, permanent: bool) -> Change:
    def fail(job: Job) -> Job:
        return job.attempt_failed(
            reason, time.time(), config.retry, config.result_ttl_s, permanent=permanent
        )

    return fail


class EmbeddedWorker:
    """The in-process worker of the embedded backend (see the module docstring)."""

    def __init__(
        self, store: SqliteJobStore, transcriber: FileTranscriber, config: JobsConfig
    ) -> None:
        self.store = store
        self.transcriber = transcriber
        self.config = config
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def dispatch(self, _job: Job) -> None:
        """A job was queued: claim it now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name=f"earshot-job-worker-{i}")
            for i in range(self.config.workers)
        ]
        self._tasks.append(asyncio.create_task(self._janitor(), name="earshot-job-janitor"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _claim_loop(self) -> None:
        config = self.config
        while True:
            try:
                job = await asyncio.to_thread(
                    self.store.claim, time.time(), config.lease_s, config.retry, config.result_ttl_s
                )
            except Exception:
                log.exception("claiming a job failed")
                job = None
            if job is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_S)
                continue
            log.info("job %s: attempt %d started", job.id, job.attempts)
            ended = await run_attempt(job, self.store, self.transcriber, config)
            log.info("job %s: attempt %d ended %s", job.id, job.attempts, ended.status)

    async def _janitor(self) -> None:
        period = min(60.0, max(0.5, self.config.result_ttl_s / 2))
        while True:
            try:
                removed = await asyncio.to_thread(self.store.sweep, time.time())
                if removed:
                    log.info("deleted %d expired jobs", removed)
            except Exception:
                log.exception("job janitor failed")
            await asyncio.sleep(period)
