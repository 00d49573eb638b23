"""The clients one and two Socket.IO nodes hold at p99 <= 250 ms, from bench/cluster.sh's two runs, and the ratio.

For each, between a case under the target and the next over it, the N where p99 reaches it (linear between the
two); with no case over it, the largest N measured ("at least"). Writes bench/results/cluster.json; asserts nothing.
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


def main() -> None:
    held: dict[int, dict[str, Any]] = {}
    for nodes, name in ((1, "cluster-1-node.json"), (2, "cluster-2-nodes.json")):
        cases = json.loads((RESULTS / name).read_text())
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
    summary = {"target_p99_ms": TARGET_MS, "held": held, "ratio": ratio, "ratio_bound": bound.strip(" ,") or "exact"}
    (RESULTS / "cluster.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
