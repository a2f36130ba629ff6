"""The ``earshot eval`` command line: options, running, writing, plotting."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from earshot.config import EngineConfig
from earshot.options import field_default

DEFAULT_MANIFEST = Path("../shared/speech/manifest.jsonl")
DEFAULT_OUT = Path("artifacts/eval")


@dataclass(frozen=True)
class EvalOptions:
    manifest: Path
    engine: EngineConfig = field(default_factory=EngineConfig)
    url: str | None = None
    """A running server's ``ws://.../v1/listen``; None: start one with ``engine``."""
    api_key: str | None = None
    languages: tuple[str, ...] = ()
    per_language: int | None = None
    speed: float = 2.0
    concurrency: int = 1
    auto_language: bool = False
    """Detect languages instead of passing each clip's known language (both passes)."""
    no_speech_seconds: float = 8.0
    server_log: Path | None = None
    """Where a started server logs."""
    faster_whisper_beams: tuple[int, ...] = ()
    """Also decode every clip with faster-whisper's own offline ``transcribe`` (same
    model) at these beam widths, and report streaming WER against each."""


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--manifest",
        type=Path,
        default=DEFAULT_MANIFEST,
        help="golden set manifest.jsonl [%(default)s]",
    )
    parser.add_argument(
        "--url", default=None, help="stream to this server (ws://host:port); default: start one"
    )
    parser.add_argument("--api-key", default=None, help="for a --url server that requires one")
    parser.add_argument(
        "--languages", default="", help="comma-separated, e.g. en,de [all in the manifest]"
    )
    parser.add_argument(
        "--subset", type=int, default=None, metavar="N", help="first N clips of each language"
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=field_default(EvalOptions, "speed"),
        help="streaming pace, × real time [%(default)s]",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=field_default(EvalOptions, "concurrency"),
        help="streams at once [%(default)s]",
    )
    parser.add_argument(
        "--auto-language",
        action="store_true",
        help="let the model detect each clip's language instead of passing it",
    )
    parser.add_argument(
        "--no-speech-seconds",
        type=float,
        default=field_default(EvalOptions, "no_speech_seconds"),
        help="length of each no-speech case [%(default)g]",
    )
    parser.add_argument(
        "--vs-faster-whisper",
        default="",
        metavar="BEAMS",
        help="also decode each clip with faster-whisper's offline transcribe at these beam"
        " widths (e.g. 1,5) and report streaming/offline per language",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report folder [%(default)s]")
    parser.add_argument(
        "--history", type=Path, default=None, help="history file [OUT/history.jsonl]"
    )
    parser.add_argument(
        "--plot",
        action="store_true",
        help="only plot WER over time from the history into OUT/wer-history.png",
    )


def run_command(args: argparse.Namespace, engine: EngineConfig) -> int:
    from earshot.evaluation.report import append_history, plot_history, write_report
    from earshot.evaluation.runner import run_eval

    history = args.history or args.out / "history.jsonl"
    if args.plot:
        try:
            png = plot_history(history, args.out / "wer-history.png")
        except (RuntimeError, ValueError) as exc:
            print(f"earshot: {exc}", file=sys.stderr)
            return 2
        print(png)
        return 0
    if not args.manifest.is_file():
        print(f"earshot: no manifest at {args.manifest}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    options = EvalOptions(
        manifest=args.manifest,
        engine=engine,
        url=args.url,
        api_key=args.api_key,
        languages=tuple(x.strip() for x in args.languages.split(",") if x.strip()),
        per_language=args.subset,
        speed=args.speed,
        concurrency=args.concurrency,
        auto_language=args.auto_language,
        no_speech_seconds=args.no_speech_seconds,
        server_log=args.out / "server.log",
        faster_whisper_beams=tuple(int(b) for b in args.vs_faster_whisper.split(",") if b),
    )
    report = run_eval(options)
    json_path, md_path = write_report(report, args.out)
    append_history(report, history)
    overall = report["overall"]
    print(
        f"WER offline {overall['offline']:.3f}, streaming {overall['streaming']:.3f};"
        f" partial stability {report['streaming']['partial_stability']};"
        f" hallucination rate {report['no_speech']['hallucination_rate']}"
    )
    print(f"{md_path}\n{json_path}\n{args.out / 'eval.prom'}\n{history}")
    return 0
