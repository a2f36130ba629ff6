"""Offline file throughput (real-time factor) of the same model on the same machine:
the other half of capacity planning, for batch transcription instead of live streams.

It runs ``earshot transcribe --json`` in a child process so that the model is loaded
there, not in the load generator, and times only the transcription (the command
reports ``elapsed_s`` without the model load).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from earshot.loadtest.scenario import Clip
from earshot.wer import error_rate

TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Throughput:
    file: str
    audio_s: float
    elapsed_s: float
    wer: float | None
    """None when the file has no reference transcript."""

    @property
    def realtime_factor(self) -> float:
        """Seconds of audio transcribed per second of wall time (15 = 15× real time)."""
        return round(self.audio_s / self.elapsed_s, 2) if self.elapsed_s else 0.0


def offline_throughput(clip: Clip, engine_args: Sequence[str] = ()) -> Throughput:
    language = ["--language", clip.language] if clip.language else []
    command = [sys.executable, "-m", "earshot", "transcribe", str(clip.path), "--json"]
    command += [*language, *engine_args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"earshot transcribe failed: {done.stderr.strip()[-500:]}")
    result = json.loads(done.stdout)
    return Throughput(
        file=clip.path.name,
        audio_s=float(result["audio_s"]),
        elapsed_s=float(result["elapsed_s"]),
        wer=(
            round(error_rate([clip.text], [result["text"]], clip.language), 4)
            if clip.text
            else None
        ),
    )
