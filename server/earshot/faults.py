"""Fault injection into the engine: a TEST HOOK, never for production.

``EARSHOT_FAULT_INJECT`` (read once at startup) wraps the scheduler's engine so the
fault paths can be tested end to end on a real server: what a session sees when a
batch fails, that the engine thread is restarted when it dies, that ``/readyz`` says
so meanwhile. Comma-separated ``name=value`` items:

- ``error_every=N`` — every N-th engine call raises ``RuntimeError`` (a failed batch);
- ``poison_prompt=TEXT`` — a call containing a request whose prompt contains TEXT
  raises (one bad request in a batch of good ones);
- ``crash_at=N[;M...]`` — engine calls N, M... raise ``EngineCrash``, which escapes the
  batch's error handling and kills the engine thread (as a driver fault or a bug would);
- ``delay_ms=N`` — every call first sleeps N ms (a slow or overloaded engine).

Calls are counted from 1 after warm-up. Unset (the default), the engine is untouched.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

from earshot.scheduler import Engine
from earshot.transcript import Transcript, TranscriptionRequest

log = logging.getLogger(__name__)

ENV = "EARSHOT_FAULT_INJECT"


class InjectedFault(RuntimeError):
    """A batch failure made on purpose."""


class EngineCrash(BaseException):
    """Escapes ``except Exception``: kills the engine thread, as a real fatal fault would."""


@dataclass(frozen=True)
class FaultPlan:
    error_every: int = 0
    poison_prompt: str = ""
    crash_at: frozenset[int] = frozenset()
    delay_s: float = 0.0

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        fields: dict[str, object] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, _, value = item.partition("=")
            try:
                if name == "error_every":
                    fields[name] = int(value)
                elif name == "poison_prompt" and value:
                    fields[name] = value
                elif name == "crash_at":
                    fields[name] = frozenset(int(v) for v in value.split(";"))
                elif name == "delay_ms":
                    fields["delay_s"] = int(value) / 1000
                else:
                    raise ValueError(name)
            except ValueError:
                raise ValueError(f"{ENV}: cannot understand {item!r}") from None
        return cls(**fields)  # type: ignore[arg-type]


class FaultInjectingEngine:
    def __init__(self, engine: Engine, plan: FaultPlan) -> None:
        self.engine = engine
        self.plan = plan
        self.calls = 0
        self._lock = threading.Lock()

    def transcribe(self, requests: list[TranscriptionRequest]) -> list[Transcript]:
        with self._lock:
            self.calls += 1
            call = self.calls
        plan = self.plan
        if plan.delay_s:
            time.sleep(plan.delay_s)
        if call in plan.crash_at:
            raise EngineCrash(f"injected engine crash at call {call}")
        if plan.error_every and call % plan.error_every == 0:
            raise InjectedFault(f"injected batch failure at call {call}")
        if plan.poison_prompt and any(plan.poison_prompt in (r.prompt or "") for r in requests):
            raise InjectedFault(f"injected failure: poisoned request in call {call}")
        return self.engine.transcribe(requests)


def with_faults(engine: Engine, spec: str | None = None) -> Engine:
    """``engine`` wrapped per ``EARSHOT_FAULT_INJECT`` (or ``spec``); unchanged if unset."""
    spec = os.environ.get(ENV, "") if spec is None else spec
    if not spec.strip():
        return engine
    plan = FaultPlan.parse(spec)
    log.warning("FAULT INJECTION ACTIVE (%s=%s): a test hook, not for production", ENV, spec)
    return FaultInjectingEngine(engine, plan)
