"""The clients one and two Socket.IO nodes hold at p99 <= 250 ms, from bench/cluster.sh's two runs, and the ratio.

For each, between a case under the target and the next over it, the N where p99 reaches it (linear between the
two); with no case over it, the largest N measured ("at least"). Then what the host's own cores allow: every case
says the CPU a line cost the nodes, nginx and the clients, which all share this host's cores; a line to N viewers
cannot reach them all sooner than N times its cost per viewer spread over every core, whatever the number of nodes.
Writes bench/results/cluster.json; asserts nothing.
"""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_MS = 250.0


def clients_held(cases: dict[str, Any]) -> tuple[float | None, bool]:
    """The clients held at TARGET_MS, and whether a case over the target bounds it."""
    points = sorted(
        # a case that lost lines or connections did not hold its clients, whatever its p99
        (case["clients"], case["p99_ms"] if case["delivered"] == case["expected"] else float("inf"))
        for case in cases.values()
        if isinstance(case, dict)
    )
    for (n_low, p_low), (n_high, p_high) in pairwise(points):
        if p_low <= TARGET_MS < p_high:
            return n_low + (n_high - n_low) * (TARGET_MS - p_low) / (p_high - p_low), True
    under = [n for n, p99 in points if p99 <= TARGET_MS]
    return (max(under) if under else None), False


def cpu_per_viewer_line_s(case: dict[str, Any]) -> float:
    """The CPU (s) a line cost per viewer in `case`: the Socket.IO nodes, nginx and the clients, all on this host."""
    cores = case["socketio_cpu_share"] + case["nginx_cpu_share"] + case["clients_cpu_share"]
    return float(cores / case["rate_lines_per_s"] / case["clients"])


def main() -> None:
    held: dict[int, dict[str, Any]] = {}
    measured: list[dict[str, Any]] = []
    for nodes, name in ((1, "cluster-1-node.json"), (2, "cluster-2-nodes.json")):
        cases = json.loads((RESULTS / name).read_text())
        measured += [case for case in cases.values() if isinstance(case, dict)]
        for case_name, case in cases.items():
            if isinstance(case, dict):
                print(
                    f"{nodes} node(s), {case_name:28} p99 {case['p99_ms']} ms  "
                    f"delivered {case['delivered']}/{case['expected']}  disconnects {case['disconnects']}  "
                    f"Socket.IO CPU {case['socketio_cpu_share']}"
                )
        clients, bounded = clients_held(cases)
        held[nodes] = {"clients": None if clients is None else round(clients), "bounded": bounded}
        if clients is None:
            fewest = min(case["clients"] for case in cases.values() if isinstance(case, dict))
            print(f"{nodes} node(s) held no case measured at p99 <= 250 ms (fewer than {fewest} clients)")
        else:
            print(f"{nodes} node(s) held {'' if bounded else 'at least '}{round(clients)} clients at p99 <= 250 ms")
    one, two = held[1]["clients"], held[2]["clients"]
    ratio = round(two / one, 2) if one and two else None
    # a count that is only "at least" (no case over the target) makes the ratio a bound, or says nothing
    bound = {(True, True): "", (False, True): "at most ", (True, False): "at least "}.get(
        (held[1]["bounded"], held[2]["bounded"]), "unknown: neither count is bounded, "
    )
    print(f"two nodes / one node: {bound}{ratio if ratio is not None else 'none (see above)'} (target >= 1.8)")
    # the cheapest case per viewer, so that the count is the most any number of nodes could hold here
    cost_s = min(cpu_per_viewer_line_s(case) for case in measured)
    cores = min(case["host_cores"] for case in measured)
    host_bound = round(cores * TARGET_MS / 1000 / cost_s)
    print(
        f"this host: a line cost at least {cost_s * 1e6:.0f} µs of CPU per viewer (nodes, nginx, clients), so its "
        f"{cores} cores get a line to at most about {host_bound} viewers within {TARGET_MS:g} ms, whatever the number "
        f"of nodes, even with every core busy all the time"
        + (f": at most {host_bound / one:.2f} x the {one} one node held" if one else "")
    )
    summary = {
        "target_p99_ms": TARGET_MS,
        "held": held,
        "ratio": ratio,
        "ratio_bound": bound.strip(" ,") or "exact",
        "host_cores": cores,
        "cpu_per_viewer_line_us": round(cost_s * 1e6, 1),
        "host_bound_clients": host_bound,
    }
    (RESULTS / "cluster.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
