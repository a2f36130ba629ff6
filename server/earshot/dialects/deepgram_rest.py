"""Deepgram's prerecorded API: ``POST /deepgram/v1/listen`` with the audio as the body.

Synchronous, like the OpenAI-compatible endpoint, and through the same shared service:
the same bounds (``service.sync_limiter``: 429 with ``Retry-After`` over them), the same
decoder child process and file transcription (``service.transcriber.transcribe_path``),
the same stop when the client goes away (``openai_compat.unless_disconnected``). Only
the request (raw body, Deepgram's query parameters, ``Authorization: Token``) and the
answer (Deepgram's ``ListenV1Response`` shape) differ.

The body is a file in any container the decoder takes (wav, flac, mp3, ogg, webm, mp4,
...), or raw ``linear16`` PCM when ``encoding=linear16&sample_rate=...`` say so (it is
given a WAV header). ``{"url": ...}`` bodies are refused: the server fetches nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import struct
import time
import uuid
from pathlib import Path
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from earshot.access import AccessPolicy, Denied
from earshot.audio_files import AudioTooLong, UndecodableAudio
from earshot.dialects.deepgram import (
    deepgram_words,
    error_response,
    format_text,
    model_info,
    model_uuid,
    normalize_authorization,
    parse_common,
)
from earshot.jobs.models import JobOptions, JobResult
from earshot.jobs.openai_compat import CLIENT_CLOSED, ClientGone, unless_disconnected
from earshot.jobs.pipeline import EngineFailure
from earshot.jobs.service import service_of
from earshot.jobs.uploads import media_error
from earshot.protocol import ParameterError

log = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    pass


async def deepgram_prerecorded(request: Request) -> Response:
    runtime = request.app.state.runtime
    policy: AccessPolicy = runtime.access
    try:
        principal = policy.authenticate(
            normalize_authorization(request.headers.get("authorization"))
        )
        policy.count_request(principal)
    except Denied as denied:
        runtime.metrics.error(denied.code)
        return error_response(denied.status, denied.message, denied.headers)
    service = service_of(request)
    languages: frozenset[str] = runtime.engine.languages
    try:
        options = parse_common(request.query_params, languages, streaming=False)
        raw_rate = _raw_rate(request)
    except ParameterError as exc:
        return error_response(400, f"{exc.parameter}: {exc.message}")
    if request.headers.get("content-type", "").split(";")[0].strip() == "application/json":
        return error_response(
            400, "remote URLs are not fetched by this server: send the audio as the body"
        )
    limiter = service.sync_limiter
    slot = limiter.acquire(principal.key_id)
    if slot is None:
        retry = limiter.retry_after_s()
        return error_response(
            429,
            f"too many transcriptions at once; retry after {retry} s",
            {"Retry-After": str(retry)},
        )
    started = time.monotonic()
    key_cap = principal.limits.max_upload_bytes
    cap = (
        service.config.max_upload_bytes
        if key_cap is None
        else min(service.config.max_upload_bytes, key_cap)
    )
    path = service.upload_dir / f"deepgram_{uuid.uuid4().hex}.part"
    try:
        try:
            digest, size = await _save_body(request, path, cap, raw_rate)
        except BodyTooLarge:
            return error_response(413, f"audio larger than {cap} bytes")
        if size == 0:
            return error_response(400, "the request body holds no audio")
        job_options = JobOptions(
            language=options.get("language"), prompt=options.get("prompt"), word_timestamps=True
        )
        work = service.transcriber.transcribe_path(
            path,
            job_options,
            owner=f"deepgram_{uuid.uuid4().hex[:12]}",
            executor=limiter.executor,
        )
        try:
            result = await unless_disconnected(request.receive, work)
        except (UndecodableAudio, AudioTooLong) as exc:
            refusal = media_error(exc)
            return error_response(refusal.status, refusal.message)
        except EngineFailure as exc:
            return error_response(500, f"transcription failed: {exc}")
    except (ClientGone, ClientDisconnect):
        log.info("deepgram transcription stopped: client went away")
        return Response(status_code=CLIENT_CLOSED)
    finally:
        path.unlink(missing_ok=True)
        slot.release(time.monotonic() - started)
    punctuated = bool(options.get("punctuate") or options.get("smart_format"))
    body = response_body(
        result,
        model=runtime.config.engine.model,
        sha256=digest,
        punctuated=punctuated,
        detected=job_options.language is None,
    )
    return JSONResponse(body)


def _raw_rate(request: Request) -> int | None:
    """The sample rate of a raw ``linear16`` body, or None for a file with a container."""
    encoding = request.query_params.get("encoding")
    if encoding is None:
        return None
    if encoding != "linear16":
        raise ParameterError(
            "encoding", "send a file in a container, or raw audio as encoding=linear16"
        )
    rate = request.query_params.get("sample_rate", "")
    if not rate.isdigit() or not 8000 <= int(rate) <= 192_000:
        raise ParameterError("sample_rate", "raw linear16 needs sample_rate (8000-192000)")
    return int(rate)


async def _save_body(
    request: Request, path: Path, cap: int, raw_rate: int | None
) -> tuple[str, int]:
    """Stream the body to ``path`` (at most ``cap`` bytes); its sha256 and size."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "wb") as out:  # chunks of the body: small writes, no thread needed
        if raw_rate is not None:
            out.write(_wav_header(raw_rate))
        async for chunk in request.stream():
            size += len(chunk)
            if size > cap:
                raise BodyTooLarge()
            digest.update(chunk)
            out.write(chunk)
        if raw_rate is not None:
            out.seek(0)
            out.write(_wav_header(raw_rate, size - size % 2))
    return digest.hexdigest(), size


def _wav_header(rate: int, data_bytes: int = 0) -> bytes:
    """A 44-byte header for mono 16-bit PCM at ``rate``."""
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def response_body(
    result: JobResult, *, model: str, sha256: str, punctuated: bool, detected: bool
) -> dict[str, Any]:
    """Deepgram's prerecorded answer (``ListenV1Response``) for one file's result."""
    words = deepgram_words(
        [
            {"word": w.word, "start": w.start, "end": w.end, "probability": w.probability}
            for s in result.segments
            for w in s.words
        ],
        punctuated=punctuated,
    )
    transcript = format_text(result.text, punctuated=punctuated)
    alternative: dict[str, Any] = {
        "transcript": transcript,
        "confidence": (
            round(sum(w["confidence"] for w in words) / len(words), 4) if words else 0.0
        ),
        "words": words,
    }
    channel: dict[str, Any] = {"alternatives": [alternative]}
    if detected and result.language:
        channel["detected_language"] = result.language
        channel["language_confidence"] = 1.0
    uid = model_uuid(model)
    return {
        "metadata": {
            "transaction_key": "deprecated",
            "request_id": str(uuid.uuid4()),
            "sha256": sha256,
            "created": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
            "duration": round(result.duration, 3),
            "channels": 1,
            "models": [uid],
            "model_info": {uid: model_info(model)},
        },
        "results": {"channels": [channel]},
    }
