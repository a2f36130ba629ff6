"""The prompt-copy rule on text alone (the engine's re-decode is in test_engine.py)."""

from __future__ import annotations

import pytest

from earshot.prompt_copy import copied_words, is_copy, may_copy

CARDS = "playing cards: ace, king, queen, jack, ten of clubs."


@pytest.mark.parametrize(
    ("prompted", "unprompted", "prompt", "copied", "copy"),
    [
        # The prompt spoken back in front of the real words.
        (
            "ace, king, jack, ten of clubs",
            "10 of clubs",
            CARDS,
            ["ace", "jack", "king", "ten"],
            True,
        ),
        # The prompt spoken instead of the words.
        ("playing cards.", "5, 5", CARDS, ["cards", "playing"], True),
        # Unprompted says nothing at all: every prompt word is unsupported.
        ("queen of clubs", "", CARDS, ["clubs", "of", "queen"], True),
        # One changed word is what a prompt is for: a spelling, a number in words.
        ("ten of clubs", "10 of clubs", CARDS, ["ten"], False),
        (
            "Deploy it on Kubernetes.",
            "Deploy it on Cooper Netties.",
            "Kubernetes",
            ["kubernetes"],
            False,
        ),
        # Words the audio says anyway are not copies, however many.
        ("Ace of clubs, king of clubs", "ace of clubs, king of clubs", CARDS, [], False),
        # Case and punctuation do not matter.
        ("TEN, of CLUBS!", "ten of clubs", CARDS, [], False),
    ],
)
def test_copied_words(
    prompted: str, unprompted: str, prompt: str, copied: list[str], copy: bool
) -> None:
    assert copied_words(prompted, unprompted, prompt) == copied
    assert is_copy(prompted, unprompted, prompt) is copy


@pytest.mark.parametrize(
    ("output", "prompt", "check"),
    [
        ("ten of clubs", CARDS, True),
        ("Go forward ten meters.", CARDS, False),  # only "ten": no second decode
        ("Deploy it on Kubernetes.", "Kubernetes", False),
        ("", CARDS, False),
    ],
)
def test_only_outputs_sharing_words_with_the_prompt_are_checked(
    output: str, prompt: str, check: bool
) -> None:
    assert may_copy(output, prompt) is check
