"""Hostile media at the decoder: real files made here with PyAV, decoded by the real
decoder child (``audio_files.decode_untrusted``) and in process (``read_audio``); and
the synchronous endpoint's bounds and cancellation at unit level (a gated fake engine
behind a real ``BatchScheduler``). End to end through the server: test_hostile_media.py.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import tracemalloc
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import av
import numpy as np
import pytest

from conftest import Clip
from earshot.audio_files import (
    AudioTooLong,
    ChildLimits,
    DecoderFailed,
    UndecodableAudio,
    UnsupportedAudio,
    decode_untrusted,
    probe_audio,
    read_audio,
)
from earshot.decoder import MAX_SAMPLE_RATE
from earshot.file_segments import VAD_CHUNK_SAMPLES, Segment, SplitStopped, split_speech
from earshot.jobs.models import JobOptions
from earshot.jobs.openai_compat import ClientGone, unless_disconnected
from earshot.jobs.pipeline import FileTranscriber, SplitAudio
from earshot.jobs.sync_limits import SyncLimiter
from earshot.jobs.uploads import media_error
from earshot.scheduler import BatchScheduler, SchedulingPolicy
from earshot.transcript import Transcript, TranscriptionRequest
from fakes import LoudnessVad
from waiting import async_poll_until

T = TypeVar("T")
BOMB_RATE, BOMB_S = 192_000, 1800
MIB = 1 << 20


def write_audio(
    path: Path, seconds: float, rate: int, *, fmt: str, codec: str, audio: np.ndarray | None = None
) -> Path:
    """``seconds`` of silence (or ``audio``, at ``rate``) as s16 mono in ``fmt``."""
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        pcm = (
            (np.clip(audio, -1, 1) * 32767).astype(np.int16)
            if audio is not None
            else np.zeros(int(seconds * rate), np.int16)
        )
        step = rate * 10
        for i in range(0, len(pcm), step):
            frame = av.AudioFrame.from_ndarray(pcm[None, i : i + step], format="s16", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def silence_bomb(path: Path) -> Path:
    """30 min of silence at 192 kHz in ~0.3 MB of FLAC: 1.4 GB as float32 at its rate."""
    write_audio(path, BOMB_S, BOMB_RATE, fmt="flac", codec="flac")
    assert path.stat().st_size < 2 * MIB
    return path


def lying_flac(path: Path, seconds: float) -> Path:
    """``seconds`` of 8 kHz silence whose STREAMINFO says it is 1 s long."""
    write_audio(path, seconds, 8000, fmt="flac", codec="flac")
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC"
    fields = int.from_bytes(data[18:26], "big")  # rate, channels, bits, 36-bit sample count
    data[18:26] = ((fields & ~((1 << 36) - 1)) | 8000).to_bytes(8, "big")
    path.write_bytes(bytes(data))
    return path


def ffconcat(folder: Path, target: Path) -> Path:
    """A playlist (FFmpeg's concat demuxer, auto-detected from the text) naming a file
    that is on the server's disk but was never uploaded."""
    shutil.copy(target, folder / "secret.wav")
    playlist = folder / "upload.wav"
    playlist.write_bytes(b"ffconcat version 1.0\nfile secret.wav\n")
    return playlist


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return silence_bomb(tmp_path_factory.mktemp("bomb") / "quiet.flac")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


# -- the decoder ----------------------------------------------------------------------------
def test_the_192khz_bomb_decodes_in_a_child_of_bounded_memory(bomb: Path) -> None:
    decoded = run(decode_untrusted(bomb, max_seconds=4 * 3600))
    assert len(decoded.audio) == pytest.approx(BOMB_S * 16000, rel=0.001)
    assert decoded.info.sample_rate == BOMB_RATE and decoded.info.format == "flac"
    # The child never holds more than a frame: ~50 MiB resident whatever the length.
    # (Decoding it all at 192 kHz, as before, needs 1.4 GB, and 2.8 GB to concatenate.)
    assert 0 < decoded.peak_rss_bytes < 150 * MIB
    assert decoded.peak_vm_bytes <= ChildLimits().memory_bytes


def test_in_process_decoding_streams_too(bomb: Path) -> None:
    tracemalloc.start()
    try:
        audio = read_audio(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    output = BOMB_S * 16000 * 4  # 115 MB: the 16 kHz result itself
    assert len(audio) * 4 == pytest.approx(output, rel=0.001)
    assert peak < output * 1.05 + 32 * MIB, f"peak {peak / MIB:.0f} MiB"


def test_a_concat_playlist_is_never_opened(tmp_path: Path, speech: dict[str, Clip]) -> None:
    playlist = ffconcat(tmp_path, speech["cmuarctic_a0024"].path)
    with pytest.raises(UndecodableAudio, match="not an accepted audio file"):
        run(decode_untrusted(playlist))
    with pytest.raises(UndecodableAudio):
        read_audio(playlist)
    with pytest.raises(UndecodableAudio):
        probe_audio(playlist)


def test_sample_rates_above_the_maximum_are_refused(tmp_path: Path) -> None:
    over = write_audio(
        tmp_path / "over.wav", 0.5, 2 * MAX_SAMPLE_RATE, fmt="wav", codec="pcm_s16le"
    )
    with pytest.raises(UnsupportedAudio, match="sample rate 384000 Hz"):
        run(decode_untrusted(over, probe=True))
    with pytest.raises(UnsupportedAudio):
        read_audio(over)
    ok = write_audio(tmp_path / "ok.wav", 0.5, 96000, fmt="wav", codec="pcm_s16le")
    assert len(run(decode_untrusted(ok)).audio) == 8000


def test_garbage_and_truncated_files(tmp_path: Path, speech: dict[str, Clip]) -> None:
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(os.urandom(50_000))
    clip = speech["jfk_inaugural"]
    whole = write_audio(tmp_path / "s.flac", 0, 16000, fmt="flac", codec="flac", audio=clip.audio())
    data = whole.read_bytes()
    header_only = tmp_path / "header.flac"
    header_only.write_bytes(data[:200])
    half = tmp_path / "half.flac"
    half.write_bytes(data[: len(data) // 2])
    for bad in (garbage, header_only):
        with pytest.raises(UndecodableAudio):
            run(decode_untrusted(bad, probe=True))
        with pytest.raises(UndecodableAudio):
            run(decode_untrusted(bad))
    # A cut-off file decodes as far as it goes (the header's duration is not believed).
    decoded = run(decode_untrusted(half))
    assert decoded.info.duration == pytest.approx(clip.duration_s, abs=0.1)
    assert 0.3 < len(decoded.audio) / 16000 / clip.duration_s < 0.7


def test_the_duration_is_counted_not_taken_from_the_header(tmp_path: Path) -> None:
    liar = lying_flac(tmp_path / "liar.flac", 120)
    probed = run(decode_untrusted(liar, probe=True, max_seconds=60))
    assert probed.info.duration == pytest.approx(1.0)
    with pytest.raises(AudioTooLong):
        run(decode_untrusted(liar, max_seconds=60))
    with pytest.raises(AudioTooLong):
        read_audio(liar, max_seconds=60)


def test_a_decoder_over_its_memory_limit_fails_alone(speech: dict[str, Clip]) -> None:
    tight = ChildLimits(memory_bytes=48 * MIB)
    with pytest.raises(DecoderFailed):
        run(decode_untrusted(speech["jfk_inaugural"].path, limits=tight))
    assert len(run(decode_untrusted(speech["jfk_inaugural"].path)).audio) == 11 * 16000


def _decoder_children() -> list[int]:
    me = str(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[1] == me and b"earshot.decoder" in cmdline:
            found.append(int(entry.name))
    return found


def test_cancelling_a_decode_kills_its_child(bomb: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EARSHOT_TOKEN_SECRET", "hunter2")

    async def scenario() -> None:
        task = asyncio.create_task(decode_untrusted(bomb))
        children = await async_poll_until(_decoder_children, what="a decoder child")
        environment = Path(f"/proc/{children[0]}/environ").read_bytes()
        assert b"PATH=" in environment and b"hunter2" not in environment  # no secrets
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not any(Path(f"/proc/{pid}").exists() for pid in children)

    run(scenario())


# -- the synchronous endpoint's bounds and cancellation --------------------------------------
def test_the_limiter_bounds_each_key_and_the_total() -> None:
    limiter = SyncLimiter(total=3, per_key=2)
    try:
        a1, a2 = limiter.acquire("a"), limiter.acquire("a")
        assert a1 and a2 and limiter.acquire("a") is None  # key a is at its bound
        b1 = limiter.acquire("b")
        assert b1 and limiter.acquire("c") is None  # the server is at its bound
        a1.release(12.0)
        a1.release(12.0)  # twice is once
        assert limiter.running == 2
        c1 = limiter.acquire("c")
        assert c1 is not None
        assert 1 <= limiter.retry_after_s() <= 60
        for slot in (a2, b1, c1):
            slot.release()
        assert limiter.running == 0
    finally:
        limiter.close()


def test_a_disconnect_cancels_the_work() -> None:
    async def scenario() -> None:
        gone = asyncio.Event()
        started = asyncio.Event()
        cancelled = asyncio.Event()

        async def receive() -> dict[str, object]:
            await gone.wait()
            return {"type": "http.disconnect"}

        async def work() -> str:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return "never"

        async def finished() -> str:
            return "done"

        assert await unless_disconnected(receive, finished()) == "done"
        request = asyncio.create_task(unless_disconnected(receive, work()))
        await started.wait()
        gone.set()
        with pytest.raises(ClientGone):
            await request
        assert cancelled.is_set()

    run(scenario())


class GatedEngine:
    """Answers every request, but only once ``gate`` is open; records what it ran."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.ran: list[TranscriptionRequest] = []
        self.holding = threading.Event()

    def transcribe(self, requests: list[TranscriptionRequest]) -> list[Transcript]:
        self.holding.set()
        self.gate.wait(30)
        self.ran.extend(requests)
        return [Transcript(text=f"t{r.utterance}", language="en") for r in requests]


def test_cancelling_a_file_withdraws_its_queued_segments() -> None:
    async def scenario() -> None:
        engine = GatedEngine()
        scheduler = BatchScheduler(engine, SchedulingPolicy(max_batch=1))
        scheduler.start(asyncio.get_running_loop())
        try:
            audio = np.zeros(16000 * 8, np.float32)
            segments = [Segment(i * 32000, (i + 1) * 32000) for i in range(4)]
            transcriber = FileTranscriber(scheduler, None, in_flight=3)  # type: ignore[arg-type]
            task = asyncio.create_task(
                transcriber.transcribe(
                    SplitAudio(audio, segments), JobOptions(language="en"), owner="sync_x"
                )
            )
            await async_poll_until(lambda: scheduler.queue_depths()["file"] == 2)
            await asyncio.to_thread(engine.holding.wait, 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert scheduler.queue_depths()["file"] == 0  # withdrawn, never run
            engine.gate.set()
            await async_poll_until(lambda: len(engine.ran) == 1)
            assert [r.utterance for r in engine.ran] == [0]
        finally:
            engine.gate.set()
            scheduler.stop()

    run(scenario())


def test_the_speech_split_stops_between_pieces_when_asked() -> None:
    audio = np.zeros(VAD_CHUNK_SAMPLES * 3, np.float32)
    asked: list[int] = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 1

    with pytest.raises(SplitStopped):
        split_speech(audio, LoudnessVad(), stop=stop)
    assert len(asked) == 2  # one piece read, then it stopped
    assert split_speech(audio, LoudnessVad(), stop=lambda: False) == []


def test_decoder_refusals_map_to_clear_http_statuses() -> None:
    cases = [
        (UndecodableAudio("not an accepted audio file (Invalid data)"), 415, "unsupported_media"),
        (UnsupportedAudio("sample rate 384000 Hz is above..."), 415, "unsupported_audio"),
        (DecoderFailed("the decoder died on this file (signal 9)"), 422, "undecodable_audio"),
        (AudioTooLong("longer than 60 s"), 413, "audio_too_long"),
    ]
    for exc, status, code in cases:
        refusal = media_error(exc)
        assert (refusal.status, refusal.code, refusal.param) == (status, code, "file")
    assert "signal 9" not in media_error(cases[2][0]).message  # details stay in the log
    assert "Invalid data" not in media_error(cases[0][0]).message
