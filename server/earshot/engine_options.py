"""The model options of ``earshot serve|transcribe|eval|worker`` and the ``EngineConfig``
they make. Kept apart from cli.py so the job worker's command (jobs/cli.py) can share
them without importing the whole command line."""

from __future__ import annotations

import argparse
from dataclasses import replace

from earshot.config import EngineConfig
from earshot.options import add_option, config_option

FULL_WINDOW = (3000,)
"""``--full-window``: one bucket, Whisper's classic padded 30 s window."""


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    config_option(
        parser,
        "--model",
        EngineConfig,
        "model",
        help="bundled name (base, tiny.en), faster-whisper name (large-v3-turbo)"
        " or CTranslate2 directory",
    )
    config_option(
        parser,
        "--device",
        EngineConfig,
        "device",
        choices=("auto", "cpu", "cuda"),
        help="where the model runs (auto: CUDA when available)",
    )
    config_option(
        parser,
        "--compute-type",
        EngineConfig,
        "compute_type",
        help="int8, int8_float16, float16, float32... [int8 on CPU, float16 on CUDA]",
    )
    config_option(
        parser,
        "--cpu-threads",
        EngineConfig,
        "cpu_threads",
        help="threads per model replica [1 on CPU]",
    )
    config_option(
        parser,
        "--engine-workers",
        EngineConfig,
        "workers",
        help="model replicas transcribing at once [CPU: cores / cpu-threads; CUDA: 1]",
    )
    config_option(parser, "--beam-size", EngineConfig, "beam_size", help="beam search width")
    add_option(
        parser,
        "--full-window",
        action="store_true",
        help="always encode padded 30 s windows (slower; for comparison)",
    )


def engine_config(args: argparse.Namespace) -> EngineConfig:
    config = EngineConfig(
        model=args.model,
        device=args.device,
        compute_type=args.compute_type,
        cpu_threads=args.cpu_threads,
        workers=args.engine_workers,
        beam_size=args.beam_size,
    )
    if args.full_window:
        config = replace(config, window_buckets=FULL_WINDOW)
    return config
