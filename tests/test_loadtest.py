"""The load test and capacity finder: scoring rules on made-up sessions, then short,
bounded runs of the Locust user and of ``earshot loadtest`` against real servers."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import REPO, SPEECH_DIR, Clip

from earshot.client import Final, Partial
from earshot.loadtest.bench import StepReport
from earshot.loadtest.capacity import capacity_at, verdict
from earshot.loadtest.capacity import main as capacity_main
from earshot.loadtest.metrics import ServerView, parse, server_view
from earshot.loadtest.scenario import (
    SCENARIOS,
    PlannedUtterance,
    StreamPlan,
    build_plan,
    load_clips,
    session_rng,
)
from earshot.loadtest.scenario import Clip as LoadClip
from earshot.loadtest.scoring import Distribution, SessionLog, SessionScorer, score_session
from earshot.server_process import ServerProcess

MANIFEST = SPEECH_DIR / "manifest.jsonl"
SHORT_CLIP = "ljspeech_LJ001-0001"


def _plan() -> StreamPlan:
    """Two clips: speech 1.0–3.0 s and 5.0–6.5 s on a 8 s stream."""
    clip = LoadClip(Path("x.wav"), "hello there", "en", 2.5)
    return StreamPlan(
        np.zeros(8 * 16000, np.float32),
        (PlannedUtterance(clip, 0.8, 3.2, 1.0, 3.0), PlannedUtterance(clip, 4.8, 6.8, 5.0, 6.5)),
        "en",
    )


def _sent_in_real_time(plan: StreamPlan, t0: float = 100.0) -> SessionLog:
    """Chunks of 0.1 s, each sent exactly on the real-time schedule."""
    log = SessionLog(plan, requested=t0, connect_s=0.01)
    for i in range(int(plan.duration_s * 10)):
        log.note_sent(i * 1600, t0 + i * 0.1)
    return log


def test_final_latency_runs_from_the_last_speech_sample_sent_to_the_final() -> None:
    log = _sent_in_real_time(_plan())
    log.received = [
        (101.5, Partial(0, 0.8, 1.9, "hello")),
        (104.2, Final(0, 0.8, 3.2, "hello there", "en")),
        (107.9, Final(1, 4.8, 6.7, "hello there", "en")),
    ]
    score = score_session(log)
    assert score.final_latencies == pytest.approx([1.2, 1.4])  # 104.2 − 103.0, 107.9 − 106.5
    assert score.first_partial_latencies == pytest.approx([0.5])  # 101.5 − 101.0
    assert score.lags == pytest.approx([1.0, 1.2])  # against the sample at each final's end
    assert (score.missed_clips, score.stray_finals, score.finals) == (0, 0, 2)
    assert score.hypothesis == score.reference == "hello there hello there"


def test_a_clip_split_in_two_is_scored_by_the_final_that_reaches_its_end() -> None:
    log = _sent_in_real_time(_plan())
    scorer = SessionScorer(log)
    assert [k for k, _ in scorer.observe(102.6, Final(0, 0.8, 2.0, "hello", "en"))] == ["lag"]
    found = dict(scorer.observe(104.0, Final(1, 2.2, 3.2, "there", "en")))
    assert found["final"] == pytest.approx(1.0)
    assert scorer.finish() == []
    assert scorer.score().missed_clips == 1  # the second clip never got a final


def test_text_over_silence_is_a_stray_final_and_finish_scores_short_finals() -> None:
    log = _sent_in_real_time(_plan())
    log.received = [
        (101.0, Final(0, 0.0, 0.5, "thank you", "en")),  # silence before the first clip
        (103.5, Final(1, 0.9, 2.5, "hello", "en")),  # ends before the clip's speech does
    ]
    score = score_session(log)
    assert score.stray_finals == 1
    assert score.final_latencies == pytest.approx([0.5])  # scored by finish()


def test_distribution_percentiles() -> None:
    assert Distribution.of([]) == Distribution(0, None, None, None)
    d = Distribution.of([float(i) for i in range(1, 101)])
    assert (d.count, d.p50, d.p95, d.max) == (100, 50.5, 95.05, 100.0)


def test_the_server_view_is_the_difference_of_two_metrics_scrapes() -> None:
    def exposition(batches: int, requests: int, busy: float, le: tuple[int, int, int]) -> str:
        return (
            f"earshot_engine_batch_size_sum {requests}\n"
            f"earshot_engine_batch_size_count {batches}\n"
            f"earshot_engine_busy_seconds_total {busy}\n"
            f'earshot_final_latency_seconds_bucket{{le="0.5"}} {le[0]}\n'
            f'earshot_final_latency_seconds_bucket{{le="1.0"}} {le[1]}\n'
            f'earshot_final_latency_seconds_bucket{{le="+Inf"}} {le[2]}\n'
        )

    before = parse(exposition(2, 4, 1.0, (1, 1, 1)))
    after = parse(exposition(7, 14, 6.0, (5, 11, 11)))  # 10 finals: 4 ≤ 0.5 s, 6 ≤ 1 s
    view = server_view(before, after, wall_s=10.0)
    assert view.batch_size_mean == 2.0
    assert view.engine_busy_ratio == 0.5
    assert view.server_final_p50 == pytest.approx(0.5 + 0.5 * (5 - 4) / 6, abs=1e-3)
    assert view.stale_partials_dropped is None  # not exported: unknown, not zero
    assert server_view(None, after, 10.0) == ServerView()


def test_same_seed_same_streams(speech: dict[str, Clip]) -> None:
    clips = load_clips(MANIFEST)
    assert all(c.language == "en" and c.duration_s <= 15 for c in clips)
    scenario = SCENARIOS["realtime"]
    a = build_plan(clips, scenario, session_rng(7, 0, 0), max_s=20)
    b = build_plan(clips, scenario, session_rng(7, 0, 0), max_s=20)
    other = build_plan(clips, scenario, session_rng(7, 1, 0), max_s=20)
    assert np.array_equal(a.audio, b.audio) and a.utterances == b.utterances
    assert a.reference != other.reference
    assert a.duration_s >= 20
    for u in a.utterances:  # speech bounds inside the clip, gaps longer than endpointing
        assert u.start_s <= u.speech_start_s < u.speech_end_s <= u.end_s
    for before, after in zip(a.utterances, a.utterances[1:]):
        assert after.start_s - before.end_s >= scenario.gap_s[0] - 1e-3


def test_burst_sessions_are_one_clip(speech: dict[str, Clip]) -> None:
    clips = load_clips(MANIFEST)
    plan = build_plan(clips, SCENARIOS["burst"], session_rng(0, 0, 0))
    assert len(plan.utterances) == 1


def test_the_locustfile_streams_real_speech_and_reports_sane_stats(
    earshot_server: ServerProcess, speech: dict[str, Clip], tmp_path: Path
) -> None:
    report = tmp_path / "summary.json"
    command = [
        sys.executable, "-m", "locust", "-f", str(REPO / "loadtest" / "locustfile.py"),
        "--headless", "-u", "2", "-r", "2", "-t", "15s", "--only-summary",
        "--host", f"ws://127.0.0.1:{earshot_server.port}", "--manifest", str(MANIFEST),
        "--session-s", "5", "--csv", str(tmp_path / "stats"), "--earshot-report", str(report),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads(report.read_text())
    assert summary["sessions"] >= 2 and summary["refused"] == summary["errors"] == 0
    assert summary["final_latency"]["count"] >= 2
    assert 0 < summary["final_latency"]["p50_s"] < 10
    if summary["first_partial"]["count"]:  # partials are shed first under load
        assert 0 < summary["first_partial"]["p50_s"] < 10
    assert summary["wer"] is not None and summary["wer"] < 0.3
    stats = (tmp_path / "stats_stats.csv").read_text()
    for name in ("connect", "final latency", "first partial", "real-time lag", "session"):
        assert f"WS,{name}," in stats


def test_capacity_finder_writes_json_and_plot(speech: dict[str, Clip], tmp_path: Path) -> None:
    argv = [
        "--steps", "1,2", "--step-s", "8", "--min-finals", "1", "--cooldown-s", "0",
        "--session-s", "4",
        "--manifest", str(MANIFEST), "--offline-file", str(speech[SHORT_CLIP].path),
        "--server-log", str(tmp_path / "server.log"),
        "--out-dir", str(tmp_path), "--name", "smoke",
    ]  # fmt: skip
    assert capacity_main(argv) == 0
    report = json.loads((tmp_path / "smoke.json").read_text())
    assert (tmp_path / "smoke.png").stat().st_size > 10_000
    assert report["model"] == "base" and report["machine"]["cpu_count"] >= 1
    assert report["offline"]["realtime_factor"] > 1
    assert report["offline"]["wer"] < 0.2
    earshot = report["configs"]["earshot"]
    # On a busy machine step 2 may already break the SLO; the ramp then stops there.
    assert [s["streams"] for s in earshot["steps"]] in ([1], [1, 2])
    for step in earshot["steps"]:
        assert step["errors"] == 0 and step["refused"] == 0
        assert step["final_latency"]["count"] >= 1 and step["final_latency"]["p50"] > 0
        assert step["wer"] < 0.5  # a handful of short clips: one slip is a big share
    if earshot["capacity_streams"]:
        assert earshot["audio_hours_per_hour"] == earshot["capacity_streams"]


def test_a_step_fails_on_refusals_errors_or_the_slo() -> None:
    empty = Distribution.of([])
    passing = StepReport(
        streams=4, wall_s=10.0, sessions=4, refused=0, errors=0, error_samples=[],
        final_latency=Distribution(10, 0.8, 1.2, 1.3), first_partial_latency=empty,
        realtime_lag=empty, connect_time=empty, wer=0.05, clips=10, missed_clips=0,
        stray_finals=0, audio_s=40.0, speech_s=30.0, server=ServerView(),
        load_average=(0.1, 0.2),
    )  # fmt: skip
    assert verdict(passing, slo_s=1.5) is None
    assert "SLO" in str(verdict(passing, slo_s=1.0))
    assert "refused" in str(verdict(replace(passing, refused=1), slo_s=1.5))
    assert "error" in str(verdict(replace(passing, errors=1, error_samples=["boom"]), slo_s=1.5))
    assert "no final" in str(verdict(replace(passing, final_latency=empty), slo_s=1.5))


def test_capacity_is_the_last_step_before_the_first_miss() -> None:
    def step(streams: int, p95: float | None, refused: int = 0) -> dict[str, object]:
        return {"streams": streams, "final_latency": {"p95": p95}, "refused": refused, "errors": 0}

    steps = [step(1, 0.9), step(2, 1.4), step(4, 1.2), step(8, 2.5), step(12, 2.1, refused=1)]
    assert capacity_at(steps, 1.5) == 4  # later steps can't rescue an earlier miss
    assert capacity_at(steps, 1.0) == 1
    assert capacity_at(steps, 3.0) == 8  # the refusal at 12 ends it whatever the SLO
    assert capacity_at(steps, 0.5) == 0
