"""The Twilio bridge in docs/telephony.md, run as written: a real recording played into it
as Twilio Media Streams sends a call (μ-law at 8 kHz in 20 ms `media` events), through a
real server, and its printed finals must hold the words."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import Clip
from tests.waiting import poll_until
from websockets.asyncio.client import connect as ws_connect

from earshot.audio import encode_g711
from earshot.server_process import ServerProcess
from earshot.wer import error_rate

DOC = Path(__file__).resolve().parents[1] / "docs" / "telephony.md"
CLIPS = ["ljspeech_LJ001-0004", "cmuarctic_a0024"]
SPEED = 3.0
"""Media events three times faster than a call would send them: the bridge and the
server don't care, and the test takes a third of the time."""


def bridge_source() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 1, "docs/telephony.md should hold one python block: the bridge"
    return blocks[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def bridge(earshot_server: ServerProcess, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    script, out = tmp_path / "twilio_bridge.py", tmp_path / "finals.jsonl"
    script.write_text(bridge_source())
    port = free_port()
    env = {**os.environ, "EARSHOT_URL": earshot_server.ws_url.removesuffix("/v1/listen")}
    with out.open("w") as stdout, subprocess.Popen(
        [sys.executable, str(script), str(port)],
        stdout=stdout, stderr=subprocess.PIPE, text=True, env=env,
    ) as process:  # fmt: skip
        try:
            assert process.stderr is not None
            line = process.stderr.readline()
            assert f"127.0.0.1:{port}" in line, line
            yield port, out
        finally:
            process.terminate()
            process.wait(10)


async def play_call(port: int, audio: np.ndarray) -> None:
    payload = encode_g711(audio, "pcm_mulaw")
    async with ws_connect(f"ws://127.0.0.1:{port}") as twilio:
        await twilio.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1"}))
        media_format = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
        start = {"streamSid": "MZ0", "callSid": "CA0", "mediaFormat": media_format}
        await twilio.send(json.dumps({"event": "start", "sequenceNumber": "1", "start": start}))
        for n, offset in enumerate(range(0, len(payload), 160)):
            chunk = base64.b64encode(payload[offset : offset + 160]).decode()
            media = {"track": "inbound", "chunk": str(n + 1), "timestamp": str(20 * n)}
            event = {"event": "media", "streamSid": "MZ0", "media": {**media, "payload": chunk}}
            await twilio.send(json.dumps(event))
            await asyncio.sleep(0.02 / SPEED)
        await twilio.send(json.dumps({"event": "stop", "streamSid": "MZ0"}))


def test_the_documented_twilio_bridge_transcribes_a_call(
    bridge: tuple[int, Path], speech: dict[str, Clip]
) -> None:
    port, out = bridge
    clips = [speech[name] for name in CLIPS]
    pause = np.zeros(8000, np.float32)
    call = np.concatenate([part for clip in clips for part in (clip.audio(8000), pause)])
    asyncio.run(play_call(port, call))

    def finals() -> list[dict[str, object]]:
        lines = out.read_text().splitlines()
        return [json.loads(line) for line in lines] if len(lines) >= len(clips) else []

    printed = poll_until(finals, 60, what="the bridge to print a final per utterance")
    assert [f["utterance"] for f in printed] == list(range(len(printed)))
    text = " ".join(str(f["text"]) for f in printed)
    assert error_rate([" ".join(c.text for c in clips)], [text]) <= 0.15, text
