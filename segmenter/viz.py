"""Pictures of the graph, coloured by zone (matplotlib, imported lazily).

Zones are laid out as columns, left to right in the direction traffic usually flows into a
cardholder-data environment: external, general, connected, restricted, infrastructure.
"""

from __future__ import annotations

import os
from typing import Any

import networkx as nx

from segmenter.planner import CONNECTED, EXTERNAL, GENERAL, INFRASTRUCTURE, RESTRICTED, Plan

ZONE_COLOURS = {
    RESTRICTED: "#d62728",
    CONNECTED: "#ff7f0e",
    GENERAL: "#1f77b4",
    INFRASTRUCTURE: "#7f7f7f",
    EXTERNAL: "#9467bd",
}
COLUMN_ORDER = (EXTERNAL, GENERAL, CONNECTED, RESTRICTED, INFRASTRUCTURE)


def zone_positions(graph: nx.DiGraph, plan: Plan) -> dict[str, tuple[float, float]]:
    columns: dict[str, list[str]] = {z: [] for z in COLUMN_ORDER}
    for node in sorted(graph.nodes):
        columns[plan.zone_of(node)].append(node)
    positions: dict[str, tuple[float, float]] = {}
    used = [z for z in COLUMN_ORDER if columns[z]]
    for x, zone in enumerate(used):
        members = sorted(columns[zone], key=lambda n: (graph.nodes[n].get("namespace") or "", n))
        for i, node in enumerate(members):
            y = (len(members) - 1) / 2 - i
            positions[node] = (float(x) * 3.0, float(y))
    return positions


def short_label(graph: nx.DiGraph, node: str) -> str:
    attrs = graph.nodes[node]
    if attrs.get("kind") == "workload":
        return f"{attrs.get('namespace')}/{attrs.get('name')}"
    if attrs.get("kind") == "external" and attrs.get("dns_names"):
        return str(attrs["dns_names"][0])
    return str(attrs.get("label") or node)


def draw_zones(graph: nx.DiGraph, plan: Plan, ax: Any = None, *, title: str = "") -> Any:
    """Draw the graph by zone on ``ax`` (a new figure when None) and return the Axes."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    nodes = [n for n in graph.nodes if graph.degree(n) > 0 or graph.nodes[n].get("kind") ==
             "workload"]
    sub = graph.subgraph(nodes)
    pos = zone_positions(sub, plan)
    height = max(4.0, 0.45 * max((sum(1 for n in sub if plan.zone_of(n) == z)
                                  for z in COLUMN_ORDER), default=1))
    if ax is None:
        _, ax = plt.subplots(figsize=(14, height))
    colours = [ZONE_COLOURS[plan.zone_of(n)] for n in sub.nodes]
    crossing = [(u, v) for u, v in sub.edges if plan.zone_of(u) != plan.zone_of(v)]
    internal = [(u, v) for u, v in sub.edges if plan.zone_of(u) == plan.zone_of(v)]
    nx.draw_networkx_edges(sub, pos, edgelist=internal, ax=ax, edge_color="#999999",
                           arrows=True, arrowsize=10, width=1.0, connectionstyle="arc3,rad=0.08",
                           node_size=500)
    nx.draw_networkx_edges(sub, pos, edgelist=crossing, ax=ax, edge_color="#444444",
                           arrows=True, arrowsize=12, width=1.6, style="dashed",
                           connectionstyle="arc3,rad=0.08", node_size=500)
    nx.draw_networkx_nodes(sub, pos, ax=ax, node_color=colours, node_size=500,
                           edgecolors="black", linewidths=0.8)
    for node, (x, y) in pos.items():
        ax.annotate(short_label(sub, node), (x, y), xytext=(0, 13), textcoords="offset points",
                    ha="center", fontsize=8,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                          "alpha": 0.8})
    used = sorted({plan.zone_of(n) for n in sub.nodes}, key=COLUMN_ORDER.index)
    xs = sorted({x for x, _ in pos.values()})
    top = max((y for _, y in pos.values()), default=0.0)
    for x, zone in zip(xs, used, strict=False):
        ax.text(x, top + 1.0, zone, ha="center", va="bottom", fontsize=10, weight="bold",
                color=ZONE_COLOURS[zone])
    ax.legend(handles=[Patch(color=ZONE_COLOURS[z], label=z) for z in used]
              + [Patch(facecolor="white", edgecolor="#444444", linestyle="--",
                       label="crosses a zone boundary")],
              loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=len(used) + 1,
              frameon=False, fontsize=8)
    ax.set_title(title or "Observed communications by zone")
    ax.margins(x=0.12, y=0.12)
    ax.set_axis_off()
    return ax


def save_zone_map(graph: nx.DiGraph, plan: Plan, path: str | os.PathLike[str], *,
                  title: str = "") -> None:
    """Write the zone map as PNG (or SVG by suffix), atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from segmenter.fileio import atomic_write_bytes

    ax = draw_zones(graph, plan, title=title)
    fig = ax.figure
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    fmt = "svg" if str(path).endswith(".svg") else "png"
    fig.savefig(buffer, format=fmt, dpi=110, metadata={"Software": None} if fmt == "png" else
                {"Date": None})
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
