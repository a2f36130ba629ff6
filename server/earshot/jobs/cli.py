"""``earshot submit|status|result|worker`` and the job options of ``earshot serve``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from earshot.config import ServerConfig
from earshot.engine_options import add_engine_options, engine_config
from earshot.jobs.config import JobsConfig, RetryPolicy
from earshot.jobs.formats import FORMATS
from earshot.limits import MIB
from earshot.options import add_option, config_option

if TYPE_CHECKING:
    from earshot.jobs_client import JobsClient

DEFAULT_URL = f"http://{ServerConfig.host}:{ServerConfig.port}"
"""A server started with the defaults (``earshot serve``)."""


def _client(args: argparse.Namespace) -> JobsClient:
    from earshot.jobs_client import JobsClient

    return JobsClient(args.url, api_key=args.api_key)


def add_jobs_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("file jobs")
    config_option(
        group,
        "--jobs",
        JobsConfig,
        "backend",
        help="job backend: sqlite (embedded, default) or redis://host:port/db (Celery;"
        " run `earshot worker` processes)",
    )
    config_option(
        group, "--data-dir", JobsConfig, "data_dir", help="job database and uploaded audio"
    )
    config_option(
        group, "--max-upload-mb", JobsConfig, "max_upload_bytes", scale=MIB, help="largest upload"
    )
    config_option(
        group,
        "--max-job-duration",
        JobsConfig,
        "max_duration_s",
        help="longest audio accepted, seconds",
    )
    config_option(
        group,
        "--job-ttl",
        JobsConfig,
        "result_ttl_s",
        help="seconds a finished job and its result are kept",
    )
    config_option(
        group,
        "--job-audio-ttl",
        JobsConfig,
        "audio_ttl_s",
        help="redis mode: seconds an upload's audio is kept in Redis (a job not run by then fails)",
    )
    config_option(group, "--job-attempts", RetryPolicy, "max_attempts", help="attempts per job")
    config_option(
        group,
        "--job-retry-backoff",
        RetryPolicy,
        "backoff_s",
        help="seconds before the 2nd attempt, doubling after",
    )
    config_option(
        group,
        "--job-lease",
        JobsConfig,
        "lease_s",
        help="seconds after which a job whose worker died runs again",
    )
    config_option(
        group,
        "--job-redelivery",
        JobsConfig,
        "redelivery_s",
        help="redis mode: seconds after which the task of a killed worker is delivered again",
    )
    config_option(
        group,
        "--job-workers",
        JobsConfig,
        "workers",
        help="jobs transcribed at once by one server (embedded backend)",
    )
    config_option(
        group,
        "--sync-max-concurrent",
        JobsConfig,
        "sync_max_concurrent",
        help="POST /v1/audio/transcriptions requests served at once (more get 429)",
    )
    config_option(
        group,
        "--sync-max-per-key",
        JobsConfig,
        "sync_max_per_key",
        help="of those, most for one API key (without keys, all callers are one)",
    )


def jobs_config(args: argparse.Namespace) -> JobsConfig:
    return JobsConfig(
        backend=args.jobs,
        data_dir=args.data_dir,
        max_upload_bytes=int(args.max_upload_mb * MIB),
        max_duration_s=args.max_job_duration,
        result_ttl_s=args.job_ttl,
        audio_ttl_s=args.job_audio_ttl,
        retry=RetryPolicy(max_attempts=args.job_attempts, backoff_s=args.job_retry_backoff),
        lease_s=args.job_lease,
        redelivery_s=args.job_redelivery,
        workers=args.job_workers,
        sync_max_concurrent=args.sync_max_concurrent,
        sync_max_per_key=args.sync_max_per_key,
    )


def cmd_submit(args: argparse.Namespace) -> int:
    from earshot.jobs_client import JobError

    with _client(args) as client:
        try:
            job_id = client.submit(
                args.file, language=args.language, prompt=args.prompt, word_timestamps=args.words
            )
            if not args.wait:
                print(job_id)
                return 0
            job = client.wait(job_id)
            if job["status"] != "done":
                print(f"job {job_id} {job['status']}: {job.get('error', '')}", file=sys.stderr)
                return 1
            _print_result(client.result(job_id, args.format), args.format)
        except JobError as exc:
            print(f"earshot: {exc}", file=sys.stderr)
            return 1
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from earshot.jobs_client import JobError

    with _client(args) as client:
        try:
            job = client.status(args.job_id)
        except JobError as exc:
            print(f"earshot: {exc}", file=sys.stderr)
            return 1
    job.pop("result", None)
    print(json.dumps(job, indent=2, ensure_ascii=False))
    return 0


def cmd_result(args: argparse.Namespace) -> int:
    from earshot.jobs_client import JobError

    with _client(args) as client:
        try:
            _print_result(client.result(args.job_id, args.format), args.format)
        except JobError as exc:
            print(f"earshot: {exc}", file=sys.stderr)
            return 1
    return 0


def _print_result(result: object, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print(str(result), end="" if str(result).endswith("\n") else "\n")


def cmd_worker(args: argparse.Namespace) -> int:
    import logging

    from earshot.jobs.celery_backend import run_worker

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = jobs_config(args)
    if not config.distributed:
        print("earshot worker: --jobs must be a redis:// URL", file=sys.stderr)
        return 2
    return run_worker(config, engine_config(args), loglevel=args.log_level)


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    add_option(parser, "--url", default=DEFAULT_URL, help="server base URL")
    add_option(parser, "--api-key", help="for a server that requires one")


def add_job_commands(sub: argparse._SubParsersAction) -> None:
    submit = sub.add_parser("submit", help="submit a file as a transcription job; prints its id")
    submit.add_argument("file")
    _add_client_options(submit)
    submit.add_argument("--language", default=None)
    submit.add_argument("--prompt", default=None)
    submit.add_argument("--words", action="store_true", help="word timestamps")
    submit.add_argument("--wait", action="store_true", help="wait and print the result")
    submit.add_argument("--format", choices=FORMATS, default="text", help="with --wait [text]")
    submit.set_defaults(func=cmd_submit)

    status = sub.add_parser("status", help="show a job's status")
    status.add_argument("job_id")
    _add_client_options(status)
    status.set_defaults(func=cmd_status)

    result = sub.add_parser("result", help="print a finished job's transcript")
    result.add_argument("job_id")
    _add_client_options(result)
    result.add_argument("--format", choices=FORMATS, default="text")
    result.set_defaults(func=cmd_result)

    worker = sub.add_parser(
        "worker", help="run a Celery worker that transcribes jobs (--jobs redis://...)"
    )
    add_engine_options(worker)
    add_jobs_options(worker)
    config_option(worker, "--log-level", ServerConfig, "log_level", help="debug, info, warning...")
    worker.set_defaults(func=cmd_worker)
