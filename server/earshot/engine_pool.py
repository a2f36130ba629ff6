"""The engine threads, one per model replica, and the watchdog that restarts them.

Theory of operation
-------------------
State: one thread per worker (``None`` before ``start``), ``running`` (batches being
run now), per worker the batch it is running (``in flight``), ``stopping``, and the
watchdog thread. All of it is guarded by the condition the scheduler's queues use, so
a worker can wait for work and the scheduler can see how many run in one critical
section.

A worker loops: under the lock it asks its ``BatchSource`` (the scheduler) for the next
batch — the source waits on the condition until there is one it may run, or returns
None once stopping and drained — marks it in flight and ``running += 1``; it calls the
engine off the lock; it clears in flight *before* anything is answered (a crash from
there on must not run them again) and hands the transcripts back to the source; then
``running -= 1`` and a notify (partials may start again). A batch the engine fails
(``Exception``) is retried one request at a time, so a transient fault costs a retry and
a bad request fails only itself.

A ``BaseException`` out of the engine (a driver fault, a bug) kills the thread with its
batch still in flight. The watchdog notices (the dying thread notifies; it polls too),
waits ``restart_delay_s`` — doubling up to 30 s while threads keep dying, reset after a
healthy minute — requeues the dead worker's batch at the front (no accepted work is
lost; a request that was in two fatal batches is answered with an error instead: it is
the poison; partials are dropped, a newer one will come) and starts a new thread.
Meanwhile ``alive`` is False, and ``/readyz`` says 503.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import NamedTuple, Protocol

from earshot.batch_policy import Pending
from earshot.transcript import Transcript, TranscriptionRequest

log = logging.getLogger(__name__)

ENGINE_ERROR = "the engine failed on this audio; it could not be transcribed"
"""What a client is told (details stay in the server log, never in a message)."""

MAX_RESTART_DELAY_S = 30.0
HEALTHY_S = 60.0
"""A thread that lived this long since the last restart wasn't in a crash loop."""


class Engine(Protocol):
    def transcribe(self, requests: list[TranscriptionRequest]) -> list[Transcript]: ...


class Batch(NamedTuple):
    items: list[Pending]
    taken: float
    """When it was taken from the queues (monotonic)."""
    stale_dropped: int
    """Stale partials dropped while choosing it."""


class BatchSource(Protocol):
    def take(self, worker: int) -> Batch | None:
        """The next batch ``worker`` may run, waiting on the pool's condition (held) for
        one; None once the pool is stopping and nothing is left."""
        ...

    def finished(
        self, batch: Batch, transcripts: list[Transcript], end: float, failed: bool
    ) -> None:
        """The engine answered ``batch`` (lock not held)."""
        ...

    def requeue(self, pending: Pending) -> None:
        """Put a dead worker's request back at the front of its queue (lock held)."""
        ...

    def answer(self, results: Iterable[tuple[Pending, Transcript]]) -> None:
        """Hand transcripts to their callbacks."""
        ...


class EnginePool:
    def __init__(
        self, engine: Engine, workers: int, cond: threading.Condition, source: BatchSource
    ) -> None:
        self.engine = engine
        self.workers = max(1, workers)
        self._cond = cond
        self._source = source
        self._threads: list[threading.Thread | None] = [None] * self.workers
        self.running = 0
        """Batches the workers are running now (lock held to read it)."""
        self.stopping = False
        self._inflight: list[list[Pending]] = [[] for _ in range(self.workers)]
        """The batch each engine thread is running: requeued if the thread dies."""
        self._watchdog: threading.Thread | None = None
        self.restart_delay_s = 1.0
        """First pause before restarting a dead engine thread (doubles up to 30 s while it
        keeps dying); ``/readyz`` is 503 meanwhile."""
        self.restarts = 0

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.stopping = False
        for worker in range(self.workers):
            self._spawn(worker)
        self._watchdog = threading.Thread(
            target=self._watch, name="earshot-engine-watchdog", daemon=True
        )
        self._watchdog.start()

    def _spawn(self, worker: int) -> None:
        thread = threading.Thread(
            target=self._run, args=(worker,), name=f"earshot-engine-{worker}", daemon=True
        )
        self._threads[worker] = thread
        thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Let the workers finish what is queued, then end them and the watchdog."""
        with self._cond:
            self.stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        if self._watchdog is not None:
            self._watchdog.join(1.0)

    @property
    def alive(self) -> bool:
        """Every engine thread runs."""
        return all(t is not None and t.is_alive() for t in self._threads)

    # -- engine threads -------------------------------------------------------------------
    def _run(self, worker: int) -> None:
        try:
            self._serve_batches(worker)
        except BaseException:  # the watchdog restarts the thread; say why it died
            log.critical("engine thread died (worker %d)", worker, exc_info=True)
        finally:
            with self._cond:
                self._cond.notify_all()  # wake the watchdog

    def _serve_batches(self, worker: int) -> None:
        while True:
            with self._cond:
                batch = self._source.take(worker)
                if batch is None:
                    return
                self.running += 1
                self._inflight[worker] = batch.items
            try:
                if batch.items:
                    self._execute(worker, batch)
            finally:
                with self._cond:
                    self.running -= 1
                    self._cond.notify_all()  # partials may start again

    def _execute(self, worker: int, batch: Batch) -> None:
        requests = [p.request for p in batch.items]
        failed = False
        try:
            transcripts = self.engine.transcribe(requests)
        except Exception:  # one bad batch must not take the server down
            log.exception("engine failed on a batch of %d; retrying one by one", len(requests))
            failed = True
            transcripts = [self._alone(r) for r in requests]
        end = time.monotonic()
        with self._cond:
            self._inflight[worker] = []  # answered next: a crash from here on must not rerun them
        self._source.finished(batch, transcripts, end, failed)

    def _alone(self, request: TranscriptionRequest) -> Transcript:
        """After a failed batch, each request runs once more on its own."""
        try:
            return self.engine.transcribe([request])[0]
        except Exception:
            log.exception("engine failed on a single request")
            return failed_transcript(request)

    # -- watchdog -------------------------------------------------------------------------
    def _dead_workers(self) -> list[int]:
        return [i for i, t in enumerate(self._threads) if t is not None and not t.is_alive()]

    def _watch(self) -> None:
        """Restart engine threads that die, with backoff, until ``stop``."""
        delay = self.restart_delay_s
        last_restart = time.monotonic()
        with self._cond:
            while True:
                # A dying thread notifies before it is quite dead: poll as well.
                while not self.stopping and not self._dead_workers():
                    self._cond.wait(0.1)
                if self.stopping:
                    return
                if time.monotonic() - last_restart > HEALTHY_S:
                    delay = self.restart_delay_s  # it had been healthy: not a crash loop
                log.error("engine thread is dead; restarting it in %.1f s", delay)
                self._cond.wait_for(lambda: self.stopping, delay)
                if self.stopping:
                    return
                for worker in self._dead_workers():
                    self._recover(worker)
                    self.restarts += 1
                    self._spawn(worker)
                last_restart = time.monotonic()
                delay = min(delay * 2, MAX_RESTART_DELAY_S)

    def _recover(self, worker: int) -> None:
        """Requeue the batch a dead thread was running; fail a request that was in two
        fatal batches (poison). Lock held."""
        batch, self._inflight[worker] = self._inflight[worker], []
        failed = []
        for pending in reversed(batch):
            pending.attempts += 1
            if pending.attempts >= 2:
                failed.append((pending, failed_transcript(pending.request)))
            else:
                self._source.requeue(pending)
        self._source.answer(failed)


def failed_transcript(request: TranscriptionRequest) -> Transcript:
    return Transcript(text="", language=request.language or "", error=ENGINE_ERROR)
