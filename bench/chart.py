"""Draws the figures the benches wrote (bench/results/*.json) as one PNG: bench/results/figures.png.

python bench/chart.py
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

RESULTS = Path(__file__).parent / "results"


def bars(axis: plt.Axes, values: dict[str, float], title: str, unit: str, log: bool = False) -> None:
    names = list(values)
    axis.barh(names, [values[name] for name in names], color="#4c72b0")
    for index, name in enumerate(names):
        axis.text(values[name], index, f" {values[name]:,.1f}", va="center", fontsize=8)
    axis.set_title(title, fontsize=10)
    axis.set_xlabel(unit)
    if log:
        axis.set_xscale("log")
    axis.invert_yaxis()


def main() -> None:
    throughput = json.loads((RESULTS / "throughput.json").read_text())
    log_call = json.loads((RESULTS / "log_call.json").read_text())
    end_to_end = json.loads((RESULTS / "end_to_end.json").read_text())
    figure, axes = plt.subplots(3, 1, figsize=(10, 11))
    bars(
        axes[0],
        {name: rate for name, rate in throughput.items() if isinstance(rate, float)},
        "Throughput to one client, lines/s (median of rounds; same run)",
        "lines/s (log scale)",
        log=True,
    )
    calls = {}
    for name, figures in log_call.items():
        if isinstance(figures, dict):
            calls[f"{name}: p50"] = figures["p50_us"]
            calls[f"{name}: p99"] = figures["p99_us"]
    bars(axes[1], calls, "One workflow log call (RunLogger, with persistence)", "µs (log scale)", log=True)
    latency = {}
    for name, figures in end_to_end.items():
        latency[f"{name}: p50"] = figures["p50 ms"]
        latency[f"{name}: p99"] = figures["p99 ms"]
    bars(
        axes[2], latency, "Latency, line logged to line at the client (loopback, no nginx)", "ms (log scale)", log=True
    )
    figure.tight_layout()
    figure.savefig(RESULTS / "figures.png", dpi=110)
    print(f"chart: {RESULTS / 'figures.png'}")


if __name__ == "__main__":
    main()
