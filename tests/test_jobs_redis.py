"""File transcription jobs, distributed backend: a real ``redis-server``, real
``earshot worker`` processes (Celery) and API replicas that share nothing but Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from conftest import ARTIFACTS, Clip
from earshot.jobs_client import JobError, JobsClient
from earshot.server_process import ServerProcess
from earshot.wer import error_rate
from jobs_helpers import RedisServer, WorkerProcess, post_file, statuses, wait_until

ENGLISH = ["jfk_inaugural", "ljspeech_LJ001-0001", "fleurs_en-002"]
GERMAN_LONG = "librivox_simplicissimus-de"  # 68 s


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


def api(redis_url: str, data_dir: Path, name: str) -> ServerProcess:
    ARTIFACTS.mkdir(exist_ok=True)
    return ServerProcess(
        "--jobs", redis_url, "--data-dir", str(data_dir), "--max-upload-mb", "6",
        log_path=ARTIFACTS / f"jobs-redis-{name}.log",
    )  # fmt: skip


def worker(
    redis_url: str, name: str, *args: str, env: dict[str, str] | None = None
) -> WorkerProcess:
    ARTIFACTS.mkdir(exist_ok=True)
    return WorkerProcess(
        redis_url, *args, env=env, log_path=ARTIFACTS / f"jobs-redis-worker-{name}.log"
    )


def test_jobs_run_on_workers_and_any_replica_answers(
    redis_server: RedisServer, tmp_path: Path, speech: dict[str, Clip]
) -> None:
    url = f"{redis_server.url}/0"
    replica_a = api(url, tmp_path / "a", "a").start()
    replica_b = api(url, tmp_path / "b", "b").start()
    try:
        with JobsClient(replica_a.http_url) as a, JobsClient(replica_b.http_url) as b:
            # Accepted with no worker running: the jobs wait in Redis.
            ids = {name: a.submit(speech[name].path) for name in ENGLISH}
            ids[GERMAN_LONG] = b.submit(speech[GERMAN_LONG].path, word_timestamps=True)
            assert {b.status(i)["status"] for i in ids.values()} == {"queued"}
            seen: list[dict] = []
            the_worker = worker(url, "main")
            try:
                jobs = {n: wait_until(b, i, timeout=180, poll=0.2) for n, i in ids.items()}
                long_job = wait_until(a, ids[GERMAN_LONG], timeout=1, seen=seen)
            finally:
                the_worker.stop()
            for job in jobs.values():
                assert job["status"] == "done", job
            wer = error_rate(
                [speech[n].text for n in ENGLISH], [jobs[n]["result"]["text"] for n in ENGLISH]
            )
            print(f"redis jobs: English WER {wer:.3f}")
            assert wer <= 0.15
            german = long_job["result"]
            assert german["language"] == "de"
            wer_de = error_rate([speech[GERMAN_LONG].text], [german["text"]], "de")
            print(f"redis jobs: German long-form WER {wer_de:.3f}")
            assert wer_de <= 0.35
            assert german["segments"][0]["words"]
            assert a.result(ids[ENGLISH[0]], "srt") == b.result(ids[ENGLISH[0]], "srt")

            # Refusals are the API's, whichever backend.
            with pytest.raises(JobError) as missing:
                a.status("job_nope")
            assert missing.value.status == 404
            assert post_file(replica_a.http_url, "/v1/jobs", b"not audio" * 500).status_code == 415
            # Deleting an ended job removes its record and audio from Redis.
            assert b.cancel(ids[ENGLISH[0]]) == "deleted"
            with pytest.raises(JobError):
                a.status(ids[ENGLISH[0]])
    finally:
        replica_a.stop()
        replica_b.stop()
    leftover = redis.Redis.from_url(url).keys("earshot:audio:*")
    assert leftover == []


def test_worker_retries_failures_then_fails_and_results_expire(
    redis_server: RedisServer, tmp_path: Path, speech: dict[str, Clip]
) -> None:
    url = f"{redis_server.url}/1"
    # Engine test hook (faults.py): calls 1 and 2 crash the engine thread, so the request
    # in both fails; a request prompted POISON always fails.
    env = {"EARSHOT_FAULT_INJECT": "crash_at=1;2,poison_prompt=POISON"}
    args = ("--job-attempts", "2", "--job-retry-backoff", "0.3", "--job-ttl", "3")
    failing = worker(url, "retry", *args, env=env)
    try:
        with api(url, tmp_path, "retry") as server, JobsClient(server.http_url) as client:
            seen: list[dict] = []
            retried = client.submit(speech[ENGLISH[1]].path)
            done = wait_until(client, retried, timeout=90, seen=seen)
            assert done["status"] == "done" and done["attempts"] == 2
            assert "queued" in statuses(seen[1:])  # back in the queue between attempts
            assert error_rate([speech[ENGLISH[1]].text], [done["result"]["text"]]) <= 0.15

            doomed = client.submit(speech[ENGLISH[0]].path, prompt="POISON")
            failed = wait_until(client, doomed, timeout=60)
            assert failed["status"] == "failed" and failed["attempts"] == 2
            assert "engine failed" in failed["error"]

            # Both ended: Redis expires them after the TTL (3 s), audio already gone.
            store = redis.Redis.from_url(url)
            assert store.keys("earshot:audio:*") == []
            for job_id in (doomed, retried):
                with pytest.raises(JobError) as gone:
                    wait_until(client, job_id, lambda j: False, timeout=10, poll=0.3)
                assert gone.value.status == 404
    finally:
        failing.stop()


def test_job_survives_sigkill_of_its_worker(
    redis_server: RedisServer, tmp_path: Path, speech: dict[str, Clip]
) -> None:
    url = f"{redis_server.url}/2"
    args = ("--job-lease", "2", "--job-redelivery", "4", "--job-retry-backoff", "0.2")
    # Slowed down (engine test hook) so that the kill lands mid-job: two replicas
    # would otherwise finish this clip between two polls.
    slow = {"EARSHOT_FAULT_INJECT": "delay_ms=500"}
    first = worker(url, "sigkill-1", *args, "--engine-workers", "1", env=slow)
    try:
        with api(url, tmp_path, "sigkill") as server, JobsClient(server.http_url) as client:
            job_id = client.submit(speech[GERMAN_LONG].path)
            wait_until(client, job_id, lambda j: j.get("progress", 0) >= 0.2, timeout=90)
            first.kill()
            assert client.status(job_id)["status"] == "running"  # left behind
            second = worker(url, "sigkill-2", *args)
            try:
                job = wait_until(client, job_id, timeout=180, poll=0.3)
            finally:
                second.stop()
    finally:
        first.stop()
    assert job["status"] == "done", job
    assert job["attempts"] == 2
    wer = error_rate([speech[GERMAN_LONG].text], [job["result"]["text"]], "de")
    print(f"redis job after worker SIGKILL: German long-form WER {wer:.3f}")
    assert wer <= 0.35
