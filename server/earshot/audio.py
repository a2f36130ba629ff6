"""Client audio bytes → float32 mono at 16 kHz, incrementally.

Sans-I/O: a decoder's ``decode(frame)`` takes one binary frame and returns the samples
it yields; ``decoder_for(fmt)`` picks the decoder for a stream's encoding. Raw encodings
(``PCM_ENCODINGS``: 16-bit and float PCM, G.711 μ-law and A-law) are decoded here by
``PcmDecoder``; containerised Opus (``OPUS_ENCODINGS``: Ogg and WebM, what browsers'
MediaRecorder produces) by ``earshot.opus_stream``. Resampling uses soxr's streaming
resampler so chunk boundaries leave no clicks and the stream's sample clock stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import soxr

from earshot.transcript import SAMPLE_RATE

PCM_ENCODINGS: dict[str, np.dtype] = {
    "pcm_s16le": np.dtype("<i2"),
    "pcm_f32le": np.dtype("<f4"),
    "pcm_mulaw": np.dtype("u1"),
    "pcm_alaw": np.dtype("u1"),
}
"""Raw sample encodings: the sample dtype on the wire (G.711: one byte per sample)."""

OPUS_ENCODINGS = ("ogg_opus", "webm_opus")
"""Opus in a container; the container's header says the rate (Opus decodes at 48 kHz)."""

OPUS_NOMINAL_BYTES_PER_S = 16_000
"""Opus has no fixed bytes per second: input pacing counts its bytes at a nominal
128 kbit/s (MediaRecorder's usual rate; speech at 24–64 kbit/s counts as slower than
real time). The decoder separately bounds the audio one frame may yield."""

OPUS_MAX_FRAME_BYTES = 65_536
"""One frame of containerised Opus: 1 s at Opus's top rate (510 kbit/s) fits."""

ENCODINGS: dict[str, np.dtype] = {
    **PCM_ENCODINGS,
    **{name: np.dtype("u1") for name in OPUS_ENCODINGS},
}
"""Every accepted ``encoding``. The value is the raw sample dtype; for Opus it is bytes
(``sample_rate`` × 1 byte = the nominal rate at the default 16 kHz). Prefer
``AudioFormat.bytes_per_second``, which is exact for raw encodings and nominal for Opus."""

CONTAINER = "container"
"""No encoding given, as Deepgram's live API allows: the stream's first bytes say what
it is (a WAV header, Ogg or WebM Opus; ``ContainerDecoder``). Not a native ``encoding``
value: a ``/v1/listen`` client names its encoding."""
CONTAINER_NOMINAL_BYTES_PER_S = 32_000
"""Pacing rate of a detected stream before and after detection: 16 kHz 16-bit mono WAV;
a higher-rate WAV counts as faster than it is (its pacing is stricter), Opus as slower."""
MAX_HEADER_BYTES = 65_536
"""Bytes a detected stream may send before its audio starts (the WAV chunks before
``data``, say): more is not an audio file."""


def _mulaw_table() -> np.ndarray:
    """ITU-T G.711 μ-law: the 8-bit code is inverted; then sign (bit 7), a 3-bit
    exponent and a 4-bit mantissa; magnitude = ((mantissa << 3) + 0x84) << exponent,
    less the 0x84 bias; the 16-bit result is scaled to [-1, 1)."""
    codes = np.arange(256, dtype=np.int32) ^ 0xFF
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    linear = np.where(codes & 0x80, -magnitude, magnitude)
    return (linear / 32768.0).astype(np.float32)


def _alaw_table() -> np.ndarray:
    """ITU-T G.711 A-law: even bits inverted (XOR 0x55); then sign (bit 7 set: positive),
    a 3-bit segment and a 4-bit mantissa; segment 0 is linear ((mantissa << 4) + 8),
    segment s > 0 is ((mantissa << 4) + 0x108) << (s − 1); scaled to [-1, 1)."""
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    segment = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(
        segment == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(segment - 1, 0),
    )
    linear = np.where(codes & 0x80, magnitude, -magnitude)
    return (linear / 32768.0).astype(np.float32)


G711_TABLES: dict[str, np.ndarray] = {"pcm_mulaw": _mulaw_table(), "pcm_alaw": _alaw_table()}
"""Why tables: a G.711 byte has only 256 possible values, so decoding is one vectorised
gather (``table[codes]``) per frame, exact (the same arithmetic, done once per code at
import) and far cheaper than the bit arithmetic per sample."""


_G711_ORDER = {name: np.argsort(table, kind="stable") for name, table in G711_TABLES.items()}


def encode_g711(pcm: np.ndarray, encoding: str) -> bytes:
    """Float audio in [-1, 1] → G.711 codes, each sample the nearest of the 256 levels
    (for clients and tests; the server only decodes)."""
    table, order = G711_TABLES[encoding], _G711_ORDER[encoding]
    levels = table[order]
    x = np.clip(np.asarray(pcm, np.float32), -1.0, 1.0)
    above = np.clip(np.searchsorted(levels, x), 1, len(levels) - 1)
    nearer_below = (x - levels[above - 1]) <= (levels[above] - x)
    return order[np.where(nearer_below, above - 1, above)].astype(np.uint8).tobytes()


class AudioFormatError(ValueError):
    """A frame that isn't valid audio in the announced format."""


class FrameTooLarge(AudioFormatError):
    """More than one second of audio in one frame (close 1009)."""


@dataclass(frozen=True)
class AudioFormat:
    sample_rate: int = SAMPLE_RATE
    """Hz of raw PCM; unused for Opus, whose container says its own."""
    encoding: str = "pcm_s16le"

    @property
    def is_opus(self) -> bool:
        return self.encoding in OPUS_ENCODINGS

    @property
    def bytes_per_sample(self) -> int:
        return ENCODINGS[self.encoding].itemsize

    @property
    def bytes_per_second(self) -> int:
        """Exact for raw encodings; nominal for Opus (``OPUS_NOMINAL_BYTES_PER_S``) and
        detected streams (``CONTAINER_NOMINAL_BYTES_PER_S``)."""
        if self.is_opus:
            return OPUS_NOMINAL_BYTES_PER_S
        if self.encoding == CONTAINER:
            return CONTAINER_NOMINAL_BYTES_PER_S
        return self.sample_rate * self.bytes_per_sample

    @property
    def max_frame_bytes(self) -> int:
        """The protocol allows at most one second of audio per frame."""
        if self.is_opus or self.encoding == CONTAINER:
            return OPUS_MAX_FRAME_BYTES
        return self.sample_rate * self.bytes_per_sample


class AudioDecoder(Protocol):
    format: AudioFormat

    def decode(self, frame: bytes) -> np.ndarray: ...

    def flush(self) -> np.ndarray: ...


def decoder_for(fmt: AudioFormat) -> AudioDecoder:
    """The incremental decoder for ``fmt``'s encoding."""
    if fmt.is_opus:
        from earshot.opus_stream import OpusStreamDecoder  # PyAV only where it is needed

        return OpusStreamDecoder(fmt)
    if fmt.encoding == CONTAINER:
        return ContainerDecoder(fmt)
    return PcmDecoder(fmt)


class PcmDecoder:
    """Decodes and resamples one stream's frames, keeping resampler state between them."""

    def __init__(self, fmt: AudioFormat) -> None:
        if fmt.encoding not in PCM_ENCODINGS:
            raise ValueError(f"{fmt.encoding} is not a raw PCM encoding")
        self.format = fmt
        self._dtype = PCM_ENCODINGS[fmt.encoding]
        self._table = G711_TABLES.get(fmt.encoding)
        self._resampler = Resampler(fmt.sample_rate)

    def decode(self, frame: bytes) -> np.ndarray:
        if len(frame) > self.format.max_frame_bytes:
            raise FrameTooLarge(
                f"frame of {len(frame)} bytes is more than 1 s of audio"
                f" ({self.format.max_frame_bytes} bytes)"
            )
        if len(frame) % self._dtype.itemsize:
            raise AudioFormatError(
                f"frame of {len(frame)} bytes is not a whole number of"
                f" {self._dtype.itemsize}-byte {self.format.encoding} samples"
            )
        samples = np.frombuffer(frame, dtype=self._dtype)
        if self._table is not None:
            pcm = self._table[samples]
        elif self._dtype.kind == "i":
            pcm = samples.astype(np.float32) / 32768.0
        else:
            pcm = samples.astype(np.float32)
            if not np.all(np.isfinite(pcm)):
                raise AudioFormatError("pcm_f32le frame contains NaN or infinity")
            np.clip(pcm, -1.0, 1.0, out=pcm)
        return self._resampler.resample(pcm)

    def flush(self) -> np.ndarray:
        """The resampler's delayed tail, at end of stream."""
        return self._resampler.flush()


class Resampler:
    """Streaming resampling to 16 kHz (a pass-through at 16 kHz)."""

    def __init__(self, sample_rate: int) -> None:
        self._stream = (
            None
            if sample_rate == SAMPLE_RATE
            else soxr.ResampleStream(sample_rate, SAMPLE_RATE, 1, dtype="float32")
        )

    def resample(self, pcm: np.ndarray, *, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return pcm
        return self._stream.resample_chunk(pcm, last=last).astype(np.float32, copy=False)

    def flush(self) -> np.ndarray:
        return self.resample(np.zeros(0, np.float32), last=True)


class ContainerDecoder:
    """A stream that names no encoding: its first bytes pick the decoder.

    Theory of operation: until the audio's kind is known, frames are buffered (at most
    ``MAX_HEADER_BYTES``). ``RIFF....WAVE`` is a WAV file: its ``fmt `` chunk gives the
    sample encoding (16-bit or float PCM, μ-law, A-law) and rate, and what follows the
    ``data`` chunk header is raw samples for a ``PcmDecoder`` (the data size is not
    trusted: live WAV streams leave it 0 or 0xFFFFFFFF). ``OggS`` and the EBML magic
    start Ogg and WebM Opus, handed to the Opus decoder from their first byte. Then every
    frame goes to that decoder; raw samples may be cut anywhere, so a partial sample is
    carried to the next frame. Anything else is an ``AudioFormatError`` naming what to
    send instead.
    """

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self._head = b""
        self._inner: AudioDecoder | None = None
        self._carry = b""
        """Bytes of a raw sample cut by a frame boundary (WAV)."""

    def decode(self, frame: bytes) -> np.ndarray:
        if len(frame) > self.format.max_frame_bytes:
            raise FrameTooLarge(
                f"frame of {len(frame)} bytes is more than {self.format.max_frame_bytes} bytes"
            )
        if self._inner is None:
            self._head += frame
            detected = _detect(self._head)
            if detected is None:
                if len(self._head) > MAX_HEADER_BYTES:
                    raise AudioFormatError(
                        f"no audio after {MAX_HEADER_BYTES} bytes of header: set encoding"
                    )
                return np.zeros(0, np.float32)
            self._inner, frame = detected
            self._head = b""
        return self._feed(frame)

    def flush(self) -> np.ndarray:
        if self._inner is None:
            if self._head:
                raise AudioFormatError("the stream ended before its audio format was known")
            return np.zeros(0, np.float32)
        return self._inner.flush()

    def _feed(self, data: bytes) -> np.ndarray:
        assert self._inner is not None
        if self._inner.format.is_opus:
            return self._inner.decode(data) if data else np.zeros(0, np.float32)
        data = self._carry + data
        size = self._inner.format.bytes_per_sample
        whole = len(data) - len(data) % size
        data, self._carry = data[:whole], data[whole:]
        step = self._inner.format.max_frame_bytes // size * size  # at most 1 s per call
        parts = [self._inner.decode(data[i : i + step]) for i in range(0, whole, step)]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)


_WAV_CODES = {(1, 16): "pcm_s16le", (3, 32): "pcm_f32le", (7, 8): "pcm_mulaw", (6, 8): "pcm_alaw"}
"""WAVE format tag and bits per sample → the raw encoding."""


_OPUS_MAGIC = {b"OggS": "ogg_opus", b"\x1a\x45\xdf\xa3": "webm_opus"}
"""The first bytes of an Ogg stream and of an EBML (WebM) document."""


def _detect(head: bytes) -> tuple[AudioDecoder, bytes] | None:
    """The decoder for a stream starting with ``head`` and the bytes it should decode
    first; None while ``head`` is too short to tell."""
    for magic, encoding in _OPUS_MAGIC.items():
        if head.startswith(magic):
            return decoder_for(AudioFormat(encoding=encoding)), head
    if len(head) < 12 and any(m.startswith(head[: len(m)]) for m in (b"RIFF", *_OPUS_MAGIC)):
        return None  # too short to tell yet
    if not (head.startswith(b"RIFF") and head[8:12] == b"WAVE"):
        raise AudioFormatError("no encoding given, and the audio is not WAV, Ogg or WebM")
    offset, fmt = 12, None
    while offset + 8 <= len(head):
        chunk, size = (
            head[offset : offset + 4],
            int.from_bytes(head[offset + 4 : offset + 8], "little"),
        )
        body = offset + 8
        if chunk == b"data":
            if fmt is None:
                raise AudioFormatError("WAV data before its fmt chunk")
            return PcmDecoder(fmt), head[body:]
        if body + size > len(head):
            return None  # the rest of this chunk is still to come
        if chunk == b"fmt ":
            fmt = _wav_format(head[body : body + size])
        offset = body + size + size % 2  # chunks are word-aligned
    return None


def _wav_format(chunk: bytes) -> AudioFormat:
    if len(chunk) < 16:
        raise AudioFormatError("WAV fmt chunk too short")
    tag, channels = int.from_bytes(chunk[0:2], "little"), int.from_bytes(chunk[2:4], "little")
    rate, bits = int.from_bytes(chunk[4:8], "little"), int.from_bytes(chunk[14:16], "little")
    if tag == 0xFFFE and len(chunk) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the sub-format's tag
        tag = int.from_bytes(chunk[24:26], "little")
    if channels != 1:
        raise AudioFormatError(f"WAV with {channels} channels: only mono is supported")
    if not 8000 <= rate <= 48000:
        raise AudioFormatError(f"WAV at {rate} Hz: 8000 to 48000 Hz is supported")
    encoding = _WAV_CODES.get((tag, bits))
    if encoding is None:
        raise AudioFormatError(
            f"WAV format {tag} at {bits} bits: 16-bit or float PCM, μ-law or A-law"
        )
    return AudioFormat(rate, encoding)
