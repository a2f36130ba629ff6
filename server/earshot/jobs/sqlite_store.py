"""The embedded job store: one SQLite database plus one audio file per job.

Theory of operation
-------------------
Layout of the data dir: ``jobs.sqlite3`` (WAL, ``synchronous=FULL``: a committed
transaction survives power loss), ``audio/<job id>`` (the upload, fsync'd and renamed
into place *before* the job row is committed) and ``uploads/`` (partial uploads).
So a job the API answered 202 for has its row and its audio on disk; a crash between
the rename and the commit leaves only an orphan file, which ``sweep`` deletes. A key's
job quota is checked in the transaction that inserts the job, so concurrent uploads of
one key cannot both slip under it.

Each job row holds the whole ``Job`` as JSON plus the columns that queries need
(status, not_before, lease_until, expires_at). Every state change is a read-modify-write
inside ``BEGIN IMMEDIATE`` (``update``), so the API's cancel and a worker's progress
never overwrite each other, and several processes may share one data dir: ``claim``
takes the oldest due queued job, or a running one whose lease expired (its worker was
killed), in one transaction.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from earshot.jobs.config import RetryPolicy
from earshot.jobs.models import ACTIVE, Job, JobQuota, JobStatus
from earshot.jobs.store import Change

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    not_before REAL NOT NULL,
    lease_until REAL NOT NULL,
    expires_at REAL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (status, not_before, created_at);
CREATE INDEX IF NOT EXISTS jobs_expiry ON jobs (expires_at);
"""
ORPHAN_AGE_S = 300.0


class SqliteJobStore:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.audio_dir = data_dir / "audio"
        self.upload_dir = data_dir / "uploads"
        for folder in (self.audio_dir, self.upload_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            data_dir / "jobs.sqlite3", isolation_level=None, check_same_thread=False, timeout=30
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    # -- JobStore -------------------------------------------------------------------------
    def create(self, job: Job, upload: Path, quota: JobQuota | None = None) -> None:
        target = self.audio_path(job.id)
        with self._transaction() as db:  # the quota check and the insert: one transaction
            if quota is not None:
                jobs, size = db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(json_extract(data, '$.size')), 0) FROM jobs"
                    " WHERE status IN (?, ?) AND json_extract(data, '$.owner') IS ?",
                    (*ACTIVE, job.owner),
                ).fetchone()
                quota.check(jobs, size, job.size)
            os.replace(upload, target)
            _fsync_dir(self.audio_dir)
            db.execute(
                "INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job.id, job.status, job.created_at, job.not_before, job.lease_until,
                 job.expires_at, job.dumps()),
            )  # fmt: skip

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job.loads(row[0]) if row else None

    def update(self, job_id: str, change: Change) -> Job | None:
        with self._transaction() as db:
            row = db.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            job = Job.loads(row[0])
            new = change(job)
            if new is None or new == job:
                return job
            self._write(db, new)
            return new

    def delete(self, job_id: str) -> bool:
        with self._transaction() as db:
            deleted = db.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount > 0
        self.drop_audio(job_id)
        return deleted

    @contextlib.contextmanager
    def audio(self, job_id: str) -> Iterator[Path]:
        yield self.audio_path(job_id)

    def drop_audio(self, job_id: str) -> None:
        self.audio_path(job_id).unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- embedded worker side ---------------------------------------------------------------
    def audio_path(self, job_id: str) -> Path:
        return self.audio_dir / job_id

    def claim(self, now: float, lease_s: float, retry: RetryPolicy, ttl_s: float) -> Job | None:
        """The next due job, now ``running`` under a lease; orphans are requeued first."""
        with self._transaction() as db:
            for (data,) in db.execute(
                "SELECT data FROM jobs WHERE status = 'running' AND lease_until < ?", (now,)
            ).fetchall():
                orphan = Job.loads(data).orphaned(now, retry, ttl_s)
                self._write(db, orphan)
                if orphan.status is JobStatus.FAILED:
                    self.drop_audio(orphan.id)
            row = db.execute(
                "SELECT data FROM jobs WHERE status = 'queued' AND not_before <= ?"
                " ORDER BY created_at LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                return None
            job = Job.loads(row[0]).claimed(now, lease_s)
            self._write(db, job)
            return job

    def counts(self) -> dict[str, int]:
        """Jobs by status (``earshot_jobs{state}`` on ``/metrics``)."""
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status")
            return {status: count for status, count in rows.fetchall()}

    def sweep(self, now: float) -> int:
        """Delete expired jobs with their audio, and orphan audio files; return the count."""
        with self._transaction() as db:
            expired = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM jobs WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
                ).fetchall()
            ]
            db.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in expired])
            known = {r[0] for r in db.execute("SELECT id FROM jobs").fetchall()}
        for job_id in expired:
            self.drop_audio(job_id)
        for folder in (self.audio_dir, self.upload_dir):
            for path in folder.iterdir():
                stale = now - path.stat().st_mtime > ORPHAN_AGE_S
                if path.name not in known and stale:
                    path.unlink(missing_ok=True)
        return len(expired)

    # -- internals ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @staticmethod
    def _write(db: sqlite3.Connection, job: Job) -> None:
        db.execute(
            "UPDATE jobs SET status = ?, not_before = ?, lease_until = ?, expires_at = ?,"
            " data = ? WHERE id = ?",
            (job.status, job.not_before, job.lease_until, job.expires_at, job.dumps(), job.id),
        )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
