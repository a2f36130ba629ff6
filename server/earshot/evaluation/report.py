"""Write an eval report (JSON + Markdown), keep its headline figures in a history file
(one JSON object per line), and plot WER over time from that history."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

DEFINITIONS = """\
- **WER** is corpus-level over the clips whose reference is a human transcript
  (`transcript_exact`), after Whisper's text normalizers on both sides (English
  normalizer for `en`, basic normalizer otherwise); **CER** for zh. *Overall* pools all
  languages, weighting each by its reference words (characters for CER).
- **Gap** is (streaming − offline) / offline on the same clips. Offline = `earshot
  transcribe` (VAD segments, one language per file); streaming = a live `/v1/listen`
  session fed at {speed}× real time with {trailing} s of trailing silence, finals joined.
- **Partial stability**: per utterance, the distinct normalized words shown in any of its
  partials; the share of them that also appear in its final, pooled over utterances.
  *Per occurrence* counts each word of each partial instead; *settled words* leaves out
  each partial's last word, which the audio boundary often cuts mid-word.
- **Final delay**: wall time from an utterance's last audio sample reaching the server to
  its `final` arriving at the client (includes the endpointing silence, 500 ms of audio).
- **Hallucination rate**: share of no-speech cases (silence, low-level noise,
  music-like tones) that produced any word. *Engine without VAD* sends each case straight
  to the engine, so only its hallucination filter stands between noise and text.
"""


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """``report.json``, ``report.md`` and ``eval.prom`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
    md_path.write_text(markdown(report), "utf-8")
    write_prometheus(report, out_dir / "eval.prom")
    if "faster_whisper" in report:
        plot_versus_faster_whisper(report, out_dir / "versus-faster-whisper.png")
    return json_path, md_path


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _gap(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:+.1f}%"


def markdown(report: dict[str, Any]) -> str:
    settings = report["settings"]
    overall = report["overall"]
    streaming = report["streaming"]
    offline = report["offline"]
    lines = [
        f"# Earshot eval — {report['model']} on {report['device']}/{report['compute_type']}",
        "",
        f"{report['created']} · earshot {report['version']} · commit {report['commit'] or '?'}"
        f" · languages {', '.join(settings['languages'])} ({settings['language']})"
        f" · streamed at {settings['speed']}× real time, {settings['concurrency']} at once",
        "",
        "## Accuracy",
        "",
        "| language | metric | clips | offline | streaming | gap |",
        "|---|---|---|---|---|---|",
    ]
    for language, row in report["languages"].items():
        lines.append(
            f"| {language} | {row['metric'].upper()} | {row['clips']} | {_pct(row['offline'])}"
            f" | {_pct(row['streaming'])} | {_gap(row['relative_gap'])} |"
        )
    lines += [
        f"| **overall** | | {overall['clips']} | **{_pct(overall['offline'])}**"
        f" | **{_pct(overall['streaming'])}** | **{_gap(overall['relative_gap'])}** |",
        "",
        *_versus_faster_whisper_table(report),
        "## Streaming",
        "",
        f"- partial stability: **{_pct(streaming['partial_stability'])}** over"
        f" {streaming['utterances_with_partials']} utterances"
        f" (per occurrence {_pct(streaming['partial_stability_occurrences'])},"
        f" settled words {_pct(streaming['partial_stability_settled'])});"
        f" {streaming['partials']} partials, {streaming['finals']} finals",
        f"- final delay (s): {_percentiles(streaming['final_delay_s'])}",
        f"- {streaming['audio_s']:.0f} s of audio (clips, no-speech cases and trailing"
        f" silence) streamed in {streaming['wall_s']:.0f} s",
        f"- offline: {offline['audio_s']:.0f} s of speech clips in {offline['elapsed_s']:.1f} s:"
        f" real-time factor {offline['rtf']:.3f} ({1 / offline['rtf']:.1f}× real time)",
        "",
        "## No speech (hallucination watch)",
        "",
    ]
    no_speech = report["no_speech"]
    rates, words = no_speech["hallucination_rate"], no_speech["words"]
    lines += [
        f"Hallucination rate: offline {_pct(rates['offline'])} ({words['offline']} words),"
        f" streaming {_pct(rates['streaming'])} ({words['streaming']} words),"
        f" engine without VAD {_pct(rates['engine_without_vad'])}"
        f" ({words['engine_without_vad']} words).",
        "",
        "| case | what | offline words | streaming words | engine without VAD |",
        "|---|---|---|---|---|",
    ]
    for case in no_speech["cases"]:
        engine = case["engine_only_text"] or f"– ({case['engine_only_suppressed'] or 'no text'})"
        lines.append(
            f"| {case['case']} | {case['description']} | {case['offline_words']}"
            f" | {case['streaming_words']} | {engine} |"
        )
    if report["server_metrics_delta"]:
        lines += ["", "Server counters during the streaming pass:", ""]
        lines += [f"- `{k}` +{v:g}" for k, v in report["server_metrics_delta"].items()]
    lines += [
        "",
        "## Definitions",
        "",
        DEFINITIONS.format(speed=settings["speed"], trailing=1.0),
        "## Per clip",
        "",
        "| clip | lang | s | offline | streaming | counted |",
        "|---|---|---|---|---|---|",
    ]
    for clip in report["clips"]:
        lines.append(
            f"| {clip['clip']} | {clip['language']} | {clip['duration_s']:.1f}"
            f" | {_pct(clip['offline_error'])} | {_pct(clip['streaming_error'])}"
            f" | {'yes' if clip['counted'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def _percentiles(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in values.items()) or "–"


def write_prometheus(report: dict[str, Any], path: Path) -> Path:
    """The headline figures as Prometheus text (``earshot_eval_*`` gauges), for the
    node_exporter textfile collector or a Pushgateway, so Grafana can chart them."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    registry = CollectorRegistry()
    labels = ["model", "device"]
    who = [report["model"], report["device"]]
    error = Gauge(
        "earshot_eval_error_rate",
        "Golden-set WER (CER for zh) by language and path; language=all pools them",
        [*labels, "language", "path"],
        registry=registry,
    )
    for path_name in ("offline", "streaming"):
        error.labels(*who, "all", path_name).set(report["overall"][path_name])
        for language, row in report["languages"].items():
            error.labels(*who, language, path_name).set(row[path_name])
    stability = Gauge(
        "earshot_eval_partial_stability",
        "Share of words shown in partials that are in the final",
        labels,
        registry=registry,
    )
    stability.labels(*who).set(report["streaming"]["partial_stability"] or 0.0)
    hallucination = Gauge(
        "earshot_eval_hallucination_rate",
        "Share of no-speech cases that produced text",
        [*labels, "path"],
        registry=registry,
    )
    for path_name, rate in report["no_speech"]["hallucination_rate"].items():
        hallucination.labels(*who, path_name).set(rate)
    rtf = Gauge("earshot_eval_offline_rtf", "Offline real-time factor", labels, registry=registry)
    rtf.labels(*who).set(report["offline"]["rtf"] or 0.0)
    stamp = Gauge("earshot_eval_timestamp_seconds", "When the eval ran", labels, registry=registry)
    stamp.labels(*who).set(datetime.fromisoformat(report["created"]).timestamp())
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
    return path


def history_entry(report: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of a report: what the plot and a trend need."""
    return {
        "created": report["created"],
        "commit": report["commit"],
        "model": report["model"],
        "device": report["device"],
        "speed": report["settings"]["speed"],
        "language_mode": report["settings"]["language"],
        "per_language": report["settings"]["per_language"],
        "overall": report["overall"],
        "languages": {
            k: {"offline": v["offline"], "streaming": v["streaming"], "clips": v["clips"]}
            for k, v in report["languages"].items()
        },
        "partial_stability": report["streaming"]["partial_stability"],
        "partial_stability_occurrences": report["streaming"]["partial_stability_occurrences"],
        "partial_stability_settled": report["streaming"]["partial_stability_settled"],
        "final_delay_s": report["streaming"]["final_delay_s"],
        "offline_rtf": report["offline"]["rtf"],
        "hallucination_rate": report["no_speech"]["hallucination_rate"],
    }


def append_history(report: dict[str, Any], history: Path) -> None:
    history.parent.mkdir(parents=True, exist_ok=True)
    with history.open("a", encoding="utf-8") as f:
        f.write(json.dumps(history_entry(report), ensure_ascii=False) + "\n")


def _versus_faster_whisper_table(report: dict[str, Any]) -> list[str]:
    """Markdown lines comparing streaming with faster-whisper offline (if it was run)."""
    versus = report.get("faster_whisper")
    if not versus:
        return []
    beams = versus["beams"]
    head = " | ".join(f"offline beam {b} | streaming / beam {b}" for b in beams)
    lines = [
        "",
        "### Streaming against faster-whisper offline (same model)",
        "",
        f"| language | clips | streaming | {head} |",
        "|---|---|---|" + "---|---|" * len(beams),
    ]
    rows = [*versus["languages"].items(), ("**overall**", {**versus["overall"], "clips": ""})]
    for language, row in rows:
        cells = " | ".join(
            f"{_pct(row[f'beam_{b}'])} | {_ratio(row[f'streaming_vs_beam_{b}'])}" for b in beams
        )
        lines.append(f"| {language} | {row['clips']} | {_pct(row['streaming'])} | {cells} |")
    return [*lines, ""]


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def plot_versus_faster_whisper(report: dict[str, Any], png: Path) -> Path:
    """Bars per language: streaming, and faster-whisper offline at each beam width."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    versus = report["faster_whisper"]
    languages = list(versus["languages"])
    series = [("streaming", "streaming")] + [
        (f"beam_{b}", f"offline beam {b}") for b in versus["beams"]
    ]
    width = 0.8 / len(series)
    figure, axis = plt.subplots(figsize=(max(5, 1.6 * len(languages)), 4))
    for n, (key, label) in enumerate(series):
        values = [100 * versus["languages"][lang][key] for lang in languages]
        axis.bar([i + n * width for i in range(len(languages))], values, width, label=label)
    axis.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(languages))])
    axis.set_xticklabels(languages)
    axis.set_ylabel("corpus WER / CER (%)")
    axis.set_title(f"Earshot streaming vs faster-whisper offline — {report['model']}")
    axis.legend(fontsize="small")
    figure.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=110)
    plt.close(figure)
    return png


def read_history(history: Path) -> list[dict[str, Any]]:
    if not history.is_file():
        return []
    lines = history.read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def plot_history(history: Path, png: Path) -> Path:
    """WER over time: overall offline and streaming, plus streaming per language."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise RuntimeError("plotting needs matplotlib: pip install 'earshot[plots]'") from exc
    entries = read_history(history)
    if not entries:
        raise ValueError(f"no eval history in {history}")
    times = [float(mdates.date2num(datetime.fromisoformat(e["created"]))) for e in entries]
    figure, axis = plt.subplots(figsize=(9, 4.5))
    axis.plot(times, [100 * e["overall"]["offline"] for e in entries], "o-", label="offline")
    axis.plot(times, [100 * e["overall"]["streaming"] for e in entries], "s-", label="streaming")
    languages = sorted({lang for e in entries for lang in e["languages"]})
    for language in languages:
        points = [(t, e["languages"].get(language)) for t, e in zip(times, entries)]
        points = [(t, row) for t, row in points if row is not None]
        axis.plot(
            [t for t, _ in points],
            [100 * row["streaming"] for _, row in points],
            ":",
            alpha=0.6,
            label=f"{language} (streaming)",
        )
    axis.xaxis_date()
    axis.set_ylabel("WER / CER (%)")
    axis.set_title("Earshot golden-set error rate over time")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.autofmt_xdate()
    figure.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=110)
    plt.close(figure)
    return png
