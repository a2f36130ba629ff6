"""The `earshot` command as a user runs it: clear errors, not tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import Clip

from earshot.server_process import ServerProcess, free_port


def earshot(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "earshot", *args], capture_output=True, text=True, timeout=timeout
    )


def test_missing_model_is_a_clear_error() -> None:
    result = earshot("serve", "--model", "./no/such/model", "--port", str(free_port()))
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_transcribe_prints_segments_and_speed(speech: dict[str, Clip]) -> None:
    result = earshot("transcribe", str(speech["cmusphinx_goforward"].path))
    assert result.returncode == 0, result.stderr
    assert "forward" in result.stdout.lower() and "real time" in result.stderr


def test_transcribe_refuses_a_non_audio_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"definitely not audio" * 100)
    result = earshot("transcribe", str(junk))
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_stream_prints_finals(speech: dict[str, Clip]) -> None:
    with ServerProcess() as server:
        clip = str(speech["cmusphinx_goforward"].path)
        result = earshot("stream", clip, "--url", server.ws_url, "--speed", "4")
    assert result.returncode == 0, result.stderr
    assert "forward" in result.stdout.lower()


def test_stream_to_nowhere_is_a_clear_error(speech: dict[str, Clip]) -> None:
    url = f"ws://127.0.0.1:{free_port()}/v1/listen"
    result = earshot("stream", str(speech["cmusphinx_goforward"].path), "--url", url)
    assert result.returncode == 1
    assert "cannot stream" in result.stderr and "Traceback" not in result.stderr
