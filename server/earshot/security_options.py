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
from earshot.config import SecurityConfig, StreamLimits, env_default
from earshot.limits import MIB, KeyLimits

WS_MAX_SIZE = 256 * 1024
"""Largest WebSocket message (after inflating): a 1 s frame at 48 kHz pcm_f32le is 188 KiB;
longer frames between this and 1 s are refused by the decoder (both close 1009)."""
WS_MAX_QUEUE = 16
"""Messages the WebSocket layer buffers before it stops reading the socket."""


def _number(name: str, default: float) -> float:
    return float(env_default(name) or default)


def _list(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(item.strip() for item in value.replace("\n", ",").split(",") if item.strip())


def add_security_options(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group("security and limits")
    group.add_argument(
        "--api-keys-file",
        default=env_default("api_keys_file"),
        help="one key per line: a key or sha256:<hex>, then optional name=, streams=, rpm=,"
        " upload_mb= (EARSHOT_API_KEYS may also hold comma-separated entries)."
        " No keys: open access, for loopback only",
    )
    group.add_argument(
        "--token-secret",
        default=env_default("token_secret"),
        help="HMAC secret for /v1/auth/token tokens [random per process: replicas behind"
        " one load balancer must share one; prefer EARSHOT_TOKEN_SECRET]",
    )
    group.add_argument("--token-ttl", type=float, default=_number("token_ttl", 300))
    group.add_argument(
        "--allowed-origins",
        default=env_default("allowed_origins"),
        help="comma-separated browser origins that may open WebSockets, or *"
        " [same-origin and loopback pages]",
    )
    group.add_argument(
        "--cors-origins",
        default=env_default("cors_origins"),
        help="comma-separated origins the HTTP API sends CORS headers to [--allowed-origins]",
    )
    defaults = KeyLimits()
    group.add_argument("--key-max-streams", type=int, default=int(_number("key_max_streams", 16)))
    group.add_argument("--key-rpm", type=int, default=int(_number("key_rpm", 120)))
    group.add_argument(
        "--key-max-upload-mb",
        type=float,
        default=_number("key_max_upload_mb", (defaults.max_upload_bytes or 0) / MIB),
        help="largest upload per request for keys without their own upload_mb=",
    )
    limits = StreamLimits()
    group.add_argument(
        "--idle-timeout", type=float, default=_number("idle_timeout", limits.idle_timeout_s)
    )
    group.add_argument(
        "--max-input-lead",
        type=float,
        default=_number("max_input_lead", limits.max_input_lead_s),
        help="seconds of audio a stream may send ahead of --max-input-speed: half is taken"
        " at once, half waits; more closes it with 1008 (0: off)",
    )
    group.add_argument(
        "--max-input-speed",
        type=float,
        default=_number("max_input_speed", limits.max_input_speed),
        help="sustained input rate allowed, in x real time",
    )
    group.add_argument(
        "--max-outbound-messages",
        type=int,
        default=int(_number("max_outbound_messages", limits.max_outbound_messages)),
    )
    group.add_argument(
        "--ws-ping-interval",
        type=float,
        default=_number("ws_ping_interval", limits.ws_ping_interval_s),
    )
    group.add_argument(
        "--ws-ping-timeout",
        type=float,
        default=_number("ws_ping_timeout", limits.ws_ping_timeout_s),
    )
    group.add_argument(
        "--handshake-timeout",
        type=float,
        default=_number("handshake_timeout", limits.handshake_timeout_s),
    )
    group.add_argument(
        "--max-connections",
        type=int,
        default=int(_number("max_connections", limits.max_connections)),
    )


def security_config(args: argparse.Namespace) -> SecurityConfig:
    """Raises ``OSError``/``ValueError`` for an unreadable keys file or a bad entry."""
    entries = list(_list(os.environ.get("EARSHOT_API_KEYS")) or ())
    if args.api_keys_file:
        entries += Path(args.api_keys_file).read_text().splitlines()
    parse_keys(entries, KeyLimits())  # fail at startup, not at the first request
    origins = _list(args.allowed_origins)
    cors = _list(args.cors_origins)
    return SecurityConfig(
        api_keys=tuple(entries),
        token_secret=args.token_secret or None,
        token_ttl_s=args.token_ttl,
        allowed_origins=origins,
        cors_origins=cors if cors is not None else (origins or ()),
        key_limits=KeyLimits(
            max_streams=args.key_max_streams or None,
            requests_per_minute=args.key_rpm or None,
            max_upload_bytes=int(args.key_max_upload_mb * MIB) or None,
        ),
        # Without a key, the jobs API's upload cap (--max-upload-mb) bounds every body.
        max_body_bytes=int(getattr(args, "max_upload_mb", 0) * MIB)
        or SecurityConfig.max_body_bytes,
    )


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
        "ws_max_queue": WS_MAX_QUEUE,
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
