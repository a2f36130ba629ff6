"""``earshot serve``'s security and robustness options, and ``earshot keygen``.

Every option also reads ``EARSHOT_<OPTION>``. Raw API keys are only read from the
environment (``EARSHOT_API_KEYS``) or a file (``--api-keys-file``), never from the
command line, where ``ps`` would show them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from earshot.auth import generate_key, hash_key, parse_keys
from earshot.config import SecurityConfig, StreamLimits
from earshot.limits import MIB, KeyLimits
from earshot.options import ENV_PREFIX, add_option, config_option

WS_MAX_SIZE = 256 * 1024
"""Largest WebSocket message (after inflating): a 1 s frame at 48 kHz pcm_f32le is 188 KiB;
longer frames between this and 1 s are refused by the decoder (both close 1009)."""


def _list(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(item.strip() for item in value.replace("\n", ",").split(",") if item.strip())


def add_security_options(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group("security and limits")
    add_option(
        group,
        "--api-keys-file",
        help="one key per line: a key or sha256:<hex>, then optional name=, role=admin,"
        " streams=, rpm=, upload_mb=, jobs=, jobs_mb= (EARSHOT_API_KEYS may also hold"
        " comma-separated entries). No keys: open access, for loopback only",
    )
    add_option(
        group,
        "--no-auth",
        action="store_true",
        help="serve beyond loopback without API keys, every route open (a private network"
        " or a proxy that authenticates); without it, a non-loopback --host with no keys"
        " refuses to start",
    )
    config_option(
        group,
        "--token-secret",
        SecurityConfig,
        "token_secret",
        type=str,
        help="HMAC secret for /v1/auth/token tokens [random per process: replicas behind"
        " one load balancer must share one; prefer EARSHOT_TOKEN_SECRET]",
    )
    add_option(
        group,
        "--token-secret-file",
        help="file holding the token secret (a mounted Secret); --token-secret wins",
    )
    config_option(
        group, "--token-ttl", SecurityConfig, "token_ttl_s", help="seconds a token is valid"
    )
    add_option(
        group,
        "--allowed-origins",
        help="comma-separated browser origins that may open WebSockets, or *"
        " [same-origin and loopback pages]",
    )
    add_option(
        group,
        "--cors-origins",
        help="comma-separated origins the HTTP API sends CORS headers to [--allowed-origins]",
    )
    config_option(
        group,
        "--key-max-streams",
        KeyLimits,
        "max_streams",
        help="concurrent streams per key without its own streams= (0: no limit)",
    )
    config_option(
        group,
        "--key-rpm",
        KeyLimits,
        "requests_per_minute",
        help="requests per minute per key without its own rpm= (0: no limit)",
    )
    config_option(
        group,
        "--key-max-upload-mb",
        KeyLimits,
        "max_upload_bytes",
        scale=MIB,
        help="largest upload per request for keys without their own upload_mb=",
    )
    config_option(
        group,
        "--key-max-jobs",
        KeyLimits,
        "max_jobs",
        help="file jobs a key may have queued or running, for keys without their own jobs="
        " (more: 429; 0: no limit)",
    )
    config_option(
        group,
        "--key-max-job-mb",
        KeyLimits,
        "max_job_bytes",
        scale=MIB,
        help="MiB of audio a key's queued and running jobs may hold, for keys without their"
        " own jobs_mb= (more: 429; 0: no limit)",
    )
    config_option(
        group,
        "--idle-timeout",
        StreamLimits,
        "idle_timeout_s",
        help="seconds without any frame (audio or keepalive) before a stream is closed",
    )
    config_option(
        group,
        "--max-input-lead",
        StreamLimits,
        "max_input_lead_s",
        help="seconds of audio a stream may send ahead of --max-input-speed: half is taken"
        " at once, half waits; more closes it with 1008 (0: off)",
    )
    config_option(
        group,
        "--max-input-speed",
        StreamLimits,
        "max_input_speed",
        help="sustained input rate allowed, in x real time",
    )
    config_option(
        group,
        "--max-outbound-messages",
        StreamLimits,
        "max_outbound_messages",
        help="unsent messages before a client that doesn't read is cut off",
    )
    config_option(
        group,
        "--ws-ping-interval",
        StreamLimits,
        "ws_ping_interval_s",
        help="seconds between WebSocket pings (0: none)",
    )
    config_option(
        group,
        "--ws-ping-timeout",
        StreamLimits,
        "ws_ping_timeout_s",
        help="seconds a peer has to answer a ping",
    )
    config_option(
        group,
        "--handshake-timeout",
        StreamLimits,
        "handshake_timeout_s",
        help="seconds a connection has to send its request headers",
    )
    config_option(
        group,
        "--max-connections",
        StreamLimits,
        "max_connections",
        help="open connections beyond which new ones get HTTP 503 (0: no limit)",
    )


def security_config(args: argparse.Namespace) -> SecurityConfig:
    """Raises ``OSError``/``ValueError`` for an unreadable keys file or a bad entry."""
    entries = list(_list(os.environ.get(f"{ENV_PREFIX}API_KEYS")) or ())
    if args.api_keys_file:
        entries += Path(args.api_keys_file).read_text().splitlines()
    parse_keys(entries, KeyLimits())  # fail at startup, not at the first request
    origins = _list(args.allowed_origins)
    cors = _list(args.cors_origins)
    secret = args.token_secret or None
    if secret is None and args.token_secret_file:
        secret = Path(args.token_secret_file).read_text().strip() or None
    return SecurityConfig(
        api_keys=tuple(entries),
        token_secret=secret,
        token_ttl_s=args.token_ttl,
        allowed_origins=origins,
        cors_origins=cors if cors is not None else (origins or ()),
        key_limits=KeyLimits(
            max_streams=args.key_max_streams or None,
            requests_per_minute=args.key_rpm or None,
            max_upload_bytes=int(args.key_max_upload_mb * MIB) or None,
            max_jobs=args.key_max_jobs or None,
            max_job_bytes=int(args.key_max_job_mb * MIB) or None,
        ),
        # Without a key, the jobs API's upload cap (--max-upload-mb) bounds every body.
        max_body_bytes=int(getattr(args, "max_upload_mb", 0) * MIB)
        or SecurityConfig.max_body_bytes,
    )


def startup_refusal(args: argparse.Namespace, security: SecurityConfig) -> str | None:
    """Why ``earshot serve`` must not start as configured (protected mode), or None."""
    from earshot.access import protected_mode_refusal

    keys = parse_keys(security.api_keys, security.key_limits)
    return protected_mode_refusal(args.host, bool(keys), args.no_auth)


def stream_limits(args: argparse.Namespace) -> StreamLimits:
    return StreamLimits(
        idle_timeout_s=args.idle_timeout,
        max_input_lead_s=args.max_input_lead,
        max_input_speed=args.max_input_speed,
        max_outbound_messages=args.max_outbound_messages,
        ws_ping_interval_s=args.ws_ping_interval,
        ws_ping_timeout_s=args.ws_ping_timeout,
        handshake_timeout_s=args.handshake_timeout,
        max_connections=args.max_connections,
    )


def uvicorn_guards(limits: StreamLimits) -> dict[str, Any]:
    """``uvicorn.Config`` arguments that enforce the connection-level limits."""
    from earshot.handshake import guarded_protocol

    return {
        "ws_max_size": WS_MAX_SIZE,
        "http": guarded_protocol(limits.handshake_timeout_s),
        "ws_ping_interval": limits.ws_ping_interval_s or None,
        "ws_ping_timeout": limits.ws_ping_timeout_s or None,
        "limit_concurrency": limits.max_connections or None,
    }


def add_keygen_command(sub: Any) -> None:
    keygen = sub.add_parser("keygen", help="make an API key and its keys-file line")
    keygen.add_argument("--name", default=None, help="name for logs, limits and tokens")
    keygen.set_defaults(func=cmd_keygen)


def cmd_keygen(args: argparse.Namespace) -> int:
    key = generate_key()
    entry = hash_key(key) + (f" name={args.name}" if args.name else "")
    print(f"API key (give it to the client; it is not stored anywhere): {key}")
    print(f"keys-file line (the server keeps only this hash):          {entry}")
    return 0
