"""``earshot eval`` on a tiny subset of the golden set, against the shared real server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import SPEECH_DIR

from earshot.cli import main
from earshot.evaluation.report import append_history, plot_history, read_history, write_report
from earshot.evaluation.runner import EvalOptions, run_eval
from earshot.evaluation.scoring import Stability
from earshot.server_process import ServerProcess


@pytest.fixture(scope="module")
def report(earshot_server: ServerProcess) -> dict:
    manifest = SPEECH_DIR / "manifest.jsonl"
    options = EvalOptions(
        manifest=manifest,
        url=earshot_server.ws_url,
        languages=("en", "de"),
        per_language=1,
        speed=4.0,
        no_speech_seconds=3.0,
        faster_whisper_beams=(1, 5),
    )
    return run_eval(options)


def test_report_has_sane_error_rates_per_language_and_overall(report: dict) -> None:
    assert set(report["languages"]) == {"en", "de"}
    assert [c["language"] for c in report["clips"]] == ["en", "de"]
    for language, bound in (("en", 0.15), ("de", 0.35)):
        row = report["languages"][language]
        assert row["metric"] == "wer" and row["clips"] == 1
        assert 0 <= row["offline"] <= bound, (language, row)
        assert 0 <= row["streaming"] <= bound, (language, row)
    overall = report["overall"]
    low, high = sorted(report["languages"][x]["offline"] for x in ("en", "de"))
    assert low <= overall["offline"] <= high  # pooled, so between the languages
    assert overall["clips"] == 2


def test_report_measures_streaming_and_speed(report: dict) -> None:
    streaming = report["streaming"]
    assert streaming["finals"] >= 2 and streaming["partials"] > 0
    assert 0.5 <= streaming["partial_stability"] <= 1.0
    assert 0 < streaming["final_delay_s"]["p50"] < 5
    assert 0 < report["offline"]["rtf"] < 1  # faster than real time
    assert report["settings"]["speed"] == 4.0


def test_no_speech_cases_emit_no_text_anywhere(report: dict) -> None:
    no_speech = report["no_speech"]
    assert {c["kind"] for c in no_speech["cases"]} == {"silence", "noise", "music"}
    assert no_speech["words"] == {"offline": 0, "streaming": 0, "engine_without_vad": 0}
    assert no_speech["hallucination_rate"]["streaming"] == 0


def test_streaming_is_compared_with_faster_whisper_offline_at_each_beam(report: dict) -> None:
    """``--vs-faster-whisper 1,5``: faster-whisper's own transcribe of the same clips and
    model, per language, with streaming / offline (1.0 = as accurate)."""
    versus = report["faster_whisper"]
    assert versus["beams"] == [1, 5] and set(versus["languages"]) == {"en", "de"}
    for language, bound in (("en", 0.15), ("de", 0.35)):
        row = versus["languages"][language]
        assert row["streaming"] == report["languages"][language]["streaming"]
        for beam in (1, 5):
            assert 0 <= row[f"beam_{beam}"] <= bound, (language, row)
            ratio = row[f"streaming_vs_beam_{beam}"]
            assert ratio is None or ratio == pytest.approx(
                row["streaming"] / row[f"beam_{beam}"], abs=1e-3
            )
    assert set(versus["overall"]) >= {"streaming", "beam_1", "beam_5", "streaming_vs_beam_5"}


def test_report_files_history_and_plot(report: dict, tmp_path: Path) -> None:
    json_path, md_path = write_report(report, tmp_path)
    assert json.loads(json_path.read_text())["overall"] == report["overall"]
    markdown = md_path.read_text()
    assert "| **overall** |" in markdown and "Partial stability" in markdown
    assert "Streaming against faster-whisper offline" in markdown
    assert (tmp_path / "versus-faster-whisper.png").read_bytes()[:4] == b"\x89PNG"
    prom = (tmp_path / "eval.prom").read_text()
    assert (
        'earshot_eval_error_rate{device="cpu",language="all",model="base",path="streaming"}' in prom
    )
    history = tmp_path / "history.jsonl"
    append_history(report, history)
    append_history(report, history)
    assert [e["overall"] for e in read_history(history)] == [report["overall"]] * 2
    png = plot_history(history, tmp_path / "wer.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["eval", "--plot", "--out", str(tmp_path), "--history", str(history)]) == 0
    assert (tmp_path / "wer-history.png").is_file()


def test_stability_counts_distinct_partial_words_found_in_the_final() -> None:
    stability = Stability()
    stability.add(
        ["the cat", "the cat sat on", "the cat sat on the mat"], "The cat sat on a mat.", "en"
    )
    # shown: the, cat, sat, on, mat (5); all in the final
    stability.add(["hello wordl"], "hello world", "en")
    assert stability.shown == 7 and stability.kept == 6
    assert stability.rate == pytest.approx(6 / 7)
    assert stability.occurrences == 2 + 4 + 6 + 2
    # without each partial's last word: the, cat, sat, on + hello
    assert (stability.settled_shown, stability.settled_kept) == (5, 5)
    stability.add([], "no partials", "en")
    assert stability.utterances == 2
