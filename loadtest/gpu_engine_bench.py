"""Earshot's own engine on a GPU: batch cost through ``WhisperEngine`` and the capacity it implies.

Run (model: a CTranslate2 Whisper folder; ``python -m loadtest.random_model DIR``
writes a random-weight large-v3-turbo-shaped one)::

    python -m loadtest.gpu_engine_bench --model DIR --device cuda --compute-type float16 \\
        --out loadtest/results/gpu_h100_engine.json --plot loadtest/results/gpu_h100_engine.png
    python -m loadtest.gpu_engine_bench --simulate-only loadtest/results/gpu_h100_engine.json

What it measures (``measure_engine``), for every window bucket and batch size 1-64: one
``WhisperEngine.transcribe`` call on a batch of requests whose audio just fits the
bucket, split into host-side features (``window_features``), ``encode``, ``generate``
and the rest (prompts, detokenising, filters: Python overhead). The engine's per-call
token budget is pinned to ``--tokens`` and its runaway guard is off *in this process
only*, so every batch decodes about the same number of steps whatever a random-weight
model says. ``host_costs`` times, on the same machine's CPU, feature extraction per
utterance against audio length (and in threads), and Silero VAD per 100 ms chunk.

What it simulates (``simulate``): N real-time streams alternating speech and pauses.
Each segment makes a *final* when it ends and, optionally, *partials* while it lasts.
The scheduler is the product's: batches are picked by ``earshot.scheduler.select_batch``
under a ``SchedulingPolicy`` (the wait is the engine thread's: up to ``batch_wait_s``
or until the next request arrives). A batch costs what the engine does with it: the
requests are grouped by window bucket, each group pays its measured encode and decode
(decode scaled by the longest token count in the group) plus features for each
request's audio, plus the measured per-batch and per-request overhead. Final latency
runs from the end of the utterance (final submitted) to the end of its batch: VAD
end-pointing delay and the network are not included. Capacity: the largest N with
p95 final latency <= 500 ms (with partials also partial p95 <= 1 s and at least half of
them delivered).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

_REPO = Path(__file__).resolve().parents[1]
try:
    import earshot  # noqa: F401
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(_REPO / "server"))

from earshot.scheduler import Pending, Queues, SchedulingPolicy, select_batch  # noqa: E402
from earshot.transcript import Priority, TranscriptionRequest  # noqa: E402
from earshot.windows import FULL_WINDOW, choose_window, token_budget  # noqa: E402

HOP = 160
BUCKETS = (500, 1000, 1500, 2000, 3000)
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
MIN_TAIL = 100


def _gpu_name() -> str | None:
    """``nvidia-smi``'s name, driver and memory of the GPU(s), or None without one."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def _ints(text: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]`` (for list-valued options)."""
    return [int(x) for x in text.split(",") if x]


# --------------------------------------------------------------------------------------
# Measurement through WhisperEngine
# --------------------------------------------------------------------------------------


class _Timed:
    """Stands in for the engine's ``ctranslate2.models.Whisper``: times its GPU calls."""

    TIMED = ("encode", "generate", "detect_language")

    def __init__(self, inner: Any, log: list[tuple[str, float, int]]) -> None:
        self._inner = inner
        self._log = log

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in self.TIMED:
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            out = attr(*args, **kwargs)
            ms = (time.perf_counter() - t) * 1000
            steps = (
                max((len(r.sequences_ids[0]) for r in out), default=0) if name == "generate" else 0
            )
            self._log.append((name, ms, steps))
            return out

        return timed


@contextmanager
def _pinned_decode(tokens: int) -> Iterator[None]:
    """Every decode gets ``tokens`` steps and no runaway re-run (this process only).

    CTranslate2's Whisper ``generate`` decodes at most ``max_length / 2`` tokens (and at
    most ``max_length`` minus the prompt), so the engine's budget is pinned to twice the
    steps wanted.
    """
    import earshot.engine as engine_module

    saved = engine_module.token_budget, engine_module.looks_like_runaway
    engine_module.token_budget = lambda duration_s: 2 * tokens
    engine_module.looks_like_runaway = lambda *args: False
    try:
        yield
    finally:
        engine_module.token_budget, engine_module.looks_like_runaway = saved


def measure_engine(
    model_dir: str,
    device: str,
    compute_type: str,
    buckets: Sequence[int] = BUCKETS,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    tokens: int = 20,
    repeats: int = 3,
    warmup: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    from earshot.config import EngineConfig
    from earshot.engine import WhisperEngine

    t0 = time.perf_counter()
    engine = WhisperEngine(
        EngineConfig(
            model=model_dir,
            device=device,
            compute_type=compute_type,
            window_buckets=tuple(buckets),
            min_tail_frames=MIN_TAIL,
        )
    )
    load_s = time.perf_counter() - t0
    log: list[tuple[str, float, int]] = []
    engine._ct2 = _Timed(engine._ct2, log)
    features = engine._features

    def timed_features(group: list[TranscriptionRequest], window: int) -> Any:
        t = time.perf_counter()
        out = features(group, window)
        log.append(("features", (time.perf_counter() - t) * 1000, 0))
        return out

    engine._features = timed_features  # type: ignore[method-assign]  # this instance only
    rng = np.random.default_rng(seed)
    n_mels = int(engine._model.feature_extractor.mel_filters.shape[0])

    def run(requests: list[TranscriptionRequest]) -> dict[str, float]:
        log.clear()
        t = time.perf_counter()
        transcripts = engine.transcribe(requests)
        total = (time.perf_counter() - t) * 1000
        assert len(transcripts) == len(requests)
        assert engine.last_stats.encoder_calls == 1 and engine.last_stats.fallbacks == 0
        parts = {k: sum(ms for n, ms, _ in log if n == k) for k in ("features", *_Timed.TIMED)}
        parts["steps"] = max((s for n, _, s in log if n == "generate"), default=0)
        parts["total"] = total
        parts["other"] = total - sum(parts[k] for k in ("features", *_Timed.TIMED))
        return parts

    first_call_s = None
    rows: list[dict[str, Any]] = []
    with _pinned_decode(tokens):
        for frames in buckets:
            seconds = (frames - MIN_TAIL) / 100 if frames < FULL_WINDOW else 29.0
            audio = (0.05 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
            for batch in batch_sizes:
                reqs = [
                    TranscriptionRequest(audio=audio, priority=Priority.FINAL, language="en")
                    for _ in range(batch)
                ]
                samples = []
                for i in range(warmup + repeats):
                    t = time.perf_counter()
                    r = run(reqs)
                    if first_call_s is None:
                        first_call_s = time.perf_counter() - t
                    if i >= warmup:
                        samples.append(r)
                med = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
                row = {
                    "frames": frames,
                    "batch": batch,
                    "audio_s": seconds,
                    "decode_steps": int(med["steps"]),
                    "features_ms": round(med["features"], 3),
                    "encode_ms": round(med["encode"], 3),
                    "decode_ms": round(med["generate"], 3),
                    "other_ms": round(med["other"], 3),
                    "total_ms": round(med["total"], 3),
                    "total_ms_min_max": [
                        round(min(s["total"] for s in samples), 3),
                        round(max(s["total"] for s in samples), 3),
                    ],
                    "utterances_per_s": round(batch / (med["total"] / 1000), 2),
                    "gpu_ms": round(med["encode"] + med["generate"], 3),
                    "host_share": round((med["features"] + med["other"]) / med["total"], 3),
                }
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
        # Language detection (no language given): one more decoder pass per batch.
        detect = []
        if engine.multilingual:
            audio = (0.05 * rng.standard_normal(9 * 16000)).astype(np.float32)
            for batch in (1, 8, 32):
                reqs = [TranscriptionRequest(audio=audio, priority=Priority.FINAL)] * batch
                run(reqs)
                r = run(reqs)
                detect.append(
                    {
                        "frames": 1000,
                        "batch": batch,
                        "detect_language_ms": round(r["detect_language"], 3),
                    }
                )
    import ctranslate2

    return {
        "model": model_dir,
        "device": engine.device,
        "compute_type": engine.compute_type,
        "n_mels": n_mels,
        "multilingual": engine.multilingual,
        "tokens_per_utterance": tokens,
        "repeats": repeats,
        "warmup": warmup,
        "model_load_s": round(load_s, 3),
        "first_call_s": round(first_call_s or 0.0, 3),
        "gpu": _gpu_name(),
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "ctranslate2": ctranslate2.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "rows": rows,
        "detect_language": detect,
    }


def _map_features(pool: ThreadPoolExecutor, extractor: Any, batch: list[np.ndarray]) -> list[Any]:
    from earshot.engine import window_features

    return list(pool.map(lambda a: window_features(extractor, a, 1000), batch))


def host_costs(n_mels: int = 128, seed: int = 0) -> dict[str, Any]:
    """Feature extraction per utterance (vs audio length, and in threads) and Silero VAD."""
    from faster_whisper.feature_extractor import FeatureExtractor

    from earshot.engine import window_features

    extractor = FeatureExtractor(feature_size=n_mels)
    rng = np.random.default_rng(seed)
    buckets = (1000, 1500, 2000, 3000)

    def best_ms(fn: Callable[[], Any], n: int = 7) -> float:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
        return statistics.median(times)

    feats = []
    for seconds in (0.5, 1.0, 2.0, 4.0, 6.0, 9.0, 14.0, 19.0, 29.0):
        audio = (0.05 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
        window = choose_window(len(audio) // HOP + 1, buckets, MIN_TAIL)

        def whole(audio: np.ndarray = audio, window: int = window) -> np.ndarray:
            padded = np.zeros(window * HOP, np.float32)
            padded[: len(audio)] = audio
            return np.asarray(extractor(padded, padding=0)[:, :window])

        fast = window_features(extractor, audio, window)
        assert np.allclose(fast, whole(), atol=1e-5), "trimmed features differ from whole ones"
        feats.append(
            {
                "audio_s": seconds,
                "window": window,
                "trimmed_ms": round(best_ms(partial(window_features, extractor, audio, window)), 3),
                "whole_window_ms": round(best_ms(whole), 3),
            }
        )
    xs = [f["audio_s"] for f in feats]
    ys = [f["trimmed_ms"] for f in feats]
    slope, intercept = np.polyfit(xs, ys, 1)
    threads = []
    batch = [(0.05 * rng.standard_normal(8 * 16000)).astype(np.float32) for _ in range(32)]
    for n in (1, 2, 4, 8):
        with ThreadPoolExecutor(n) as pool:
            ms = best_ms(partial(_map_features, pool, extractor, batch), 5)
        threads.append({"threads": n, "batch": 32, "audio_s": 8.0, "ms": round(ms, 3)})
    vad: dict[str, Any] = {}
    try:
        from earshot.vad import SileroVad

        model = SileroVad()
        audio = (0.05 * rng.standard_normal(60 * 16000)).astype(np.float32)
        chunk = 1600  # 100 ms, the SDK's default
        stream = model.stream()
        for i in range(0, 16000, chunk):
            stream.process(audio[i : i + chunk])
        t = time.perf_counter()
        for i in range(0, len(audio), chunk):
            stream.process(audio[i : i + chunk])
        per_audio_s = (time.perf_counter() - t) / 60.0
        vad = {
            "chunk_ms": 100,
            "us_per_chunk": round(per_audio_s * 1e6 / 10, 1),
            "us_per_frame": round(per_audio_s * 1e6 / (16000 / 512), 1),
            "core_share_per_stream": round(per_audio_s, 5),
            "streams_per_core": int(1 / per_audio_s),
        }
    except Exception as exc:  # onnxruntime missing: report, don't fail the benchmark
        vad = {"error": repr(exc)}
    return {
        "features": feats,
        "features_fit_ms": {
            "intercept": round(float(intercept), 4),
            "per_audio_s": round(float(slope), 4),
        },
        "features_threads": threads,
        "vad": vad,
        "n_mels": n_mels,
        "cpu_count": os.cpu_count(),
    }


# --------------------------------------------------------------------------------------
# Cost model and simulation
# --------------------------------------------------------------------------------------


@dataclass
class EngineCost:
    """Batch cost of ``WhisperEngine.transcribe`` from measured rows (ms)."""

    tokens: int
    buckets: list[int]
    enc: dict[int, list[tuple[int, float]]]
    dec: dict[int, list[tuple[int, float]]]
    features_ms: tuple[float, float] = (0.0, 0.0)
    """Per request: intercept + per second of audio."""
    overhead_ms: tuple[float, float] = (0.0, 0.0)
    """Per batch + per request (Python: prompts, detokenising, filters)."""
    min_tail: int = MIN_TAIL
    engine_buckets: tuple[int, ...] = (1000, 1500, 2000, 3000)
    """The engine's ``window_buckets`` in the simulated server (EngineConfig's default)."""

    @classmethod
    def from_result(cls, result: dict[str, Any], *, host: bool = True) -> EngineCost:
        rows = result["rows"]
        buckets = sorted({r["frames"] for r in rows})
        enc: dict[int, list[tuple[int, float]]] = {b: [] for b in buckets}
        dec: dict[int, list[tuple[int, float]]] = {b: [] for b in buckets}
        for r in sorted(rows, key=lambda r: r["batch"]):
            enc[r["frames"]].append((r["batch"], r["encode_ms"]))
            dec[r["frames"]].append((r["batch"], r["decode_ms"]))
        cost = cls(result["tokens_per_utterance"], buckets, enc, dec)
        if host and "other_ms" in rows[0]:
            fit = result.get("host", {}).get("features_fit_ms")
            if fit:
                cost.features_ms = (fit["intercept"], fit["per_audio_s"])
            xs = np.array([r["batch"] for r in rows], float)
            ys = np.array([r["other_ms"] for r in rows], float)
            per_request, per_batch = np.polyfit(xs, ys, 1)
            cost.overhead_ms = (max(0.0, float(per_batch)), max(0.0, float(per_request)))
        return cost

    def window(self, audio_s: float) -> int:
        return choose_window(math.ceil(audio_s * 100), self.engine_buckets, self.min_tail)

    @staticmethod
    def _interp(points: list[tuple[int, float]], n: int) -> float:
        if n <= points[0][0]:
            return points[0][1] * n / points[0][0]
        for (b0, v0), (b1, v1) in itertools.pairwise(points):
            if n <= b1:
                return v0 + (v1 - v0) * (n - b0) / (b1 - b0)
        b_last, v_last = points[-1]
        return v_last * n / b_last  # past the largest measured batch: linear

    def group_ms(self, window: int, n: int, max_tokens: int) -> float:
        w = next((b for b in self.buckets if b >= window), self.buckets[-1])
        return (
            self._interp(self.enc[w], n) + self._interp(self.dec[w], n) * max_tokens / self.tokens
        )

    def batch_ms(self, items: Sequence[tuple[float, int]]) -> float:
        """Cost of one engine call on ``(audio seconds, tokens)`` requests."""
        groups: dict[int, list[int]] = {}
        for audio_s, tokens in items:
            groups.setdefault(self.window(audio_s), []).append(tokens)
        gpu = sum(self.group_ms(w, len(t), max(t)) for w, t in groups.items())
        feats = sum(self.features_ms[0] + self.features_ms[1] * a for a, _ in items)
        return gpu + feats + self.overhead_ms[0] + self.overhead_ms[1] * len(items)


@dataclass(frozen=True)
class Workload:
    name: str
    segment_s: tuple[float, float] = (2.0, 8.0)
    """Uniform speech-segment length (the server cuts utterances at 15 s by default)."""
    pause_s: tuple[float, float] = (0.5, 1.5)
    partial_every_s: float | None = None
    tokens_per_s: float = 4.0
    min_tokens: int = 4


WORKLOADS = (
    Workload("finals_only"),
    Workload("finals_and_partials_0.6s_server_default", partial_every_s=0.6),
    Workload("finals_and_partials_1s", partial_every_s=1.0),
    Workload("finals_and_partials_2s", partial_every_s=2.0),
    Workload("long_utterances_1_15s_partials_1s", segment_s=(1.0, 15.0), partial_every_s=1.0),
)


@dataclass(frozen=True)
class SimParams:
    duration_s: float = 60.0
    warmup_s: float = 10.0
    target_p95_ms: float = 500.0
    partial_p95_max_ms: float = 1000.0
    partial_min_delivered: float = 0.5
    seed: int = 1


@dataclass(order=True)
class _Job:
    submit: float
    stream: int = field(compare=False)
    utterance: int = field(compare=False)
    final: bool = field(compare=False)
    audio_s: float = field(compare=False)
    tokens: int = field(compare=False)


def _make_jobs(n_streams: int, w: Workload, p: SimParams) -> list[_Job]:
    rng = random.Random(p.seed)
    jobs: list[_Job] = []
    end = p.warmup_s + p.duration_s

    def tokens(seconds: float) -> int:
        # Decode steps: the words (plus end of text), within what CT2 allows the engine's
        # budget (max_length / 2).
        spoken = max(w.min_tokens, math.ceil(seconds * w.tokens_per_s)) + 1
        return min(token_budget(seconds) // 2, spoken)

    for s in range(n_streams):
        t = rng.uniform(0.0, w.segment_s[1] + w.pause_s[1])
        u = 0
        while t < end:
            seg = rng.uniform(*w.segment_s)
            if w.partial_every_s:
                k = 1
                while k * w.partial_every_s < seg:
                    dur = k * w.partial_every_s
                    jobs.append(_Job(t + dur, s, u, False, dur, tokens(dur)))
                    k += 1
            jobs.append(_Job(t + seg, s, u, True, seg, tokens(seg)))
            t += seg + rng.uniform(*w.pause_s)
            u += 1
    jobs.sort()
    return jobs


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, math.ceil(q / 100 * len(xs)) - 1)]


def simulate(
    n_streams: int, w: Workload, policy: SchedulingPolicy, cost: EngineCost, p: SimParams
) -> dict[str, Any]:
    """One engine thread serving ``n_streams`` streams with the product's ``select_batch``."""
    jobs = _make_jobs(n_streams, w, p)
    queues = Queues()
    job_of: dict[int, _Job] = {}
    final_lat: list[float] = []
    partial_lat: list[float] = []
    superseded = stale = 0
    busy = 0.0
    batches = sizes = 0
    end = p.warmup_s + p.duration_s
    i, n, now = 0, len(jobs), 0.0
    silence = np.zeros(1, np.float32)

    def admit(until: float) -> None:
        nonlocal i, superseded
        while i < n and jobs[i].submit <= until:
            j = jobs[i]
            audio = np.broadcast_to(silence, (int(j.audio_s * 16000),))
            req = TranscriptionRequest(
                audio=audio,
                priority=Priority.FINAL if j.final else Priority.PARTIAL,
                owner=str(j.stream),
                utterance=j.utterance,
            )
            job_of[req.id] = j
            pending = Pending(req, lambda r, t: None, j.submit)
            key = (req.owner, req.utterance)
            if j.final:
                queues.finals.append(pending)
                superseded += queues.partials.pop(key, None) is not None
            else:
                superseded += queues.partials.pop(key, None) is not None
                queues.partials[key] = pending
            i += 1

    while True:
        admit(now)
        if not len(queues):
            if i >= n:
                break
            now = jobs[i].submit
            continue
        if policy.batch_wait_s > 0 and len(queues) < policy.max_batch:
            # The engine thread's cond.wait(batch_wait_s): ends at the next submit.
            now = min(now + policy.batch_wait_s, jobs[i].submit if i < n else math.inf)
            admit(now)
        batch, dropped = select_batch(queues, policy, now)
        stale += dropped
        if not batch:
            continue
        items = [(job_of[b.request.id].audio_s, job_of[b.request.id].tokens) for b in batch]
        ms = cost.batch_ms(items)
        busy += max(0.0, min(now + ms / 1000, end) - max(now, p.warmup_s))
        now += ms / 1000
        batches += 1
        sizes += len(batch)
        for b in batch:
            j = job_of.pop(b.request.id)
            if p.warmup_s <= j.submit < end:
                (final_lat if j.final else partial_lat).append((now - j.submit) * 1000)
        if now > end + 30.0:  # hopelessly behind: the tail is meaningless
            final_lat.append(math.inf)
            break
    submitted = sum(1 for j in jobs if not j.final and p.warmup_s <= j.submit < end)
    return {
        "streams": n_streams,
        "finals": len(final_lat),
        "final_p50_ms": round(_pct(final_lat, 50), 1),
        "final_p95_ms": round(_pct(final_lat, 95), 1),
        "final_p99_ms": round(_pct(final_lat, 99), 1),
        "partials_done": len(partial_lat),
        "partial_p95_ms": round(_pct(partial_lat, 95), 1),
        "partials_superseded": superseded,
        "partials_stale": stale,
        "partials_delivered": round(len(partial_lat) / submitted, 3) if submitted else None,
        "gpu_busy": round(busy / p.duration_s, 3),
        "batches": batches,
        "mean_batch": round(sizes / batches, 1) if batches else 0.0,
    }


def capacity(
    w: Workload, policy: SchedulingPolicy, cost: EngineCost, p: SimParams, upper: int = 8000
) -> dict[str, Any]:
    """Largest stream count meeting the SLO (doubling, then bisection to ~2%)."""

    def ok(k: int) -> tuple[bool, dict[str, Any]]:
        r = simulate(k, w, policy, cost, p)
        passed = r["final_p95_ms"] <= p.target_p95_ms
        if w.partial_every_s:
            passed = passed and r["partial_p95_ms"] <= p.partial_p95_max_ms
            passed = passed and (r["partials_delivered"] or 0.0) >= p.partial_min_delivered
        return passed, r

    good, good_r, bad, k = 0, None, upper, 16
    while k <= upper:
        passed, r = ok(k)
        if not passed:
            bad = k
            break
        good, good_r = k, r
        k *= 2
    while bad - good > max(2, good // 50):
        mid = (good + bad) // 2
        passed, r = ok(mid)
        if passed:
            good, good_r = mid, r
        else:
            bad = mid
    return {"max_streams": good, "at_max": good_r, "first_failing": bad}


def _policy_name(policy: SchedulingPolicy) -> dict[str, Any]:
    out = {
        "max_batch": policy.max_batch,
        "batch_wait_ms": round(policy.batch_wait_s * 1000, 1),
        "max_partials": policy.max_partials,
    }
    for extra in ("max_batch_cost_ms",):
        if hasattr(policy, extra):
            out[extra] = getattr(policy, extra)
    return out


def capacity_report(
    result: dict[str, Any],
    policies: Sequence[SchedulingPolicy],
    workloads: Sequence[Workload] = WORKLOADS,
    *,
    host: bool = True,
    p: SimParams | None = None,
) -> dict[str, Any]:
    """Capacity of every workload under every policy, and the best policy per workload."""
    cost = EngineCost.from_result(result, host=host)
    p = p or SimParams()
    out: dict[str, Any] = {
        "cost_model": {
            "features_ms_per_request": {
                "intercept": cost.features_ms[0],
                "per_audio_s": cost.features_ms[1],
            },
            "overhead_ms": {
                "per_batch": round(cost.overhead_ms[0], 3),
                "per_request": round(cost.overhead_ms[1], 3),
            },
            "buckets": cost.buckets,
        },
        "sim": asdict(p),
        "latency_counts": "from the end of the utterance (final submitted) to the end of its "
        "engine batch: GPU encode + decode, host features and Python overhead as measured "
        "through WhisperEngine; VAD end-pointing delay, event-loop delays and the network "
        "are not included",
        "workloads": {},
    }
    for w in workloads:
        runs = []
        for policy in policies:
            c = capacity(w, policy, cost, p)
            runs.append({**_policy_name(policy), **c})
            print(
                json.dumps({w.name: c["max_streams"], **_policy_name(policy)}),
                file=sys.stderr,
                flush=True,
            )
        best = max(runs, key=lambda r: r["max_streams"])
        out["workloads"][w.name] = {"workload": asdict(w), "best": best, "runs": runs}
        if w.partial_every_s:  # the SLO alone: partials may thin out under load
            relaxed = replace(p, partial_p95_max_ms=math.inf, partial_min_delivered=0.0)
            c = capacity(w, policies[0], cost, relaxed)
            out["workloads"][w.name]["final_slo_only"] = {**_policy_name(policies[0]), **c}
    vad = result.get("host", {}).get("vad", {})
    if vad.get("core_share_per_stream"):
        out["event_loop_vad_bound_streams"] = {
            "streams": int(1 / vad["core_share_per_stream"]),
            "why": "Silero VAD runs on the server's one asyncio thread: streams whose VAD "
            "alone fills one core (before WebSocket handling and the engine thread's "
            "Python, which share the same GIL); not in the simulation above",
        }
    return out


def policy_grid(base: SchedulingPolicy) -> list[SchedulingPolicy]:
    """Batch caps at the default wait, then other waits at the default cap."""
    grid = [replace(base, max_batch=b, max_partials=b) for b in (8, 12, 16, 24, 32, 48, 64)]
    waits = [w for w in (0.0, 5.0, 10.0, 20.0) if w / 1000 != base.batch_wait_s]
    grid += [replace(base, batch_wait_s=w / 1000) for w in waits]
    return grid


# --------------------------------------------------------------------------------------
# Plot and CLI
# --------------------------------------------------------------------------------------


def plot(result: dict[str, Any], path: str | Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = result["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for frames in sorted({r["frames"] for r in rows}):
        rs = [r for r in rows if r["frames"] == frames]
        xs = [r["batch"] for r in rs]
        axes[0].plot(xs, [r["total_ms"] for r in rs], marker="o", label=f"{frames} frames: engine")
        axes[0].plot(xs, [r["gpu_ms"] for r in rs], linestyle=":", label=f"{frames}: GPU only")
    r32 = [r for r in rows if r["batch"] == max(r["batch"] for r in rows if r["batch"] <= 32)]
    labels = [str(r["frames"]) for r in r32]
    bottom = np.zeros(len(r32))
    for key in ("features_ms", "encode_ms", "decode_ms", "other_ms"):
        vals = np.array([r[key] for r in r32])
        axes[1].bar(labels, vals, bottom=bottom, label=key.removesuffix("_ms"))
        bottom += vals
    axes[0].set_xscale("log", base=2)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("batch size")
    axes[0].set_ylabel("ms per WhisperEngine.transcribe call")
    axes[0].grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].set_xlabel(f"window (frames), batch {r32[0]['batch']}")
    axes[1].set_ylabel("ms")
    axes[1].legend(fontsize=8)
    where = result.get("gpu") or result["device"]
    fig.suptitle(
        f"{Path(result['model']).name} {result['compute_type']} through WhisperEngine on {where}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    from earshot.config import default_policy

    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--model", help="CTranslate2 Whisper model folder")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--compute-type", default="float16")
    ap.add_argument("--buckets", type=_ints, default=list(BUCKETS))
    ap.add_argument("--batch-sizes", type=_ints, default=list(BATCH_SIZES))
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--no-host", action="store_true", help="skip the CPU feature/VAD timings")
    ap.add_argument("--no-sim", action="store_true", help="skip the capacity simulation")
    ap.add_argument(
        "--grid", action="store_true", help="simulate a grid of policies, not just the default"
    )
    ap.add_argument(
        "--simulate-only", metavar="JSON", help="re-run the simulation on saved measurements"
    )
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--plot", help="write a PNG here (needs matplotlib)")
    args = ap.parse_args(argv)

    if args.simulate_only:
        result = json.loads(Path(args.simulate_only).read_text())
    else:
        if not args.model:
            ap.error("--model is required")
        result = measure_engine(
            args.model,
            args.device,
            args.compute_type,
            args.buckets,
            args.batch_sizes,
            args.tokens,
            args.repeats,
            args.warmup,
        )
        if not args.no_host:
            result["host"] = host_costs(result["n_mels"])
    if not args.no_sim:
        base = default_policy("cuda")
        policies = policy_grid(base) if args.grid else [base]
        t = time.perf_counter()
        result["capacity_p95_500ms"] = capacity_report(result, policies)
        result["capacity_p95_500ms"]["default_policy"] = _policy_name(base)
        if args.grid and "host" in result:  # what host-side costs take away
            free = capacity_report(result, [base], host=False)
            result["capacity_p95_500ms"]["without_host_costs"] = {
                name: w["best"]["max_streams"] for name, w in free["workloads"].items()
            }
        result["capacity_p95_500ms"]["simulation_s"] = round(time.perf_counter() - t, 1)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    if args.plot and not plot(result, args.plot):
        print("matplotlib not installed: no plot", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
