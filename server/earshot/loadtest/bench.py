"""One measured step: N concurrent streams of real speech for a while, scored.

    python -m loadtest.bench --url ws://127.0.0.1:8000 --streams 8 --duration 60
    python -m loadtest.bench --configs earshot,max-batch-1,full-window,plain --streams 8

prints JSON: final latency, first-partial latency, real-time lag (p50/p95/max),
WER, sessions refused, errors and, when the server has ``/metrics``, its own view
(engine batch size and busy share, server-side final latency). ``--configs`` starts
one server per named config (``servers.CONFIGS``) in turn, so users see what batching
and bucketed windows each buy.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from earshot.loadtest.metrics import ServerView, scrape, server_view
from earshot.loadtest.options import add_bench_arguments
from earshot.loadtest.scenario import SCENARIOS, Clip, Scenario, clip_audio, load_clips
from earshot.loadtest.scoring import Distribution, SessionScore, pooled, score_session
from earshot.loadtest.servers import CONFIGS, Target, target
from earshot.loadtest.streams import UserLoad, run_users
from earshot.wer import error_rate


@dataclass(frozen=True)
class StepReport:
    streams: int
    wall_s: float
    sessions: int
    refused: int
    errors: int
    error_samples: list[str]
    final_latency: Distribution
    first_partial_latency: Distribution
    realtime_lag: Distribution
    connect_time: Distribution
    wer: float | None
    clips: int
    missed_clips: int
    stray_finals: int
    audio_s: float
    speech_s: float
    server: ServerView
    """The server's own metrics for the step (all None without ``/metrics``)."""
    load_average: tuple[float, float]
    """1-minute load average of this machine before and after the step."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def measure_step(target: Target, load: UserLoad, clips: list[Clip]) -> StepReport:
    for clip in clips:  # decode and VAD every clip now, not on the clock of a stream
        clip_audio(clip)
    before = scrape(target.http_url)
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    logs = asyncio.run(run_users(target.ws_url, load, clips))
    wall = time.monotonic() - started
    after = scrape(target.http_url)
    opened = [log for log in logs if log.connect_s is not None]
    scores = [score_session(log) for log in opened]
    pool = pooled(scores)
    errors = [error for log in logs for error in log.errors]
    return StepReport(
        streams=load.users,
        wall_s=round(wall, 2),
        sessions=len(opened),
        refused=sum(log.refused for log in logs),
        errors=len(errors),
        error_samples=errors[:5],
        final_latency=Distribution.of(pool["final"]),
        first_partial_latency=Distribution.of(pool["first_partial"]),
        realtime_lag=Distribution.of(pool["lag"]),
        connect_time=Distribution.of([log.connect_s for log in opened if log.connect_s]),
        wer=_wer(scores, clips[0].language),
        clips=sum(s.clips for s in scores),
        missed_clips=sum(s.missed_clips for s in scores),
        stray_finals=sum(s.stray_finals for s in scores),
        audio_s=round(sum(log.plan.duration_s for log in opened), 1),
        speech_s=round(sum(log.plan.speech_s for log in opened), 1),
        server=server_view(before, after, wall),
        load_average=(round(load_before, 2), round(os.getloadavg()[0], 2)),
    )


def _wer(scores: Sequence[SessionScore], language: str) -> float | None:
    """Corpus WER of whole sessions: robust to the server splitting or merging clips."""
    if not scores:
        return None
    references = [s.reference for s in scores]
    return round(error_rate(references, [s.hypothesis for s in scores], language), 4)


def scenario_from(args: argparse.Namespace) -> Scenario:
    scenario = dataclasses.replace(SCENARIOS[args.scenario], speed=args.speed)
    if args.session_s is not None:
        scenario = dataclasses.replace(scenario, session_s=args.session_s)
    return scenario


def load_from(args: argparse.Namespace, users: int, duration_s: float) -> UserLoad:
    options = (("interim_results", False),) if args.no_partials else ()
    return UserLoad(users, duration_s, scenario_from(args), seed=args.seed, options=options)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench", description=__doc__.split("\n\n")[0]
    )
    add_bench_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.url and args.configs:
        print("--url and --configs exclude each other", file=sys.stderr)
        return 2
    clips = load_clips(args.manifest, language=args.language)
    load = load_from(args, args.streams, args.duration)
    results: dict[str, Any] = {}
    names = args.configs.split(",") if args.configs else [None]
    for name in names:
        if name is not None and name not in CONFIGS:
            print(f"unknown config {name!r}; known: {', '.join(CONFIGS)}", file=sys.stderr)
            return 2
        server_args = [*args.server_arg, *(CONFIGS[name] if name else ())]
        with target(args.url, server_args, log_path=args.server_log) as where:
            report = measure_step(where, load, clips)
        results[name or "server"] = {
            "server_args": where.server_args,
            "model": where.info.get("model"),
            "device": where.info.get("device"),
            **report.to_json(),
        }
    output = {
        "scenario": dataclasses.asdict(load.scenario),
        "seed": load.seed,
        "duration_s": args.duration,
        "results": results,
    }
    text = json.dumps(output, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0
