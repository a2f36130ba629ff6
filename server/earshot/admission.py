"""Admission control: refuse a new session (close 1013) rather than let every session
fall behind real time.

A session is refused when the configured cap is reached, or when the engine has no
room for it:

- a final has waited longer than ``max_final_delay_s``;
- finals kept the engine busy more than ``max_busy_ratio`` of the recent window;
- one more session would take the finals past ``max_busy_ratio``, by what a session
  cost while the session count last held still for a whole window. This is what
  refuses part of a crowd that connects at once, before any of it has spoken.

Partials don't count: they fill idle engine time by design, so only the finals' share
of engine time measures whether we keep up.

Theory of operation
-------------------
State: ``active`` (sessions admitted and not yet closed), ``_changed`` (when ``active``
last changed) and ``per_session`` (the finals' share of engine time one session costs;
None until learned). The load itself is not kept here: it is read when needed from a
``LoadSource`` — the scheduler, whose ``busy_ratio`` comes from its bounded load windows
(engine_load.py) and whose ``oldest_final_wait`` from its queue.

Transitions: ``opened``/``closed`` first try to learn, then move ``active`` by one and
restart the steadiness clock. Learning (``_learn``, also run by ``refusal``) happens only
when ``active`` has held still for a whole ``LOAD_WINDOW_S``: then the window's finals
busy ratio was produced by exactly ``active`` sessions, and ``per_session`` becomes that
ratio divided by them; otherwise the old estimate stays. ``refusal`` changes nothing but
that estimate: it checks the cap, the oldest final's wait, the measured finals busy
ratio, and the projection ``(active + 1) * per_session``, in that order.

Why learn from a steady window: sessions that just came haven't spoken yet, and ones
that just left still show in the window, so a window across a change would misprice a
session; a stale but steady estimate is the better guess for a crowd arriving at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from earshot.config import AdmissionConfig

LOAD_WINDOW_S = 10.0
"""The engine-time window admission reads; a session count must hold this long to be
learned from."""


class LoadSource(Protocol):
    def oldest_final_wait(self) -> float: ...
    def busy_ratio(self, window_s: float = 10.0, *, finals_only: bool = False) -> float: ...


@dataclass
class AdmissionController:
    config: AdmissionConfig
    load: LoadSource
    active: int = 0
    clock: Callable[[], float] = time.monotonic
    per_session: float | None = None
    """Finals' share of engine time per session, learned while ``active`` held still for
    a whole window (so sessions that just came or went don't skew it); None until then."""
    _changed: float = field(default=-math.inf, init=False)

    def opened(self) -> None:
        self._learn()
        self.active += 1
        self._changed = self.clock()

    def closed(self) -> None:
        self._learn()
        self.active -= 1
        self._changed = self.clock()

    def refusal(self) -> str | None:
        """Why a new session can't be served now, or None to accept it."""
        if self.active >= self.config.max_sessions:
            return f"server at its limit of {self.config.max_sessions} concurrent sessions"
        wait = self.load.oldest_final_wait()
        if wait > self.config.max_final_delay_s:
            return f"engine overloaded: finals waiting {wait:.1f} s"
        self._learn()
        busy = self.load.busy_ratio(LOAD_WINDOW_S, finals_only=True) if self.active else 0.0
        projected = (self.active + 1) * (self.per_session or 0.0)
        if max(busy, projected) > self.config.max_busy_ratio:
            return "engine overloaded: no spare capacity for another real-time stream"
        return None

    def _learn(self) -> None:
        if self.active and self.clock() - self._changed >= LOAD_WINDOW_S:
            busy = self.load.busy_ratio(LOAD_WINDOW_S, finals_only=True)
            self.per_session = busy / self.active
