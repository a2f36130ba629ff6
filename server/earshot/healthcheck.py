"""Container health check without curl: ``python -m earshot.healthcheck [--ready]``.

Exits 0 when ``/healthz`` (or ``/readyz`` with ``--ready``) of the server on
``$EARSHOT_PORT`` (8000) answers 200 within 4 seconds, else 1. The Dockerfile's
HEALTHCHECK runs it.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence


def check(url: str, timeout: float = 4.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    path = "/readyz" if "--ready" in args else "/healthz"
    port = os.environ.get("EARSHOT_PORT") or "8000"
    ok = check(f"http://127.0.0.1:{port}{path}")
    if not ok:
        print(f"earshot healthcheck: {path} on port {port} failed", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
