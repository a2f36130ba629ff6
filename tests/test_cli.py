"""The `earshot` command as a user runs it: clear errors, not tracebacks."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import Clip

from earshot.server_process import ServerProcess, free_port


def earshot(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "earshot", *args], capture_output=True, text=True, timeout=timeout
    )


def test_missing_model_is_a_clear_error() -> None:
    result = earshot("serve", "--model", "./no/such/model", "--port", str(free_port()))
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_transcribe_prints_segments_and_speed(speech: dict[str, Clip]) -> None:
    result = earshot("transcribe", str(speech["cmusphinx_goforward"].path))
    assert result.returncode == 0, result.stderr
    assert "forward" in result.stdout.lower() and "real time" in result.stderr


def test_transcribe_refuses_a_non_audio_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"definitely not audio" * 100)
    result = earshot("transcribe", str(junk))
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_stream_prints_finals(speech: dict[str, Clip]) -> None:
    with ServerProcess() as server:
        clip = str(speech["cmusphinx_goforward"].path)
        result = earshot("stream", clip, "--url", server.ws_url, "--speed", "4")
    assert result.returncode == 0, result.stderr
    assert "forward" in result.stdout.lower()


def test_stream_to_nowhere_is_a_clear_error(speech: dict[str, Clip]) -> None:
    url = f"ws://127.0.0.1:{free_port()}/v1/listen"
    result = earshot("stream", str(speech["cmusphinx_goforward"].path), "--url", url)
    assert result.returncode == 1
    assert "cannot stream" in result.stderr and "Traceback" not in result.stderr


# -- options: every default comes from its config field, every option from EARSHOT_* ------


def parse(monkeypatch: pytest.MonkeyPatch, *argv: str, **env: str) -> argparse.Namespace:
    """``earshot <argv>`` parsed with exactly ``env`` as the EARSHOT_* environment."""
    from earshot.cli import build_parser

    for name in [n for n in os.environ if n.startswith("EARSHOT_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return build_parser().parse_args(list(argv))


def test_serve_defaults_are_the_config_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from earshot.config import AdmissionConfig, SecurityConfig, ServerConfig, StreamLimits
    from earshot.engine_options import engine_config
    from earshot.jobs.cli import jobs_config
    from earshot.jobs.config import JobsConfig
    from earshot.security_options import security_config, stream_limits

    args = parse(monkeypatch, "serve")
    defaults = ServerConfig()
    assert (args.host, args.port, args.log_level) == (defaults.host, defaults.port, "info")
    assert args.partial_interval == defaults.partial_interval_s
    assert args.drain_timeout == defaults.drain_timeout_s
    assert args.replica_id == defaults.replica_id
    assert args.max_sessions == AdmissionConfig().max_sessions
    assert (args.max_batch, args.batch_wait_ms) == (None, None)
    assert engine_config(args) == defaults.engine
    assert jobs_config(args) == JobsConfig()
    assert stream_limits(args) == StreamLimits()
    assert security_config(args) == SecurityConfig()


def test_worker_and_eval_take_the_same_engine_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from earshot.config import EngineConfig
    from earshot.engine_options import engine_config

    for command in (["worker"], ["transcribe", "x.wav"], ["eval"]):
        assert engine_config(parse(monkeypatch, *command)) == EngineConfig(), command


# (flag, EARSHOT_* variable, value given, argparse attribute, parsed value)
OPTIONS = [
    ("--host", "EARSHOT_HOST", "0.0.0.0", "host", "0.0.0.0"),
    ("--port", "EARSHOT_PORT", "9001", "port", 9001),
    ("--model", "EARSHOT_MODEL", "tiny.en", "model", "tiny.en"),
    ("--device", "EARSHOT_DEVICE", "cpu", "device", "cpu"),
    ("--compute-type", "EARSHOT_COMPUTE_TYPE", "int8", "compute_type", "int8"),
    ("--cpu-threads", "EARSHOT_CPU_THREADS", "2", "cpu_threads", 2),
    ("--engine-workers", "EARSHOT_ENGINE_WORKERS", "3", "engine_workers", 3),
    ("--beam-size", "EARSHOT_BEAM_SIZE", "5", "beam_size", 5),
    ("--max-batch", "EARSHOT_MAX_BATCH", "8", "max_batch", 8),
    ("--batch-wait-ms", "EARSHOT_BATCH_WAIT_MS", "2.5", "batch_wait_ms", 2.5),
    ("--max-sessions", "EARSHOT_MAX_SESSIONS", "7", "max_sessions", 7),
    ("--partial-interval", "EARSHOT_PARTIAL_INTERVAL", "0.3", "partial_interval", 0.3),
    ("--log-level", "EARSHOT_LOG_LEVEL", "debug", "log_level", "debug"),
    ("--log-format", "EARSHOT_LOG_FORMAT", "json", "log_format", "json"),
    ("--replica-id", "EARSHOT_REPLICA_ID", "r1", "replica_id", "r1"),
    ("--drain-timeout", "EARSHOT_DRAIN_TIMEOUT", "5", "drain_timeout", 5.0),
    ("--jobs", "EARSHOT_JOBS", "redis://h:6379/0", "jobs", "redis://h:6379/0"),
    ("--data-dir", "EARSHOT_DATA_DIR", "/tmp/jobs", "data_dir", Path("/tmp/jobs")),
    ("--max-upload-mb", "EARSHOT_MAX_UPLOAD_MB", "1.5", "max_upload_mb", 1.5),
    ("--max-job-duration", "EARSHOT_MAX_JOB_DURATION", "60", "max_job_duration", 60.0),
    ("--job-ttl", "EARSHOT_JOB_TTL", "10", "job_ttl", 10.0),
    ("--job-attempts", "EARSHOT_JOB_ATTEMPTS", "5", "job_attempts", 5),
    ("--job-retry-backoff", "EARSHOT_JOB_RETRY_BACKOFF", "1.5", "job_retry_backoff", 1.5),
    ("--job-lease", "EARSHOT_JOB_LEASE", "9", "job_lease", 9.0),
    ("--job-redelivery", "EARSHOT_JOB_REDELIVERY", "99", "job_redelivery", 99.0),
    ("--job-workers", "EARSHOT_JOB_WORKERS", "2", "job_workers", 2),
    ("--api-keys-file", "EARSHOT_API_KEYS_FILE", "/k", "api_keys_file", "/k"),
    ("--token-secret", "EARSHOT_TOKEN_SECRET", "s3cret", "token_secret", "s3cret"),
    ("--token-ttl", "EARSHOT_TOKEN_TTL", "60", "token_ttl", 60.0),
    ("--allowed-origins", "EARSHOT_ALLOWED_ORIGINS", "*", "allowed_origins", "*"),
    ("--cors-origins", "EARSHOT_CORS_ORIGINS", "https://a", "cors_origins", "https://a"),
    ("--key-max-streams", "EARSHOT_KEY_MAX_STREAMS", "4", "key_max_streams", 4),
    ("--key-rpm", "EARSHOT_KEY_RPM", "30", "key_rpm", 30),
    ("--key-max-upload-mb", "EARSHOT_KEY_MAX_UPLOAD_MB", "2", "key_max_upload_mb", 2.0),
    ("--idle-timeout", "EARSHOT_IDLE_TIMEOUT", "3", "idle_timeout", 3.0),
    ("--max-input-lead", "EARSHOT_MAX_INPUT_LEAD", "0", "max_input_lead", 0.0),
    ("--max-input-speed", "EARSHOT_MAX_INPUT_SPEED", "2", "max_input_speed", 2.0),
    ("--max-outbound-messages", "EARSHOT_MAX_OUTBOUND_MESSAGES", "9", "max_outbound_messages", 9),
    ("--ws-ping-interval", "EARSHOT_WS_PING_INTERVAL", "4", "ws_ping_interval", 4.0),
    ("--ws-ping-timeout", "EARSHOT_WS_PING_TIMEOUT", "4", "ws_ping_timeout", 4.0),
    ("--handshake-timeout", "EARSHOT_HANDSHAKE_TIMEOUT", "2", "handshake_timeout", 2.0),
    ("--max-connections", "EARSHOT_MAX_CONNECTIONS", "50", "max_connections", 50),
]


@pytest.mark.parametrize(
    ("flag", "variable", "value", "attribute", "parsed"), OPTIONS, ids=[o[0] for o in OPTIONS]
)
def test_every_serve_option_reads_its_variable_and_the_command_line_wins(
    monkeypatch: pytest.MonkeyPatch,
    flag: str,
    variable: str,
    value: str,
    attribute: str,
    parsed: object,
) -> None:
    assert getattr(parse(monkeypatch, "serve", **{variable: value}), attribute) == parsed
    assert getattr(parse(monkeypatch, "serve", flag, value), attribute) == parsed
    other = {"--device": "cuda", "--log-format": "text"}.get(flag, "1")
    given = parse(monkeypatch, "serve", flag, other, **{variable: value})
    assert getattr(given, attribute) != parsed


@pytest.mark.parametrize("flag", ["--full-window", "--log-transcripts"])
@pytest.mark.parametrize(("value", "on"), [("1", True), ("true", True), ("0", False), ("", False)])
def test_flags_read_their_variable(
    monkeypatch: pytest.MonkeyPatch, flag: str, value: str, on: bool
) -> None:
    variable = "EARSHOT_" + flag[2:].upper().replace("-", "_")
    attribute = flag[2:].replace("-", "_")
    assert getattr(parse(monkeypatch, "serve", **{variable: value}), attribute) is on
    assert getattr(parse(monkeypatch, "serve", flag), attribute) is True


def test_job_client_commands_read_url_and_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    args = parse(monkeypatch, "status", "j1")
    assert (args.url, args.api_key) == ("http://127.0.0.1:8000", None)
    env = {"EARSHOT_URL": "http://jobs:80", "EARSHOT_API_KEY": "k"}
    for command in (["status", "j1"], ["result", "j1"], ["submit", "a.wav"]):
        args = parse(monkeypatch, *command, **env)
        assert (args.url, args.api_key) == ("http://jobs:80", "k")


def test_a_bad_variable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as info:
        parse(monkeypatch, "serve", EARSHOT_PORT="eighty")
    assert info.value.code == 2


def test_the_job_worker_command_needs_no_earshot_cli() -> None:
    code = "import sys, earshot.jobs.cli; print('earshot.cli' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
