"""Beam search for finals while the engine has room, greedy under load: the rule
(``beam_for``), where it applies (``widen_beams``), and the scheduler using it."""

from __future__ import annotations

import asyncio

import pytest
from tests.test_scheduler import CPU, RecordingEngine, pending, request
from tests.waiting import async_poll_until

from earshot.batch_policy import SchedulingPolicy, beam_for, widen_beams
from earshot.scheduler import BatchScheduler
from earshot.transcript import Priority, Transcript, TranscriptionRequest

POLICY = SchedulingPolicy(idle_beam_size=5, idle_busy_ratio=0.5)


@pytest.mark.parametrize(
    ("finals_waiting", "busy_ratio", "beam"),
    [
        (0, 0.0, 5),  # idle: the best decode
        (0, 0.49, 5),
        (0, 0.5, 1),  # busy half the time: every decode counts
        (0, 0.9, 1),
        (1, 0.0, 1),  # another final waits for this worker: don't make it wait longer
        (7, 0.95, 1),
    ],
)
def test_finals_get_the_wide_beam_only_while_the_engine_has_room(
    finals_waiting: int, busy_ratio: float, beam: int
) -> None:
    assert beam_for(POLICY, finals_waiting, busy_ratio) == beam


def test_idle_beam_size_1_is_always_greedy() -> None:
    assert beam_for(SchedulingPolicy(idle_beam_size=1), 0, 0.0) == 1


def test_finals_and_file_segments_widen_partials_stay_greedy() -> None:
    batch = [pending(Priority.FINAL), pending(Priority.FILE), pending(Priority.PARTIAL, owner="x")]
    widen_beams(batch, 5)
    assert [p.request.beam_size for p in batch] == [5, 5, 1]


@pytest.mark.asyncio
async def test_the_scheduler_widens_when_idle_and_not_when_finals_queue_up() -> None:
    engine = RecordingEngine()
    scheduler = BatchScheduler(engine, CPU)  # batches of up to 4 finals
    scheduler.start(asyncio.get_running_loop())
    answered: list[TranscriptionRequest] = []
    done = asyncio.Event()

    def callback(req: TranscriptionRequest, transcript: Transcript) -> None:
        answered.append(req)
        if len(answered) == len(finals):
            done.set()

    engine.gate.clear()  # hold the engine: the first request is taken alone, idle
    finals = [request(Priority.FINAL, owner=str(i), utterance=i) for i in range(7)]
    scheduler.submit(finals[0], callback)
    await async_poll_until(  # a worker took it; it now waits on the gate
        lambda: scheduler.queue_depths()["final"] == 0, what="the first final to be taken"
    )
    for final in finals[1:]:  # six more arrive while it runs: a queue
        scheduler.submit(final, callback)
    engine.gate.set()
    await asyncio.wait_for(done.wait(), 5)
    scheduler.stop()
    beams = [[r.beam_size for r in batch] for batch in engine.batches]
    assert beams == [[5], [1, 1, 1, 1], [5, 5]], beams
