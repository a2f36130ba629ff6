"""The capacity plot: final latency (p50, p95) against concurrent streams, one colour
per server config, the SLO drawn in; below it, when the server has ``/metrics``, the
engine's busy share and mean batch size at each step.

matplotlib is optional (the ``loadtest`` extra): without it there is no PNG, and
the JSON says everything the plot shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

LATENCY_TICKS = [0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 20, 50, 100]


def plot_capacity(report: dict[str, Any], path: Path) -> bool:
    """Write the PNG; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullLocator
    except ImportError:
        return False
    configs = report["configs"]
    with_server = any(
        step["server"]["batch_size_mean"] is not None
        for config in configs.values()
        for step in config["steps"]
    )
    rows = 3 if with_server else 1
    figure, axes = plt.subplots(
        rows,
        1,
        figsize=(8, 9 if with_server else 4.8),
        sharex=True,
        squeeze=False,
        height_ratios=[2.2, 1, 1] if with_server else [1],
    )
    latency = axes[0][0]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for color, (label, config) in zip(colors, configs.items()):
        steps = config["steps"]
        x = [s["streams"] for s in steps]
        p95 = [s["final_latency"]["p95"] for s in steps]
        p50 = [s["final_latency"]["p50"] for s in steps]
        capacity = config["capacity_streams"]
        latency.plot(x, p95, "o-", color=color, label=f"{label} p95 (capacity {capacity})")
        latency.plot(x, p50, "o--", color=color, alpha=0.6, label=f"{label} p50")
        if with_server:
            busy = [_percent(s["server"]["engine_busy_ratio"]) for s in steps]
            axes[1][0].plot(x, busy, "s-", color=color, label=label)
            batch = [s["server"]["batch_size_mean"] for s in steps]
            axes[2][0].plot(x, batch, "s-", color=color, label=label)
    slo = report["slo_p95_final_s"]
    latency.axhline(slo, color="red", linewidth=1, linestyle=":", label=f"SLO: p95 ≤ {slo} s")
    latency.set_ylabel("final latency, s\n(end of speech → final)")
    latency.set_yscale("log")
    latency.yaxis.set_major_locator(FixedLocator(LATENCY_TICKS))
    latency.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    latency.yaxis.set_minor_locator(NullLocator())
    latency.grid(True, alpha=0.3)
    latency.legend(fontsize=8)
    machine = report["machine"]
    latency.set_title(
        f"Earshot capacity: {report['model']} on {report['device']}"
        f" ({machine['cpu_count']} CPUs), real-time streams of real speech",
        fontsize=10,
    )
    if with_server:
        axes[1][0].set_ylabel("engine busy, %")
        axes[1][0].set_ylim(0, 105)
        axes[2][0].set_ylabel("mean engine\nbatch size")
        axes[2][0].set_ylim(bottom=0)
        for ax in (axes[1][0], axes[2][0]):
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
    measured = sorted({s["streams"] for c in configs.values() for s in c["steps"]})
    axes[-1][0].set_xlabel("concurrent real-time streams")
    axes[-1][0].set_xticks(measured)
    axes[-1][0].set_xlim(0, max(measured, default=1) + 1)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def _percent(ratio: float | None) -> float | None:
    return None if ratio is None else 100 * ratio
