"""Per-key limits: concurrent streams, requests per minute, upload size, outstanding jobs.

Pure bookkeeping with the clock passed in (testable without sleeping). The web layer
(``access.py``) turns a refusal into HTTP 429 or close 1008; the stream adapter reuses
``TokenBucket`` to pace audio that arrives faster than real time.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class KeyLimits:
    """What one API key may use at once; None means no per-key limit."""

    max_streams: int | None = 16
    requests_per_minute: int | None = 120
    max_upload_bytes: int | None = 100 * MIB
    max_jobs: int | None = 20
    """File jobs the key may have outstanding (queued or running) at once."""
    max_job_bytes: int | None = 500 * MIB
    """Bytes of uploaded audio the key's outstanding jobs may hold (in Redis, in the
    distributed backend) at once."""


UNLIMITED = KeyLimits(
    max_streams=None,
    requests_per_minute=None,
    max_upload_bytes=None,
    max_jobs=None,
    max_job_bytes=None,
)


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` per second: bursts up to capacity, then
    a steady ``rate``."""

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        if capacity <= 0 or rate <= 0:
            raise ValueError("a token bucket needs a positive capacity and rate")
        self.capacity = capacity
        self.rate = rate
        self.tokens = capacity
        self._updated = now

    def _refill(self, now: float) -> None:
        if now > self._updated:
            self.tokens = min(self.capacity, self.tokens + (now - self._updated) * self.rate)
            self._updated = now

    def try_take(self, amount: float, now: float) -> float:
        """Take ``amount`` if available and return 0; else take nothing and return the
        seconds until it would be available (a Retry-After)."""
        self._refill(now)
        if self.tokens >= amount:
            self.tokens -= amount
            return 0.0
        return (amount - self.tokens) / self.rate

    def available_in(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` could be taken (0: now); takes nothing."""
        self._refill(now)
        return max(0.0, (amount - self.tokens) / self.rate)


class LimitTracker:
    """Live per-key counters: open streams and a request-rate bucket per key.

    Keys come from the configured set, so these maps stay small; anonymous use (no keys
    configured) is not tracked here.
    """

    def __init__(self) -> None:
        self._streams: defaultdict[str, int] = defaultdict(int)
        self._buckets: dict[str, TokenBucket] = {}

    def admit_request(self, key_id: str, limits: KeyLimits, now: float) -> float:
        """Count one request against the key's per-minute rate; return 0 when allowed,
        else the seconds until the next one would be (Retry-After)."""
        rpm = limits.requests_per_minute
        if rpm is None:
            return 0.0
        bucket = self._buckets.get(key_id)
        if bucket is None or bucket.capacity != rpm:
            bucket = self._buckets[key_id] = TokenBucket(rpm, rpm / 60.0, now)
        return bucket.try_take(1.0, now)

    def open_stream(self, key_id: str, limits: KeyLimits) -> bool:
        """Claim one of the key's concurrent stream slots (release with ``close_stream``)."""
        if limits.max_streams is not None and self._streams[key_id] >= limits.max_streams:
            return False
        self._streams[key_id] += 1
        return True

    def close_stream(self, key_id: str) -> None:
        self._streams[key_id] -= 1
        if self._streams[key_id] <= 0:
            del self._streams[key_id]

    def streams(self, key_id: str) -> int:
        return self._streams.get(key_id, 0)
