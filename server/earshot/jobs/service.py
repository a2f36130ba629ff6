"""The API's view of the job backend: accept, look up, cancel. The same for both
backends; only ``dispatch`` (wake the in-process worker, or publish a Celery task)
differs.

Tenants: a job belongs to the key that submitted it (``Job.owner``); ``get`` and
``cancel_or_delete`` answer None (the routes' 404) for another key's job unless the
caller is an admin key. Each key's outstanding jobs are bounded by its quota
(``KeyLimits.max_jobs``/``max_job_bytes``), which the store checks atomically with the
insert (``QuotaExceeded``: 429).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol

from starlette.requests import Request

from earshot.access import Principal
from earshot.jobs.config import JobsConfig
from earshot.jobs.models import Job, JobOptions, JobQuota, JobStatus, new_job_id
from earshot.jobs.pipeline import FileTranscriber
from earshot.jobs.store import JobStore
from earshot.jobs.sync_limits import SyncLimiter
from earshot.jobs.uploads import Upload, receive_upload


class Dispatcher(Protocol):
    """Gets queued jobs to a worker: the in-process one, or Celery's."""

    async def dispatch(self, job: Job) -> None: ...

    def start(self) -> None: ...

    async def stop(self) -> None: ...


class JobService:
    def __init__(
        self,
        store: JobStore,
        config: JobsConfig,
        transcriber: FileTranscriber,
        dispatcher: Dispatcher,
    ) -> None:
        self.store = store
        self.config = config
        self.transcriber = transcriber
        """Runs synchronous requests (the OpenAI-compatible endpoint) on this server."""
        self.dispatcher = dispatcher
        self.upload_dir = config.data_dir / "uploads"
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        self.sync_limiter = SyncLimiter(config.sync_max_concurrent, config.sync_max_per_key)
        """Bounds and threads of the synchronous endpoint (``openai_compat``)."""

    async def submit(
        self, upload: Path, filename: str, options: JobOptions, caller: Principal | None = None
    ) -> Job:
        """Make the fsync'd ``upload`` (in ``upload_dir``) a queued job of ``caller``'s key;
        durable on return. ``QuotaExceeded``/``StoreFull`` when it may not or cannot be."""
        now = time.time()
        job = Job(
            id=new_job_id(),
            options=options,
            filename=filename,
            size=upload.stat().st_size,
            created_at=now,
            updated_at=now,
            owner=caller.key.key_id if caller is not None and caller.key is not None else None,
        )
        await asyncio.to_thread(self.store.create, job, upload, _quota(caller))
        try:
            await self.dispatcher.dispatch(job)
        except BaseException:  # not queued after all: don't leave a job nobody will run
            await asyncio.to_thread(self.store.delete, job.id)
            raise
        return job

    async def get(self, job_id: str, caller: Principal | None = None) -> Job | None:
        """The job, or None when there is none or it is another key's (``caller``: None
        for the system itself, which sees every job)."""
        job = await asyncio.to_thread(self.store.get, job_id)
        if job is None or (caller is not None and not caller.owns(job.owner)):
            return None
        return job

    async def cancel_or_delete(self, job_id: str, caller: Principal | None = None) -> str | None:
        """Cancel an active job (kept, ``cancelled``, until its TTL) or delete an ended
        one; which was done, or None for an unknown id or another key's job."""
        ttl = self.config.result_ttl_s

        def cancel(job: Job) -> Job | None:
            return None if job.status.terminal else job.cancelled(time.time(), ttl)

        before = await self.get(job_id, caller)
        if before is None:
            return None
        if not before.status.terminal:
            after = await asyncio.to_thread(self.store.update, job_id, cancel)
            if after is not None and after.status is JobStatus.CANCELLED:
                await asyncio.to_thread(self.store.drop_audio, job_id)
                return "cancelled"
        deleted = await asyncio.to_thread(self.store.delete, job_id)
        return "deleted" if deleted else None

    def receive_upload(
        self, request: Request, executor: Executor | None = None
    ) -> AbstractAsyncContextManager[Upload]:
        """The request's multipart upload, kept in this service's folder within its limits
        (one place for both upload routes: /v1/jobs and the OpenAI endpoint); its blocking
        steps run in ``executor`` (default: the loop's)."""
        config = self.config
        return receive_upload(
            request, self.upload_dir, config.max_upload_bytes, config.max_duration_s, executor
        )

    def start(self) -> None:
        self.dispatcher.start()

    async def stop(self) -> None:
        await self.dispatcher.stop()
        self.sync_limiter.close()
        await asyncio.to_thread(self.store.close)


def _quota(caller: Principal | None) -> JobQuota | None:
    """The caller's job quota; None (unlimited) with open access or no limits set."""
    if caller is None or caller.key is None:
        return None
    limits = caller.limits
    if limits.max_jobs is None and limits.max_job_bytes is None:
        return None
    return JobQuota(limits.max_jobs, limits.max_job_bytes)


def service_of(request: Request) -> JobService:
    service: JobService = request.app.state.jobs
    return service
