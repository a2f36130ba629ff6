"""The real server starts, serves a stream and stops without a single warning: no
``UvicornDeprecationWarning`` (the legacy ``websockets`` protocol), no ``DeprecationWarning``
from our code or a dependency, no warning in the log."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
from websockets.asyncio.client import connect as ws_connect

from earshot.server_process import ServerProcess

pytestmark = pytest.mark.asyncio


async def _one_stream(url: str) -> int | None:
    async with ws_connect(url) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        await ws.send(b"\0\0" * 16000)  # a second of silence
        await ws.send(json.dumps({"type": "close_stream"}))
        assert [json.loads(m)["type"] async for m in ws] == ["closed"]
    return ws.close_code


async def test_the_server_starts_streams_and_stops_without_warnings(tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    # PYTHONWARNINGS=default shows the DeprecationWarnings Python hides by default.
    server = ServerProcess(log_path=log_path, env={"PYTHONWARNINGS": "default"})
    with server:
        assert await asyncio.wait_for(_one_stream(server.ws_url), 60) == 1000
    # SIGTERM drains, then uvicorn re-raises the signal it caught.
    assert server.process is not None and server.process.returncode in (0, -signal.SIGTERM)
    log = log_path.read_text()
    assert "warning" not in log.lower(), log
