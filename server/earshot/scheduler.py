"""The central batching loop: engine threads serving every session and job.

Theory of operation
-------------------
Sessions ``submit`` requests from the asyncio loop; engine threads take batches
and calls the engine off the loop, so the loop never blocks on the model. Results go
back through ``loop.call_soon_threadsafe`` to the callback given with each request.

Which requests form the next batch is decided by ``select_batch``, a pure function:

1. finals, oldest first — a final is never delayed for anything else;
2. file segments that waited longer than ``file_max_wait_s`` (jobs never starve);
3. up to ``max_partials`` partials, shortest audio first, if ``partials_with_finals``
   or no final is in the batch — a newer partial of an utterance has already replaced
   its older queued one, and a partial older than ``partial_max_age_s`` is dropped as
   stale: under load partials thin out instead of finals slowing down. Shortest first
   because a short partial is cheap and is usually an utterance's first: its words
   show soon after speech starts, and more partials fit in the time left;
4. remaining file segments.

On a GPU a batch costs little more than one request, so a short ``batch_wait_ms`` and
mixing partials into final batches pay off; on a CPU batching buys little, so finals go
alone and partials only use idle time. Same code, different settings.

``workers`` engine threads take batches at once (the engine holds that many model
replicas; on a CPU, one single-threaded replica per core beats one replica on all
cores). A running decode can't be interrupted, so with several workers a partial only
starts while it leaves a worker free: the next final always finds one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from earshot.transcript import Priority, Transcript, TranscriptionRequest

log = logging.getLogger(__name__)

ResultCallback = Callable[[TranscriptionRequest, Transcript], None]


class Engine(Protocol):
    def transcribe(self, requests: list[TranscriptionRequest]) -> list[Transcript]: ...


@dataclass(frozen=True)
class SchedulingPolicy:
    max_batch: int = 8
    batch_wait_s: float = 0.0
    partial_max_age_s: float = 2.0
    partials_with_finals: bool = False
    max_partials: int = 8
    """Partials per batch. On a CPU a batch costs the sum of its items and can't be
    interrupted, so one partial at a time keeps a final that arrives meanwhile waiting
    for at most one decode."""
    file_max_wait_s: float = 5.0
    max_partial_share: float = 1.0
    """Most of the engine's recent time partials may take. Below 1, the engine idles now
    and then instead of starting yet another partial, so a final that comes finds it free
    more often (a CPU can't interrupt a running decode; a GPU batches the final in)."""


PARTIAL_SHARE_WINDOW_S = 2.0
PARTIAL_BACKOFF_S = 0.05


@dataclass(eq=False)
class Pending:
    request: TranscriptionRequest
    callback: ResultCallback
    enqueued: float
    attempts: int = 0
    """Engine runs this request was in when the engine thread died (see ``_recover``)."""


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


@dataclass
class Queues:
    finals: deque[Pending] = field(default_factory=deque)
    partials: OrderedDict[tuple[str, int], Pending] = field(default_factory=OrderedDict)
    files: deque[Pending] = field(default_factory=deque)

    def __len__(self) -> int:
        return len(self.finals) + len(self.partials) + len(self.files)


def select_batch(
    queues: Queues, policy: SchedulingPolicy, now: float, *, partials: bool = True
) -> tuple[list[Pending], int]:
    """Remove and return the next batch, and how many stale partials were dropped.
    ``partials=False``: leave partials queued (this worker is kept for finals)."""
    batch: list[Pending] = []
    room = policy.max_batch
    while queues.finals and len(batch) < room:
        batch.append(queues.finals.popleft())
    while (
        queues.files
        and len(batch) < room
        and now - queues.files[0].enqueued > policy.file_max_wait_s
    ):
        batch.append(queues.files.popleft())
    dropped = 0
    for key in list(queues.partials):
        if now - queues.partials[key].enqueued > policy.partial_max_age_s:
            del queues.partials[key]
            dropped += 1
    if partials and (policy.partials_with_finals or not batch):
        room_for_partials = min(room, len(batch) + policy.max_partials)
        while queues.partials and len(batch) < room_for_partials:
            key = min(queues.partials, key=lambda k: len(queues.partials[k].request.audio))
            batch.append(queues.partials.pop(key))
    while (
        queues.files
        and len(batch) < room
        and not any(p.request.priority is Priority.FINAL for p in batch)
    ):
        batch.append(queues.files.popleft())
    return batch, dropped


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
        self._languages = frozenset(
            getattr(engine, "languages", ()) if languages is None else languages
        )
        self.policy = policy
        self.workers = max(1, workers)
        self._queues = Queues()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread | None] = [None] * self.workers
        self._running = 0
        """Batches the workers are running now."""
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._busy: deque[tuple[float, float, float]] = deque()
        """(begin, end, share of the batch that was finals) per engine call."""
        self._partial_busy: deque[tuple[float, float]] = deque()
        """(begin, end) of engine calls that ran only partials, the last few seconds."""
        self.listeners: list[Callable[[BatchReport], None]] = []
        self._last_live = float("-inf")
        """When the last live (final or partial) request was submitted."""
        self._inflight: list[list[Pending]] = [[] for _ in range(self.workers)]
        """The batch each engine thread is running: requeued if the thread dies."""
        self._watchdog: threading.Thread | None = None
        self.restart_delay_s = 1.0
        """First pause before restarting a dead engine thread (doubles up to 30 s while it
        keeps dying); ``/readyz`` is 503 meanwhile."""
        self.restarts = 0

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._stopping = False
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
        """Finish what is queued, then end the engine threads."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        if self._watchdog is not None:
            self._watchdog.join(1.0)

    @property
    def languages(self) -> frozenset[str]:
        """Language codes the engine transcribes (``languages=`` given, else the
        engine's own ``languages``): what a client may ask for."""
        return self._languages

    @property
    def alive(self) -> bool:
        """Every engine thread runs (``/readyz`` is 503 while one is being restarted)."""
        return all(t is not None and t.is_alive() for t in self._threads)

    # -- loop side ------------------------------------------------------------------------
    def submit(self, request: TranscriptionRequest, callback: ResultCallback) -> None:
        pending = Pending(request, callback, time.monotonic())
        if request.priority is not Priority.FILE:
            self._last_live = pending.enqueued
        with self._cond:
            if request.priority is Priority.FINAL:
                self._queues.finals.append(pending)
                self._queues.partials.pop((request.owner, request.utterance), None)
            elif request.priority is Priority.PARTIAL:
                key = (request.owner, request.utterance)
                self._queues.partials.pop(key, None)  # newer replaces older, re-queued at the end
                self._queues.partials[key] = pending
            else:
                self._queues.files.append(pending)
            self._cond.notify_all()  # a worker kept for finals may be the one to take it

    def cancel(self, request: TranscriptionRequest) -> bool:
        """Drop a queued final nobody needs any more (a speculative one made moot by more
        speech). Returns False when it already runs or ran; its result is then ignored."""
        with self._cond:
            for pending in self._queues.finals:
                if pending.request is request:
                    self._queues.finals.remove(pending)
                    return True
        return False

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
        now = time.monotonic()
        start = now - window_s
        with self._cond:
            busy = sum(
                max(0.0, end - max(begin, start)) * (share if finals_only else 1.0)
                for begin, end, share in self._busy
                if end > start
            )
        return min(1.0, busy / (window_s * self.workers))

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
                taken = self._take()
                if taken is None:
                    return
                batch, now, dropped = taken
                self._running += 1
                self._inflight[worker] = batch
            try:
                if batch:
                    self._execute(worker, batch, now, dropped)
            finally:
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()  # partials may start again

    def _take(self) -> tuple[list[Pending], float, int] | None:
        """Wait for the next batch this worker may run; None once stopped and drained
        (lock held)."""
        while True:
            queues = self._queues
            # With several workers a partial starts only if a worker stays free for the
            # next final: finals never wait behind partials, only behind other finals.
            partials = self.workers == 1 or self._running + 1 < self.workers
            if not (queues.finals or queues.files or (partials and queues.partials)):
                if self._stopping and not queues:
                    return None
                self._cond.wait(PARTIAL_BACKOFF_S if self._stopping else None)
                continue
            if self.policy.batch_wait_s > 0 and len(queues) < self.policy.max_batch:
                self._cond.wait(self.policy.batch_wait_s)
            if partials and self._partials_throttled(time.monotonic()):
                self._cond.wait(PARTIAL_BACKOFF_S)  # a final may come: keep room for it
                continue
            now = time.monotonic()
            batch, dropped = select_batch(queues, self._policy_now(), now, partials=partials)
            return batch, now, dropped

    def _policy_now(self) -> SchedulingPolicy:
        """Queued finals shared out among the idle workers instead of all going to the
        first one (two finals on two cores beat a batch of two on one; lock held)."""
        idle = self.workers - self._running
        if idle <= 1 or len(self._queues.finals) <= 1:
            return self.policy
        share = -(-len(self._queues.finals) // idle)
        return dataclasses.replace(self.policy, max_batch=min(self.policy.max_batch, share))

    def _partials_throttled(self, now: float) -> bool:
        """Only partials wait, and they had their share of the engine lately (lock held)."""
        if self.policy.max_partial_share >= 1.0 or self._queues.finals or self._queues.files:
            return False
        start = now - PARTIAL_SHARE_WINDOW_S
        while self._partial_busy and self._partial_busy[0][1] < start:
            self._partial_busy.popleft()
        busy = sum(end - max(begin, start) for begin, end in self._partial_busy)
        slots = max(1, self.workers - 1)
        return busy >= self.policy.max_partial_share * PARTIAL_SHARE_WINDOW_S * slots

    def _execute(self, worker: int, batch: list[Pending], now: float, dropped: int) -> None:
        requests = [p.request for p in batch]
        failed = False
        try:
            transcripts = self.engine.transcribe(requests)
        except Exception:  # one bad batch must not take the server down
            log.exception("engine failed on a batch of %d; retrying one by one", len(batch))
            failed = True
            transcripts = [self._alone(r) for r in requests]
        end = time.monotonic()
        with self._cond:
            self._inflight[worker] = []  # answered below: a crash from here on must not rerun them
            finals = sum(r.priority is Priority.FINAL for r in requests)
            self._busy.append((now, end, finals / len(requests)))
            while self._busy and self._busy[0][1] < end - 60:
                self._busy.popleft()
            if all(r.priority is Priority.PARTIAL for r in requests):
                self._partial_busy.append((now, end))
        report = BatchReport(
            size=len(batch),
            finals=finals,
            partials=sum(r.priority is Priority.PARTIAL for r in requests),
            files=sum(r.priority is Priority.FILE for r in requests),
            seconds=end - now,
            queue_waits=tuple(now - p.enqueued for p in batch),
            stale_partials_dropped=dropped,
            failed=failed,
        )
        for listener in self.listeners:
            try:
                listener(report)
            except Exception:
                log.exception("batch listener failed")
        self._answer(zip(batch, transcripts))

    def _alone(self, request: TranscriptionRequest) -> Transcript:
        """After a failed batch, each request runs once more on its own, so a transient
        fault costs a retry and a bad request fails only itself."""
        try:
            return self.engine.transcribe([request])[0]
        except Exception:
            log.exception("engine failed on a single request")
            return _failed(request)

    def _answer(self, results: Iterable[tuple[Pending, Transcript]]) -> None:
        assert self._loop is not None
        for pending, transcript in results:
            try:
                self._loop.call_soon_threadsafe(pending.callback, pending.request, transcript)
            except RuntimeError:  # loop closed during shutdown: nobody left to tell
                return

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
                while not self._stopping and not self._dead_workers():
                    self._cond.wait(0.1)
                if self._stopping:
                    return
                if time.monotonic() - last_restart > 60:
                    delay = self.restart_delay_s  # it had been healthy: not a crash loop
                log.error("engine thread is dead; restarting it in %.1f s", delay)
                self._cond.wait_for(lambda: self._stopping, delay)
                if self._stopping:
                    return
                for worker in self._dead_workers():
                    self._recover(worker)
                    self.restarts += 1
                    self._spawn(worker)
                last_restart = time.monotonic()
                delay = min(delay * 2, 30.0)

    def _recover(self, worker: int) -> None:
        """Requeue the batch a dead thread was running (no accepted work is lost); a
        request that was in two fatal batches gets an error instead (poison). Partials
        are dropped: a newer one will come."""
        batch, self._inflight[worker] = self._inflight[worker], []
        failed = []
        for pending in reversed(batch):
            pending.attempts += 1
            request = pending.request
            if pending.attempts >= 2:
                failed.append((pending, _failed(request)))
            elif request.priority is Priority.FINAL:
                self._queues.finals.appendleft(pending)
            elif request.priority is Priority.FILE:
                self._queues.files.appendleft(pending)
        self._answer(failed)


ENGINE_ERROR = "the engine failed on this audio; it could not be transcribed"
"""What a client is told (details stay in the server log, never in a message)."""


def _failed(request: TranscriptionRequest) -> Transcript:
    return Transcript(text="", language=request.language or "", error=ENGINE_ERROR)
