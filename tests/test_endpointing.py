from earshot.endpointing import (
    SegmenterConfig,
    State,
    UtteranceEnd,
    UtteranceSegmenter,
    UtteranceStart,
)
from earshot.vad import FRAME_SAMPLES as F

CONFIG = SegmenterConfig(
    endpointing_samples=10 * F,
    max_utterance_samples=100 * F,
    min_speech_samples=5 * F,
    onset_gap_samples=4 * F,
    preroll_samples=2 * F,
    postroll_samples=F,
)


def run(probabilities: list[float], config: SegmenterConfig = CONFIG) -> list[object]:
    return list(UtteranceSegmenter(config).feed(probabilities))


def test_silence_never_opens_an_utterance() -> None:
    assert run([0.0] * 500) == []


def test_a_click_shorter_than_min_speech_is_ignored() -> None:
    segmenter = UtteranceSegmenter(CONFIG)
    assert segmenter.feed([0.0] * 10 + [0.9] * 3 + [0.0] * 20) == []
    assert segmenter.state is State.SILENCE


def test_speech_opens_with_preroll_and_ends_after_endpointing_with_postroll() -> None:
    events = run([0.0] * 10 + [0.9] * 20 + [0.0] * 10)
    assert events == [UtteranceStart(8 * F), UtteranceEnd(31 * F)]


def test_endpointing_needs_the_full_silence() -> None:
    segmenter = UtteranceSegmenter(CONFIG)
    events = segmenter.feed([0.0] * 10 + [0.9] * 20 + [0.0] * 9)
    assert events == [UtteranceStart(8 * F)]
    assert segmenter.state is State.TRAILING
    assert segmenter.feed([0.0]) == [UtteranceEnd(31 * F)]


def test_a_short_pause_does_not_split_an_utterance() -> None:
    events = run([0.9] * 20 + [0.0] * 5 + [0.9] * 20 + [0.0] * 10)
    assert [type(e) for e in events] == [UtteranceStart, UtteranceEnd]


def test_hysteresis_keeps_an_utterance_open_on_unsure_frames() -> None:
    segmenter = UtteranceSegmenter(CONFIG)
    segmenter.feed([0.9] * 10 + [0.4] * 30)  # 0.4 is between threshold-0.15 and threshold
    assert segmenter.state is State.SPEECH


def test_max_utterance_cuts_and_continues_with_a_new_utterance() -> None:
    events = run([0.9] * 250 + [0.0] * 10)
    starts = [e for e in events if isinstance(e, UtteranceStart)]
    ends = [e for e in events if isinstance(e, UtteranceEnd)]
    assert len(starts) == len(ends) == 3
    assert [e.cut for e in ends] == [True, True, False]
    # Each cut utterance starts exactly where the previous one was cut: no audio lost.
    assert starts[1].start == ends[0].end and starts[2].start == ends[1].end


def test_end_now_closes_the_open_utterance_once() -> None:
    segmenter = UtteranceSegmenter(CONFIG)
    segmenter.feed([0.9] * 20)
    assert segmenter.end_now(segmenter.position) == [UtteranceEnd(20 * F)]
    assert segmenter.end_now(segmenter.position) == []


def test_end_now_drops_a_tentative_onset() -> None:
    segmenter = UtteranceSegmenter(CONFIG)
    segmenter.feed([0.9] * 2)
    assert segmenter.state is State.ONSET
    assert segmenter.end_now(segmenter.position) == []


def test_every_state_and_frame_kind_has_a_transition() -> None:
    from earshot.endpointing import _TRANSITIONS, Frame

    assert set(_TRANSITIONS) == {(s, f) for s in State for f in Frame}
