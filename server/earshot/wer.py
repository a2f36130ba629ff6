"""Word error rate the way Whisper evaluations compute it: normalize both sides
(whisper-normalizer: English spelling, numbers, punctuation), then jiwer.
Character error rate for languages written without spaces.
"""

from __future__ import annotations

from collections.abc import Sequence

import jiwer
from whisper_normalizer.basic import BasicTextNormalizer
from whisper_normalizer.english import EnglishTextNormalizer

_english = EnglishTextNormalizer()
_basic = BasicTextNormalizer()
CHARACTER_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "yue"})


def normalize(text: str, language: str = "en") -> str:
    if language == "en":
        return " ".join(_english(text).split())
    return " ".join(_basic(text).split())


def error_rate(references: Sequence[str], hypotheses: Sequence[str], language: str = "en") -> float:
    """Corpus-level WER (CER for CJK) over normalized texts."""
    refs = [normalize(r, language) for r in references]
    hyps = [normalize(h, language) for h in hypotheses]
    pairs = [(r, h) for r, h in zip(refs, hyps) if r]
    if not pairs:
        return 0.0
    refs, hyps = [p[0] for p in pairs], [p[1] for p in pairs]
    if language in CHARACTER_LANGUAGES:
        return float(jiwer.cer(refs, hyps))
    return float(jiwer.wer(refs, hyps))
