"""SIGTERM drains a replica: open sessions get the finals of what they sent, then 1001."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from tests.conftest import Clip

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
