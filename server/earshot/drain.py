"""Graceful drain on SIGTERM/SIGINT, so replicas can be stopped without losing speech.

The first signal drains: ``/readyz`` answers 503 (the load balancer or Kubernetes stops
routing here), new sessions are refused with 1013 (clients retry and land on another
replica), and every open session finalizes what it heard, sends its remaining finals and
closes with 1001. Once no session is left, or after ``drain_timeout_s``, uvicorn's own
shutdown runs (HTTP requests in flight finish, the lifespan stops the engine). A second
signal skips what is left of the drain.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from types import FrameType

import uvicorn

from earshot.runtime import Runtime

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, runtime: Runtime, drain_timeout_s: float) -> None:
        super().__init__(config)
        self.runtime = runtime
        self.drain_timeout_s = drain_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain: asyncio.Task[None] | None = None
        self._drain_requested = False

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Signal handler (main thread, between two bytecodes of the event loop)."""
        if self._drain_requested or self._loop is None or self.drain_timeout_s <= 0:
            super().handle_exit(sig, frame)
            return
        self._drain_requested = True
        self._loop.call_soon_threadsafe(self._start_drain, sig)

    def _start_drain(self, sig: int) -> None:
        self._drain = asyncio.ensure_future(self._drain_then_exit(sig))

    async def _drain_then_exit(self, sig: int) -> None:
        started = time.monotonic()
        self.runtime.drain()
        deadline = started + self.drain_timeout_s
        while self.runtime.sessions and time.monotonic() < deadline and not self.should_exit:
            await asyncio.sleep(0.05)
        if self.runtime.sessions:
            log.warning(
                "drain timeout: %d sessions still open after %.0f s",
                len(self.runtime.sessions),
                self.drain_timeout_s,
            )
        else:
            log.info("drained in %.2f s", time.monotonic() - started)
        # Give the last close frames a moment on the wire before uvicorn closes sockets.
        await asyncio.sleep(0.1)
        super().handle_exit(sig, None)
