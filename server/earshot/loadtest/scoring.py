"""Turn what one session sent and received into latencies, lag and transcripts.

Pure functions over a ``SessionLog``, so the asyncio runner and the gevent Locust
user record the same things and score them the same way. All times are one
process's ``time.monotonic()``.

Definitions (README "Benchmarks and capacity"):

- final latency: arrival of the ``final`` covering a clip's last speech sample − the
  moment that sample was sent. Endpointing is included.
- first-partial latency: arrival of the first ``partial`` covering a clip − the moment
  its first speech sample was sent (time to first text on screen).
- real-time lag: arrival of each ``final`` − the moment the sample at its ``end`` was
  sent: how far the transcript trails the audio.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from earshot.client import Final, Message, Partial
from earshot.config import SAMPLE_RATE
from earshot.loadtest.scenario import StreamPlan


@dataclass
class SessionLog:
    """What one session did, as recorded by whichever client ran it."""

    plan: StreamPlan
    requested: float = 0.0
    """When the connection was attempted."""
    connect_s: float | None = None
    """Handshake until ``ready``; None when no session was opened."""
    refused: bool = False
    """Closed with 1013 (overloaded) instead of ``ready``."""
    errors: list[str] = field(default_factory=list)
    send_samples: list[int] = field(default_factory=list)
    """First sample (stream clock) of each chunk sent, in order..."""
    send_times: list[float] = field(default_factory=list)
    """...and when that chunk was handed to the socket."""
    received: list[tuple[float, Message]] = field(default_factory=list)
    close_code: int | None = None
    ended: float = 0.0

    def note_sent(self, first_sample: int, when: float) -> None:
        self.send_samples.append(first_sample)
        self.send_times.append(when)

    def sent_at(self, seconds: float) -> float | None:
        """When the sample at ``seconds`` on the stream clock left the client."""
        if not self.send_samples:
            return None
        index = bisect.bisect_right(self.send_samples, int(seconds * SAMPLE_RATE)) - 1
        return self.send_times[max(0, index)]


@dataclass(frozen=True)
class SessionScore:
    final_latencies: list[float]
    first_partial_latencies: list[float]
    lags: list[float]
    reference: str
    hypothesis: str
    clips: int
    missed_clips: int
    """Clips no final covered (dropped speech)."""
    stray_finals: int
    """Non-empty finals over silence (hallucinations)."""
    finals: int


def _covering(plan: StreamPlan, start: float, end: float) -> int | None:
    """Index of the clip a transcript span overlaps most, if any."""
    best, best_overlap = None, 0.0
    for index, utterance in enumerate(plan.utterances):
        overlap = min(end, utterance.end_s) - max(start, utterance.start_s)
        if overlap > best_overlap:
            best, best_overlap = index, overlap
    return best


Measurement = tuple[str, float]
"""("final" | "first_partial" | "lag", seconds)."""
END_TOLERANCE_S = 0.25
"""A final ending this close before a clip's last speech sample still covers it (the
server's VAD and ours may place the end a frame or two apart)."""


class SessionScorer:
    """Scores one session as its messages arrive, so a live client (Locust) can report
    each latency the moment it is known, and a recorded session scores the same way.

    A clip's final latency is taken at the first final that covers the clip's last
    speech sample; a clip whose finals all end earlier is scored at ``finish`` with
    its last final.
    """

    def __init__(self, log: SessionLog) -> None:
        self.log = log
        self._last_final: dict[int, float] = {}
        self._scored: set[int] = set()
        self._partial_seen: set[int] = set()
        self._texts: list[str] = []
        self._samples: dict[str, list[float]] = {"final": [], "first_partial": [], "lag": []}
        self._stray = 0
        self._finals = 0

    def observe(self, arrival: float, message: Message) -> list[Measurement]:
        if not isinstance(message, Final | Partial):
            return []
        plan = self.log.plan
        clip = _covering(plan, message.start, message.end)
        found: list[Measurement] = []
        if isinstance(message, Partial):
            if clip is not None and clip not in self._partial_seen:
                self._partial_seen.add(clip)
                sent = self.log.sent_at(plan.utterances[clip].speech_start_s)
                if sent is not None:
                    found.append(("first_partial", arrival - sent))
            return self._keep(found)
        self._finals += 1
        if message.text:
            self._texts.append(message.text)
        sent_end = self.log.sent_at(message.end)
        if sent_end is not None:
            found.append(("lag", arrival - sent_end))
        if clip is None:
            self._stray += bool(message.text)
            return self._keep(found)
        self._last_final[clip] = arrival
        speech_end = plan.utterances[clip].speech_end_s
        if clip not in self._scored and message.end >= speech_end - END_TOLERANCE_S:
            found += self._final_latency(clip, arrival)
        return self._keep(found)

    def finish(self) -> list[Measurement]:
        """Clips whose finals never reached their end of speech, scored by the last one."""
        found: list[Measurement] = []
        for clip, arrival in sorted(self._last_final.items()):
            if clip not in self._scored:
                found += self._final_latency(clip, arrival)
        return self._keep(found)

    def score(self) -> SessionScore:
        clips = len(self.log.plan.utterances)
        return SessionScore(
            final_latencies=self._samples["final"],
            first_partial_latencies=self._samples["first_partial"],
            lags=self._samples["lag"],
            reference=self.log.plan.reference,
            hypothesis=" ".join(self._texts),
            clips=clips,
            missed_clips=clips - len(self._last_final),
            stray_finals=self._stray,
            finals=self._finals,
        )

    def _final_latency(self, clip: int, arrival: float) -> list[Measurement]:
        self._scored.add(clip)
        sent = self.log.sent_at(self.log.plan.utterances[clip].speech_end_s)
        return [] if sent is None else [("final", arrival - sent)]

    def _keep(self, found: list[Measurement]) -> list[Measurement]:
        for kind, seconds in found:
            self._samples[kind].append(seconds)
        return found


def score_session(log: SessionLog) -> SessionScore:
    """Score a finished session from its recorded messages."""
    scorer = SessionScorer(log)
    for arrival, message in log.received:
        scorer.observe(arrival, message)
    scorer.finish()
    return scorer.score()


@dataclass(frozen=True)
class Distribution:
    count: int
    p50: float | None
    p95: float | None
    max: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Distribution:
        if not values:
            return cls(0, None, None, None)
        array = np.asarray(values, dtype=float)
        p50, p95 = np.percentile(array, [50, 95])
        return cls(len(values), _ms(p50), _ms(p95), _ms(array.max()))


def pooled(scores: Iterable[SessionScore]) -> dict[str, list[float]]:
    """Every session's samples of each latency kind, in one list per kind."""
    pool: dict[str, list[float]] = {"final": [], "first_partial": [], "lag": []}
    for score in scores:
        pool["final"] += score.final_latencies
        pool["first_partial"] += score.first_partial_latencies
        pool["lag"] += score.lags
    return pool


def _ms(seconds: float) -> float:
    """Seconds, rounded to the millisecond."""
    return round(float(seconds), 3)
