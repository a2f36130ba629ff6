"""``earshot eval``: the golden set offline and through a live stream, plus audio with no
speech in it, scored into one report (a plain dict, written as JSON and Markdown).

The offline pass is ``earshot transcribe`` (VAD segments, batched engine calls). The
streaming pass talks to a real server over ``/v1/listen`` (``--url``, or one started
here); it may stream faster than real time (``speed``), which changes how many partials
there are and how long finals wait, but not the finals' text: endpointing runs on the
stream's own audio clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import subprocess
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from earshot import __version__
from earshot.client import Overloaded, Partial, StreamResult, stream_audio
from earshot.config import EngineConfig
from earshot.engine import WhisperEngine
from earshot.evaluation.command import EvalOptions
from earshot.evaluation.golden import GoldenClip, load_golden
from earshot.evaluation.scoring import (
    Stability,
    corpus_error,
    percentiles,
    pooled,
    relative_gap,
    units,
)
from earshot.evaluation.synthetic import NoSpeechCase, no_speech_cases
from earshot.offline import transcribe_audio
from earshot.server_process import ServerProcess
from earshot.transcript import Priority, TranscriptionRequest
from earshot.vad import SileroVad
from earshot.wer import error_rate

TRAILING_SILENCE_S = 1.0
"""Appended to every streamed clip so endpointing, not ``close_stream``, ends the last
utterance, as with a live microphone."""
OVERLOADED_RETRIES = 30
WATCHED_METRICS = (
    "earshot_hallucinations_suppressed_total",
    "earshot_utterances_total",
    "earshot_engine_stale_partials_dropped_total",
    "earshot_sessions_refused_total",
    "earshot_errors_total",
)


def engine_argv(config: EngineConfig) -> list[str]:
    """``earshot serve`` options that load the same model as ``config``."""
    argv = ["--model", config.model, "--device", config.device]
    argv += ["--compute-type", config.compute_type, "--beam-size", str(config.beam_size)]
    if config.cpu_threads:
        argv += ["--cpu-threads", str(config.cpu_threads)]
    if config.window_buckets == (3000,):
        argv.append("--full-window")
    return argv


def run_eval(options: EvalOptions) -> dict[str, Any]:
    clips = load_golden(
        options.manifest,
        languages=options.languages or None,
        per_language=options.per_language,
    )
    if not clips:
        raise ValueError(f"no clips in {options.manifest} for languages {options.languages}")
    cases = no_speech_cases(options.no_speech_seconds)
    audio = {clip.name: clip.audio() for clip in clips}
    engine = WhisperEngine(options.engine)
    engine.warm_up()
    offline = _offline_pass(engine, clips, audio, cases, options)
    reference = _faster_whisper_pass(engine, clips, audio, options)
    with _server(options) as url:
        before = _scrape(url)
        streaming, wall_s = asyncio.run(_streaming_pass(url, clips, audio, cases, options))
        server_metrics = _delta(before, _scrape(url))
    report = _report(options, engine, clips, offline, streaming, wall_s, cases, server_metrics)
    if reference:
        report["faster_whisper"] = _versus_faster_whisper(clips, streaming, reference)
    return report


# -- passes -----------------------------------------------------------------------------
@dataclass
class _Offline:
    texts: dict[str, str]
    """Clip or case name → text."""
    audio_s: float
    elapsed_s: float
    engine_only: dict[str, tuple[str, str | None]]
    """No-speech case → (text, suppression cause) straight from the engine, no VAD."""


def _offline_pass(
    engine: WhisperEngine,
    clips: Sequence[GoldenClip],
    audio: dict[str, np.ndarray],
    cases: Sequence[NoSpeechCase],
    options: EvalOptions,
) -> _Offline:
    vad = SileroVad()
    texts: dict[str, str] = {}
    audio_s = elapsed_s = 0.0
    for clip in clips:
        language = None if options.auto_language else clip.language
        result = transcribe_audio(engine, audio[clip.name], language=language, vad=vad)
        texts[clip.name] = result.text
        audio_s += result.audio_s
        elapsed_s += result.elapsed_s
    engine_only = {}
    for case in cases:
        texts[case.name] = transcribe_audio(engine, case.audio, vad=vad).text
        # Without the VAD gate: what the hallucination filter alone catches.
        request = TranscriptionRequest(audio=case.audio[: 30 * 16000], priority=Priority.FILE)
        transcript = engine.transcribe([request])[0]
        engine_only[case.name] = (transcript.text, transcript.suppressed)
    return _Offline(texts, audio_s, elapsed_s, engine_only)


def _faster_whisper_pass(
    engine: WhisperEngine,
    clips: Sequence[GoldenClip],
    audio: dict[str, np.ndarray],
    options: EvalOptions,
) -> dict[int, dict[str, str]]:
    """Beam width → clip → faster-whisper's offline text (``--vs-faster-whisper``)."""
    return {
        beam: {
            clip.name: engine.reference_transcribe(
                audio[clip.name], None if options.auto_language else clip.language, beam
            )
            for clip in clips
        }
        for beam in options.faster_whisper_beams
    }


def _versus_faster_whisper(
    clips: Sequence[GoldenClip],
    streaming: dict[str, StreamResult],
    reference: dict[int, dict[str, str]],
) -> dict[str, Any]:
    """Corpus error per language of streaming and of faster-whisper offline at each beam
    width, and streaming / offline (1.0: as accurate as the offline decode)."""
    by_language: dict[str, list[GoldenClip]] = defaultdict(list)
    for clip in clips:
        if clip.exact:
            by_language[clip.language].append(clip)
    rows: dict[str, Any] = {}
    pooled_rates: dict[str, list[Any]] = defaultdict(list)
    for language, group in sorted(by_language.items()):
        refs = [c.text for c in group]
        on = corpus_error(refs, [streaming[c.name].text for c in group], language)
        pooled_rates["streaming"].append(on)
        row: dict[str, Any] = {
            "clips": len(group),
            "metric": on.metric,
            "streaming": round(on.rate, 4),
        }
        for beam, texts in reference.items():
            off = corpus_error(refs, [texts[c.name] for c in group], language)
            pooled_rates[f"beam_{beam}"].append(off)
            row[f"beam_{beam}"] = round(off.rate, 4)
            row[f"streaming_vs_beam_{beam}"] = _round(on.rate / off.rate if off.rate else None)
        rows[language] = row
    streaming_rate = pooled(pooled_rates["streaming"])
    overall: dict[str, Any] = {"streaming": round(streaming_rate, 4)}
    for beam in reference:
        rate = pooled(pooled_rates[f"beam_{beam}"])
        overall[f"beam_{beam}"] = round(rate, 4)
        overall[f"streaming_vs_beam_{beam}"] = _round(streaming_rate / rate if rate else None)
    return {"beams": sorted(reference), "languages": rows, "overall": overall}


async def _streaming_pass(
    url: str,
    clips: Sequence[GoldenClip],
    audio: dict[str, np.ndarray],
    cases: Sequence[NoSpeechCase],
    options: EvalOptions,
) -> tuple[dict[str, StreamResult], float]:
    gate = asyncio.Semaphore(options.concurrency)
    results: dict[str, StreamResult] = {}

    async def one(name: str, samples: np.ndarray, language: str | None) -> None:
        async with gate:
            for attempt in range(OVERLOADED_RETRIES + 1):
                try:
                    results[name] = await stream_audio(
                        url,
                        samples,
                        speed=options.speed,
                        trailing_silence_s=TRAILING_SILENCE_S,
                        language=language,
                        api_key=options.api_key,
                    )
                    return
                except Overloaded:
                    if attempt == OVERLOADED_RETRIES:
                        raise
                    await asyncio.sleep(1.0)  # a busy server: what any client would do

    started = time.monotonic()
    jobs = [
        one(c.name, audio[c.name], None if options.auto_language else c.language) for c in clips
    ]
    jobs += [one(case.name, case.audio, None) for case in cases]
    await asyncio.gather(*jobs)
    return results, time.monotonic() - started


@contextlib.contextmanager
def _server(options: EvalOptions) -> Iterator[str]:
    if options.url:
        yield options.url
        return
    with ServerProcess(*engine_argv(options.engine), log_path=options.server_log) as server:
        yield server.ws_url


# -- server metrics ---------------------------------------------------------------------
def _metrics_url(ws_url: str) -> str:
    parts = urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return urlunsplit((scheme, parts.netloc, "/metrics", "", ""))


def _scrape(ws_url: str) -> dict[str, float]:
    """Watched counters by ``name{labels}``; empty if the server has no /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(_metrics_url(ws_url), timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return {}
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in WATCHED_METRICS:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                values[f"{sample.name}{{{labels}}}"] = sample.value
    return values


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in sorted(after.items()) if v != before.get(k)}


# -- report -----------------------------------------------------------------------------
def _final_delays(result: StreamResult, speed: float) -> list[float]:
    """Wall time from an utterance's last sample reaching the server to its final."""
    return [
        result.arrival_of(f) - (f.end / speed if speed > 0 else 0.0)
        for f in result.finals
        if f.text
    ]


def _partials_by_utterance(result: StreamResult) -> dict[int, list[str]]:
    partials: dict[int, list[str]] = defaultdict(list)
    for message in result.messages:
        if isinstance(message, Partial):
            partials[message.utterance].append(message.text)
    return partials


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def _report(
    options: EvalOptions,
    engine: WhisperEngine,
    clips: Sequence[GoldenClip],
    offline: _Offline,
    streaming: dict[str, StreamResult],
    wall_s: float,
    cases: Sequence[NoSpeechCase],
    server_metrics: dict[str, float],
) -> dict[str, Any]:
    per_clip = []
    stability = Stability()
    delays: list[float] = []
    by_language: dict[str, list[GoldenClip]] = defaultdict(list)
    for clip in clips:
        result = streaming[clip.name]
        partials = _partials_by_utterance(result)
        for final in result.finals:
            stability.add(partials.get(final.utterance, []), final.text, clip.language)
        delays += _final_delays(result, options.speed)
        if clip.exact:
            by_language[clip.language].append(clip)
        per_clip.append(
            {
                "clip": clip.name,
                "language": clip.language,
                "duration_s": clip.duration_s,
                "counted": clip.exact,
                "reference": clip.text,
                "offline": offline.texts[clip.name],
                "streaming": result.text,
                "offline_error": round(
                    error_rate([clip.text], [offline.texts[clip.name]], clip.language), 4
                ),
                "streaming_error": round(error_rate([clip.text], [result.text], clip.language), 4),
                "utterances": len(result.finals),
                "partials": sum(len(p) for p in partials.values()),
                "languages_detected": sorted({f.language for f in result.finals if f.text}),
            }
        )
    languages = {}
    offline_rates, streaming_rates = [], []
    for language, group in sorted(by_language.items()):
        refs = [c.text for c in group]
        off = corpus_error(refs, [offline.texts[c.name] for c in group], language)
        on = corpus_error(refs, [streaming[c.name].text for c in group], language)
        offline_rates.append(off)
        streaming_rates.append(on)
        languages[language] = {
            "metric": off.metric,
            "clips": len(group),
            "reference_units": off.reference_units,
            "offline": round(off.rate, 4),
            "streaming": round(on.rate, 4),
            "relative_gap": _round(relative_gap(on.rate, off.rate)),
        }
    overall_off, overall_on = pooled(offline_rates), pooled(streaming_rates)
    return {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "version": __version__,
        "commit": _git_commit(),
        "model": engine.model_name,
        "device": engine.device,
        "compute_type": engine.compute_type,
        "settings": {
            "manifest": str(options.manifest),
            "languages": list(options.languages) or sorted({c.language for c in clips}),
            "per_language": options.per_language,
            "speed": options.speed,
            "concurrency": options.concurrency,
            "language": "detected" if options.auto_language else "given",
            "server": options.url or "started by eval",
            "no_speech_seconds": options.no_speech_seconds,
        },
        "overall": {
            "clips": sum(len(g) for g in by_language.values()),
            "offline": round(overall_off, 4),
            "streaming": round(overall_on, 4),
            "relative_gap": _round(relative_gap(overall_on, overall_off)),
        },
        "languages": languages,
        "offline": {
            "audio_s": round(offline.audio_s, 2),
            "elapsed_s": round(offline.elapsed_s, 2),
            "rtf": _round(offline.elapsed_s / offline.audio_s if offline.audio_s else None),
        },
        "streaming": {
            "audio_s": round(sum(r.audio_s for r in streaming.values()), 2),
            "wall_s": round(wall_s, 2),
            "final_delay_s": percentiles(delays),
            "finals": sum(len(streaming[c.name].finals) for c in clips),
            "partials": sum(p["partials"] for p in per_clip),
            "partial_stability": _round(stability.rate),
            "partial_stability_occurrences": _round(stability.occurrence_rate),
            "partial_stability_settled": _round(stability.settled_rate),
            "utterances_with_partials": stability.utterances,
        },
        "no_speech": _no_speech_summary(cases, offline, streaming),
        "server_metrics_delta": server_metrics,
        "clips": per_clip,
    }


def _no_speech_summary(
    cases: Sequence[NoSpeechCase], offline: _Offline, streaming: dict[str, StreamResult]
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for case in cases:
        engine_text, suppressed = offline.engine_only[case.name]
        result = streaming[case.name]
        rows.append(
            {
                "case": case.name,
                "kind": case.kind,
                "description": case.description,
                "offline_words": len(units(offline.texts[case.name], "en")),
                "streaming_words": len(units(result.text, "en")),
                "streaming_text": result.text,
                "streaming_utterances": len(result.finals),
                "engine_only_words": len(units(engine_text, "en")),
                "engine_only_text": engine_text,
                "engine_only_suppressed": suppressed,
            }
        )

    def rate(key: str) -> float:
        return round(sum(r[key] > 0 for r in rows) / len(rows), 4) if rows else 0.0

    return {
        "hallucination_rate": {
            "offline": rate("offline_words"),
            "streaming": rate("streaming_words"),
            "engine_without_vad": rate("engine_only_words"),
        },
        "words": {
            "offline": sum(r["offline_words"] for r in rows),
            "streaming": sum(r["streaming_words"] for r in rows),
            "engine_without_vad": sum(r["engine_only_words"] for r in rows),
        },
        "cases": rows,
    }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)
