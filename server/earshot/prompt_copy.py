"""Telling a decode that speaks its prompt from one that the prompt merely helped.

Whisper reads a prompt as the text that came before the audio. On short or quiet audio
a long prompt can come back as output: for the 1 s clip "ten of clubs" and a prompt of
playing cards, the base model has answered "ace, king, jack, ten of clubs". Which
machine does it depends on CTranslate2's int8 kernels (AVX2 and AVX-512 differ), so
no prompt can be assumed safe; the engine checks every prompted output instead:

1. ``may_copy``: the output holds at least ``MIN_COPIED_WORDS`` words of the prompt.
   Only then is it worth a second look (most prompted outputs share fewer).
2. The engine decodes the same audio again without the prompt.
3. ``copied_words``: words of the prompt that the prompted output has and the
   unprompted one lacks. Nothing but the prompt supports them. With
   ``MIN_COPIED_WORDS`` or more the unprompted decode is kept; with fewer, the
   prompted one (one changed word is what a prompt is for: a name, a spelling, "ten"
   for "10").

Words are compared as lowercase runs of letters and digits. Whisper's text normaliser
would also rewrite numbers and spellings, which are exactly the differences a prompt
is allowed to make, so it is not used here.
"""

from __future__ import annotations

import re
from collections import Counter

MIN_COPIED_WORDS = 2
"""Prompt-only words that make a decode a copy. One differing word is the normal
effect of a prompt (a keyterm's spelling); two are already a phrase nobody said."""

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return [w.casefold() for w in _WORD.findall(text)]


def may_copy(output: str, prompt: str) -> bool:
    """Whether ``output`` shares enough words with ``prompt`` to be checked."""
    vocabulary = set(words(prompt))
    return sum(w in vocabulary for w in words(output)) >= MIN_COPIED_WORDS


def copied_words(prompted: str, unprompted: str, prompt: str) -> list[str]:
    """Words of ``prompt`` in ``prompted`` beyond those in ``unprompted`` (with counts)."""
    vocabulary = set(words(prompt))
    from_prompt = Counter(w for w in words(prompted) if w in vocabulary)
    return sorted((from_prompt - Counter(words(unprompted))).elements())


def is_copy(prompted: str, unprompted: str, prompt: str) -> bool:
    return len(copied_words(prompted, unprompted, prompt)) >= MIN_COPIED_WORDS
