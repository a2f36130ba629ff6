"""``/v1/listen``: the thin asyncio adapter around a ``StreamSession``.

It moves client frames into the session, the session's requests into the scheduler,
results back into the session, and the session's messages out to the socket through
a single sender task (one writer per socket, so messages keep their order).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from earshot import protocol
from earshot.audio import AudioFormatError, FrameTooLarge
from earshot.runtime import Runtime
from earshot.session import StreamSession
from earshot.transcript import Transcript, TranscriptionRequest

log = logging.getLogger(__name__)

_CLOSE = object()
"""Sentinel in the outbound queue: close the socket with the code that follows."""


class Connection:
    def __init__(self, websocket: WebSocket, runtime: Runtime, session: StreamSession) -> None:
        self.websocket = websocket
        self.runtime = runtime
        self.session = session
        self.outbound: asyncio.Queue[Any] = asyncio.Queue()
        self.alive = True

    def pump(self) -> None:
        """Forward whatever the session produced: engine work and client messages."""
        for request in self.session.requests_to_engine():
            self.runtime.scheduler.submit(request, self.on_transcript)
        for message in self.session.messages_to_send():
            self.outbound.put_nowait(message)
        if self.session.closed:
            self.close(protocol.NORMAL)

    def on_transcript(self, request: TranscriptionRequest, transcript: Transcript) -> None:
        if self.alive:
            self.session.receive_transcript(request, transcript)
            self.pump()

    def send(self, message: dict[str, Any]) -> None:
        self.outbound.put_nowait(message)

    def close(self, code: int, reason: str = "") -> None:
        self.outbound.put_nowait(_CLOSE)
        self.outbound.put_nowait((code, reason))

    async def sender(self) -> None:
        fmt = self.session.options.format
        while True:
            item = await self.outbound.get()
            if item is _CLOSE:
                code, reason = await self.outbound.get()
                await self.websocket.close(code, reason)
                return
            frame = protocol.encode_message(item, fmt)
            if isinstance(frame, bytes):
                await self.websocket.send_bytes(frame)
            else:
                await self.websocket.send_text(frame)

    async def receiver(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                self.session.receive_audio(message["bytes"])
            elif message.get("text") is not None:
                kind = protocol.parse_control(message["text"])
                if kind == "finalize":
                    self.session.finalize()
                elif kind == "close_stream":
                    self.session.close_stream()
            self.pump()


async def listen_endpoint(websocket: WebSocket) -> None:
    runtime: Runtime = websocket.app.state.runtime
    try:
        options = protocol.parse_options(websocket.query_params, runtime.engine.languages)
    except protocol.ParameterError as exc:
        await websocket.send_denial_response(JSONResponse(exc.body(), status_code=400))
        return
    await websocket.accept()
    refusal = "server is shutting down" if runtime.draining else runtime.admission.refusal()
    if refusal:
        await _refuse(websocket, options.format, refusal)
        return
    session = StreamSession(options, runtime.vad.stream(), tuning=runtime.tuning)
    connection = Connection(websocket, runtime, session)
    runtime.admission.active += 1
    runtime.sessions.add(session.id)
    connection.send(
        {
            "type": "ready",
            "session_id": session.id,
            "sample_rate": options.sample_rate,
            "model": runtime.engine.model_name,
            "encoding": options.encoding,
            "language": options.language or protocol.LANGUAGE_AUTO,
        }
    )
    sender = asyncio.create_task(connection.sender())
    try:
        await _serve(connection, sender)
    finally:
        connection.alive = False
        runtime.admission.active -= 1
        runtime.sessions.discard(session.id)
        if not sender.done():
            sender.cancel()
        log.info("session %s ended after %.1f s of audio", session.id, session.audio_seconds)


async def _serve(connection: Connection, sender: asyncio.Task[None]) -> None:
    receiver = asyncio.create_task(connection.receiver())
    try:
        done, _ = await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
        if receiver in done and receiver.exception() is None:
            # Client went away: nothing left to deliver.
            return
        if receiver in done:
            error = receiver.exception()
            code, name = _close_for(error)
            connection.send(protocol.error_message(name, str(error)))
            connection.close(code, name)
            await asyncio.wait_for(sender, timeout=5)
        else:
            # The sender finished: the session closed normally after `closed`.
            receiver.cancel()
    except (TimeoutError, WebSocketDisconnect, RuntimeError):
        pass
    finally:
        receiver.cancel()


def _close_for(error: BaseException | None) -> tuple[int, str]:
    if isinstance(error, FrameTooLarge):
        return protocol.MESSAGE_TOO_BIG, "frame_too_large"
    if isinstance(error, AudioFormatError):
        return protocol.UNSUPPORTED_DATA, "invalid_audio"
    if isinstance(error, protocol.ControlError):
        return protocol.UNSUPPORTED_DATA, "invalid_control_message"
    if isinstance(error, WebSocketDisconnect):
        return protocol.NORMAL, "disconnected"
    log.error("session failed", exc_info=error)
    return protocol.INTERNAL_ERROR, "internal_error"


async def _refuse(websocket: WebSocket, fmt: str, reason: str) -> None:
    frame = protocol.encode_message(protocol.error_message("overloaded", reason), fmt)
    if isinstance(frame, bytes):
        await websocket.send_bytes(frame)
    else:
        await websocket.send_text(frame)
    if websocket.client_state is WebSocketState.CONNECTED:
        await websocket.close(protocol.TRY_AGAIN_LATER, "overloaded")
