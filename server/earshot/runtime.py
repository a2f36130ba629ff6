"""Everything one server process shares: the model, the batching loop, the VAD graph,
admission control and the live sessions. Built once at startup by the app's lifespan.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from earshot.access import AccessPolicy
from earshot.admission import AdmissionController
from earshot.config import ServerConfig
from earshot.engine import WhisperEngine
from earshot.faults import with_faults
from earshot.metrics import Metrics
from earshot.scheduler import BatchScheduler
from earshot.session import SessionTuning
from earshot.vad import SileroVad

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    config: ServerConfig
    engine: WhisperEngine
    scheduler: BatchScheduler
    vad: SileroVad
    admission: AdmissionController
    tuning: SessionTuning
    sessions: set[str] = field(default_factory=set)
    draining: bool = False
    drainers: dict[str, Callable[[], None]] = field(default_factory=dict)
    """Per live session: end it gracefully (finals flushed, then close 1001)."""
    metrics: Metrics = field(default_factory=Metrics)
    """Prometheus collectors, fed by the adapter and the scheduler (see metrics.py)."""
    access: AccessPolicy = field(default_factory=AccessPolicy)
    """API keys, tokens, origins and per-key limits (see access.py); open by default."""

    def __post_init__(self) -> None:
        self.metrics.bind(self.scheduler, lambda: self.admission.active)
        self.metrics.describe_model(
            self.engine.model_name, self.engine.device, self.engine.compute_type
        )

    def drain(self) -> None:
        """Stop taking sessions (``/readyz`` 503, new ones refused with 1013) and wind down
        the live ones: each finalizes what it heard, sends its finals and closes with 1001.
        Call on the event loop; ``sessions`` empties as they finish."""
        if not self.draining:
            log.info("draining: %d open sessions", len(self.sessions))
        self.draining = True
        for end in list(self.drainers.values()):
            end()

    def keeping_up(self) -> bool:
        """No final has waited for the engine longer than admission tolerates."""
        return self.scheduler.oldest_final_wait() <= self.config.admission.max_final_delay_s

    @classmethod
    def load(cls, config: ServerConfig) -> Runtime:
        engine = WhisperEngine(config.engine)
        engine.warm_up()
        policy = config.scheduler.policy(engine.device, engine.workers)
        # faults: a test hook, off unless EARSHOT_FAULT_INJECT is set
        scheduler = BatchScheduler(
            with_faults(engine), policy, workers=engine.workers, languages=engine.languages
        )
        log.info(
            "model %s loaded on %s/%s; %d worker(s), batching up to %d",
            config.engine.model,
            engine.device,
            engine.compute_type,
            engine.workers,
            policy.max_batch,
        )
        return cls(
            config=config,
            engine=engine,
            scheduler=scheduler,
            vad=SileroVad(),
            admission=AdmissionController(config.admission, scheduler),
            tuning=SessionTuning(partial_interval_s=config.partial_interval_s),
            access=AccessPolicy.from_config(config.security),
        )

    def start(self) -> None:
        self.scheduler.start(asyncio.get_running_loop())

    def stop(self) -> None:
        self.scheduler.stop()
