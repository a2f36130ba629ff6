"""The browser demo at ``/`` and the JS SDK it runs on, served at ``/sdk/``.

The page imports the SDK's own ES modules from ``/sdk/`` (no copy, no build step).
Where they come from:

* development / editable install: the repository's ``client_js/src`` (and, for the
  msgpack format, ``client_js/node_modules/@msgpack/msgpack/dist.esm`` after ``npm ci``);
* built wheel: ``earshot/static/sdk`` and ``earshot/static/sdk-vendor/msgpack``, put there
  by hatch ``force-include`` of those same two folders.
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

PACKAGE_DIR = Path(__file__).resolve().parent
STATIC_DIR = PACKAGE_DIR / "static"
DEMO_DIR = STATIC_DIR / "demo"
_REPO_CLIENT = PACKAGE_DIR.parent.parent / "client_js"

# Browsers refuse ES modules served with a non-JavaScript type; some systems' MIME
# tables do not know .mjs.
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/javascript", ".mjs")


def _first_dir(*candidates: Path, marker: str) -> Path | None:
    for candidate in candidates:
        if (candidate / marker).is_file():
            return candidate
    return None


def sdk_dir() -> Path | None:
    """The SDK's ``src`` folder: the repository's when running from a checkout, else packaged."""
    return _first_dir(_REPO_CLIENT / "src", STATIC_DIR / "sdk", marker="index.js")


def msgpack_dir() -> Path | None:
    """The ESM build of @msgpack/msgpack (only needed by pages using format=msgpack)."""
    return _first_dir(
        _REPO_CLIENT / "node_modules" / "@msgpack" / "msgpack" / "dist.esm",
        STATIC_DIR / "sdk-vendor" / "msgpack",
        marker="index.mjs",
    )


class _NoCacheStatic(StaticFiles):
    """Static files that browsers revalidate on every load (the demo and SDK change with
    the server; a stale module mixed with fresh ones breaks imports)."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        return response


async def _index(request: Request) -> Response:
    return FileResponse(DEMO_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def demo_routes() -> list[BaseRoute]:
    """Routes for the demo page (``/``, ``/demo/...``) and the SDK (``/sdk/...``)."""
    routes: list[BaseRoute] = [
        Route("/", _index, methods=["GET", "HEAD"]),
        Mount("/demo", app=_NoCacheStatic(directory=DEMO_DIR), name="demo"),
    ]
    vendor = msgpack_dir()
    if vendor is not None:
        routes.append(Mount("/sdk/vendor/msgpack", app=_NoCacheStatic(directory=vendor)))
    sdk = sdk_dir()
    if sdk is not None:
        routes.append(Mount("/sdk", app=_NoCacheStatic(directory=sdk), name="sdk"))
    return routes
