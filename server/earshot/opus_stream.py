"""Containerised Opus (``ogg_opus``, ``webm_opus``) → float32 mono at 16 kHz, incrementally.

Theory of operation
-------------------
Browsers' MediaRecorder and many SDKs send Opus in a container, cut into frames at
arbitrary byte boundaries. FFmpeg's demuxers want a whole (or blocking) file, so the
containers are parsed here, incrementally, and only the Opus packets go to PyAV's Opus
decoder (a ``CodecContext``, no demuxer):

- ``OggDemuxer`` (RFC 3533, RFC 7845) buffers bytes until a page is complete (at most
  65,307 bytes), checks its capture pattern, CRC, stream serial and sequence, and
  reassembles packets from the lacing values (a packet may continue on the next page).
  Packet 0 is ``OpusHead``, packet 1 ``OpusTags`` (its bytes are dropped as they come,
  never held), then audio.
- ``WebmDemuxer`` (EBML, as MediaRecorder writes it: a Segment and Clusters of unknown
  size) reads element headers as they become complete; it descends into Segment, Cluster
  and BlockGroup, buffers only ``Tracks`` and blocks (bounded), and skips every other
  element by counting its bytes away. The first Opus audio track's ``CodecPrivate`` is
  its ``OpusHead``; blocks of other tracks are ignored.

``OpusStreamDecoder`` takes the packets a frame completed, checks from each packet's
TOC byte (RFC 6716 §3.1) how much audio it holds *before* decoding it (a frame of tiny
packets must not decode to minutes of audio: at most ``MAX_FRAME_AUDIO_S``), decodes at
48 kHz (the decoder applies ``OpusHead``'s pre-skip), mixes to mono and resamples to
16 kHz. Anything malformed raises ``AudioFormatError`` (close 1003 ``invalid_audio``),
FFmpeg's errors included. Memory per stream: one incomplete page or element plus one
frame, a decoder and a resampler.
"""

from __future__ import annotations

import struct
import zlib

import av
import numpy as np

from earshot.audio import (
    AudioFormat,
    AudioFormatError,
    FrameTooLarge,
    Resampler,
)

OPUS_RATE = 48_000
MAX_FRAME_AUDIO_S = 5.0
"""Decoded audio one client frame may complete. An Ogg page (what a frame may finish)
holds at most about a second of audio from common muxers; tiny packets could otherwise
hold ~40 s of audio per KiB."""
MAX_PACKET_BYTES = 61_440
"""Largest Opus packet: 48 frames of at most 1,275 bytes, with their lengths."""
MAX_OPUS_CHANNELS = 2


class OpusHead:
    """The identification header (RFC 7845 §5.1), checked."""

    MAGIC = b"OpusHead"

    def __init__(self, data: bytes) -> None:
        if len(data) < 19 or not data.startswith(self.MAGIC):
            raise AudioFormatError("stream does not start with an Opus identification header")
        version, channels = data[8], data[9]
        if version >> 4 != 0:
            raise AudioFormatError(f"unsupported Opus header version {version}")
        if not 1 <= channels <= MAX_OPUS_CHANNELS:
            raise AudioFormatError(f"Opus with {channels} channels: only mono or stereo")
        self.data = bytes(data)
        self.channels = channels


def packet_samples(packet: bytes) -> int:
    """Samples at 48 kHz in one Opus packet, from its TOC byte (RFC 6716 §3.1)."""
    toc = packet[0]
    config = toc >> 3
    if config < 12:  # SILK: 10, 20, 40, 60 ms
        frame = (480, 960, 1920, 2880)[config & 3]
    elif config < 16:  # hybrid: 10, 20 ms
        frame = (480, 960)[config & 1]
    else:  # CELT: 2.5, 5, 10, 20 ms
        frame = (120, 240, 480, 960)[config & 3]
    code = toc & 3
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    else:
        if len(packet) < 2:
            raise AudioFormatError("truncated Opus packet")
        count = packet[1] & 0x3F
    samples = frame * count
    if count == 0 or samples > 5760:
        raise AudioFormatError("invalid Opus packet (more than 120 ms or no frames)")
    return samples


class OpusStreamDecoder:
    """One stream's Ogg/WebM Opus: frames in, 16 kHz float32 mono out."""

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self._demuxer: OggDemuxer | WebmDemuxer = (
            OggDemuxer() if fmt.encoding == "ogg_opus" else WebmDemuxer()
        )
        self._codec: av.AudioCodecContext | None = None
        self._channels = 1
        self._resampler = Resampler(OPUS_RATE)

    def decode(self, frame: bytes) -> np.ndarray:
        if len(frame) > self.format.max_frame_bytes:
            raise FrameTooLarge(
                f"frame of {len(frame)} bytes is more than {self.format.max_frame_bytes}"
                f" bytes of {self.format.encoding}"
            )
        packets = self._demuxer.feed(frame)
        if self._codec is None and self._demuxer.head is not None:
            self._open(self._demuxer.head)
        if not packets:
            return np.zeros(0, np.float32)
        if self._codec is None:
            raise AudioFormatError("Opus audio before its identification header")
        if sum(packet_samples(p) for p in packets) > MAX_FRAME_AUDIO_S * OPUS_RATE:
            raise FrameTooLarge(f"frame completes more than {MAX_FRAME_AUDIO_S:g} s of audio")
        pieces = [self._decode_packet(p) for p in packets]
        return self._resampler.resample(np.concatenate(pieces))

    def flush(self) -> np.ndarray:
        """The resampler's tail at end of stream; an incomplete last page is dropped."""
        return self._resampler.flush()

    def _open(self, head: OpusHead) -> None:
        codec = av.CodecContext.create("opus", "r")
        assert isinstance(codec, av.AudioCodecContext)
        codec.extradata = head.data  # channels, pre-skip, gain
        self._codec = codec
        self._channels = head.channels

    def _decode_packet(self, packet: bytes) -> np.ndarray:
        assert self._codec is not None
        try:
            frames = self._codec.decode(av.Packet(packet))
        except av.FFmpegError:
            raise AudioFormatError("invalid Opus packet") from None
        out = []
        for decoded in frames:
            array = decoded.to_ndarray().astype(np.float32, copy=False)
            if not decoded.format.is_planar:
                array = array.reshape(-1, len(decoded.layout.channels)).T
            out.append(array.mean(axis=0) if array.shape[0] > 1 else array[0])
        if not out:
            return np.zeros(0, np.float32)
        pcm = np.concatenate(out).astype(np.float32, copy=False)
        if not np.all(np.isfinite(pcm)):
            raise AudioFormatError("Opus packet decoded to NaN or infinity")
        return np.clip(pcm, -1.0, 1.0)


# -- Ogg --------------------------------------------------------------------------------
_OGG_HEADER = struct.Struct("<4sBBqIII B")
_OGG_MAX_PAGE = 27 + 255 + 255 * 255
_BIT_REVERSED = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def ogg_crc(page: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, not reflected, initial value and final XOR
    0), computed with zlib's reflected CRC-32 on bit-reversed bytes, so it runs in C."""
    reflected = zlib.crc32(page.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)


class OggDemuxer:
    def __init__(self) -> None:
        self._buffer = bytearray()
        self._serial: int | None = None
        self._sequence = -1
        self._packet = bytearray()
        """The packet being reassembled (continued on the next page when unfinished)."""
        self._packet_open = False
        self._packets_done = 0
        self._ended = False
        self.head: OpusHead | None = None

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        packets: list[bytes] = []
        while len(self._buffer) >= 27:
            if self._buffer[:4] != b"OggS":
                raise AudioFormatError("not an Ogg stream (no page capture pattern)")
            _, version, flags, _, serial, sequence, crc, segments = _OGG_HEADER.unpack_from(
                self._buffer
            )
            if version != 0:
                raise AudioFormatError(f"unsupported Ogg version {version}")
            if len(self._buffer) < 27 + segments:
                break
            lacing = self._buffer[27 : 27 + segments]
            size = 27 + segments + sum(lacing)
            if len(self._buffer) < size:
                break
            page = bytes(self._buffer[:size])
            del self._buffer[:size]
            checked = page[:22] + b"\0\0\0\0" + page[26:]
            if ogg_crc(checked) != crc:
                raise AudioFormatError("Ogg page with a bad checksum")
            self._page(flags, serial, sequence, lacing, page[27 + segments :], packets)
        assert len(self._buffer) < _OGG_MAX_PAGE + 65_536
        return packets

    def _page(
        self,
        flags: int,
        serial: int,
        sequence: int,
        lacing: bytes | bytearray,
        body: bytes,
        packets: list[bytes],
    ) -> None:
        if self._ended:
            raise AudioFormatError("data after the end of the Ogg stream")
        if self._serial is None:
            if not flags & 0x02:
                raise AudioFormatError("Ogg stream does not start with a first page")
            self._serial = serial
        elif serial != self._serial or flags & 0x02:
            raise AudioFormatError("more than one Ogg logical stream")
        if sequence != self._sequence + 1:
            raise AudioFormatError("Ogg pages missing or out of order")
        self._sequence = sequence
        if bool(flags & 0x01) != self._packet_open:
            raise AudioFormatError("Ogg packet continuation does not match")
        offset = 0
        for value in lacing:
            self._add(body[offset : offset + value])
            offset += value
            self._packet_open = value == 255
            if not self._packet_open:
                self._finish(packets)
        if flags & 0x04:
            self._ended = True

    def _add(self, segment: bytes) -> None:
        if self._packets_done == 1:  # OpusTags: only its magic is kept
            room = max(0, 8 - len(self._packet))
            self._packet += segment[:room]
            return
        if len(self._packet) + len(segment) > MAX_PACKET_BYTES:
            raise AudioFormatError("Opus packet too large")
        self._packet += segment

    def _finish(self, packets: list[bytes]) -> None:
        packet, self._packet = bytes(self._packet), bytearray()
        index = self._packets_done
        self._packets_done += 1
        if index == 0:
            self.head = OpusHead(packet)
        elif index == 1:
            if not packet.startswith(b"OpusTags"):
                raise AudioFormatError("Opus comment header missing")
        elif packet:  # an empty packet carries no audio
            packets.append(packet)


# -- WebM (Matroska) -------------------------------------------------------------------
_EBML = 0x1A45DFA3
_SEGMENT = 0x18538067
_CLUSTER = 0x1F43B675
_TRACKS = 0x1654AE6B
_TRACK_ENTRY = 0xAE
_TRACK_NUMBER = 0xD7
_TRACK_TYPE = 0x83
_CODEC_ID = 0x86
_CODEC_PRIVATE = 0x63A2
_BLOCK_GROUP = 0xA0
_BLOCK = 0xA1
_SIMPLE_BLOCK = 0xA3
_SEGMENT_CHILDREN = frozenset(
    {
        0x114D9B74,  # SeekHead
        0x1549A966,  # Info
        _TRACKS,
        _CLUSTER,
        0x1C53BB6B,  # Cues
        0x1254C367,  # Tags
        0x1043A770,  # Chapters
        0x1941A469,  # Attachments
    }
)
_DESCEND = frozenset({_SEGMENT, _CLUSTER, _BLOCK_GROUP})
_BUFFER = frozenset({_TRACKS, _SIMPLE_BLOCK, _BLOCK})
_MAX_BUFFERED = 128 * 1024
"""Largest element held whole: Tracks, or one block (an Opus packet and a few bytes)."""
_UNKNOWN = -1


def _vint(data: bytes | bytearray, offset: int, *, marker: bool) -> tuple[int, int] | None:
    """An EBML variable-length integer at ``offset``: (value, length), None if incomplete.
    ``marker``: keep the length marker (element IDs); sizes of all ones are unknown."""
    if offset >= len(data):
        return None
    first = data[offset]
    if first == 0:
        raise AudioFormatError("invalid EBML number")
    length = 9 - first.bit_length()
    if marker and length > 4:
        raise AudioFormatError("invalid EBML element ID")
    if offset + length > len(data):
        return None
    value = int.from_bytes(data[offset : offset + length], "big")
    if marker:
        return value, length
    value &= (1 << (7 * length)) - 1
    if value == (1 << (7 * length)) - 1:
        return _UNKNOWN, length
    return value, length


def _children(data: bytes) -> list[tuple[int, bytes]]:
    """The child elements of a whole (sized) master element's payload."""
    children, offset = [], 0
    while offset < len(data):
        ident = _vint(data, offset, marker=True)
        size = None if ident is None else _vint(data, offset + ident[1], marker=False)
        if ident is None or size is None or size[0] == _UNKNOWN:
            raise AudioFormatError("malformed WebM element")
        start = offset + ident[1] + size[1]
        end = start + size[0]
        if end > len(data):
            raise AudioFormatError("WebM element overruns its parent")
        children.append((ident[0], data[start:end]))
        offset = end
    return children


def _uint(data: bytes) -> int:
    return int.from_bytes(data, "big") if len(data) <= 8 else -1


class WebmDemuxer:
    def __init__(self) -> None:
        self._buffer = bytearray()
        self._position = 0
        """Stream offset of ``_buffer[0]``."""
        self._open: list[tuple[int, int]] = []
        """Master elements we are inside: (ID, end offset or _UNKNOWN)."""
        self._skip = 0
        """Bytes of an ignored element still to drop as they arrive."""
        self._pending: tuple[int, int] | None = None
        """An element being buffered whole: (ID, size)."""
        self._started = False
        self._track: int | None = None
        self.head: OpusHead | None = None

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        packets: list[bytes] = []
        while True:
            if self._skip:
                dropped = min(self._skip, len(self._buffer))
                del self._buffer[:dropped]
                self._position += dropped
                self._skip -= dropped
                if self._skip:
                    break
            if self._pending is not None:
                ident, size = self._pending
                if len(self._buffer) < size:
                    break
                payload = bytes(self._buffer[:size])
                del self._buffer[:size]
                self._position += size
                self._pending = None
                self._element(ident, payload, packets)
                continue
            if not self._header():
                break
        assert len(self._buffer) <= _MAX_BUFFERED + 65_536
        return packets

    def _header(self) -> bool:
        """Read the next element header; False if it is not complete yet."""
        ident = _vint(self._buffer, 0, marker=True)
        if ident is None:
            return False
        size = _vint(self._buffer, ident[1], marker=False)
        if size is None:
            return False
        element, length = ident[0], ident[1] + size[1]
        if not self._started:
            if element != _EBML:
                raise AudioFormatError("not a WebM stream (no EBML header)")
            self._started = True
        self._close_parents(element)
        del self._buffer[:length]
        self._position += length
        end = _UNKNOWN if size[0] == _UNKNOWN else self._position + size[0]
        parent_end = self._open[-1][1] if self._open else _UNKNOWN
        if parent_end != _UNKNOWN and end != _UNKNOWN and end > parent_end:
            raise AudioFormatError("WebM element overruns its parent")
        if element in _DESCEND:
            self._open.append((element, end))
        elif end == _UNKNOWN:
            raise AudioFormatError("WebM element of unknown size")
        elif element in _BUFFER:
            if size[0] > _MAX_BUFFERED:
                raise AudioFormatError("WebM element too large")
            self._pending = (element, size[0])
        else:
            self._skip = size[0]
        return True

    def _close_parents(self, element: int) -> None:
        while self._open:
            parent, end = self._open[-1]
            if end != _UNKNOWN and self._position >= end:
                self._open.pop()
            elif end == _UNKNOWN and parent == _CLUSTER and element in _SEGMENT_CHILDREN:
                self._open.pop()  # an unknown-size cluster ends where its sibling begins
            else:
                break
        depth = len(self._open)
        if depth == 0 and element not in (_EBML, _SEGMENT):
            raise AudioFormatError("not a WebM stream (unexpected top-level element)")

    def _element(self, ident: int, payload: bytes, packets: list[bytes]) -> None:
        if ident == _TRACKS:
            self._tracks(payload)
            return
        if self._track is None:
            raise AudioFormatError("WebM block before the track list")
        number = _vint(payload, 0, marker=False)
        if number is None or len(payload) < number[1] + 3:
            raise AudioFormatError("truncated WebM block")
        if number[0] != self._track:
            return  # another track (video, say)
        flags = payload[number[1] + 2]
        if flags & 0x06:
            raise AudioFormatError("laced WebM blocks are not supported")
        packet = payload[number[1] + 3 :]
        if len(packet) > MAX_PACKET_BYTES:
            raise AudioFormatError("Opus packet too large")
        if packet:
            packets.append(packet)

    def _tracks(self, payload: bytes) -> None:
        if self._track is not None:
            return  # a repeated track list (a live stream may resend it)
        for ident, entry in _children(payload):
            if ident != _TRACK_ENTRY:
                continue
            fields = dict(_children(entry))
            if _uint(fields.get(_TRACK_TYPE, b"")) == 2 and fields.get(_CODEC_ID) == b"A_OPUS":
                if _CODEC_PRIVATE not in fields:
                    raise AudioFormatError("WebM Opus track without its OpusHead")
                self.head = OpusHead(fields[_CODEC_PRIVATE])
                self._track = _uint(fields.get(_TRACK_NUMBER, b""))
                return
        raise AudioFormatError("WebM stream without an Opus audio track")
