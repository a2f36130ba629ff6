"""Simulated users on asyncio: each opens sessions back to back and streams its plan
paced in real time (or ``speed`` ×), recording when every chunk left and every
message arrived. One event loop drives all users; a user's work is tiny next to the
server's, so a few dozen streams fit in one client process.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from websockets.exceptions import InvalidHandshake, WebSocketException

from earshot.client import Closed, Error, Overloaded, Stream, connect, send_paced
from earshot.config import SAMPLE_RATE
from earshot.loadtest.scenario import Clip, Scenario, StreamPlan, build_plan, session_rng
from earshot.loadtest.scoring import SessionLog

SESSION_GRACE_S = 60.0
"""A session may run this much longer than its audio before it counts as hung."""
RETRY_AFTER_S = 1.0
MIN_SESSION_S = 3.0


@dataclass(frozen=True)
class UserLoad:
    """``users`` simultaneous users, each opening sessions until ``duration_s`` is over."""

    users: int
    duration_s: float
    scenario: Scenario
    seed: int = 0
    chunk_s: float = 0.1
    options: tuple[tuple[str, Any], ...] = ()
    """Extra query parameters (PROTOCOL.md), e.g. (("interim_results", False),)."""


class _SendClock:
    """Stands in for a ``Stream`` in ``send_paced`` and notes when each chunk left."""

    def __init__(self, stream: Stream, log: SessionLog) -> None:
        self._stream = stream
        self._log = log
        self._sent = 0

    async def send(self, audio: np.ndarray) -> None:
        await self._stream.send(audio)
        self._log.note_sent(self._sent, time.monotonic())
        self._sent += len(audio)


async def run_session(
    url: str, plan: StreamPlan, *, speed: float = 1.0, chunk_s: float = 0.1, **options: Any
) -> SessionLog:
    """One session: connect, stream ``plan`` paced, ``close_stream``, read until ``closed``."""
    log = SessionLog(plan, requested=time.monotonic())
    limit = plan.duration_s / (speed or 1e3) + SESSION_GRACE_S
    got_closed = False
    try:
        async with asyncio.timeout(limit):
            # retries=0: a refusal is a result here, not something to hide.
            async with connect(
                url, retries=0, sample_rate=SAMPLE_RATE, language=plan.language, **options
            ) as stream:
                log.connect_s = time.monotonic() - log.requested
                producer = asyncio.create_task(_produce(stream, plan, log, speed, chunk_s))
                try:
                    async for message in stream:
                        log.received.append((time.monotonic(), message))
                        if isinstance(message, Error):
                            log.errors.append(f"{message.code}: {message.message}")
                        got_closed = isinstance(message, Closed)
                finally:
                    if not producer.done():
                        producer.cancel()
                    elif not producer.cancelled() and producer.exception():
                        log.errors.append(f"sending failed: {producer.exception()!r}")
                log.close_code = stream.close_code
    except Overloaded:
        log.refused = True
    except TimeoutError:
        log.errors.append(f"session still open {limit:.0f} s after it started")
    except (ConnectionError, OSError, InvalidHandshake, WebSocketException) as exc:
        log.errors.append(f"connection failed: {exc!r}")
    log.ended = time.monotonic()
    if log.connect_s is not None and not got_closed and not log.errors:
        log.errors.append(f"session ended without 'closed' (close code {log.close_code})")
    return log


async def _produce(
    stream: Stream, plan: StreamPlan, log: SessionLog, speed: float, chunk_s: float
) -> None:
    clock = _SendClock(stream, log)
    await send_paced(
        cast(Stream, clock), plan.audio, sample_rate=SAMPLE_RATE, chunk_s=chunk_s, speed=speed
    )
    await stream.close_stream()


async def run_users(url: str, load: UserLoad, clips: list[Clip]) -> list[SessionLog]:
    """Every session of every user, bounded by ``load.duration_s`` plus one session."""
    deadline = time.monotonic() + load.duration_s
    speed = load.scenario.speed

    async def user(index: int) -> list[SessionLog]:
        logs: list[SessionLog] = []
        session = 0
        while (remaining := deadline - time.monotonic()) > 0:
            if session and remaining < MIN_SESSION_S:
                break  # a session started now would mostly run past the deadline
            rng = session_rng(load.seed, index, session)
            session += 1
            plan = build_plan(clips, load.scenario, rng, max_s=remaining * (speed or 1.0))
            log = await run_session(
                url, plan, speed=speed, chunk_s=load.chunk_s, **dict(load.options)
            )
            logs.append(log)
            if log.refused or log.errors:
                await asyncio.sleep(min(RETRY_AFTER_S, max(0.0, deadline - time.monotonic())))
        return logs

    per_user = await asyncio.gather(*(user(i) for i in range(load.users)))
    return [log for logs in per_user for log in logs]
