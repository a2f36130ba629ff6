"""The Deepgram dialect end to end: the real ``deepgram-sdk`` pointed at a real server
(``/deepgram``), real speech, transcripts checked by normalized WER."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from deepgram import DeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.listen.v1.types import (
    ListenV1Metadata,
    ListenV1Results,
    ListenV1SpeechStarted,
    ListenV1UtteranceEnd,
)
from tests.dialect_helpers import deepgram_client, keyed_server, refused_status
from tests.fakes import pcm16
from tests.test_audio_codecs import encode_opus
from websockets.sync.client import connect as ws_connect

from conftest import Clip
from earshot.audio import encode_g711
from earshot.auth import generate_key
from earshot.server_process import ServerProcess
from earshot.wer import error_rate

KEY = generate_key()
ENGLISH = "ljspeech_LJ001-0001"
SHORT = "cmuarctic_a0024"
WER_BOUND = 0.12
"""As tests/test_streaming_e2e.py: streaming splits at pauses; 0.12 catches lost audio."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with keyed_server(tmp_path_factory, "deepgram", KEY, "--max-sessions", "2") as server:
        try:
            yield server
        finally:
            _HTTP.close()


_HTTP = httpx.Client(timeout=120)
"""One connection pool for every SDK client here (each would otherwise leave its own
open), closed when the module's server stops."""


def deepgram(server: ServerProcess, key: str = KEY) -> DeepgramClient:
    return deepgram_client(server, key, _HTTP)


def stream(
    server: ServerProcess,
    audio: np.ndarray,
    *,
    finalize: bool = False,
    speed: float = 3.0,
    **options: Any,
) -> list[Any]:
    """Stream ``audio`` (then 1 s of silence) through the SDK's live client, optionally
    ``Finalize``, then ``CloseStream``; every message the SDK parsed, in order."""
    messages: list[Any] = []
    with deepgram(server).listen.v1.connect(
        model="nova-3", encoding="linear16", sample_rate="16000", **options
    ) as socket:
        reader = threading.Thread(target=lambda: messages.extend(socket), daemon=True)
        reader.start()
        data = pcm16(audio) + (b"" if finalize else bytes(32000))
        step = 3200  # 100 ms
        for i in range(0, len(data), step):
            socket.send_media(data[i : i + step])
            time.sleep(0.1 / speed)
        if finalize:
            socket.send_finalize()
            deadline = time.monotonic() + 30
            while not any(_from_finalize(m) for m in messages) and time.monotonic() < deadline:
                time.sleep(0.05)
        socket.send_keep_alive()
        socket.send_close_stream()
        reader.join(60)
    assert not reader.is_alive(), "the server did not close after CloseStream"
    return messages


def _from_finalize(message: Any) -> bool:
    return isinstance(message, ListenV1Results) and bool(message.from_finalize)


def finals(messages: list[Any]) -> list[ListenV1Results]:
    return [m for m in messages if isinstance(m, ListenV1Results) and m.is_final]


def transcript(messages: list[Any]) -> str:
    return " ".join(m.channel.alternatives[0].transcript for m in finals(messages)).strip()


def test_live_interim_and_final_results_utterance_end_and_metadata(
    server: ServerProcess, speech: dict[str, Clip]
) -> None:
    clip = speech[ENGLISH]
    audio = clip.audio()
    messages = stream(
        server,
        audio,
        language="en-US",
        interim_results="true",
        vad_events="true",
        utterance_end_ms="1000",
        punctuate="true",
        smart_format="true",
        keyterm="Exhibition",
    )
    results = [m for m in messages if isinstance(m, ListenV1Results)]
    interims = [m for m in results if not m.is_final]
    final = finals(messages)
    assert interims and final
    assert error_rate([clip.text], [transcript(messages)]) <= WER_BOUND
    assert any(m.speech_final for m in final)
    assert not any(m.from_finalize for m in final)
    for m in final:
        alternative = m.channel.alternatives[0]
        assert m.duration > 0 and m.start >= 0
        if alternative.transcript:
            assert alternative.words and 0 < alternative.confidence <= 1
        for w in alternative.words:
            assert m.start - 0.5 <= w.start <= w.end <= m.start + m.duration + 0.5
            assert w.punctuated_word and w.word == w.word.lower()
        assert m.metadata.model_info.name and m.metadata.model_uuid
    # Results are ordered on the stream clock.
    assert [m.start for m in final] == sorted(m.start for m in final)
    assert [m for m in messages if isinstance(m, ListenV1SpeechStarted)]
    ends = [m for m in messages if isinstance(m, ListenV1UtteranceEnd)]
    assert len(ends) == sum(1 for m in final if m.channel.alternatives[0].words)
    last = messages[-1]
    assert isinstance(last, ListenV1Metadata)
    assert last.duration == pytest.approx(len(audio) / 16000 + 1.0, abs=0.05)
    assert last.request_id == final[0].metadata.request_id


def test_finalize_and_close_stream(server: ServerProcess, speech: dict[str, Clip]) -> None:
    """``endpointing=false``: only ``Finalize`` ends the utterance; its result says so.
    ``language=multi``: detected per utterance."""
    clip = speech[SHORT]
    messages = stream(
        server,
        clip.audio(),
        finalize=True,
        endpointing="false",
        punctuate="false",
        language="multi",
    )
    final = finals(messages)
    assert all(
        m.channel.alternatives[0].languages == ["en"]
        for m in final
        if m.channel.alternatives[0].transcript
    )
    assert [m for m in final if m.from_finalize], messages
    assert not any(m.speech_final for m in final)
    assert not [m for m in messages if isinstance(m, ListenV1Results) and not m.is_final]
    text = transcript(messages)
    assert error_rate([clip.text], [text]) <= 0.15
    assert text == text.lower() and "." not in text and "," not in text  # punctuate=false
    assert isinstance(messages[-1], ListenV1Metadata)


def test_refusals_a_deepgram_client_understands(server: ServerProcess) -> None:
    def refused(client: DeepgramClient, **options: Any) -> int:
        return refused_status(lambda: client.listen.v1.connect(model="nova-3", **options))

    assert refused(deepgram(server, generate_key())) == 401
    assert refused(deepgram(server), diarize="true") == 400
    assert refused(deepgram(server), channels="2") == 400
    assert refused(deepgram(server), encoding="opus") == 400

    # A full server (--max-sessions 2) refuses at the handshake, with 429.
    url = f"ws://127.0.0.1:{server.port}/deepgram/v1/listen"
    headers = {"Authorization": f"Token {KEY}"}
    with ws_connect(url, additional_headers=headers), ws_connect(url, additional_headers=headers):
        assert refused(deepgram(server)) == 429


def test_browser_subprotocol_credentials(server: ServerProcess, speech: dict[str, Clip]) -> None:
    """Browsers can't set headers: ``Sec-WebSocket-Protocol: token, <key>``."""
    url = f"ws://127.0.0.1:{server.port}/deepgram/v1/listen?encoding=linear16&sample_rate=16000"
    with ws_connect(url, subprotocols=["token", KEY]) as socket:  # type: ignore[list-item]
        assert socket.subprotocol == "token"
        socket.send('{"type": "CloseStream"}')
        assert '"type":"Metadata"' in str(socket.recv(10))
    # Metrics are labelled by dialect (the earlier tests' handshakes count too).
    scrape = httpx.get(f"{server.http_url}/metrics").text
    accepted = 'earshot_dialect_sessions_total{dialect="deepgram",outcome="accepted"}'
    assert accepted in scrape


def test_prerecorded(server: ServerProcess, speech: dict[str, Clip], tmp_path: Path) -> None:
    clip = speech[ENGLISH]
    client = deepgram(server)
    response = client.listen.v1.media.transcribe_file(
        request=clip.path.read_bytes(), model="nova-3", smart_format=True
    )
    assert response.metadata.duration == pytest.approx(clip.duration_s, abs=0.1)
    alternative = response.results.channels[0].alternatives[0]
    assert error_rate([clip.text], [alternative.transcript]) <= 0.1
    assert 0 < alternative.confidence <= 1
    words = alternative.words
    assert words and len(words) >= len(clip.text.split()) * 0.8
    assert all(w.start <= w.end for w in words)

    # Raw linear16, without punctuation, language detected.
    raw = client.listen.v1.media.transcribe_file(
        request=pcm16(clip.audio()),
        model="nova-3",
        encoding="linear16",
        request_options={"additional_query_parameters": {"sample_rate": 16000}},
        detect_language=True,
    )
    channel = raw.results.channels[0]
    text = channel.alternatives[0].transcript
    assert channel.detected_language == "en"
    assert error_rate([clip.text], [text]) <= 0.1 and text == text.lower() and "," not in text

    with pytest.raises(ApiError) as bad_key:
        deepgram(server, generate_key()).listen.v1.media.transcribe_file(
            request=clip.path.read_bytes(), model="nova-3"
        )
    assert bad_key.value.status_code == 401
    with pytest.raises(ApiError) as diarize:
        client.listen.v1.media.transcribe_file(
            request=clip.path.read_bytes(), model="nova-3", diarize=True
        )
    assert diarize.value.status_code == 400
    with pytest.raises(ApiError) as url:
        client.listen.v1.media.transcribe_url(url="https://example.com/a.wav", model="nova-3")
    assert url.value.status_code == 400
    with pytest.raises(ApiError) as not_audio:
        client.listen.v1.media.transcribe_file(request=b"not audio at all" * 100, model="nova-3")
    assert not_audio.value.status_code in (415, 422)


def test_mulaw_at_8khz_as_telephony_bridges_send_it(
    server: ServerProcess, speech: dict[str, Clip]
) -> None:
    """``encoding=mulaw&sample_rate=8000`` in 20 ms frames (a Twilio-style bridge)."""
    clip = speech[ENGLISH]
    data = encode_g711(np.concatenate([clip.audio(8000), np.zeros(8000, np.float32)]), "pcm_mulaw")
    messages: list[Any] = []
    with deepgram(server).listen.v1.connect(
        model="nova-3", encoding="mulaw", sample_rate="8000"
    ) as socket:
        reader = threading.Thread(target=lambda: messages.extend(socket), daemon=True)
        reader.start()
        for i in range(0, len(data), 160):
            socket.send_media(data[i : i + 160])
            time.sleep(0.02 / 3)  # three times real time
        socket.send_close_stream()
        reader.join(60)
    assert not reader.is_alive(), "the server did not close after CloseStream"
    assert isinstance(messages[-1], ListenV1Metadata)
    assert error_rate([clip.text], [transcript(messages)]) <= 0.15, transcript(messages)


@pytest.mark.parametrize("kind", ["wav", "ogg"])
def test_no_encoding_means_an_audio_file_told_by_its_header(
    kind: str, server: ServerProcess, speech: dict[str, Clip]
) -> None:
    """As with Deepgram, a client that names no encoding streams an audio file: its
    header says WAV (here the clip's own file) or Ogg Opus."""
    clip = speech[ENGLISH]
    silence = np.zeros(16000, np.float32)
    data = (
        clip.path.read_bytes() + pcm16(silence)
        if kind == "wav"
        else encode_opus(np.concatenate([clip.audio(), silence]), "ogg")
    )
    messages: list[Any] = []
    with deepgram(server).listen.v1.connect(model="nova-3") as socket:
        reader = threading.Thread(target=lambda: messages.extend(socket), daemon=True)
        reader.start()
        for i in range(0, len(data), 4095):  # cut anywhere, samples included
            socket.send_media(data[i : i + 4095])
            time.sleep(0.01)
        socket.send_close_stream()
        reader.join(60)
    assert not reader.is_alive(), "the server did not close after CloseStream"
    assert isinstance(messages[-1], ListenV1Metadata)
    assert error_rate([clip.text], [transcript(messages)]) <= WER_BOUND, transcript(messages)
