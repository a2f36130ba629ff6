"""End-of-turn latency over the Deepgram dialects: last speech sample → end of turn.

    python -m loadtest.eot_latency                      # starts a server here
    python -m loadtest.eot_latency --url ws://127.0.0.1:8000 --streams 1,8 --turns 6

Each stream is one WebSocket that speaks real clips in real time, as a voice agent's
microphone does: 20 ms frames, each sent when its last sample has been "recorded"; after
a clip it goes on sending silence until the turn's end arrives, then the next clip. A
handshake refused with 429 (admission control: the server judged itself full) is retried
after ``Retry-After``, as a Deepgram client backs off, and counted.
Measured per clip, from the wall-clock moment its last speech sample was spoken (the
speech bounds come from Silero VAD, as in the other load tests):

- ``v1`` (``/deepgram/v1/listen``): → the ``Results`` with ``speech_final: true`` that
  covers the clip's end;
- ``v2`` (``/deepgram/v2/listen``, Flux): → its ``EndOfTurn``, and → the last
  ``EagerEndOfTurn`` of that turn (``eager_eot_threshold=0.5``; none when the text was
  not ready before the end).

Every dialect runs at 1 and 8 concurrent streams (``--streams``), with endpointing at its
default (no parameter: Earshot's 500 ms) and at its lowest (``endpointing=100``,
``eot_timeout_ms=100``); v2 also at ``eot_timeout_ms=1000`` (``SETTINGS``). Prints one
JSON document (p50/p95/max in ms per configuration, the machine) and writes a plot
(``--plot``). Streams go to 127.0.0.1 only unless
``--url`` says otherwise, and end by themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from earshot.config import SAMPLE_RATE
from earshot.loadtest.host import machine
from earshot.loadtest.metrics import http_base
from earshot.loadtest.scenario import DEFAULT_MANIFEST, Clip, clip_audio, load_clips
from earshot.loadtest.scoring import Distribution
from earshot.loadtest.servers import target

FRAME_S = 0.02
FIXTURE_MANIFEST = Path("tests/data/speech/manifest.jsonl")
FLUX_PUBLISHED = {"p50_ms": 300, "p95_ms": 1500}
"""Deepgram's published Flux end-of-turn latency: median under 300 ms, p95 1.5 s."""
MAX_RETRIES = 10
"""Handshakes refused with 429 a stream retries (after ``Retry-After``) before giving up."""
MAX_WAIT_S = 8.0
"""Silence sent after a clip while waiting for its end of turn; then it is missed."""

SETTINGS: dict[tuple[str, str], dict[str, str]] = {
    ("v1", "default"): {},
    ("v1", "lowest"): {"endpointing": "100"},
    ("v2", "default"): {},
    ("v2", "lowest"): {"eot_timeout_ms": "100"},
    ("v2", "long"): {"eot_timeout_ms": "1000"},
}
"""Per dialect, what endpointing is tried. ``long`` (v2 only) leaves the speculative
final time to come back before the end of the turn, so that ``EagerEndOfTurn`` is seen
at all: at 100 ms the turn ends before the 250 ms speculation point."""
BASE_QUERY = {
    "v1": {"model": "nova-3", "encoding": "linear16", "sample_rate": "16000",
           "interim_results": "true", "smart_format": "true"},
    "v2": {"model": "flux-general-en", "encoding": "linear16", "sample_rate": "16000",
           "eager_eot_threshold": "0.5"},
}  # fmt: skip


@dataclass
class Turn:
    """One clip spoken on a stream, and when its end (and eager end) came."""

    speech_end_s: float
    """Stream time of the clip's last speech sample."""
    spoken_at: float = 0.0
    """Wall clock (monotonic) when that sample was spoken."""
    end_at: float | None = None
    eager_at: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class StreamResult:
    eot_s: list[float] = field(default_factory=list)
    eager_s: list[float] = field(default_factory=list)
    missed: int = 0
    refused: int = 0
    """429 answers (the server full by its admission control) before it was let in."""
    errors: list[str] = field(default_factory=list)


def _query(dialect: str, setting: str) -> str:
    from urllib.parse import urlencode

    return urlencode({**BASE_QUERY[dialect], **SETTINGS[(dialect, setting)]})


class Listener:
    """Reads one stream's messages and stamps the turns they end."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.turn: Turn | None = None
        self._eager_turn: tuple[int, float] | None = None
        """(turn_index, wall time) of the latest ``EagerEndOfTurn`` covering the clip."""

    async def run(self, socket: ClientConnection) -> None:
        async for raw in socket:
            now = time.monotonic()
            message = json.loads(raw)
            turn = self.turn
            if turn is None or turn.done.is_set():
                continue
            speech_end = turn.speech_end_s

            def covers(end: float, speech_end: float = speech_end) -> bool:
                return float(end) >= speech_end - 0.1

            if self.dialect == "v1":
                if message.get("type") == "Results" and message.get("speech_final"):
                    end = message["start"] + message["duration"]
                    if covers(end):
                        turn.end_at = now
                        turn.done.set()
                continue
            if message.get("type") != "TurnInfo":
                continue
            event = message["event"]
            if event == "EagerEndOfTurn" and covers(message["audio_window_end"]):
                self._eager_turn = (message["turn_index"], now)
            elif event == "TurnResumed":
                self._eager_turn = None
            elif event == "EndOfTurn" and covers(message["audio_window_end"]):
                turn.end_at = now
                if self._eager_turn and self._eager_turn[0] == message["turn_index"]:
                    turn.eager_at = self._eager_turn[1]
                self._eager_turn = None
                turn.done.set()


async def run_stream(
    base: str, dialect: str, setting: str, clips: list[tuple[np.ndarray, float]], seed: int
) -> StreamResult:
    """One stream: each clip after a short random lead, then silence until its end of
    turn (at most ``MAX_WAIT_S``), in real time; then ``CloseStream``."""
    result = StreamResult()
    rng = random.Random(seed)
    path = "/deepgram/v1/listen" if dialect == "v1" else "/deepgram/v2/listen"
    listener = Listener(dialect)
    frame = round(FRAME_S * SAMPLE_RATE)
    silence = bytes(frame * 2)
    url = f"{base}{path}?{_query(dialect, setting)}"
    try:
        for _ in range(MAX_RETRIES):
            try:
                socket = await connect(url, max_size=None)
                break
            except InvalidStatus as refusal:
                if refusal.response.status_code != 429:
                    raise
                # Full (admission control): back off as a Deepgram client does.
                result.refused += 1
                await asyncio.sleep(float(refusal.response.headers.get("Retry-After", "1")))
        else:
            result.errors.append(f"refused {MAX_RETRIES} times")
            return result
        async with socket:
            reader = asyncio.create_task(listener.run(socket))
            sent = 0  # samples sent: the stream clock
            start = time.monotonic()

            async def send(chunk: bytes) -> None:
                nonlocal sent
                sent += len(chunk) // 2
                delay = start + sent / SAMPLE_RATE - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)  # the frame's last sample is "recorded"
                await socket.send(chunk)

            for audio, speech_end in clips:
                for _ in range(round(rng.uniform(0.3, 1.0) / FRAME_S)):
                    await send(silence)
                turn = Turn(speech_end_s=sent / SAMPLE_RATE + speech_end)
                turn.spoken_at = start + turn.speech_end_s
                listener.turn = turn
                pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
                for i in range(0, len(pcm), frame * 2):
                    await send(pcm[i : i + frame * 2])
                waited = 0.0
                while not turn.done.is_set() and waited < MAX_WAIT_S and not reader.done():
                    await send(silence)
                    waited += FRAME_S
                if turn.end_at is None:
                    result.missed += 1
                else:
                    result.eot_s.append(turn.end_at - turn.spoken_at)
                    if turn.eager_at is not None:
                        result.eager_s.append(turn.eager_at - turn.spoken_at)
            listener.turn = None
            await socket.send(json.dumps({"type": "CloseStream"}))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(reader, 30)
            reader.cancel()
    except Exception as exc:  # a refused or broken stream is reported, not raised
        result.errors.append(f"{type(exc).__name__}: {exc}")
    return result


def _stats(values: list[float]) -> dict[str, Any]:
    """count, p50, p95, max in milliseconds (None without samples)."""
    seconds = dataclasses.asdict(Distribution.of(values))
    return {k: v if k == "count" or v is None else round(v * 1000) for k, v in seconds.items()}


async def measure(
    base: str, dialect: str, setting: str, streams: int, turns: int, clips: list[Clip], seed: int
) -> dict[str, Any]:
    per_stream = max(1, math.ceil(turns / streams))
    rng = random.Random(f"{seed}:{streams}")  # the same clips for every dialect and setting
    plans = []
    for _ in range(streams):
        chosen = [rng.choice(clips) for _ in range(per_stream)]
        plans.append([(clip_audio(c)[0], clip_audio(c)[2]) for c in chosen])
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    results = await asyncio.gather(
        *(run_stream(base, dialect, setting, plan, seed + n) for n, plan in enumerate(plans))
    )
    eot = [v for r in results for v in r.eot_s]
    eager = [v for r in results for v in r.eager_s]
    report: dict[str, Any] = {
        "dialect": dialect,
        "endpointing": setting,
        "query": _query(dialect, setting),
        "streams": streams,
        "turns": len(eot) + sum(r.missed for r in results),
        "missed": sum(r.missed for r in results),
        "refused_then_retried": sum(r.refused for r in results),
        "errors": [e for r in results for e in r.errors][:5],
        "wall_s": round(time.monotonic() - started, 1),
        # This machine's 1-minute load average before and after: the client and a local
        # server share it, and anything else running skews the latencies.
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "end_of_turn_ms": _stats(eot),
    }
    if dialect == "v2":
        report["eager_end_of_turn_ms"] = _stats(eager)
    return report


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["results"]
    labels = [f"{r['dialect']} {r['endpointing']}\n{r['streams']} stream(s)" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(8, len(rows) * 1.1), 4.8))
    for offset, key, name in (
        (-0.18, "end_of_turn_ms", "end of turn"),
        (0.18, "eager_end_of_turn_ms", "eager end of turn (v2)"),
    ):
        p50 = [(r.get(key) or {}).get("p50") for r in rows]
        p95 = [(r.get(key) or {}).get("p95") for r in rows]
        xs = [x[i] + offset for i, v in enumerate(p50) if v is not None]
        if not xs:
            continue
        med = [v for v in p50 if v is not None]
        high = [p95[i] for i, v in enumerate(p50) if v is not None]
        bars = ax.bar(xs, med, width=0.34, label=f"{name}: p50 (bar), p95 (tick)")
        ax.errorbar(
            xs,
            med,
            yerr=[[0] * len(med), [h - m for h, m in zip(high, med)]],
            fmt="none",
            ecolor=bars.patches[0].get_facecolor(),
            capsize=4,
        )
    ax.axhline(FLUX_PUBLISHED["p50_ms"], color="grey", linestyle="--", linewidth=1)
    ax.axhline(FLUX_PUBLISHED["p95_ms"], color="grey", linestyle=":", linewidth=1)
    ax.text(
        len(rows) - 0.5,
        FLUX_PUBLISHED["p50_ms"],
        "Flux p50 < 300 ms",
        ha="right",
        va="bottom",
        fontsize=8,
        color="grey",
    )
    ax.text(
        len(rows) - 0.5,
        FLUX_PUBLISHED["p95_ms"],
        "Flux p95 1.5 s",
        ha="right",
        va="bottom",
        fontsize=8,
        color="grey",
    )
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("ms after the last speech sample")
    m = report["machine"]
    ax.set_title(
        f"Earshot end-of-turn latency, Deepgram dialects ({report['model']}, "
        f"{m['cpu']}, {m['cpu_count']} CPUs)",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.eot_latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", help="a running server (ws://HOST:PORT); default: start one")
    parser.add_argument("--streams", default="1,8", help="concurrent streams to try [1,8]")
    parser.add_argument(
        "--turns",
        type=int,
        default=6,
        help="clips per configuration, spread over its streams (each at least one) [6]",
    )
    parser.add_argument("--dialects", default="v1,v2")
    parser.add_argument(
        "--settings", default="default,lowest,long", help="of SETTINGS, where the dialect has it"
    )
    parser.add_argument(
        "--manifest",
        type=Path,
        help=f"speech manifest [{DEFAULT_MANIFEST}, else {FIXTURE_MANIFEST}]",
    )
    parser.add_argument("--max-clip-s", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    parser.add_argument("--plot", type=Path, default=Path("loadtest/results/eot_latency.png"))
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra `earshot serve` argument for the server started here",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    manifest = args.manifest or (
        DEFAULT_MANIFEST if DEFAULT_MANIFEST.is_file() else FIXTURE_MANIFEST
    )
    clips = load_clips(manifest, language="en", max_clip_s=args.max_clip_s)
    for clip in clips:
        clip_audio(clip)  # Silero once per clip, before any timing
    results = []
    with target(args.url, args.server_arg) as server:
        base = http_base(server.ws_url).replace("http", "ws", 1)
        for dialect in args.dialects.split(","):
            for setting in args.settings.split(","):
                if (dialect, setting) not in SETTINGS:
                    continue
                for streams in (int(s) for s in args.streams.split(",")):
                    server.wait_idle()
                    row = asyncio.run(
                        measure(base, dialect, setting, streams, args.turns, clips, args.seed)
                    )
                    print(json.dumps(row), file=sys.stderr, flush=True)
                    results.append(row)
        model = server.info.get("model", "?")
    report = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "command": "python -m loadtest.eot_latency " + " ".join(argv or sys.argv[1:]),
        "model": model,
        "machine": machine(),
        "clips": len(clips),
        "flux_published": FLUX_PUBLISHED,
        "results": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    if args.plot:
        plot(report, args.plot)
    return 0
