"""ContainerDecoder: a stream that names no encoding (Deepgram's default) is told by its
first bytes: WAV of any supported sample encoding, or Ogg/WebM Opus; frames cut anywhere."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest
from tests.conftest import Clip
from tests.test_audio_codecs import encode_opus

from earshot.audio import (
    CONTAINER,
    MAX_HEADER_BYTES,
    AudioFormat,
    AudioFormatError,
    PcmDecoder,
    decoder_for,
    encode_g711,
)


def wav_bytes(pcm: bytes, rate: int, *, width: int = 2, channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(pcm)
    return buffer.getvalue()


def mulaw_wav(codes: bytes, rate: int = 8000) -> bytes:
    """A WAVE_FORMAT_MULAW (7) file: the stdlib writes PCM only, so patch the tag."""
    data = bytearray(wav_bytes(codes, rate, width=1))
    data[20:22] = (7).to_bytes(2, "little")
    data[34:36] = (8).to_bytes(2, "little")
    return bytes(data)


def decode_in_pieces(data: bytes, piece: int) -> np.ndarray:
    decoder = decoder_for(AudioFormat(encoding=CONTAINER))
    parts = [decoder.decode(data[i : i + piece]) for i in range(0, len(data), piece)]
    return np.concatenate([*parts, decoder.flush()])


@pytest.mark.parametrize("piece", [1, 7, 1001, 4096, 60_000])
def test_a_wav_file_cut_anywhere_decodes_like_its_samples(
    piece: int, speech: dict[str, Clip]
) -> None:
    audio = speech["cmuarctic_a0024"].audio()
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    direct = PcmDecoder(AudioFormat(16000, "pcm_s16le"))
    parts = [direct.decode(pcm[i : i + 32000]) for i in range(0, len(pcm), 32000)]
    expected = np.concatenate([*parts, direct.flush()])
    got = decode_in_pieces(wav_bytes(pcm, 16000), piece)
    assert len(got) == len(expected) and np.allclose(got, expected, atol=1e-6)


def test_other_rates_and_mulaw_wav_are_resampled_to_16khz(speech: dict[str, Clip]) -> None:
    audio = speech["cmuarctic_a0024"].audio(8000)
    pcm8k = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    for data in (wav_bytes(pcm8k, 8000), mulaw_wav(encode_g711(audio, "pcm_mulaw"))):
        got = decode_in_pieces(data, 999)
        assert abs(len(got) - 2 * len(audio)) <= 16  # 16 kHz out


@pytest.mark.parametrize("container", ["ogg", "webm"])
def test_opus_is_recognised_by_its_magic(container: str, speech: dict[str, Clip]) -> None:
    clip = speech["cmuarctic_a0024"]
    got = decode_in_pieces(encode_opus(clip.audio(), container), 500)
    assert abs(len(got) / 16000 - clip.duration_s) < 0.1


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x00\x01" * 20, "not WAV, Ogg or WebM"),  # raw PCM with no encoding named
        (b"ID3\x03\x00", "not WAV, Ogg or WebM"),  # an mp3: not a streaming format here
        (wav_bytes(b"\x00\x00" * 4, 16000, channels=2), "only mono"),
        (wav_bytes(b"\x00\x00" * 4, 96000), "8000 to 48000 Hz"),
        (wav_bytes(b"\x00" * 8, 16000, width=1), "WAV format 1 at 8 bits"),
    ],
)
def test_what_it_cannot_decode_is_refused_with_what_to_do(data: bytes, match: str) -> None:
    decoder = decoder_for(AudioFormat(encoding=CONTAINER))
    with pytest.raises(AudioFormatError, match=match):
        decoder.decode(data)


def test_a_header_that_never_ends_is_refused() -> None:
    decoder = decoder_for(AudioFormat(encoding=CONTAINER))
    riff = b"RIFF\xff\xff\xff\xffWAVE" + b"LIST" + (10**6).to_bytes(4, "little")
    decoder.decode(riff)
    with pytest.raises(AudioFormatError, match="no audio after"):
        for _ in range(MAX_HEADER_BYTES // 60_000 + 2):
            decoder.decode(b"\0" * 60_000)


def test_a_stream_that_ends_inside_its_header_is_an_error() -> None:
    decoder = decoder_for(AudioFormat(encoding=CONTAINER))
    assert len(decoder.decode(b"RIFF")) == 0
    with pytest.raises(AudioFormatError, match="ended before"):
        decoder.flush()
