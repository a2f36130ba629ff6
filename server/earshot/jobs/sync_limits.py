"""Bounds on the synchronous endpoint (``POST /v1/audio/transcriptions``): how many
requests run at once, in all and per API key, and the threads they get.

A synchronous request holds its whole decoded file in memory and a connection open
until the engine has gone through it, so unbounded it would let one client queue
hours of audio (and memory) behind live streams. Over a bound the endpoint answers 429
at once with ``Retry-After`` (before the upload is read). Its blocking steps (the
upload's copy to disk, the speech split) run in a thread pool of its own, sized to the
global bound, so they never wait behind (or hold up) the SQLite calls and upload probes
in the event loop's default pool.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field


@dataclass
class SyncSlot:
    """One running request's share of the bounds; ``release`` once, when it ends."""

    limiter: SyncLimiter
    key: str
    _released: bool = field(default=False, repr=False)

    def release(self, seconds: float | None = None) -> None:
        if not self._released:
            self._released = True
            self.limiter._release(self.key, seconds)


class SyncLimiter:
    """At most ``total`` requests at once, and ``per_key`` of one key."""

    def __init__(self, total: int, per_key: int) -> None:
        self.total = max(1, total)
        self.per_key = max(1, min(per_key, self.total))
        self._running: dict[str, int] = {}
        self._lock = threading.Lock()
        self._typical_s = 5.0
        """Moving average of how long a request ran: what ``retry_after_s`` says."""
        self.executor = ThreadPoolExecutor(self.total, thread_name_prefix="earshot-sync")

    @property
    def running(self) -> int:
        with self._lock:
            return sum(self._running.values())

    def acquire(self, key: str) -> SyncSlot | None:
        """A slot for ``key``, or None when the server or that key is at its bound."""
        with self._lock:
            if sum(self._running.values()) >= self.total:
                return None
            if self._running.get(key, 0) >= self.per_key:
                return None
            self._running[key] = self._running.get(key, 0) + 1
            return SyncSlot(self, key)

    def _release(self, key: str, seconds: float | None) -> None:
        with self._lock:
            left = self._running.get(key, 0) - 1
            if left > 0:
                self._running[key] = left
            else:
                self._running.pop(key, None)
            if seconds is not None:
                self._typical_s = 0.8 * self._typical_s + 0.2 * seconds

    def retry_after_s(self) -> int:
        """Seconds a refused caller should wait: about how long a request takes."""
        with self._lock:
            return min(60, max(1, math.ceil(self._typical_s)))

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
