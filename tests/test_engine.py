"""The real engine on real speech: windows, the runaway guard, hallucination filters,
language detection and word timestamps (bundled base model, CPU int8)."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace

import numpy as np
import pytest
from tests.conftest import Clip

from earshot.config import EngineConfig, SchedulerConfig
from earshot.engine import ModelLoadError, WhisperEngine
from earshot.prompt_copy import words
from earshot.scheduler import BatchScheduler
from earshot.transcript import Priority, Transcript, TranscriptionRequest
from earshot.wer import error_rate
from earshot.windows import repeats_its_tail

ENGLISH = [
    "ljspeech_LJ001-0001",
    "ljspeech_LJ001-0004",
    "ljspeech_LJ001-0010",
    "ljspeech_LJ001-0011",
    "cmuarctic_a0024",
    "librispeech_1995-1837-0001",
]


@pytest.fixture(scope="module")
def engine() -> WhisperEngine:
    return WhisperEngine(EngineConfig())


def final(audio: np.ndarray, **kw: object) -> TranscriptionRequest:
    return TranscriptionRequest(audio=audio, priority=Priority.FINAL, **kw)  # type: ignore[arg-type]


def test_bucketed_windows_transcribe_english_accurately(
    engine: WhisperEngine, speech: dict[str, Clip]
) -> None:
    clips = [speech[name] for name in ENGLISH]
    transcripts = engine.transcribe([final(c.audio()) for c in clips])
    assert all(t.window_frames < 3000 for t in transcripts)  # the cheap windows were used
    # Base model, greedy: offline WER on these read-speech clips is ~0.03; 0.10 leaves
    # room for numerals and spelling variants without hiding a broken pipeline.
    assert error_rate([c.text for c in clips], [t.text for t in transcripts]) <= 0.10
    assert {t.language for t in transcripts} == {"en"}


def test_runaway_guard_falls_back_to_the_full_window(
    engine: WhisperEngine, speech: dict[str, Clip]
) -> None:
    """Natural-length windows (no silent tail) make the decoder run away on some clips;
    the guard must catch those and re-run them on 30 s windows."""
    names = [
        "ljspeech_LJ001-0004",
        "ljspeech_LJ001-0010",
        "ljspeech_LJ001-0011",
        "ljspeech_LJ001-0005",
    ]
    default = engine.config
    fell_back = []
    try:
        for name in names:
            audio = speech[name].audio()
            frames = -(-len(audio) // 160)
            engine.config = replace(default, window_buckets=(frames,), min_tail_frames=0)
            (transcript,) = engine.transcribe([final(audio, language="en")])
            if engine.last_stats.fallbacks:
                fell_back.append(name)
                assert transcript.window_frames == 3000
                assert error_rate([speech[name].text], [transcript.text]) <= 0.1
    finally:
        engine.config = default
    assert fell_back, "no runaway on natural-length windows: the guard was not exercised"


def test_silence_and_noise_yield_no_text(engine: WhisperEngine) -> None:
    rng = np.random.default_rng(0)
    cases = [
        np.zeros(3 * 16000, np.float32),
        (0.01 * rng.standard_normal(3 * 16000)).astype(np.float32),
        (0.1 * rng.standard_normal(2 * 16000)).astype(np.float32),
    ]
    for transcript in engine.transcribe([final(a) for a in cases]):
        assert transcript.text == ""


def test_language_is_detected_per_request(engine: WhisperEngine, speech: dict[str, Clip]) -> None:
    clips = [speech["fleurs_de-001"], speech["fleurs_es-001"], speech["ljspeech_LJ001-0001"]]
    transcripts = engine.transcribe([final(c.audio()) for c in clips])
    assert [t.language for t in transcripts] == ["de", "es", "en"]


def test_forced_language_is_respected(engine: WhisperEngine, speech: dict[str, Clip]) -> None:
    clip = speech["fleurs_de-001"]
    (transcript,) = engine.transcribe([final(clip.audio(), language="de")])
    assert transcript.language == "de"
    assert error_rate([clip.text], [transcript.text], "de") <= 0.35


def test_word_timestamps_are_ordered_and_inside_the_audio(
    engine: WhisperEngine, speech: dict[str, Clip]
) -> None:
    clip = speech["ljspeech_LJ001-0004"]
    (transcript,) = engine.transcribe([final(clip.audio(), word_timestamps=True)])
    words = transcript.words
    assert len(words) >= 10
    assert all(a.start <= a.end <= b.start + 1e-6 for a, b in itertools.pairwise(words))
    assert words[0].start >= 0.0 and words[-1].end <= clip.duration_s + 0.1
    assert "".join(w.word for w in words).strip() == transcript.text


NUMERALS = [
    "cmusphinx_goforward",
    "cmusphinx_cards-001",
    "cmusphinx_cards-003",
]
"""Spoken numbers ("go forward ten meters") that the base model writes as digits."""


def test_a_prompt_changes_the_decode(engine: WhisperEngine, speech: dict[str, Clip]) -> None:
    """Whisper writes spoken numbers as digits unless the prompt writes them as words:
    if the prompt were dropped on the way to the decoder, digits would come back."""
    prompt = (
        "Numbers are written as words: one, two, three, four, five, six, seven, eight, nine, ten."
    )
    clips = [speech[name] for name in NUMERALS]
    plain = engine.transcribe([final(c.audio(), language="en") for c in clips])
    prompted = engine.transcribe([final(c.audio(), language="en", prompt=prompt) for c in clips])
    assert any(ch.isdigit() for t in plain for ch in t.text), [t.text for t in plain]
    assert not any(ch.isdigit() for t in prompted for ch in t.text), [t.text for t in prompted]
    assert error_rate([c.text for c in clips], [t.text for t in prompted]) <= 0.25


def test_missing_model_is_a_clear_error(tmp_path: object) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        WhisperEngine(EngineConfig(model="./no/such/model"))


CARD_PROMPTS = [
    " ".join(["playing cards: ace, king, queen, jack, ten of clubs."] * 12),
    " ".join(["playing cards: ace, king, queen, jack, ten of clubs"] * 12),
    "The cards on the table were: ace, king, queen, jack, ten of clubs, ace, king, queen,",
]
"""Long prompts about cards: on some clips and CPUs the model speaks them back."""


def test_a_decode_that_speaks_its_prompt_is_redone_without_it(
    engine: WhisperEngine, speech: dict[str, Clip]
) -> None:
    """The prompt counts against CTranslate2's max_length and can be copied into the
    output of a short utterance ("ace, king, jack, ten of clubs" for "ten of clubs"):
    no word of a prompt may come back unless the audio says it."""
    clips = [speech[f"cmusphinx_cards-00{n}"] for n in (1, 2, 3, 4)]
    copies = 0
    for prompt in CARD_PROMPTS:
        transcripts = engine.transcribe(
            [final(c.audio(), language="en", prompt=prompt) for c in clips]
        )
        copies += engine.last_stats.prompt_copies
        for clip, transcript in zip(clips, transcripts):
            assert transcript.error is None
            said = set(words(clip.text)) | {"10", "4", "7", "5"}  # numerals as digits
            unsaid = [w for w in words(transcript.text) if w in words(prompt) and w not in said]
            assert not unsaid, f"{clip.file}: {transcript.text!r} speaks the prompt"
        assert error_rate([c.text for c in clips], [t.text for t in transcripts]) <= 0.5
    assert copies, "no decode copied its prompt: the guard was not exercised"


def test_each_request_decodes_at_its_own_beam_width(
    engine: WhisperEngine, speech: dict[str, Clip]
) -> None:
    """The scheduler widens the beam of finals when the engine has room: one call may mix
    widths, and each transcript says which it got."""
    clip = speech["fleurs_de-002"]
    greedy, wide = engine.transcribe(
        [final(clip.audio(), language="de"), final(clip.audio(), language="de", beam_size=5)]
    )
    assert (greedy.beam_size, wide.beam_size) == (1, 5)
    assert error_rate([clip.text], [wide.text], "de") <= 0.35


@pytest.mark.asyncio
async def test_finals_decode_wide_when_the_engine_is_idle_and_greedy_when_they_queue(
    engine: WhisperEngine, speech: dict[str, Clip]
) -> None:
    """The scheduler's beam policy on the real model: a final alone gets beam 5; twelve
    arriving at once on one worker queue up, and those taken while others wait are greedy."""
    scheduler = BatchScheduler(engine, SchedulerConfig().policy("cpu", workers=1), workers=1)
    scheduler.start(asyncio.get_running_loop())
    loop = asyncio.get_running_loop()

    async def transcribe(requests: list[TranscriptionRequest]) -> list[Transcript]:
        futures = [loop.create_future() for _ in requests]
        for request, future in zip(requests, futures):
            scheduler.submit(request, lambda r, t, f=future: f.set_result(t))
        return list(await asyncio.wait_for(asyncio.gather(*futures), 120))

    try:
        clips = [speech[name] for name in ENGLISH]
        (alone,) = await transcribe([final(clips[0].audio(), language="en")])
        crowd = await transcribe(
            [final(c.audio(), language="en", owner=str(i)) for i, c in enumerate(clips + clips)]
        )
    finally:
        scheduler.stop()
    assert alone.beam_size == 5
    beams = [t.beam_size for t in crowd]
    assert beams.count(1) >= 4, beams  # a batch of four taken while more finals waited
    assert error_rate([c.text for c in clips + clips], [t.text for t in crowd]) <= 0.10


def test_a_wide_beam_that_repeats_its_last_sentence_is_decoded_greedily(
    engine: WhisperEngine, speech: dict[str, Clip]
) -> None:
    """Two clips 0.4 s apart and a second of silence, as a stream delivers them (16-bit):
    beam 5 in the 10 s window said the second sentence twice here, likelihood and
    compression notwithstanding. No final may repeat its tail."""
    first, second = speech["cmusphinx_goforward"], speech["cmuarctic_a0024"]
    audio = np.concatenate(
        [first.audio(), np.zeros(6400, np.float32), second.audio(), np.zeros(16000, np.float32)]
    )
    pcm16 = np.round(np.clip(audio, -1, 1) * 32767) / 32768  # the stream's own samples
    (transcript,) = engine.transcribe([final(pcm16.astype(np.float32), language="en", beam_size=5)])
    assert not repeats_its_tail(transcript.text), transcript.text
    assert error_rate([f"{first.text} {second.text}"], [transcript.text]) <= 0.2
