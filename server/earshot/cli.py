"""The ``earshot`` command: serve, stream, transcribe.

Every option of ``serve`` also reads ``EARSHOT_<OPTION>`` from the environment, so
containers are configured without a command line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace

from earshot.config import AdmissionConfig, EngineConfig, ServerConfig, default_policy, env_default


def _env_int(name: str, default: int) -> int:
    return int(env_default(name) or default)


def _add_engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=env_default("model", "base"),
        help="bundled name (base, tiny.en), faster-whisper name"
        " (large-v3-turbo) or CTranslate2 directory [base]",
    )
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default=env_default("device", "auto")
    )
    parser.add_argument(
        "--compute-type",
        default=env_default("compute_type", "default"),
        help="int8, int8_float16, float16, float32... [int8 on CPU, float16 on CUDA]",
    )
    parser.add_argument("--cpu-threads", type=int, default=_env_int("cpu_threads", 0))
    parser.add_argument("--beam-size", type=int, default=_env_int("beam_size", 1))
    parser.add_argument(
        "--full-window",
        action="store_true",
        default=env_default("full_window") == "1",
        help="always encode padded 30 s windows (slower; for comparison)",
    )


def engine_config(args: argparse.Namespace) -> EngineConfig:
    config = EngineConfig(
        model=args.model,
        device=args.device,
        compute_type=args.compute_type,
        cpu_threads=args.cpu_threads,
        beam_size=args.beam_size,
    )
    if args.full_window:
        config = replace(config, window_buckets=(3000,))
    return config


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from earshot.app import create_app
    from earshot.engine import ModelLoadError
    from earshot.runtime import Runtime

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = ServerConfig(
        host=args.host,
        port=args.port,
        engine=engine_config(args),
        admission=AdmissionConfig(max_sessions=args.max_sessions),
        partial_interval_s=args.partial_interval,
        log_level=args.log_level,
    )
    try:
        runtime = Runtime.load(config)
    except ModelLoadError as exc:
        print(f"earshot: {exc}", file=sys.stderr)
        return 2
    policy = default_policy(runtime.engine.device, args.max_batch)
    if args.batch_wait_ms is not None:
        policy = replace(policy, batch_wait_s=args.batch_wait_ms / 1000)
    runtime.scheduler.policy = policy
    app = create_app(config, runtime)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        ws="websockets",
        ws_max_size=1 << 20,
        log_level=args.log_level,
        timeout_graceful_shutdown=10,
    )
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    from earshot.audio_files import read_audio
    from earshot.client import Closed, Error, Final, Partial, connect, send_paced

    audio = read_audio(args.file)

    async def run() -> int:
        async with connect(args.url, language=args.language, word_timestamps=args.words) as stream:
            sender = asyncio.create_task(send_paced(stream, audio, speed=args.speed))
            tty = sys.stdout.isatty()
            async for message in stream:
                if isinstance(message, Partial) and tty:
                    print(f"\r\x1b[2K… {message.text}", end="", flush=True)
                elif isinstance(message, Final):
                    prefix = "\r\x1b[2K" if tty else ""
                    span = f"[{message.start:7.2f} → {message.end:7.2f}]"
                    print(f"{prefix}{span} ({message.language}) {message.text}")
                elif isinstance(message, Error):
                    print(f"error {message.code}: {message.message}", file=sys.stderr)
                elif isinstance(message, Closed):
                    break
                if sender.done() and not getattr(sender, "_earshot_closed", False):
                    sender._earshot_closed = True  # type: ignore[attr-defined]
                    await stream.close_stream()
            await sender
        return 0

    return asyncio.run(run())


def cmd_transcribe(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from earshot.audio_files import read_audio
    from earshot.engine import ModelLoadError, WhisperEngine
    from earshot.file_segments import split_speech
    from earshot.transcript import Priority, TranscriptionRequest
    from earshot.vad import SileroVad

    try:
        engine = WhisperEngine(engine_config(args))
    except ModelLoadError as exc:
        print(f"earshot: {exc}", file=sys.stderr)
        return 2
    audio = read_audio(args.file)
    started = time.perf_counter()
    segments = split_speech(audio, SileroVad().stream())
    # One language for the whole file: short segments alone are too little to tell.
    language = (
        args.language
        or engine.detect_language(
            np.concatenate([audio[s.start : s.end] for s in segments])[: 30 * 16000]
        )
        if segments
        else args.language
    )
    requests = [
        TranscriptionRequest(
            audio=audio[s.start : s.end],
            priority=Priority.FILE,
            language=language,
            word_timestamps=args.words,
            start=s.start_s,
        )
        for s in segments
    ]
    transcripts = []
    for i in range(0, len(requests), args.batch):
        transcripts += engine.transcribe(requests[i : i + args.batch])
    elapsed = time.perf_counter() - started
    if args.json:
        print(
            json.dumps(
                {
                    "text": " ".join(t.text for t in transcripts if t.text),
                    "segments": [
                        {
                            "start": round(r.start, 3),
                            "end": round(r.start + r.duration, 3),
                            "text": t.text,
                            "language": t.language,
                        }
                        for r, t in zip(requests, transcripts)
                    ],
                    "audio_s": round(len(audio) / 16000, 3),
                    "elapsed_s": round(elapsed, 3),
                },
                ensure_ascii=False,
            )
        )
    else:
        for r, t in zip(requests, transcripts):
            if t.text:
                print(f"[{r.start:7.2f} → {r.start + r.duration:7.2f}] ({t.language}) {t.text}")
        rtf = (len(audio) / 16000) / elapsed if elapsed else 0.0
        print(
            f"# {len(audio) / 16000:.1f} s of audio in {elapsed:.2f} s ({rtf:.1f}× real time)",
            file=sys.stderr,
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="earshot", description="Real-time speech-to-text server")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the streaming server")
    serve.add_argument("--host", default=env_default("host", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=_env_int("port", 8000))
    _add_engine_options(serve)
    serve.add_argument(
        "--max-batch",
        type=int,
        default=int(env_default("max_batch") or 0) or None,
        help="largest engine batch [4 on CPU, 32 on CUDA]",
    )
    serve.add_argument(
        "--batch-wait-ms",
        type=float,
        default=float(v) if (v := env_default("batch_wait_ms")) else None,
    )
    serve.add_argument("--max-sessions", type=int, default=_env_int("max_sessions", 64))
    serve.add_argument(
        "--partial-interval",
        type=float,
        default=float(env_default("partial_interval") or 0.6),
        help="seconds of new audio between partials [0.6]",
    )
    serve.add_argument("--log-level", default=env_default("log_level", "info"))
    serve.set_defaults(func=cmd_serve)

    stream = sub.add_parser("stream", help="stream an audio file to a server, paced in real time")
    stream.add_argument("file")
    stream.add_argument("--url", default="ws://127.0.0.1:8000/v1/listen")
    stream.add_argument(
        "--speed", type=float, default=1.0, help="× real time; 0 = as fast as possible"
    )
    stream.add_argument("--language", default=None)
    stream.add_argument("--words", action="store_true", help="ask for word timestamps")
    stream.set_defaults(func=cmd_stream)

    transcribe = sub.add_parser("transcribe", help="transcribe a file offline (no server)")
    transcribe.add_argument("file")
    _add_engine_options(transcribe)
    transcribe.add_argument("--language", default=None)
    transcribe.add_argument("--words", action="store_true")
    transcribe.add_argument("--batch", type=int, default=8)
    transcribe.add_argument("--json", action="store_true")
    transcribe.set_defaults(func=cmd_transcribe)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result
