"""The Starlette application: routes and the lifespan that loads the model once."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute

from earshot.config import ServerConfig
from earshot.listen import listen_endpoint
from earshot.runtime import Runtime


async def healthz(request: Request) -> JSONResponse:
    """Process alive (liveness)."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Model loaded, engine thread running, not draining (readiness)."""
    runtime: Runtime = request.app.state.runtime
    ready = runtime.scheduler.alive and not runtime.draining
    body = {
        "ready": ready,
        "model": runtime.engine.model_name,
        "device": runtime.engine.device,
        "active_sessions": runtime.admission.active,
        "draining": runtime.draining,
    }
    return JSONResponse(body, status_code=200 if ready else 503)


def create_app(config: ServerConfig, runtime: Runtime | None = None) -> Starlette:
    """Build the app; ``runtime`` may be passed in (tests), else it's loaded at startup."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        rt = runtime or Runtime.load(config)
        app.state.runtime = rt
        rt.start()
        try:
            yield
        finally:
            rt.stop()

    routes: list[BaseRoute] = [
        WebSocketRoute("/v1/listen", listen_endpoint),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
