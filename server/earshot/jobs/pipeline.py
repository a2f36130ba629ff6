"""One file through the shared engine: decode, split on speech, transcribe the segments
as low-priority ``Priority.FILE`` requests of a ``BatchScheduler``, assemble the result.

The same code serves the in-process job worker and the synchronous OpenAI-compatible
endpoint (both on the server's scheduler, where file segments are batched together
with live utterances but never ahead of their finals) and ``earshot worker`` (on a
scheduler of its own). At most ``in_flight`` segments of a file wait in the scheduler at
once, so a long file never lines up a long run of batches in front of a live final.

Decoding happens in a child process under memory and CPU limits
(``audio_files.decode_untrusted``): an upload is untrusted data. Cancelling
``transcribe_path`` (a client that went away, a cancelled job) kills the decoder and
takes the file's queued segments back out of the scheduler.

The language is detected once per file: the longest of the first few segments goes
first without a language (the engine detects it), and the rest follow in that language.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from earshot.audio_files import decode_untrusted, read_audio
from earshot.file_segments import Segment, split_speech
from earshot.jobs.models import JobOptions, JobResult, ResultSegment, ResultWord
from earshot.scheduler import BatchScheduler
from earshot.transcript import Priority, Transcript, TranscriptionRequest
from earshot.vad import SileroVad

log = logging.getLogger(__name__)
DETECTION_CANDIDATES = 4
"""Detect the language on the longest of this many first segments."""

MAX_LIVE_YIELD_S = 20.0
"""Under unbroken live traffic a file still gets one segment through this often:
longer than an utterance (``max_utterance_s`` 15 s), so it rarely meets a final."""

Progress = Callable[[float], Awaitable[None]]
"""Called with the share of segments done; may raise to abort (cancellation)."""


class EngineFailure(RuntimeError):
    """The engine reported an error for a segment; the attempt failed."""


@dataclass(frozen=True)
class SplitAudio:
    audio: np.ndarray
    segments: list[Segment]

    @property
    def duration(self) -> float:
        return len(self.audio) / 16000


def decode_and_split(path: Path, vad: SileroVad, max_seconds: float) -> SplitAudio:
    """Blocking, in this process (PyAV, VAD): trusted files only, in a thread."""
    audio = read_audio(path, max_seconds=max_seconds)
    return SplitAudio(audio, split_speech(audio, vad.stream()))


def split_audio(
    audio: np.ndarray, vad: SileroVad, stop: threading.Event | None = None
) -> SplitAudio:
    """Blocking (VAD): run it in a thread, never on the event loop; ``stop`` ends it early
    (SplitStopped)."""
    check = None if stop is None else stop.is_set
    return SplitAudio(audio, split_speech(audio, vad.stream(), stop=check))


class FileTranscriber:
    """Transcribes files through ``scheduler`` (whose loop must be the running one)."""

    def __init__(
        self,
        scheduler: BatchScheduler,
        vad: SileroVad,
        *,
        in_flight: int = 1,
        live_yield_s: float = 0.0,
        max_seconds: float = 4 * 3600.0,
    ) -> None:
        self.scheduler = scheduler
        self.vad = vad
        self.in_flight = max(1, in_flight)
        self.live_yield_s = live_yield_s
        """Submit a segment only once live streams asked for nothing this long (or after
        ``MAX_LIVE_YIELD_S``): on a CPU a running file batch would hold up a final that
        arrives meanwhile."""
        self.max_seconds = max_seconds

    async def transcribe_path(
        self,
        path: Path,
        options: JobOptions,
        *,
        owner: str,
        progress: Progress | None = None,
        executor: Executor | None = None,
    ) -> JobResult:
        """Decode (in a child process), split (in ``executor``, default: the loop's) and
        transcribe ``path``. Raises UndecodableAudio or AudioTooLong for a bad file."""
        decoded = await decode_untrusted(path, max_seconds=self.max_seconds)
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        try:
            parts = await loop.run_in_executor(executor, split_audio, decoded.audio, self.vad, stop)
        except asyncio.CancelledError:
            stop.set()  # the thread can't be cancelled, but it stops at the next piece
            raise
        del decoded
        return await self.transcribe(parts, options, owner=owner, progress=progress)

    async def transcribe(
        self,
        split: SplitAudio,
        options: JobOptions,
        *,
        owner: str,
        progress: Progress | None = None,
    ) -> JobResult:
        requests = [
            TranscriptionRequest(
                audio=split.audio[s.start : s.end],
                priority=Priority.FILE,
                language=options.language,
                prompt=options.prompt,
                word_timestamps=options.word_timestamps,
                owner=owner,
                utterance=i,
                start=s.start_s,
            )
            for i, s in enumerate(split.segments)
        ]
        transcripts: dict[int, Transcript] = {}
        done = itertools.count(1)

        async def run(request: TranscriptionRequest) -> None:
            transcripts[request.utterance] = await self._one(request)
            if progress is not None:
                await progress(next(done) / len(requests))

        language = options.language
        if requests and language is None:
            first = max(requests[:DETECTION_CANDIDATES], key=lambda r: r.duration)
            await run(first)
            language = transcripts[first.utterance].language
            for request in requests:
                request.language = language
        pending = [r for r in requests if r.utterance not in transcripts]
        slots = asyncio.Semaphore(self.in_flight)

        async def limited(request: TranscriptionRequest) -> None:
            async with slots:
                await run(request)

        await _gather_or_cancel([limited(r) for r in pending])
        return _assemble(split, requests, transcripts, language or "")

    async def _one(self, request: TranscriptionRequest) -> Transcript:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Transcript] = loop.create_future()

        def answered(_: TranscriptionRequest, transcript: Transcript) -> None:
            if not future.done():
                future.set_result(transcript)

        waited = time.monotonic()
        await self._yield_to_live()
        submitted = time.monotonic()
        log.debug("%s segment %d submitted", request.owner, request.utterance)
        self.scheduler.submit(request, answered)
        try:
            transcript = await future
        except asyncio.CancelledError:
            if self.scheduler.cancel(request):  # still queued: the engine never sees it
                log.debug("%s segment %d withdrawn", request.owner, request.utterance)
            raise
        log.debug(
            "%s segment %d (%.1f s): yielded %.2f s, answered in %.2f s",
            request.owner,
            request.utterance,
            request.duration,
            submitted - waited,
            time.monotonic() - submitted,
        )
        if transcript.error:
            raise EngineFailure(transcript.error)
        return transcript

    async def _yield_to_live(self) -> None:
        deadline = time.monotonic() + MAX_LIVE_YIELD_S
        while (idle := self.scheduler.live_idle_s()) < self.live_yield_s:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, self.live_yield_s - idle) + 0.01)


async def _gather_or_cancel(coroutines: list[Awaitable[None]]) -> None:
    """Like ``gather``, but the first error cancels the rest before it propagates."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _assemble(
    split: SplitAudio,
    requests: list[TranscriptionRequest],
    transcripts: dict[int, Transcript],
    language: str,
) -> JobResult:
    segments = []
    for request in requests:
        t = transcripts[request.utterance]
        if not t.text:
            continue
        segments.append(
            ResultSegment(
                start=round(request.start, 3),
                end=round(request.start + request.duration, 3),
                text=t.text,
                words=tuple(
                    ResultWord(
                        w.word,
                        round(request.start + w.start, 3),
                        round(request.start + w.end, 3),
                        round(w.probability, 4),
                    )
                    for w in t.words
                ),
                avg_logprob=round(t.avg_logprob, 4),
                no_speech_prob=round(t.no_speech_prob, 4),
            )
        )
    return JobResult(
        text=" ".join(s.text for s in segments),
        language=language,
        duration=round(split.duration, 3),
        segments=tuple(segments),
    )
