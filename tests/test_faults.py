"""Engine faults: a failed batch costs only its own utterances (after a retry one by one),
a dead engine thread is restarted with its batch requeued while ``/readyz`` says so, and
the server process never goes down. Units with a fake engine, then a real server with the
``EARSHOT_FAULT_INJECT`` test hook."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from tests.conftest import Clip
from tests.waiting import async_poll_until

from earshot.client import Error, Final, SpeechStarted, StreamResult, stream_audio
from earshot.faults import ENV, EngineCrash, FaultInjectingEngine, FaultPlan, with_faults
from earshot.scheduler import ENGINE_ERROR, BatchScheduler, SchedulingPolicy
from earshot.server_process import ServerProcess
from earshot.transcript import Priority, Transcript, TranscriptionRequest
from earshot.wer import error_rate

CLIP = "ljspeech_LJ001-0001"


# -- units: the scheduler with a fake engine ------------------------------------------------
class FlakyEngine:
    """Answers ``text:<utterance>``; fails any batch holding a request of owner ``bad``;
    raises ``EngineCrash`` on the calls listed in ``crash_on``."""

    def __init__(self, crash_on: tuple[int, ...] = ()) -> None:
        self.calls: list[list[int]] = []
        self.crash_on = crash_on
        self.lock = threading.Lock()

    def transcribe(self, requests: list[TranscriptionRequest]) -> list[Transcript]:
        with self.lock:
            self.calls.append([r.utterance for r in requests])
            call = len(self.calls)
        time.sleep(0.01)
        if call in self.crash_on:
            raise EngineCrash(f"call {call}")
        if any(r.owner == "bad" for r in requests):
            raise RuntimeError("secret internal detail /opt/model/weights.bin")
        return [Transcript(text=f"text:{r.utterance}", language="en") for r in requests]


def final(owner: str, utterance: int) -> TranscriptionRequest:
    return TranscriptionRequest(
        audio=np.zeros(1600, np.float32), priority=Priority.FINAL, owner=owner, utterance=utterance
    )


@contextmanager
def scheduler(engine: FlakyEngine, restart_delay_s: float = 0.05) -> Iterator[BatchScheduler]:
    policy = SchedulingPolicy(max_batch=8, batch_wait_s=0.05)
    instance = BatchScheduler(engine, policy)
    instance.restart_delay_s = restart_delay_s
    instance.start(asyncio.get_running_loop())
    try:
        yield instance
    finally:
        instance.stop()


async def answers(
    instance: BatchScheduler, requests: list[TranscriptionRequest]
) -> dict[int, Transcript]:
    results: dict[int, Transcript] = {}
    done = asyncio.Event()

    def callback(request: TranscriptionRequest, transcript: Transcript) -> None:
        results[request.id] = transcript
        if len(results) == len(requests):
            done.set()

    for request in requests:
        instance.submit(request, callback)
    await asyncio.wait_for(done.wait(), 10)
    return results


@pytest.mark.asyncio
async def test_a_failed_batch_is_retried_one_by_one_so_only_the_bad_request_fails() -> None:
    engine = FlakyEngine()
    requests = [final("good", 0), final("bad", 1), final("other", 2)]
    with scheduler(engine) as instance:
        results = await answers(instance, requests)
    assert engine.calls[0] == [0, 1, 2]  # one batch, which failed
    assert [results[r.id].text for r in requests] == ["text:0", "", "text:2"]
    bad = results[requests[1].id]
    assert bad.error == ENGINE_ERROR and "secret" not in bad.error  # details stay in the log


@pytest.mark.asyncio
async def test_a_dead_engine_thread_is_restarted_and_its_batch_requeued() -> None:
    engine = FlakyEngine(crash_on=(1,))
    requests = [final("s", u) for u in range(3)]
    with scheduler(engine, restart_delay_s=0.3) as instance:
        results_task = asyncio.create_task(answers(instance, requests))
        # Readiness is false while it is down (for restart_delay_s).
        await async_poll_until(lambda: not instance.alive, interval=0.01, what="the engine to die")
        results = await results_task
        assert instance.alive and instance.restarts == 1
    assert [results[r.id].text for r in requests] == ["text:0", "text:1", "text:2"]


@pytest.mark.asyncio
async def test_a_request_that_kills_the_engine_twice_gets_an_error_not_a_crash_loop() -> None:
    engine = FlakyEngine(crash_on=(1, 2))
    request = final("s", 0)
    with scheduler(engine) as instance:
        results = await answers(instance, [request])
        later = await answers(instance, [final("s", 1)])
        assert instance.alive and instance.restarts == 2
    assert results[request.id].error == ENGINE_ERROR
    assert [t.text for t in later.values()] == ["text:1"]


def test_fault_plans_parse_and_unset_means_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = FaultPlan.parse("error_every=3, crash_at=2;5, delay_ms=10, poison_prompt=boom")
    assert plan == FaultPlan(3, "boom", frozenset({2, 5}), 0.01)
    for bad in ("nonsense=1", "crash_at", "error_every=x"):
        with pytest.raises(ValueError, match=ENV):
            FaultPlan.parse(bad)
    engine = FlakyEngine()
    monkeypatch.delenv(ENV, raising=False)
    assert with_faults(engine) is engine
    monkeypatch.setenv(ENV, "error_every=2")
    wrapped = with_faults(engine)
    assert isinstance(wrapped, FaultInjectingEngine)
    wrapped.transcribe([final("s", 0)])
    with pytest.raises(RuntimeError):
        wrapped.transcribe([final("s", 1)])


# -- a real server with injected faults -----------------------------------------------------
async def _stream(server: ServerProcess, clip: Clip, **options: object) -> StreamResult:
    return await stream_audio(
        server.ws_url, clip.audio(), speed=1.5, trailing_silence_s=1.0, language="en", **options
    )


def _one_final_per_utterance(result: StreamResult) -> None:
    started = [m.utterance for m in result.messages if isinstance(m, SpeechStarted)]
    assert started and [f.utterance for f in result.finals] == started == list(range(len(started)))
    assert result.close_code == 1000


def _server(name: str, faults: str) -> ServerProcess:
    return ServerProcess(env={ENV: faults}, log_path=Path(f"artifacts/faults-{name}-server.log"))


@pytest.mark.asyncio
async def test_a_poisoned_session_gets_errors_and_its_neighbour_is_untouched(
    speech: dict[str, Clip],
) -> None:
    clip = speech[CLIP]
    with _server("poison", "poison_prompt=boom") as server:
        poisoned, healthy = await asyncio.gather(
            _stream(server, clip, prompt="boom"), _stream(server, clip)
        )
        assert httpx.get(server.http_url + "/readyz").status_code == 200
    _one_final_per_utterance(poisoned)
    assert all(f.text == "" for f in poisoned.finals)
    errors = [m for m in poisoned.messages if isinstance(m, Error)]
    assert errors and {e.code for e in errors} == {"engine_error"}
    assert all(e.message == ENGINE_ERROR for e in errors)
    _one_final_per_utterance(healthy)
    assert error_rate([clip.text], [healthy.text]) <= 0.05
    assert not any(isinstance(m, Error) for m in healthy.messages)


@pytest.mark.asyncio
async def test_transient_batch_failures_are_absorbed_by_the_retry(speech: dict[str, Clip]) -> None:
    clip = speech[CLIP]
    with _server("transient", "error_every=3") as server:
        result = await _stream(server, clip)
    _one_final_per_utterance(result)
    assert not any(isinstance(m, Error) for m in result.messages)
    assert error_rate([clip.text], [result.text]) <= 0.05


@pytest.mark.asyncio
async def test_engine_thread_death_mid_stream_loses_no_final(speech: dict[str, Clip]) -> None:
    clip = speech[CLIP]
    with _server("crash", "crash_at=2") as server:
        statuses: list[int] = []

        async def watch_readiness() -> None:
            async with httpx.AsyncClient(base_url=server.http_url) as http:
                while True:
                    statuses.append((await http.get("/readyz")).status_code)
                    await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch_readiness())
        try:
            result = await _stream(server, clip)
        finally:
            watcher.cancel()
        assert httpx.get(server.http_url + "/readyz").status_code == 200
        log = Path("artifacts/faults-crash-server.log")
    _one_final_per_utterance(result)
    assert error_rate([clip.text], [result.text]) <= 0.05
    assert 503 in statuses and statuses[-1] == 200
    assert "engine thread died" in log.read_text()
    assert isinstance(result.finals[-1], Final)
