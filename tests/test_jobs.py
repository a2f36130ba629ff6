"""File transcription jobs, embedded backend (SQLite + in-process worker), end to end:
real speech through a real ``earshot serve``, real HTTP, real SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import ARTIFACTS, Clip
from earshot.jobs_client import JobError, JobsClient
from earshot.loadtest.scenario import Scenario, build_plan, load_clips, session_rng
from earshot.loadtest.scoring import score_session
from earshot.loadtest.streams import run_session
from earshot.server_process import ServerProcess
from earshot.wer import error_rate
from jobs_helpers import post_file, statuses, wait_until
from waiting import poll_until

ENGLISH = ["jfk_inaugural", "ljspeech_LJ001-0001", "librispeech_2412-153948-0000", "fleurs_en-002"]
GERMAN = "fleurs_de-002"
LONG_EN = "ljspeech_LJ001-0013-0032"  # 148 s
LONG_DE = "librivox_simplicissimus-de"  # 68 s
SLO_P95_FINAL_S = 1.5
"""The live-latency SLO (``earshot loadtest --slo`` default): p95 final latency."""


def serve(
    data_dir: Path, name: str, *args: str, env: dict[str, str] | None = None
) -> ServerProcess:
    ARTIFACTS.mkdir(exist_ok=True)
    return ServerProcess(
        "--data-dir", str(data_dir), *args, env=env, log_path=ARTIFACTS / f"jobs-{name}.log"
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("jobs-data")
    with serve(data, "main", "--max-upload-mb", "6", "--job-retry-backoff", "0.2") as server:
        yield server


@pytest.fixture
def client(server: ServerProcess) -> Iterator[JobsClient]:
    with JobsClient(server.http_url) as client:
        yield client


def test_clips_go_queued_running_done_within_wer(
    server: ServerProcess, client: JobsClient, speech: dict[str, Clip]
) -> None:
    ids = {name: client.submit(speech[name].path) for name in ENGLISH}
    ids[GERMAN] = client.submit(speech[GERMAN].path, word_timestamps=True)
    # One worker: the later jobs are still queued now.
    seen: dict[str, list[dict]] = {name: [client.status(i)] for name, i in ids.items()}
    jobs = {name: wait_until(client, i, seen=seen[name]) for name, i in ids.items()}
    for name, job in jobs.items():
        assert job["status"] == "done", job
        assert statuses(seen[name]) in (
            ["queued", "running", "done"], ["queued", "done"], ["running", "done"], ["done"]
        )  # fmt: skip
    assert statuses(seen[GERMAN])[0] == "queued"
    assert any("running" in statuses(s) for s in seen.values())

    english = [jobs[n]["result"]["text"] for n in ENGLISH]
    wer = error_rate([speech[n].text for n in ENGLISH], english)
    print(f"embedded jobs: English WER {wer:.3f}")
    assert wer <= 0.15

    german = jobs[GERMAN]["result"]
    assert german["language"] == "de"
    assert error_rate([speech[GERMAN].text], [german["text"]], "de") <= 0.35
    words = [w for s in german["segments"] for w in s["words"]]
    assert len(words) >= len(german["text"].split()) * 0.8
    assert all(0 <= w["start"] <= w["end"] <= german["duration"] + 0.1 for w in words)
    assert "words" not in jobs[ENGLISH[0]]["result"]["segments"][0]

    jfk = ids[ENGLISH[0]]
    assert client.result(jfk)["text"] == jobs[ENGLISH[0]]["result"]["text"]
    assert client.result(jfk, "text").strip() == jobs[ENGLISH[0]]["result"]["text"]
    srt = client.result(jfk, "srt")
    assert srt.startswith("1\n00:00:00,") and " --> " in srt
    vtt = client.result(jfk, "vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.") and "country" in vtt
    assert 'earshot_jobs{state="done"} 5.0' in httpx.get(server.http_url + "/metrics").text


def test_refusals(server: ServerProcess, speech: dict[str, Clip]) -> None:
    url = server.http_url
    wav = speech[ENGLISH[0]].path.read_bytes()
    for method, path in [
        ("GET", "/v1/jobs/job_nope"), ("GET", "/v1/jobs/job_nope/result"),
        ("DELETE", "/v1/jobs/job_nope"),
    ]:  # fmt: skip
        assert httpx.request(method, url + path).status_code == 404
    too_big = post_file(url, "/v1/jobs", os.urandom(6 * 1024 * 1024 + 100_000))
    assert too_big.status_code == 413, too_big.text
    assert too_big.json()["error"] == "file_too_large"
    for junk in (os.urandom(20_000), b"hello, this is text, not audio\n" * 100):
        refused = post_file(url, "/v1/jobs", junk)
        assert refused.status_code == 415, refused.text
    for fields, parameter in [
        ({"language": "xx"}, "language"),
        ({"word_timestamps": "maybe"}, "word_timestamps"),
        ({"callback_url": "http://example.invalid"}, "callback_url"),
    ]:
        bad = post_file(url, "/v1/jobs", wav, **fields)
        assert bad.status_code == 400 and bad.json()["parameter"] == parameter, bad.text
    no_file = httpx.post(url + "/v1/jobs", data={"language": "en"}, files={"x": ("a", b"")})
    assert no_file.status_code == 400
    job = post_file(url, "/v1/jobs", wav).json()["job_id"]
    assert httpx.get(f"{url}/v1/jobs/{job}/result", params={"format": "docx"}).status_code == 400


def test_cancel_running_job_then_delete(client: JobsClient, speech: dict[str, Clip]) -> None:
    job_id = client.submit(speech[LONG_DE].path)
    wait_until(client, job_id, lambda j: j["status"] == "running", timeout=60)
    assert client.cancel(job_id) == "cancelled"
    assert client.status(job_id)["status"] == "cancelled"
    # The one worker notices at its next renewal and moves on to the next job; the
    # cancelled job stays cancelled (the worker does not write its result over it).
    follower = client.submit(speech[ENGLISH[0]].path)
    assert wait_until(client, follower, timeout=60)["status"] == "done"
    assert client.status(job_id)["status"] == "cancelled"
    assert client.cancel(job_id) == "deleted"
    with pytest.raises(JobError) as refused:
        client.status(job_id)
    assert refused.value.status == 404


def live_finals(server: ServerProcess, speech: dict[str, Clip]) -> tuple[list[float], float]:
    """Stream ~25 s of real speech in real time: its final latencies (sorted) and WER."""
    clips = load_clips(speech[LONG_EN].path.parent / "manifest.jsonl", language="en")
    scenario = Scenario("with-job", session_s=25.0, lead_s=(0.5, 1.0))
    plan = build_plan(clips, scenario, session_rng(3, 0, 0))
    log = asyncio.run(run_session(server.ws_url, plan))
    assert not log.errors
    score = score_session(log)
    assert len(score.final_latencies) == len(plan.utterances) >= 3
    return sorted(score.final_latencies), error_rate([score.reference], [score.hypothesis])


def p95(values: list[float]) -> float:
    return values[min(len(values) - 1, int(0.95 * len(values)))]


def test_live_stream_keeps_slo_while_long_job_runs(
    server: ServerProcess, client: JobsClient, speech: dict[str, Clip]
) -> None:
    job_id = client.submit(speech[LONG_EN].path)
    wait_until(client, job_id, lambda j: j["status"] == "running", timeout=60)
    before = client.status(job_id)
    latencies, live_wer = live_finals(server, speech)
    during = client.status(job_id)
    print(f"live finals while a job runs: {[round(x, 2) for x in latencies]} s")
    assert live_wer <= 0.2
    # The job really ran alongside: it advanced during the stream.
    assert during["status"] == "done" or during["progress"] > before.get("progress", 0)

    progress: list[dict] = []
    job = wait_until(client, job_id, timeout=180, poll=0.3, seen=progress)
    assert job["status"] == "done"
    shares = [j["progress"] for j in progress if j["status"] == "running"]
    assert shares == sorted(shares)
    wer = error_rate([speech[LONG_EN].text], [job["result"]["text"]])
    print(f"long-form job ({speech[LONG_EN].duration_s:.0f} s): WER {wer:.3f}")
    assert wer <= 0.15
    assert job["result"]["duration"] == pytest.approx(speech[LONG_EN].duration_s, abs=0.1)

    if p95(latencies) > SLO_P95_FINAL_S:
        # Over the SLO: the job's fault only if the machine meets it without the job. On
        # a shared 2-core machine other processes alone can push finals past 1.5 s.
        baseline, _ = live_finals(server, speech)
        print(f"live finals without a job: {[round(x, 2) for x in baseline]} s")
        assert p95(latencies) <= max(SLO_P95_FINAL_S, p95(baseline) + 0.5)


def test_cli_submit_status_result(server: ServerProcess, speech: dict[str, Clip]) -> None:
    def earshot(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "earshot", *args, "--url", server.http_url],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        return done.stdout

    job_id = earshot("submit", str(speech[ENGLISH[0]].path)).strip()
    assert job_id.startswith("job_")
    with JobsClient(server.http_url) as client:
        wait_until(client, job_id)
    assert '"status": "done"' in earshot("status", job_id)
    assert "country" in earshot("result", job_id)
    assert earshot("result", job_id, "--format", "srt").startswith("1\n")
    waited = earshot("submit", str(speech[ENGLISH[1]].path), "--wait", "--format", "vtt")
    assert waited.startswith("WEBVTT")


def test_job_survives_sigkill_of_the_server(tmp_path: Path, speech: dict[str, Clip]) -> None:
    args = ("--job-lease", "2", "--job-retry-backoff", "0.2")
    first = serve(tmp_path, "sigkill-1", *args).start()
    try:
        with JobsClient(first.http_url) as client:
            job_id = client.submit(speech[LONG_DE].path)
            wait_until(client, job_id, lambda j: j.get("progress", 0) >= 0.2, timeout=60)
        first.signal(signal.SIGKILL)
        first.process.wait(10)  # type: ignore[union-attr]
    finally:
        first.stop()
    row = (
        sqlite3.connect(tmp_path / "jobs.sqlite3")
        .execute("SELECT status FROM jobs WHERE id = ?", (job_id,))
        .fetchone()
    )
    assert row == ("running",)  # what the killed server left behind
    with serve(tmp_path, "sigkill-2", *args) as second, JobsClient(second.http_url) as client:
        job = wait_until(client, job_id, timeout=180, poll=0.3)
    assert job["status"] == "done", job
    assert job["attempts"] == 2
    assert job["result"]["language"] == "de"
    wer = error_rate([speech[LONG_DE].text], [job["result"]["text"]], "de")
    print(f"job after SIGKILL + restart: German long-form WER {wer:.3f}")
    assert wer <= 0.35
    assert not any((tmp_path / "audio").iterdir())  # audio dropped once done


FAULTS = {"EARSHOT_FAULT_INJECT": "crash_at=1;2,poison_prompt=POISON"}
"""The engine test hook (``faults.py``): engine calls 1 and 2 kill the engine thread, so
the scheduler fails the request that was in both; a request prompted POISON always
fails."""


def test_engine_failures_are_retried_then_fail_with_reason(
    tmp_path: Path, speech: dict[str, Clip]
) -> None:
    args = ("--job-attempts", "2", "--job-retry-backoff", "0.3")
    with (
        serve(tmp_path, "retry", *args, env=FAULTS) as server,
        JobsClient(server.http_url) as client,
    ):
        seen: list[dict] = []
        retried = client.submit(speech[ENGLISH[1]].path)
        done = wait_until(client, retried, timeout=60, seen=seen)
        assert done["status"] == "done" and done["attempts"] == 2
        assert any(j["status"] == "queued" and "engine failed" in j.get("error", "") for j in seen)
        assert error_rate([speech[ENGLISH[1]].text], [done["result"]["text"]]) <= 0.15

        doomed = client.submit(speech[ENGLISH[0]].path, prompt="POISON")
        failed = wait_until(client, doomed, timeout=60)
        assert failed["status"] == "failed"
        assert failed["attempts"] == 2
        assert "engine failed" in failed["error"] and "after 2 attempts" in failed["error"]
        with pytest.raises(JobError) as not_done:
            client.result(doomed)
        assert not_done.value.status == 409


def test_finished_jobs_expire_with_their_files(tmp_path: Path, speech: dict[str, Clip]) -> None:
    with serve(tmp_path, "ttl", "--job-ttl", "1") as server, JobsClient(server.http_url) as client:
        job_id = client.submit(speech[ENGLISH[0]].path)
        assert (tmp_path / "audio" / job_id).is_file()  # accepted = on disk
        assert wait_until(client, job_id, timeout=60, poll=0.05)["status"] == "done"
        assert not (tmp_path / "audio" / job_id).exists()

        def gone() -> bool:
            try:
                client.status(job_id)
            except JobError as refused:
                assert refused.status == 404
                return True
            return False

        poll_until(gone, timeout=10, interval=0.2, what="the job to expire (TTL 1 s)")
    rows = sqlite3.connect(tmp_path / "jobs.sqlite3").execute("SELECT COUNT(*) FROM jobs")
    assert rows.fetchone() == (0,)
