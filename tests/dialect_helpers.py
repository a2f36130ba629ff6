"""Helpers shared by the end-to-end tests of the wire dialects (Deepgram v1 and v2,
OpenAI Realtime, Pipecat's Deepgram plugins): a real server with one API key, and the
Deepgram SDK pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import httpx
import pytest
from deepgram import DeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.environment import DeepgramClientEnvironment
from tests.conftest import ARTIFACTS
from websockets.exceptions import InvalidStatus

from earshot.server_process import ServerProcess


@contextmanager
def keyed_server(
    tmp_path_factory: pytest.TempPathFactory, name: str, key: str, *options: str
) -> Iterator[ServerProcess]:
    """A real server that accepts ``key`` (as ``name=agent``), its data and log under
    ``name``; ``options`` are more ``earshot serve`` arguments."""
    ARTIFACTS.mkdir(exist_ok=True)
    folder = tmp_path_factory.mktemp(name)
    keys = folder / "keys"
    keys.write_text(f"{key} name=agent\n")
    with ServerProcess(
        "--api-keys-file", str(keys), "--data-dir", str(folder / "data"), *options,
        log_path=ARTIFACTS / f"{name}-server.log",
    ) as server:  # fmt: skip
        yield server


def deepgram_client(server: ServerProcess, key: str, http: httpx.Client) -> DeepgramClient:
    """The Deepgram SDK with every base URL on the server's ``/deepgram``; ``http`` is one
    connection pool for a module's clients (each would otherwise leave its own open)."""
    base = f"127.0.0.1:{server.port}/deepgram"
    environment = DeepgramClientEnvironment(
        base=f"http://{base}",
        production=f"ws://{base}",
        agent=f"ws://{base}",
        agent_rest=f"http://{base}",
    )
    return DeepgramClient(api_key=key, environment=environment, httpx_client=http)


def refused_status(connect: Callable[[], AbstractContextManager[Any]]) -> int:
    """The HTTP status of a handshake the server must refuse. The SDK turns a refusal
    into ApiError where its websockets version raises the exception it expects; with
    websockets >= 14 the InvalidStatus comes through as it is."""
    with pytest.raises((ApiError, InvalidStatus)) as error, connect():
        pass
    refusal = error.value
    if isinstance(refusal, InvalidStatus):
        assert refusal.response.headers["dg-error"]
        return int(refusal.response.status_code)
    assert refusal.status_code is not None
    return int(refusal.status_code)
