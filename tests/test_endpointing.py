from dataclasses import replace

import pytest

from earshot.endpointing import (
    Boundary,
    EndpointingConfig,
    State,
    UtteranceEnd,
    UtteranceSegmenter,
    UtteranceStart,
)
from earshot.vad import FRAME_SAMPLES as F

FRAME_S = F / 16000

CONFIG = EndpointingConfig(
    endpointing_ms=round(10 * FRAME_S * 1000),  # 320 ms: 10 frames
    max_utterance_s=100 * FRAME_S,
    min_speech_s=5 * FRAME_S,
    onset_gap_s=4 * FRAME_S,
    preroll_s=2 * FRAME_S,
    postroll_s=FRAME_S,
)

VOICE, UNSURE, SILENT = 0.9, 0.4, 0.0
"""Frame probabilities: 0.4 lies between threshold - hysteresis and threshold."""


def frames(*runs: tuple[float, int]) -> list[float]:
    """``frames((VOICE, 20), (SILENT, 3))``: runs of one probability, in frames."""
    return [p for p, n in runs for _ in range(n)]


def start(frame: int) -> UtteranceStart:
    return UtteranceStart(frame * F)


def end(frame: int, *, cut: bool = False) -> UtteranceEnd:
    return UtteranceEnd(frame * F, cut=cut)


def run(probabilities: list[float], config: EndpointingConfig = CONFIG) -> list[object]:
    return list(UtteranceSegmenter(config).feed(probabilities))


def test_the_config_converts_to_whole_frames() -> None:
    assert CONFIG.endpointing_samples == 10 * F
    assert CONFIG.max_utterance_samples == 100 * F
    assert (CONFIG.min_speech_samples, CONFIG.onset_gap_samples) == (5 * F, 4 * F)
    assert (CONFIG.preroll_samples, CONFIG.postroll_samples) == (2 * F, F)


def test_speculation_must_outlast_the_postroll() -> None:
    with pytest.raises(ValueError, match="speculate_after_s"):
        EndpointingConfig(postroll_s=0.3, speculate_after_s=0.25)
    EndpointingConfig(postroll_s=0.3, speculate_after_s=None)


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


# likely_end(min_silence): where the open utterance ends if the current pause is its
# endpoint (last voiced frame + postroll, at most the current position), once the pause
# is min_silence long; None while speaking, between utterances or in a shorter pause.
LIKELY_END = [
    # (case, frames fed, min_silence in frames, postroll in frames, likely end in frames)
    ("between utterances", frames((SILENT, 20)), 2, 1, None),
    ("still speaking", frames((VOICE, 20)), 2, 1, None),
    ("unsure frames are speech in SPEECH", frames((VOICE, 20), (UNSURE, 3)), 2, 1, None),
    ("pause shorter than min_silence", frames((VOICE, 20), (SILENT, 2)), 3, 1, None),
    ("pause of exactly min_silence", frames((VOICE, 20), (SILENT, 3)), 3, 1, 21),
    ("longer pause: end stays put", frames((VOICE, 20), (SILENT, 8)), 3, 1, 21),
    ("unsure frames extend a pause", frames((VOICE, 20), (SILENT, 1), (UNSURE, 3)), 3, 1, 21),
    ("pause shorter than postroll", frames((VOICE, 20), (SILENT, 1)), 0, 3, 21),
    ("pause longer than postroll", frames((VOICE, 20), (SILENT, 5)), 0, 3, 23),
    ("voice resumed", frames((VOICE, 20), (SILENT, 5), (VOICE, 1)), 0, 1, None),
    ("endpoint passed", frames((VOICE, 20), (SILENT, 10)), 3, 1, None),
]


@pytest.mark.parametrize(
    ("fed", "min_silence", "postroll", "expected"),
    [row[1:] for row in LIKELY_END],
    ids=[row[0] for row in LIKELY_END],
)
def test_likely_end(
    fed: list[float], min_silence: int, postroll: int, expected: int | None
) -> None:
    segmenter = UtteranceSegmenter(replace(CONFIG, postroll_s=postroll * FRAME_S))
    segmenter.feed(fed)
    end = segmenter.likely_end(min_silence * F)
    assert end == (None if expected is None else expected * F)


# max_utterance (100 frames here) cuts an utterance. Where speech goes on, the next one
# starts at the cut once enough voice follows; where the cut falls in a pause (TRAILING),
# the rest is silence: nothing starts until new speech, and never before the cut.
CUTS = [
    # (case, frames fed, boundaries (at frame n), state after)
    (
        "speech goes on at the cut",
        frames((VOICE, 110)),
        [start(0), end(100, cut=True), start(100)],
        State.SPEECH,
    ),
    (
        "unsure frame at the cut counts as speech",
        frames((VOICE, 99), (UNSURE, 1)),
        [start(0), end(100, cut=True)],
        State.ONSET,
    ),
    (
        "cut while trailing: the pause is silence",
        frames((VOICE, 95), (SILENT, 5)),
        [start(0), end(100, cut=True)],
        State.SILENCE,
    ),
    (
        "cut while trailing on unsure frames",
        frames((VOICE, 95), (SILENT, 1), (UNSURE, 4)),
        [start(0), end(100, cut=True)],
        State.SILENCE,
    ),
    (
        "cut while trailing, then more silence: no new utterance",
        frames((VOICE, 95), (SILENT, 30)),
        [start(0), end(100, cut=True)],
        State.SILENCE,
    ),
    (
        "cut while trailing, then speech: it starts at the cut, not in its pre-roll",
        frames((VOICE, 95), (SILENT, 5), (VOICE, 10)),
        [start(0), end(100, cut=True), start(100)],
        State.SPEECH,
    ),
    (
        "cut while trailing, speech later: full pre-roll",
        frames((VOICE, 95), (SILENT, 10), (VOICE, 10)),
        [start(0), end(100, cut=True), start(103)],
        State.SPEECH,
    ),
    (
        "endpoint before the cut: a normal end",
        frames((VOICE, 85), (SILENT, 15)),
        [start(0), end(86)],
        State.SILENCE,
    ),
]


@pytest.mark.parametrize(
    ("fed", "expected", "state"), [row[1:] for row in CUTS], ids=[row[0] for row in CUTS]
)
def test_cut(fed: list[float], expected: list[Boundary], state: State) -> None:
    segmenter = UtteranceSegmenter(CONFIG)
    assert segmenter.feed(fed) == expected
    assert segmenter.state is state


@pytest.mark.parametrize(
    ("case", "fed", "onset_at"),
    [
        # Each voiced frame after a gap one frame short of onset_gap (3 silent frames).
        ("after silence", frames((SILENT, 10)) + [VOICE] + frames((SILENT, 3), (VOICE, 1)) * 4, 10),
        (
            "after a cut",
            frames((VOICE, 100), (SILENT, 3)) + frames((VOICE, 1), (SILENT, 3)) * 4 + [VOICE],
            100,
        ),
    ],
)
def test_the_slowest_onset_is_confirmed_within_max_onset(
    case: str, fed: list[float], onset_at: int
) -> None:
    segmenter = UtteranceSegmenter(CONFIG)
    starts = [b for b in segmenter.feed(fed) if isinstance(b, UtteranceStart)]
    assert starts[-1].start >= onset_at * F - CONFIG.preroll_samples
    # Confirmed on the last frame fed, no later than max_onset after the onset could begin
    # (exactly then after a cut, where the gap may also come before the first voice).
    assert segmenter.state is State.SPEECH
    assert segmenter.position - onset_at * F <= CONFIG.max_onset_samples
    if case == "after a cut":
        assert segmenter.position - onset_at * F == CONFIG.max_onset_samples
