"""``/v1/listen``: the asyncio adapter between a WebSocket and a sans-I/O ``StreamSession``.

Theory of operation
===================

The session (session.py) decides everything about a stream and does no I/O; this module
only moves things between it, the socket and the scheduler. A connection goes through
three stages.

**Handshake** (``serve_stream``, ``_listen``). Every route is one wire *dialect*
(dialects/base.py: Earshot's own, ``listen_endpoint``; Deepgram's; OpenAI's) over this
same machinery; the dialect only says how its query string becomes ``SessionOptions``
and where its credentials are, how its text frames parse (controls, or audio carried in
text), how messages are encoded and how refusals look. The query string becomes
``SessionOptions`` (a bad value: HTTP 400); the access policy checks origin, key and
per-key limits (HTTP 401/403/429); then admission control. A full or draining server
refuses with an ``overloaded`` error message and close 1013, or, when a proxy asked with
``x-earshot-refuse: http-503``, with HTTP 503 before the upgrade, so that the proxy
tries the next replica; a dialect whose clients expect an HTTP refusal (``busy_status``)
always gets one (``_refuse``, the one refusal path). Otherwise the socket is accepted,
the session is registered (admission, drain, metrics) and ``ready`` is queued first (a
dialect may encode it as nothing).

**Streaming** (``Connection``, supervised by ``_serve``). Two tasks share the socket:

- the *receiver* reads client frames. Audio passes the ``InputPacer`` (faster than real
  time it waits; too far ahead is ``input_too_fast``), control messages keep their place
  between the audio frames, and both then go into the session. The socket keeps being read
  while audio waits, so pings are answered. Nothing received for ``idle_timeout_s`` ends
  the stream (``idle_timeout``).
- the *sender* is the socket's only writer, so messages go out in the order the session
  made them. It takes them from the ``OutboundBuffer`` (bounded: partials coalesce,
  finals are never dropped), encodes each with the connection's ``Codec`` (natively a
  text (JSON) or binary (msgpack) frame; ``_send_frames`` writes them) and, once the
  connection is ``CLOSING`` and nothing is queued, sends the close frame.

After every input (a client frame, a transcript from the scheduler, a server-side end)
``pump`` moves what the session produced: cancellations and requests to the scheduler,
messages to the outbound queue, and, when the session is done, the close.

**Ending.** Every way a connection ends is a transition of its ``State`` (below):

- the client sends ``close_stream``: the session finalizes, sends its finals and
  ``closed``; close 1000;
- the server ends it (``drain`` on SIGTERM, or idle): the session finalizes and flushes
  its finals, and the close carries 1001 (``idle_timeout``: 1008). ``closed`` promises
  close 1000, so it goes out only before a 1000;
- the client breaks the contract (a bad frame or control message, input too fast; or an
  internal error): an ``error`` message, then close with its code (1003, 1008, 1009,
  1011). What the client still sends is read and dropped meanwhile, so the closing
  handshake can reach its close frame; a client that doesn't take ours in 5 s is left;
- the client stops reading and its queue overflows: it is cut off with 1008
  ``slow_consumer``, without the messages it would not read;
- the client goes away (or the WebSocket layer dropped it: a frame over ``ws_max_size``
  is closed 1009 there, a keepalive ping unanswered 1011): nothing is left to deliver.

Then the session is unregistered and late transcripts are dropped.

Connection state
================

One ``State`` per connection, changed only by ``Connection._handle`` following
``TRANSITIONS``. An event that leaves the state as it is has no effect (its close code
included), which is how "the first close asked for wins" and "a second drain is a no-op"
hold. Entering ``CLOSING`` wakes the sender; entering ``CUT_OFF`` wakes ``_serve``.

=========  ===========  ==============  =======  ========  ===========
state      server_ends  session_closed  failed   overflow  socket_done
=========  ===========  ==============  =======  ========  ===========
open       ending       closing         closing  cut_off   closed
ending     ending       closing         closing  cut_off   closed
closing    closing      closing         closing  cut_off   closed
cut_off    cut_off      cut_off         cut_off  cut_off   closed
closed     closed       closed          closed   closed    closed
=========  ===========  ==============  =======  ========  ===========

Errors
======

Exactly these mean "the peer went away" and are handled where they happen:
``WebSocketDisconnect`` from a send (Starlette's name for uvicorn's ``ClientDisconnected``,
see handshake.py), ``TimeoutError`` where we wait for a client that doesn't read, and
``ClientDisconnected`` itself from ``accept`` (left to uvicorn, which expects it).
Anything else is a bug: the receiver's are logged and close 1011, the sender's are logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Mapping
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from earshot import protocol
from earshot.audio import AudioFormat, AudioFormatError, FrameTooLarge
from earshot.dialects.base import Codec, Dialect, Frame, Inbound, Reply
from earshot.dialects.native import NATIVE, NativeCodec
from earshot.outbound import OutboundBuffer
from earshot.pacing import InputPacer, InputTooFast, TooManyMessages
from earshot.runtime import Runtime
from earshot.session import StreamSession
from earshot.transcript import Transcript, TranscriptionRequest

log = logging.getLogger(__name__)

REFUSE_HEADER = "x-earshot-refuse"
"""Set to ``http-503`` by a proxy that fails over on 503 (see ``_refuse``)."""

CLOSE_WAIT_S = 5.0
"""How long a closing connection waits for a client that doesn't read."""


class State(enum.Enum):
    OPEN = "open"
    """Streaming: client frames into the session, its messages out."""
    ENDING = "ending"
    """The server ends the stream (drain, idle): finals flushed, ``closed`` withheld."""
    CLOSING = "closing"
    """The close code is chosen: the sender sends what is queued, then the close frame."""
    CUT_OFF = "cut_off"
    """The client stopped reading: close now, without what is queued."""
    CLOSED = "closed"
    """The close frame is sent or the peer is gone: nothing more goes out."""


class Event(enum.Enum):
    SERVER_ENDS = "server_ends"
    """``end``: drain or idle timeout (carries the close code)."""
    SESSION_CLOSED = "session_closed"
    """The session sent its last message."""
    FAILED = "failed"
    """The client broke the contract, or we did (carries the close code)."""
    OVERFLOW = "overflow"
    """The outbound queue is past its bound: the client is not reading."""
    SOCKET_DONE = "socket_done"
    """The close frame is committed, or the peer went away."""


_O, _E, _C, _X, _D = State.OPEN, State.ENDING, State.CLOSING, State.CUT_OFF, State.CLOSED
# fmt: off
TRANSITIONS: dict[State, dict[Event, State]] = {
    state: dict(zip(Event, row, strict=True))
    for state, row in {
        #    server_ends  session_closed  failed  overflow  socket_done
        _O: (_E,          _C,             _C,     _X,       _D),
        _E: (_E,          _C,             _C,     _X,       _D),
        _C: (_C,          _C,             _C,     _X,       _D),
        _X: (_X,          _X,             _X,     _X,       _D),
        _D: (_D,          _D,             _D,     _D,       _D),
    }.items()
}
"""``TRANSITIONS[state][event]``: the state after ``event`` (the table above)."""
# fmt: on


class Connection:
    def __init__(
        self,
        websocket: WebSocket,
        runtime: Runtime,
        session: StreamSession,
        codec: Codec | None = None,
    ) -> None:
        self.websocket = websocket
        self.runtime = runtime
        self.session = session
        self.codec: Codec = codec or NativeCodec(session.options.format)
        """The dialect's wire format: control frames in, session messages out."""
        self.limits = runtime.config.streams
        self.state = State.OPEN
        self.close_with: tuple[int, str] = (protocol.NORMAL, "")
        """The close frame's code and reason (``end`` and ``fail`` set others)."""
        self.outbound = OutboundBuffer(self.limits.max_outbound_messages)
        """Bounded: partials coalesce, finals stay; overflow means the client is hopeless."""
        self._wake = asyncio.Event()
        """Set when the sender has something to do: a message, or the close frame."""
        self.cut_off = asyncio.Event()
        """Set on entering ``CUT_OFF``: ``_serve`` closes the connection now."""
        self.pacer: InputPacer[Inbound] = InputPacer(
            self.limits.max_input_lead_s, speed=self.limits.max_input_speed
        )
        options = session.options
        self._bytes_per_second = AudioFormat(options.sample_rate, options.encoding).bytes_per_second
        self.observer = runtime.metrics.session(session.id)

    # -- the state machine ----------------------------------------------------------------
    def _handle(self, event: Event, close: tuple[int, str] | None = None) -> bool:
        """Apply ``event``; True if the state changed (then ``close``, when given, is
        what the close frame will carry)."""
        new = TRANSITIONS[self.state][event]
        if new is self.state:
            return False
        self.state = new
        if close is not None:
            self.close_with = close
        if new is State.CLOSING:
            self._wake.set()
        elif new is State.CUT_OFF:
            self.cut_off.set()
        return True

    # -- inputs ---------------------------------------------------------------------------
    def pump(self) -> None:
        """Forward whatever the session produced: engine work and client messages."""
        self.observer.received(self.session.audio_seconds)
        for request in self.session.requests_to_cancel():
            self.runtime.scheduler.cancel(request)
        for request in self.session.requests_to_engine():
            self.observer.requested(request)
            self.runtime.scheduler.submit(request, self.on_transcript)
        for message in self.session.messages_to_send():
            if message["type"] == "closed" and self.close_with[0] != protocol.NORMAL:
                continue  # ``closed`` promises close 1000: the server ended it (or an error)
            self.send(message)
        if self.session.closed:
            self._handle(Event.SESSION_CLOSED)

    def drain(self) -> None:
        """Server shutting down: finalize what was heard, send its finals, close 1001."""
        self.end(protocol.GOING_AWAY, "server shutting down")

    def end(self, code: int, reason: str) -> None:
        """End on the server's initiative: flush finals, then close ``code``. A stream
        already finishing (the client's ``close_stream``, an earlier end) goes on as is."""
        if not self.session.closing and self._handle(Event.SERVER_ENDS, (code, reason)):
            self.session.close_stream()
            self.pump()

    def fail(self, code: int, name: str, detail: str) -> None:
        """Send an ``error`` message, then close with ``code`` (unless already closing)."""
        self.send(protocol.error_message(name, detail))
        self._handle(Event.FAILED, (code, name))

    def on_transcript(self, request: TranscriptionRequest, transcript: Transcript) -> None:
        if self.state is not State.CLOSED:
            self.observer.answered(request, transcript)
            self.session.receive_transcript(request, transcript)
            self.pump()

    def send(self, message: dict[str, Any]) -> None:
        """Queue ``message`` for the sender (dropped once nothing more goes out)."""
        if self.state in (State.CUT_OFF, State.CLOSED):
            return
        if not self.outbound.push(message):
            self._handle(Event.OVERFLOW)
        self._wake.set()

    def finished(self) -> None:
        """The close frame is sent or the peer is gone."""
        self._handle(Event.SOCKET_DONE)

    # -- the tasks ------------------------------------------------------------------------
    async def sender(self) -> None:
        """The socket's only writer: queued messages in order, then the close frame."""
        try:
            while True:
                item = self.outbound.pop()
                if item is None:
                    if self.state is State.CLOSING:
                        self.finished()
                        await self.websocket.close(*self.close_with)
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                await _send_frames(self.websocket, self.codec.encode(item))
                self.observer.sent(item)
                if item["type"] == "final":
                    # ``text`` is dropped by the log formatters unless --log-transcripts.
                    log.debug(
                        "final %d sent",
                        item["utterance"],
                        extra={"session_id": self.session.id, "text": item["text"]},
                    )
        except WebSocketDisconnect:
            self.finished()  # the client went away: nothing left to deliver

    async def receiver(self) -> None:
        """Client frames pass the pacer (throttle for audio faster than real time) into
        the session; the socket keeps being read meanwhile, so pings are answered.
        Returns when the client is gone; raises on what breaks the contract."""
        idle = self.limits.idle_timeout_s or None
        while True:
            due = self.pacer.wait(time.monotonic())
            try:
                message = await asyncio.wait_for(
                    self.websocket.receive(), idle if due is None else due
                )
            except TimeoutError:
                if due is None:
                    self._idle(idle)
            else:
                if message["type"] == "websocket.disconnect":
                    return
                self._arrive(message)
            for item in self.pacer.release(time.monotonic()):
                self._apply(item)
            self.pump()

    def _arrive(self, message: Mapping[str, Any]) -> None:
        """A client frame into the pacer. Text frames are parsed and checked here, on
        arrival, and wait as what they ask for only, so held messages cost little memory;
        audio a dialect carries in text frames is paced as a binary frame's."""
        data = message.get("bytes")
        if data is not None:
            self.pacer.arrive(data, len(data) / self._bytes_per_second, time.monotonic())
        elif message.get("text") is not None:
            parsed = self.codec.parse_control(message["text"])
            for item in parsed if isinstance(parsed, tuple) else (parsed,):
                seconds = len(item) / self._bytes_per_second if isinstance(item, bytes) else 0.0
                self.pacer.arrive(item, seconds, time.monotonic())

    def _apply(self, item: Inbound) -> None:
        """A client message whose turn has come: audio bytes, a parsed control, or a
        dialect's reply (after what the session said about the audio before it)."""
        if isinstance(item, bytes):
            self.session.receive_audio(item)
            return
        if isinstance(item, Reply):
            self.pump()
            self.send(item.message)
            return
        self.session.control(item)
        if isinstance(item, str) and item in ("finalize", "close_stream"):
            self.codec.applied(item)

    def _idle(self, seconds: float | None) -> None:
        """Nothing received for ``idle_timeout_s``: flush finals, then close 1008."""
        if self.session.closing:
            return  # waiting for our finals is not idling
        self.send(
            protocol.error_message(
                "idle_timeout", f"nothing received for {seconds:g} s (send keepalive to stay)"
            )
        )
        self.end(protocol.POLICY_VIOLATION, "idle_timeout")


async def listen_endpoint(websocket: WebSocket) -> None:
    """``/v1/listen``: Earshot's own dialect."""
    await serve_stream(websocket, NATIVE)


async def serve_stream(websocket: WebSocket, dialect: Dialect) -> None:
    """One streaming connection in ``dialect``, from the handshake to the end."""
    runtime: Runtime = websocket.app.state.runtime
    try:
        options = dialect.parse_options(websocket.query_params, runtime.scheduler.languages)
    except protocol.ParameterError as exc:
        runtime.metrics.error(exc.body()["error"])
        runtime.metrics.dialect_session(dialect.name, "denied")
        await websocket.send_denial_response(dialect.parameter_refusal(exc))
        return

    def denied(code: str) -> None:
        runtime.metrics.error(code)
        runtime.metrics.dialect_session(dialect.name, "denied")

    slot = await runtime.access.admit_websocket(
        websocket, denied, credentials=dialect.credentials(websocket), deny=dialect.access_refusal
    )
    if slot is None:
        return
    try:
        await _listen(websocket, runtime, options, dialect)
    finally:
        slot.release()


async def _listen(
    websocket: WebSocket, runtime: Runtime, options: protocol.SessionOptions, dialect: Dialect
) -> None:
    proxied = websocket.headers.get(REFUSE_HEADER) == "http-503"
    if proxied or dialect.busy_status is not None:
        status = 503 if proxied else dialect.busy_status
        assert status is not None
        if await _refuse(websocket, runtime, dialect, None, status=status):
            return
    # A client already gone: uvicorn's ClientDisconnected, expected.
    await websocket.accept(subprotocol=dialect.subprotocol(websocket))
    session = StreamSession(options, runtime.vad.stream(), tuning=runtime.tuning)
    codec = dialect.codec(session, runtime.config.engine.model)
    if await _refuse(websocket, runtime, dialect, codec):
        return
    connection = Connection(websocket, runtime, session, codec)
    runtime.metrics.dialect_session(dialect.name, "accepted")
    runtime.admission.opened()
    runtime.sessions.add(session.id)
    runtime.drainers[session.id] = connection.drain
    connection.send(
        {
            "type": "ready",
            "session_id": session.id,
            "sample_rate": options.sample_rate,
            "model": runtime.config.engine.model,
            "encoding": options.encoding,
            "language": options.language or protocol.LANGUAGE_AUTO,
            "replica": runtime.config.replica,
        }
    )
    sender = asyncio.create_task(connection.sender())
    try:
        await _serve(connection, sender)
    finally:
        connection.finished()
        connection.observer.closed()
        runtime.admission.closed()
        runtime.sessions.discard(session.id)
        runtime.drainers.pop(session.id, None)
        if not sender.done():
            sender.cancel()
        elif not sender.cancelled() and (error := sender.exception()) is not None:
            log.error("session %s: sender failed", session.id, exc_info=error)
        log.info(
            "session %s ended after %.1f s of audio",
            session.id,
            session.audio_seconds,
            extra={"session_id": session.id},
        )


async def _serve(connection: Connection, sender: asyncio.Task[None]) -> None:
    """Run the receiver next to ``sender`` until the connection ends (see the module
    docstring): the client went away, the close frame went out, or it was cut off."""
    receiver = asyncio.create_task(connection.receiver())
    cut_off = asyncio.create_task(connection.cut_off.wait())
    try:
        done, _ = await asyncio.wait(
            {receiver, sender, cut_off}, return_when=asyncio.FIRST_COMPLETED
        )
        if cut_off in done:
            await _cut_off(connection, sender)
        elif receiver in done and receiver.exception() is None:
            connection.finished()  # the client went away: nothing left to deliver
        elif receiver in done:
            await _fail(connection, sender, receiver.exception())
        # else: the sender is done, the close frame sent (or the client gone mid-send).
    finally:
        receiver.cancel()
        cut_off.cancel()


async def _cut_off(connection: Connection, sender: asyncio.Task[None]) -> None:
    """The client stopped reading: its sends would block forever. Close without them."""
    sender.cancel()
    log.warning("session %s: client not reading; closing", connection.session.id)
    connection.runtime.metrics.error("slow_consumer")
    connection.finished()
    # TimeoutError: not even the close frame fits; WebSocketDisconnect: the client is gone.
    with contextlib.suppress(TimeoutError, WebSocketDisconnect):
        await asyncio.wait_for(
            connection.websocket.close(protocol.POLICY_VIOLATION, "slow_consumer"), CLOSE_WAIT_S
        )


async def _fail(
    connection: Connection, sender: asyncio.Task[None], error: BaseException | None
) -> None:
    """The receiver raised: tell the client why (only our own, client-safe words; internal
    details stay in the log), then close with the error's code."""
    code, name = _close_for(error)
    connection.runtime.metrics.error(name)
    detail = "internal server error" if code == protocol.INTERNAL_ERROR else str(error)
    connection.fail(code, name, detail)
    # Keep reading (and dropping) what the client still sends: the WebSocket layer must
    # get through it to the client's close frame, or the close hangs.
    discard = asyncio.create_task(_discard(connection.websocket))
    try:
        # Not done in time: the client doesn't read. _listen cancels the sender.
        await asyncio.wait({sender}, timeout=CLOSE_WAIT_S)
    finally:
        discard.cancel()


async def _discard(websocket: WebSocket) -> None:
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


def _close_for(error: BaseException | None) -> tuple[int, str]:
    if isinstance(error, FrameTooLarge):
        return protocol.MESSAGE_TOO_BIG, "frame_too_large"
    if isinstance(error, protocol.ControlTooLarge):
        return protocol.MESSAGE_TOO_BIG, "control_message_too_large"
    if isinstance(error, TooManyMessages):
        return protocol.POLICY_VIOLATION, "too_many_messages"
    if isinstance(error, InputTooFast):
        return protocol.POLICY_VIOLATION, "input_too_fast"
    if isinstance(error, AudioFormatError):
        return protocol.UNSUPPORTED_DATA, "invalid_audio"
    if isinstance(error, protocol.ControlError):
        return protocol.UNSUPPORTED_DATA, "invalid_control_message"
    log.error("session failed", exc_info=error)
    return protocol.INTERNAL_ERROR, "internal_error"


async def _send_frames(websocket: WebSocket, frames: list[Frame]) -> None:
    """One server message's frames (natively one: text for JSON, binary for msgpack)."""
    for frame in frames:
        if isinstance(frame, bytes):
            await websocket.send_bytes(frame)
        else:
            await websocket.send_text(frame)


async def _refuse(
    websocket: WebSocket,
    runtime: Runtime,
    dialect: Dialect,
    codec: Codec | None,
    *,
    status: int = 503,
) -> bool:
    """Refuse the session if the server is full or draining; returns whether it did.

    Accepted sockets (``codec`` given) get an ``overloaded`` error message and close 1013
    (the contract). Before the upgrade (``codec`` None): an HTTP refusal with ``status``
    instead: 503 when a proxy asked for it (deploy/nginx), which it answers by trying the
    next replica (clients still get 1013 when every replica is full: the proxy then
    connects without the header), or the dialect's ``busy_status``."""
    if runtime.draining:
        kind, reason = "draining", "server is shutting down"
    elif refusal := runtime.admission.refusal():
        kind, reason = "overloaded", refusal
    else:
        return False
    runtime.metrics.refused(kind)
    runtime.metrics.dialect_session(dialect.name, "refused")
    log.info("session refused%s: %s", " before upgrade" if codec is None else "", reason)
    if codec is None:
        await websocket.send_denial_response(dialect.busy_refusal(status, reason))
        return True
    try:
        await _send_frames(websocket, codec.encode(protocol.error_message("overloaded", reason)))
        await websocket.close(protocol.TRY_AGAIN_LATER, "overloaded")
    except WebSocketDisconnect:
        pass  # the client left first
    return True
