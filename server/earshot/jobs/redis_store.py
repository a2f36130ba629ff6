"""The distributed job store: job records and uploaded audio in Redis, so that any API
replica can answer for any job and any ``earshot worker`` can run it.

Keys: ``earshot:job:<id>`` (the ``Job`` as JSON) and ``earshot:audio:<id>`` (the upload's
bytes, deleted once the job ends). Audio travels through Redis rather than a shared
file system: workers on other machines need nothing but the Redis URL, and the upload
cap (``--max-upload-mb``) bounds what one job adds to Redis' memory. Updates are
optimistic transactions (``WATCH``/``MULTI``), so the API's cancel and a worker's
progress never overwrite each other. An ended job's key expires by itself at
``expires_at`` (Redis TTL): no janitor is needed. Durability is Redis' own: run it with
``appendonly yes`` so that accepted jobs survive a Redis restart.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import redis

from earshot.jobs.models import Job
from earshot.jobs.store import Change

PREFIX = "earshot:"


class RedisJobStore:
    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(url)

    @staticmethod
    def _job_key(job_id: str) -> str:
        return f"{PREFIX}job:{job_id}"

    @staticmethod
    def _audio_key(job_id: str) -> str:
        return f"{PREFIX}audio:{job_id}"

    def create(self, job: Job, upload: Path) -> None:
        audio = upload.read_bytes()
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._audio_key(job.id), audio)
            pipe.set(self._job_key(job.id), job.dumps())
            pipe.execute()
        upload.unlink(missing_ok=True)

    def get(self, job_id: str) -> Job | None:
        data = self._redis.get(self._job_key(job_id))
        return Job.loads(data) if data else None  # type: ignore[arg-type]

    def update(self, job_id: str, change: Change) -> Job | None:
        key = self._job_key(job_id)
        result: list[Job | None] = [None]

        def attempt(pipe: redis.client.Pipeline) -> None:
            data = pipe.get(key)
            if not data:
                result[0] = None
                return
            job = Job.loads(data)  # type: ignore[arg-type]
            new = change(job)
            result[0] = job
            if new is None or new == job:
                return
            pipe.multi()
            if new.expires_at is not None:
                pipe.set(key, new.dumps(), pxat=int(new.expires_at * 1000))
            else:
                pipe.set(key, new.dumps())
            result[0] = new

        self._redis.transaction(attempt, key)
        return result[0]

    def delete(self, job_id: str) -> bool:
        return bool(self._redis.delete(self._job_key(job_id), self._audio_key(job_id)))

    @contextlib.contextmanager
    def audio(self, job_id: str) -> Iterator[Path]:
        data = self._redis.get(self._audio_key(job_id))
        if data is None:
            raise FileNotFoundError(f"audio of {job_id} is gone from Redis")
        fd, name = tempfile.mkstemp(prefix="earshot-job-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)  # type: ignore[arg-type]
            yield Path(name)
        finally:
            os.unlink(name)

    def drop_audio(self, job_id: str) -> None:
        self._redis.delete(self._audio_key(job_id))

    def close(self) -> None:
        self._redis.close()
