"""Which queued requests the engine runs next: pure policy, no threads, no clock.

Theory of operation
-------------------
State: ``Queues`` holds what waits for the engine, in three lanes — finals (FIFO),
partials (one per utterance, keyed ``(owner, utterance)``; insertion order = arrival)
and file segments (FIFO). ``Queues.put`` is the only way in: a final of an utterance
drops that utterance's queued partial (moot), a newer partial replaces the older one
and goes to the back. Everything else here is a function of (queues, policy, now, how
many workers run): the callers (``scheduler.py``) own the lock, the clock and the
threads, so every rule is testable with plain values.

``select_batch`` REMOVES what it returns from the queues (the caller now owns those
requests: it runs them or requeues them), and also removes — drops, without returning
them — partials older than ``partial_max_age_s``. The next batch is:

1. finals, oldest first — a final is never delayed for anything else;
2. file segments that waited longer than ``file_max_wait_s`` (jobs never starve);
3. up to ``max_partials`` partials, shortest audio first, if ``partials_with_finals``
   or no final is in the batch — a newer partial of an utterance has already replaced
   its older queued one, and a stale one is dropped: under load partials thin out
   instead of finals slowing down. Shortest first because a short partial is cheap and
   is usually an utterance's first: its words show soon after speech starts, and more
   partials fit in the time left;
4. remaining file segments.

On a GPU a batch costs little more than one request, so a short ``batch_wait_s`` and
mixing partials into final batches pay off; on a CPU batching buys little, so finals go
alone and partials only use idle time. Same code, different settings (``default_policy``
in config.py picks them by device).

With several workers (model replicas) two more rules apply, both tuned by measurement:
a partial only starts while it leaves a worker free, so the next final always finds one
(``partials_may_start``: a running decode can't be interrupted); and queued finals are
shared out among the idle workers instead of all going to the first one
(``share_finals``: two finals on two cores beat a batch of two on one). With one
worker, ``max_partial_share`` below 1 makes partials leave it idle now and then
(``partials_over_share``), read from the engine's recent partial-only time.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from earshot.transcript import Priority, Transcript, TranscriptionRequest

ResultCallback = Callable[[TranscriptionRequest, Transcript], None]

PARTIAL_SHARE_WINDOW_S = 2.0
"""The recent engine time ``max_partial_share`` is measured over."""


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
    idle_beam_size: int = 5
    """Beam width for finals and file segments while the engine has room (``beam_for``);
    1 = always greedy. Measured with the bundled base model on one CPU core: beam 5 costs
    3-22 % more CPU per final than greedy (two runs on a loaded 2-core machine) and cuts
    corpus WER on the German, Spanish and Portuguese clips of the speech set by 15-30 %
    (docs/benchmarks.md, ``python -m loadtest.beam_bench``). A wide decode that loops is
    redone greedily (engine.py). The GPU policy keeps 1 (``default_policy``)."""
    idle_busy_ratio: float = 0.5
    """"Room": no other final waits and the engine was busy less than this share of the
    last 10 s. Above it finals go greedy, so beam search never costs capacity."""


@dataclass(eq=False)
class Pending:
    request: TranscriptionRequest
    callback: ResultCallback
    enqueued: float
    attempts: int = 0
    """Engine runs this request was in when its engine thread died (see engine_pool.py)."""


@dataclass
class Queues:
    finals: deque[Pending] = field(default_factory=deque)
    partials: OrderedDict[tuple[str, int], Pending] = field(default_factory=OrderedDict)
    files: deque[Pending] = field(default_factory=deque)

    def __len__(self) -> int:
        return len(self.finals) + len(self.partials) + len(self.files)

    def put(self, pending: Pending) -> None:
        """Queue a new request in its lane (see the module docstring)."""
        request = pending.request
        key = (request.owner, request.utterance)
        if request.priority is Priority.FINAL:
            self.finals.append(pending)
            self.partials.pop(key, None)
        elif request.priority is Priority.PARTIAL:
            self.partials.pop(key, None)  # newer replaces older, re-queued at the end
            self.partials[key] = pending
        else:
            self.files.append(pending)

    def requeue(self, pending: Pending) -> None:
        """Put a request taken earlier back at the front of its lane (its engine thread
        died). Partials are dropped: a newer one will come."""
        if pending.request.priority is Priority.FINAL:
            self.finals.appendleft(pending)
        elif pending.request.priority is Priority.FILE:
            self.files.appendleft(pending)

    def cancel_final(self, request: TranscriptionRequest) -> bool:
        """Remove a queued final; False when it isn't queued (taken, or never was)."""
        for pending in self.finals:
            if pending.request is request:
                self.finals.remove(pending)
                return True
        return False

    def cancel_file(self, request: TranscriptionRequest) -> bool:
        """Remove a queued file segment; False when it isn't queued."""
        for pending in self.files:
            if pending.request is request:
                self.files.remove(pending)
                return True
        return False


def select_batch(
    queues: Queues, policy: SchedulingPolicy, now: float, *, partials: bool = True
) -> tuple[list[Pending], int]:
    """REMOVE from ``queues`` and return the next batch, and how many stale partials
    were dropped (removed too, not returned). ``partials=False``: leave partials queued
    (this worker is kept for finals)."""
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


def beam_for(policy: SchedulingPolicy, finals_waiting: int, busy_ratio: float) -> int:
    """Beam width for the finals and file segments of the batch just taken: wide while
    the engine has room, greedy under load (partials are always greedy)."""
    if finals_waiting == 0 and busy_ratio < policy.idle_busy_ratio:
        return max(1, policy.idle_beam_size)
    return 1


def widen_beams(batch: list[Pending], beam_size: int) -> None:
    """Ask for ``beam_size`` on the batch's finals and file segments."""
    for pending in batch:
        if pending.request.priority is not Priority.PARTIAL:
            pending.request.beam_size = beam_size


def partials_may_start(workers: int, running: int) -> bool:
    """Whether a worker may take partials while ``running`` batches run: with several
    workers only if it leaves one free for the next final, so finals never wait behind
    partials, only behind other finals."""
    return workers == 1 or running + 1 < workers


def share_finals(policy: SchedulingPolicy, queued_finals: int, idle: int) -> SchedulingPolicy:
    """The policy for the next batch: queued finals shared out among the ``idle``
    workers instead of all going to the first one (two finals on two cores beat a batch
    of two on one)."""
    if idle <= 1 or queued_finals <= 1:
        return policy
    share = -(-queued_finals // idle)
    return dataclasses.replace(policy, max_batch=min(policy.max_batch, share))


def partials_over_share(policy: SchedulingPolicy, partial_busy_s: float, workers: int) -> bool:
    """Partial-only batches took their ``max_partial_share`` of the last
    ``PARTIAL_SHARE_WINDOW_S`` (``partial_busy_s`` engine seconds) on the workers that
    may run partials."""
    if policy.max_partial_share >= 1.0:
        return False
    slots = max(1, workers - 1)
    return partial_busy_s >= policy.max_partial_share * PARTIAL_SHARE_WINDOW_S * slots
