import pytest

from earshot.windows import (
    FULL_WINDOW,
    choose_window,
    compression_ratio,
    looks_like_runaway,
    repeats_its_tail,
    token_budget,
)

BUCKETS = (1000, 1500, 2000, 3000)


@pytest.mark.parametrize(
    ("frames", "window"),
    [(100, 1000), (900, 1000), (901, 1500), (1900, 2000), (1901, 3000), (2900, 3000), (2950, 3000)],
)
def test_smallest_bucket_with_a_silent_tail(frames: int, window: int) -> None:
    assert choose_window(frames, BUCKETS, min_tail=100) == window


def test_full_window_only() -> None:
    assert choose_window(10, (3000,), 100) == FULL_WINDOW


def test_token_budget_grows_with_duration_and_is_capped() -> None:
    assert token_budget(1.0) < token_budget(10.0) <= 224
    assert token_budget(60.0) == 224


def test_repetition_is_a_runaway() -> None:
    normal = "the quick brown fox jumps over the lazy dog near the river bank"
    assert compression_ratio(normal) < 2.4
    assert not looks_like_runaway(14, normal, 4.0, 2.4)
    assert looks_like_runaway(30, "thank you " * 30, 4.0, 2.4)
    assert looks_like_runaway(token_budget(2.0), "words", 2.0, 2.4)


@pytest.mark.parametrize(
    ("text", "loops"),
    [
        # what beam 5 made of two clips and a second of silence (tests/test_engine.py)
        ("Go forward 10 meters. It was my reports from the north which chiefly induced"
         " people to buy. It was my reports from the north which chiefly induced people"
         " to buy.", True),
        ("thank you very much indeed. thank you very much indeed.", True),  # 5 words twice
        ("Thank you, very much indeed! Thank you very much, indeed.", True),  # punctuation
        ("no, no, no, no", False),  # people do repeat a word
        ("I said go go go go go", False),  # a one-word run is not a repeated phrase
        ("one two three four one two three four", False),  # under five words
        ("It was my reports from the north. It was my reports from the south.", False),
        ("", False),
    ],
)  # fmt: skip
def test_a_repeated_tail_is_a_loop(text: str, loops: bool) -> None:
    assert repeats_its_tail(text) is loops
