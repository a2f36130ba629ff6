"""``POST /v1/audio/transcriptions`` through the real ``openai`` package pointed at
Earshot, and the audio containers users send (decoded by PyAV, no ffmpeg binary)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from conftest import ARTIFACTS, Clip
from earshot.server_process import ServerProcess
from earshot.wer import error_rate
from jobs_helpers import CONTAINERS, encode

ENGLISH = "jfk_inaugural"
GERMAN = "fleurs_de-002"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    ARTIFACTS.mkdir(exist_ok=True)
    data = tmp_path_factory.mktemp("openai-data")
    with ServerProcess("--data-dir", str(data), log_path=ARTIFACTS / "openai-compat.log") as server:
        yield server


@pytest.fixture
def client(server: ServerProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.http_url}/v1", api_key="not-needed") as client:
        yield client


def test_openai_sdk_round_trip(client: openai.OpenAI, speech: dict[str, Clip]) -> None:
    english = speech[ENGLISH]
    with english.path.open("rb") as f:
        plain = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert error_rate([english.text], [plain.text]) <= 0.15

    with english.path.open("rb") as f:
        text = client.audio.transcriptions.create(
            model="whisper-1", file=f, response_format="text", temperature=0.0
        )
    assert isinstance(text, str) and text.strip() == plain.text

    for fmt, head in (("srt", "1\n00:00:00,"), ("vtt", "WEBVTT\n\n00:00:00.")):
        with english.path.open("rb") as f:
            subtitles = client.audio.transcriptions.create(
                model="whisper-1", file=f, response_format=fmt
            )
        assert isinstance(subtitles, str) and subtitles.startswith(head), subtitles

    german = speech[GERMAN]
    with german.path.open("rb") as f:
        verbose = client.audio.transcriptions.create(
            model="whisper-1",
            file=f,
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )
    assert verbose.language == "de"
    assert verbose.duration == pytest.approx(german.duration_s, abs=0.1)
    assert error_rate([german.text], [verbose.text], "de") <= 0.35
    assert verbose.segments and verbose.segments[0].start < verbose.segments[0].end
    assert verbose.words and len(verbose.words) >= len(verbose.text.split()) * 0.8
    assert all(w.start <= w.end for w in verbose.words)

    with german.path.open("rb") as f:
        forced = client.audio.transcriptions.create(
            model="whisper-1", file=f, language="de", prompt="Nachrichten"
        )
    assert error_rate([german.text], [forced.text], "de") <= 0.35


def test_openai_errors(client: openai.OpenAI, speech: dict[str, Clip]) -> None:
    with speech[ENGLISH].path.open("rb") as f, pytest.raises(openai.BadRequestError) as bad:
        client.audio.transcriptions.create(model="whisper-1", file=f, language="xx")
    assert bad.value.body["param"] == "language"  # type: ignore[index]
    with speech[ENGLISH].path.open("rb") as f, pytest.raises(openai.BadRequestError):
        client.audio.transcriptions.create(model="whisper-1", file=f, temperature=3.0)
    with pytest.raises(openai.APIStatusError) as junk:
        client.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"\x00junk" * 999))
    assert junk.value.status_code == 415


@pytest.mark.parametrize("extension", sorted(CONTAINERS))
def test_common_containers_decode(
    server: ServerProcess, speech: dict[str, Clip], tmp_path: Path, extension: str
) -> None:
    clip = speech[ENGLISH]
    path = encode(clip.audio(), tmp_path / f"{ENGLISH}.{extension}")
    with path.open("rb") as f:
        response = httpx.post(
            f"{server.http_url}/v1/audio/transcriptions",
            files={"file": (path.name, f)},
            data={"model": "whisper-1", "response_format": "text"},
            timeout=60,
        )
    assert response.status_code == 200, response.text
    assert error_rate([clip.text], [response.text]) <= 0.15
