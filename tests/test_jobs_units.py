"""The pure parts of the job subsystem: state transitions, retry policy, renderers,
the decode cap, and the SQLite store's claim/orphan/sweep rules (no server, no model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Clip
from earshot.audio_files import AudioTooLong, read_audio
from earshot.jobs.config import RetryPolicy
from earshot.jobs.formats import to_srt, to_vtt
from earshot.jobs.models import (
    InvalidOption,
    Job,
    JobOptions,
    JobResult,
    JobStatus,
    ResultSegment,
    ResultWord,
)
from earshot.jobs.sqlite_store import SqliteJobStore

RETRY = RetryPolicy(max_attempts=3, backoff_s=2.0, max_backoff_s=5.0)


def job(**changes: object) -> Job:
    base = Job(id="job_1", options=JobOptions(), filename="a.wav", size=1, created_at=100.0)
    return Job(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def test_retry_backoff_doubles_and_is_capped() -> None:
    assert [RETRY.delay(n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 5.0, 5.0]


def test_failed_attempts_requeue_with_backoff_then_fail() -> None:
    running = job().claimed(now=100.0, lease_s=30)
    assert (running.status, running.attempts, running.lease_until) == (JobStatus.RUNNING, 1, 130)
    retried = running.attempt_failed("boom", 110.0, RETRY, ttl_s=60)
    assert (retried.status, retried.not_before, retried.error) == (JobStatus.QUEUED, 112.0, "boom")
    last = retried.claimed(120, 30).attempt_failed("boom", 121, RETRY, 60)
    last = last.claimed(130, 30).attempt_failed("boom", 131, RETRY, 60)
    assert last.status is JobStatus.FAILED and last.expires_at == 191
    assert last.error == "boom (after 3 attempts)"
    permanent = job().claimed(100, 30).attempt_failed("no audio", 101, RETRY, 60, permanent=True)
    assert permanent.status is JobStatus.FAILED and permanent.error == "no audio"


def test_shutdown_does_not_count_an_attempt_but_a_lost_worker_does() -> None:
    running = job().claimed(100, 30)
    assert running.interrupted(105).attempts == 0
    assert running.interrupted(105).status is JobStatus.QUEUED
    assert running.orphaned(140, RETRY, 60).attempts == 1
    assert "worker lost" in (running.orphaned(140, RETRY, 60).error or "")


def test_job_round_trips_through_json() -> None:
    result = JobResult(
        "hi there",
        "en",
        2.0,
        (ResultSegment(0.5, 1.5, "hi there", (ResultWord("hi", 0.5, 0.9, 0.9),)),),
    )
    done = job(options=JobOptions("en", "names", True)).claimed(1, 30).succeeded(result, 2, 60)
    assert Job.loads(done.dumps()) == done
    assert done.public()["result"]["segments"][0]["words"][0]["word"] == "hi"


def test_options_are_validated() -> None:
    languages = frozenset({"en", "de"})
    assert JobOptions.parse("auto", "", "true", languages) == JobOptions(None, None, True)
    for args, param in [
        (("xx", None, None), "language"),
        (("en", None, "maybe"), "word_timestamps"),
        (("en", "x" * 3000, None), "prompt"),
    ]:
        with pytest.raises(InvalidOption) as refused:
            JobOptions.parse(*args, languages)  # type: ignore[arg-type]
        assert refused.value.param == param


def test_subtitles() -> None:
    result = JobResult(
        "One. Two.", "en", 3725.0,
        (ResultSegment(0.0, 1.25, "One."), ResultSegment(3.0, 3.0, ""),
         ResultSegment(3661.5, 3725.004, "Two.")),
    )  # fmt: skip
    assert to_srt(result) == (
        "1\n00:00:00,000 --> 00:00:01,250\nOne.\n\n2\n01:01:01,500 --> 01:02:05,004\nTwo.\n"
    )
    assert to_vtt(result).startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.250\nOne.\n")


def test_decoding_stops_at_the_duration_cap(speech: dict[str, Clip]) -> None:
    path = speech["jfk_inaugural"].path
    assert len(read_audio(path, max_seconds=60)) == pytest.approx(11 * 16000, rel=0.01)
    with pytest.raises(AudioTooLong):
        read_audio(path, max_seconds=5)


def test_sqlite_claims_due_jobs_in_order_and_requeues_orphans(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path)
    for i, created in enumerate((10.0, 5.0)):
        upload = store.upload_dir / f"{i}.part"
        upload.write_bytes(b"audio")
        store.create(job(id=f"job_{i}", created_at=created), upload)
    first = store.claim(now=20, lease_s=5, retry=RETRY, ttl_s=60)
    assert first is not None and first.id == "job_1"  # oldest first
    second = store.claim(now=20, lease_s=5, retry=RETRY, ttl_s=60)
    assert second is not None and second.id == "job_0"
    assert store.claim(now=21, lease_s=5, retry=RETRY, ttl_s=60) is None
    # Both leases ran out (their worker was killed): requeued with a backoff, then due.
    assert store.claim(now=26, lease_s=5, retry=RETRY, ttl_s=60) is None
    again = store.claim(now=28.5, lease_s=5, retry=RETRY, ttl_s=60)
    assert again is not None and again.attempts == 2
    assert store.counts() == {"queued": 1, "running": 1}
    store.update(again.id, lambda j: j.succeeded(JobResult("", "en", 0.0), 30, 10))
    store.drop_audio(again.id)
    assert store.sweep(now=39) == 0 and store.get(again.id) is not None
    assert store.sweep(now=41) == 1 and store.get(again.id) is None
    store.close()
