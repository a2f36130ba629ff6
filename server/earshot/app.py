"""The Starlette application: routes and the lifespan that loads the model once."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from earshot.access import http_middleware, token_endpoint
from earshot.config import ServerConfig
from earshot.demo import demo_routes
from earshot.dialects.deepgram import deepgram_listen
from earshot.dialects.deepgram_rest import deepgram_prerecorded
from earshot.dialects.deepgram_v2 import deepgram_v2_listen
from earshot.dialects.openai_realtime import client_secrets, openai_realtime
from earshot.jobs import open_jobs
from earshot.jobs.routes import jobs_routes
from earshot.listen import listen_endpoint
from earshot.runtime import Runtime


async def healthz(request: Request) -> JSONResponse:
    """Process alive (liveness)."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Model loaded, engine thread running and keeping up, not draining (readiness)."""
    runtime: Runtime = request.app.state.runtime
    keeping_up = runtime.keeping_up()
    ready = runtime.scheduler.alive and keeping_up and not runtime.draining
    body = {
        "ready": ready,
        "model": runtime.engine.model_name,
        "device": runtime.engine.device,
        "active_sessions": runtime.admission.active,
        "draining": runtime.draining,
        "keeping_up": keeping_up,
        "replica": runtime.config.replica,
    }
    return JSONResponse(body, status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    """Prometheus scrape endpoint (see metrics.py for what each series means)."""
    runtime: Runtime = request.app.state.runtime
    body, content_type = runtime.metrics.exposition()
    return Response(body, media_type=content_type)


def create_app(config: ServerConfig, runtime: Runtime | None = None) -> Starlette:
    """Build the app; ``runtime`` may be passed in (tests), else it's loaded at startup."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        rt = runtime or Runtime.load(config)
        app.state.runtime = rt
        rt.start()
        app.state.jobs = open_jobs(config.jobs, rt)
        app.state.jobs.start()
        try:
            yield
        finally:
            await app.state.jobs.stop()
            rt.stop()

    routes: list[BaseRoute] = [
        WebSocketRoute("/v1/listen", listen_endpoint),
        WebSocketRoute("/deepgram/v1/listen", deepgram_listen),
        Route("/deepgram/v1/listen", deepgram_prerecorded, methods=["POST"]),
        WebSocketRoute("/v1/realtime", openai_realtime),
        Route("/v1/realtime/client_secrets", client_secrets, methods=["POST"]),
        WebSocketRoute("/deepgram/v2/listen", deepgram_v2_listen),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/v1/auth/token", token_endpoint, methods=["POST"]),
    ]
    routes += jobs_routes()
    routes += demo_routes()  # last: it serves `/`
    return Starlette(routes=routes, lifespan=lifespan, middleware=http_middleware(config.security))
