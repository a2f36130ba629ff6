"""Admission control: refuse a new session (close 1013) rather than let every session
fall behind real time.

A session is refused when the configured cap is reached, or when the engine is
already saturated: a final has waited longer than ``max_final_delay_s``, or finals
kept the engine busy more than ``max_busy_ratio`` of the recent window. Partials don't count:
they fill idle engine time by design, so only the finals' share of engine time
measures whether we keep up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from earshot.config import AdmissionConfig


class LoadSource(Protocol):
    def oldest_final_wait(self) -> float: ...
    def busy_ratio(self, window_s: float = 10.0, *, finals_only: bool = False) -> float: ...


@dataclass
class AdmissionController:
    config: AdmissionConfig
    load: LoadSource
    active: int = 0

    def refusal(self) -> str | None:
        """Why a new session can't be served now, or None to accept it."""
        if self.active >= self.config.max_sessions:
            return f"server at its limit of {self.config.max_sessions} concurrent sessions"
        wait = self.load.oldest_final_wait()
        if wait > self.config.max_final_delay_s:
            return f"engine overloaded: finals waiting {wait:.1f} s"
        if self.active and self.load.busy_ratio(finals_only=True) > self.config.max_busy_ratio:
            return "engine overloaded: no spare capacity for another real-time stream"
        return None
