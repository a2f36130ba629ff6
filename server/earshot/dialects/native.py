"""Earshot's own ``/v1/listen`` dialect (docs/protocol.md): the wire format of
protocol.py, as it was before dialects existed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket

from earshot import protocol
from earshot.access import Denied
from earshot.dialects.base import Frame
from earshot.protocol import ParameterError, SessionOptions
from earshot.session import StreamSession


class NativeCodec:
    def __init__(self, fmt: str) -> None:
        self.format = fmt

    def parse_control(self, text: str) -> str | protocol.Configure:
        return protocol.parse_control_message(text)

    def applied(self, control: str) -> None:
        pass

    def encode(self, message: Mapping[str, Any]) -> list[Frame]:
        return [protocol.encode_message(message, self.format)]


class NativeDialect:
    name = "native"
    busy_status: int | None = None
    """Accept, then ``overloaded`` and close 1013: the contract's refusal."""

    def parse_options(
        self, query: Mapping[str, str], languages: frozenset[str] | None
    ) -> SessionOptions:
        return protocol.parse_options(query, languages)

    def credentials(self, websocket: WebSocket) -> tuple[str | None, str | None]:
        return websocket.headers.get("authorization"), websocket.query_params.get("token")

    def subprotocol(self, websocket: WebSocket) -> str | None:
        return None

    def parameter_refusal(self, error: ParameterError) -> Response:
        return JSONResponse(error.body(), status_code=400)

    def access_refusal(self, denied: Denied) -> Response:
        return denied.response()

    def busy_refusal(self, status: int, reason: str) -> Response:
        body = protocol.error_message("overloaded", reason)
        return JSONResponse(body, status_code=status, headers={"Retry-After": "1"})

    def codec(self, session: StreamSession, model: str) -> NativeCodec:
        return NativeCodec(session.options.format)


NATIVE = NativeDialect()
