"""The Deepgram Flux (v2) dialect end to end: the real ``deepgram-sdk``'s ``listen.v2``
client pointed at a real server (``/deepgram``), real speech; turn events checked in
order, transcripts by normalized WER."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from deepgram import DeepgramClient
from deepgram.listen.v2.types import ListenV2Connected, ListenV2TurnInfo
from tests.dialect_helpers import deepgram_client, keyed_server, refused_status
from tests.fakes import pcm16

from conftest import Clip, trimmed
from earshot.auth import generate_key
from earshot.server_process import ServerProcess
from earshot.wer import error_rate

KEY = generate_key()
ENGLISH = "ljspeech_LJ001-0001"
WER_BOUND = 0.12
"""As tests/test_deepgram.py: streaming splits at pauses; 0.12 catches lost audio."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with keyed_server(tmp_path_factory, "deepgram-v2", KEY) as server:
        try:
            yield server
        finally:
            _HTTP.close()


_HTTP = httpx.Client(timeout=120)


def deepgram(server: ServerProcess, key: str = KEY) -> DeepgramClient:
    return deepgram_client(server, key, _HTTP)


def stream(
    server: ServerProcess,
    parts: list[np.ndarray],
    *,
    wait_between: Callable[[list[Any]], bool] | None = None,
    speed: float = 3.0,
    **options: Any,
) -> list[Any]:
    """Stream ``parts`` in 100 ms frames through the SDK's ``listen.v2`` client; between
    two parts wait until ``wait_between(messages)`` holds; then ``CloseStream``. Every
    message the SDK parsed, in order."""
    messages: list[Any] = []
    with deepgram(server).listen.v2.connect(
        model="flux-general-en", encoding="linear16", sample_rate="16000", **options
    ) as socket:
        reader = threading.Thread(target=lambda: messages.extend(socket), daemon=True)
        reader.start()
        for n, part in enumerate(parts):
            if n and wait_between is not None:
                deadline = time.monotonic() + 60
                while not wait_between(messages) and time.monotonic() < deadline:
                    time.sleep(0.02)
            data = pcm16(part)
            for i in range(0, len(data), 3200):
                socket.send_media(data[i : i + 3200])
                time.sleep(0.1 / speed)
        socket.send_close_stream()
        reader.join(60)
    assert not reader.is_alive(), "the server did not close after CloseStream"
    return messages


def turn_infos(messages: list[Any]) -> list[ListenV2TurnInfo]:
    return [m for m in messages if isinstance(m, ListenV2TurnInfo)]


def check_envelope(messages: list[Any]) -> None:
    """``Connected`` first; ``sequence_id`` 0, 1, ...; one ``request_id``; turns in order,
    each ``StartOfTurn`` … ``EndOfTurn``, never interleaved."""
    assert isinstance(messages[0], ListenV2Connected)
    assert [m.sequence_id for m in messages] == list(range(len(messages)))
    assert {m.request_id for m in turn_infos(messages)} == {messages[0].request_id}
    open_turn: int | None = None
    ended = -1
    for m in turn_infos(messages):
        if m.event == "StartOfTurn":
            assert open_turn is None and m.turn_index == ended + 1
            open_turn = m.turn_index
        else:
            assert m.turn_index == open_turn, m
        if m.event == "EndOfTurn":
            ended, open_turn = m.turn_index, None
            assert m.trigger in ("timeout", "manual")
        else:
            assert m.trigger is None
    assert open_turn is None, "a turn was left open"


def test_turns_of_a_clip_and_the_end_of_turn_transcript(
    server: ServerProcess, speech: dict[str, Clip]
) -> None:
    clip = speech[ENGLISH]
    messages = stream(server, [clip.audio(), np.zeros(16000, np.float32)], keyterm="Exhibition")
    check_envelope(messages)
    infos = turn_infos(messages)
    assert {m.event for m in infos} == {"StartOfTurn", "Update", "EndOfTurn"}  # no eager
    ends = [m for m in infos if m.event == "EndOfTurn"]
    text = " ".join(m.transcript for m in ends)
    assert error_rate([clip.text], [text]) <= WER_BOUND
    assert any(m.trigger == "timeout" for m in ends)
    for m in ends:
        assert m.end_of_turn_confidence == 1.0
        assert m.audio_window_start < m.audio_window_end
        if m.transcript:
            assert m.words and all(0 < w.confidence <= 1 for w in m.words)
        for w in m.words:
            assert w.start is not None and w.end is not None
            assert m.audio_window_start - 0.5 <= w.start <= w.end <= m.audio_window_end + 0.5
    updates = [m for m in infos if m.event == "Update"]
    assert updates and all(m.transcript for m in updates)


def test_eager_end_of_turn_then_turn_resumed_on_a_mid_sentence_pause(
    server: ServerProcess, speech: dict[str, Clip]
) -> None:
    """As tests/test_protocol_extensions_e2e.py's native test: two clips 400 ms apart;
    the pause passes the 250 ms speculation point (``EagerEndOfTurn``), speech resumes
    before the 1000 ms ``eot_timeout_ms`` (``TurnResumed``), and one ``EndOfTurn`` has
    both (2 s of silence after it: the endpoint, not ``CloseStream``, ends the turn)."""
    first, second = speech["cmusphinx_goforward"], speech["cmuarctic_a0024"]
    gap = np.zeros(int(0.4 * 16000), np.float32)
    a, b = trimmed(first.audio()), trimmed(second.audio())

    def eager_or_end(messages: list[Any]) -> bool:
        return any(m.event in ("EagerEndOfTurn", "EndOfTurn") for m in turn_infos(messages))

    messages = stream(
        server,
        [np.concatenate([a, gap]), np.concatenate([b, np.zeros(32000, np.float32)])],
        wait_between=eager_or_end,
        eager_eot_threshold="0.5",
        eot_threshold="0.8",
        eot_timeout_ms="1000",
    )
    check_envelope(messages)
    infos = turn_infos(messages)
    events = [m.event for m in infos]
    assert events[0] == "StartOfTurn" and events[-1] == "EndOfTurn"
    assert events.count("StartOfTurn") == 1 and events.count("EndOfTurn") == 1
    eager = next(m for m in infos if m.event == "EagerEndOfTurn")
    assert events.index("EagerEndOfTurn") < events.index("TurnResumed")
    assert eager.turn_index == 0 and eager.end_of_turn_confidence == 0.5
    assert error_rate([first.text], [eager.transcript]) <= 0.25
    assert eager.audio_window_end <= (len(a) + len(gap)) / 16000
    end = infos[-1]
    assert end.trigger == "timeout"
    assert error_rate([f"{first.text} {second.text}"], [end.transcript]) <= 0.2


def test_refusals_a_deepgram_client_understands(server: ServerProcess) -> None:
    def refused(client: DeepgramClient, **options: Any) -> int:
        return refused_status(lambda: client.listen.v2.connect(model="flux-general-en", **options))

    assert refused(deepgram(server, generate_key())) == 401
    assert refused(deepgram(server), eot_timeout_ms="50") == 400
    assert refused(deepgram(server), eager_eot_threshold="2") == 400
    assert refused(deepgram(server), encoding="opus") == 400
    scrape = httpx.get(f"{server.http_url}/metrics").text
    assert 'earshot_dialect_sessions_total{dialect="deepgram_v2",outcome="accepted"}' in scrape
