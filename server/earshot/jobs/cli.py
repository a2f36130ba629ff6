"""``earshot submit|status|result|worker`` and the job options of ``earshot serve``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from earshot.config import env_default
from earshot.jobs.config import JobsConfig, RetryPolicy, default_data_dir
from earshot.jobs.formats import FORMATS

if TYPE_CHECKING:
    from earshot.jobs_client import JobsClient

DEFAULT_URL = env_default("url", "http://127.0.0.1:8000") or ""


def _client(args: argparse.Namespace) -> JobsClient:
    from earshot.jobs_client import JobsClient

    return JobsClient(args.url, api_key=args.api_key)


def _env_float(name: str, default: float) -> float:
    return float(env_default(name) or default)


def add_jobs_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("file jobs")
    group.add_argument(
        "--jobs",
        default=env_default("jobs", "sqlite"),
        help="job backend: sqlite (embedded, default) or redis://host:port/db (Celery;"
        " run `earshot worker` processes)",
    )
    group.add_argument(
        "--data-dir",
        type=Path,
        default=Path(env_default("data_dir") or default_data_dir()),
        help=f"job database and uploaded audio [{default_data_dir()}]",
    )
    group.add_argument(
        "--max-upload-mb", type=float, default=_env_float("max_upload_mb", 100), help="[100]"
    )
    group.add_argument(
        "--max-job-duration",
        type=float,
        default=_env_float("max_job_duration", 4 * 3600),
        help="longest audio accepted, seconds [14400]",
    )
    group.add_argument(
        "--job-ttl",
        type=float,
        default=_env_float("job_ttl", 24 * 3600),
        help="seconds a finished job and its result are kept [86400]",
    )
    group.add_argument(
        "--job-attempts", type=int, default=int(_env_float("job_attempts", 3)), help="[3]"
    )
    group.add_argument(
        "--job-retry-backoff",
        type=float,
        default=_env_float("job_retry_backoff", 2.0),
        help="seconds before the 2nd attempt, doubling after [2]",
    )
    group.add_argument(
        "--job-lease",
        type=float,
        default=_env_float("job_lease", 30.0),
        help="seconds after which a job whose worker died runs again [30]",
    )
    group.add_argument(
        "--job-redelivery",
        type=float,
        default=_env_float("job_redelivery", 600.0),
        help="redis mode: seconds after which the task of a killed worker is delivered again [600]",
    )
    group.add_argument(
        "--job-workers",
        type=int,
        default=int(_env_float("job_workers", 1)),
        help="jobs transcribed at once by one server (embedded backend) [1]",
    )


def jobs_config(args: argparse.Namespace) -> JobsConfig:
    return JobsConfig(
        backend=args.jobs,
        data_dir=args.data_dir,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_duration_s=args.max_job_duration,
        result_ttl_s=args.job_ttl,
        retry=RetryPolicy(max_attempts=args.job_attempts, backoff_s=args.job_retry_backoff),
        lease_s=args.job_lease,
        redelivery_s=args.job_redelivery,
        workers=args.job_workers,
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

    from earshot.cli import engine_config
    from earshot.jobs.celery_backend import run_worker

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = jobs_config(args)
    if not config.distributed:
        print("earshot worker: --jobs must be a redis:// URL", file=sys.stderr)
        return 2
    return run_worker(config, engine_config(args), loglevel=args.log_level)


def add_job_commands(
    sub: argparse._SubParsersAction,
    add_engine_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    submit = sub.add_parser("submit", help="submit a file as a transcription job; prints its id")
    submit.add_argument("file")
    submit.add_argument("--url", default=DEFAULT_URL, help="server base URL [$EARSHOT_URL]")
    submit.add_argument("--language", default=None)
    submit.add_argument("--prompt", default=None)
    submit.add_argument("--words", action="store_true", help="word timestamps")
    submit.add_argument("--wait", action="store_true", help="wait and print the result")
    submit.add_argument("--format", choices=FORMATS, default="text", help="with --wait [text]")
    submit.add_argument("--api-key", default=env_default("api_key"), help="[$EARSHOT_API_KEY]")
    submit.set_defaults(func=cmd_submit)

    status = sub.add_parser("status", help="show a job's status")
    status.add_argument("job_id")
    status.add_argument("--url", default=DEFAULT_URL)
    status.add_argument("--api-key", default=env_default("api_key"), help="[$EARSHOT_API_KEY]")
    status.set_defaults(func=cmd_status)

    result = sub.add_parser("result", help="print a finished job's transcript")
    result.add_argument("job_id")
    result.add_argument("--url", default=DEFAULT_URL)
    result.add_argument("--format", choices=FORMATS, default="text")
    result.add_argument("--api-key", default=env_default("api_key"), help="[$EARSHOT_API_KEY]")
    result.set_defaults(func=cmd_result)

    worker = sub.add_parser(
        "worker", help="run a Celery worker that transcribes jobs (--jobs redis://...)"
    )
    add_engine_options(worker)
    add_jobs_options(worker)
    worker.add_argument("--log-level", default=env_default("log_level", "info"))
    worker.set_defaults(func=cmd_worker)
