import numpy as np
import pytest

from earshot.audio import AudioFormat, AudioFormatError, FrameTooLarge, PcmDecoder


def dominant_frequency(audio: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampling_keeps_a_sine_at_its_frequency_and_the_clock_exact(rate: int) -> None:
    t = np.arange(rate * 2) / rate
    sine = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    decoder = PcmDecoder(AudioFormat(rate, "pcm_f32le"))
    chunks = [
        decoder.decode(sine[i : i + rate // 10].tobytes()) for i in range(0, len(sine), rate // 10)
    ]
    out = np.concatenate([*chunks, decoder.flush()])
    assert len(out) == 32000
    assert dominant_frequency(out[1000:-1000]) == pytest.approx(440, abs=2)


def test_s16_is_scaled_to_unit_range() -> None:
    decoder = PcmDecoder(AudioFormat())
    out = decoder.decode(np.array([32767, -32768, 0], "<i2").tobytes())
    assert out.dtype == np.float32
    assert out.tolist() == pytest.approx([32767 / 32768, -1.0, 0.0])


def test_partial_samples_are_refused() -> None:
    with pytest.raises(AudioFormatError, match="whole number"):
        PcmDecoder(AudioFormat()).decode(b"\x00\x00\x00")
    with pytest.raises(AudioFormatError, match="whole number"):
        PcmDecoder(AudioFormat(encoding="pcm_f32le")).decode(b"\x00" * 6)


def test_more_than_a_second_per_frame_is_refused() -> None:
    decoder = PcmDecoder(AudioFormat(8000))
    decoder.decode(b"\x00" * 16000)  # exactly one second is fine
    with pytest.raises(FrameTooLarge):
        decoder.decode(b"\x00" * 16002)


def test_f32_out_of_range_is_clipped_and_nan_refused() -> None:
    decoder = PcmDecoder(AudioFormat(encoding="pcm_f32le"))
    assert decoder.decode(np.array([3.0, -3.0], "<f4").tobytes()).tolist() == [1.0, -1.0]
    with pytest.raises(AudioFormatError):
        decoder.decode(np.array([np.inf], "<f4").tobytes())
