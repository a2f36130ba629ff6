"""Receive one uploaded audio file from a multipart form: size-capped while it streams
in (413), written to the data dir and fsync'd (so a 202 means durable), and probed in a
decoder child process (``audio_files.decode_untrusted``; 415 for data that isn't audio
in an accepted container, codec and rate, 422 for a file the decoder dies on) before
anything is queued.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Message

from earshot.access import upload_limit
from earshot.audio_files import (
    AudioTooLong,
    DecoderFailed,
    UndecodableAudio,
    UnsupportedAudio,
    decode_untrusted,
)

log = logging.getLogger(__name__)
FORM_OVERHEAD = 64 * 1024
"""Multipart headers and the small option fields, on top of the file itself."""


class UploadError(Exception):
    """Refuse the upload with ``status`` (400, 413, 415); ``param`` names the field."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param


@dataclass(frozen=True)
class Upload:
    path: Path
    """fsync'd copy in the data dir; the caller owns (moves or deletes) it."""
    filename: str
    fields: dict[str, list[str]]
    """The form's other fields; a repeated name (``x[]``) keeps every value."""

    def field(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[-1] if values else None


ACCEPTED = "wav, flac, mp3, ogg/opus, webm/matroska, mp4/m4a/mov or aac"


def media_error(exc: UndecodableAudio | AudioTooLong) -> UploadError:
    """The HTTP refusal of a file the decoder refused (at the door, or decoding it all).
    Messages are the decoder's own words, never FFmpeg's or a child's output (logged)."""
    log.info("upload refused: %s: %s", type(exc).__name__, exc)
    if isinstance(exc, AudioTooLong):
        return UploadError(413, "audio_too_long", f"audio {exc}", "file")
    if isinstance(exc, DecoderFailed):
        message = "file could not be decoded within the decoder's memory and time limits"
        return UploadError(422, "undecodable_audio", message, "file")
    if isinstance(exc, UnsupportedAudio):
        return UploadError(415, "unsupported_audio", str(exc), "file")
    message = f"file is not decodable audio in an accepted container ({ACCEPTED})"
    return UploadError(415, "unsupported_media", message, "file")


@asynccontextmanager
async def receive_upload(
    request: Request,
    upload_dir: Path,
    max_bytes: int,
    max_seconds: float,
    executor: Executor | None = None,
) -> AsyncIterator[Upload]:
    """``async with receive_upload(...) as upload:`` the file is deleted on exit unless
    the body moved it away (a job took it over). The cap is the smaller of ``max_bytes``
    and the caller's own (per API key, ``access.upload_limit``). The copy to disk runs in
    ``executor`` (default: the loop's)."""
    key_cap = upload_limit(request)
    max_bytes = max_bytes if key_cap is None else min(max_bytes, key_cap)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + FORM_OVERHEAD:
        raise _too_large(max_bytes)
    capped = Request(request.scope, _capped_receive(request.receive, max_bytes + FORM_OVERHEAD))
    try:
        form = await capped.form(max_files=1, max_fields=32)
    except HTTPException as exc:  # malformed multipart
        raise UploadError(400, "invalid_form", str(exc.detail)) from exc
    except _TooLarge as exc:
        raise _too_large(max_bytes) from exc
    try:
        upload = await _save(form, upload_dir, max_bytes, executor)
    finally:
        await form.close()
    try:
        try:
            probed = await decode_untrusted(upload.path, max_seconds=max_seconds, probe=True)
        except (UndecodableAudio, AudioTooLong) as exc:
            raise media_error(exc) from exc
        duration = probed.info.duration
        if duration is not None and duration > max_seconds:
            raise UploadError(
                413, "audio_too_long", f"audio longer than {max_seconds:.0f} s", "file"
            )
        yield upload
    finally:
        upload.path.unlink(missing_ok=True)


class _TooLarge(Exception):
    pass


def _capped_receive(receive: Any, limit: int) -> Any:
    seen = 0

    async def capped() -> Message:
        nonlocal seen
        message: Message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise _TooLarge()
        return message

    return capped


def _too_large(max_bytes: int) -> UploadError:
    return UploadError(413, "file_too_large", f"upload larger than {max_bytes} bytes", "file")


async def _save(
    form: FormData, upload_dir: Path, max_bytes: int, executor: Executor | None
) -> Upload:
    files = [v for v in form.values() if isinstance(v, UploadFile)]
    file = form.get("file")
    if not isinstance(file, UploadFile) or len(files) != 1:
        raise UploadError(400, "missing_file", "send exactly one file, in the field 'file'", "file")
    if file.size is not None and file.size > max_bytes:
        raise _too_large(max_bytes)
    fields: dict[str, list[str]] = {}
    for key, value in form.multi_items():
        if isinstance(value, str):
            fields.setdefault(key, []).append(value)
    path = upload_dir / f"{uuid.uuid4().hex}.part"
    await asyncio.get_running_loop().run_in_executor(executor, _copy_fsync, file, path)
    return Upload(path, file.filename or "audio", fields)


def _copy_fsync(file: UploadFile, path: Path) -> None:
    file.file.seek(0)
    with open(path, "wb") as out:
        shutil.copyfileobj(file.file, out, 1 << 20)
        out.flush()
        os.fsync(out.fileno())
