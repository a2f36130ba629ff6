"""What the server says about itself: ``/readyz`` (model, device, sessions) and, when
it exposes ``/metrics``, what happened inside it during a step.

A client sees only end-to-end latency. The server's own counters split it: engine
batch size, the share of the step the engine was busy, and the server-side final
latency (final requested → sent, so without the endpointing wait). They are diffs of
two scrapes, one before and one after the step; without ``/metrics`` they are None.
"""

from __future__ import annotations

import json
import math
import re
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

Samples = dict[str, float]
"""Sample line (name plus labels, as exposed) → value."""

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LE = re.compile(r'le="([^"]+)"')
BATCH_SIZE = "earshot_engine_batch_size"
BUSY_SECONDS = "earshot_engine_busy_seconds_total"
FINAL_LATENCY = "earshot_final_latency_seconds"
STALE_PARTIALS = "earshot_engine_stale_partials_dropped_total"
WORKERS = "earshot_engine_workers"


def http_base(url: str) -> str:
    """``ws://host:port/v1/listen`` → ``http://host:port``."""
    parts = urlsplit(url)
    scheme = "https" if parts.scheme in ("wss", "https") else "http"
    return f"{scheme}://{parts.netloc}"


def readyz(base: str, timeout: float = 5.0) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=timeout) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data
    except urllib.error.HTTPError as exc:  # 503 while draining still has a body
        data = json.loads(exc.read() or b"{}")
        return data


def scrape(base: str, timeout: float = 5.0) -> Samples | None:
    """Every sample on ``/metrics``, or None when the server has none."""
    try:
        with urllib.request.urlopen(base + "/metrics", timeout=timeout) as response:
            return parse(response.read().decode("utf-8", "replace"))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def parse(text: str) -> Samples:
    samples: Samples = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


def total(samples: Samples, name: str) -> float | None:
    """Sum of ``name`` over all its label sets; None if the server doesn't export it."""
    values = [v for key, v in samples.items() if key == name or key.startswith(name + "{")]
    return sum(values) if values else None


def delta(before: Samples, after: Samples, name: str) -> float | None:
    start, end = total(before, name), total(after, name)
    return None if start is None or end is None else end - start


def histogram_quantile(before: Samples, after: Samples, name: str, q: float) -> float | None:
    """Quantile of what a histogram observed between two scrapes (Prometheus-style
    linear interpolation inside the bucket)."""
    counts: dict[float, float] = defaultdict(float)
    for snapshot, sign in ((after, 1.0), (before, -1.0)):
        for key, value in snapshot.items():
            if key.startswith(name + "_bucket"):
                le = _LE.search(key)
                if le:
                    counts[float(le.group(1))] += sign * value
    buckets = sorted(counts.items())
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower_bound
            share = (rank - lower_count) / (cumulative - lower_count or 1.0)
            return round(lower_bound + (bound - lower_bound) * share, 3)
        lower_bound, lower_count = bound, cumulative
    return None


@dataclass(frozen=True)
class ServerView:
    """The server's own account of one step; None where ``/metrics`` doesn't say."""

    batch_size_mean: float | None = None
    engine_busy_ratio: float | None = None
    """Share of the step's wall time the engine's workers spent transcribing."""
    server_final_p50: float | None = None
    server_final_p95: float | None = None
    """Final requested → sent, inside the server (final latency minus endpointing)."""
    stale_partials_dropped: int | None = None
    """Partials shed unprocessed because the engine was busy with finals."""


def server_view(before: Samples | None, after: Samples | None, wall_s: float) -> ServerView:
    if before is None or after is None:
        return ServerView()
    batches = delta(before, after, BATCH_SIZE + "_count")
    requests = delta(before, after, BATCH_SIZE + "_sum")
    busy = delta(before, after, BUSY_SECONDS)
    capacity = wall_s * (total(after, WORKERS) or 1)
    stale = delta(before, after, STALE_PARTIALS)
    return ServerView(
        batch_size_mean=round(requests / batches, 3) if batches and requests else None,
        engine_busy_ratio=round(busy / capacity, 3) if busy is not None and wall_s else None,
        server_final_p50=histogram_quantile(before, after, FINAL_LATENCY, 0.5),
        server_final_p95=histogram_quantile(before, after, FINAL_LATENCY, 0.95),
        stale_partials_dropped=None if stale is None else int(stale),
    )
