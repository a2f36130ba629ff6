"""Deadlines for a new connection's handshake, and the WebSocket protocol the server runs.

uvicorn keeps a TCP connection that never sends a request open forever, so idle or
half-open connects (and slowloris clients trickling header bytes) would pile up until
``max_connections``. ``GuardedHttpToolsProtocol`` closes any connection whose first
request headers haven't fully arrived within ``header_timeout_s`` of connecting,
WebSocket upgrades included (their handshake is that first request).

An upgrade is then handed to ``GuardedWebSocketsProtocol``: uvicorn's sans-I/O
``websockets`` implementation (``ws="websockets-sansio"``; the legacy one is deprecated)
with three additions that keep what the legacy one did:

- an opening deadline: the handshake must complete (the app accepts or denies the
  connection) within ``handshake_timeout_s`` of the upgrade, or the connection is closed
  (the legacy implementation's ``open_timeout``);
- a keepalive ping that goes unanswered drops the peer even once the app has sent its
  close frame (the legacy implementation did too), instead of waiting the closing
  handshake's 10 s for a close frame from a peer that is gone;
- a send on a connection that already failed under the app (a keepalive ping went
  unanswered, a frame exceeded ``ws_max_size``) raises ``ClientDisconnected``, the "peer
  went away" error Starlette turns into ``WebSocketDisconnect``, as a send after the
  connection is lost does, rather than the ``RuntimeError`` reserved for app bugs.

``ws_max_size``, ``ws_ping_interval`` and ``ws_ping_timeout`` apply as they did.
``ws_max_queue`` does not exist here: reading pauses after each message until the app
takes it, which bounds what a client can queue more tightly than a queue length did.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


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


class GuardedWebSocketsProtocol(WebSocketsSansIOProtocol):
    handshake_timeout_s = 10.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._open_deadline: asyncio.TimerHandle | None = self.loop.call_later(
            self.handshake_timeout_s, self._handshake_overdue
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    async def send(self, message: ASGISendEvent) -> None:
        await self.writable.wait()  # as the parent does first, so nothing changes between
        if (
            message["type"] in ("websocket.send", "websocket.close")
            and self.close_sent
            and self.transport.is_closing()
        ):
            raise ClientDisconnected()
        await super().send(message)
        if self.handshake_complete:
            self._cancel_deadline()

    def keepalive_timeout(self) -> None:
        if self.close_sent and not self.transport.is_closing():
            # Our close frame is out and the ping before it went unanswered: the peer is
            # gone, so its close frame won't come either.
            self.pong_timer = None
            self.pending_ping_payload = None
            self.transport.close()
            return
        super().keepalive_timeout()

    def _cancel_deadline(self) -> None:
        if self._open_deadline is not None:
            self._open_deadline.cancel()
            self._open_deadline = None

    def _handshake_overdue(self) -> None:
        self._open_deadline = None
        if not self.handshake_complete and not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(header_timeout_s: float) -> type[Any]:
    """The protocol class for ``uvicorn.Config(http=...)`` with this deadline."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"header_timeout_s": header_timeout_s},
    )


def guarded_ws_protocol(handshake_timeout_s: float) -> type[Any]:
    """The protocol class for ``uvicorn.Config(ws=...)`` with this opening deadline."""
    return type(
        "GuardedWebSocketsProtocol",
        (GuardedWebSocketsProtocol,),
        {"handshake_timeout_s": handshake_timeout_s},
    )
