"""What the simulated users say: real speech clips laid out on a stream's audio clock.

A stream is lead silence, then clips separated by silence gaps longer than the
server's endpointing, then a tail. Each clip is therefore one utterance whose
reference transcript is known (for WER) and whose last speech sample is known (for
final latency). Speech bounds inside a clip come from Silero VAD run once per clip,
so a clip's trailing silence doesn't count as time the server kept the user waiting.

Every choice comes from a ``random.Random`` seeded by (seed, user, session): the same
seed gives the same streams whatever the concurrency or scheduling of a run.
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from earshot.config import SAMPLE_RATE
from earshot.vad import SileroVad

DEFAULT_MANIFEST = Path("../shared/speech/manifest.jsonl")
"""Relative to the repository root, where the project's real-speech set lives."""
VAD_THRESHOLD = 0.5
VAD_FRAME = 512


@dataclass(frozen=True)
class Clip:
    path: Path
    text: str
    language: str
    duration_s: float


@dataclass(frozen=True)
class Scenario:
    """How users behave; presets in ``SCENARIOS``."""

    name: str
    session_s: float
    """Audio per session; 0 = a single clip per session (short bursts)."""
    gap_s: tuple[float, float] = (1.0, 3.0)
    lead_s: tuple[float, float] = (0.0, 2.0)
    """Silence before the first clip; random so that streams don't speak in lockstep."""
    tail_s: float = 1.0
    """Silence after the last clip: longer than endpointing, so the server ends the
    utterance by itself, as with a live microphone; shorter means ``close_stream`` does."""
    speed: float = 1.0
    """× real time the audio is sent at."""


SCENARIOS = {
    "realtime": Scenario("realtime", session_s=60.0),
    "long": Scenario("long", session_s=300.0),
    "burst": Scenario("burst", session_s=0.0, lead_s=(0.0, 0.3), tail_s=0.3),
}


@dataclass(frozen=True)
class PlannedUtterance:
    """One clip placed on the stream clock (seconds)."""

    clip: Clip
    start_s: float
    end_s: float
    speech_start_s: float
    speech_end_s: float


@dataclass(frozen=True)
class StreamPlan:
    audio: np.ndarray
    """float32 mono 16 kHz."""
    utterances: tuple[PlannedUtterance, ...]
    language: str

    @property
    def duration_s(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    @property
    def speech_s(self) -> float:
        return sum(u.end_s - u.start_s for u in self.utterances)

    @property
    def reference(self) -> str:
        return " ".join(u.clip.text for u in self.utterances)


def load_clips(
    manifest: str | Path = DEFAULT_MANIFEST,
    *,
    language: str = "en",
    kind: str = "short",
    max_clip_s: float = 15.0,
) -> list[Clip]:
    """Clips of ``language`` and ``kind`` with exact transcripts, at most ``max_clip_s``
    long (the server's default ``max_utterance_s``, so that each clip is one utterance)."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise FileNotFoundError(f"speech manifest not found: {manifest} (see --manifest)")
    clips = []
    for line in manifest.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if (
            row["language"] == language
            and row.get("kind", "short") == kind
            and row.get("transcript_exact", True)
            and row["duration_s"] <= max_clip_s
        ):
            clips.append(
                Clip(manifest.parent / row["file"], row["text"], language, row["duration_s"])
            )
    if not clips:
        raise ValueError(f"no usable {kind} {language!r} clips in {manifest}")
    return sorted(clips, key=lambda c: c.path.name)


def find_clip(manifest: str | Path, path: Path) -> Clip:
    """``path`` with its reference transcript when the manifest lists it, else without."""
    manifest = Path(manifest)
    if manifest.is_file():
        for line in manifest.read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            if row.get("file") == path.name:
                return Clip(path, row["text"], row["language"], row["duration_s"])
    return Clip(path, "", "", 0.0)


@functools.lru_cache(maxsize=256)
def clip_audio(clip: Clip) -> tuple[np.ndarray, float, float]:
    """The clip at 16 kHz and its speech bounds (seconds), from Silero VAD."""
    from earshot.audio_files import read_audio  # PyAV and soxr: only once clips are used

    audio = read_audio(clip.path, SAMPLE_RATE)
    voiced = np.nonzero(_vad().stream().process(audio) >= VAD_THRESHOLD)[0]
    if len(voiced) == 0:
        return audio, 0.0, len(audio) / SAMPLE_RATE
    start = voiced[0] * VAD_FRAME / SAMPLE_RATE
    end = min(len(audio), (voiced[-1] + 1) * VAD_FRAME) / SAMPLE_RATE
    return audio, float(start), float(end)


@functools.cache
def _vad() -> SileroVad:
    return SileroVad()


def seconds_per_clip(clips: list[Clip], scenario: Scenario) -> float:
    """Average stream audio per clip: how long a stream takes to produce one final."""
    mean_clip = sum(c.duration_s for c in clips) / len(clips)
    if scenario.session_s:
        return mean_clip + sum(scenario.gap_s) / 2
    return mean_clip + sum(scenario.lead_s) / 2 + scenario.tail_s


def session_rng(seed: int, user: int, session: int) -> random.Random:
    return random.Random(f"earshot-loadtest:{seed}:{user}:{session}")


def build_plan(
    clips: list[Clip], scenario: Scenario, rng: random.Random, *, max_s: float | None = None
) -> StreamPlan:
    """A stream of about ``scenario.session_s`` (capped at ``max_s``), at least one clip."""
    target = scenario.session_s if max_s is None else min(scenario.session_s, max_s)
    pieces: list[np.ndarray] = [_silence(rng.uniform(*scenario.lead_s))]
    position = len(pieces[0]) / SAMPLE_RATE
    utterances: list[PlannedUtterance] = []
    while True:
        clip = rng.choice(clips)
        audio, speech_start, speech_end = clip_audio(clip)
        end = position + len(audio) / SAMPLE_RATE
        utterances.append(
            PlannedUtterance(clip, position, end, position + speech_start, position + speech_end)
        )
        pieces.append(audio)
        position = end
        if position >= target:
            break
        gap = _silence(rng.uniform(*scenario.gap_s))
        pieces.append(gap)
        position += len(gap) / SAMPLE_RATE
    pieces.append(_silence(scenario.tail_s))
    return StreamPlan(np.concatenate(pieces), tuple(utterances), clips[0].language)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), np.float32)
