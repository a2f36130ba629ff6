"""``POST /v1/audio/transcriptions`` as OpenAI's API has it, so code written for the
``openai`` SDK works against Earshot by changing ``base_url``.

Synchronous: the file is transcribed on this server's engine (as low-priority file
work, like a job) while the request waits; nothing is stored. ``model`` is accepted
and ignored (the server's loaded model answers), ``temperature`` is validated and
ignored (decoding is greedy or beam search as the server is configured).

Bounded (``sync_limits``): over ``JobsConfig.sync_max_concurrent`` requests at once, or
``sync_max_per_key`` of one key, it answers 429 with ``Retry-After``. A client that goes
away stops its request: decoding is killed and its queued segments are withdrawn from
the scheduler.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive

from earshot.access import principal_of
from earshot.audio_files import AudioTooLong, UndecodableAudio
from earshot.jobs.formats import MEDIA_TYPES, RENDERERS
from earshot.jobs.models import InvalidOption, JobOptions, JobResult
from earshot.jobs.pipeline import EngineFailure
from earshot.jobs.service import service_of
from earshot.jobs.sync_limits import SyncLimiter
from earshot.jobs.uploads import UploadError, media_error

log = logging.getLogger(__name__)
T = TypeVar("T")
CLIENT_CLOSED = 499
"""The status logged for a request whose client went away (nginx's convention); the
client never sees it."""

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = frozenset({"word", "segment"})


def openai_error(
    status: int,
    message: str,
    param: str | None = None,
    code: str = "",
    kind: str = "",
    headers: dict[str, str] | None = None,
) -> Response:
    kind = kind or ("invalid_request_error" if status < 500 else "server_error")
    body = {"error": {"message": message, "type": kind, "param": param, "code": code or None}}
    return JSONResponse(body, status_code=status, headers=headers)


class ClientGone(Exception):
    """The client disconnected while its request was being worked on."""


async def openai_transcriptions(request: Request) -> Response:
    service = service_of(request)
    limiter: SyncLimiter = service.sync_limiter
    key = principal_of(request).key_id
    slot = limiter.acquire(key)
    if slot is None:
        retry = limiter.retry_after_s()
        return openai_error(
            429,
            f"too many transcriptions at once (at most {limiter.per_key} per key,"
            f" {limiter.total} in all); retry after {retry} s",
            code="rate_limit_exceeded",
            kind="requests",
            headers={"Retry-After": str(retry)},
        )
    started = time.monotonic()
    try:
        return await _transcriptions(request, limiter)
    except (ClientGone, ClientDisconnect):
        log.info("sync transcription stopped: client went away (key %s)", key)
        return Response(status_code=CLIENT_CLOSED)
    finally:
        slot.release(time.monotonic() - started)


async def _transcriptions(request: Request, limiter: SyncLimiter) -> Response:
    service = service_of(request)
    languages: frozenset[str] = request.app.state.runtime.engine.languages
    try:
        async with service.receive_upload(request, limiter.executor) as upload:
            response_format = upload.field("response_format") or "json"
            if response_format not in RESPONSE_FORMATS:
                raise InvalidOption("response_format", f"must be one of {RESPONSE_FORMATS}")
            _check_temperature(upload.field("temperature"))
            if (upload.field("stream") or "false").lower() == "true":
                raise InvalidOption("stream", "streaming responses are not supported")
            granularities = set(upload.fields.get("timestamp_granularities[]", [])) | set(
                upload.fields.get("timestamp_granularities", [])
            )
            if not granularities <= GRANULARITIES:
                raise InvalidOption("timestamp_granularities[]", "must be 'word' or 'segment'")
            words = "word" in granularities and response_format == "verbose_json"
            options = JobOptions.parse(
                upload.field("language"), upload.field("prompt"), words, languages
            )
            work = service.transcriber.transcribe_path(
                upload.path,
                options,
                owner=f"sync_{uuid.uuid4().hex[:12]}",
                executor=limiter.executor,
            )
            result = await unless_disconnected(request.receive, work)
    except UploadError as exc:
        return openai_error(exc.status, exc.message, exc.param, exc.code)
    except InvalidOption as exc:
        return openai_error(400, str(exc), exc.param, "invalid_parameter")
    except (UndecodableAudio, AudioTooLong) as exc:
        refusal = media_error(exc)
        return openai_error(refusal.status, refusal.message, refusal.param, refusal.code)
    except EngineFailure as exc:
        return openai_error(500, f"transcription failed: {exc}", None, "engine_error")
    if response_format == "json":
        return JSONResponse({"text": result.text})
    if response_format == "verbose_json":
        return JSONResponse(verbose_json(result, words=words))
    return Response(RENDERERS[response_format](result), media_type=MEDIA_TYPES[response_format])


async def unless_disconnected(receive: Receive, work: Awaitable[T]) -> T:
    """``await work``, cancelled (``ClientGone``) if the client disconnects first. Call it
    once the request body has been read: ``receive`` then only ever says disconnect."""

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
        watch.cancel()
        await asyncio.gather(task, watch, return_exceptions=True)
    if not task.cancelled():
        return task.result()
    raise ClientGone()


def _check_temperature(value: str | None) -> None:
    if value is None:
        return
    try:
        temperature = float(value)
    except ValueError:
        raise InvalidOption("temperature", "not a number") from None
    if not 0.0 <= temperature <= 1.0:
        raise InvalidOption("temperature", "must be between 0 and 1")


def verbose_json(result: JobResult, *, words: bool) -> dict[str, Any]:
    """OpenAI's ``verbose_json`` shape (``TranscriptionVerbose``)."""
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": result.language,
        "duration": result.duration,
        "text": result.text,
        "segments": [
            {
                "id": i,
                "seek": 0,
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": s.avg_logprob,
                "compression_ratio": 0.0,
                "no_speech_prob": s.no_speech_prob,
            }
            for i, s in enumerate(result.segments)
        ],
    }
    if words:
        body["words"] = [
            {"word": w.word.strip(), "start": w.start, "end": w.end}
            for s in result.segments
            for w in s.words
        ]
    return body
