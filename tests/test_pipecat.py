"""A voice-agent framework's own Deepgram plugins pointed at Earshot: Pipecat's
``DeepgramSTTService`` (Deepgram's live v1 API, ``base_url``) and
``DeepgramFluxSTTService`` (Flux, ``url``), each run in a real Pipecat pipeline, fed a
real clip as ``InputAudioRawFrame``s; the ``TranscriptionFrame``s it pushes are checked
by normalized WER. Nothing of the plugin is mocked."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
from tests.dialect_helpers import keyed_server

with warnings.catch_warnings():
    # Pipecat's audio helpers import the standard library's audioop (deprecated in 3.11).
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    from pipecat.frames.frames import EndFrame, Frame, InputAudioRawFrame, TranscriptionFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.services.deepgram.flux.stt import DeepgramFluxSTTService
    from pipecat.services.deepgram.stt import DeepgramSTTService
    from pipecat.services.stt_service import STTService
    from pipecat.workers.runner import WorkerRunner

from conftest import Clip
from earshot.auth import generate_key
from earshot.server_process import ServerProcess
from earshot.wer import error_rate

pytestmark = pytest.mark.asyncio

KEY = generate_key()
ENGLISH = "ljspeech_LJ001-0001"
WER_BOUND = 0.12
"""As tests/test_deepgram.py: streaming splits at pauses; 0.12 catches lost audio."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with keyed_server(tmp_path_factory, "pipecat", KEY) as server:
        yield server


class Transcripts(FrameProcessor):
    """The end of the pipeline: keeps the final transcriptions, passes every frame on."""

    def __init__(self) -> None:
        super().__init__()
        self.finals: list[TranscriptionFrame] = []
        self.got_one = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame):
            self.finals.append(frame)
            self.got_one.set()
        await self.push_frame(frame, direction)


async def transcribe(stt: STTService, audio: np.ndarray, *, speed: float = 3.0) -> str:
    """``audio`` (then 2 s of silence, for the endpoint) through ``stt`` in a pipeline,
    in 20 ms frames as a transport would send them; the final transcriptions joined."""
    sink = Transcripts()
    worker = PipelineWorker(
        Pipeline([stt, sink]),
        params=PipelineParams(audio_in_sample_rate=16000),
        cancel_on_idle_timeout=False,
    )
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _started(worker: PipelineWorker, frame: Frame) -> None:
        started.set()

    async def feed() -> None:
        await asyncio.wait_for(started.wait(), 30)
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes() + bytes(64000)
        step = 640  # 20 ms
        for i in range(0, len(pcm), step):
            frame = InputAudioRawFrame(audio=pcm[i : i + step], sample_rate=16000, num_channels=1)
            await worker.queue_frame(frame)
            await asyncio.sleep(0.02 / speed)
        # The endpoint came in the silence; wait for its transcription before ending.
        await asyncio.wait_for(sink.got_one.wait(), 60)
        await asyncio.sleep(1.0)
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.wait_for(asyncio.gather(runner.run(), feed()), 180)
    return " ".join(f.text.strip() for f in sink.finals).strip()


async def test_pipecat_deepgram_stt_service(server: ServerProcess, speech: dict[str, Clip]) -> None:
    """The plugin's defaults (``nova-3``, interim results, ``smart_format``,
    ``profanity_filter``, ...) connect; only ``base_url`` points it at Earshot."""
    clip = speech[ENGLISH]
    stt = DeepgramSTTService(api_key=KEY, base_url=f"ws://127.0.0.1:{server.port}/deepgram")
    text = await transcribe(stt, clip.audio())
    assert error_rate([clip.text], [text]) <= WER_BOUND, text


async def test_pipecat_deepgram_flux_stt_service(
    server: ServerProcess, speech: dict[str, Clip]
) -> None:
    """Flux: the plugin turns each ``EndOfTurn`` into a ``TranscriptionFrame``."""
    clip = speech[ENGLISH]
    stt = DeepgramFluxSTTService(
        api_key=KEY, url=f"ws://127.0.0.1:{server.port}/deepgram/v2/listen"
    )
    text = await transcribe(stt, clip.audio())
    assert error_rate([clip.text], [text]) <= WER_BOUND, text
