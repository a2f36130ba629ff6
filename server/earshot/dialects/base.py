"""The seam between the shared connection machinery (listen.py) and one wire dialect.

``listen.serve_stream(websocket, dialect)`` runs every stream. It asks the ``Dialect``
(one per route, stateless) for what differs at the handshake, and the ``Codec`` (one per
connection, may keep state, e.g. the last word's end for Deepgram's ``UtteranceEnd``)
for what differs on the wire:

========================  ===========================================================
``parse_options``         query string → ``SessionOptions`` (``ParameterError``: 400)
``credentials``           the ``Authorization`` value and ``?token=`` to check
``subprotocol``           the ``Sec-WebSocket-Protocol`` to accept with, if any
``parameter_refusal``     a bad parameter's HTTP 400, in the dialect's body shape
``access_refusal``        an access refusal (401/403/429) in that shape
``busy_status``           None: accept, send ``overloaded``, close 1013 (native); a
                          status: refuse a full server before the upgrade with it
``busy_refusal``          that refusal (or the proxy's 503, see listen.py) as HTTP
``Codec.parse_control``   a client text frame → ``finalize``/``close_stream``/
                          ``keepalive``/``clear``/a ``Configure``; or audio carried in
                          text (``bytes``: paced and decoded as a binary frame's); or a
                          ``Reply`` the dialect answers itself; or several of these, in
                          order (``protocol.ControlError``: close 1003)
``Codec.applied``         the session acted on a control message (after the audio
                          before it)
``Codec.encode``          one session message (session.py's native dicts) → 0..n frames
========================  ===========================================================

The session, the outbound buffer and the metrics observer only ever see native
messages; encoding happens in the sender, the socket's only writer, so a stateful codec
sees messages in the order they go out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.responses import Response
from starlette.websockets import WebSocket

from earshot.access import Denied
from earshot.protocol import Configure, ParameterError, SessionOptions
from earshot.session import StreamSession

Frame = str | bytes
"""A text (str) or binary (bytes) WebSocket frame."""
Control = str | Configure
"""A parsed client control message: its type, or a ``configure`` with its settings."""


@dataclass(frozen=True)
class Reply:
    """What a dialect answers a client text frame with itself (OpenAI's
    ``session.updated``, ``input_audio_buffer.committed``, a recoverable ``error``):
    ``message`` joins the session's messages in its turn (after those of the audio before
    it) and reaches the same ``Codec.encode``. Its ``type`` is the dialect's own, none of
    the session's (``final``, ``partial``, ...), so the outbound buffer and the metrics
    pass it through."""

    message: dict[str, Any]


Inbound = bytes | Control | Reply
"""One thing a client text frame asks for: audio (in the session's encoding, counted by
the pacer as audio), a control, or a dialect's own reply."""


class Codec(Protocol):
    """One connection's wire format."""

    def parse_control(self, text: str) -> Inbound | tuple[Inbound, ...]:
        """A client text frame → what it asks for, applied in order: a control (a type,
        or a ``Configure``), audio bytes, a ``Reply``, or several of them."""
        ...

    def applied(self, control: str) -> None:
        """The session just acted on ``control`` (its turn came, after the audio before
        it): what the codec needs to mark the results it causes."""
        ...

    def encode(self, message: Mapping[str, Any]) -> list[Frame]:
        """A native session message → the frames that carry it (none: not sent)."""
        ...


class Dialect(Protocol):
    """One streaming route's protocol (stateless, shared by its connections)."""

    name: str
    """Label of the ``earshot_dialect_sessions_total`` metric."""
    busy_status: int | None

    def parse_options(
        self, query: Mapping[str, str], languages: frozenset[str] | None
    ) -> SessionOptions: ...

    def credentials(self, websocket: WebSocket) -> tuple[str | None, str | None]:
        """``(authorization, query_token)`` as ``AccessPolicy.authenticate`` takes them."""
        ...

    def subprotocol(self, websocket: WebSocket) -> str | None: ...

    def parameter_refusal(self, error: ParameterError) -> Response: ...

    def access_refusal(self, denied: Denied) -> Response: ...

    def busy_refusal(self, status: int, reason: str) -> Response:
        """A full or draining server, refused before the upgrade (``Retry-After`` set)."""
        ...

    def codec(self, session: StreamSession, model: str) -> Codec: ...
