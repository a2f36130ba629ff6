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

from earshot.config import AdmissionConfig, SchedulerConfig, ServerConfig
from earshot.engine_options import add_engine_options, engine_config
from earshot.evaluation.command import add_options as add_eval_options
from earshot.jobs.cli import add_job_commands, add_jobs_options, jobs_config
from earshot.loadtest.options import add_capacity_arguments
from earshot.logs import configure_logging
from earshot.options import add_option, config_option, param_default
from earshot.security_options import (
    add_keygen_command,
    add_security_options,
    security_config,
    startup_refusal,
    stream_limits,
    uvicorn_guards,
)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from earshot.access import exposure_warning
    from earshot.app import create_app
    from earshot.drain import DrainingServer
    from earshot.engine import ModelLoadError
    from earshot.handshake import guarded_ws_protocol
    from earshot.runtime import Runtime

    configure_logging(args.log_level, args.log_format, args.log_transcripts)
    try:
        security = security_config(args)
    except (OSError, ValueError) as exc:
        print(f"earshot: API keys: {exc}", file=sys.stderr)
        return 2
    if refusal := startup_refusal(args, security):  # protected mode
        print(f"earshot: {refusal}", file=sys.stderr)
        return 2
    if warning := exposure_warning(args.host, bool(security.api_keys)):
        print(f"\n*** WARNING: {warning} ***\n", file=sys.stderr)
        logging.getLogger("earshot").warning(warning)
    config = ServerConfig(
        host=args.host,
        port=args.port,
        engine=engine_config(args),
        scheduler=SchedulerConfig(
            max_batch=args.max_batch,
            batch_wait_s=None if args.batch_wait_ms is None else args.batch_wait_ms / 1000,
            idle_beam_size=args.idle_beam_size,
        ),
        admission=AdmissionConfig(max_sessions=args.max_sessions),
        partial_interval_s=args.partial_interval,
        log_level=args.log_level,
        jobs=jobs_config(args),
        replica_id=args.replica_id,
        drain_timeout_s=args.drain_timeout,
        security=security,
        streams=stream_limits(args),
    )
    try:
        runtime = Runtime.load(config)
    except ModelLoadError as exc:
        print(f"earshot: {exc}", file=sys.stderr)
        return 2
    app = create_app(config, runtime)
    uvicorn_config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        ws=guarded_ws_protocol(config.streams.handshake_timeout_s),  # websockets-sansio
        log_level=args.log_level,
        log_config=None,  # uvicorn's loggers go through configure_logging's handler
        timeout_graceful_shutdown=10,
        **uvicorn_guards(config.streams),  # frame size, pings, header deadline, connections
    )
    # SIGTERM drains: finals flushed, sessions closed 1001, then shutdown (drain.py).
    server = DrainingServer(uvicorn_config, runtime, args.drain_timeout)
    server.run()
    return 0 if server.started else 3  # 3: could not start (port in use...), as uvicorn


def cmd_stream(args: argparse.Namespace) -> int:
    from earshot.audio_files import UndecodableAudio, read_audio
    from earshot.client import Closed, Error, Final, Overloaded, Partial, connect, send_paced

    try:
        audio = read_audio(args.file)
    except UndecodableAudio as exc:
        print(f"earshot: {exc}", file=sys.stderr)
        return 2

    async def run() -> int:
        async with connect(args.url, language=args.language, word_timestamps=args.words) as stream:

            async def send() -> None:
                await send_paced(stream, audio, speed=args.speed)
                await stream.close_stream()

            sender = asyncio.create_task(send())
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
            await sender
        return 0

    try:
        return asyncio.run(run())
    except (OSError, Overloaded) as exc:
        print(f"earshot: cannot stream to {args.url}: {exc}", file=sys.stderr)
        return 1


def cmd_transcribe(args: argparse.Namespace) -> int:
    from earshot.audio_files import UndecodableAudio, read_audio
    from earshot.engine import ModelLoadError, WhisperEngine
    from earshot.offline import transcribe_audio

    try:
        audio = read_audio(args.file)
        engine = WhisperEngine(engine_config(args))
    except (ModelLoadError, UndecodableAudio) as exc:
        print(f"earshot: {exc}", file=sys.stderr)
        return 2
    result = transcribe_audio(
        engine,
        audio,
        language=args.language,
        word_timestamps=args.words,
        batch=args.batch,
    )
    elapsed = result.elapsed_s
    if args.json:
        print(
            json.dumps(
                {
                    "text": result.text,
                    "segments": [
                        {
                            "start": round(r.start, 3),
                            "end": round(r.start + r.duration, 3),
                            "text": t.text,
                            "language": t.language,
                        }
                        for r, t in result.segments
                    ],
                    "audio_s": round(result.audio_s, 3),
                    "elapsed_s": round(elapsed, 3),
                },
                ensure_ascii=False,
            )
        )
    else:
        for r, t in result.segments:
            if t.text:
                print(f"[{r.start:7.2f} → {r.start + r.duration:7.2f}] ({t.language}) {t.text}")
        rtf = result.audio_s / elapsed if elapsed else 0.0
        print(
            f"# {result.audio_s:.1f} s of audio in {elapsed:.2f} s ({rtf:.1f}× real time)",
            file=sys.stderr,
        )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from earshot.evaluation.command import run_command

    return run_command(args, engine_config(args))


def cmd_loadtest(args: argparse.Namespace) -> int:
    import shlex

    from earshot.loadtest.capacity import run

    return run(args, "earshot " + shlex.join(sys.argv[1:]))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="earshot", description="Real-time speech-to-text server")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the streaming server")
    config_option(serve, "--host", ServerConfig, "host", help="address to listen on")
    config_option(serve, "--port", ServerConfig, "port", help="port to listen on")
    add_engine_options(serve)
    config_option(
        serve,
        "--max-batch",
        SchedulerConfig,
        "max_batch",
        type=int,
        help="largest engine batch [4 on CPU, 16 on CUDA]",
    )
    config_option(
        serve,
        "--batch-wait-ms",
        SchedulerConfig,
        "batch_wait_s",
        scale=0.001,
        type=float,
        help="how long a batch may wait to fill, in ms [by device]",
    )
    config_option(
        serve,
        "--idle-beam-size",
        SchedulerConfig,
        "idle_beam_size",
        type=int,
        help="beam width for finals while the engine has room; greedy under load"
        " (1: always) [5 on CPU, 1 on CUDA]",
    )
    config_option(
        serve,
        "--max-sessions",
        AdmissionConfig,
        "max_sessions",
        help="streaming sessions at once; more are refused (close 1013)",
    )
    config_option(
        serve,
        "--partial-interval",
        ServerConfig,
        "partial_interval_s",
        help="seconds of new audio between partials",
    )
    config_option(serve, "--log-level", ServerConfig, "log_level", help="debug, info, warning...")
    add_option(
        serve,
        "--log-format",
        choices=("auto", "text", "json"),
        default=param_default(configure_logging, "fmt"),
        help="auto: text on a terminal, one JSON object per line otherwise",
    )
    add_option(
        serve,
        "--log-transcripts",
        action="store_true",
        default=param_default(configure_logging, "log_transcripts"),
        help="debugging only: let transcript text into the logs (never by default)",
    )
    config_option(
        serve,
        "--replica-id",
        ServerConfig,
        "replica_id",
        help="name of this replica in ready messages and /readyz [hostname:port]",
    )
    config_option(
        serve,
        "--drain-timeout",
        ServerConfig,
        "drain_timeout_s",
        help="on SIGTERM, seconds open sessions get to flush their finals",
    )
    add_jobs_options(serve)
    add_security_options(serve)
    serve.set_defaults(func=cmd_serve)

    stream = sub.add_parser("stream", help="stream an audio file to a server, paced in real time")
    stream.add_argument("file")
    stream.add_argument(
        "--url",
        default=f"ws://{ServerConfig.host}:{ServerConfig.port}/v1/listen",
        help="the server's /v1/listen [%(default)s]",
    )
    stream.add_argument(
        "--speed", type=float, default=1.0, help="× real time; 0 = as fast as possible"
    )
    stream.add_argument("--language", default=None)
    stream.add_argument("--words", action="store_true", help="ask for word timestamps")
    stream.set_defaults(func=cmd_stream)

    transcribe = sub.add_parser("transcribe", help="transcribe a file offline (no server)")
    transcribe.add_argument("file")
    add_engine_options(transcribe)
    transcribe.add_argument("--language", default=None)
    transcribe.add_argument("--words", action="store_true")
    transcribe.add_argument("--batch", type=int, default=8)
    transcribe.add_argument("--json", action="store_true")
    transcribe.set_defaults(func=cmd_transcribe)

    add_job_commands(sub)
    add_keygen_command(sub)

    evaluate = sub.add_parser(
        "eval", help="measure quality: golden-set WER offline and streamed, hallucinations"
    )
    add_engine_options(evaluate)
    add_eval_options(evaluate)
    evaluate.set_defaults(func=cmd_eval)

    loadtest = sub.add_parser(
        "loadtest", help="find how many real-time streams this machine serves within the SLO"
    )
    add_capacity_arguments(loadtest)
    loadtest.set_defaults(func=cmd_loadtest)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result
