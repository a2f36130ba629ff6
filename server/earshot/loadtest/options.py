"""Command-line options of the bench and the capacity finder.

Kept apart from the code that runs them so that ``earshot``'s own parser can offer
``earshot loadtest`` without importing the load generator at every start.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from earshot.config import EngineConfig
from earshot.loadtest.scenario import DEFAULT_MANIFEST, SCENARIOS
from earshot.loadtest.servers import CONFIGS

DEFAULT_STEPS = "1,2,3,4,6,8,10,12,14,16,20,24,32,48,64"


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """Which server: one at ``--url``, or ones started here."""
    parser.add_argument("--url", help="a running server (ws://127.0.0.1:8000); else start one")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the servers started here, repeatable"
        " (--server-arg=--cpu-threads --server-arg=2)",
    )
    parser.add_argument("--server-log", type=Path, help="where started servers log")


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    """What the simulated users say and how."""
    parser.add_argument(  # a str, not a Path: Locust's web UI serializes option values
        "--manifest",
        default=str(DEFAULT_MANIFEST),
        help=f"speech clips manifest.jsonl [{DEFAULT_MANIFEST}]",
    )
    parser.add_argument("--language", default="en", help="clip language, also sent [%(default)s]")
    parser.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default="realtime",
        help="realtime: 60 s sessions; long: 5 min sessions; burst: one clip per session"
        " [%(default)s]",
    )
    parser.add_argument("--session-s", type=float, help="audio per session (overrides scenario)")
    parser.add_argument("--speed", type=float, default=1.0, help="× real time [%(default)g]")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same streams [%(default)s]")
    parser.add_argument("--no-partials", action="store_true", help="interim_results=false")


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser)
    parser.add_argument(
        "--configs",
        help=f"comma-separated configs to start and measure in turn: {', '.join(CONFIGS)}",
    )
    parser.add_argument("--streams", type=int, default=4, help="concurrent streams [%(default)s]")
    parser.add_argument(
        "--duration", type=float, default=60.0, help="seconds of load [%(default)g]"
    )
    add_load_arguments(parser)
    parser.add_argument("--out", type=Path, help="also write the JSON here")


def add_capacity_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser)
    engine = EngineConfig()
    parser.add_argument(
        "--model", help=f"model of the started servers and offline RTF [{engine.model}]"
    )
    parser.add_argument("--device", help=f"auto, cpu or cuda [{engine.device}]")
    parser.add_argument(
        "--steps",
        type=_ints,
        default=_ints(DEFAULT_STEPS),
        help=f"concurrent streams per step [{DEFAULT_STEPS}]",
    )
    parser.add_argument(
        "--step-s", type=float, default=60.0, help="least seconds per step [%(default)g]"
    )
    parser.add_argument(
        "--min-finals",
        type=int,
        default=30,
        help="make steps long enough for about this many finals, for a real p95 [%(default)s]",
    )
    parser.add_argument(
        "--cooldown-s", type=float, default=12.0, help="idle pause before each step [%(default)g]"
    )
    parser.add_argument("--slo", type=float, default=1.5, help="p95 final latency, s [%(default)g]")
    parser.add_argument(
        "--ramp-until",
        type=float,
        help="keep ramping until p95 final latency passes this, s [2 × --slo]",
    )
    parser.add_argument(
        "--compare", action="store_true", help="also ramp the plain config and print the ratio"
    )
    parser.add_argument(
        "--offline-file",
        type=Path,
        help="audio for the offline real-time factor [longest long-form clip of --language]",
    )
    parser.add_argument("--no-offline", action="store_true", help="skip the offline RTF")
    add_load_arguments(parser)
    parser.add_argument("--out-dir", type=Path, default=Path("loadtest/results"))
    parser.add_argument("--name", default="capacity", help="file name stem [%(default)s]")
    parser.add_argument("--no-plot", action="store_true", help="JSON only")


def _ints(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive integers like 1,2,4,8")
    return values
