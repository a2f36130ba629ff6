"""The capacity finder behind ``earshot loadtest`` (also ``python -m loadtest.capacity``).

It ramps concurrent real-time streams of real speech step by step against a server
(one it starts, or ``--url``). Capacity is the last step before the first whose p95
final latency exceeds the SLO, or where a session was refused (1013) or failed; the
ramp goes on to ``--ramp-until`` (2 × SLO) so the plot shows the knee and capacities
at looser SLOs are known too. Capacity is given as concurrent streams and as
audio-hours transcribed per hour; the offline file throughput of the same model is
measured too. With
``--compare`` the same ramp runs against the plain configuration (``servers.CONFIGS``)
and the capacity ratio is printed. Results: ``<out-dir>/<name>.json`` and ``.png``.

Steps are separated by a cool-down longer than admission control's 10 s look-back,
so one step's tail doesn't get the next step's sessions refused.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import shlex
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from earshot.loadtest.bench import StepReport, load_from, measure_step, scenario_from
from earshot.loadtest.options import add_capacity_arguments
from earshot.loadtest.scenario import Clip, find_clip, load_clips, seconds_per_clip
from earshot.loadtest.servers import CONFIGS, Target, target
from earshot.loadtest.throughput import offline_throughput

SLO_TABLE = (1.0, 1.5, 2.0, 3.0)
"""p95 final-latency targets the report gives capacities for, besides ``--slo``."""


def verdict(report: StepReport, slo_s: float) -> str | None:
    """Why a step fails the SLO, or None when it passes."""
    if report.refused:
        return f"{report.refused} session(s) refused (1013)"
    if report.errors:
        return f"{report.errors} error(s): {report.error_samples[0]}"
    p95 = report.final_latency.p95
    if p95 is None:
        return "no final arrived"
    if p95 > slo_s:
        return f"p95 final latency {p95:.2f} s > SLO {slo_s:.2f} s"
    return None


def capacity_at(steps: list[dict[str, Any]], slo_s: float) -> int:
    """Streams of the last step before the first that misses ``slo_s`` (0: the first)."""
    capacity = 0
    for step in steps:
        p95 = step["final_latency"]["p95"]
        if step["refused"] or step["errors"] or p95 is None or p95 > slo_s:
            break
        capacity = step["streams"]
    return capacity


def step_s(args: argparse.Namespace, clips: list[Clip], streams: int) -> float:
    """At least ``--step-s``, and long enough for about ``--min-finals`` finals: a p95
    of a dozen samples is just their maximum."""
    scenario = scenario_from(args)
    per_clip = seconds_per_clip(clips, scenario) / (scenario.speed or 1.0)
    return max(args.step_s, args.min_finals * per_clip / streams)


def ramp(where: Target, args: argparse.Namespace, clips: list[Clip], label: str) -> dict[str, Any]:
    """Run the steps until p95 passes ``--ramp-until`` (or a session is refused or fails),
    so the curve is measured past the SLO and capacities at looser SLOs come for free."""
    steps: list[dict[str, Any]] = []
    ramp_until = max(args.slo, args.ramp_until or 2 * args.slo)
    stopped_by = "nothing: every step passed, so capacity is at least the last step"
    for streams in args.steps:
        where.wait_idle()
        time.sleep(args.cooldown_s)
        report = measure_step(where, load_from(args, streams, step_s(args, clips, streams)), clips)
        failure = verdict(report, args.slo)
        steps.append({**report.to_json(), "passed": failure is None, "failure": failure})
        _progress(label, report, failure)
        beyond = verdict(report, ramp_until)
        if beyond:
            stopped_by = f"{streams} streams: {beyond}"
            break
    capacity = capacity_at(steps, args.slo)
    at_capacity = [s for s in steps if s["streams"] == capacity]
    speech_share = at_capacity[0]["speech_s"] / at_capacity[0]["audio_s"] if at_capacity else 0.0
    speed = args.speed or 1.0
    return {
        "server_args": where.server_args,
        "capacity_streams": capacity,
        "audio_hours_per_hour": round(capacity * speed, 2),
        "speech_hours_per_hour": round(capacity * speed * speech_share, 2),
        "capacity_by_slo": {
            f"{slo:g}": capacity_at(steps, slo) for slo in sorted({*SLO_TABLE, args.slo})
        },
        "ramp_stopped_by": stopped_by,
        "steps": steps,
    }


def _progress(label: str, report: StepReport, failure: str | None) -> None:
    final = report.final_latency
    print(
        f"[{label}] {report.streams:3d} streams: final p50 {final.p50} s p95 {final.p95} s,"
        f" batch {report.server.batch_size_mean}, engine busy {report.server.engine_busy_ratio},"
        f" refused {report.refused}, errors {report.errors},"
        f" WER {report.wer}, load {report.load_average[1]} -> {failure or 'pass'}",
        file=sys.stderr,
        flush=True,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.capacity", description=__doc__.split("\n\n")[1]
    )
    add_capacity_arguments(parser)
    return parser


def run(args: argparse.Namespace, command: str) -> int:
    """Everything ``earshot loadtest`` does; ``command`` is recorded in the JSON."""
    with _sigterm_as_exit():
        return _run(args, command)


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the servers started here are stopped, not orphaned."""

    def exit_now(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, exit_now)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace, command: str) -> int:
    if args.url and args.compare:
        print("--compare starts its own servers; leave out --url", file=sys.stderr)
        return 2
    clips = load_clips(args.manifest, language=args.language)
    engine_args = _engine_args(args)
    started = time.time()
    load_start = os.getloadavg()
    offline = None if args.no_offline else _offline(args, engine_args)
    configs = _configs(args)
    results: dict[str, Any] = {}
    info: dict[str, Any] = {}
    for label, config_args in configs.items():
        server_args = [*engine_args, *args.server_arg, *config_args]
        log_path = args.server_log
        if log_path and len(configs) > 1:
            log_path = log_path.with_name(f"{log_path.stem}-{label}{log_path.suffix}")
        with target(args.url, server_args, log_path=log_path) as where:
            info = info or where.info
            results[label] = ramp(where, args, clips, label)
    report = {
        "command": command,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_s": round(time.time() - started, 1),
        "machine": _machine(),
        "model": info.get("model"),
        "device": info.get("device"),
        "slo_p95_final_s": args.slo,
        "step_s": args.step_s,
        "scenario": dataclasses.asdict(load_from(args, 0, 0).scenario),
        "seed": args.seed,
        "load_average": {"start": _rounded(load_start), "end": _rounded(os.getloadavg())},
        "offline": offline,
        "configs": results,
    }
    if args.compare:
        ours, plain = results["earshot"]["capacity_by_slo"], results["plain"]["capacity_by_slo"]
        report["capacity_ratio_by_slo"] = {
            slo: round(ours[slo] / plain[slo], 2) if plain[slo] else None for slo in ours
        }
        report["capacity_ratio"] = report["capacity_ratio_by_slo"][f"{args.slo:g}"]
    _write(report, args)
    return 0


def _configs(args: argparse.Namespace) -> dict[str, tuple[str, ...]]:
    """Label → server arguments of each server to ramp."""
    if args.compare:
        return {"earshot": CONFIGS["earshot"], "plain": CONFIGS["plain"]}
    return {"server" if args.url else "earshot": ()}


def _engine_args(args: argparse.Namespace) -> list[str]:
    """Options that both ``earshot serve`` and ``earshot transcribe`` take."""
    engine: list[str] = []
    for option in ("model", "device"):
        if getattr(args, option):
            engine += [f"--{option}", getattr(args, option)]
    return engine


def _offline(args: argparse.Namespace, engine_args: list[str]) -> dict[str, Any]:
    if args.offline_file:
        clip = find_clip(args.manifest, args.offline_file)
    else:
        long_form = load_clips(args.manifest, language=args.language, kind="long", max_clip_s=1e9)
        clip = max(long_form, key=lambda c: c.duration_s)
    result = offline_throughput(clip, engine_args)
    print(
        f"[offline] {result.file}: {result.audio_s:.0f} s in {result.elapsed_s:.1f} s"
        f" = {result.realtime_factor}x real time, WER {result.wer}",
        file=sys.stderr,
        flush=True,
    )
    return {**dataclasses.asdict(result), "realtime_factor": result.realtime_factor}


def _machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform()}


def _rounded(values: Sequence[float]) -> list[float]:
    return [round(v, 2) for v in values]


def _write(report: dict[str, Any], args: argparse.Namespace) -> None:
    args.out_dir.mkdir(parents=True, exist_ok=True)
    json_path = args.out_dir / f"{args.name}.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    print(summary(report))
    print(f"wrote {json_path}")
    if not args.no_plot:
        from earshot.loadtest.plot import plot_capacity

        png = args.out_dir / f"{args.name}.png"
        if plot_capacity(report, png):
            print(f"wrote {png}")
        else:
            print("no plot: matplotlib is not installed (pip install 'earshot[loadtest]')")


def summary(report: dict[str, Any]) -> str:
    lines = [
        f"model {report['model']} on {report['device']} ({report['machine']['cpu']},"
        f" {report['machine']['cpu_count']} CPUs); SLO p95 final latency"
        f" <= {report['slo_p95_final_s']} s",
    ]
    for label, config in report["configs"].items():
        by_slo = ", ".join(f"{n} at {slo} s" for slo, n in config["capacity_by_slo"].items())
        lines.append(
            f"  {label}: {config['capacity_streams']} concurrent real-time streams"
            f" = {config['audio_hours_per_hour']} audio-hours per hour"
            f" (by p95 SLO: {by_slo}; ramp stopped by {config['ramp_stopped_by']})"
        )
    if report.get("offline"):
        offline = report["offline"]
        lines.append(f"  offline file throughput: {offline['realtime_factor']}x real time")
    if "capacity_ratio_by_slo" in report:
        ratios = ", ".join(f"{r} at {slo} s" for slo, r in report["capacity_ratio_by_slo"].items())
        lines.append(f"  capacity ratio earshot / plain: {ratios} (None: plain never met it)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return run(build_parser().parse_args(argv), "python -m loadtest.capacity " + shlex.join(argv))
