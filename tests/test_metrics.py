"""Metrics and health: scrape ``/metrics`` around real streaming sessions on a real server,
and readiness flipping while draining or falling behind."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from tests.conftest import Clip
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from earshot.app import create_app
from earshot.client import Final, Partial, connect, send_paced, stream_audio
from earshot.config import ServerConfig
from earshot.evaluation.synthetic import no_speech_cases
from earshot.jobs.config import JobsConfig
from earshot.metrics import Metrics
from earshot.runtime import Runtime
from earshot.server_process import ServerProcess
from earshot.transcript import Priority, Transcript, TranscriptionRequest

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: ServerProcess) -> Samples:
    with urllib.request.urlopen(server.http_url + "/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def wait_for(
    server: ServerProcess, check: Callable[[Samples], bool], timeout: float = 10.0
) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(server)
        if check(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


@pytest.mark.asyncio
async def test_counters_move_as_a_real_streaming_session_runs(
    earshot_server: ServerProcess, speech: dict[str, Clip]
) -> None:
    clip = speech["ljspeech_LJ001-0001"]
    audio = clip.audio()
    before = scrape(earshot_server)
    session = asyncio.create_task(
        stream_audio(earshot_server.ws_url, audio, speed=3.0, trailing_silence_s=1.0, language="en")
    )
    during = await asyncio.to_thread(
        wait_for, earshot_server, lambda s: value(s, "earshot_sessions_active") >= 1
    )
    result = await session
    after = await asyncio.to_thread(
        wait_for, earshot_server, lambda s: value(s, "earshot_sessions_active") == 0
    )

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    finals = result.finals
    partials = [m for m in result.messages if isinstance(m, Partial)]
    assert finals and all(isinstance(f, Final) for f in finals)
    assert value(during, "earshot_sessions_active") >= 1
    assert value(after, "earshot_sessions_active") == 0
    assert delta("earshot_sessions_total") == 1
    assert delta("earshot_audio_received_seconds_total", source="stream") == pytest.approx(
        len(audio) / 16000 + 1.0, abs=0.05
    )
    transcribed = delta("earshot_audio_transcribed_seconds_total", source="stream")
    assert 0.8 * clip.duration_s < transcribed <= len(audio) / 16000 + 1.0
    assert delta("earshot_utterances_total", language="en") == sum(1 for f in finals if f.text)
    beams = delta("earshot_finals_by_beam_total", beam="5") + delta(
        "earshot_finals_by_beam_total", beam="1"
    )
    assert beams == len(finals)  # each delivered final counted at the width it got
    assert delta("earshot_final_latency_seconds_count") == len(finals)
    assert 0 < delta("earshot_final_latency_seconds_sum") < 10 * len(finals)
    assert delta("earshot_partial_latency_seconds_count") == len(partials)
    # Every message comes from its own engine request. Speculative finals (requested in a
    # pause, see session.py) are final-priority work that becomes the final, or a partial
    # when speech resumes, so only the total is exact.
    assert delta("earshot_engine_requests_total", priority="final") >= len(finals)
    requests = delta("earshot_engine_requests_total", priority="final") + delta(
        "earshot_engine_requests_total", priority="partial"
    )
    assert requests >= len(finals) + len(partials)
    assert delta("earshot_engine_batch_size_sum") == requests
    assert 1 <= delta("earshot_engine_batch_size_count") <= requests
    assert delta("earshot_engine_busy_seconds_total") > 0
    assert 0 < value(after, "earshot_engine_busy_ratio") <= 1
    for priority in ("final", "partial", "file"):
        assert value(after, "earshot_engine_queue_depth", priority=priority) == 0
    assert value(after, "earshot_realtime_lag_seconds") == 0
    assert total(after, "earshot_errors_total") == total(before, "earshot_errors_total")
    build = [k for k in after if k[0] == "earshot_build_info"]
    assert build and dict(build[0][1])["model"] == "base"


@pytest.mark.asyncio
async def test_silence_and_noise_streams_give_no_text_and_consistent_counters(
    earshot_server: ServerProcess,
) -> None:
    cases = [c for c in no_speech_cases(3.0) if c.kind in ("silence", "noise")]
    before = scrape(earshot_server)
    results = await asyncio.gather(
        *(
            stream_audio(earshot_server.ws_url, c.audio, speed=0, trailing_silence_s=1.0)
            for c in cases
        )
    )
    after = await asyncio.to_thread(
        wait_for, earshot_server, lambda s: value(s, "earshot_sessions_active") == 0
    )
    for case, result in zip(cases, results):
        assert result.text == "", case.name
        assert not any(isinstance(m, Partial) and m.text for m in result.messages), case.name
    finals = sum(len(r.finals) for r in results)

    def delta(name: str) -> float:
        return total(after, name) - total(before, name)

    assert delta("earshot_sessions_total") == len(cases)
    assert delta("earshot_audio_received_seconds_total") == pytest.approx(
        sum(r.audio_s for r in results), abs=0.05
    )
    assert delta("earshot_utterances_total") == 0
    # Every final the VAD let through was blanked by the hallucination filter, counted by cause.
    assert delta("earshot_hallucinations_suppressed_total") <= finals
    assert delta("earshot_final_latency_seconds_count") == finals


@pytest.mark.asyncio
async def test_a_refused_handshake_is_counted_by_error_code(
    earshot_server: ServerProcess,
) -> None:
    before = scrape(earshot_server)
    with pytest.raises(InvalidStatus):
        async with ws_connect(earshot_server.ws_url + "?language=xx"):
            pass
    after = scrape(earshot_server)
    code = {"code": "invalid_parameter"}
    assert (
        value(after, "earshot_errors_total", **code)
        == value(before, "earshot_errors_total", **code) + 1
    )


def test_health_is_plain_liveness(earshot_server: ServerProcess) -> None:
    with urllib.request.urlopen(earshot_server.http_url + "/healthz", timeout=5) as response:
        assert response.status == 200


@pytest.mark.asyncio
async def test_readiness_flips_when_sigterm_starts_a_drain(
    speech: dict[str, Clip], tmp_path: Path
) -> None:
    audio = speech["ljspeech_LJ001-0001"].audio()[: 16000 * 3]
    with ServerProcess("--data-dir", str(tmp_path)) as server:
        assert readyz(server) == (200, False)
        async with connect(server.ws_url, language="en") as stream:
            await send_paced(stream, audio, speed=0)  # mid-utterance: the drain has work
            server.signal(signal.SIGTERM)
            seen = await asyncio.to_thread(poll_readyz_until_not_ready, server)
            assert seen == (503, True)
            async for _ in stream:
                pass
            assert stream.close_code == 1001


def readyz(server: ServerProcess) -> tuple[int, bool]:
    try:
        with urllib.request.urlopen(server.http_url + "/readyz", timeout=5) as response:
            return response.status, json.loads(response.read())["draining"]
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())["draining"]


def poll_readyz_until_not_ready(server: ServerProcess, timeout: float = 10) -> tuple[int, bool]:
    deadline = time.monotonic() + timeout
    status = readyz(server)
    while status[0] == 200 and time.monotonic() < deadline:
        time.sleep(0.01)
        status = readyz(server)
    return status


# -- readiness on an in-process app: draining and falling behind ----------------------------
@pytest.fixture(scope="module")
def app_client(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestClient, Runtime]]:
    jobs = JobsConfig(data_dir=tmp_path_factory.mktemp("jobs"))
    runtime = Runtime.load(ServerConfig(jobs=jobs))
    with TestClient(create_app(runtime.config, runtime)) as client:
        yield client, runtime


def test_readiness_flips_while_draining_and_new_sessions_are_refused(
    app_client: tuple[TestClient, Runtime],
) -> None:
    client, runtime = app_client
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() | {"ready": True, "draining": False, "keeping_up": True} == ready.json()
    client.portal.call(runtime.drain)
    try:
        draining = client.get("/readyz")
        assert draining.status_code == 503
        assert draining.json()["ready"] is False and draining.json()["draining"] is True
        assert client.get("/healthz").status_code == 200  # alive, just not taking sessions
        with client.websocket_connect("/v1/listen") as ws:
            assert ws.receive_json()["code"] == "overloaded"
        refused = runtime.metrics.registry.get_sample_value(
            "earshot_sessions_refused_total", {"reason": "draining"}
        )
        assert refused == 1
    finally:
        runtime.draining = False
    assert client.get("/readyz").status_code == 200


def test_readiness_fails_while_finals_wait_longer_than_admission_allows(
    app_client: tuple[TestClient, Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, runtime = app_client
    limit = runtime.config.admission.max_final_delay_s
    monkeypatch.setattr(runtime.scheduler, "oldest_final_wait", lambda: limit + 1.0)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["keeping_up"] is False
    assert b"earshot_engine_oldest_final_wait_seconds" in client.get("/metrics").content


# -- the observer's arithmetic, on a controlled clock ---------------------------------------
def test_latency_and_realtime_lag_are_measured_from_request_to_message() -> None:
    now = [100.0]
    metrics = Metrics(clock=lambda: now[0])
    observer = metrics.session("s1")

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    audio = np.zeros(16000, np.float32)
    partial = TranscriptionRequest(audio=audio, priority=Priority.PARTIAL, owner="s1")
    final = TranscriptionRequest(audio=audio, priority=Priority.FINAL, owner="s1")
    observer.requested(partial)
    now[0] = 100.3
    observer.answered(partial, Transcript(text="hello", language="en"))
    now[0] = 100.4
    observer.sent({"type": "partial", "utterance": 0, "text": "hello"})
    observer.requested(final)
    now[0] = 102.4
    assert sample("earshot_realtime_lag_seconds") == pytest.approx(2.0)
    observer.answered(final, Transcript(text="", language="en", suppressed="no_speech"))
    now[0] = 102.5
    observer.sent({"type": "final", "utterance": 0, "start": 0.0, "end": 1.0, "text": ""})
    assert sample("earshot_realtime_lag_seconds") == 0
    assert sample("earshot_partial_latency_seconds_sum") == pytest.approx(0.4)
    assert sample("earshot_final_latency_seconds_sum") == pytest.approx(2.1)
    assert sample("earshot_hallucinations_suppressed_total", reason="no_speech") == 1
    assert sample("earshot_audio_transcribed_seconds_total", source="stream") == 1.0
    metrics.set_jobs_source(lambda: {"queued": 2, "running": 1})
    body, _ = metrics.exposition()
    assert b'earshot_jobs{state="queued"} 2.0' in body
