"""A deadline for a new connection's request headers.

uvicorn keeps a TCP connection that never sends a request open forever, so idle or
half-open connects (and slowloris clients trickling header bytes) would pile up until
``max_connections``. This protocol closes any connection whose first request headers
haven't fully arrived within ``header_timeout_s`` of connecting, WebSocket upgrades
included (their handshake is that first request).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._headers_done = False
        self._header_deadline: asyncio.TimerHandle | None = self.loop.call_later(
            self.header_timeout_s, self._headers_overdue
        )

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._cancel_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _cancel_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_overdue(self) -> None:
        self._header_deadline = None
        if not self._headers_done and not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(header_timeout_s: float) -> type[Any]:
    """The protocol class for ``uvicorn.Config(http=...)`` with this deadline."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"header_timeout_s": header_timeout_s},
    )
