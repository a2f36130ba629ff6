"""How busy the engine's workers were lately: load accounting over bounded windows.

Theory of operation
-------------------
State: three ``BusyWindow`` rings of fixed time slots. Each finished engine call adds
its duration to the slots it covered: all of it to ``busy``, its finals' share of it to
``finals`` (the work that must be done, as opposed to partials, which fill whatever time
is left), and — if it ran only partials — all of it to ``partial``. A ring keeps just
``horizon_s`` of history: a slot is zeroed and reused when the clock moves past it, so
memory is fixed at construction whatever the rate of calls or the uptime (an earlier
version kept one tuple per partial-only call and trimmed them only while partials were
throttled, i.e. never with ``max_partial_share >= 1``: it grew for the life of the
process).

Readers ask for the engine-seconds in ``[now - window_s, now]``; the slot holding the
window's start counts pro rata, so a sum is exact to within one slot (10–50 ms) at
that edge. Calls are recorded when they end: a decode still running isn't counted yet.

Who reads it: admission control and the ``busy_ratio`` gauge (the finals' and total
share over 10 s), and the scheduler's partial throttle (partial-only seconds over the
last 2 s). One lock guards the rings; it is taken last (never while calling out).
"""

from __future__ import annotations

import math
import threading
import time
from array import array

BUSY_HISTORY_S = 60.0
"""The longest window ``busy_ratio`` can be asked about."""
BUSY_SLOT_S = 0.05
PARTIAL_SLOT_S = 0.01


class BusyWindow:
    """Engine-seconds per time slot over the last ``horizon_s``: a ring of fixed size."""

    def __init__(self, horizon_s: float, slot_s: float) -> None:
        self.slot_s = slot_s
        self._slots = array("d", [0.0]) * (math.ceil(horizon_s / slot_s) + 1)
        self._newest: int | None = None
        """Absolute index (time // slot_s) of the newest slot in the ring."""

    def __len__(self) -> int:
        return len(self._slots)

    def _index(self, t: float) -> int:
        return math.floor(t / self.slot_s)

    def _advance(self, index: int) -> int:
        """Make ``index`` the newest slot (if it is newer), zeroing the slots it reuses;
        return the oldest index still held."""
        n = len(self._slots)
        if self._newest is None:
            self._newest = index
        elif index > self._newest:
            for i in range(max(self._newest + 1, index - n + 1), index + 1):
                self._slots[i % n] = 0.0
            self._newest = index
        return self._newest - n + 1

    def add(self, begin: float, end: float, weight: float = 1.0) -> None:
        """Count ``weight`` x the time from ``begin`` to ``end`` (what is still held of it)."""
        if end <= begin or weight == 0.0:
            return
        oldest = self._advance(self._index(end))
        assert self._newest is not None
        n, slot = len(self._slots), self.slot_s
        for i in range(max(self._index(begin), oldest), min(self._index(end), self._newest) + 1):
            part = min(end, (i + 1) * slot) - max(begin, i * slot)
            if part > 0:
                self._slots[i % n] += part * weight

    def total(self, start: float, now: float) -> float:
        """Engine-seconds counted from ``start`` on (its slot pro rata)."""
        oldest = self._advance(self._index(now))
        assert self._newest is not None
        n, slot = len(self._slots), self.slot_s
        first = self._index(start)
        total = 0.0
        for i in range(max(first, oldest), self._newest + 1):
            value = self._slots[i % n]
            if i == first:
                value *= ((i + 1) * slot - start) / slot
            total += value
        return total


class EngineLoad:
    """Busy time of ``workers`` engine workers (thread-safe)."""

    def __init__(self, workers: int, *, partial_window_s: float) -> None:
        self.workers = max(1, workers)
        self._lock = threading.Lock()
        self._busy = BusyWindow(BUSY_HISTORY_S, BUSY_SLOT_S)
        self._finals = BusyWindow(BUSY_HISTORY_S, BUSY_SLOT_S)
        self.partial_window_s = partial_window_s
        self._partial = BusyWindow(partial_window_s, PARTIAL_SLOT_S)

    def record(self, begin: float, end: float, *, finals_share: float, partials_only: bool) -> None:
        """One engine call ran from ``begin`` to ``end``; ``finals_share`` of its requests
        were finals; ``partials_only``: it ran nothing but partials."""
        with self._lock:
            self._busy.add(begin, end)
            self._finals.add(begin, end, finals_share)
            if partials_only:
                self._partial.add(begin, end)

    def busy_ratio(
        self, window_s: float = 10.0, *, finals_only: bool = False, now: float | None = None
    ) -> float:
        """Share of the last ``window_s`` seconds (at most ``BUSY_HISTORY_S``) the
        workers spent transcribing; ``finals_only``: just the finals' share of each call."""
        now = time.monotonic() if now is None else now
        window = self._finals if finals_only else self._busy
        with self._lock:
            busy = window.total(now - window_s, now)
        return min(1.0, busy / (window_s * self.workers))

    def partial_busy_s(self, now: float) -> float:
        """Engine-seconds partial-only calls took in the last ``partial_window_s``."""
        with self._lock:
            return self._partial.total(now - self.partial_window_s, now)

    def footprint(self) -> int:
        """Slots held, all windows together: fixed at construction (tests read it)."""
        return len(self._busy) + len(self._finals) + len(self._partial)
