"""The job record and its state machine, as pure values (no I/O).

Theory of operation
-------------------
::

    queued ──claim──> running ──ok──> done
      ^                  │ └──error, attempts left──> queued (not before now + backoff)
      │                  └────error, none left────> failed (reason)
      └──lease expired (worker killed)── running
    queued | running ──cancel──> cancelled

Every transition is a method returning a new ``Job``; the stores only persist them
(atomically, see ``store.py``), so the SQLite and Redis backends cannot disagree on
what a transition means. ``attempts`` counts claims, so a file that kills its worker
every time ends ``failed`` too instead of looping forever. Terminal jobs carry
``expires_at``, after which they and their files are deleted. A job belongs to the key
that created it (``owner``): other keys get 404 for it, as for a job that never was.
"""

from __future__ import annotations

import enum
import json
import uuid
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from earshot.jobs.config import RetryPolicy


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
"""What a key's job quota counts: jobs not ended yet, whose audio is still kept."""


@dataclass(frozen=True)
class JobQuota:
    """How much one key may have outstanding (``ACTIVE``) at once; None: no limit."""

    max_jobs: int | None = None
    max_bytes: int | None = None

    def check(self, jobs: int, size: int, new_size: int) -> None:
        """``QuotaExceeded`` unless a job of ``new_size`` bytes fits beside ``jobs``
        outstanding ones holding ``size`` bytes."""
        if self.max_jobs is not None and jobs + 1 > self.max_jobs:
            raise QuotaExceeded(
                f"this key already has {jobs} jobs queued or running (limit {self.max_jobs});"
                " wait for some to finish, or cancel some"
            )
        if self.max_bytes is not None and size + new_size > self.max_bytes:
            raise QuotaExceeded(
                f"this key's queued and running jobs hold {size} bytes of audio; {new_size}"
                f" more would pass its limit of {self.max_bytes} bytes"
            )


class QuotaExceeded(Exception):
    """A key's job quota is used up (HTTP 429); the message is safe to show."""


class StoreFull(Exception):
    """The job store has no room for the upload now (HTTP 503; Redis at ``maxmemory``)."""


class InvalidOption(ValueError):
    """A request option is malformed (HTTP 400); ``param`` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class JobOptions:
    language: str | None = None
    """ISO-639-1 code; None detects it once for the whole file."""
    prompt: str | None = None
    word_timestamps: bool = False

    @classmethod
    def parse(
        cls,
        language: str | None,
        prompt: str | None,
        word_timestamps: str | bool | None,
        languages: frozenset[str],
    ) -> JobOptions:
        """Validate user-supplied values (form fields are strings)."""
        if language in (None, "", "auto"):
            language = None
        elif language not in languages:
            raise InvalidOption("language", f"unsupported language {language!r}")
        if prompt is not None and len(prompt) > 2000:
            raise InvalidOption("prompt", "prompt longer than 2000 characters")
        return cls(language=language, prompt=prompt or None, word_timestamps=_flag(word_timestamps))


def _flag(value: str | bool | None) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("", "0", "false", "no", "off"):
        return False
    raise InvalidOption("word_timestamps", f"not a boolean: {value!r}")


@dataclass(frozen=True)
class ResultWord:
    word: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class ResultSegment:
    start: float
    end: float
    text: str
    words: tuple[ResultWord, ...] = ()
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0


@dataclass(frozen=True)
class JobResult:
    text: str
    language: str
    duration: float
    """Seconds of audio in the file."""
    segments: tuple[ResultSegment, ...] = ()

    def to_dict(self, *, words: bool = True) -> dict[str, Any]:
        data = asdict(self)
        if not words:
            for segment in data["segments"]:
                segment.pop("words")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobResult:
        segments = tuple(
            ResultSegment(
                **{k: v for k, v in s.items() if k != "words"},
                words=tuple(ResultWord(**w) for w in s.get("words", ())),
            )
            for s in data["segments"]
        )
        return cls(data["text"], data["language"], data["duration"], segments)


def new_job_id() -> str:
    return "job_" + uuid.uuid4().hex


@dataclass(frozen=True)
class Job:
    id: str
    options: JobOptions
    filename: str
    size: int
    created_at: float
    status: JobStatus = JobStatus.QUEUED
    updated_at: float = 0.0
    attempts: int = 0
    progress: float = 0.0
    """0–1 share of the file's speech transcribed, while running."""
    error: str | None = None
    """Why it failed (final) or why the last attempt failed (while retried)."""
    not_before: float = 0.0
    """A retried job waits until then (backoff)."""
    lease_until: float = 0.0
    """A running job's worker renews this; past it the job is taken as orphaned."""
    expires_at: float | None = None
    result: JobResult | None = field(default=None, repr=False)
    owner: str | None = None
    """The API key (its id) that created the job; only it, or an admin key, sees it.
    None: made with open access (no keys), or before jobs had owners."""

    # -- transitions --------------------------------------------------------------------
    def claimed(self, now: float, lease_s: float) -> Job:
        assert self.status is JobStatus.QUEUED, self.status
        return replace(
            self,
            status=JobStatus.RUNNING,
            attempts=self.attempts + 1,
            progress=0.0,
            updated_at=now,
            lease_until=now + lease_s,
        )

    def renewed(self, now: float, lease_s: float, progress: float | None = None) -> Job:
        return replace(
            self,
            lease_until=now + lease_s,
            progress=self.progress if progress is None else progress,
            updated_at=now,
        )

    def succeeded(self, result: JobResult, now: float, ttl_s: float) -> Job:
        return replace(
            self,
            status=JobStatus.DONE,
            result=result,
            progress=1.0,
            error=None,
            updated_at=now,
            expires_at=now + ttl_s,
        )

    def attempt_failed(
        self, reason: str, now: float, retry: RetryPolicy, ttl_s: float, *, permanent: bool = False
    ) -> Job:
        """Back to the queue after a backoff, or ``failed`` when no attempt is left (or
        trying again cannot help: ``permanent``)."""
        if permanent:
            return replace(
                self, status=JobStatus.FAILED, error=reason, updated_at=now, expires_at=now + ttl_s
            )
        if self.attempts >= retry.max_attempts:
            return replace(
                self,
                status=JobStatus.FAILED,
                error=f"{reason} (after {self.attempts} attempts)",
                updated_at=now,
                expires_at=now + ttl_s,
            )
        return replace(
            self,
            status=JobStatus.QUEUED,
            error=reason,
            progress=0.0,
            updated_at=now,
            not_before=now + retry.delay(self.attempts),
        )

    def orphaned(self, now: float, retry: RetryPolicy, ttl_s: float) -> Job:
        """Its worker died mid-job (lease expired): an attempt that failed."""
        return self.attempt_failed("worker lost during transcription", now, retry, ttl_s)

    def interrupted(self, now: float) -> Job:
        """The worker is shutting down cleanly: back to the queue, attempt not counted."""
        return replace(
            self, status=JobStatus.QUEUED, attempts=max(0, self.attempts - 1), updated_at=now
        )

    def cancelled(self, now: float, ttl_s: float) -> Job:
        return replace(self, status=JobStatus.CANCELLED, updated_at=now, expires_at=now + ttl_s)

    # -- views ----------------------------------------------------------------------------
    def public(self) -> dict[str, Any]:
        """What ``GET /v1/jobs/{id}`` answers."""
        body: dict[str, Any] = {
            "job_id": self.id,
            "status": str(self.status),
            "filename": self.filename,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "attempts": self.attempts,
            "options": asdict(self.options),
        }
        if self.status is JobStatus.RUNNING:
            body["progress"] = round(self.progress, 3)
        if self.error and self.status is not JobStatus.DONE:
            body["error"] = self.error
        if self.expires_at is not None:
            body["expires_at"] = self.expires_at
        if self.owner is not None:
            body["owner"] = self.owner
        if self.status is JobStatus.DONE and self.result is not None:
            body["result"] = self.result.to_dict(words=self.options.word_timestamps)
        return body

    def dumps(self) -> str:
        data = asdict(self)
        data["status"] = str(self.status)
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def loads(cls, text: str) -> Job:
        data = json.loads(text)
        result = data.pop("result")
        return cls(
            **{
                **data,
                "status": JobStatus(data["status"]),
                "options": JobOptions(**data["options"]),
                "result": JobResult.from_dict(result) if result else None,
            }
        )
