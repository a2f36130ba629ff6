"""Streaming decode of an audio file to float32 mono, and the decoder child process.

``decode_stream`` opens a file with PyAV (FFmpeg's libraries, no ffmpeg binary), only
through one of ``ALLOWED_FORMATS`` and ``ALLOWED_CODECS``, and yields the decoded audio
already resampled (soxr's streaming resampler, frame by frame), so memory holds one
frame at the file's own rate, never the file. The decoded duration is counted as the
frames come (the header is not trusted) and decoding stops past ``max_seconds``.

``python -m earshot.decoder FILE`` runs it in a child process under resource limits
(``RLIMIT_AS``, ``RLIMIT_CPU``, no file writes) and writes the samples to stdout as
frames (``audio_files.decode_untrusted`` is the parent side): a codec bug or a bomb
takes down the child, never the server. Frame: one kind byte and a little-endian
uint32 length, then the payload::

    I  JSON {"format", "codec", "sample_rate", "channels", "duration"}   once, first
    D  float32 little-endian samples at the requested rate                  0..n
    E  JSON {"kind", "message"}                                             last (failure)
    Z  JSON {"decoded_s", "peak_rss_bytes", "peak_vm_bytes"}                last (success)

This module imports only the standard library at first, so that the child's limits are
set before numpy, soxr and PyAV load.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    import numpy as np

ALLOWED_FORMATS = ("wav", "flac", "mp3", "ogg", "matroska", "webm", "mov", "mp4", "m4a", "aac")
"""FFmpeg demuxers a file may be opened with (FFmpeg's ``format_whitelist``): audio
containers only. Never concat or playlist demuxers (they open other files or URLs),
image sequences, or anything else FFmpeg would otherwise auto-detect."""
ALLOWED_CODECS = frozenset(
    {"flac", "mp3", "mp3float", "mp2", "vorbis", "opus", "aac", "alac", "ac3", "eac3"}
)
"""Audio decoders used (plus every ``pcm_*``): what the allowed containers carry."""
MAX_SAMPLE_RATE = 192_000
"""Higher input rates are refused. Up to this, each frame is resampled as it comes, so
a high rate costs decoding time, not memory."""
MAX_CHANNELS = 32
CHUNK_SAMPLES = 1 << 16
"""Output samples per ``D`` frame of the child (256 KiB)."""
MAX_FRAME_BYTES = 16 << 20
"""Largest frame a parent accepts from a child."""
MAX_DECODE_ERRORS = 50
"""Corrupt packets skipped before the file is declared undecodable."""


class UndecodableAudio(ValueError):
    """The file holds no audio stream that may and can be decoded."""


class UnsupportedAudio(UndecodableAudio):
    """Audio, but outside what is accepted (sample rate, channels, codec, container)."""


class DecoderFailed(UndecodableAudio):
    """The decoder process died or ran out of its memory or CPU time on this file."""


class AudioTooLong(ValueError):
    """The decoded audio exceeds the allowed duration (e.g. a decompression bomb)."""


ERROR_KINDS: dict[str, type[Exception]] = {
    "undecodable": UndecodableAudio,
    "unsupported": UnsupportedAudio,
    "failed": DecoderFailed,
    "too_long": AudioTooLong,
}


@dataclass(frozen=True)
class AudioInfo:
    format: str
    codec: str
    sample_rate: int
    channels: int
    duration: float | None
    """From the header (untrusted; for early refusals and buffer sizing only)."""


def open_container(source: str | Path) -> Any:
    """``av.open`` restricted to ``ALLOWED_FORMATS`` and local files."""
    import av

    options = {"format_whitelist": ",".join(ALLOWED_FORMATS), "protocol_whitelist": "file"}
    try:
        container = av.open(str(source), metadata_errors="ignore", container_options=options)
    except av.error.FFmpegError as exc:
        raise UndecodableAudio(f"not an accepted audio file ({exc.strerror})") from exc
    names = set(container.format.name.split(","))
    if not names & set(ALLOWED_FORMATS):  # belt and braces: the whitelist did this
        container.close()
        raise UnsupportedAudio(f"container {container.format.name!r} is not accepted")
    return container


def decode_stream(
    source: str | Path,
    sample_rate: int,
    *,
    max_seconds: float | None = None,
    on_info: Callable[[AudioInfo], None] | None = None,
    probe: bool = False,
) -> Iterator[np.ndarray]:
    """Mono float32 chunks at ``sample_rate``; ``on_info`` is called once, before the
    first chunk. ``probe``: stop after the first decoded frame."""
    import av
    import numpy as np
    import soxr

    with open_container(source) as container:
        if not container.streams.audio:
            raise UndecodableAudio("no audio stream")
        stream = container.streams.audio[0]
        stream.codec_context.thread_count = 1  # no decoder threads: few bytes, no arenas
        codec = stream.codec_context.name
        if not (codec in ALLOWED_CODECS or codec.startswith("pcm_")):
            raise UnsupportedAudio(f"audio codec {codec!r} is not accepted")
        declared = stream.codec_context.sample_rate or 0
        _check_rate(declared)
        duration = container.duration / av.time_base if container.duration else None
        if on_info is not None:
            channels = stream.codec_context.channels
            on_info(AudioInfo(container.format.name, codec, declared, channels, duration))
        resampler: Any = None
        rate = 0
        decoded = 0.0
        errors = 0
        frames = 0
        for packet in container.demux(stream):
            try:
                decoded_frames = packet.decode()
            except av.error.FFmpegError as exc:
                errors += 1
                if errors > MAX_DECODE_ERRORS or isinstance(exc, MemoryError):
                    raise UndecodableAudio(f"corrupt audio ({exc.strerror})") from exc
                continue
            for frame in decoded_frames:
                if frame.sample_rate != rate:
                    _check_rate(frame.sample_rate)
                    if resampler is not None:
                        yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)
                    rate = frame.sample_rate
                    resampler = (
                        None
                        if rate == sample_rate
                        else soxr.ResampleStream(rate, sample_rate, 1, dtype="float32")
                    )
                decoded += frame.samples / rate
                if max_seconds is not None and decoded > max_seconds:
                    raise AudioTooLong(f"longer than {max_seconds:.0f} s")
                mono = _mono(frame, np)
                frames += 1
                yield mono if resampler is None else resampler.resample_chunk(mono)
                if probe:
                    return
        if frames == 0:
            raise UndecodableAudio("no audio frames")
        if resampler is not None:
            yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)


def _check_rate(rate: int) -> None:
    if rate > MAX_SAMPLE_RATE:
        raise UnsupportedAudio(
            f"sample rate {rate} Hz is above the {MAX_SAMPLE_RATE} Hz accepted;"
            " resample the file (16 kHz is all speech recognition uses)"
        )


_SCALES = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}


def _mono(frame: Any, np: Any) -> np.ndarray:
    channels = len(frame.layout.channels)
    if channels > MAX_CHANNELS:
        raise UnsupportedAudio(f"{channels} channels; at most {MAX_CHANNELS} are accepted")
    data = frame.to_ndarray()
    name = frame.format.name.rstrip("p")
    if name == "u8":
        data = data.astype(np.float32) - 128.0
    scale = _SCALES.get(name)
    data = data.astype(np.float32, copy=False)
    if frame.format.is_planar:
        mono = data[0] if channels == 1 else data.mean(axis=0)
    else:
        flat = data.reshape(-1)
        mono = flat if channels == 1 else flat.reshape(-1, channels).mean(axis=1)
    if scale is not None:
        mono = mono / np.float32(scale)
    return mono.astype(np.float32, copy=False)


# -- the child process --------------------------------------------------------------------
@dataclass(frozen=True)
class ChildLimits:
    memory_bytes: int = 512 << 20
    """``RLIMIT_AS`` of the child: Python with numpy, soxr and FFmpeg mapped peaks at
    ~200 MiB of address space (~50 MiB resident) on every allowed codec, whatever the
    file's length or rate: the child holds a frame and an output chunk, no more."""
    cpu_s: int = 600
    """``RLIMIT_CPU``: a 4 h file decodes in well under a minute."""


def _limit(limits: ChildLimits) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # write no files
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _write(out: BinaryIO, kind: bytes, payload: bytes) -> None:
    out.write(struct.pack("<cI", kind, len(payload)))
    out.write(payload)


def _peaks() -> dict[str, int]:
    """This process's peak resident memory and address space (``ru_maxrss`` would
    count the parent's, from before ``exec``)."""
    fields = {"VmHWM:": "peak_rss_bytes", "VmPeak:": "peak_vm_bytes"}
    peaks = dict.fromkeys(fields.values(), 0)
    try:
        with open("/proc/self/status") as status:
            for line in status:
                name, *value = line.split()
                if name in fields:
                    peaks[fields[name]] = int(value[0]) * 1024
    except OSError:  # no /proc (not Linux)
        pass
    return peaks


def child_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m earshot.decoder")
    parser.add_argument("file")
    parser.add_argument("--rate", type=int, default=16000)
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--memory-bytes", type=int, default=ChildLimits.memory_bytes)
    parser.add_argument("--cpu-s", type=int, default=ChildLimits.cpu_s)
    parser.add_argument("--probe", action="store_true")
    args = parser.parse_args(argv)
    _limit(ChildLimits(args.memory_bytes, args.cpu_s))
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the frame stream
    try:
        import numpy as np

        pending: list[np.ndarray] = []
        size = 0
        decoded = 0

        def info(found: AudioInfo) -> None:
            _write(out, b"I", json.dumps(asdict(found)).encode())

        def flush() -> None:
            nonlocal pending, size
            if pending:
                _write(out, b"D", np.concatenate(pending).astype("<f4", copy=False).tobytes())
                pending, size = [], 0

        for chunk in decode_stream(
            args.file, args.rate, max_seconds=args.max_seconds, on_info=info, probe=args.probe
        ):
            if len(chunk):
                pending.append(chunk)
                size += len(chunk)
                decoded += len(chunk)
                if size >= CHUNK_SAMPLES:
                    flush()
        flush()
        done = {"decoded_s": decoded / args.rate, **_peaks()}
        _write(out, b"Z", json.dumps(done).encode())
    except MemoryError:
        message = f"decoding needs more than the decoder's {args.memory_bytes >> 20} MiB"
        _write(out, b"E", json.dumps({"kind": "failed", "message": message}).encode())
    except (UndecodableAudio, AudioTooLong) as exc:
        kind = next(k for k, cls in reversed(ERROR_KINDS.items()) if isinstance(exc, cls))
        _write(out, b"E", json.dumps({"kind": kind, "message": str(exc)}).encode())
    except Exception as exc:  # a bug, or a library failing on this file: the file failed
        message = f"decoder error {type(exc).__name__}: {exc}"
        _write(out, b"E", json.dumps({"kind": "failed", "message": message}).encode())
    out.flush()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    sys.exit(child_main())
