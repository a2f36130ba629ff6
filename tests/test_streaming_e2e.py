"""End to end: a real server, the bundled model, real speech through a real WebSocket."""

from __future__ import annotations

import asyncio
import itertools
import json

import numpy as np
import pytest
from tests.conftest import Clip
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from earshot.client import (
    Closed,
    Final,
    Overloaded,
    Partial,
    SpeechStarted,
    StreamResult,
    connect,
    stream_audio,
)
from earshot.server_process import ServerProcess
from earshot.wer import error_rate

pytestmark = pytest.mark.asyncio

ENGLISH = [
    "ljspeech_LJ001-0001",
    "librispeech_1995-1837-0001",
    "cmuarctic_a0024",
    "ljspeech_LJ001-0005",
]
# Streaming splits an utterance where the reader pauses for more than endpointing_ms, and
# each piece is decoded without the others' context; offline WER on these clips is ~0.03,
# streaming ~0.05. A bound of 0.12 catches lost or garbled audio (a missing word in a
# 20-word clip is 0.05; a dropped utterance is > 0.3) without flaking on a comma.
WER_BOUND = 0.12


async def stream(
    server: ServerProcess, clip: Clip, speed: float = 3.0, **options: object
) -> StreamResult:
    return await stream_audio(
        server.ws_url, clip.audio(), speed=speed, trailing_silence_s=1.0, **options
    )


async def test_concurrent_english_sessions_each_get_their_own_accurate_transcript(
    earshot_server: ServerProcess, speech: dict[str, Clip]
) -> None:
    clips = [speech[name] for name in ENGLISH]
    results = await asyncio.gather(*(stream(earshot_server, c, language="en") for c in clips))
    texts = [r.text for r in results]
    assert error_rate([c.text for c in clips], texts) <= WER_BOUND
    for i, text in enumerate(texts):
        own = error_rate([clips[i].text], [text])
        others = [error_rate([c.text], [text]) for j, c in enumerate(clips) if j != i]
        assert own < min(others), f"session {i} got someone else's words: {text!r}"


async def test_message_order_numbering_and_close(
    earshot_server: ServerProcess, speech: dict[str, Clip]
) -> None:
    audio = np.concatenate(
        [
            speech["cmusphinx_goforward"].audio(),
            np.zeros(16000, np.float32),
            speech["ljspeech_LJ001-0004"].audio(),
        ]
    )
    result = await stream_audio(earshot_server.ws_url, audio, speed=3.0, trailing_silence_s=1.0)
    messages = result.messages
    assert isinstance(messages[-1], Closed) and result.close_code == 1000
    finals = result.finals
    assert [f.utterance for f in finals] == list(range(len(finals))) and len(finals) >= 2
    started = {m.utterance: i for i, m in enumerate(messages) if isinstance(m, SpeechStarted)}
    final_at = {m.utterance: i for i, m in enumerate(messages) if isinstance(m, Final)}
    assert set(started) == set(final_at)
    partials = [(i, m) for i, m in enumerate(messages) if isinstance(m, Partial)]
    assert partials, "no partial was sent"
    for i, p in partials:
        assert started[p.utterance] < i < final_at[p.utterance]
    for f in finals:
        assert 0.0 <= f.start < f.end <= result.audio_s + 0.01
    assert all(a.end <= b.start + 0.01 for a, b in itertools.pairwise(finals))


@pytest.mark.parametrize(("name", "language"), [("fleurs_de-001", "de"), ("fleurs_es-002", "es")])
async def test_language_is_detected_automatically(
    earshot_server: ServerProcess, speech: dict[str, Clip], name: str, language: str
) -> None:
    result = await stream(earshot_server, speech[name], language="auto")
    spoken = [f for f in result.finals if f.text]
    assert spoken and {f.language for f in spoken} == {language}


async def test_silence_and_noise_give_no_text(earshot_server: ServerProcess) -> None:
    rng = np.random.default_rng(7)
    audio = np.concatenate(
        [
            np.zeros(3 * 16000, np.float32),
            (0.003 * rng.standard_normal(3 * 16000)).astype(np.float32),
            (0.05 * rng.standard_normal(3 * 16000)).astype(np.float32),
        ]
    )
    result = await stream_audio(earshot_server.ws_url, audio, speed=4.0)
    assert result.text == ""
    assert not [m for m in result.messages if isinstance(m, Partial)]
    assert isinstance(result.messages[-1], Closed)


@pytest.mark.parametrize(
    ("sample_rate", "encoding"), [(8000, "pcm_s16le"), (16000, "pcm_f32le"), (44100, "pcm_f32le")]
)
async def test_other_rates_and_encodings(
    earshot_server: ServerProcess, speech: dict[str, Clip], sample_rate: int, encoding: str
) -> None:
    clip = speech["ljspeech_LJ001-0004"]
    result = await stream_audio(
        earshot_server.ws_url,
        clip.audio(sample_rate),
        sample_rate=sample_rate,
        encoding=encoding,
        speed=3.0,
        trailing_silence_s=1.0,
        language="en",
    )
    assert error_rate([clip.text], [result.text]) <= WER_BOUND


async def test_msgpack_format(earshot_server: ServerProcess, speech: dict[str, Clip]) -> None:
    clip = speech["cmuarctic_a0024"]
    result = await stream(earshot_server, clip, format="msgpack")
    assert error_rate([clip.text], [result.text]) <= WER_BOUND
    assert isinstance(result.messages[-1], Closed)


async def test_word_timestamps(earshot_server: ServerProcess, speech: dict[str, Clip]) -> None:
    clip = speech["ljspeech_LJ001-0004"]
    result = await stream(earshot_server, clip, word_timestamps=True)
    (final,) = [f for f in result.finals if f.text]
    assert len(final.words) >= 10
    assert all(final.start - 0.01 <= w.start <= w.end <= final.end + 0.01 for w in final.words)
    assert all(a.start <= b.start for a, b in zip(final.words, final.words[1:]))


async def test_prompt_parameter(earshot_server: ServerProcess, speech: dict[str, Clip]) -> None:
    clip = speech["cmusphinx_goforward"]
    result = await stream(earshot_server, clip, prompt="Robot commands: go forward, turn left.")
    assert "forward" in result.text.lower()


async def test_finalize_ends_the_utterance_mid_speech(
    earshot_server: ServerProcess, speech: dict[str, Clip]
) -> None:
    audio = speech["ljspeech_LJ001-0001"].audio()[: 4 * 16000]
    async with connect(earshot_server.ws_url, language="en") as stream:
        for i in range(0, len(audio), 3200):
            await stream.send(audio[i : i + 3200])
        await stream.finalize()
        await stream.keepalive()
        final = None
        while final is None:
            message = await asyncio.wait_for(stream.recv(), 10)
            if isinstance(message, Final):
                final = message
        assert final.utterance == 0 and "printing" in final.text.lower()
        await stream.close_stream()
        assert isinstance(await asyncio.wait_for(stream.recv(), 10), Closed)


async def test_real_time_stream_latency(
    earshot_server: ServerProcess, speech: dict[str, Clip]
) -> None:
    """At real-time pace the final comes soon after the speech ends: endpointing (0.5 s)
    plus one decode. 2.5 s is a loose correctness bound; benchmarks measure the real figure."""
    clip = speech["cmuarctic_a0024"]
    result = await stream(earshot_server, clip, speed=1.0)
    (final,) = [f for f in result.finals if f.text]
    assert result.arrival_of(final) - final.end <= 2.5
    first_partial = next(m for m in result.messages if isinstance(m, Partial))
    assert result.arrival_of(first_partial) - first_partial.end <= 1.5


@pytest.mark.parametrize(
    "query",
    ["sample_rate=5", "encoding=mp3", "language=xx", "format=xml", "endpointing_ms=abc", "bogus=1"],
)
async def test_bad_parameters_are_refused_with_400(
    earshot_server: ServerProcess, query: str
) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with ws_connect(f"{earshot_server.ws_url}?{query}"):
            pass
    response = info.value.response
    assert response.status_code == 400
    body = json.loads(response.body or b"{}")
    assert body["parameter"] == query.split("=")[0]


async def test_unknown_text_frame_is_an_error_with_close_1003(
    earshot_server: ServerProcess,
) -> None:
    async with ws_connect(earshot_server.ws_url) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        await ws.send('{"type": "dance"}')
        error = json.loads(await ws.recv())
        assert error["type"] == "error" and error["code"] == "invalid_control_message"
        await ws.wait_closed()
        assert ws.close_code == 1003


async def test_sessions_beyond_capacity_are_refused_with_1013() -> None:
    with ServerProcess("--max-sessions", "1") as server:
        async with connect(server.ws_url):
            with pytest.raises(Overloaded):
                async with connect(server.ws_url):
                    pass
        # Capacity is back once the server has seen the first session leave.
        for _ in range(50):
            try:
                async with connect(server.ws_url) as again:
                    assert again.ready is not None
                    return
            except Overloaded:
                await asyncio.sleep(0.1)
        pytest.fail("the slot of a closed session was never released")
