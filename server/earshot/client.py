"""Python client SDK for ``/v1/listen``.

    async with connect("ws://127.0.0.1:8000/v1/listen", language="en") as stream:
        await stream.send(pcm)            # numpy float32/int16 array or raw bytes
        await stream.close_stream()
        async for message in stream:      # Ready, SpeechStarted, Partial, Final, Error, Closed
            ...

Extensions: ``encoding`` ``pcm_mulaw``/``pcm_alaw`` (numpy audio is encoded for you) or
``ogg_opus``/``webm_opus`` (send the container's bytes as they come); ``eager_eot=True``
adds ``EagerEndOfTurn`` and ``TurnResumed`` messages; ``stream.configure(prompt=...,
keyterms=[...])`` changes the prompt of utterances that start afterwards.

Messages are typed dataclasses; iteration ends after ``Closed`` or when the server
closes the socket. A refusal because the server is full (close 1013) is retried
``retries`` times with exponential backoff and jitter (behind a proxy the retry lands on
another replica); when every try was refused, ``Overloaded`` is raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import msgpack
import numpy as np
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from earshot.audio import G711_TABLES, encode_g711
from earshot.transcript import Word  # same fields on the wire as in the engine


@dataclass(frozen=True)
class Ready:
    session_id: str
    sample_rate: int
    model: str
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def replica(self) -> str | None:
        """The server replica that holds this session (optional ``replica`` field)."""
        value = self.raw.get("replica")
        return str(value) if value is not None else None


@dataclass(frozen=True)
class SpeechStarted:
    utterance: int
    start: float


@dataclass(frozen=True)
class Partial:
    utterance: int
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Final:
    utterance: int
    start: float
    end: float
    text: str
    language: str
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class EagerEndOfTurn:
    """*Extension* (``eager_eot=True``): the pause may end the turn; ``text`` is what the
    final will say if it does. A ``TurnResumed`` or the utterance's ``Final`` follows."""

    utterance: int
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class TurnResumed:
    """*Extension* (``eager_eot=True``): speech went on after an ``EagerEndOfTurn``."""

    utterance: int


@dataclass(frozen=True)
class Error:
    code: str
    message: str
    utterance: int | None = None
    """For ``engine_error``: the utterance whose (empty) final follows."""


@dataclass(frozen=True)
class Closed:
    pass


Message = Ready | SpeechStarted | Partial | Final | EagerEndOfTurn | TurnResumed | Error | Closed


class Overloaded(Exception):
    """The server refused the session (close 1013): retry later or elsewhere."""


def parse_message(data: dict[str, Any]) -> Message:
    kind = data.get("type")
    if kind == "ready":
        return Ready(data["session_id"], int(data["sample_rate"]), str(data["model"]), data)
    if kind == "speech_started":
        return SpeechStarted(int(data["utterance"]), float(data["start"]))
    if kind == "partial":
        return Partial(
            int(data["utterance"]), float(data["start"]), float(data["end"]), data["text"]
        )
    if kind == "final":
        words = tuple(
            Word(w["word"], w["start"], w["end"], w["probability"]) for w in data.get("words", [])
        )
        return Final(
            int(data["utterance"]),
            float(data["start"]),
            float(data["end"]),
            data["text"],
            data.get("language", ""),
            words,
        )
    if kind == "error":
        utterance = data.get("utterance")
        return Error(
            str(data.get("code", "")),
            str(data.get("message", "")),
            utterance if isinstance(utterance, int) else None,
        )
    if kind == "closed":
        return Closed()
    if kind == "eager_end_of_turn":
        return EagerEndOfTurn(
            int(data["utterance"]), float(data["start"]), float(data["end"]), data["text"]
        )
    if kind == "turn_resumed":
        return TurnResumed(int(data["utterance"]))
    raise ValueError(f"unknown server message type {kind!r}")


class Stream:
    """One open streaming session. Use ``connect`` to make one."""

    def __init__(self, socket: ClientConnection, encoding: str) -> None:
        self._socket = socket
        self._encoding = encoding
        self.ready: Ready | None = None
        self.close_code: int | None = None

    async def send(self, audio: np.ndarray | bytes) -> None:
        if isinstance(audio, np.ndarray):
            if self._encoding in G711_TABLES:
                if audio.dtype.kind != "f":
                    audio = audio.astype(np.float32) / 32768.0
                audio = encode_g711(audio, self._encoding)
            elif self._encoding not in ("pcm_s16le", "pcm_f32le"):
                raise TypeError(f"send the {self._encoding} stream's bytes, not samples")
            elif self._encoding == "pcm_f32le":
                audio = audio.astype("<f4").tobytes()
            elif audio.dtype.kind == "f":
                audio = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
            else:
                audio = audio.astype("<i2").tobytes()
        await self._socket.send(audio)

    async def finalize(self) -> None:
        await self._socket.send(json.dumps({"type": "finalize"}))

    async def configure(
        self, *, prompt: str | None = None, keyterms: list[str] | None = None
    ) -> None:
        """*Extension*: change the prompt and/or keyterms of utterances that start from now
        on. An argument left as None keeps that setting; ``""`` or ``[]`` clears it."""
        message: dict[str, Any] = {"type": "configure"}
        if prompt is not None:
            message["prompt"] = prompt
        if keyterms is not None:
            message["keyterms"] = list(keyterms)
        await self._socket.send(json.dumps(message))

    async def keepalive(self) -> None:
        await self._socket.send(json.dumps({"type": "keepalive"}))

    async def close_stream(self) -> None:
        await self._socket.send(json.dumps({"type": "close_stream"}))

    async def recv(self) -> Message:
        frame = await self._socket.recv()
        data = msgpack.unpackb(frame, raw=False) if isinstance(frame, bytes) else json.loads(frame)
        return parse_message(data)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while True:
            try:
                message = await self.recv()
            except ConnectionClosed as exc:
                self.close_code = exc.rcvd.code if exc.rcvd else None
                return
            yield message
            if isinstance(message, Closed):
                return

    async def aclose(self) -> None:
        await self._socket.close()
        self.close_code = self._socket.close_code


class connect:
    """``async with connect(url, **options) as stream`` — options are PROTOCOL.md's.

    A refusal with 1013 (server full or draining) is retried up to ``retries`` times,
    waiting ``backoff_s`` × 2ⁿ (at most ``max_backoff_s``) with ±50 % jitter between tries.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        retries: int = 3,
        backoff_s: float = 0.25,
        max_backoff_s: float = 4.0,
        **options: Any,
    ) -> None:
        params = {k: _param(v) for k, v in options.items() if v is not None}
        base = url if url.rstrip("/").endswith("/v1/listen") else url.rstrip("/") + "/v1/listen"
        self.url = f"{base}?{urlencode(params)}" if params else base
        self.encoding = str(options.get("encoding", "pcm_s16le"))
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.attempts = 0
        """Connections tried by the last ``__aenter__`` (1 = accepted at once)."""
        self._stream: Stream | None = None

    async def __aenter__(self) -> Stream:
        self.attempts = 0
        while True:
            self.attempts += 1
            try:
                return await self._open()
            except Overloaded:
                if self.attempts > self.retries:
                    raise
            delay = min(self.max_backoff_s, self.backoff_s * 2 ** (self.attempts - 1))
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))

    async def _open(self) -> Stream:
        socket = await ws_connect(self.url, additional_headers=self.headers, max_size=2**22)
        stream = Stream(socket, self.encoding)
        try:
            first = await stream.recv()
        except ConnectionClosed as exc:
            await socket.close()
            raise ConnectionError(f"server closed the connection: {exc}") from exc
        if isinstance(first, Error):
            await socket.wait_closed()
            if socket.close_code == 1013 or first.code == "overloaded":
                raise Overloaded(first.message)
            raise ConnectionError(f"{first.code}: {first.message}")
        assert isinstance(first, Ready), first
        stream.ready = first
        self._stream = stream
        return stream

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            await self._stream.aclose()


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def send_paced(
    stream: Stream,
    audio: np.ndarray,
    *,
    sample_rate: int = 16000,
    chunk_s: float = 0.1,
    speed: float = 1.0,
) -> None:
    """Send ``audio`` in ``chunk_s`` frames at ``speed`` × real time (0 = as fast as possible),
    on an absolute schedule so pacing doesn't drift."""
    step = max(1, int(sample_rate * chunk_s))
    started = time.monotonic()
    for i, offset in enumerate(range(0, len(audio), step)):
        await stream.send(audio[offset : offset + step])
        if speed > 0:
            delay = started + (i + 1) * chunk_s / speed - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)


@dataclass
class StreamResult:
    """Everything a session sent back, with arrival times relative to the first audio sent."""

    messages: list[Message] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    close_code: int | None = None
    audio_s: float = 0.0

    @property
    def finals(self) -> list[Final]:
        return [m for m in self.messages if isinstance(m, Final)]

    @property
    def text(self) -> str:
        return " ".join(f.text for f in self.finals if f.text)

    def arrival_of(self, message: Message) -> float:
        return self.arrivals[self.messages.index(message)]


async def stream_audio(
    url: str,
    audio: np.ndarray,
    *,
    speed: float = 1.0,
    chunk_s: float = 0.1,
    sample_rate: int = 16000,
    trailing_silence_s: float = 0.0,
    **options: Any,
) -> StreamResult:
    """Stream ``audio`` (float32 at ``sample_rate``) paced at ``speed``, then ``close_stream``
    and collect every message until ``closed``. ``trailing_silence_s`` appends silence so
    endpointing, not ``close_stream``, ends the last utterance (as with a live microphone).
    """
    if trailing_silence_s:
        audio = np.concatenate([audio, np.zeros(int(trailing_silence_s * sample_rate), np.float32)])
    result = StreamResult(audio_s=len(audio) / sample_rate)
    async with connect(url, sample_rate=sample_rate, **options) as stream:
        started = time.monotonic()

        async def produce() -> None:
            await send_paced(stream, audio, sample_rate=sample_rate, chunk_s=chunk_s, speed=speed)
            await stream.close_stream()

        producer = asyncio.create_task(produce())
        try:
            async for message in stream:
                result.messages.append(message)
                result.arrivals.append(time.monotonic() - started)
        finally:
            producer.cancel()
        result.close_code = stream.close_code
        if result.close_code is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stream._socket.wait_closed(), 5)
            result.close_code = stream._socket.close_code
    return result
