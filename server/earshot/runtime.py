"""Everything one server process shares: the model, the batching loop, the VAD graph,
admission control and the live sessions. Built once at startup by the app's lifespan.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from earshot.admission import AdmissionController
from earshot.config import ServerConfig, default_policy
from earshot.engine import WhisperEngine
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

    @classmethod
    def load(cls, config: ServerConfig) -> Runtime:
        engine = WhisperEngine(config.engine)
        engine.warm_up()
        policy = config.scheduler or default_policy(engine.device)
        scheduler = BatchScheduler(engine, policy)
        log.info(
            "model %s loaded on %s/%s; batching up to %d",
            config.engine.model,
            engine.device,
            engine.compute_type,
            policy.max_batch,
        )
        return cls(
            config=config,
            engine=engine,
            scheduler=scheduler,
            vad=SileroVad(),
            admission=AdmissionController(config.admission, scheduler),
            tuning=SessionTuning(partial_interval_s=config.partial_interval_s),
        )

    def start(self) -> None:
        self.scheduler.start(asyncio.get_running_loop())

    def stop(self) -> None:
        self.scheduler.stop()
