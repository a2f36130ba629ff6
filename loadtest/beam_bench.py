"""``python -m loadtest.beam_bench``: what a wider beam buys finals, and what it costs.

Decodes every short clip of the chosen languages as one final, once per beam width, on
one model replica with one CPU thread (what each scheduler worker has on a CPU host),
and reports corpus WER per language and the CPU seconds per width. The scheduler's
``idle_beam_size`` (batch_policy.py) rests on this: wide finals while the engine has
room are worth their cost. Prints JSON; ``--plot`` writes a bar chart.

    python -m loadtest.beam_bench --manifest ../shared/speech/manifest.jsonl \\
        --languages de,es,fr,pt --beams 1,5 --plot loadtest/results/beam-cpu-base.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from earshot.audio_files import read_audio
from earshot.config import EngineConfig
from earshot.engine import WhisperEngine
from earshot.loadtest.host import machine
from earshot.transcript import Priority, TranscriptionRequest
from earshot.wer import error_rate


def run(manifest: Path, languages: list[str], beams: list[int], max_s: float) -> dict[str, Any]:
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    clips = [
        r
        for r in rows
        if r["language"] in languages and r["kind"] == "short" and r["duration_s"] <= max_s
    ]
    audio = [read_audio(manifest.parent / r["file"], 16000) for r in clips]
    engine = WhisperEngine(EngineConfig(workers=1, cpu_threads=1))
    engine.warm_up()
    results: dict[str, Any] = {}
    for beam in beams:
        engine.config = replace(engine.config, beam_size=beam)
        started = time.process_time()
        texts = [
            engine.transcribe(
                [TranscriptionRequest(audio=a, priority=Priority.FINAL, language=r["language"])]
            )[0].text
            for r, a in zip(clips, audio)
        ]
        cpu_s = time.process_time() - started
        wer = {}
        for language in languages:
            mine = [i for i, r in enumerate(clips) if r["language"] == language]
            refs, hyps = [clips[i]["text"] for i in mine], [texts[i] for i in mine]
            wer[language] = round(error_rate(refs, hyps, language), 4) if mine else None
        results[str(beam)] = {"cpu_s": round(cpu_s, 2), "wer": wer}
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "model": engine.model_name,
        "compute_type": engine.compute_type,
        "clips": len(clips),
        "audio_s": round(sum(len(a) for a in audio) / 16000, 1),
        "beams": results,
    }


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    beams = list(report["beams"])
    languages = [k for k, v in report["beams"][beams[0]]["wer"].items() if v is not None]
    figure, (wer_axis, cpu_axis) = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.8 / len(beams)
    for n, beam in enumerate(beams):
        values = [100 * report["beams"][beam]["wer"][lang] for lang in languages]
        positions = [i + n * width for i in range(len(languages))]
        wer_axis.bar(positions, values, width, label=f"beam {beam}")
    wer_axis.set_xticks([i + width * (len(beams) - 1) / 2 for i in range(len(languages))])
    wer_axis.set_xticklabels(languages)
    wer_axis.set_ylabel("corpus WER, %")
    wer_axis.legend()
    cpu_axis.bar(beams, [report["beams"][b]["cpu_s"] for b in beams])
    cpu_axis.set_xlabel("beam width")
    cpu_axis.set_ylabel(f"CPU s for {report['audio_s']:.0f} s of finals")
    host = report["machine"]
    figure.suptitle(f"{report['model']} {report['compute_type']}, {host['cpu']} {host['simd']}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.beam_bench", description=__doc__)
    parser.add_argument("--manifest", type=Path, default=Path("tests/data/speech/manifest.jsonl"))
    parser.add_argument("--languages", default="de,es,fr,pt")
    parser.add_argument("--beams", default="1,5")
    parser.add_argument("--max-clip-s", type=float, default=15.0)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)
    report = run(
        args.manifest,
        args.languages.split(","),
        [int(b) for b in args.beams.split(",")],
        args.max_clip_s,
    )
    json.dump(report, sys.stdout, indent=2)
    print()
    if args.plot:
        plot(report, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
