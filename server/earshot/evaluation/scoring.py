"""Numbers for the report: corpus error rates, partial stability, latency percentiles.

Partial stability, precisely: for each utterance, take the set of distinct normalized
words (characters for zh/ja/...) that appeared in any of its partials; the figure is
the share of those that also appear in the utterance's final, pooled over all
utterances (Σ|shown ∩ final| / Σ|shown|). The per-occurrence variant counts every word
of every partial instead of distinct ones, so a word shown in many partials weighs more.
The settled variant is the distinct figure without each partial's last word, which is
often cut mid-word by the audio boundary ("impressive" before "impressions").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from earshot.wer import CHARACTER_LANGUAGES, error_rate, normalize


def units(text: str, language: str) -> list[str]:
    """Normalized words, or characters where the language has no spaces."""
    normalized = normalize(text, language)
    if language in CHARACTER_LANGUAGES:
        return [c for c in normalized if not c.isspace()]
    return normalized.split()


@dataclass(frozen=True)
class ErrorRate:
    """A corpus error rate and its weight (reference words, or characters for CER)."""

    rate: float
    reference_units: int
    metric: str
    """``wer`` or ``cer``."""


def corpus_error(references: Sequence[str], hypotheses: Sequence[str], language: str) -> ErrorRate:
    weight = sum(
        len(normalize(r, language)) if language in CHARACTER_LANGUAGES else len(units(r, language))
        for r in references
    )
    metric = "cer" if language in CHARACTER_LANGUAGES else "wer"
    return ErrorRate(error_rate(references, hypotheses, language), weight, metric)


def pooled(rates: Sequence[ErrorRate]) -> float:
    """Errors over reference units across languages (what one big corpus would give)."""
    total = sum(r.reference_units for r in rates)
    return sum(r.rate * r.reference_units for r in rates) / total if total else 0.0


def relative_gap(streaming: float, offline: float) -> float | None:
    """(streaming − offline) / offline; None when offline is perfect."""
    return (streaming - offline) / offline if offline > 0 else None


@dataclass
class Stability:
    shown: int = 0
    kept: int = 0
    occurrences: int = 0
    occurrences_kept: int = 0
    settled_shown: int = 0
    settled_kept: int = 0
    utterances: int = 0
    """Utterances that had at least one partial."""

    def add(self, partials: Sequence[str], final: str, language: str) -> None:
        if not partials:
            return
        final_units = set(units(final, language))
        distinct: set[str] = set()
        settled: set[str] = set()
        for text in partials:
            words = units(text, language)
            distinct.update(words)
            settled.update(words[:-1])
            self.occurrences += len(words)
            self.occurrences_kept += sum(w in final_units for w in words)
        self.shown += len(distinct)
        self.kept += len(distinct & final_units)
        self.settled_shown += len(settled)
        self.settled_kept += len(settled & final_units)
        self.utterances += 1

    @property
    def rate(self) -> float | None:
        return self.kept / self.shown if self.shown else None

    @property
    def settled_rate(self) -> float | None:
        return self.settled_kept / self.settled_shown if self.settled_shown else None

    @property
    def occurrence_rate(self) -> float | None:
        return self.occurrences_kept / self.occurrences if self.occurrences else None


def percentiles(values: Sequence[float], points: Sequence[int] = (50, 95)) -> dict[str, float]:
    if not values:
        return {}
    array = np.asarray(values, dtype=float)
    return {f"p{p}": round(float(np.percentile(array, p)), 3) for p in points} | {
        "max": round(float(array.max()), 3)
    }
