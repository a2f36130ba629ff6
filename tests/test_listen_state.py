"""The ``/v1/listen`` adapter's connection state machine (listen.py), on a stand-in socket:
each way a connection ends, the close it gets, and what happens to the events that come
after the state they belong to."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

from earshot import protocol
from earshot.config import ServerConfig, StreamLimits
from earshot.listen import TRANSITIONS, Connection, Event, State, _serve
from earshot.metrics import Metrics
from earshot.protocol import SessionOptions
from earshot.session import StreamSession


class FakeSocket:
    """Records what the adapter sends; ``receive`` returns what the test feeds it. Closing
    queues the disconnect, as uvicorn does; once ``gone``, sends raise as Starlette's do."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed_with: tuple[int, str] | None = None
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.gone = False
        self.broken: Exception | None = None

    def feed_text(self, text: str) -> None:
        self.inbox.put_nowait({"type": "websocket.receive", "text": text})

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send_text(self, data: str) -> None:
        if self.broken is not None:
            raise self.broken
        if self.gone:
            raise WebSocketDisconnect(1006)
        self.sent.append(json.loads(data))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        if self.gone:
            raise WebSocketDisconnect(1006)
        assert self.closed_with is None, "closed twice"
        self.closed_with = (code, reason or "")
        self.inbox.put_nowait({"type": "websocket.disconnect", "code": code})

    def types(self) -> list[str]:
        return [m["type"] for m in self.sent]


def connect(socket: FakeSocket, max_outbound: int = 16) -> Connection:
    limits = StreamLimits(max_outbound_messages=max_outbound, idle_timeout_s=0)
    runtime = SimpleNamespace(config=ServerConfig(streams=limits), metrics=Metrics())
    session = StreamSession(SessionOptions(), vad=SimpleNamespace(process=lambda s: s[:0]))
    return Connection(socket, runtime, session)  # type: ignore[arg-type]


async def serve(connection: Connection) -> asyncio.Task[None]:
    """Run the connection to its end; returns its (finished) sender task."""
    sender = asyncio.create_task(connection.sender())
    await asyncio.wait_for(_serve(connection, sender), 5)
    await asyncio.wait({sender}, timeout=1)
    return sender


def test_the_table_is_total_and_only_socket_done_leaves_cut_off_and_closed_absorbs() -> None:
    assert set(TRANSITIONS) == set(State)
    assert all(set(row) == set(Event) for row in TRANSITIONS.values())
    assert set(TRANSITIONS[State.CLOSED].values()) == {State.CLOSED}
    assert {e for e, s in TRANSITIONS[State.CUT_OFF].items() if s is not State.CUT_OFF} == {
        Event.SOCKET_DONE
    }
    for state, row in TRANSITIONS.items():  # no way back to an earlier stage
        assert all(list(State).index(s) >= list(State).index(state) for s in row.values())


@pytest.mark.asyncio
async def test_close_stream_gets_closed_then_1000() -> None:
    socket = FakeSocket()
    connection = connect(socket)
    socket.feed_text('{"type": "close_stream"}')
    sender = await serve(connection)
    assert socket.types() == ["closed"] and socket.closed_with == (protocol.NORMAL, "")
    assert connection.state is State.CLOSED and sender.exception() is None


@pytest.mark.asyncio
async def test_a_drain_closes_1001_without_closed_and_a_second_end_changes_nothing() -> None:
    socket = FakeSocket()
    connection = connect(socket)
    connection.drain()
    connection.end(protocol.POLICY_VIOLATION, "idle_timeout")  # too late: the drain won
    connection.drain()
    assert connection.state is State.CLOSING
    await serve(connection)
    assert socket.types() == [] and socket.closed_with == (
        protocol.GOING_AWAY,
        "server shutting down",
    )


@pytest.mark.asyncio
async def test_a_drain_after_close_stream_lets_the_client_finish_normally() -> None:
    socket = FakeSocket()
    connection = connect(socket)
    connection.session.close_stream()
    connection.drain()
    connection.pump()
    await serve(connection)
    assert socket.types() == ["closed"] and socket.closed_with == (protocol.NORMAL, "")


@pytest.mark.asyncio
async def test_a_bad_control_message_gets_its_error_then_1003() -> None:
    socket = FakeSocket()
    connection = connect(socket)
    socket.feed_text('{"type": "reboot"}')
    await serve(connection)
    assert socket.types() == ["error"] and socket.sent[0]["code"] == "invalid_control_message"
    assert socket.closed_with == (protocol.UNSUPPORTED_DATA, "invalid_control_message")


@pytest.mark.asyncio
async def test_a_client_gone_mid_send_ends_the_connection_quietly() -> None:
    socket = FakeSocket()
    connection = connect(socket)
    socket.gone = True
    connection.send({"type": "partial", "utterance": 0, "text": "x"})
    sender = await serve(connection)
    assert connection.state is State.CLOSED and sender.exception() is None
    assert socket.closed_with is None


@pytest.mark.asyncio
async def test_a_bug_in_the_sender_is_not_swallowed() -> None:
    socket = FakeSocket()
    connection = connect(socket)
    socket.broken = ValueError("a bug")
    connection.send({"type": "partial", "utterance": 0, "text": "x"})
    sender = await serve(connection)
    assert isinstance(sender.exception(), ValueError)


@pytest.mark.asyncio
async def test_what_comes_after_the_close_frame_is_dropped_not_cut_off() -> None:
    socket = FakeSocket()
    connection = connect(socket, max_outbound=2)
    connection.session.close_stream()
    connection.pump()
    await serve(connection)
    for u in range(10):  # past the bound, but nothing more goes out anyway
        connection.send({"type": "final", "utterance": u, "text": "late"})
    assert connection.state is State.CLOSED and not connection.cut_off.is_set()
    assert len(connection.outbound) == 0 and socket.types() == ["closed"]
