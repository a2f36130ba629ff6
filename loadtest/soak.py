"""Soak benchmark: M concurrent real-time sessions for T minutes with churn, watching the
server for leaks and errors. Not part of the test suite (it runs for minutes).

    python -m loadtest.soak --sessions 4 --minutes 3

Each worker streams real speech clips one session after another, in real time, and a
share of the sessions is dropped mid-stream without ``close_stream`` (clients that
vanish), so sessions churn the whole time. Every few seconds it samples the server's
RSS, threads and open file descriptors. It prints a JSON report — memory over time (must
be flat), errors (must be zero), final latency percentiles, WER — and saves it with a
PNG of memory over time under ``loadtest/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from earshot.audio_files import read_audio
from earshot.client import Closed, Error, Final, Overloaded, connect, send_paced
from earshot.server_process import ServerProcess
from earshot.wer import error_rate

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT.parent / "shared" / "speech"
SAMPLE_EVERY_S = 5.0


@dataclass
class Tally:
    completed: int = 0
    dropped: int = 0
    refused: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    hypotheses: list[str] = field(default_factory=list)
    audio_s: float = 0.0


def load_clips(max_s: float = 15.0) -> list[tuple[np.ndarray, str]]:
    rows = [json.loads(line) for line in (SPEECH / "manifest.jsonl").read_text().splitlines()]
    chosen = [r for r in rows if r["language"] == "en" and 2.0 <= r["duration_s"] <= max_s]
    return [(read_audio(SPEECH / r["file"]), r["text"]) for r in chosen]


async def one_session(
    url: str, audio: np.ndarray, text: str, drop_at: float | None, tally: Tally
) -> None:
    """Stream one clip in real time; ``drop_at`` (a share of the clip) vanishes midway."""
    audio = np.concatenate([audio, np.zeros(16000, np.float32)])
    if drop_at is not None:
        audio = audio[: int(len(audio) * drop_at)]
    finals: list[Final] = []
    errors: list[str] = []
    try:
        async with connect(url, language="en") as stream:
            started = time.monotonic()

            async def produce() -> None:
                await send_paced(stream, audio)
                if drop_at is None:
                    await stream.close_stream()

            producer = asyncio.create_task(produce())
            if drop_at is not None:
                await producer
                tally.dropped += 1
                return  # leaving the block closes the socket: no close_stream, no goodbye
            closed = False
            async with asyncio.timeout(len(audio) / 16000 + 60):
                async for message in stream:
                    if isinstance(message, Final):
                        finals.append(message)
                        tally.latencies.append(time.monotonic() - started - message.end)
                    elif isinstance(message, Error):
                        errors.append(f"error message {message.code}: {message.message}")
                    elif isinstance(message, Closed):
                        closed = True
            await producer
            if not closed:
                errors.append(f"no closed; close code {stream.close_code}")
    except Overloaded:
        tally.refused += 1
        return
    except Exception as exc:  # anything unexpected is an error of the run
        errors.append(f"{type(exc).__name__}: {exc}")
    if errors:
        tally.failed += 1
        tally.errors += errors
        return
    tally.completed += 1
    tally.audio_s += len(audio) / 16000
    tally.references.append(text)
    tally.hypotheses.append(" ".join(f.text for f in finals if f.text))


async def worker(
    url: str, clips: list[tuple[np.ndarray, str]], deadline: float, rng: random.Random,
    drop_rate: float, tally: Tally, delay: float,
) -> None:  # fmt: skip
    await asyncio.sleep(delay)
    while time.monotonic() < deadline:
        audio, text = rng.choice(clips)
        drop_at = rng.uniform(0.2, 0.9) if rng.random() < drop_rate else None
        await one_session(url, audio, text, drop_at, tally)


def process_stats(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if ":" in line)
    return {
        "rss_mib": int(fields["VmRSS"].split()[0]) / 1024,
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


async def sample(
    pid: int | None, started: float, deadline: float, out: list[dict[str, float]]
) -> None:
    while True:
        row: dict[str, float] = {"t_s": round(time.monotonic() - started, 1)}
        if pid is not None:
            row.update(process_stats(pid))
        out.append(row)
        if time.monotonic() >= deadline:
            return
        await asyncio.sleep(SAMPLE_EVERY_S)


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def memory_summary(samples: list[dict[str, float]], warmup_s: float) -> dict[str, Any]:
    steady = [s for s in samples if s["t_s"] >= warmup_s and "rss_mib" in s]
    if len(steady) < 3:
        return {}
    t = np.array([s["t_s"] for s in steady]) / 60
    rss = np.array([s["rss_mib"] for s in steady])
    slope = float(np.polyfit(t, rss, 1)[0])
    third = max(1, len(rss) // 3)
    return {
        "rss_start_mib": round(float(rss[0]), 1),
        "rss_end_mib": round(float(rss[-1]), 1),
        "rss_max_mib": round(float(rss.max()), 1),
        "rss_first_third_mean_mib": round(float(rss[:third].mean()), 1),
        "rss_last_third_mean_mib": round(float(rss[-third:].mean()), 1),
        "rss_slope_mib_per_min": round(slope, 2),
        "threads_start_end": [steady[0]["threads"], steady[-1]["threads"]],
        "fds_start_end": [steady[0]["fds"], steady[-1]["fds"]],
    }


def plot(samples: list[dict[str, float]], report: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install earshot[plots]): no PNG", file=sys.stderr)
        return
    t = [s["t_s"] / 60 for s in samples if "rss_mib" in s]
    rss = [s["rss_mib"] for s in samples if "rss_mib" in s]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(t, rss, marker=".", label="server RSS")
    ax.set_xlabel("minutes")
    ax.set_ylabel("MiB")
    ax.set_ylim(0, max(rss) * 1.15)
    settings = report["settings"]
    ax.set_title(
        f"Soak: {settings['sessions']} concurrent sessions, {report['sessions']['total']} with"
        f" churn, {len(report['errors'])} errors"
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


async def soak(args: argparse.Namespace, url: str, pid: int | None) -> dict[str, Any]:
    load_at_start = round(os.getloadavg()[0], 2)
    clips = load_clips()
    rng = random.Random(args.seed)
    tally = Tally()
    started = time.monotonic()
    deadline = started + args.minutes * 60
    samples: list[dict[str, float]] = []
    sampler = asyncio.create_task(sample(pid, started, deadline, samples))
    workers = [
        worker(url, clips, deadline, random.Random(rng.random()), args.drop_rate, tally,
               delay=i * 5.0 / max(1, args.sessions))
        for i in range(args.sessions)
    ]  # fmt: skip
    await asyncio.gather(*workers)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(sampler, SAMPLE_EVERY_S + 1)
    if pid is not None:
        samples.append({"t_s": round(time.monotonic() - started, 1), **process_stats(pid)})
    lat = tally.latencies
    return {
        "settings": {
            "sessions": args.sessions,
            "minutes": args.minutes,
            "drop_rate": args.drop_rate,
            "seed": args.seed,
            "server_args": args.server_args,
            "load_1min_at_start": load_at_start,
        },
        "elapsed_s": round(time.monotonic() - started, 1),
        "sessions": {
            "total": tally.completed + tally.dropped + tally.refused + tally.failed,
            "completed": tally.completed,
            "dropped_mid_stream": tally.dropped,
            "refused_overloaded": tally.refused,
            "failed": tally.failed,
        },
        "errors": tally.errors,
        "audio_streamed_s": round(tally.audio_s, 1),
        "final_latency_s": {
            "count": len(lat),
            "p50": percentile(lat, 50),
            "p90": percentile(lat, 90),
            "p99": percentile(lat, 99),
            "max": round(max(lat), 3) if lat else None,
        },
        "wer": round(error_rate(tally.references, tally.hypotheses), 4)
        if tally.references
        else None,
        "memory": memory_summary(samples, warmup_s=min(60.0, args.minutes * 20)),
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.soak", description=__doc__)
    parser.add_argument("--sessions", type=int, default=4, help="concurrent sessions [4]")
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--drop-rate", type=float, default=0.15, help="share of sessions dropped")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--url", help="soak a running server (no memory samples) instead")
    parser.add_argument("--server-args", default="", help="extra `earshot serve` arguments")
    parser.add_argument("--out", type=Path, default=ROOT / "loadtest" / "results")
    parser.add_argument("--name", default="soak")
    args = parser.parse_args(argv)
    if args.url:
        report = asyncio.run(soak(args, args.url, None))
    else:
        log = ROOT / "artifacts" / f"{args.name}-server.log"
        log.parent.mkdir(exist_ok=True)
        with ServerProcess(*args.server_args.split(), log_path=log) as server:
            report = asyncio.run(soak(args, server.ws_url, server.pid))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report["samples"], report, args.out / f"{args.name}.png")
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=2))
    return 0 if not report["errors"] and not report["sessions"]["refused_overloaded"] else 1


if __name__ == "__main__":
    sys.exit(main())
