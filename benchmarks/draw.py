"""Benchmark: draw the zone map of a 300-workload cluster and write it as PNG.

Run: ``.venv/bin/python benchmarks/draw.py [--workloads N] [--repeat N] [--seed N]``

The cluster is :func:`segmenter.notebook.synthetic_graph` (team namespaces of services around a
database each, a PCI and a PHI store, cluster DNS, nodes, external peers). It prints the time to
build the map model, lay it out, draw it and write the PNG (target: under 10 s for 300
workloads), and the ratio against a baseline measured in the same run: plain ``nx.draw`` with a
seeded ``spring_layout`` of the same graph, written the same way. The baseline is the
hairball the zone map replaces; the ratio says what the legible picture costs over it.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MPLBACKEND", "Agg")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_SECONDS = 10.0


def time_zone_map(graph: Any, plan: Any) -> float:
    from segmenter.views.viz.draw import figure_bytes, zone_map_figure

    start = time.perf_counter()
    fig = zone_map_figure(graph, plan, title="benchmark")
    figure_bytes(fig, "png")
    return time.perf_counter() - start


def time_baseline(graph: Any, seed: int) -> float:
    import networkx as nx
    from matplotlib.figure import Figure

    start = time.perf_counter()
    fig = Figure(figsize=(14, 10))
    ax = fig.add_subplot()
    pos = nx.spring_layout(graph, seed=seed)
    nx.draw(graph, pos, ax=ax, node_size=30, with_labels=True, font_size=5, arrows=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from segmenter.notebook import synthetic_graph, synthetic_plan
    from segmenter.views.viz.zonemap import layout_zone_map, zone_map_model

    graph = synthetic_graph(args.workloads, seed=args.seed)
    plan = synthetic_plan(graph)
    print(f"graph: {args.workloads:,} workloads, {graph.number_of_nodes():,} nodes, "
          f"{graph.number_of_edges():,} edges")
    start = time.perf_counter()
    model = layout_zone_map(zone_map_model(graph, plan))
    model_time = time.perf_counter() - start
    print(f"model and layout: {model_time * 1000:.0f} ms ({model.level}, {len(model.nodes)} "
          f"markers, {len(model.edges)} edges drawn)")
    time_zone_map(graph, plan)  # warm up: font cache, imports
    zone = [time_zone_map(graph, plan) for _ in range(args.repeat)]
    base = [time_baseline(graph, args.seed) for _ in range(args.repeat)]
    zone_s, base_s = statistics.median(zone), statistics.median(base)
    print(f"zone map (draw + PNG): median {zone_s:.2f} s over {args.repeat} runs "
          f"(target < {TARGET_SECONDS:.0f} s: {'ok' if zone_s < TARGET_SECONDS else 'SLOW'})")
    print(f"baseline nx.draw + spring_layout (draw + PNG): median {base_s:.2f} s")
    print(f"ratio zone map / baseline: {zone_s / base_s:.2f}x")
    return 0 if zone_s < TARGET_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
