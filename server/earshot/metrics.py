"""Prometheus metrics: one ``Metrics`` object per server, on its own registry.

The session core never sees this module. The WebSocket adapter reports what it does
through a ``SessionObserver`` (one per connection), the scheduler through its batch
listener, and gauges read live state (queue depth, busy ratio, active sessions) at
scrape time, so nothing is sampled on a timer.

Latency is wall time from the moment the adapter handed a request to the scheduler to
the moment the resulting message went out on the socket. ``earshot_realtime_lag_seconds``
is the age of the oldest final that some live session is still waiting for: how far
the transcripts run behind the audio right now (0 when every final is out).

Other components feed it without importing their code here:

* jobs: ``metrics.set_jobs_source(fn)`` where ``fn()`` returns ``{state: count}``
  (e.g. ``{"queued": 2, "running": 1, "done": 40}``); it is read at every scrape and
  exposed as ``earshot_jobs{state=...}``. ``metrics.error(code)`` counts job errors,
  ``metrics.audio_received(s, "file")`` / ``metrics.audio_transcribed(s, "file")`` the audio,
  ``metrics.transcribed(transcript)`` a segment's language or suppression cause. Reach it
  as ``runtime.metrics``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from earshot import __version__
from earshot.scheduler import BatchReport
from earshot.transcript import Priority, Transcript, TranscriptionRequest

LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
ENGINE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0)

Clock = Callable[[], float]


class SchedulerView(Protocol):
    """What the gauges read from the scheduler (``BatchScheduler`` fits)."""

    listeners: list[Callable[[BatchReport], None]]
    workers: int

    def queue_depths(self) -> dict[str, int]: ...
    def oldest_final_wait(self) -> float: ...
    def busy_ratio(self, window_s: float = 10.0, *, finals_only: bool = False) -> float: ...


class _JobsCollector(Collector):
    """``earshot_jobs{state}`` read from whatever source the jobs service registered."""

    def __init__(self) -> None:
        self.source: Callable[[], Mapping[str, int]] | None = None

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("earshot_jobs", "Transcription jobs by state", labels=["state"])
        if self.source is not None:
            for state, count in sorted(self.source().items()):
                family.add_metric([state], count)
        yield family


class Metrics:
    """Every collector of one server. Thread-safe: engine threads report batches."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.build_info = Gauge(
            "earshot_build_info",
            "Always 1; labels say what is running",
            ["version", "model", "device", "compute_type"],
            registry=r,
        )
        self.sessions_active = Gauge(
            "earshot_sessions_active", "Streaming sessions open now", registry=r
        )
        self.sessions = Counter("earshot_sessions", "Streaming sessions accepted", registry=r)
        self.dialect_sessions = Counter(
            "earshot_dialect_sessions",
            "Streaming handshakes by wire dialect (native, deepgram) and outcome"
            " (accepted, refused: busy or draining, denied: bad parameter or access)",
            ["dialect", "outcome"],
            registry=r,
        )
        self.sessions_refused = Counter(
            "earshot_sessions_refused",
            "Streaming sessions refused (close 1013)",
            ["reason"],
            registry=r,
        )
        self.audio_received_s = Counter(
            "earshot_audio_received_seconds", "Audio received", ["source"], registry=r
        )
        self.audio_transcribed_s = Counter(
            "earshot_audio_transcribed_seconds",
            "Audio covered by final transcripts",
            ["source"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "earshot_engine_queue_depth",
            "Requests waiting for the engine",
            ["priority"],
            registry=r,
        )
        self.oldest_final_wait = Gauge(
            "earshot_engine_oldest_final_wait_seconds",
            "How long the oldest queued final has waited for the engine",
            registry=r,
        )
        self.busy_ratio = Gauge(
            "earshot_engine_busy_ratio",
            "Share of the last 10 s the engine's workers spent transcribing",
            registry=r,
        )
        self.busy_s = Counter(
            "earshot_engine_busy_seconds",
            "Time spent in engine calls, summed over workers",
            registry=r,
        )
        self.workers = Gauge(
            "earshot_engine_workers",
            "Engine threads (model replicas) transcribing side by side",
            registry=r,
        )
        self.batch_size = Histogram(
            "earshot_engine_batch_size",
            "Requests per engine call",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "earshot_engine_batch_duration_seconds",
            "Duration of one engine call",
            buckets=ENGINE_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "earshot_engine_queue_wait_seconds",
            "Time a request waited in the queue before its engine call",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.engine_requests = Counter(
            "earshot_engine_requests", "Requests transcribed", ["priority"], registry=r
        )
        self.stale_partials = Counter(
            "earshot_engine_stale_partials_dropped",
            "Partials dropped unprocessed because they grew too old (load shedding)",
            registry=r,
        )
        self.partial_latency = Histogram(
            "earshot_partial_latency_seconds",
            "From partial request to partial message sent",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.final_latency = Histogram(
            "earshot_final_latency_seconds",
            "From utterance end (final requested) to final message sent",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.realtime_lag = Gauge(
            "earshot_realtime_lag_seconds",
            "Age of the oldest final a live session is still waiting for",
            registry=r,
        )
        self.utterances = Counter(
            "earshot_utterances",
            "Final transcripts with text, by language",
            ["language"],
            registry=r,
        )
        self.hallucinations = Counter(
            "earshot_hallucinations_suppressed",
            "Final transcripts blanked as likely hallucinations, by cause",
            ["reason"],
            registry=r,
        )
        self.beams = Counter(
            "earshot_finals_by_beam",
            "Finals and file segments decoded, by beam width (wide while the engine has "
            "room, greedy under load: batch_policy.beam_for)",
            ["beam"],
            registry=r,
        )
        self.errors = Counter("earshot_errors", "Errors by code", ["code"], registry=r)
        self._jobs = _JobsCollector()
        r.register(self._jobs)
        self._lock = threading.Lock()
        self._waiting_finals: dict[tuple[str, int], float] = {}
        self.realtime_lag.set_function(self._lag)
        for reason in ("no_speech", "low_confidence", "repetition"):
            self.hallucinations.labels(reason)  # exported as 0 before the first one
        for reason in ("draining", "overloaded"):
            self.sessions_refused.labels(reason)

    # -- wiring -------------------------------------------------------------------------
    def bind(self, scheduler: SchedulerView, active_sessions: Callable[[], int]) -> None:
        """Read live state from the scheduler and admission at scrape time."""
        for priority in ("final", "partial", "file"):
            self.queue_depth.labels(priority).set_function(_depth(scheduler, priority))
        self.oldest_final_wait.set_function(scheduler.oldest_final_wait)
        self.busy_ratio.set_function(scheduler.busy_ratio)
        self.workers.set(scheduler.workers)
        self.sessions_active.set_function(active_sessions)
        scheduler.listeners.append(self.on_batch)

    def describe_model(self, model: str, device: str, compute_type: str) -> None:
        self.build_info.labels(__version__, model, device, compute_type).set(1)

    def set_jobs_source(self, source: Callable[[], Mapping[str, int]]) -> None:
        """Register ``source() -> {state: count}``, read at each scrape (the jobs service)."""
        self._jobs.source = source

    def exposition(self) -> tuple[bytes, str]:
        """The text format body and its content type, for ``GET /metrics``."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # -- events -------------------------------------------------------------------------
    def on_batch(self, report: BatchReport) -> None:
        """Scheduler listener: one engine call finished (engine thread)."""
        self.batch_size.observe(report.size)
        self.batch_seconds.observe(report.seconds)
        self.busy_s.inc(report.seconds)
        for wait in report.queue_waits:
            self.queue_wait.observe(wait)
        for priority, count in (
            ("final", report.finals),
            ("partial", report.partials),
            ("file", report.files),
        ):
            if count:
                self.engine_requests.labels(priority).inc(count)
        if report.stale_partials_dropped:
            self.stale_partials.inc(report.stale_partials_dropped)
        if report.failed:
            self.errors.labels("engine_error").inc()

    def refused(self, reason: str) -> None:
        self.sessions_refused.labels(reason).inc()

    def dialect_session(self, dialect: str, outcome: str) -> None:
        self.dialect_sessions.labels(dialect, outcome).inc()

    def error(self, code: str) -> None:
        self.errors.labels(code).inc()

    def audio_received(self, seconds: float, source: str = "stream") -> None:
        self.audio_received_s.labels(source).inc(seconds)

    def audio_transcribed(self, seconds: float, source: str = "stream") -> None:
        self.audio_transcribed_s.labels(source).inc(seconds)

    def transcribed(self, transcript: Transcript) -> None:
        """A final result (of a stream or a file segment): language or suppression cause."""
        if transcript.beam_size:
            self.beams.labels(str(transcript.beam_size)).inc()
        if transcript.text:
            self.utterances.labels(transcript.language or "unknown").inc()
        elif transcript.suppressed:
            self.hallucinations.labels(transcript.suppressed).inc()

    def session(self, session_id: str) -> SessionObserver:
        self.sessions.inc()
        return SessionObserver(self, session_id)

    # -- real-time lag ------------------------------------------------------------------
    def final_waiting(self, key: tuple[str, int], since: float) -> None:
        """A session (key: session id, utterance) now waits for this final."""
        with self._lock:
            self._waiting_finals[key] = since

    def final_delivered(self, key: tuple[str, int]) -> float | None:
        """Stop waiting; returns since when it waited."""
        with self._lock:
            return self._waiting_finals.pop(key, None)

    def forget_session(self, session_id: str) -> None:
        with self._lock:
            for key in [k for k in self._waiting_finals if k[0] == session_id]:
                del self._waiting_finals[key]

    def _lag(self) -> float:
        with self._lock:
            oldest = min(self._waiting_finals.values(), default=None)
        return 0.0 if oldest is None else max(0.0, self.clock() - oldest)


def _depth(scheduler: SchedulerView, priority: str) -> Callable[[], float]:
    return lambda: scheduler.queue_depths()[priority]


class SessionObserver:
    """What one streaming connection reports; the adapter calls it, the session never."""

    def __init__(self, metrics: Metrics, session_id: str) -> None:
        self.metrics = metrics
        self.session_id = session_id
        self._asked: dict[int, tuple[int, float]] = {}
        """Partial request id → (utterance, when it went to the scheduler)."""
        self._final_results: dict[int, Transcript] = {}
        """Utterance → its latest final-priority result, counted once its final is sent
        (a speculative final made moot by more speech is engine work, not a final)."""
        self._partial_origin: dict[int, float] = {}
        """Utterance → when the request behind its next partial message was made."""
        self._audio_s = 0.0

    def received(self, audio_seconds: float) -> None:
        """The session's total audio so far; counts the increase."""
        if audio_seconds > self._audio_s:
            self.metrics.audio_received(audio_seconds - self._audio_s)
            self._audio_s = audio_seconds

    def requested(self, request: TranscriptionRequest) -> None:
        now = self.metrics.clock()
        if request.priority is Priority.FINAL:
            self.metrics.final_waiting((self.session_id, request.utterance), now)
        self._asked[request.id] = (request.utterance, now)

    def answered(self, request: TranscriptionRequest, transcript: Transcript) -> None:
        if request.priority is Priority.FINAL:
            self._final_results[request.utterance] = transcript
        # Any result may become the next partial (a moot speculative final does too).
        asked = self._asked.pop(request.id, None)
        if asked is not None:
            self._partial_origin[request.utterance] = asked[1]

    def sent(self, message: Mapping[str, Any]) -> None:
        kind = message.get("type")
        now = self.metrics.clock()
        if kind == "final":
            utterance = int(message["utterance"])
            result = self._final_results.pop(utterance, None)
            if result is not None:
                self.metrics.audio_transcribed(float(message["end"]) - float(message["start"]))
                self.metrics.transcribed(result)
            self._partial_origin.pop(utterance, None)
            # Partials the scheduler coalesced or dropped are never answered.
            for request_id in [i for i, (u, _) in self._asked.items() if u <= utterance]:
                del self._asked[request_id]
            asked = self.metrics.final_delivered((self.session_id, utterance))
            if asked is not None:
                self.metrics.final_latency.observe(now - asked)
        elif kind == "partial":
            asked = self._partial_origin.pop(int(message["utterance"]), None)
            if asked is not None:
                self.metrics.partial_latency.observe(now - asked)
        elif kind == "error":
            self.metrics.error(str(message.get("code", "unknown")))

    def closed(self) -> None:
        self.metrics.forget_session(self.session_id)
