"""Shared fixtures: real speech from ../shared/speech and a real server process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from earshot.audio_files import read_audio
from earshot.server_process import ServerProcess

REPO = Path(__file__).resolve().parents[1]
SPEECH_DIR = REPO.parent / "shared" / "speech"
ARTIFACTS = REPO / "artifacts"


@dataclass(frozen=True)
class Clip:
    file: str
    text: str
    language: str
    duration_s: float
    exact: bool

    @property
    def path(self) -> Path:
        return SPEECH_DIR / self.file

    def audio(self, sample_rate: int = 16000) -> np.ndarray:
        return read_audio(self.path, sample_rate)


def load_manifest() -> dict[str, Clip]:
    manifest = SPEECH_DIR / "manifest.jsonl"
    if not manifest.is_file():
        pytest.skip(f"real speech set not found at {SPEECH_DIR} (expected ../shared/speech)")
    clips = {}
    for line in manifest.read_text().splitlines():
        row = json.loads(line)
        clips[row["file"].removesuffix(".wav")] = Clip(
            row["file"], row["text"], row["language"], row["duration_s"], row["transcript_exact"]
        )
    return clips


@pytest.fixture(scope="session")
def speech() -> dict[str, Clip]:
    return load_manifest()


@pytest.fixture(scope="session")
def earshot_server() -> Iterator[ServerProcess]:
    """One real server with the bundled base model, shared by the end-to-end tests."""
    ARTIFACTS.mkdir(exist_ok=True)
    with ServerProcess(log_path=ARTIFACTS / "earshot-server.log") as server:
        yield server
