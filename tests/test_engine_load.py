"""Load accounting over bounded windows, the pure policy helpers, and where the
scheduling policy is built (fake engines, no model)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np
import pytest

from earshot import runtime as runtime_module
from earshot.batch_policy import (
    PARTIAL_SHARE_WINDOW_S,
    Pending,
    Queues,
    SchedulingPolicy,
    partials_may_start,
    partials_over_share,
    share_finals,
)
from earshot.config import SchedulerConfig, ServerConfig, default_policy
from earshot.engine_load import BUSY_HISTORY_S, BusyWindow, EngineLoad
from earshot.scheduler import BatchReport, BatchScheduler
from earshot.transcript import Priority, Transcript, TranscriptionRequest


def request(priority: Priority, owner: str = "s", utterance: int = 0) -> TranscriptionRequest:
    return TranscriptionRequest(
        audio=np.zeros(1600, np.float32), priority=priority, owner=owner, utterance=utterance
    )


def pending(priority: Priority, **kw: object) -> Pending:
    return Pending(request(priority, **kw), lambda r, t: None, 0.0)  # type: ignore[arg-type]


# -- the bounded windows ------------------------------------------------------------------
def test_busy_ratio_counts_what_ran_in_the_window() -> None:
    load = EngineLoad(2, partial_window_s=PARTIAL_SHARE_WINDOW_S)
    load.record(1000.0, 1003.0, finals_share=1.0, partials_only=False)
    load.record(1004.0, 1006.0, finals_share=0.5, partials_only=False)
    now = 1010.0
    assert load.busy_ratio(10.0, now=now) == pytest.approx(5.0 / 20.0)
    assert load.busy_ratio(10.0, finals_only=True, now=now) == pytest.approx(4.0 / 20.0)
    assert load.busy_ratio(5.0, now=now) == pytest.approx(1.0 / 10.0)  # [1005, 1010]
    assert load.partial_busy_s(now) == 0.0  # none of it was partial-only


def test_old_busy_time_expires() -> None:
    load = EngineLoad(1, partial_window_s=PARTIAL_SHARE_WINDOW_S)
    load.record(100.0, 101.5, finals_share=0.0, partials_only=True)
    assert load.partial_busy_s(101.5) == pytest.approx(1.5)
    assert load.partial_busy_s(102.5) == pytest.approx(1.0)  # [100.5, 102.5]
    assert load.partial_busy_s(104.0) == 0.0
    assert load.busy_ratio(10.0, now=105.0) == pytest.approx(0.15)
    assert load.busy_ratio(10.0, now=200.0) == 0.0  # the ring moved past it


def test_a_window_sum_is_exact_to_within_one_slot() -> None:
    window = BusyWindow(horizon_s=2.0, slot_s=0.01)
    window.add(10.003, 10.5)
    assert window.total(9.0, 11.0) == pytest.approx(0.497)
    assert window.total(10.25, 11.0) == pytest.approx(0.25, abs=0.01)


def test_a_call_longer_than_the_history_is_clipped_to_it() -> None:
    load = EngineLoad(1, partial_window_s=PARTIAL_SHARE_WINDOW_S)
    load.record(0.0, 500.0, finals_share=1.0, partials_only=True)
    assert load.busy_ratio(BUSY_HISTORY_S, now=500.0) == pytest.approx(1.0)
    assert load.partial_busy_s(500.0) == pytest.approx(PARTIAL_SHARE_WINDOW_S)


def test_accounting_memory_is_fixed_however_many_partial_batches_run() -> None:
    """The leak: one tuple per partial-only call, trimmed only while partials were
    throttled, so never with ``max_partial_share >= 1``. Ten simulated minutes of them, one
    every 10 ms: the windows hold the same slots as at the start, and only the last
    2 s count."""
    load = EngineLoad(2, partial_window_s=PARTIAL_SHARE_WINDOW_S)
    size = load.footprint()
    t = 0.0
    for _ in range(60_000):
        load.record(t, t + 0.005, finals_share=0.0, partials_only=True)
        t += 0.01
    assert load.footprint() == size
    assert load.partial_busy_s(t) == pytest.approx(PARTIAL_SHARE_WINDOW_S / 2, rel=0.01)
    assert load.busy_ratio(10.0, now=t) == pytest.approx(0.25, rel=0.01)  # 50 % of 1 of 2


class InstantEngine:
    def transcribe(self, requests: list[TranscriptionRequest]) -> list[Transcript]:
        return [Transcript(text="p", language="en") for _ in requests]


@pytest.mark.asyncio
@pytest.mark.parametrize("workers", [1, 2])
async def test_many_partial_only_batches_leave_the_scheduler_memory_bounded(
    workers: int,
) -> None:
    # max_partial_share 1.0: the default on GPU and on CPU with several workers.
    policy = SchedulingPolicy(max_batch=4, max_partials=1, partial_max_age_s=60.0)
    assert policy.max_partial_share >= 1.0
    scheduler = BatchScheduler(InstantEngine(), policy, workers=workers)
    reports: list[BatchReport] = []
    scheduler.listeners.append(reports.append)
    size = scheduler.load.footprint()
    assert size <= 3000  # slots, all windows together: a constant
    count = 1000
    answered = 0
    done = asyncio.Event()

    def callback(r: TranscriptionRequest, t: Transcript) -> None:
        nonlocal answered
        answered += 1
        if answered == count:
            done.set()

    scheduler.start(asyncio.get_running_loop())
    try:
        for i in range(count):
            scheduler.submit(request(Priority.PARTIAL, owner=f"s{i}"), callback)
        await asyncio.wait_for(done.wait(), 30)
    finally:
        scheduler.stop()
    assert len(reports) == count and all(r.partials == r.size == 1 for r in reports)
    assert scheduler.load.footprint() == size


# -- pure policy helpers ------------------------------------------------------------------
def test_a_partial_starts_only_while_it_leaves_a_worker_free() -> None:
    assert partials_may_start(1, 0)
    assert partials_may_start(2, 0) and not partials_may_start(2, 1)
    assert partials_may_start(4, 2) and not partials_may_start(4, 3)


def test_queued_finals_are_shared_by_the_idle_workers() -> None:
    policy = SchedulingPolicy(max_batch=8)
    assert share_finals(policy, queued_finals=5, idle=2).max_batch == 3
    assert share_finals(policy, queued_finals=5, idle=1) is policy
    assert share_finals(policy, queued_finals=1, idle=4) is policy
    assert share_finals(replace(policy, max_batch=2), queued_finals=9, idle=2).max_batch == 2


def test_partial_share_is_per_worker_that_may_run_partials() -> None:
    half = SchedulingPolicy(max_partial_share=0.5)
    assert not partials_over_share(half, 0.99, workers=1)
    assert partials_over_share(half, 1.0, workers=1)
    assert not partials_over_share(half, 1.5, workers=3)  # 2 slots x 2 s x 0.5 = 2 s
    assert not partials_over_share(SchedulingPolicy(), 100.0, workers=1)


def test_queues_put_replaces_partials_and_requeue_goes_to_the_front() -> None:
    q = Queues()
    old, new = pending(Priority.PARTIAL, utterance=1), pending(Priority.PARTIAL, utterance=1)
    q.put(old)
    q.put(pending(Priority.PARTIAL, owner="b"))
    q.put(new)
    assert list(q.partials.values())[-1] is new and len(q.partials) == 2
    final = pending(Priority.FINAL, utterance=1)
    q.put(final)
    assert len(q.partials) == 1  # the final made that utterance's partial moot
    first = pending(Priority.FINAL, owner="c")
    q.requeue(first)
    q.requeue(pending(Priority.PARTIAL, owner="d"))  # dropped: a newer one will come
    assert list(q.finals) == [first, final] and len(q.partials) == 1
    assert q.cancel_final(final.request) and not q.cancel_final(final.request)


# -- the policy is built in one place -----------------------------------------------------
def test_scheduler_config_builds_the_device_policy_with_the_operators_settings() -> None:
    assert ServerConfig().scheduler == SchedulerConfig()
    assert SchedulerConfig().policy("cpu", 1) == default_policy("cpu")
    assert SchedulerConfig().policy("cuda") == default_policy("cuda")
    given = SchedulerConfig(max_batch=3, batch_wait_s=0.02)
    cpu = given.policy("cpu", 2)
    assert (cpu.max_batch, cpu.batch_wait_s, cpu.max_partial_share) == (3, 0.02, 1.0)
    gpu = given.policy("cuda")
    assert (gpu.max_batch, gpu.max_partials, gpu.batch_wait_s) == (3, 3, 0.02)


class FakeWhisper:
    def __init__(self, config: object) -> None:
        self.device, self.workers, self.compute_type = "cpu", 2, "int8"
        self.model_name = "fake"
        self.languages = frozenset({"en", "de"})

    def warm_up(self) -> None:
        pass

    def transcribe(self, requests: list[TranscriptionRequest]) -> list[Transcript]:
        return [Transcript(text="", language="en") for _ in requests]


def test_runtime_load_uses_the_configured_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_module, "WhisperEngine", FakeWhisper)
    config = ServerConfig(scheduler=SchedulerConfig(max_batch=3, batch_wait_s=0.02))
    loaded = runtime_module.Runtime.load(config)
    assert loaded.scheduler.policy == default_policy("cpu", 3, 2, batch_wait_s=0.02)
    assert loaded.scheduler.workers == 2
    assert loaded.scheduler.languages == frozenset({"en", "de"})
