"""Ordering rules of the batching loop, with a fake engine (the real one is tested end to end)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from earshot.scheduler import BatchScheduler, Pending, Queues, SchedulingPolicy, select_batch
from earshot.transcript import Priority, Transcript, TranscriptionRequest


def request(priority: Priority, owner: str = "s", utterance: int = 0) -> TranscriptionRequest:
    return TranscriptionRequest(
        audio=np.zeros(1600, np.float32), priority=priority, owner=owner, utterance=utterance
    )


def pending(priority: Priority, enqueued: float = 0.0, **kw: object) -> Pending:
    return Pending(request(priority, **kw), lambda r, t: None, enqueued)  # type: ignore[arg-type]


def queues(*items: Pending) -> Queues:
    q = Queues()
    for p in items:
        if p.request.priority is Priority.FINAL:
            q.finals.append(p)
        elif p.request.priority is Priority.PARTIAL:
            q.partials[(p.request.owner, p.request.utterance)] = p
        else:
            q.files.append(p)
    return q


CPU = SchedulingPolicy(max_batch=4, partials_with_finals=False, max_partials=1)
GPU = SchedulingPolicy(max_batch=4, partials_with_finals=True)


def test_finals_come_first_and_in_arrival_order() -> None:
    f1, f2 = pending(Priority.FINAL, owner="a"), pending(Priority.FINAL, owner="b")
    q = queues(pending(Priority.PARTIAL, owner="c"), f1, pending(Priority.FILE), f2)
    batch, _ = select_batch(q, CPU, now=0.1)
    assert batch == [f1, f2]


def test_gpu_policy_fills_final_batches_with_partials() -> None:
    f = pending(Priority.FINAL)
    p = pending(Priority.PARTIAL, owner="x")
    batch, _ = select_batch(queues(f, p), GPU, now=0.1)
    assert batch == [f, p]


def test_partials_run_when_no_final_waits() -> None:
    p1, p2 = pending(Priority.PARTIAL, owner="a"), pending(Priority.PARTIAL, owner="b")
    batch, _ = select_batch(queues(p1, p2), GPU, now=0.1)
    assert batch == [p1, p2]


def test_cpu_policy_runs_one_partial_at_a_time() -> None:
    p1, p2 = pending(Priority.PARTIAL, owner="a"), pending(Priority.PARTIAL, owner="b")
    q = queues(p1, p2)
    batch, _ = select_batch(q, CPU, now=0.1)
    assert batch == [p1] and list(q.partials.values()) == [p2]


def test_the_shortest_partial_goes_first() -> None:
    eight_seconds = np.zeros(16000 * 8, np.float32)  # well into a long utterance
    long = Pending(
        TranscriptionRequest(audio=eight_seconds, priority=Priority.PARTIAL, owner="a"),
        lambda r, t: None,
        0.0,
    )
    first = pending(Priority.PARTIAL, owner="b")  # 0.1 s: a new utterance's first words
    q = queues(long, first)
    assert select_batch(q, CPU, now=0.1)[0] == [first]
    assert select_batch(q, CPU, now=0.1)[0] == [long]


def test_batch_size_is_bounded() -> None:
    finals = [pending(Priority.FINAL, owner=str(i)) for i in range(6)]
    q = queues(*finals)
    batch, _ = select_batch(q, CPU, now=0.1)
    assert batch == finals[:4] and list(q.finals) == finals[4:]


def test_stale_partials_are_dropped() -> None:
    old = pending(Priority.PARTIAL, enqueued=0.0, owner="a")
    fresh = pending(Priority.PARTIAL, enqueued=2.5, owner="b")
    batch, dropped = select_batch(queues(old, fresh), CPU, now=3.0)
    assert batch == [fresh] and dropped == 1


def test_files_wait_behind_live_work_but_never_starve() -> None:
    file = pending(Priority.FILE, enqueued=0.0)
    f = pending(Priority.FINAL, enqueued=0.0)
    batch, _ = select_batch(queues(f, file), CPU, now=1.0)
    assert batch == [f]
    q = queues(pending(Priority.FINAL, enqueued=9.0), file)
    batch, _ = select_batch(q, CPU, now=10.0)
    assert file in batch  # waited longer than file_max_wait_s


class RecordingEngine:
    def __init__(self, fail: bool = False, delay: float = 0.0) -> None:
        self.batches: list[list[TranscriptionRequest]] = []
        self.fail = fail
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()

    def transcribe(self, requests: list[TranscriptionRequest]) -> list[Transcript]:
        self.gate.wait(5)
        self.batches.append(requests)
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("injected")
        return [Transcript(text=f"t{r.utterance}", language="en") for r in requests]


async def run_scheduler(
    engine: RecordingEngine, submit: list[TranscriptionRequest]
) -> dict[int, Transcript]:
    scheduler = BatchScheduler(engine, CPU)
    scheduler.start(asyncio.get_running_loop())
    results: dict[int, Transcript] = {}
    done = asyncio.Event()

    def callback(req: TranscriptionRequest, transcript: Transcript) -> None:
        results[req.id] = transcript
        if len(results) == expected:
            done.set()

    engine.gate.clear()  # hold the engine so everything queues up first
    for r in submit:
        scheduler.submit(r, callback)
    expected = len({(r.owner, r.utterance, r.priority) for r in submit})
    engine.gate.set()
    await asyncio.wait_for(done.wait(), 5)
    scheduler.stop()
    return results


@pytest.mark.asyncio
async def test_a_newer_partial_replaces_its_queued_older_one() -> None:
    engine = RecordingEngine()
    older, newer = request(Priority.PARTIAL), request(Priority.PARTIAL)
    results = await run_scheduler(engine, [older, newer])
    assert newer.id in results and older.id not in results


@pytest.mark.asyncio
async def test_results_reach_the_loop_through_callbacks() -> None:
    engine = RecordingEngine()
    finals = [request(Priority.FINAL, owner=str(i), utterance=i) for i in range(3)]
    results = await run_scheduler(engine, finals)
    assert [results[f.id].text for f in finals] == ["t0", "t1", "t2"]


@pytest.mark.asyncio
async def test_an_engine_exception_fails_only_that_batch() -> None:
    engine = RecordingEngine(fail=True)
    final = request(Priority.FINAL)
    results = await run_scheduler(engine, [final])
    assert results[final.id].error and results[final.id].text == ""


@pytest.mark.asyncio
async def test_busy_ratio_counts_engine_time() -> None:
    engine = RecordingEngine(delay=0.2)
    scheduler = BatchScheduler(engine, CPU)
    scheduler.start(asyncio.get_running_loop())
    done = asyncio.Event()
    scheduler.submit(request(Priority.FINAL), lambda r, t: done.set())
    await asyncio.wait_for(done.wait(), 5)
    assert 0.15 / 10 <= scheduler.busy_ratio() <= 0.5 / 10
    assert scheduler.busy_ratio(finals_only=True) == pytest.approx(scheduler.busy_ratio())
    scheduler.stop()
    assert not scheduler.alive


def test_cancel_drops_a_queued_final_only() -> None:
    scheduler = BatchScheduler(RecordingEngine(), CPU)
    wanted, moot = request(Priority.FINAL, owner="a"), request(Priority.FINAL, owner="b")
    scheduler.submit(wanted, lambda r, t: None)
    scheduler.submit(moot, lambda r, t: None)
    assert scheduler.cancel(moot) is True
    assert scheduler.cancel(moot) is False
    assert scheduler.queue_depths()["final"] == 1


def test_partials_yield_the_engine_once_they_had_their_share() -> None:
    policy = SchedulingPolicy(max_batch=4, max_partials=1, max_partial_share=0.5)
    scheduler = BatchScheduler(RecordingEngine(), policy)
    scheduler.submit(request(Priority.PARTIAL), lambda r, t: None)
    now = 100.0
    record = scheduler.load.record
    record(now - 0.5, now, finals_share=0.0, partials_only=True)  # 25 % of the last 2 s
    assert not scheduler._partials_throttled(now)
    record(now - 1.2, now - 0.5, finals_share=0.0, partials_only=True)  # now 60 %
    assert scheduler._partials_throttled(now)
    scheduler.submit(request(Priority.FINAL, owner="f"), lambda r, t: None)
    assert not scheduler._partials_throttled(now)  # a final never waits for the share


def test_gpu_policy_never_throttles_partials() -> None:
    scheduler = BatchScheduler(RecordingEngine(), GPU)
    scheduler.submit(request(Priority.PARTIAL), lambda r, t: None)
    scheduler.load.record(98.0, 100.0, finals_share=0.0, partials_only=True)
    assert not scheduler._partials_throttled(100.0)


# -- several workers (one model replica each) -----------------------------------------------
class TimingEngine:
    """Records when each request starts and ends; ``hold`` keeps partials running until set."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds
        self.hold = threading.Event()
        self.spans: dict[int, tuple[float, float]] = {}
        self.running = 0
        self.most_running = 0
        self.lock = threading.Lock()

    def transcribe(self, requests: list[TranscriptionRequest]) -> list[Transcript]:
        begin = time.monotonic()
        with self.lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        if any(r.priority is Priority.PARTIAL for r in requests):
            self.hold.wait(5)
        time.sleep(self.seconds)
        with self.lock:
            self.running -= 1
        for r in requests:
            self.spans[r.id] = (begin, time.monotonic())
        return [Transcript(text=f"t{r.utterance}", language="en") for r in requests]


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def submit_all(
    scheduler: BatchScheduler, requests: list[TranscriptionRequest]
) -> dict[int, float]:
    """Submit ``requests``; return when each was answered (monotonic)."""
    answered: dict[int, float] = {}
    done = asyncio.Event()

    def callback(r: TranscriptionRequest, t: Transcript) -> None:
        answered[r.id] = time.monotonic()
        if len(answered) == len(requests):
            done.set()

    for r in requests:
        scheduler.submit(r, callback)
    await asyncio.wait_for(done.wait(), 10)
    return answered


@pytest.mark.asyncio
async def test_with_two_workers_a_final_never_waits_behind_a_running_partial() -> None:
    engine = TimingEngine()
    scheduler = BatchScheduler(engine, CPU, workers=2)
    scheduler.start(asyncio.get_running_loop())
    try:
        partials = [request(Priority.PARTIAL, owner=f"p{i}") for i in range(3)]
        for p in partials:
            scheduler.submit(p, lambda r, t: None)
        await until(lambda: engine.running == 1)  # one partial holds a worker
        await asyncio.sleep(0.1)  # ... and the other worker won't start a second one
        assert engine.running == 1 and scheduler.queue_depths()["partial"] == 2
        final = request(Priority.FINAL, owner="f")
        answered = await submit_all(scheduler, [final])
        assert final.id in answered and partials[0].id not in engine.spans
        engine.hold.set()
        await until(lambda: all(p.id in engine.spans for p in partials))
        assert engine.most_running == 2  # the final ran beside the partial
    finally:
        engine.hold.set()
        scheduler.stop()


@pytest.mark.asyncio
async def test_with_two_workers_finals_run_side_by_side() -> None:
    engine = TimingEngine(seconds=0.3)
    scheduler = BatchScheduler(engine, SchedulingPolicy(max_batch=1), workers=2)
    scheduler.start(asyncio.get_running_loop())
    try:
        finals = [request(Priority.FINAL, owner=f"f{i}") for i in range(2)]
        await submit_all(scheduler, finals)
        (a0, a1), (b0, b1) = (engine.spans[f.id] for f in finals)
        assert a0 < b1 and b0 < a1  # overlapping
        assert 0.028 <= scheduler.busy_ratio() <= 0.045  # 2 x 0.3 s over 2 workers x 10 s
    finally:
        scheduler.stop()
    assert not scheduler.alive


def test_a_worker_kept_for_finals_leaves_partials_queued() -> None:
    p = pending(Priority.PARTIAL, owner="a")
    q = queues(p)
    assert select_batch(q, CPU, now=0.1, partials=False) == ([], 0)
    f = pending(Priority.FINAL, owner="b")
    q = queues(p, f)
    assert select_batch(q, GPU, now=0.1, partials=False) == ([f], 0)
    assert list(q.partials.values()) == [p]


@pytest.mark.asyncio
async def test_queued_finals_are_shared_out_among_idle_workers() -> None:
    engine = RecordingEngine()
    engine.gate.clear()  # hold the first calls until every final is queued
    scheduler = BatchScheduler(engine, CPU, workers=2)
    finals = [request(Priority.FINAL, owner=f"f{i}") for i in range(4)]
    for f in finals:
        scheduler.submit(f, lambda r, t: None)
    scheduler.start(asyncio.get_running_loop())
    await until(lambda: scheduler._pool.running == 2)  # both workers took their share
    engine.gate.set()
    scheduler.stop()
    assert sorted(len(b) for b in engine.batches) == [2, 2]  # not one batch of 4


def test_languages_come_from_the_engine_or_the_caller() -> None:
    class MultilingualEngine(RecordingEngine):
        languages = frozenset({"en", "de"})

    assert BatchScheduler(MultilingualEngine(), CPU).languages == frozenset({"en", "de"})
    assert BatchScheduler(RecordingEngine(), CPU).languages == frozenset()
    given = BatchScheduler(RecordingEngine(), CPU, languages=frozenset({"fr"}))
    assert given.languages == frozenset({"fr"})
