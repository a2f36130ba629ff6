"""Locust load test: every user streams real speech to ``/v1/listen``, paced in real time.

    locust -f loadtest/locustfile.py --headless -u 16 -r 2 -t 60s --host ws://127.0.0.1:8000
    locust -f loadtest/locustfile.py --host ws://127.0.0.1:8000      # web UI on :8089

A user opens a session, streams a seeded plan of manifest clips separated by silence
(``earshot.loadtest.scenario``), sends ``close_stream``, reads until ``closed``, and
starts over. It reports to Locust's own statistics, as request type ``WS``:

- ``connect``: handshake until ``ready``;
- ``final latency``: a clip's last speech sample sent → its ``final`` arrived
  (endpointing included), reported the moment the final arrives;
- ``first partial``: a clip's first speech sample sent → its first ``partial``;
- ``real-time lag``: a ``final`` arrived − its ``end`` sample was sent;
- ``session``: a whole session; a refusal (close 1013) or any error is a failure.

At the end it prints a summary with the WER (``--earshot-report PATH`` also writes it
as JSON). Options: ``--manifest``, ``--language``, ``--scenario``, ``--session-s``,
``--speed``, ``--seed`` (also in the web UI). The WebSocket client is websocket-client,
whose blocking sockets Locust's gevent monkey-patching makes cooperative.
"""

from __future__ import annotations

import argparse
import itertools
import json
import struct
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gevent
import msgpack
from locust import User, constant, events, task
from locust.env import Environment
from locust.stats import StatsEntry
from websocket import ABNF, WebSocket, WebSocketException, create_connection

from earshot.audio_files import to_pcm16
from earshot.client import Closed, Error, Message, connect, parse_message
from earshot.config import SAMPLE_RATE
from earshot.loadtest.options import add_load_arguments
from earshot.loadtest.scenario import (
    SCENARIOS,
    Clip,
    StreamPlan,
    build_plan,
    clip_audio,
    load_clips,
    session_rng,
)
from earshot.loadtest.scoring import SessionLog, SessionScore, SessionScorer
from earshot.wer import error_rate

CHUNK_S = 0.1
CONNECT_TIMEOUT_S = 10.0
SESSION_GRACE_S = 60.0
NAMES = {"final": "final latency", "first_partial": "first partial", "lag": "real-time lag"}


class Refused(Exception):
    """The server said it is full (close 1013)."""


class SessionFailed(Exception):
    pass


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    add_load_arguments(parser)
    parser.add_argument("--earshot-report", default="", help="write the summary JSON here")


@dataclass
class Totals:
    """What this process's users did, for the end-of-run summary."""

    sessions: int = 0
    refused: int = 0
    errors: list[str] = field(default_factory=list)
    clips: int = 0
    missed_clips: int = 0
    stray_finals: int = 0
    references: list[str] = field(default_factory=list)
    hypotheses: list[str] = field(default_factory=list)

    def add(self, score: SessionScore) -> None:
        self.sessions += 1
        self.clips += score.clips
        self.missed_clips += score.missed_clips
        self.stray_finals += score.stray_finals
        self.references.append(score.reference)
        self.hypotheses.append(score.hypothesis)


def _options(environment: Environment) -> argparse.Namespace:
    """Command-line (or web UI) options; this file's own options have defaults there."""
    if environment.parsed_options is None:
        raise RuntimeError("run this locustfile with the locust command")
    return environment.parsed_options


_clips: list[Clip] = []
_users = itertools.count()
_totals = Totals()


@events.test_start.add_listener
def _load_clips(environment: Environment, **_: Any) -> None:
    options = _options(environment)
    _clips[:] = load_clips(options.manifest, language=options.language)
    global _totals
    _totals = Totals()  # the web UI may run several tests in one process
    for clip in _clips:  # decode and VAD now, not on a stream's clock
        clip_audio(clip)


class EarshotStreamer(User):
    """One microphone: sessions back to back, no think time between them."""

    wait_time = constant(0)
    host = "ws://127.0.0.1:8000"

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.index = next(_users)
        self.sessions = 0
        options = _options(environment)
        scenario = replace(SCENARIOS[options.scenario], speed=float(options.speed))
        if options.session_s:
            scenario = replace(scenario, session_s=float(options.session_s))
        self.scenario = scenario
        self.seed = int(options.seed)
        self.partials = not options.no_partials

    @task
    def stream(self) -> None:
        rng = session_rng(self.seed, self.index, self.sessions)
        self.sessions += 1
        plan = build_plan(_clips, self.scenario, rng)
        url = connect(
            self.host or "", sample_rate=SAMPLE_RATE, language=plan.language,
            interim_results=self.partials,
        ).url  # fmt: skip
        log = SessionLog(plan, requested=time.monotonic())
        scorer = SessionScorer(log)
        try:
            self._run(url, log, scorer)
        except Refused as exc:
            log.refused = True
            _totals.refused += 1
            self._report("session", time.monotonic() - log.requested, exc)
            gevent.sleep(1.0)
            return
        except (SessionFailed, WebSocketException, OSError) as exc:
            _totals.errors.append(repr(exc))
            self._report("session", time.monotonic() - log.requested, exc)
            gevent.sleep(1.0)
            return
        self._measurements(scorer.finish())
        self._report("session", time.monotonic() - log.requested, None, len(plan.audio) * 2)
        _totals.add(scorer.score())

    def _run(self, url: str, log: SessionLog, scorer: SessionScorer) -> None:
        socket = create_connection(url, timeout=CONNECT_TIMEOUT_S)
        receiver = None
        try:
            first = _receive(socket)
            if isinstance(first, int | Error):
                code = first if isinstance(first, int) else _close_code(socket)
                if code == 1013 or (isinstance(first, Error) and first.code == "overloaded"):
                    raise Refused(f"close {code}: server overloaded")
                raise SessionFailed(f"no ready: {first}")
            log.connect_s = time.monotonic() - log.requested
            self._report("connect", log.connect_s, None)
            socket.settimeout(None)
            receiver = gevent.spawn(self._receive_all, socket, log, scorer)
            _send_paced(socket, log.plan, log, self.scenario.speed)
            socket.send(json.dumps({"type": "close_stream"}))
            receiver.join(timeout=SESSION_GRACE_S)
            if not receiver.dead:
                raise SessionFailed(f"no 'closed' within {SESSION_GRACE_S:.0f} s of the end")
            receiver.get()  # re-raises what the receiver hit
            if log.errors:
                raise SessionFailed(log.errors[0])
        finally:
            if receiver is not None and not receiver.dead:
                receiver.kill()
            socket.close(timeout=1)

    def _receive_all(self, socket: WebSocket, log: SessionLog, scorer: SessionScorer) -> None:
        while True:
            message = _receive(socket)
            if isinstance(message, int):
                log.close_code = message
                log.errors.append(f"closed with {message} before 'closed'")
                return
            arrival = time.monotonic()
            log.received.append((arrival, message))
            self._measurements(scorer.observe(arrival, message))
            if isinstance(message, Error):
                log.errors.append(f"{message.code}: {message.message}")
            if isinstance(message, Closed):
                return

    def _measurements(self, found: list[tuple[str, float]]) -> None:
        for kind, seconds in found:
            self._report(NAMES[kind], seconds, None)

    def _report(
        self, name: str, seconds: float, exception: Exception | None, length: int = 0
    ) -> None:
        self.environment.events.request.fire(
            request_type="WS",
            name=name,
            response_time=seconds * 1000,
            response_length=length,
            exception=exception,
            context={},
        )


def _send_paced(socket: WebSocket, plan: StreamPlan, log: SessionLog, speed: float) -> None:
    """Chunks on an absolute schedule (no drift), each noted when it left."""
    step = int(SAMPLE_RATE * CHUNK_S)
    started = time.monotonic()
    for i, offset in enumerate(range(0, len(plan.audio), step)):
        socket.send_binary(to_pcm16(plan.audio[offset : offset + step]))
        log.note_sent(offset, time.monotonic())
        if speed > 0:
            delay = started + (i + 1) * CHUNK_S / speed - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)


def _receive(socket: WebSocket) -> Message | int:
    """The next server message, or the close code once the server closed."""
    opcode, data = socket.recv_data()
    if opcode == ABNF.OPCODE_CLOSE:
        return struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
    if opcode == ABNF.OPCODE_BINARY:
        return parse_message(msgpack.unpackb(data, raw=False))
    return parse_message(json.loads(data))


def _close_code(socket: WebSocket) -> int:
    """Read until the close frame that follows an error message."""
    for _ in range(10):
        message = _receive(socket)
        if isinstance(message, int):
            return message
    return 0


@events.test_stop.add_listener
def _print_summary(environment: Environment, **_: Any) -> None:
    options = _options(environment)
    wer = (
        error_rate(_totals.references, _totals.hypotheses, options.language)
        if _totals.references
        else None
    )
    summary: dict[str, Any] = {
        "sessions": _totals.sessions,
        "refused": _totals.refused,
        "errors": len(_totals.errors),
        "error_samples": _totals.errors[:5],
        "clips": _totals.clips,
        "missed_clips": _totals.missed_clips,
        "stray_finals": _totals.stray_finals,
        "wer": None if wer is None else round(wer, 4),
    }
    for name in NAMES.values():
        entry = environment.stats.get(name, "WS")
        summary[name.replace(" ", "_").replace("-", "")] = {
            "count": entry.num_requests,
            "p50_s": _seconds(entry, 0.5),
            "p95_s": _seconds(entry, 0.95),
            "max_s": _seconds(entry, 1.0),
        }
    text = json.dumps(summary, indent=2)
    print(f"earshot summary:\n{text}")
    if options.earshot_report:
        Path(options.earshot_report).write_text(text + "\n")


def _seconds(entry: StatsEntry, percentile: float) -> float | None:
    if not entry.num_requests:
        return None
    if percentile >= 1:
        return round(entry.max_response_time / 1000, 3)
    return round(entry.get_response_time_percentile(percentile) / 1000, 3)
