"""``/v1/listen``: the thin asyncio adapter around a ``StreamSession``.

It moves client frames into the session, the session's requests into the scheduler,
results back into the session, and the session's messages out to the socket through
a single sender task (one writer per socket, so messages keep their order).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from earshot import protocol
from earshot.audio import ENCODINGS, AudioFormatError, FrameTooLarge
from earshot.outbound import OutboundBuffer
from earshot.pacing import InputPacer, InputTooFast
from earshot.runtime import Runtime
from earshot.session import StreamSession
from earshot.transcript import Transcript, TranscriptionRequest

log = logging.getLogger(__name__)

REFUSE_HEADER = "x-earshot-refuse"
"""Set to ``http-503`` by a proxy that fails over on 503 (see ``_refuse_before_upgrade``)."""


class Connection:
    def __init__(self, websocket: WebSocket, runtime: Runtime, session: StreamSession) -> None:
        self.websocket = websocket
        self.runtime = runtime
        self.session = session
        self.limits = runtime.config.streams
        self.outbound = OutboundBuffer(self.limits.max_outbound_messages)
        """Bounded: partials coalesce, finals stay; overflow means the client is hopeless."""
        self._wake = asyncio.Event()
        self._closing: tuple[int, str] | None = None
        """Close code and reason, sent once everything queued is out."""
        self.hopeless = asyncio.Event()
        """The client stopped reading and the queue overflowed: cut it off now."""
        self.pacer: InputPacer[Mapping[str, Any]] = InputPacer(
            self.limits.max_input_lead_s, speed=self.limits.max_input_speed
        )
        options = session.options
        self._bytes_per_second = options.sample_rate * ENCODINGS[options.encoding].itemsize
        self.alive = True
        self.going_away = False
        """Server draining: finals are flushed, then close 1001 instead of ``closed``."""
        self.end_code = (protocol.GOING_AWAY, "server shutting down")
        """What ``going_away`` closes with (``end`` sets others, e.g. idle timeout)."""
        self.observer = runtime.metrics.session(session.id)

    def pump(self) -> None:
        """Forward whatever the session produced: engine work and client messages."""
        self.observer.received(self.session.audio_seconds)
        for request in self.session.requests_to_cancel():
            self.runtime.scheduler.cancel(request)
        for request in self.session.requests_to_engine():
            self.observer.requested(request)
            self.runtime.scheduler.submit(request, self.on_transcript)
        for message in self.session.messages_to_send():
            if self.going_away and message["type"] == "closed":
                continue  # the client never sent close_stream: it gets 1001 instead
            self.send(message)
        if self.session.closed:
            if self.going_away:
                self.close(*self.end_code)
            else:
                self.close(protocol.NORMAL)

    def drain(self) -> None:
        """Server shutting down: finalize what was heard, send its finals, close 1001."""
        if self.session.closing:
            return  # already finishing on the client's close_stream
        self.going_away = True
        self.session.close_stream()
        self.pump()

    def end(self, code: int, reason: str) -> None:
        """End on the server's initiative (e.g. idle): flush finals, then close ``code``."""
        if not self.session.closing:
            self.end_code = (code, reason)
            self.drain()

    def on_transcript(self, request: TranscriptionRequest, transcript: Transcript) -> None:
        if self.alive:
            self.observer.answered(request, transcript)
            self.session.receive_transcript(request, transcript)
            self.pump()

    def send(self, message: dict[str, Any]) -> None:
        if not self.outbound.push(message):
            self.hopeless.set()
        self._wake.set()

    def close(self, code: int, reason: str = "") -> None:
        """Close once everything queued so far is sent (the first close asked for wins)."""
        if self._closing is None:
            self._closing = (code, reason)
        self._wake.set()

    async def sender(self) -> None:
        fmt = self.session.options.format
        while True:
            item = self.outbound.pop()
            if item is None:
                if self._closing is not None:
                    await self.websocket.close(*self._closing)
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            frame = protocol.encode_message(item, fmt)
            if isinstance(frame, bytes):
                await self.websocket.send_bytes(frame)
            else:
                await self.websocket.send_text(frame)
            self.observer.sent(item)
            if item["type"] == "final":
                # ``text`` is dropped by the log formatters unless --log-transcripts.
                log.debug(
                    "final %d sent",
                    item["utterance"],
                    extra={"session_id": self.session.id, "text": item["text"]},
                )

    async def receiver(self) -> None:
        """Client frames pass the pacer (throttle for audio faster than real time) into
        the session; the socket keeps being read meanwhile, so pings are answered."""
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
                data = message.get("bytes")
                seconds = len(data) / self._bytes_per_second if data is not None else 0.0
                self.pacer.arrive(message, seconds, time.monotonic())
            for item in self.pacer.release(time.monotonic()):
                self._apply(item)
            self.pump()

    def _apply(self, message: Mapping[str, Any]) -> None:
        if message.get("bytes") is not None:
            self.session.receive_audio(message["bytes"])
        elif message.get("text") is not None:
            kind = protocol.parse_control(message["text"])
            if kind == "finalize":
                self.session.finalize()
            elif kind == "close_stream":
                self.session.close_stream()

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
    runtime: Runtime = websocket.app.state.runtime
    try:
        options = protocol.parse_options(websocket.query_params, runtime.engine.languages)
    except protocol.ParameterError as exc:
        runtime.metrics.error(exc.body()["error"])
        await websocket.send_denial_response(JSONResponse(exc.body(), status_code=400))
        return
    slot = await runtime.access.admit_websocket(websocket, runtime.metrics.error)
    if slot is None:
        return
    try:
        await _listen(websocket, runtime, options)
    finally:
        slot.release()


async def _listen(websocket: WebSocket, runtime: Runtime, options: protocol.SessionOptions) -> None:
    if websocket.headers.get(REFUSE_HEADER) == "http-503" and await _refuse_before_upgrade(
        websocket, runtime
    ):
        return
    await websocket.accept()
    refusal = "server is shutting down" if runtime.draining else runtime.admission.refusal()
    if refusal:
        runtime.metrics.refused("draining" if runtime.draining else "overloaded")
        log.info("session refused: %s", refusal)
        await _refuse(websocket, options.format, refusal)
        return
    session = StreamSession(options, runtime.vad.stream(), tuning=runtime.tuning)
    connection = Connection(websocket, runtime, session)
    runtime.admission.opened()
    runtime.sessions.add(session.id)
    runtime.drainers[session.id] = connection.drain
    connection.send(
        {
            "type": "ready",
            "session_id": session.id,
            "sample_rate": options.sample_rate,
            "model": runtime.engine.model_name,
            "encoding": options.encoding,
            "language": options.language or protocol.LANGUAGE_AUTO,
            "replica": runtime.config.replica,
        }
    )
    sender = asyncio.create_task(connection.sender())
    try:
        await _serve(connection, sender)
    finally:
        connection.alive = False
        connection.observer.closed()
        runtime.admission.closed()
        runtime.sessions.discard(session.id)
        runtime.drainers.pop(session.id, None)
        if not sender.done():
            sender.cancel()
        elif not sender.cancelled():
            sender.exception()  # e.g. a send to a socket the client had closed: expected
        log.info(
            "session %s ended after %.1f s of audio",
            session.id,
            session.audio_seconds,
            extra={"session_id": session.id},
        )


async def _serve(connection: Connection, sender: asyncio.Task[None]) -> None:
    receiver = asyncio.create_task(connection.receiver())
    hopeless = asyncio.create_task(connection.hopeless.wait())
    try:
        done, _ = await asyncio.wait(
            {receiver, sender, hopeless}, return_when=asyncio.FIRST_COMPLETED
        )
        if hopeless in done:
            # The client stopped reading: its sends would block forever. Cut it off.
            sender.cancel()
            log.warning("session %s: client not reading; closing", connection.session.id)
            connection.runtime.metrics.error("slow_consumer")
            await asyncio.wait_for(
                connection.websocket.close(protocol.POLICY_VIOLATION, "slow_consumer"), 5
            )
        elif receiver in done and receiver.exception() is None:
            # Client went away: nothing left to deliver.
            return
        elif receiver in done:
            error = receiver.exception()
            code, name = _close_for(error)
            connection.runtime.metrics.error(name)
            # Only our own, client-safe messages go out; internal details stay in the log.
            detail = "internal server error" if code == protocol.INTERNAL_ERROR else str(error)
            connection.send(protocol.error_message(name, detail))
            connection.close(code, name)
            # Keep reading (and dropping) what the client still sends: the WebSocket layer
            # must get through it to the client's close frame, or the close hangs.
            discard = asyncio.create_task(_discard(connection.websocket))
            try:
                await asyncio.wait_for(sender, timeout=5)
            finally:
                discard.cancel()
        else:
            # The sender finished: the session closed normally after `closed`.
            receiver.cancel()
    except (TimeoutError, WebSocketDisconnect, RuntimeError, OSError):
        pass
    finally:
        receiver.cancel()
        hopeless.cancel()


async def _discard(websocket: WebSocket) -> None:
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


def _close_for(error: BaseException | None) -> tuple[int, str]:
    if isinstance(error, FrameTooLarge):
        return protocol.MESSAGE_TOO_BIG, "frame_too_large"
    if isinstance(error, protocol.ControlTooLarge):
        return protocol.MESSAGE_TOO_BIG, "control_message_too_large"
    if isinstance(error, InputTooFast):
        return protocol.POLICY_VIOLATION, "input_too_fast"
    if isinstance(error, AudioFormatError):
        return protocol.UNSUPPORTED_DATA, "invalid_audio"
    if isinstance(error, protocol.ControlError):
        return protocol.UNSUPPORTED_DATA, "invalid_control_message"
    if isinstance(error, WebSocketDisconnect):
        return protocol.NORMAL, "disconnected"
    log.error("session failed", exc_info=error)
    return protocol.INTERNAL_ERROR, "internal_error"


async def _refuse_before_upgrade(websocket: WebSocket, runtime: Runtime) -> bool:
    """Behind a proxy that asked for it (deploy/nginx): refuse a full or draining server's
    handshake with HTTP 503, which the proxy answers by trying the next replica. Clients
    still get the contract's 1013 when every replica is full (the proxy then connects
    without the header). Returns whether the session was refused."""
    refusal = "server is shutting down" if runtime.draining else runtime.admission.refusal()
    if not refusal:
        return False
    runtime.metrics.refused("draining" if runtime.draining else "overloaded")
    log.info("session refused before upgrade: %s", refusal)
    body = protocol.error_message("overloaded", refusal)
    response = JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
    await websocket.send_denial_response(response)
    return True


async def _refuse(websocket: WebSocket, fmt: str, reason: str) -> None:
    frame = protocol.encode_message(protocol.error_message("overloaded", reason), fmt)
    if isinstance(frame, bytes):
        await websocket.send_bytes(frame)
    else:
        await websocket.send_text(frame)
    if websocket.client_state is WebSocketState.CONNECTED:
        await websocket.close(protocol.TRY_AGAIN_LATER, "overloaded")
