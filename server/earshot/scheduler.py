"""BatchScheduler: the one way to the engine for every session and job.

Theory of operation
-------------------
Sessions ``submit`` requests from the asyncio loop; engine threads take batches and
call the engine off the loop, so the loop never blocks on the model. Results go back
through ``loop.call_soon_threadsafe`` to the callback given with each request.

This class is the facade over three parts, each in its own module:

- ``batch_policy`` — the queues and the pure rules of which requests run next
  (``select_batch``: finals first, shortest partial first, ...);
- ``engine_pool`` — one engine thread per model replica and the watchdog that
  requeues a dead thread's batch and restarts it;
- ``engine_load`` — the engine's busy time over bounded windows (admission control,
  the ``busy_ratio`` gauge, the partial throttle).

State here: the queues, one condition that guards them and the pool, when a live
stream last asked for anything, and the batch listeners. A request moves: ``submit`` →
queued (``Queues.put``) → taken by a worker (``take``: waits until a batch it may run
exists, then ``select_batch`` removes it from the queues, and ``beam_for`` widens the
beam of its finals when the engine has room) → run by the pool →
``finished`` (load recorded, listeners told, callbacks scheduled on the loop). A
queued final may instead be ``cancel``led; a queued partial replaced by a newer one or
dropped when stale; a dead worker's batch is ``requeue``d at the front.

``take`` applies the rules that need the workers' state: with several workers a partial
starts only while it leaves a worker free for the next final; queued finals are shared
out among the idle workers; with ``max_partial_share < 1`` partials back off once they
had their share of the engine's recent time (only while nothing else waits).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from earshot.batch_policy import (
    PARTIAL_SHARE_WINDOW_S,
    Pending,
    Queues,
    ResultCallback,
    SchedulingPolicy,
    beam_for,
    partials_may_start,
    partials_over_share,
    select_batch,
    share_finals,
    widen_beams,
)
from earshot.engine_load import EngineLoad
from earshot.engine_pool import ENGINE_ERROR, Batch, Engine, EnginePool
from earshot.transcript import Priority, Transcript, TranscriptionRequest

__all__ = [
    "ENGINE_ERROR",
    "BatchReport",
    "BatchScheduler",
    "Engine",
    "Pending",
    "Queues",
    "ResultCallback",
    "SchedulingPolicy",
    "select_batch",
]

log = logging.getLogger(__name__)

PARTIAL_BACKOFF_S = 0.05
"""How long a worker held back from partials waits before it looks again."""


@dataclass(frozen=True)
class BatchReport:
    """What one engine call did; listeners feed metrics and benchmarks from it."""

    size: int
    finals: int
    partials: int
    files: int
    seconds: float
    queue_waits: tuple[float, ...]
    stale_partials_dropped: int
    failed: bool = False


class BatchScheduler:
    def __init__(
        self,
        engine: Engine,
        policy: SchedulingPolicy,
        *,
        workers: int = 1,
        languages: frozenset[str] | None = None,
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.workers = max(1, workers)
        self._languages = frozenset(
            getattr(engine, "languages", ()) if languages is None else languages
        )
        self._queues = Queues()
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.load = EngineLoad(self.workers, partial_window_s=PARTIAL_SHARE_WINDOW_S)
        self.listeners: list[Callable[[BatchReport], None]] = []
        self._last_live = float("-inf")
        """When the last live (final or partial) request was submitted."""
        self._pool = EnginePool(engine, self.workers, self._cond, self)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pool.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then end the engine threads."""
        self._pool.stop(timeout)

    @property
    def languages(self) -> frozenset[str]:
        """Language codes the engine transcribes (``languages=`` given, else the
        engine's own ``languages``): what a client may ask for."""
        return self._languages

    @property
    def alive(self) -> bool:
        """Every engine thread runs (``/readyz`` is 503 while one is being restarted)."""
        return self._pool.alive

    @property
    def restart_delay_s(self) -> float:
        """First pause before restarting a dead engine thread (see engine_pool.py)."""
        return self._pool.restart_delay_s

    @restart_delay_s.setter
    def restart_delay_s(self, seconds: float) -> None:
        self._pool.restart_delay_s = seconds

    @property
    def restarts(self) -> int:
        """Engine threads restarted after dying."""
        return self._pool.restarts

    # -- loop side ------------------------------------------------------------------------
    def submit(self, request: TranscriptionRequest, callback: ResultCallback) -> None:
        pending = Pending(request, callback, time.monotonic())
        if request.priority is not Priority.FILE:
            self._last_live = pending.enqueued
        with self._cond:
            self._queues.put(pending)
            self._cond.notify_all()  # a worker kept for finals may be the one to take it

    def cancel(self, request: TranscriptionRequest) -> bool:
        """Drop a queued final nobody needs any more (a speculative one made moot by more
        speech) or file segment (its caller went away). Returns False when it already
        runs or ran; its result is then ignored."""
        with self._cond:
            if request.priority is Priority.FILE:
                return self._queues.cancel_file(request)
            return self._queues.cancel_final(request)

    def live_idle_s(self) -> float:
        """Seconds since a live stream last asked for anything: on a CPU, file work
        waits for a pause so that it doesn't occupy the engine when a final comes."""
        return time.monotonic() - self._last_live

    def queue_depths(self) -> dict[str, int]:
        with self._cond:
            return {
                "final": len(self._queues.finals),
                "partial": len(self._queues.partials),
                "file": len(self._queues.files),
            }

    def oldest_final_wait(self) -> float:
        with self._cond:
            if not self._queues.finals:
                return 0.0
            return time.monotonic() - self._queues.finals[0].enqueued

    def busy_ratio(self, window_s: float = 10.0, *, finals_only: bool = False) -> float:
        """Share of the last ``window_s`` seconds the engine's workers spent transcribing.

        ``finals_only`` counts just the finals' share of each batch: the work that must
        be done, as opposed to partials, which fill whatever time is left.
        """
        return self.load.busy_ratio(window_s, finals_only=finals_only)

    # -- engine threads (BatchSource, called by the pool) ---------------------------------
    def take(self, worker: int) -> Batch | None:
        """Wait for the next batch a worker may run; None once stopped and drained
        (lock held)."""
        pool = self._pool
        while True:
            queues = self._queues
            partials = partials_may_start(self.workers, pool.running)
            if not (queues.finals or queues.files or (partials and queues.partials)):
                if pool.stopping and not queues:
                    return None
                self._cond.wait(PARTIAL_BACKOFF_S if pool.stopping else None)
                continue
            if self.policy.batch_wait_s > 0 and len(queues) < self.policy.max_batch:
                self._cond.wait(self.policy.batch_wait_s)
            if partials and self._partials_throttled(time.monotonic()):
                self._cond.wait(PARTIAL_BACKOFF_S)  # a final may come: keep room for it
                continue
            now = time.monotonic()
            policy = share_finals(self.policy, len(queues.finals), self.workers - pool.running)
            items, dropped = select_batch(queues, policy, now, partials=partials)
            widen_beams(items, beam_for(policy, len(queues.finals), self.load.busy_ratio(10.0)))
            return Batch(items, now, dropped)

    def _partials_throttled(self, now: float) -> bool:
        """Only partials wait, and they had their share of the engine lately (lock held)."""
        if self.policy.max_partial_share >= 1.0 or self._queues.finals or self._queues.files:
            return False
        return partials_over_share(self.policy, self.load.partial_busy_s(now), self.workers)

    def finished(
        self, batch: Batch, transcripts: list[Transcript], end: float, failed: bool
    ) -> None:
        requests = [p.request for p in batch.items]
        finals = sum(r.priority is Priority.FINAL for r in requests)
        partials = sum(r.priority is Priority.PARTIAL for r in requests)
        self.load.record(
            batch.taken,
            end,
            finals_share=finals / len(requests),
            partials_only=partials == len(requests),
        )
        report = BatchReport(
            size=len(requests),
            finals=finals,
            partials=partials,
            files=sum(r.priority is Priority.FILE for r in requests),
            seconds=end - batch.taken,
            queue_waits=tuple(batch.taken - p.enqueued for p in batch.items),
            stale_partials_dropped=batch.stale_dropped,
            failed=failed,
        )
        for listener in self.listeners:
            try:
                listener(report)
            except Exception:
                log.exception("batch listener failed")
        self.answer(zip(batch.items, transcripts))

    def requeue(self, pending: Pending) -> None:
        self._queues.requeue(pending)

    def answer(self, results: Iterable[tuple[Pending, Transcript]]) -> None:
        assert self._loop is not None
        for pending, transcript in results:
            try:
                self._loop.call_soon_threadsafe(pending.callback, pending.request, transcript)
            except RuntimeError:  # loop closed during shutdown: nobody left to tell
                return
