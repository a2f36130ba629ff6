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
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

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
"""Decoder children running at once (in this process); more wait their turn."""
CHILD_ENVIRONMENT = ("PATH", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LANG", "LC_ALL")
"""All the decoder child gets of the server's environment: never its secrets (API keys,
token secret, Redis password)."""
PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])
"""Where this ``earshot`` package sits: the child imports the very same one."""
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


_threads = ThreadPoolExecutor(MAX_DECODERS, thread_name_prefix="earshot-decoder")
"""Each decode is one blocking thread here: it spawns the child with ``subprocess``
(``vfork``/``exec``, no Python code between) rather than through the event loop, whose
``fork`` (uvloop's) runs the interpreter's after-fork code in a copy of a threaded
process, and reads the child's frames. More decodes than threads wait their turn."""


class _Child:
    """One decode's child process, killable from the event loop at any moment."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None
        self.cancelled = False

    def spawn(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes] | None:
        with self._lock:
            if self.cancelled:
                return None
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
            )
            return self.process

    def cancel(self) -> bool:
        """Kill it (or make sure it never starts); True if it had started."""
        with self._lock:
            self.cancelled = True
            if self.process is not None and self.process.poll() is None:
                self.process.kill()
            return self.process is not None


async def decode_untrusted(
    source: str | Path,
    sample_rate: int = SAMPLE_RATE,
    *,
    max_seconds: float | None = None,
    probe: bool = False,
    limits: ChildLimits | None = None,
) -> Decoded:
    """Decode ``source`` in a child process under ``limits``. Raises UndecodableAudio
    (or its UnsupportedAudio, DecoderFailed) or AudioTooLong. Cancelling kills the child
    (and returns once it is reaped)."""
    limits = limits or ChildLimits()
    # -P: the working directory is not put on the child's sys.path
    argv = [sys.executable, "-P", "-m", "earshot.decoder", str(source), "--rate", str(sample_rate)]
    argv += ["--memory-bytes", str(limits.memory_bytes), "--cpu-s", str(limits.cpu_s)]
    if max_seconds is not None:
        argv += ["--max-seconds", repr(float(max_seconds))]
    if probe:
        argv.append("--probe")
    env = {name: os.environ[name] for name in CHILD_ENVIRONMENT if name in os.environ}
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MALLOC_ARENA_MAX="2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
    child = _Child()
    loop = asyncio.get_running_loop()
    work = loop.run_in_executor(_threads, _decode, child, argv, env, sample_rate, max_seconds)
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        if child.cancel():
            await asyncio.wait([work])  # killed: its thread reaps it and ends at once
        else:
            work.cancel()  # still waiting for a thread: it will never start
        raise


def _decode(
    child: _Child, argv: list[str], env: dict[str, str], sample_rate: int, max_seconds: float | None
) -> Decoded:
    process = child.spawn(argv, env)
    if process is None:
        raise DecoderFailed("cancelled before it started")
    assert process.stdout is not None
    try:
        return _receive(process, process.stdout, sample_rate, max_seconds)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()


def _receive(
    process: subprocess.Popen[bytes], stdout: IO[bytes], sample_rate: int, max_seconds: float | None
) -> Decoded:
    cap = _max_samples(max_seconds, sample_rate)
    info: AudioInfo | None = None
    buffer: SampleBuffer | None = None
    while True:
        header = stdout.read(5)
        if len(header) == 5:
            kind, length = struct.unpack("<cI", header)
            if length > MAX_FRAME_BYTES:
                raise DecoderFailed(f"decoder sent a frame of {length} bytes")
            payload = stdout.read(length)
        if len(header) < 5 or len(payload) < length:
            code = process.wait()
            why = f"signal {-code}" if code < 0 else f"exit code {code}"
            raise DecoderFailed(f"the decoder died on this file ({why})")
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
