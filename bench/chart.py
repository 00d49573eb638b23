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


def p50_p99(results: dict[str, object], p50: str, p99: str) -> dict[str, float]:
    """Two bars per case of a bench's results: its median and its 99th percentile."""
    values = {}
    for name, figures in results.items():
        if isinstance(figures, dict) and figures.get(p50) is not None:
            values[f"{name}: p50"] = figures[p50]
            values[f"{name}: p99"] = figures[p99]
    return values


def optional(name: str) -> dict[str, object]:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else {}


def main() -> None:
    throughput = json.loads((RESULTS / "throughput.json").read_text())
    log_call = json.loads((RESULTS / "log_call.json").read_text())
    end_to_end = json.loads((RESULTS / "end_to_end.json").read_text())
    # from `make bench-edge` (the deploy-local container) and `make bench-cluster`: drawn when they have run
    fanout = optional("fanout.json")
    one_node, two_nodes = optional("cluster-1-node.json"), optional("cluster-2-nodes.json")
    panels = 3 + bool(fanout) + bool(one_node and two_nodes)
    figure, axes = plt.subplots(panels, 1, figsize=(10, 3.6 * panels + 0.5))
    bars(
        axes[0],
        {name: rate for name, rate in throughput.items() if isinstance(rate, float)},
        "Throughput to one client, lines/s (median of interleaved rounds; same run)",
        "lines/s (log scale)",
        log=True,
    )
    calls = p50_p99(log_call, "p50_us", "p99_us")
    bars(axes[1], calls, "One workflow log call (RunLogger, with persistence)", "µs (log scale)", log=True)
    latency = p50_p99(end_to_end, "p50 ms", "p99 ms")
    bars(
        axes[2], latency, "Latency, line logged to line at the client (loopback, no nginx)", "ms (log scale)", log=True
    )
    if fanout:
        edge = p50_p99(fanout, "p50_ms", "p99_ms")
        bars(axes[3], edge, "Latency through nginx (TLS, WebSocket) to N clients", "ms (log scale)", log=True)
    if one_node and two_nodes:
        axis = axes[-1]
        for nodes, cases in (("1 node", one_node), ("2 nodes", two_nodes)):
            points = sorted((case["clients"], case["p99_ms"]) for case in cases.values() if isinstance(case, dict))
            axis.plot([n for n, _ in points], [p99 for _, p99 in points], marker="o", label=nodes)
        axis.axhline(250, color="grey", linestyle="--", linewidth=1, label="target p99 250 ms")
        axis.set_title("p99 latency through nginx to N clients: one and two Socket.IO nodes (cluster)", fontsize=10)
        axis.set_xlabel("clients")
        axis.set_ylabel("p99 ms")
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(RESULTS / "figures.png", dpi=110)
    print(f"chart: {RESULTS / 'figures.png'}")


if __name__ == "__main__":
    main()
