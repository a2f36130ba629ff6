"""Decode an audio file to float32 mono 16 kHz: PyAV decodes, soxr resamples, frame by
frame (``decoder.decode_stream``), only from an allow-list of audio containers.

Two ways in:

- ``read_audio`` / ``probe_audio`` decode in this process: for files the caller trusts
  (the CLI's own argument, evaluation sets, test fixtures).
- ``decode_untrusted`` decodes in a child process (``python -m earshot.decoder``) with
  a memory and CPU limit, and is what the server uses on uploads: a codec bug or a
  decompression bomb kills the child, and the caller gets ``DecoderFailed``. Killing
  the awaiting task (a client that went away) kills the child.

No ffmpeg binary is needed: PyAV wheels carry the libraries.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import struct
import sys
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from earshot.config import SAMPLE_RATE
from earshot.decoder import (
    ERROR_KINDS,
    MAX_FRAME_BYTES,
    AudioInfo,
    AudioTooLong,
    ChildLimits,
    DecoderFailed,
    UndecodableAudio,
    UnsupportedAudio,
    decode_stream,
)

__all__ = [
    "AudioInfo",
    "AudioTooLong",
    "ChildLimits",
    "Decoded",
    "DecoderFailed",
    "UndecodableAudio",
    "UnsupportedAudio",
    "decode_untrusted",
    "probe_audio",
    "read_audio",
    "to_pcm16",
]

MAX_DECODERS = max(2, os.cpu_count() or 2)
"""Decoder children running at once (per event loop); more wait their turn."""
CHILD_ENVIRONMENT = ("PATH", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LANG", "LC_ALL")
"""All the decoder child gets of the server's environment: never its secrets (API keys,
token secret, Redis password)."""
MAX_PREALLOCATE_S = 3600.0
"""A header's duration is believed for preallocation up to this much."""
INITIAL_BUFFER_S = 600.0
"""Samples preallocated when the header doesn't give the duration; the buffer then grows
by half whenever full. With a duration (untrusted), room for that much (at most the
cap): a lie costs address space, not resident memory (untouched pages), and the result
is trimmed to what was decoded."""


class SampleBuffer:
    """A growing float32 buffer: one copy of the audio, plus at most half of it spare."""

    def __init__(self, capacity: int) -> None:
        self._data = np.empty(max(1024, capacity), np.float32)
        self.size = 0

    def append(self, chunk: np.ndarray) -> None:
        end = self.size + len(chunk)
        if end > len(self._data):
            grown = np.empty(max(end, len(self._data) * 3 // 2), np.float32)
            grown[: self.size] = self._data[: self.size]
            self._data = grown
        self._data[self.size : end] = chunk
        self.size = end

    def result(self) -> np.ndarray:
        if self.size < len(self._data) * 0.9:
            return self._data[: self.size].copy()  # don't keep the spare room alive
        return self._data[: self.size]


def _initial_capacity(info: AudioInfo | None, sample_rate: int, cap: int | None) -> int:
    seconds = INITIAL_BUFFER_S
    if info is not None and info.duration is not None:
        seconds = min(info.duration * 1.01 + 1.0, MAX_PREALLOCATE_S)
    samples = int(seconds * sample_rate)
    return samples if cap is None else min(samples, cap)


def _max_samples(max_seconds: float | None, sample_rate: int) -> int | None:
    return None if max_seconds is None else math.ceil(max_seconds * sample_rate) + sample_rate


def read_audio(
    source: str | Path, sample_rate: int = SAMPLE_RATE, *, max_seconds: float | None = None
) -> np.ndarray:
    """Mono float32 at ``sample_rate``, decoded in this process (trusted files only; see
    ``decode_untrusted``); ``max_seconds`` stops decoding early (AudioTooLong)."""
    import av

    found: list[AudioInfo] = []
    buffer: SampleBuffer | None = None
    try:
        for chunk in decode_stream(
            source, sample_rate, max_seconds=max_seconds, on_info=found.append
        ):
            if buffer is None:
                cap = _max_samples(max_seconds, sample_rate)
                buffer = SampleBuffer(_initial_capacity(found[0], sample_rate, cap))
            buffer.append(chunk)
    except av.error.FFmpegError as exc:
        raise UndecodableAudio(f"{source}: {exc}") from exc
    except UndecodableAudio as exc:
        raise type(exc)(f"{source}: {exc}") from exc
    if buffer is None:
        raise UndecodableAudio(f"{source}: no audio frames")
    return buffer.result()


def probe_audio(source: str | Path) -> float | None:
    """Check cheaply, in this process, that ``source`` decodes (open + first frame); its
    duration if the header says (``decode_untrusted(probe=True)`` for uploads)."""
    import av

    found: list[AudioInfo] = []
    try:
        for _chunk in decode_stream(source, SAMPLE_RATE, on_info=found.append, probe=True):
            pass
    except av.error.FFmpegError as exc:
        raise UndecodableAudio(f"{source}: {exc}") from exc
    return found[0].duration if found else None


@dataclass(frozen=True)
class Decoded:
    audio: np.ndarray
    """Mono float32 at the requested rate (empty for a probe)."""
    info: AudioInfo
    peak_rss_bytes: int
    """The decoder child's peak resident memory (0 where there is no ``/proc``)."""
    peak_vm_bytes: int
    """... and its peak address space, which ``ChildLimits.memory_bytes`` bounds."""


_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _decoder_slots() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = asyncio.Semaphore(MAX_DECODERS)
    return slots


async def decode_untrusted(
    source: str | Path,
    sample_rate: int = SAMPLE_RATE,
    *,
    max_seconds: float | None = None,
    probe: bool = False,
    limits: ChildLimits | None = None,
) -> Decoded:
    """Decode ``source`` in a child process under ``limits``. Raises UndecodableAudio
    (or its UnsupportedAudio, DecoderFailed) or AudioTooLong. Cancelling kills the child."""
    limits = limits or ChildLimits()
    args = [str(source), "--rate", str(sample_rate)]
    args += ["--memory-bytes", str(limits.memory_bytes), "--cpu-s", str(limits.cpu_s)]
    if max_seconds is not None:
        args += ["--max-seconds", repr(float(max_seconds))]
    if probe:
        args.append("--probe")
    env = {name: os.environ[name] for name in CHILD_ENVIRONMENT if name in os.environ}
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MALLOC_ARENA_MAX="2")
    async with _decoder_slots():
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "earshot.decoder",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        stderr = asyncio.ensure_future(_tail(child.stderr))
        try:
            return await _receive(child, sample_rate, max_seconds, stderr)
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
            stderr.cancel()


async def _tail(stream: asyncio.StreamReader | None, keep: int = 4096) -> bytes:
    tail = b""
    while stream is not None and (data := await stream.read(65536)):
        tail = (tail + data)[-keep:]
    return tail


async def _receive(
    child: asyncio.subprocess.Process,
    sample_rate: int,
    max_seconds: float | None,
    stderr: asyncio.Future[bytes],
) -> Decoded:
    assert child.stdout is not None
    cap = _max_samples(max_seconds, sample_rate)
    info: AudioInfo | None = None
    buffer: SampleBuffer | None = None
    while True:
        try:
            kind, length = struct.unpack("<cI", await child.stdout.readexactly(5))
            if length > MAX_FRAME_BYTES:
                raise DecoderFailed(f"decoder sent a frame of {length} bytes")
            payload = await child.stdout.readexactly(length)
        except asyncio.IncompleteReadError:
            code = await child.wait()
            tail = (await stderr).decode(errors="replace").strip().splitlines()
            why = f"signal {-code}" if code < 0 else f"exit code {code}"
            last = f": {tail[-1]}" if tail else ""
            raise DecoderFailed(f"the decoder died on this file ({why}{last})") from None
        if kind == b"I":
            info = AudioInfo(**json.loads(payload))
        elif kind == b"D":
            if info is None:
                raise DecoderFailed("decoder sent audio before its description")
            if buffer is None:
                buffer = SampleBuffer(_initial_capacity(info, sample_rate, cap))
            if cap is not None and buffer.size + length // 4 > cap:
                raise AudioTooLong(f"longer than {max_seconds:.0f} s")
            buffer.append(np.frombuffer(payload, "<f4"))
        elif kind == b"E":
            error = json.loads(payload)
            raise ERROR_KINDS.get(error["kind"], DecoderFailed)(error["message"])
        elif kind == b"Z":
            if info is None:
                raise DecoderFailed("decoder ended without describing the file")
            done = json.loads(payload)
            audio = buffer.result() if buffer is not None else np.zeros(0, np.float32)
            return Decoded(audio, info, int(done["peak_rss_bytes"]), int(done["peak_vm_bytes"]))
        else:
            raise DecoderFailed(f"decoder sent an unknown frame {kind!r}")


def to_pcm16(audio: np.ndarray) -> bytes:
    """float32 [-1, 1] → little-endian s16 bytes, as clients send them."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
