"""SIGTERM drains a replica: open sessions get the finals of what they sent, then 1001."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time

import numpy as np
import pytest
from tests.conftest import Clip
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from earshot.client import Closed, Final, Message, connect, send_paced
from earshot.server_process import ServerProcess

pytestmark = pytest.mark.asyncio


async def test_sigterm_flushes_finals_then_closes_1001_and_exits(
    speech: dict[str, Clip],
) -> None:
    audio = speech["ljspeech_LJ001-0001"].audio()[: 16000 * 4]  # stop mid-sentence
    with ServerProcess("--replica-id", "replica-under-test") as server:
        async with connect(server.ws_url, language="en") as stream:
            assert stream.ready is not None and stream.ready.replica == "replica-under-test"
            await send_paced(stream, audio, speed=4.0)
            server.signal(signal.SIGTERM)
            messages: list[Message] = []
            async with asyncio.timeout(30):
                async for message in stream:
                    messages.append(message)
            finals = [m for m in messages if isinstance(m, Final)]
            assert finals and "printing" in " ".join(f.text for f in finals).lower()
            # The client never sent close_stream: no `closed`, a 1001 instead.
            assert not any(isinstance(m, Closed) for m in messages)
            assert stream.close_code == 1001
        assert server.process is not None
        deadline = time.monotonic() + 20
        while server.process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert server.process.poll() is not None, "server still running after its drain"


async def test_sigterm_drains_a_deepgram_stream_the_same_way(speech: dict[str, Clip]) -> None:
    """Drain is the connection's, not the dialect's: a Deepgram client gets its final
    ``Results`` for what it sent, then 1001."""
    audio = speech["ljspeech_LJ001-0001"].audio()[: 16000 * 4]
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    with ServerProcess() as server:
        url = f"ws://127.0.0.1:{server.port}/deepgram/v1/listen?encoding=linear16&sample_rate=16000"
        async with ws_connect(url) as socket:
            for i in range(0, len(pcm), 3200):  # 100 ms frames at 4x real time
                await socket.send(pcm[i : i + 3200])
                await asyncio.sleep(0.025)
            server.signal(signal.SIGTERM)
            results: list[dict[str, object]] = []
            async with asyncio.timeout(30):
                with contextlib.suppress(ConnectionClosed):
                    async for frame in socket:
                        results.append(json.loads(frame))
            assert socket.close_code == 1001
    finals = [r for r in results if r.get("type") == "Results" and r.get("is_final")]
    text = " ".join(str(r["channel"]["alternatives"][0]["transcript"]) for r in finals)  # type: ignore[index]
    assert "printing" in text.lower(), results
