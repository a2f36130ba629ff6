"""What the API and the workers need from a job backend, whichever it is."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from earshot.jobs.models import Job, JobQuota

Change = Callable[[Job], Job | None]
"""Given the job as stored, the job to store instead, or None to leave it as it is."""


class JobStore(Protocol):
    def create(self, job: Job, upload: Path, quota: JobQuota | None = None) -> None:
        """Store ``job`` and take over its audio file; durable once this returns.

        With a ``quota``, atomically with the insert: ``QuotaExceeded`` when the job's
        owner already has ``quota``'s worth of ``ACTIVE`` jobs (then nothing is stored,
        ``upload`` is left as it was). ``StoreFull`` when the store has no room."""

    def get(self, job_id: str) -> Job | None: ...

    def update(self, job_id: str, change: Change) -> Job | None:
        """Atomically apply ``change``; return the job as stored afterwards (None: gone)."""

    def delete(self, job_id: str) -> bool:
        """Remove the job and its audio; False if there was none."""

    def audio(self, job_id: str) -> contextlib.AbstractContextManager[Path]:
        """A local path of the job's audio, valid inside the ``with``."""

    def drop_audio(self, job_id: str) -> None:
        """The audio is no longer needed (the job ended)."""

    def close(self) -> None: ...
