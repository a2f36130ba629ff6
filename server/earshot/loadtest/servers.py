"""The server a load runs against: one given by URL, or one started here per config.

The named configs are what the benchmarks compare; "plain" is how a straightforward
Whisper server works: one model on all cores, one utterance at a time, always a padded
30 s window, partials at a fixed 0.5 s cadence.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from earshot.loadtest.metrics import http_base, readyz
from earshot.server_process import ServerProcess

ONE_REPLICA = ("--engine-workers", "1", "--cpu-threads", str(os.cpu_count() or 1))
"""One model replica on every core, as a plain faster-whisper ``WhisperModel`` runs."""

CONFIGS: dict[str, tuple[str, ...]] = {
    "earshot": (),
    "max-batch-1": ("--max-batch", "1"),
    "full-window": ("--full-window",),
    "one-replica": ONE_REPLICA,
    "plain": (*ONE_REPLICA, "--max-batch", "1", "--full-window", "--partial-interval", "0.5"),
}


@dataclass
class Target:
    ws_url: str
    http_url: str
    server_args: tuple[str, ...] | None
    """None: an outside server, started by someone else."""
    info: dict[str, Any] = field(default_factory=dict)
    """``/readyz`` at the start: model, device."""

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Until no session is open (the previous step's stragglers have finished)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not readyz(self.http_url).get("active_sessions"):
                return True
            time.sleep(0.5)
        return False


@contextlib.contextmanager
def target(
    url: str | None,
    server_args: Sequence[str] = (),
    *,
    log_path: Path | None = None,
) -> Iterator[Target]:
    """The server at ``url``, or a fresh ``earshot serve *server_args`` on a free port."""
    if url:
        base = http_base(url)
        yield Target(url, base, None, readyz(base))
        return
    with ServerProcess(*server_args, log_path=log_path) as server:
        yield Target(server.ws_url, server.http_url, tuple(server_args), readyz(server.http_url))
