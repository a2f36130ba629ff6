"""The distributed job store: job records and uploaded audio in Redis, so that any API
replica can answer for any job and any ``earshot worker`` can run it.

Keys: ``earshot:job:<id>`` (the ``Job`` as JSON), ``earshot:audio:<id>`` (the upload's
bytes, deleted once the job ends, and in any case after ``audio_ttl_s``: a job whose audio
expired before a worker got to it fails) and ``earshot:owner:<key id>`` (a hash: the
key's recent job ids → their sizes, for its job quota). Audio travels through Redis
rather than a shared file system: workers on other machines need nothing but the Redis
URL, and the upload cap (``--max-upload-mb``) bounds what one job adds to Redis' memory.
Updates are optimistic transactions (``WATCH``/``MULTI``), so the API's cancel and a
worker's progress never overwrite each other. An ended job's key expires by itself at
``expires_at`` (Redis TTL): no janitor is needed. Durability is Redis' own: run it with
``appendonly yes`` so that accepted jobs survive a Redis restart.

Memory: run Redis with ``maxmemory`` and ``maxmemory-policy noeviction`` (an evicted key
is a lost job). A new job is refused (``StoreFull``, HTTP 503) when its audio would not
fit with room to spare (``ROOM_RESERVE``) for the records and queue messages of the jobs
already accepted, and when Redis answers OOM anyway. Quotas: ``create`` counts the
owner's jobs that are still queued or running (pruning its hash of ended or expired
ones) and stores the new job in one transaction that ``WATCH``es the owner's hash, so
two uploads of one key cannot both slip under its quota.

Password: in the URL (``redis://:password@host:6379/0``), else ``EARSHOT_REDIS_PASSWORD``
or the file named by ``EARSHOT_REDIS_PASSWORD_FILE`` (``redis_url``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import redis

from earshot.jobs.models import ACTIVE, Job, JobQuota, StoreFull
from earshot.jobs.store import Change

PREFIX = "earshot:"
PASSWORD_ENV = "EARSHOT_REDIS_PASSWORD"
ROOM_RESERVE = 0.05
"""Share of ``maxmemory`` kept free of new uploads, for the records, results and queue
messages of the jobs already accepted (writes Redis would otherwise refuse with OOM)."""
MIN_ROOM_RESERVE = 8 * 1024 * 1024


def redis_url(url: str, environ: Mapping[str, str] = os.environ) -> str:
    """``url`` with the password from ``EARSHOT_REDIS_PASSWORD`` (or the file named by
    ``EARSHOT_REDIS_PASSWORD_FILE``, a mounted Secret) put in, unless it has one."""
    password = environ.get(PASSWORD_ENV)
    if password is None and environ.get(f"{PASSWORD_ENV}_FILE"):
        password = Path(environ[f"{PASSWORD_ENV}_FILE"]).read_text().strip()
    parts = urlsplit(url)
    if not password or parts.password is not None:
        return url
    user = quote(parts.username, safe="") if parts.username else ""
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{user}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def _full(exc: redis.exceptions.RedisError) -> StoreFull:
    return StoreFull(f"the job store is full (Redis: {exc}); try again later")


class RedisJobStore:
    def __init__(self, url: str, *, audio_ttl_s: float | None = None) -> None:
        self._redis = redis.Redis.from_url(redis_url(url))
        self.audio_ttl_s = audio_ttl_s

    @staticmethod
    def _job_key(job_id: str) -> str:
        return f"{PREFIX}job:{job_id}"

    @staticmethod
    def _audio_key(job_id: str) -> str:
        return f"{PREFIX}audio:{job_id}"

    @staticmethod
    def _owner_key(owner: str | None) -> str:
        return f"{PREFIX}owner:{owner or ''}"

    def create(self, job: Job, upload: Path, quota: JobQuota | None = None) -> None:
        audio = upload.read_bytes()
        self._check_room(len(audio))
        owner_key = self._owner_key(job.owner)
        ttl_ms = int(self.audio_ttl_s * 1000) if self.audio_ttl_s else None

        def attempt(pipe: redis.client.Pipeline) -> None:
            ended: list[str] = []
            if quota is not None:
                raw: dict[bytes, bytes] = pipe.hgetall(owner_key)  # type: ignore[assignment]
                held = {k.decode(): int(v) for k, v in raw.items()}
                records: list[bytes | None] = (
                    pipe.mget([self._job_key(i) for i in held]) if held else []  # type: ignore[assignment]
                )
                active = 0
                for (job_id, size), record in zip(held.items(), records, strict=True):
                    if record and Job.loads(record.decode()).status in ACTIVE:
                        active += size
                    else:
                        ended.append(job_id)
                quota.check(len(held) - len(ended), active, job.size)
            pipe.multi()
            pipe.set(self._audio_key(job.id), audio, px=ttl_ms)
            pipe.set(self._job_key(job.id), job.dumps())
            if quota is not None:
                if ended:
                    pipe.hdel(owner_key, *ended)
                pipe.hset(owner_key, job.id, job.size)

        try:
            self._redis.transaction(attempt, owner_key)
        except redis.exceptions.OutOfMemoryError as exc:
            raise _full(exc) from None
        upload.unlink(missing_ok=True)

    def _check_room(self, size: int) -> None:
        """``StoreFull`` unless ``size`` more bytes fit below ``maxmemory`` with the
        reserve to spare. Redis holds an upload twice while it takes it in (the request
        buffer, then the value), hence ``2 * size``."""
        try:
            memory = self._redis.info("memory")
        except redis.exceptions.ResponseError:
            return  # INFO disabled (some managed Redis): the OOM answer is the backstop
        limit = int(memory.get("maxmemory", 0))
        if not limit:
            return
        reserve = max(MIN_ROOM_RESERVE, int(limit * ROOM_RESERVE))
        used = int(memory["used_memory"])
        if used + 2 * size + reserve > limit:
            raise StoreFull(
                f"the job store is full ({used} of {limit} bytes used, {size} more needed);"
                " try again later"
            )

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

        try:
            self._redis.transaction(attempt, key)
        except redis.exceptions.OutOfMemoryError as exc:
            raise _full(exc) from None
        return result[0]

    def delete(self, job_id: str) -> bool:
        job = self.get(job_id)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._job_key(job_id), self._audio_key(job_id))
            if job is not None:
                pipe.hdel(self._owner_key(job.owner), job_id)
            deleted, *_ = pipe.execute()
        return bool(deleted)

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
