"""G.711 (μ-law, A-law) and containerised Opus (Ogg, WebM) decoding, chunk by chunk."""

from __future__ import annotations

import io
import warnings

import av
import numpy as np
import pytest
from tests.conftest import Clip

from earshot.audio import (
    G711_TABLES,
    AudioFormat,
    AudioFormatError,
    FrameTooLarge,
    PcmDecoder,
    decoder_for,
    encode_g711,
)
from earshot.config import EngineConfig
from earshot.engine import WhisperEngine
from earshot.opus_stream import MAX_FRAME_AUDIO_S, OpusHead, ogg_crc, packet_samples
from earshot.transcript import Priority, TranscriptionRequest
from earshot.wer import error_rate

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # the reference only (gone in Python 3.13; the server never uses it)

CLIPS = ["ljspeech_LJ001-0001", "cmuarctic_a0024"]


# -- G.711 ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("encoding", "reference"), [("pcm_mulaw", audioop.ulaw2lin), ("pcm_alaw", audioop.alaw2lin)]
)
def test_g711_decodes_all_256_codes_as_the_reference(encoding: str, reference: object) -> None:
    codes = bytes(range(256))
    expected = np.frombuffer(reference(codes, 2), "<i2").astype(np.float32) / 32768.0  # type: ignore[operator]
    assert np.array_equal(G711_TABLES[encoding], expected)
    decoded = PcmDecoder(AudioFormat(16000, encoding)).decode(codes)
    assert np.array_equal(decoded, expected)


@pytest.mark.parametrize("encoding", ["pcm_mulaw", "pcm_alaw"])
def test_g711_at_8khz_is_resampled_with_an_exact_clock(encoding: str) -> None:
    t = np.arange(16000) / 8000
    sine = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes()
    encode = audioop.lin2ulaw if encoding == "pcm_mulaw" else audioop.lin2alaw
    encoded = encode(sine, 2)
    fmt = AudioFormat(8000, encoding)
    assert fmt.bytes_per_second == 8000 and fmt.max_frame_bytes == 8000
    decoder = PcmDecoder(fmt)
    out = np.concatenate(
        [decoder.decode(encoded[i : i + 160]) for i in range(0, len(encoded), 160)]
        + [decoder.flush()]
    )
    assert len(out) == 32000
    spectrum = np.abs(np.fft.rfft(out[1000:-1000] * np.hanning(len(out) - 2000)))
    peak = np.fft.rfftfreq(len(out) - 2000, 1 / 16000)[np.argmax(spectrum)]
    assert peak == pytest.approx(440, abs=2)


def test_g711_frames_of_more_than_a_second_are_refused() -> None:
    decoder = PcmDecoder(AudioFormat(8000, "pcm_mulaw"))
    decoder.decode(b"\xff" * 8000)
    with pytest.raises(FrameTooLarge):
        decoder.decode(b"\xff" * 8001)


# -- Opus -------------------------------------------------------------------------------
def encode_opus(
    audio: np.ndarray, container: str, bit_rate: int = 32000, layout: str = "mono"
) -> bytes:
    """``audio`` (16 kHz float32) as Opus in ``container`` ("ogg" or "webm"), with PyAV."""
    resampled = av.AudioResampler(format="flt", layout=layout, rate=48000)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream("libopus", rate=48000, layout=layout)
        stream.bit_rate = bit_rate
        for offset in range(0, len(audio), 1600):
            frame = av.AudioFrame.from_ndarray(
                audio[None, offset : offset + 1600].astype(np.float32), format="flt", layout="mono"
            )
            frame.sample_rate = 16000
            for piece in resampled.resample(frame):
                out.mux(stream.encode(piece))
        for piece in resampled.resample(None):
            out.mux(stream.encode(piece))
        out.mux(stream.encode(None))
    return buffer.getvalue()


def unknown_size_clusters(webm: bytes) -> bytes:
    """MediaRecorder's live WebM: Segment and Clusters of unknown size (all-ones sizes)."""
    out = bytearray(webm)
    for ident in (b"\x18\x53\x80\x67", b"\x1f\x43\xb6\x75"):
        at = out.find(ident)
        while at >= 0:
            size_at = at + 4
            length = 9 - out[size_at].bit_length()
            out[size_at : size_at + length] = bytes([0xFF >> (length - 1)]) + b"\xff" * (length - 1)
            at = out.find(ident, at + 4)
    return bytes(out)


def decode_in_chunks(data: bytes, encoding: str, chunk: int = 300) -> np.ndarray:
    decoder = decoder_for(AudioFormat(encoding=encoding))
    pieces = [decoder.decode(data[i : i + chunk]) for i in range(0, len(data), chunk)]
    return np.concatenate([*pieces, decoder.flush()])


@pytest.fixture(scope="module")
def engine() -> WhisperEngine:
    return WhisperEngine(EngineConfig())


@pytest.mark.parametrize("encoding", ["ogg_opus", "webm_opus", "webm_opus_live"])
def test_opus_of_real_speech_streamed_in_small_chunks_transcribes_accurately(
    encoding: str, engine: WhisperEngine, speech: dict[str, Clip]
) -> None:
    clips = [speech[name] for name in CLIPS]
    decoded = []
    for clip in clips:
        audio = clip.audio()
        data = encode_opus(audio, "ogg" if encoding == "ogg_opus" else "webm")
        if encoding == "webm_opus_live":
            data = unknown_size_clusters(data)
        out = decode_in_chunks(data, encoding.removesuffix("_live"))
        # The clock is the clip's: pre-skip is dropped, only the last frame's padding added.
        assert len(audio) <= len(out) <= len(audio) + 16000 * 0.03
        n = len(audio)
        assert np.corrcoef(out[:n], audio)[0, 1] > 0.9
        decoded.append(out)
    requests = [TranscriptionRequest(audio=a, priority=Priority.FINAL) for a in decoded]
    texts = [t.text for t in engine.transcribe(requests)]
    assert error_rate([c.text for c in clips], texts) <= 0.10


def test_ogg_crc_matches_the_pages_ffmpeg_writes() -> None:
    data = encode_opus(np.zeros(16000, np.float32), "ogg")
    page = data[: data.index(b"OggS", 4)]
    stored = int.from_bytes(page[22:26], "little")
    assert ogg_crc(page[:22] + b"\0\0\0\0" + page[26:]) == stored


def test_packet_durations_come_from_the_toc_byte() -> None:
    assert packet_samples(bytes([(31 << 3) | 0])) == 960  # CELT 20 ms, one frame
    assert packet_samples(bytes([(1 << 3) | 1])) == 1920  # SILK 20 ms, two frames
    assert packet_samples(bytes([(16 << 3) | 3, 48])) == 5760  # 48 × 2.5 ms
    with pytest.raises(AudioFormatError):
        packet_samples(bytes([(31 << 3) | 3, 7]))  # 7 × 20 ms > 120 ms


@pytest.mark.parametrize(
    ("encoding", "data"),
    [
        ("ogg_opus", b"RIFF" + b"\0" * 100),
        ("webm_opus", b"RIFF" + b"\0" * 100),
        ("ogg_opus", bytes(range(256)) * 8),
        ("webm_opus", b"\x00" * 64),
    ],
)
def test_garbage_is_invalid_audio(encoding: str, data: bytes) -> None:
    with pytest.raises(AudioFormatError):
        decoder_for(AudioFormat(encoding=encoding)).decode(data)


@pytest.mark.parametrize("container", ["ogg", "webm"])
def test_corrupted_opus_streams_are_invalid_audio_never_a_crash(container: str) -> None:
    noise = np.random.default_rng(0).normal(0, 0.1, 16000 * 4).astype(np.float32)
    data = encode_opus(noise, container)
    rng = np.random.default_rng(1)
    refused = 0
    for _ in range(40):
        broken = bytearray(data)
        for at in rng.integers(0, len(broken), 8):
            broken[at] ^= int(rng.integers(1, 256))
        try:
            decode_in_chunks(bytes(broken), f"{container}_opus", chunk=512)
        except AudioFormatError:
            refused += 1
    if container == "ogg":
        assert refused == 40  # every page is checksummed
    # Truncated or cut short: what came is decoded, the rest dropped at the end.
    assert len(decode_in_chunks(data[: len(data) // 2], f"{container}_opus")) > 0


def test_a_frame_may_not_complete_minutes_of_tiny_packets() -> None:
    """A frame of 1-byte 120 ms packets (a decompression bomb) is refused unheard."""
    head = b"OpusHead" + bytes([1, 1]) + (312).to_bytes(2, "little")
    head += (48000).to_bytes(4, "little") + b"\0\0\0"
    tags = b"OpusTags" + (0).to_bytes(4, "little") + (0).to_bytes(4, "little")

    def page(packets: list[bytes], sequence: int, flags: int) -> bytes:
        lacing = b"".join(b"\xff" * (len(p) // 255) + bytes([len(p) % 255]) for p in packets)
        header = b"OggS" + bytes([0, flags]) + (0).to_bytes(8, "little")
        header += (7).to_bytes(4, "little") + sequence.to_bytes(4, "little") + b"\0\0\0\0"
        raw = header + bytes([len(lacing)]) + lacing + b"".join(packets)
        crc = ogg_crc(raw).to_bytes(4, "little")
        return raw[:22] + crc + raw[26:]

    bomb = bytes([(31 << 3) | 3, 6])  # 6 × 20 ms = 120 ms in 2 bytes
    decoder = decoder_for(AudioFormat(encoding="ogg_opus"))
    decoder.decode(page([head], 0, 0x02) + page([tags], 1, 0))
    packets = int(MAX_FRAME_AUDIO_S / 0.12) + 1
    with pytest.raises(FrameTooLarge):
        decoder.decode(page([bomb] * packets, 2, 0))


def test_opus_frames_are_bounded_in_bytes() -> None:
    fmt = AudioFormat(encoding="webm_opus")
    assert fmt.bytes_per_second == 16000
    with pytest.raises(FrameTooLarge):
        decoder_for(fmt).decode(b"\x1a" * (fmt.max_frame_bytes + 1))


@pytest.mark.parametrize("encoding", ["pcm_mulaw", "pcm_alaw"])
def test_g711_encoder_picks_the_nearest_level(encoding: str) -> None:
    table = G711_TABLES[encoding]
    codes = np.frombuffer(encode_g711(table, encoding), np.uint8)
    assert np.array_equal(table[codes], table)  # every level encodes to itself
    x = np.random.default_rng(0).uniform(-1, 1, 5000).astype(np.float32)
    decoded = table[np.frombuffer(encode_g711(x, encoding), np.uint8)]
    distances = np.abs(x[:, None] - table[None, :]).min(axis=1)
    assert np.allclose(np.abs(x - decoded), distances)


@pytest.mark.parametrize("container", ["ogg", "webm"])
def test_stereo_opus_is_mixed_to_mono(container: str) -> None:
    t = np.arange(32000) / 16000
    sine = (0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = decode_in_chunks(encode_opus(sine, container, 64000, "stereo"), f"{container}_opus")
    assert len(sine) <= len(out) <= len(sine) + 480
    assert np.corrcoef(out[: len(sine)], sine)[0, 1] > 0.99


def test_opus_with_more_than_two_channels_is_refused() -> None:
    head = b"OpusHead" + bytes([1, 6]) + bytes(9)
    with pytest.raises(AudioFormatError, match="6 channels"):
        OpusHead(head)
