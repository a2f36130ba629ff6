"""The WebSocket protocol the server runs (handshake.py), on a real uvicorn in-process with
stand-in apps: the opening deadline, and sends on a connection that failed under the app."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from earshot.handshake import guarded_protocol, guarded_ws_protocol
from earshot.server_process import free_port

pytestmark = pytest.mark.asyncio

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(app: App, handshake_timeout_s: float, **config: Any) -> AsyncIterator[int]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            http=guarded_protocol(handshake_timeout_s),
            ws=guarded_ws_protocol(handshake_timeout_s),
            lifespan="off",
            log_level="critical",
            **config,
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def _upgrade_request() -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def test_a_handshake_the_app_never_completes_is_closed_at_the_deadline() -> None:
    release = asyncio.Event()

    async def never_accepts(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()  # websocket.connect
        await release.wait()

    async with serving(never_accepts, handshake_timeout_s=0.5) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_upgrade_request())
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, never upgraded
        assert asyncio.get_running_loop().time() - started < 2
        writer.close()
        release.set()


async def test_a_peer_that_stops_answering_pings_is_dropped_while_we_close() -> None:
    """The app closes while a keepalive ping is unanswered: the connection ends at the ping
    deadline, not after the closing handshake's 10 s wait for the peer's close frame."""

    async def closes_soon(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await asyncio.sleep(0.5)  # a ping went out at 0.3 s; its deadline is 0.9 s
        await send({"type": "websocket.close", "code": 1008})

    async with serving(
        closes_soon, handshake_timeout_s=5, ws_ping_interval=0.3, ws_ping_timeout=0.6
    ) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_upgrade_request())
        started = asyncio.get_running_loop().time()
        while await asyncio.wait_for(reader.read(65536), 15):  # never answers, never closes
            pass
        assert asyncio.get_running_loop().time() - started < 3
        writer.close()


async def test_a_send_after_the_connection_failed_is_a_disconnect_not_an_app_bug() -> None:
    """A frame over ``ws_max_size`` fails the connection under the app (close 1009); the
    app's next send must raise the "peer went away" error, not a RuntimeError."""
    raised: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    async def sends_after_failure(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "ready"})
        # The oversized frame fails the connection: the disconnect reaches the app before
        # uvicorn has seen the transport go (connection_lost), and the app sends at once.
        assert (await receive())["type"] == "websocket.disconnect"
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except BaseException as exc:  # the test reports whatever it was
            raised.set_result(exc)
        else:
            raised.set_result(None)

    async with serving(sends_after_failure, handshake_timeout_s=5, ws_max_size=1024) as port:
        async with ws_connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
            assert await ws.recv() == "ready"
            with contextlib.suppress(ConnectionClosed):
                await ws.send(b"x" * 4096)
                await ws.wait_closed()
            assert ws.close_code == 1009
        error = await asyncio.wait_for(raised, 5)
    assert isinstance(error, OSError), repr(error)  # uvicorn's ClientDisconnected
