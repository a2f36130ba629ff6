"""End to end through a real server: G.711 at 8 kHz, Ogg/WebM Opus, eager end of turn."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from tests.conftest import Clip, trimmed
from tests.test_audio_codecs import encode_opus
from websockets.asyncio.client import connect as ws_connect

from earshot.client import (
    Closed,
    EagerEndOfTurn,
    Error,
    Final,
    Message,
    Stream,
    TurnResumed,
    connect,
    send_paced,
    stream_audio,
)
from earshot.server_process import ServerProcess
from earshot.wer import error_rate

pytestmark = pytest.mark.asyncio

ENGLISH = ["ljspeech_LJ001-0001", "cmuarctic_a0024"]
WER_BOUND = 0.15
"""Streaming on these clips is ~0.05 (test_streaming_e2e); telephone-band (8 kHz G.711)
and 32 kbit/s Opus cost a little more. A lost or garbled second is far above this."""


async def collect(stream: Stream, timeout_s: float = 120.0) -> list[Message]:
    async def read() -> list[Message]:
        return [message async for message in stream]

    return await asyncio.wait_for(read(), timeout_s)


@pytest.mark.parametrize("encoding", ["pcm_mulaw", "pcm_alaw"])
async def test_g711_at_8khz_is_transcribed(
    encoding: str, earshot_server: ServerProcess, speech: dict[str, Clip]
) -> None:
    clips = [speech[name] for name in ENGLISH]
    results = await asyncio.gather(
        *(
            stream_audio(
                earshot_server.ws_url,
                clip.audio(8000),
                sample_rate=8000,
                encoding=encoding,
                language="en",
                speed=3.0,
                chunk_s=0.02,  # 160-byte frames, as telephony bridges send
                trailing_silence_s=1.0,
            )
            for clip in clips
        )
    )
    assert all(r.close_code == 1000 for r in results)
    assert error_rate([c.text for c in clips], [r.text for r in results]) <= WER_BOUND


@pytest.mark.parametrize("container", ["ogg", "webm"])
async def test_containerised_opus_streamed_in_small_chunks_is_transcribed(
    container: str, earshot_server: ServerProcess, speech: dict[str, Clip]
) -> None:
    clip = speech["ljspeech_LJ001-0001"]
    audio = np.concatenate([clip.audio(), np.zeros(16000, np.float32)])
    data = encode_opus(audio, container)
    async with connect(earshot_server.ws_url, encoding=f"{container}_opus", language="en") as s:
        assert s.ready is not None and s.ready.raw["encoding"] == f"{container}_opus"
        chunk = 400  # about 0.1 s of 32 kbit/s Opus, cut anywhere in pages and blocks
        for offset in range(0, len(data), chunk):
            await s.send(data[offset : offset + chunk])
            await asyncio.sleep(0.03)
        await s.close_stream()
        messages = await collect(s)
    assert isinstance(messages[-1], Closed)
    text = " ".join(m.text for m in messages if isinstance(m, Final) and m.text)
    assert error_rate([clip.text], [text]) <= WER_BOUND
    finals = [m for m in messages if isinstance(m, Final)]
    assert finals[-1].end <= len(audio) / 16000 + 0.05  # the stream clock is the audio's


async def test_malformed_opus_is_invalid_audio_with_close_1003(
    earshot_server: ServerProcess,
) -> None:
    async with ws_connect(earshot_server.ws_url + "?encoding=ogg_opus") as socket:
        assert json.loads(await socket.recv())["type"] == "ready"
        await socket.send(b"RIFF" + bytes(200))
        error = json.loads(await asyncio.wait_for(socket.recv(), 30))
        assert error["type"] == "error" and error["code"] == "invalid_audio"
        await asyncio.wait_for(socket.wait_closed(), 30)
        assert socket.close_code == 1003
    # The server is unharmed: the next stream works.
    async with connect(earshot_server.ws_url, encoding="ogg_opus") as stream:
        await stream.close_stream()
        assert isinstance((await collect(stream))[-1], Closed)


async def test_eager_end_of_turn_on_a_mid_sentence_pause(
    earshot_server: ServerProcess, speech: dict[str, Clip]
) -> None:
    """Two clips 400 ms apart: the pause passes the 250 ms speculation point (eager end of
    turn), speech resumes before endpointing (turn resumed), and one final has both.

    ``endpointing_ms=1000``: the default 500 ms leaves only 100 ms for the quiet that the
    voice detector hears at the clips' own edges, and the pause must not be the endpoint."""
    first, second = speech["cmusphinx_goforward"], speech["cmuarctic_a0024"]
    gap = np.zeros(int(0.4 * 16000), np.float32)
    a, b = trimmed(first.audio()), trimmed(second.audio())
    async with connect(
        earshot_server.ws_url, eager_eot=True, language="en", endpointing_ms=1000
    ) as stream:
        for offset in range(0, len(a) + len(gap), 1600):
            await stream.send(np.concatenate([a, gap])[offset : offset + 1600])
        # Wait for the eager message before the speech goes on: the pipeline runs on the
        # stream's audio clock, so the wall-clock wait changes nothing else.
        before: list[Message] = []
        while not isinstance(before[-1:] and before[-1], EagerEndOfTurn | Final | Error):
            before.append(await asyncio.wait_for(stream.recv(), 60))
        rest = np.concatenate([b, np.zeros(16000, np.float32)])
        for offset in range(0, len(rest), 1600):
            await stream.send(rest[offset : offset + 1600])
        await stream.close_stream()
        after = await collect(stream)
    assert not [m for m in before if isinstance(m, Error | Final)]
    eager = before[-1]
    assert isinstance(eager, EagerEndOfTurn) and eager.utterance == 0
    assert error_rate([first.text], [eager.text]) <= 0.25
    assert eager.end <= (len(a) + len(gap)) / 16000
    kinds = [type(m) for m in after if not isinstance(m, EagerEndOfTurn)]
    assert TurnResumed in kinds and kinds.index(TurnResumed) < kinds.index(Final)
    (resumed,) = [m for m in after if isinstance(m, TurnResumed)]
    assert resumed.utterance == 0
    finals = [m for m in after if isinstance(m, Final)]
    assert [f.utterance for f in finals] == [0]
    assert error_rate([f"{first.text} {second.text}"], [finals[0].text]) <= 0.2
    assert isinstance(after[-1], Closed)


async def test_old_clients_get_no_eager_messages(
    earshot_server: ServerProcess, speech: dict[str, Clip]
) -> None:
    clip = speech["cmusphinx_goforward"]
    result = await stream_audio(
        earshot_server.ws_url, clip.audio(), speed=3.0, trailing_silence_s=1.0, language="en"
    )
    assert not [m for m in result.messages if isinstance(m, EagerEndOfTurn | TurnResumed)]
    assert result.finals


NUMBERS_IN_WORDS = "Numbers are written as words: one, two, three, four, five, six, seven, ten."


async def test_configure_sets_the_prompt_of_the_utterances_after_it(
    earshot_server: ServerProcess, speech: dict[str, Clip]
) -> None:
    """Whisper writes "go forward ten meters" with digits unless the prompt spells numbers
    out (tests/test_engine.py): sent as ``configure`` before the speech, it must reach the
    decoder; the utterance before it keeps the stream's first prompt (none)."""
    clip = speech["cmusphinx_goforward"]
    pause = np.zeros(16000, np.float32)
    async with connect(earshot_server.ws_url, language="en", interim_results=False) as stream:
        await send_paced(stream, np.concatenate([clip.audio(), pause]), speed=0)
        first: list[Message] = []
        while not isinstance(first[-1:] and first[-1], Final | Error):
            first.append(await asyncio.wait_for(stream.recv(), 60))
        await stream.configure(prompt=NUMBERS_IN_WORDS)
        await send_paced(stream, np.concatenate([clip.audio(), pause]), speed=0)
        await stream.close_stream()
        rest = await collect(stream)
    finals = [m for m in [*first, *rest] if isinstance(m, Final)]
    assert [f.utterance for f in finals] == [0, 1], [*first, *rest]
    assert any(ch.isdigit() for ch in finals[0].text), finals[0].text
    assert not any(ch.isdigit() for ch in finals[1].text), finals[1].text
    assert error_rate([clip.text], [finals[1].text]) <= 0.25
