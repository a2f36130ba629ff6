"""Encoder window choice and the runaway guard.

Whisper's encoder is trained on 30 s windows (3000 feature frames) and costs the same
whatever the speech length. Encoding a short utterance in a shorter window is ~4×
cheaper, but a window with no silence after the speech makes the decoder repeat itself
until ``max_length`` (see ENGINE-NOTES). So: pick the smallest bucket that leaves at
least ``min_tail`` frames of silence, cap the token budget by duration, and re-run any
output that looks like a runaway on the full window.
"""

from __future__ import annotations

import zlib

FRAMES_PER_SECOND = 100
FULL_WINDOW = 3000
MAX_TOKENS = 224
"""Half of Whisper's 448-token context: the rest is for the prompt and the prefix."""


def choose_window(n_frames: int, buckets: tuple[int, ...], min_tail: int) -> int:
    """Smallest bucket with ``min_tail`` frames of silence after the audio."""
    for bucket in sorted(buckets):
        if n_frames + min_tail <= bucket:
            return bucket
    return FULL_WINDOW


def token_budget(duration_s: float) -> int:
    """Tokens a decode may produce: generous for fast speech, fatal to runaways.

    Fast speech is ~4 words/s; CJK text and numbers can take ~3 tokens per word.
    """
    return min(MAX_TOKENS, int(12 * duration_s) + 16)


def compression_ratio(text: str) -> float:
    """Repetitive text compresses well; Whisper's own hallucination heuristic."""
    data = text.encode("utf-8")
    if not data:
        return 0.0
    return len(data) / len(zlib.compress(data))


def looks_like_runaway(
    n_tokens: int, text: str, duration_s: float, max_compression_ratio: float
) -> bool:
    """Hit the token budget, or repeated itself: either way the window was wrong."""
    return n_tokens >= token_budget(duration_s) or compression_ratio(text) > max_compression_ratio


MIN_REPEATED_WORDS = 5
"""A tail this long (or longer) said twice in a row is the decoder looping, not speech:
people repeat a word or two ("no, no"), not five."""


def repeats_its_tail(text: str) -> bool:
    """The text ends with a run of at least ``MIN_REPEATED_WORDS`` words said twice in a
    row ("...to buy. It was my reports ... to buy."): beam search does this on a window
    whose speech ends well before it does, with a likelihood good enough to pass every
    other check, and a repeat of one sentence compresses too little to be caught."""
    words = [w.strip(".,!?;:\"'").casefold() for w in text.split()]
    for n in range(MIN_REPEATED_WORDS, len(words) // 2 + 1):
        if words[-n:] == words[-2 * n : -n]:
            return True
    return False
