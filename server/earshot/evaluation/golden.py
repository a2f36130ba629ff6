"""The golden set: real speech clips with reference transcripts (``manifest.jsonl``)."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from earshot.audio_files import read_audio


@dataclass(frozen=True)
class GoldenClip:
    path: Path
    text: str
    language: str
    duration_s: float
    exact: bool
    """False: the reference is another recognizer's output; never counted in WER."""

    @property
    def name(self) -> str:
        return self.path.stem

    def audio(self) -> np.ndarray:
        return read_audio(self.path)


def load_golden(
    manifest: Path,
    *,
    languages: Collection[str] | None = None,
    per_language: int | None = None,
) -> list[GoldenClip]:
    """Clips in manifest order, optionally only ``languages`` and the first
    ``per_language`` of each (clips with exact references first)."""
    clips = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        clips.append(
            GoldenClip(
                path=manifest.parent / row["file"],
                text=row["text"],
                language=row["language"],
                duration_s=float(row["duration_s"]),
                exact=bool(row.get("transcript_exact", True)),
            )
        )
    if languages:
        clips = [c for c in clips if c.language in languages]
    if per_language is not None:
        taken: dict[str, int] = {}
        chosen = []
        for clip in sorted(clips, key=lambda c: not c.exact):
            if taken.get(clip.language, 0) < per_language:
                taken[clip.language] = taken.get(clip.language, 0) + 1
                chosen.append(clip)
        clips = [c for c in clips if c in chosen]
    return clips
