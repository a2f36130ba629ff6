"""Shared fixtures: real speech and a real server process; the CI rule on skips.

The speech is the fixture set in tests/data/speech (in every clone), or the directory
named by ``EARSHOT_SPEECH_DIR`` (the full set, ``../shared/speech``, holds every clip
of the fixture set under the same name). Under ``CI=true`` a skipped test fails the
run unless it is marked ``gpu``: a missing service or file must not pass as green.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from earshot.audio_files import read_audio
from earshot.server_process import ServerProcess

REPO = Path(__file__).resolve().parents[1]
FIXTURE_SPEECH_DIR = REPO / "tests" / "data" / "speech"
SPEECH_DIR = Path(os.environ.get("EARSHOT_SPEECH_DIR") or FIXTURE_SPEECH_DIR)
FULL_SPEECH_DIR = REPO.parent / "shared" / "speech"
"""The whole real-speech set, where it sits beside the repository: larger runs only."""
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


def trimmed(audio: np.ndarray, level: float = 0.02) -> np.ndarray:
    """A clip without its leading and trailing quiet, so a gap added is the pause."""
    frames = len(audio) // 160
    rms = np.sqrt((audio[: frames * 160].reshape(frames, 160) ** 2).mean(axis=1))
    loud = np.flatnonzero(rms > level)
    return audio[loud[0] * 160 : (loud[-1] + 1) * 160]


def load_manifest() -> dict[str, Clip]:
    clips = {}
    for line in (SPEECH_DIR / "manifest.jsonl").read_text().splitlines():
        row = json.loads(line)
        clips[Path(row["file"]).stem] = Clip(
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


# -- under CI=true, a skip is a failure (except on tests marked gpu) ---------------------
_unexpected_skips: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not any(item.get_closest_marker("gpu") for item in items) or cuda_devices():
        return
    skip = pytest.mark.skip(reason="no CUDA device (ctranslate2.get_cuda_device_count() == 0)")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


def cuda_devices() -> int:
    import ctranslate2

    try:
        return int(ctranslate2.get_cuda_device_count())
    except Exception:  # a CUDA-less build may raise instead of answering 0
        return 0


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if (
        os.environ.get("CI") == "true"
        and report.skipped
        and not hasattr(report, "wasxfail")
        and "gpu" not in report.keywords
    ):
        _unexpected_skips.append(f"{report.nodeid}: {report.longrepr}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _unexpected_skips and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _unexpected_skips:
        terminalreporter.section("skipped under CI=true (each fails the run)", red=True)
        for line in _unexpected_skips:
            terminalreporter.line(line)
