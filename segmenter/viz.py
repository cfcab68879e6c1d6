"""Pictures of the graph and the plan (matplotlib, imported lazily inside each function).

- :func:`draw_zones` / :func:`save_zone_map`: the zone map. Workloads grouped by zone, each zone
  a shaded rounded region (left to right the way traffic usually flows towards the data:
  external, general, connected, restricted, infrastructure), namespaces as headings inside a
  zone, sensitive stores marked, edges styled by allowed / crossing a zone boundary / would be
  denied. Above ``max_workloads`` workloads it collapses to namespaces (then to zones) and says
  so in the title.
- :func:`draw_diff`: the same map with what a policy change opens and closes.
- :func:`reachability` / :func:`draw_reachability`: who can reach the restricted zone, now
  versus with the new policies, computed with the project's evaluator.
- :func:`learning_curve` / :func:`draw_learning_curve`: distinct edges discovered over the
  capture window (is the capture long enough to have seen everything?).

Every layout is deterministic (no randomness anywhere); :func:`figure_bytes` writes PNG and SVG
without timestamps, so the same inputs give the same bytes.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import networkx as nx

from segmenter.planner import CONNECTED, EXTERNAL, GENERAL, INFRASTRUCTURE, RESTRICTED, Plan

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from segmenter.model import Flow, Inventory

logger = logging.getLogger(__name__)

ZONE_COLOURS = {
    RESTRICTED: "#c62828",
    CONNECTED: "#ef6c00",
    GENERAL: "#1565c0",
    INFRASTRUCTURE: "#616161",
    EXTERNAL: "#6a1b9a",
}
ZONE_DESCRIPTIONS = {
    RESTRICTED: "declared sensitive stores",
    CONNECTED: "connected-to: in scope",
    GENERAL: "out of scope once enforced",
    INFRASTRUCTURE: "security-impacting",
    EXTERNAL: "outside the cluster",
}
COLUMN_ORDER = (EXTERNAL, GENERAL, CONNECTED, RESTRICTED, INFRASTRUCTURE)

# Above this many workloads the zone map collapses to namespaces (then zones).
MAX_WORKLOADS = 300
# Restricted members stay individual when collapsing, up to this many.
KEEP_RESTRICTED = 40
# Externals and cluster nodes beyond these are folded into one "N other ..." entry.
MAX_EXTERNALS = 16
MAX_CLUSTER_NODES = 12
# A diff with more changed pairs than this is drawn by namespace (then by zone).
MAX_DIFF_EDGES = 120
# This many edges or more between one node and one other zone are drawn as one bundle.
BUNDLE_MIN = 8
# Reachability heatmaps with more sources than this group the rows by namespace.
MAX_MATRIX_ROWS = 60

LEVELS = ("workloads", "namespaces", "zones")

EDGE_STYLES: dict[str, dict[str, Any]] = {
    "allowed": {"color": "#90a4ae", "lw": 0.8, "ls": "solid", "label": "allowed, within a zone"},
    "crossing": {"color": "#263238", "lw": 1.1, "ls": (0, (4, 2)),
                 "label": "allowed, crosses a zone boundary"},
    "denied": {"color": "#d50000", "lw": 1.6, "ls": (0, (1, 1.5)),
               "label": "would be denied"},
    "opened": {"color": "#2e7d32", "lw": 1.6, "ls": "solid", "label": "opens (newly allowed)"},
    "closed": {"color": "#d50000", "lw": 1.3, "ls": (0, (3, 2)),
               "label": "closes (newly denied)"},
}

# Sizes, in inches (the zone map's data unit is one inch when it owns its figure).
_FONT_PT = 7.5
_CHAR_IN = _FONT_PT * 0.6 / 72
_ROW_IN = 0.30
_MARKER_IN = 0.15
_MAX_LABEL = 24
_ZONE_PAD = 0.16
_ZONE_GAP = 0.28
_TITLE_BAND = 0.46
_TARGET_ASPECT = 1.6


# ---------------------------------------------------------------------------------------------
# The zone map model: what is drawn, independent of matplotlib.


@dataclass(frozen=True)
class MapNode:
    """One marker on the map: a graph node, or a group of them when collapsed."""

    id: str
    label: str
    zone: str
    group: str  # the heading it sits under inside its zone ("" when none)
    kind: str  # workload, external, node, apiserver, namespace, zone, others
    members: tuple[str, ...]
    role: str = ""  # store, processor, suggested (looks like a store, not declared) or ""
    classes: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        return len(self.members)


@dataclass(frozen=True)
class MapEdge:
    source: str
    target: str
    style: str  # a key of EDGE_STYLES
    flows: int = 0
    count: int = 1  # underlying edges (or connections, for a diff)
    text: str = ""  # drawn beside the edge when the picture is small enough


@dataclass
class ZoneMap:
    """The zone map before drawing: nodes per zone, aggregated edges, and the layout."""

    nodes: dict[str, MapNode]
    edges: list[MapEdge]
    level: str
    note: str
    workloads: int
    positions: dict[str, tuple[float, float]] = field(default_factory=dict)
    headers: list[tuple[float, float, str]] = field(default_factory=list)
    regions: list[tuple[str, float, float, float, float]] = field(default_factory=list)
    width: float = 0.0
    height: float = 0.0
    row_height: float = _ROW_IN
    zone_chars: dict[str, int] = field(default_factory=dict)

    def zone_nodes(self, zone: str) -> list[MapNode]:
        return [n for n in self.nodes.values() if n.zone == zone]


def node_zone(graph: nx.DiGraph, plan: Plan | None, node: str,
              data_class: str | None = None) -> str:
    """The zone ``node`` is drawn in: its zone for ``data_class`` (the most restrictive over
    every class when None). With no class declared, externals, cluster nodes, the API server
    and excluded namespaces still get their own zones."""
    attrs = graph.nodes[node] if node in graph else {}
    if plan is not None and plan.classes:
        if data_class is None:
            return plan.zone_of(node)
        for scope in plan.classes:
            if scope.data_class == data_class:
                return scope.zone_of(node)
        raise ValueError(f"the plan has no class {data_class!r}")
    kind = attrs.get("kind")
    if kind == "external":
        return EXTERNAL
    if kind in {"node", "apiserver"}:
        return INFRASTRUCTURE
    excluded = set(plan.excluded_namespaces) if plan is not None else set()
    if attrs.get("namespace") in excluded:
        return INFRASTRUCTURE
    return GENERAL


def _roles(plan: Plan | None, data_class: str | None) -> dict[str, tuple[str, tuple[str, ...]]]:
    """node -> (store|processor|suggested, classes)."""
    out: dict[str, tuple[str, list[str]]] = {}
    if plan is None:
        return {}
    for scope in plan.classes:
        if data_class is not None and scope.data_class != data_class:
            continue
        for member in scope.members(RESTRICTED):
            role = "processor" if member.reason.startswith("processor") else "store"
            previous = out.get(member.node)
            if previous is not None and previous[0] == "store":
                role = "store"
            classes = [*(previous[1] if previous else []), scope.data_class]
            out[member.node] = (role, classes)
    for member in plan.suggestions:
        out.setdefault(member.node, ("suggested", []))
    return {k: (role, tuple(sorted(set(c)))) for k, (role, c) in out.items()}


def _drawn_nodes(graph: nx.DiGraph) -> list[str]:
    """Every workload, and every other node that has a flow with something else."""
    out = []
    for node, attrs in graph.nodes(data=True):
        if attrs.get("kind") == "workload" or any(
                peer != node for peer in (*graph.successors(node), *graph.predecessors(node))):
            out.append(node)
    return sorted(out)


def _traffic(graph: nx.DiGraph, node: str) -> int:
    return sum(int(d.get("flows", 0)) for _, _, d in graph.in_edges(node, data=True)) + sum(
        int(d.get("flows", 0)) for _, _, d in graph.out_edges(node, data=True))


def display_label(graph: nx.DiGraph, node: str, *, with_namespace: bool = False) -> str:
    """A short name: the workload name (``namespace/name`` when asked), a DNS name, an
    address."""
    attrs = graph.nodes[node] if node in graph else {}
    kind = attrs.get("kind")
    if kind == "workload":
        name = str(attrs.get("name") or node.rsplit("/", 1)[-1])
        return f"{attrs.get('namespace')}/{name}" if with_namespace else name
    if kind == "external" and attrs.get("dns_names"):
        return str(attrs["dns_names"][0])
    if kind is None and node.count("/") == 2:
        namespace, _, name = node.split("/", 2)
        return f"{namespace}/{name}" if with_namespace else name
    return str(attrs.get("label") or node)


def short_label(graph: nx.DiGraph, node: str) -> str:
    """``namespace/name`` for workloads; kept for callers of the earlier API."""
    return display_label(graph, node, with_namespace=True)


_GROUP_RANK = {"external": 0, "apiserver": 1, "node": 2, "others": 3}


def _group_nodes(graph: nx.DiGraph, nodes: Sequence[str], zone_of: Callable[[str], str],
                 roles: Mapping[str, tuple[str, tuple[str, ...]]], level: str
                 ) -> tuple[dict[str, MapNode], dict[str, str]]:
    """Display nodes and the map original node -> display node id."""
    display: dict[str, list[str]] = defaultdict(list)
    info: dict[str, tuple[str, str, str, str]] = {}  # id -> (label, zone, group, kind)
    restricted = [n for n in nodes if zone_of(n) == RESTRICTED]
    keep_restricted = len(restricted) <= KEEP_RESTRICTED
    externals = sorted((n for n in nodes if graph.nodes[n].get("kind") == "external"),
                       key=lambda n: (-_traffic(graph, n), n))
    cluster_nodes = sorted((n for n in nodes if graph.nodes[n].get("kind") == "node"),
                           key=lambda n: (-_traffic(graph, n), n))
    limit_ext = MAX_EXTERNALS if level == "workloads" else 1
    limit_nodes = MAX_CLUSTER_NODES if level == "workloads" else 1
    folded = set(externals[limit_ext - 1:]) if len(externals) > limit_ext else set()
    folded |= set(cluster_nodes[limit_nodes - 1:]) if len(cluster_nodes) > limit_nodes else set()
    for node in nodes:
        attrs = graph.nodes[node]
        kind = str(attrs.get("kind") or "workload")
        zone = zone_of(node)
        if node in folded:
            what = "addresses" if kind == "external" else "nodes"
            did = f"others:{zone}:{kind}"
            info[did] = (what, zone, "" if kind == "external" else "nodes", "others")
        elif kind != "workload" or level == "workloads" or (
                zone == RESTRICTED and keep_restricted):
            did = node
            group = {"external": "private addresses" if attrs.get("private") else "",
                     "node": "nodes", "apiserver": "control plane"
                     }.get(kind, str(attrs.get("namespace") or ""))
            label = display_label(graph, node, with_namespace=level != "workloads")
            info[did] = (label, zone, group if level == "workloads" else "", kind)
        elif level == "namespaces":
            namespace = str(attrs.get("namespace") or "")
            did = f"namespace:{zone}:{namespace}"
            info[did] = (namespace, zone, "", "namespace")
        else:
            did = f"zone:{zone}"
            info[did] = ("workloads", zone, "", "zone")
        display[did].append(node)
    out: dict[str, MapNode] = {}
    mapping: dict[str, str] = {}
    kept_kinds = {graph.nodes[m].get("kind") for did, ms in display.items() if len(ms) == 1
                  and did == ms[0] for m in ms}
    for key, members in list(display.items()):
        label, zone, group, kind = info[key]
        did = key
        if len(members) == 1 and kind in {"namespace", "zone", "others"}:
            # A group of one is drawn as that one.
            del display[key]
            did = members[0]
            attrs = graph.nodes[did]
            kind = str(attrs.get("kind") or "workload")
            label = display_label(graph, did, with_namespace=level != "workloads")
            group = "" if level != "workloads" else (
                {"node": "nodes"}.get(kind, str(attrs.get("namespace") or "")))
            display[did] = members
        elif kind == "namespace":
            label = f"{label} ({len(members)})"
        elif kind == "zone":
            label = f"{len(members)} {label}"
        elif kind == "others":
            raw = graph.nodes[members[0]].get("kind")
            other = " other" if raw in kept_kinds else ""
            label = f"{len(members)}{other} {label}"
        role, classes = "", cast(tuple[str, ...], ())
        member_roles = [roles[m] for m in members if m in roles]
        if len(members) == 1 and member_roles:
            role, classes = member_roles[0]
        elif any(r == "store" for r, _ in member_roles):
            role = "store"
        out[did] = MapNode(did, label, zone, group, kind, tuple(sorted(members)), role, classes)
        for m in members:
            mapping[m] = did
    # Two workloads with one name in one namespace (a Deployment and a CronJob "backup"):
    # tell them apart by kind.
    seen: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for did, mn in out.items():
        seen[(mn.zone, mn.group, mn.label)].append(did)
    for dids in seen.values():
        if len(dids) > 1:
            for did in dids:
                mn = out[did]
                kind = str(graph.nodes[did].get("workload_kind") or mn.kind) if did in graph \
                    else mn.kind
                out[did] = MapNode(mn.id, f"{mn.label} ({kind})", mn.zone, mn.group, mn.kind,
                                   mn.members, mn.role, mn.classes)
    return out, mapping


def _edge_verdicts(verdicts: Any) -> dict[tuple[str, str], bool]:
    """(client, server) -> allowed, from FlowVerdicts or a mapping; denied wins."""
    if verdicts is None:
        return {}
    if isinstance(verdicts, Mapping):
        return {(str(k[0]), str(k[1])): bool(v) for k, v in verdicts.items()}
    out: dict[tuple[str, str], bool] = {}
    for v in verdicts:
        key = (str(v.client), str(v.server))
        out[key] = out.get(key, True) and bool(v.allowed)
    return out


def zone_map_model(graph: nx.DiGraph, plan: Plan | None, *, verdicts: Any = None,
                   data_class: str | None = None, max_workloads: int = MAX_WORKLOADS,
                   level: str | None = None,
                   changes: Sequence[tuple[str, str, str, int, str]] | None = None) -> ZoneMap:
    """What the zone map shows (before layout).

    ``verdicts``: :class:`segmenter.verify.FlowVerdict` items, or ``{(client, server): allowed}``;
    edges with a denied flow are drawn as denied. ``level``: force ``workloads``,
    ``namespaces`` or ``zones`` (default: ``workloads`` up to ``max_workloads`` workloads).
    ``changes``: ``(source, target, style, count, text)`` edges to draw instead of the graph's
    (the diff view); the graph's edges are then drawn faintly as context.
    """
    if level is not None and level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    nodes = _drawn_nodes(graph)
    workloads = sum(1 for n in nodes if graph.nodes[n].get("kind") == "workload")
    zones = {n: node_zone(graph, plan, n, data_class) for n in nodes}
    roles = _roles(plan, data_class)
    chosen = level or "workloads"
    note = ""
    if level is None and workloads > max_workloads:
        chosen = "namespaces"
        namespaces = {(zones[n], graph.nodes[n].get("namespace")) for n in nodes
                      if graph.nodes[n].get("kind") == "workload"}
        if len(namespaces) > max_workloads:
            chosen = "zones"
    display, mapping = _group_nodes(graph, nodes, zones.__getitem__, roles, chosen)
    if chosen == "namespaces":
        spaces = len({graph.nodes[n].get("namespace") for n in nodes
                      if graph.nodes[n].get("kind") == "workload"})
        note = (f"{workloads:,} workloads in {spaces:,} namespaces: collapsed to namespaces "
                f"(more than {max_workloads:,} workloads)")
    elif chosen == "zones":
        note = (f"{workloads:,} workloads: collapsed to zones (more than {max_workloads:,} "
                "workloads)")
    if level is not None and level != "workloads":
        note = f"{workloads:,} workloads, drawn by {level.rstrip('s')}"
    allowed = _edge_verdicts(verdicts)
    edges: dict[tuple[str, str], dict[str, Any]] = {}

    def add(u: str, v: str, style: str, count: int, flows: int, text: str) -> None:  # noqa: PLR0917
        du, dv = mapping.get(u), mapping.get(v)
        if du is None or dv is None or du == dv:
            return
        entry = edges.setdefault((du, dv), {"styles": set(), "count": 0, "flows": 0,
                                            "texts": []})
        entry["styles"].add(style)
        entry["count"] += count
        entry["flows"] += flows
        if text:
            entry["texts"].append(text)

    if changes is None:
        for u, v, data in graph.edges(data=True):
            if u == v:
                continue
            crossing = zones.get(u) != zones.get(v)
            style = "crossing" if crossing else "allowed"
            if allowed.get((u, v)) is False:
                style = "denied"
            add(u, v, style, 1, int(data.get("flows", 0)), "")
    else:
        for u, v, _ in graph.edges(data=True):
            if u != v:
                add(u, v, "allowed", 0, 0, "")
        for u, v, style, count, text in changes:
            add(u, v, style, count, 0, text)
    precedence = ("denied", "closed", "opened", "crossing", "allowed")
    out_edges = []
    for (du, dv), entry in sorted(edges.items()):
        style = next(s for s in precedence if s in entry["styles"])
        if style == "allowed" and display[du].zone != display[dv].zone and changes is None:
            style = "crossing"
        texts = sorted(set(entry["texts"]))
        text = ", ".join(texts[:3]) + (f" +{len(texts) - 3}" if len(texts) > 3 else "")
        out_edges.append(MapEdge(du, dv, style, entry["flows"], max(1, entry["count"]), text))
    return ZoneMap(display, _bundle(out_edges, display), chosen, note, workloads)


def _bundle(edges: list[MapEdge], nodes: Mapping[str, MapNode]) -> list[MapEdge]:
    """Fold the allowed edges between one node and :data:`BUNDLE_MIN` or more nodes of
    another zone into one edge from (or to) that zone's region: the fan of every workload
    into cluster DNS becomes one arrow "from 290 general"."""
    foldable = [e for e in edges if e.style in {"allowed", "crossing"}]
    taken: set[int] = set()
    out: list[MapEdge] = []
    for incoming in (True, False):
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, e in enumerate(foldable):
            if i in taken:
                continue
            node, other = (e.target, e.source) if incoming else (e.source, e.target)
            if nodes[node].zone != nodes[other].zone:
                groups[(node, nodes[other].zone)].append(i)
        for (node, zone), members in sorted(groups.items()):
            if len(members) < BUNDLE_MIN:
                continue
            taken.update(members)
            count = sum(foldable[i].count for i in members)
            flows = sum(foldable[i].flows for i in members)
            text = f"{'from' if incoming else 'to'} {count:,} {zone}"
            out.append(MapEdge(f"region:{zone}", node, "crossing", flows, count, text)
                       if incoming else
                       MapEdge(node, f"region:{zone}", "crossing", flows, count, text))
    kept = [e for e in edges if e.style not in {"allowed", "crossing"}]
    kept += [e for i, e in enumerate(foldable) if i not in taken]
    return sorted(kept + out, key=lambda e: (e.source, e.target))


# ---------------------------------------------------------------------------------------------
# Layout: zones as columns of rows; namespaces as headings; wrap into sub-columns.


def _zone_items(model: ZoneMap, zone: str) -> list[tuple[str, str]]:
    members = sorted(model.zone_nodes(zone), key=lambda n: (
        _GROUP_RANK.get(n.kind, 9) if n.kind != "workload" else 9, n.group, n.label, n.id))
    items: list[tuple[str, str]] = []
    current = None
    for mn in members:
        if mn.group and mn.group != current:
            items.append(("header", mn.group))
        current = mn.group
        items.append(("node", mn.id))
    return items


def _fill(items: Sequence[tuple[str, str]], rows: int) -> list[list[tuple[str, str]]]:
    """Column-major fill; a heading never ends a column, a continued group repeats it."""
    columns: list[list[tuple[str, str]]] = []
    column: list[tuple[str, str]] = []
    heading = ""
    for kind, value in items:
        if kind == "header":
            heading = value
            if len(column) >= rows - 1 and column:
                columns.append(column)
                column = []
            column.append((kind, value))
            continue
        if len(column) >= rows:
            columns.append(column)
            column = [("header", f"{heading} (cont.)")] if heading and rows > 2 else []
        column.append((kind, value))
    if column:
        columns.append(column)
    return columns


def _truncate(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[:max(1, chars - 1)] + "…"


def _zone_title(model: ZoneMap, zone: str) -> str:
    nodes = model.zone_nodes(zone)
    members = sum(n.count for n in nodes)
    groups = sum(1 for n in nodes if n.count > 1)
    what = f"{members}" if not groups else (
        f"{members} in {len(nodes)} group{'s' if len(nodes) != 1 else ''}")
    return f"{zone.upper()}  ·  {what}"


def layout_zone_map(model: ZoneMap, *, aspect: float = _TARGET_ASPECT,
                    max_chars: int = _MAX_LABEL) -> ZoneMap:
    """Place every node (in inches).

    Each zone is a region of columns of rows; namespaces are headings. The number of rows is
    the one whose wrapped columns give a picture closest to ``aspect`` (width / height), then
    lowered as far as the column count allows, so that columns are balanced. Deterministic.
    """
    zones = [z for z in COLUMN_ORDER if model.zone_nodes(z)]
    items = {z: _zone_items(model, z) for z in zones}
    col_w: dict[str, float] = {}
    chars: dict[str, int] = {}
    for zone in zones:
        longest = max((len(model.nodes[v].label) if k == "node" else len(v) + 8
                       for k, v in items[zone]), default=8)
        chars[zone] = min(max_chars, max(longest, 10))
        col_w[zone] = _MARKER_IN + 0.1 + chars[zone] * _CHAR_IN + 0.14
    # A one-column zone is at least as wide as its title and description.
    min_inner = {z: max(len(_zone_title(model, z)) * _CHAR_IN * 1.32,
                        len(ZONE_DESCRIPTIONS[z]) * _CHAR_IN * 1.0) + 0.05 for z in zones}
    tallest = max((len(v) for v in items.values()), default=1)
    low = 3 if any(k == "header" for v in items.values() for k, _ in v) else 1
    low = min(low, tallest)

    def width_for(rows: int) -> tuple[float, int]:
        total, ncols = 0.0, 0
        for z in zones:
            n = len(_fill(items[z], rows))
            ncols += n
            total += max(n * col_w[z], min_inner[z]) + 2 * _ZONE_PAD + _ZONE_GAP
        return total - _ZONE_GAP, ncols

    best: tuple[float, int] | None = None
    for rows in range(low, tallest + 1):
        width, _ = width_for(rows)
        height = rows * _ROW_IN + _TITLE_BAND + _ZONE_PAD
        score = abs(math.log(width / height) - math.log(aspect))
        if best is None or score < best[0] - 1e-9:
            best = (score, rows)
    rows = best[1] if best else 1
    columns_at = [len(_fill(items[z], rows)) for z in zones]
    while rows > low and [len(_fill(items[z], rows - 1)) for z in zones] == columns_at:
        rows -= 1  # same columns, shorter: balance them
    row_h = _ROW_IN
    if rows * row_h < 2.4:  # few rows: spread them a little
        row_h = min(0.5, 2.4 / max(rows, 1))
    positions: dict[str, tuple[float, float]] = {}
    headers: list[tuple[float, float, str]] = []
    regions: list[tuple[str, float, float, float, float]] = []
    x = 0.0
    top = row_h / 2 + _TITLE_BAND
    bottom = -(rows - 1) * row_h - row_h / 2 - _ZONE_PAD
    for zone in zones:
        columns = _fill(items[zone], rows)
        x0 = x
        for c, column in enumerate(columns):
            cx = x0 + _ZONE_PAD + c * col_w[zone]
            for r, (kind, value) in enumerate(column):
                y = -r * row_h
                if kind == "header":
                    headers.append((cx, y, _truncate(value, chars[zone] + 1)))
                else:
                    positions[value] = (cx + _MARKER_IN / 2 + 0.02, y)
        inner = max(len(columns) * col_w[zone], min_inner[zone])
        x1 = x0 + 2 * _ZONE_PAD + inner
        regions.append((zone, x0, bottom, x1, top))
        x = x1 + _ZONE_GAP
    model.positions = positions
    model.headers = headers
    model.regions = regions
    model.width = max(x - _ZONE_GAP, 1.0)
    model.height = top - bottom
    model.row_height = row_h
    model.zone_chars = chars
    return model


# ---------------------------------------------------------------------------------------------
# Drawing


def _tint(colour: str, amount: float) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(colour)
    return (1 - (1 - r) * amount, 1 - (1 - g) * amount, 1 - (1 - b) * amount)


def _new_figure(width: float, height: float, *, pyplot: bool) -> Figure:
    if pyplot:
        import matplotlib.pyplot as plt

        return plt.figure(figsize=(width, height))
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _points_per_unit(ax: Axes) -> tuple[float, float]:
    bbox = ax.get_window_extent()
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    dpi = ax.figure.dpi
    return (bbox.width / dpi * 72 / max(abs(x1 - x0), 1e-9),
            bbox.height / dpi * 72 / max(abs(y1 - y0), 1e-9))


def _legend_handles(model: ZoneMap, styles: Iterable[str]) -> list[Any]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = []
    for zone in COLUMN_ORDER:
        if model.zone_nodes(zone):
            handles.append(Patch(facecolor=_tint(ZONE_COLOURS[zone], 0.25),
                                 edgecolor=ZONE_COLOURS[zone], label=zone))
    roles = {n.role for n in model.nodes.values()}
    if "store" in roles:
        handles.append(Line2D([], [], ls="none", marker="*", ms=11, mfc=ZONE_COLOURS[RESTRICTED],
                              mec="black", label="sensitive data store"))
    if "processor" in roles:
        handles.append(Line2D([], [], ls="none", marker="h", ms=8, mfc=ZONE_COLOURS[RESTRICTED],
                              mec="black", label="sensitive data processor"))
    if "suggested" in roles:
        handles.append(Line2D([], [], ls="none", marker="o", ms=8, mfc="white", mec="black",
                              mew=1.0, label="looks like a data store (not declared)"))
    if any(n.kind in {"namespace", "zone", "others"} for n in model.nodes.values()):
        handles.append(Line2D([], [], ls="none", marker="s", ms=8, mfc="#bdbdbd", mec="black",
                              label="group (member count)"))
    for style in styles:
        spec = EDGE_STYLES[style]
        handles.append(Line2D([], [], color=spec["color"], lw=spec["lw"] + 0.4, ls=spec["ls"],
                              label=spec["label"]))
    return handles


def _marker_for(mn: MapNode) -> str:
    if mn.kind in {"namespace", "zone", "others"}:
        return "s"
    return {"store": "*", "processor": "h"}.get(mn.role, "o")


def _endpoints(model: ZoneMap, edge: MapEdge, index: int
               ) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Where an edge starts and ends; a bundle ends at its zone region's facing side."""
    def region_point(zone: str, towards: tuple[float, float]) -> tuple[float, float]:
        # From low in the region when the node is high up (and the reverse): the line then
        # crosses the emptier part of the zones in between.
        for name, x0, y0, x1, y1 in model.regions:
            if name == zone:
                x = x1 if towards[0] > x1 else x0
                if towards[1] > (y0 + y1) / 2:
                    y = y0 + 0.3 + 0.16 * index
                else:
                    y = y1 - _TITLE_BAND - 0.2 - 0.16 * index
                return (x, y)
        return towards

    a = model.positions.get(edge.source)
    b = model.positions.get(edge.target)
    if edge.source.startswith("region:") and b is not None:
        return region_point(edge.source.split(":", 1)[1], b), b
    if edge.target.startswith("region:") and a is not None:
        return a, region_point(edge.target.split(":", 1)[1], a)
    if a is None or b is None:
        return None
    return a, b


def _label_spot(model: ZoneMap, a: tuple[float, float], b: tuple[float, float], rad: float,
                taken: list[tuple[float, float]]) -> tuple[float, float]:
    """A point on the arc3 curve from ``a`` to ``b`` away from nodes and earlier labels (the
    middle when free); the chosen point is added to ``taken``."""
    (x1, y1), (x2, y2) = a, b
    cx = (x1 + x2) / 2 + rad * (y2 - y1)
    cy = (y1 + y2) / 2 - rad * (x2 - x1)
    best: tuple[float, float, float] | None = None
    for t in (0.5, 0.4, 0.6, 0.3, 0.7, 0.22, 0.78):
        px = (1 - t) ** 2 * x1 + 2 * t * (1 - t) * cx + t * t * x2
        py = (1 - t) ** 2 * y1 + 2 * t * (1 - t) * cy + t * t * y2
        # Labels run to the right of a node: keep clear of that strip too.
        clearance = min((max(abs(py - qy) / model.row_height,
                             (qx - px) / 0.3 if px < qx else (px - qx - 1.2) / 0.3)
                         for qx, qy in taken), default=9.0)
        if clearance >= 1.0:
            best = (clearance, px, py)
            break
        if best is None or clearance > best[0]:
            best = (clearance, px, py)
    assert best is not None
    taken.append((best[1], best[2]))
    return best[1], best[2]


def _marker_size(mn: MapNode, base: float) -> float:
    """Marker diameter in points: stars larger, groups by member count."""
    d = base * (1.9 if _marker_for(mn) == "*" else 1.0)
    if mn.count > 1:
        d *= min(1.35, 1 + 0.36 * math.log10(mn.count))
    return d


def _render_map(ax: Axes, model: ZoneMap, *, font: float) -> None:
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
    from matplotlib.patheffects import withStroke

    pad = 0.12
    ax.set_xlim(-pad, model.width + pad)
    ax.set_ylim(model.regions[0][2] - pad if model.regions else -1,
                model.regions[0][4] + pad if model.regions else 1)
    ax.set_axis_off()
    sx, sy = _points_per_unit(ax)
    unit = min(sx, sy)
    scale = font / _FONT_PT
    marker_pt = max(3.0, min(_MARKER_IN * unit, model.row_height * sy * 0.6))
    halo = [withStroke(linewidth=2.0, foreground="white")]
    for zone, x0, y0, x1, y1 in model.regions:
        colour = ZONE_COLOURS[zone]
        ax.add_patch(FancyBboxPatch((x0, y0), x1 - x0, y1 - y0,
                                    boxstyle="round,pad=0,rounding_size=0.1",
                                    facecolor=_tint(colour, 0.10), edgecolor=colour,
                                    linewidth=1.2, zorder=0, gid=f"zone:{zone}"))
        ax.text(x0 + _ZONE_PAD * 0.8, y1 - 0.06, _zone_title(model, zone),
                fontsize=font * 1.2, weight="bold", color=colour, va="top", ha="left",
                zorder=5, clip_on=True)
        ax.text(x0 + _ZONE_PAD * 0.8, y1 - 0.06 - font * 1.55 / unit, ZONE_DESCRIPTIONS[zone],
                fontsize=font * 0.95, color="#455a64", va="top", ha="left", zorder=5,
                style="italic", clip_on=True)
    for hx, hy, text in model.headers:
        ax.text(hx, hy, text, fontsize=font * 0.95, color="#37474f", va="center", ha="left",
                weight="bold", zorder=4)
    # Edges, under the nodes. Many edges: thinner and fainter; crossings that do not touch
    # the in-scope zones (DNS, nodes, the internet) lighter than those that do.
    many = len(model.edges) > 150
    # A diff that closes a lot (no policies -> least privilege): thin, faint, unmarked.
    busy = sum(1 for e in model.edges if e.style == "closed") > 24
    taken: list[tuple[float, float]] = list(model.positions.values())
    bundles: dict[str, int] = defaultdict(int)
    for edge in model.edges:
        bundle = edge.source.startswith("region:") or edge.target.startswith("region:")
        anchor = edge.source if edge.source.startswith("region:") else edge.target
        index = bundles[anchor] if bundle else 0
        if bundle:
            bundles[anchor] += 1
        ends = _endpoints(model, edge, index)
        if ends is None:
            continue
        (x1, y1), (x2, y2) = ends
        spec = dict(EDGE_STYLES[edge.style])
        zones = {model.nodes[n].zone for n in (edge.source, edge.target) if n in model.nodes}
        zones |= {n.split(":", 1)[1] for n in (edge.source, edge.target)
                  if n.startswith("region:")}
        quiet = edge.style == "crossing" and zones <= {GENERAL, INFRASTRUCTURE}
        if quiet:
            spec["color"] = "#78909c"
        dist = math.hypot(x2 - x1, y2 - y1)
        if abs(x1 - x2) < 1e-6:  # same column: bow left, out of the labels
            rad = min(0.35, 0.5 / max(dist, 1e-6)) * (1 if y2 < y1 else -0.85)
        else:
            rad = 0.0 if bundle else 0.08
        context = edge.style == "allowed" and edge.flows == 0
        alpha = 0.9
        if context or (many and edge.style == "allowed"):
            alpha = 0.3
        elif quiet or (many and edge.style == "crossing"):
            alpha = 0.5
        width = spec["lw"] * (0.7 if many and not bundle else 1.0) * scale
        if busy and edge.style == "closed":
            width, alpha = 0.8 * scale, 0.45
        elif edge.count > 1 and edge.style != "allowed":
            width *= 1 + min(2.0, math.log10(edge.count))
        ax.add_patch(FancyArrowPatch(
            (x1, y1), (x2, y2), arrowstyle="-|>", mutation_scale=7 * scale + 2,
            connectionstyle=f"arc3,rad={rad}", color=spec["color"], linewidth=width,
            linestyle=spec["ls"], alpha=alpha,
            shrinkA=0 if edge.source.startswith("region:") else marker_pt / 2 + 1,
            shrinkB=0 if edge.target.startswith("region:") else marker_pt / 2 + 1.5,
            zorder=1 if edge.style == "allowed" else 2, gid=f"edge:{edge.style}"))
        marked = edge.style == "denied" or (edge.style == "closed" and not busy)
        if not marked and not edge.text:
            continue
        mx, my = _label_spot(model, (x1, y1), (x2, y2), rad, taken)
        if marked:
            ax.plot([mx], [my], marker="x", color=spec["color"], ms=5 * scale + 1,
                    mew=1.4 * scale, zorder=3)
        if edge.text and bundle:
            at_start = edge.source.startswith("region:")
            tx, ty = (x1, y1) if at_start else (x2, y2)
            ax.text(tx + (0.06 if x2 > x1 else -0.06) * (1 if at_start else -1), ty + 0.03,
                    edge.text, fontsize=font * 0.9, color="#37474f", zorder=6,
                    ha="left" if (x2 > x1) == at_start else "right", va="bottom",
                    path_effects=halo)
        elif edge.text:
            ax.annotate(edge.text, (mx, my), xytext=(0, 4), textcoords="offset points",
                        fontsize=font * 0.85, color=spec["color"], ha="center", va="bottom",
                        zorder=6, path_effects=halo)
    # Nodes: one scatter per (zone, marker), tagged for tests and SVG consumers.
    groups: dict[tuple[str, str], list[MapNode]] = defaultdict(list)
    for mn in model.nodes.values():
        if mn.id in model.positions:
            groups[(mn.zone, _marker_for(mn))].append(mn)
    for (zone, marker), members in sorted(groups.items()):
        members.sort(key=lambda n: n.id)
        xs = [model.positions[n.id][0] for n in members]
        ys = [model.positions[n.id][1] for n in members]
        sizes = [_marker_size(n, marker_pt) ** 2 for n in members]
        ax.scatter(xs, ys, s=sizes, c=ZONE_COLOURS[zone], marker=marker,
                   edgecolors="black", linewidths=0.9 if marker in "*h" else 0.6, zorder=7,
                   gid=f"nodes:{zone}:{marker}")
        suggested = [n for n in members if n.role == "suggested"]
        if suggested:
            ax.scatter([model.positions[n.id][0] for n in suggested],
                       [model.positions[n.id][1] for n in suggested],
                       s=(marker_pt * 1.75) ** 2, facecolors="none", edgecolors="black",
                       linewidths=0.9, linestyles=(0, (2, 1.5)), zorder=6,
                       gid=f"suggested:{zone}")
    for mn in sorted(model.nodes.values(), key=lambda n: n.id):
        if mn.id not in model.positions:
            continue
        x, y = model.positions[mn.id]
        chars = model.zone_chars.get(mn.zone, _MAX_LABEL)
        label = mn.label
        if mn.role in {"store", "processor"} and len(mn.classes) > 1:
            label = f"{mn.label} [{','.join(mn.classes)}]"
        gap = (_marker_size(mn, marker_pt) / 2 + 2.5) / unit
        ax.text(x + gap, y, _truncate(label, chars), fontsize=font,
                va="center", ha="left", zorder=8, color="#111111",
                weight="bold" if mn.role in {"store", "processor"} else "normal",
                path_effects=halo)


def _title_text(title: str, default: str, model: ZoneMap, extra: str = "") -> str:
    lines = [title or default]
    for note in (model.note, extra):
        if note:
            lines.append(note)
    return "\n".join(lines)


def _draw_map(model: ZoneMap, ax: Axes | None, *, title: str, pyplot: bool,
              styles: Sequence[str]) -> Axes:
    legend_handles = _legend_handles(model, styles)
    if not model.nodes:
        if ax is None:
            fig = _new_figure(6, 3, pyplot=pyplot)
            ax = fig.add_subplot()
        ax.set_axis_off()
        ax.text(0.5, 0.5, "nothing to draw: no workloads and no flows", ha="center",
                va="center", transform=ax.transAxes)
        ax.set_title(title or "Observed communications by zone")
        return ax
    if ax is None:
        layout_zone_map(model)
        legend_cols = max(1, min(len(legend_handles), int((model.width + 0.4) / 2.3)))
        legend_rows = math.ceil(len(legend_handles) / legend_cols)
        title_lines = title.count("\n") + 1 + (1 if model.note else 0)
        top_in = 0.25 + 0.22 * title_lines
        bottom_in = 0.2 + 0.2 * legend_rows
        side_in = 0.25
        fig_w = model.width + 0.24 + 2 * side_in
        fig_h = model.height + 0.24 + top_in + bottom_in
        fig = _new_figure(fig_w, fig_h, pyplot=pyplot)
        ax = fig.add_axes((side_in / fig_w, bottom_in / fig_h, (fig_w - 2 * side_in) / fig_w,
                           (fig_h - top_in - bottom_in) / fig_h))
        _render_map(ax, model, font=_FONT_PT)
        fig.legend(handles=legend_handles, loc="lower center", ncol=legend_cols,
                   frameon=False, fontsize=_FONT_PT, bbox_to_anchor=(0.5, 0.02),
                   handlelength=2.6, columnspacing=1.4)
        fig.suptitle(_title_text(title, "Observed communications by zone", model),
                     fontsize=_FONT_PT * 1.5, y=1 - 0.12 / fig_h, va="top")
    else:
        # Someone else's Axes: fit the map to it, shortening labels before letting the
        # text get smaller than 6 points.
        bbox = ax.get_window_extent()
        dpi = ax.figure.dpi
        w_in, h_in = bbox.width / dpi, max(bbox.height / dpi, 1e-6)
        best: tuple[float, int] | None = None
        for chars in (_MAX_LABEL, 20, 16, 13, 10):
            layout_zone_map(model, aspect=w_in / h_in, max_chars=chars)
            fit = min(w_in / (model.width + 0.24), h_in / (model.height + 0.24))
            if _FONT_PT * fit >= 6.0:
                best = (fit, chars)
                break
            if best is None or fit > best[0] * 1.05:  # shorter labels only if they help
                best = (fit, chars)
        layout_zone_map(model, aspect=w_in / h_in, max_chars=best[1] if best else _MAX_LABEL)
        pad = 0.12
        ax.set_xlim(-pad, model.width + pad)
        ax.set_ylim(model.regions[0][2] - pad, model.regions[0][4] + pad)
        sx, sy = _points_per_unit(ax)
        font = max(3.5, min(9.0, _FONT_PT * min(sx, sy) / 72))
        _render_map(ax, model, font=font)
        ax.legend(handles=legend_handles, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                  ncol=max(1, min(len(legend_handles), 4)), frameon=False,
                  fontsize=max(6.0, font))
        ax.set_title(_title_text(title, "Observed communications by zone", model),
                     fontsize=max(8.0, font * 1.4))
    ax.segmenter_zone_map = model  # type: ignore[attr-defined]
    return ax


def draw_zones(graph: nx.DiGraph, plan: Plan | None, ax: Axes | None = None, *,
               title: str = "", verdicts: Any = None, data_class: str | None = None,
               max_workloads: int = MAX_WORKLOADS, level: str | None = None) -> Axes:
    """Draw the zone map on ``ax`` (a new pyplot figure sized to the map when None).

    ``verdicts``: FlowVerdicts from :func:`segmenter.verify.verify_flows` (or
    ``{(client, server): allowed}``): edges with a denied flow are drawn as would-be-denied.
    ``data_class``: zones of one class (default: the most restrictive zone over every class).
    Above ``max_workloads`` workloads the map is collapsed to namespaces, or zones, and the
    title says so; ``level`` forces one. The returned Axes carries the drawn
    :class:`ZoneMap` as ``ax.segmenter_zone_map``.

    With ``ax=None`` the figure is sized to the map (text at 7.5 pt, labels whole up to 24
    characters): the legible choice. On a given Axes the map is scaled to fit it, and on a
    small one the text shrinks (not below 3.5 pt).
    """
    model = zone_map_model(graph, plan, verdicts=verdicts, data_class=data_class,
                           max_workloads=max_workloads, level=level)
    styles = [s for s in ("allowed", "crossing", "denied")
              if any(e.style == s for e in model.edges)]
    return _draw_map(model, ax, title=title, pyplot=ax is None, styles=styles)


def zone_map_figure(graph: nx.DiGraph, plan: Plan | None, *, title: str = "",
                    **kwargs: Any) -> Figure:
    """The zone map on a new Figure that is not registered with pyplot (for files)."""
    model = zone_map_model(graph, plan, **kwargs)
    styles = [s for s in ("allowed", "crossing", "denied")
              if any(e.style == s for e in model.edges)]
    ax = _draw_map(model, None, title=title, pyplot=False, styles=styles)
    return ax.figure  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# Files


def figure_bytes(fig: Figure, fmt: str = "png", *, dpi: int = 110) -> bytes:
    """``fig`` as PNG or SVG bytes, without timestamps or random ids (same input, same bytes)."""
    import matplotlib

    if fmt not in {"png", "svg"}:
        raise ValueError(f"format must be png or svg, not {fmt!r}")
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "segmenter", "svg.fonttype": "path"}):
        fig.savefig(buffer, format=fmt, dpi=dpi,
                    metadata={"Software": None} if fmt == "png" else {"Date": None},
                    facecolor="white")
    return buffer.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 110) -> None:
    """Write ``fig`` atomically; SVG when ``path`` ends in ``.svg``, else PNG."""
    from segmenter.fileio import atomic_write_bytes

    fmt = "svg" if str(path).lower().endswith(".svg") else "png"
    atomic_write_bytes(path, figure_bytes(fig, fmt, dpi=dpi))


def save_zone_map(graph: nx.DiGraph, plan: Plan | None, path: str | os.PathLike[str], *,
                  title: str = "", **kwargs: Any) -> None:
    """Write the zone map as PNG (or SVG by suffix), atomically. ``kwargs`` as
    :func:`draw_zones` (``verdicts``, ``data_class``, ``max_workloads``, ``level``)."""
    fig = zone_map_figure(graph, plan, title=title, **kwargs)
    save_figure(fig, path)
    logger.info("wrote the zone map to %s", path)


# ---------------------------------------------------------------------------------------------
# The diff view


def _change_items(diff: Any) -> list[tuple[str, str, str, int | None, bool, bool]]:
    """(source, target, transport, port, allowed_before, allowed_after) from a
    :class:`segmenter.diff.SemanticDiff`, or an iterable of its ReachChange/FlowChange items."""
    items = []
    if hasattr(diff, "reach_changes") or hasattr(diff, "flow_changes"):
        changes = [*getattr(diff, "reach_changes", ()), *getattr(diff, "flow_changes", ())]
    else:
        changes = list(diff)
    for c in changes:
        source = getattr(c, "source", None) or getattr(c, "client", None)
        target = getattr(c, "destination", None) or getattr(c, "server", None)
        items.append((str(source), str(target), str(c.transport), c.port,
                      bool(c.allowed_before), bool(c.allowed_after)))
    return sorted(set(items), key=lambda i: (i[0], i[1], i[2], -1 if i[3] is None else i[3],
                                             i[4]))


def diff_counts(diff: Any) -> tuple[int, int]:
    """(connections opened, connections closed) in a semantic diff."""
    items = _change_items(diff)
    opened = sum(1 for i in items if i[5] and not i[4])
    return opened, len(items) - opened


def draw_diff(graph: nx.DiGraph, plan: Plan | None, diff: Any, ax: Axes | None = None, *,
              title: str = "", max_edges: int = MAX_DIFF_EDGES,
              max_workloads: int = MAX_WORKLOADS) -> Axes:
    """What a policy change opens (green) and closes (red), on the zone map.

    ``diff``: a :class:`segmenter.diff.SemanticDiff` (its reach and flow changes) or an
    iterable of changes with ``source``/``destination`` (or ``client``/``server``),
    ``transport``, ``port``, ``allowed_before``, ``allowed_after``. Observed edges are drawn
    faintly for context. With more changed pairs than ``max_edges`` the picture is drawn by
    namespace (then by zone), and the title says so.
    """
    items = _change_items(diff)
    per_pair: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for source, target, transport, port, before, after in items:
        style = "opened" if after and not before else "closed"
        per_pair[(source, target, style)].append(transport if port is None else
                                                 f"{transport}/{port}")
    changes = [(s, t, style, len(ports), ", ".join(sorted(ports)))
               for (s, t, style), ports in sorted(per_pair.items())]
    missing = sorted({n for s, t, _, _, _ in changes for n in (s, t) if n not in graph})
    if missing:
        logger.info("diff view: %d endpoints not in the graph are left out: %s", len(missing),
                    ", ".join(missing[:5]))
    level = None
    for candidate in LEVELS:
        model = zone_map_model(graph, plan, changes=changes, max_workloads=max_workloads,
                               level=candidate if candidate != "workloads" else None)
        changed = [e for e in model.edges if e.style in {"opened", "closed"}]
        level = model.level
        if len(changed) <= max_edges or candidate == "zones":
            break
    opened = sum(1 for i in items if i[5] and not i[4])
    closed = len(items) - opened
    if len([e for e in model.edges if e.style in {"opened", "closed"}]) > 24:
        model.edges = [MapEdge(e.source, e.target, e.style, e.flows, e.count, "")
                       for e in model.edges]
    summary = (f"{opened:,} connection{'s' if opened != 1 else ''} open, {closed:,} "
               f"close{'' if closed != 1 else 's'}")
    if level and level != "workloads" and not model.note:
        model.note = f"drawn by {level.rstrip('s')}"
    styles = [s for s in ("allowed", "opened", "closed")
              if any(e.style == s for e in model.edges)]
    return _draw_map(model, ax, title=title or f"Policy change: {summary}", pyplot=ax is None,
                     styles=styles)


# ---------------------------------------------------------------------------------------------
# Reachability into the restricted zone

DENIED, PLANNED, UNPLANNED = 0, 1, 2
REACH_LABELS = {DENIED: "denied on every probed port",
                PLANNED: "allowed, only where a flow was observed",
                UNPLANNED: "allowed beyond the observed flows"}
REACH_COLOURS = {DENIED: "#e8f5e9", PLANNED: "#64b5f6", UNPLANNED: "#d32f2f"}
# Probed on every restricted member besides its own ports: common ways in.
CANARY_PORTS: tuple[tuple[str, int], ...] = (("TCP", 22), ("TCP", 443), ("TCP", 8080))


@dataclass(frozen=True)
class Reachability:
    """Who can open a connection to each restricted member, before and after.

    Cells hold DENIED, PLANNED (allowed only on ports where that source was observed talking
    to that target) or UNPLANNED (allowed on some other probed port); ``open_*`` count the
    allowed probes.
    """

    sources: tuple[str, ...]
    source_zones: tuple[str, ...]
    source_labels: tuple[str, ...]
    targets: tuple[str, ...]
    target_labels: tuple[str, ...]
    before: tuple[tuple[int, ...], ...]
    after: tuple[tuple[int, ...], ...]
    open_before: tuple[tuple[int, ...], ...]
    open_after: tuple[tuple[int, ...], ...]
    probes: Mapping[str, tuple[tuple[str, int | None], ...]]
    before_label: str
    after_label: str
    enforcement: str
    grouped: str = ""  # "namespace" when rows stand for namespaces

    def count(self, which: str, category: int) -> int:
        cells = self.before if which == "before" else self.after
        return sum(1 for row in cells for c in row if c == category)


def load_policy_side(policies: Any, enforcement: str = "kubernetes") -> list[dict[str, Any]]:
    """Manifests from a folder or file path (or several), a PolicySet (emitted in the dialect
    matching ``enforcement``), or already-parsed manifests. ``None`` means no policies."""
    from segmenter.evaluate import load_manifests
    from segmenter.policy.ir import PolicySet

    if policies is None:
        return []
    if isinstance(policies, str | os.PathLike):
        return load_manifests([str(policies)])
    if isinstance(policies, PolicySet):
        from segmenter.dialects import get_dialect

        output = get_dialect(enforcement).emit(policies)
        return [m for _, docs in sorted(output.files.items()) for m in docs]
    items = list(policies)
    if items and all(isinstance(i, str | os.PathLike) for i in items):
        return load_manifests([str(i) for i in items])
    return [dict(i) for i in items]


def _side_label(policies: Any, default: str) -> str:
    if policies is None:
        return "no policies"
    if isinstance(policies, str | os.PathLike):
        return Path(policies).name or str(policies)
    return default


def eval_endpoints(graph: nx.DiGraph, inventory: Inventory | None = None
                   ) -> dict[str, Any]:
    """An evaluator endpoint per graph node: a representative pod per workload (from the
    inventory when given, else the graph's namespace and labels), the first address of every
    other node."""
    from segmenter.evaluate import EvalEndpoint
    from segmenter.model import ContainerPort, Labels

    pods: dict[str, Any] = {}
    if inventory is not None:
        candidates: dict[str, list[Any]] = defaultdict(list)
        for pod in inventory.pods:
            candidates[pod.owner.id].append(pod)
        for owner, group in candidates.items():
            best = min(group, key=lambda p: (p.end is not None, not p.ips, -(p.start or 0.0),
                                             p.name))
            pods[owner] = best
    out: dict[str, Any] = {}
    for node, attrs in sorted(graph.nodes(data=True)):
        kind = attrs.get("kind")
        if kind == "workload":
            found = pods.get(node)
            if found is not None:
                pod = found
                out[node] = EvalEndpoint(
                    ip=pod.ips[0] if pod.ips else "", namespace=pod.namespace, labels=pod.labels,
                    host_network=pod.host_network, node=pod.node, ports=pod.ports,
                    service_account=pod.service_account, name=node)
                continue
            ports = tuple(sorted({ContainerPort(int(p["port"]), _transport(p["protocol"]))
                                  for _, _, d in graph.in_edges(node, data=True)
                                  for p in d.get("ports", []) if p.get("port") is not None
                                  and _transport(p["protocol"]) is not None}))
            out[node] = EvalEndpoint(ip="", namespace=str(attrs.get("namespace")),
                                     labels=Labels.of(attrs.get("labels") or {}),
                                     host_network=bool(attrs.get("host_network")),
                                     ports=ports, name=node)
        else:
            addresses = attrs.get("addresses") or []
            name = str(node).split(":", 1)[1] if kind == "node" else None
            out[node] = EvalEndpoint(ip=str(addresses[0]) if addresses else "", namespace=None,
                                     labels=Labels(), node=name, name=node)
    return out


def _transport(value: Any) -> Any:
    from segmenter.model import Transport

    try:
        return Transport.parse(str(value))
    except ValueError:
        return None


def target_probes(graph: nx.DiGraph, node: str, endpoint: Any
                  ) -> tuple[tuple[str, int | None], ...]:
    """The (protocol, port) pairs probed on a restricted member: the ports it was observed
    serving, the ports its pods declare, and :data:`CANARY_PORTS`."""
    found: set[tuple[str, int | None]] = set(CANARY_PORTS)
    for _, _, data in graph.in_edges(node, data=True):
        for p in data.get("ports", []):
            if str(p.get("protocol")) in {"TCP", "UDP", "SCTP"} and p.get("port") is not None:
                found.add((str(p["protocol"]), int(p["port"])))
    for cp in getattr(endpoint, "ports", ()) or ():
        found.add((str(cp.protocol), int(cp.port)))
    return tuple(sorted(found, key=lambda t: (t[0], -1 if t[1] is None else t[1])))


def _observed_ports(graph: nx.DiGraph, source: str, target: str) -> set[tuple[str, int | None]]:
    if not graph.has_edge(source, target):
        return set()
    return {(str(p.get("protocol")), p.get("port"))
            for p in graph.edges[source, target].get("ports", [])}


def reachability(graph: nx.DiGraph, plan: Plan, after: Any, before: Any = None, *,
                 inventory: Inventory | None = None, enforcement: str = "kubernetes",
                 data_class: str | None = None, max_rows: int = MAX_MATRIX_ROWS,
                 before_label: str = "", after_label: str = "") -> Reachability:
    """Probe every non-restricted node (workloads, the API server, nodes, externals) against
    every restricted member on :func:`target_probes`, with the evaluator, under ``before``
    (default: no policies, i.e. today's open cluster) and ``after`` (the new policies).
    Policies are folders, files, manifests or a PolicySet (see :func:`load_policy_side`)."""
    from segmenter.evaluate import PolicyEngine

    namespaces: dict[str, Any] = {}
    if inventory is not None:
        namespaces = {ns.name: ns.labels for ns in inventory.namespaces}
    engines = [PolicyEngine.from_manifests(load_policy_side(side, enforcement),
                                           namespaces=namespaces, enforcement=enforcement)
               for side in (before, after)]
    endpoints = eval_endpoints(graph, inventory)
    nodes = _drawn_nodes(graph)
    zone = {n: node_zone(graph, plan, n, data_class) for n in nodes}
    targets = [n for n in nodes if zone[n] == RESTRICTED]
    sources = sorted((n for n in nodes if zone[n] != RESTRICTED),
                     key=lambda n: (COLUMN_ORDER.index(zone[n]), display_label(
                         graph, n, with_namespace=True), n))
    probes = {t: target_probes(graph, t, endpoints[t]) for t in targets}
    cells: list[list[list[tuple[int, int]]]] = [[], []]  # side -> row -> (category, open)
    for side, engine in enumerate(engines):
        for s in sources:
            row = []
            for t in targets:
                observed = _observed_ports(graph, s, t)
                open_ports = [p for p in probes[t]
                              if engine.check(endpoints[s], endpoints[t], p[0], p[1]).allowed]
                if not open_ports:
                    row.append((DENIED, 0))
                elif all(p in observed for p in open_ports):
                    row.append((PLANNED, len(open_ports)))
                else:
                    row.append((UNPLANNED, len(open_ports)))
            cells[side].append(row)
    labels = [display_label(graph, n, with_namespace=True) for n in sources]
    zones_of = [zone[n] for n in sources]
    grouped = ""
    if len(sources) > max_rows:
        grouped = "namespace"
        keys: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, s in enumerate(sources):
            attrs = graph.nodes[s]
            key = str(attrs.get("namespace")) if attrs.get("kind") == "workload" else \
                str(attrs.get("kind"))
            keys[(zones_of[i], key)].append(i)
        order = sorted(keys, key=lambda k: (COLUMN_ORDER.index(k[0]), k[1]))
        new_cells: list[list[list[tuple[int, int]]]] = [[], []]
        for side in (0, 1):
            for k in order:
                rows = [cells[side][i] for i in keys[k]]
                new_cells[side].append([
                    (max(r[j][0] for r in rows), sum(1 for r in rows if r[j][0] != DENIED))
                    for j in range(len(targets))])
        cells = new_cells
        sources = [f"{z}:{k}" for z, k in order]
        labels = [f"{k} ({len(keys[(z, k)])})" for z, k in order]
        zones_of = [z for z, _ in order]
    return Reachability(
        tuple(sources), tuple(zones_of), tuple(labels), tuple(targets),
        tuple(display_label(graph, t, with_namespace=True) for t in targets),
        tuple(tuple(c for c, _ in row) for row in cells[0]),
        tuple(tuple(c for c, _ in row) for row in cells[1]),
        tuple(tuple(n for _, n in row) for row in cells[0]),
        tuple(tuple(n for _, n in row) for row in cells[1]),
        probes, before_label or _side_label(before, "before"),
        after_label or _side_label(after, "new policies"), enforcement, grouped)


def draw_reachability(reach: Reachability, axes: Sequence[Axes] | None = None, *,
                      title: str = "") -> tuple[Axes, Axes]:
    """Two heatmaps side by side (now | with the new policies): rows are the sources grouped by
    zone, columns the restricted members; returns the two Axes."""
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    n_rows, n_cols = len(reach.sources), len(reach.targets)
    label_in = min(2.8, 0.3 + 0.062 * max((len(s) for s in reach.source_labels), default=4))
    col_label_in = min(2.2, 0.2 + 0.054 * max((len(t) for t in reach.target_labels), default=4))
    cell = 0.26 if n_rows <= 40 else 0.16
    if axes is None:
        gap, right, top = 0.35, 1.2, 0.5
        panel_w = max(1.4, n_cols * 0.32)
        fig_w = max(6.5, label_in + 2 * panel_w + gap + right)
        panel_w = (fig_w - label_in - gap - right) / 2
        legend_rows = 1 if fig_w >= 9.5 else 3
        bottom = 0.55 + 0.2 * (legend_rows + 1) + 0.1
        body = max(n_rows, 1) * cell
        fig_h = top + col_label_in + body + bottom
        fig = _new_figure(fig_w, fig_h, pyplot=True)
        ax1 = fig.add_axes((label_in / fig_w, bottom / fig_h, panel_w / fig_w, body / fig_h))
        ax2 = fig.add_axes(((label_in + panel_w + gap) / fig_w, bottom / fig_h,
                            panel_w / fig_w, body / fig_h))
    else:
        ax1, ax2 = axes[0], axes[1]
        legend_rows = 3
    fig = cast("Figure", ax1.figure)
    cmap = ListedColormap([REACH_COLOURS[DENIED], REACH_COLOURS[PLANNED],
                           REACH_COLOURS[UNPLANNED]])
    norm = BoundaryNorm([-0.5, 0.5, 1.5, 2.5], 3)
    if not n_cols or not n_rows:
        for ax in (ax1, ax2):
            ax.set_axis_off()
        ax1.text(0.5, 0.5, "nothing in scope: no restricted zone to reach" if not n_cols
                 else "no sources", transform=ax1.transAxes, ha="center", va="center")
        ax1.set_title(title or "Reachability of the restricted zone")
        return ax1, ax2
    small = n_rows * n_cols <= 400
    font = 7.0 if n_rows <= 40 else 5.5
    for ax, cells, counts, name in ((ax1, reach.before, reach.open_before, reach.before_label),
                                    (ax2, reach.after, reach.open_after, reach.after_label)):
        ax.imshow([list(r) for r in cells], cmap=cmap, norm=norm, aspect="auto",
                  interpolation="nearest")
        ax.set_xticks(range(n_cols))
        ax.set_xticklabels(reach.target_labels, rotation=60, ha="left", fontsize=font,
                           rotation_mode="anchor")
        ax.xaxis.tick_top()
        ax.set_yticks(range(n_rows))
        ax.set_xticks([x - 0.5 for x in range(1, n_cols)], minor=True)
        ax.set_yticks([y - 0.5 for y in range(1, n_rows)], minor=True)
        ax.grid(which="minor", color="white", linewidth=0.6)
        ax.tick_params(which="minor", length=0)
        ax.tick_params(which="major", length=2)
        if small:
            for i, row in enumerate(counts):
                for j, value in enumerate(row):
                    if value:
                        ax.text(j, i, str(value), ha="center", va="center", fontsize=font - 1,
                                color="white" if cells[i][j] == UNPLANNED else "#0d47a1")
        unplanned = sum(1 for r in cells for c in r if c == UNPLANNED)
        ax.set_xlabel(f"{name}\n{unplanned} unplanned path{'s' if unplanned != 1 else ''}",
                      fontsize=8)
        # Zone separators.
        for i in range(1, n_rows):
            if reach.source_zones[i] != reach.source_zones[i - 1]:
                ax.axhline(i - 0.5, color="black", linewidth=1.0)
    ax1.set_yticklabels(reach.source_labels, fontsize=font)
    for tick, zone in zip(ax1.get_yticklabels(), reach.source_zones, strict=True):
        tick.set_color(ZONE_COLOURS.get(zone, "black"))
    ax2.set_yticklabels([])
    start = 0
    for i in range(1, n_rows + 1):
        if i == n_rows or reach.source_zones[i] != reach.source_zones[start]:
            zone = reach.source_zones[start]
            ax2.text(n_cols - 0.5 + 0.15 * n_cols / max(n_cols, 1), (start + i - 1) / 2, zone,
                     color=ZONE_COLOURS.get(zone, "black"), fontsize=7.5, weight="bold",
                     va="center", ha="left", clip_on=False)
            start = i
    grouped = " (rows grouped by namespace: a cell is the worst member)" if reach.grouped else ""
    fig.suptitle(title or f"Who can reach the restricted zone ({reach.enforcement} "
                          f"enforcement){grouped}", fontsize=10, y=0.995, va="top")
    handles = [Patch(facecolor=REACH_COLOURS[c], edgecolor="#9e9e9e", label=REACH_LABELS[c])
               for c in (DENIED, PLANNED, UNPLANNED)]
    fig.legend(handles=handles, loc="lower center", ncol=3 if legend_rows == 1 else 1,
               frameon=False, fontsize=7, bbox_to_anchor=(0.5, 0.0),
               title="number in a cell: probed ports open", title_fontsize=7)
    return ax1, ax2


# ---------------------------------------------------------------------------------------------
# Learning completeness


@dataclass(frozen=True)
class LearningCurve:
    """When each distinct (client, server, protocol, port) was first seen."""

    start: float
    end: float
    times: tuple[float, ...]  # sorted first-seen times, one per distinct edge
    keys: tuple[tuple[str, str, str, int | None], ...]
    restricted: tuple[bool, ...] = ()  # the edge touches the restricted zone

    @property
    def total(self) -> int:
        return len(self.times)

    @property
    def last_new(self) -> float | None:
        return self.times[-1] if self.times else None

    def quiet_fraction(self) -> float:
        """Share of the window after the last new edge (1.0: nothing new; near 0: still
        learning)."""
        span = self.end - self.start
        if not self.times or span <= 0:
            return 0.0
        return max(0.0, (self.end - self.times[-1]) / span)

    def new_in_last(self, fraction: float) -> int:
        """Edges first seen in the last ``fraction`` of the window."""
        cut = self.end - (self.end - self.start) * fraction
        return sum(1 for t in self.times if t > cut)


def learning_curve(source: nx.DiGraph | Iterable[Flow], plan: Plan | None = None
                   ) -> LearningCurve:
    """From a graph (its per-port ``first_seen``: entity level) or flows (address level)."""
    keys: dict[tuple[str, str, str, int | None], float] = {}
    start, end = math.inf, -math.inf
    graph = source if isinstance(source, nx.DiGraph) else None
    if graph is not None:
        for u, v, data in graph.edges(data=True):
            for p in data.get("ports", []):
                first, last = p.get("first_seen"), p.get("last_seen")
                if first is None:
                    continue
                key = (u, v, str(p.get("protocol")), p.get("port"))
                keys[key] = min(keys.get(key, math.inf), float(first))
                start = min(start, float(first))
                end = max(end, float(last if last is not None else first))
    else:
        for flow in source:
            key = (flow.client, flow.server, str(flow.transport), flow.server_port)
            keys[key] = min(keys.get(key, math.inf), flow.first_seen)
            start = min(start, flow.first_seen)
            end = max(end, flow.last_seen)
    ordered = sorted(keys.items(), key=lambda kv: (kv[1], kv[0][0], kv[0][1], kv[0][2],
                                                   -1 if kv[0][3] is None else kv[0][3]))
    restricted: tuple[bool, ...] = ()
    if graph is not None and plan is not None and plan.classes:
        restricted = tuple(RESTRICTED in (plan.zone_of(k[0]), plan.zone_of(k[1]))
                           for k, _ in ordered)
    if not ordered:
        start = end = 0.0
    return LearningCurve(start, end, tuple(t for _, t in ordered), tuple(k for k, _ in ordered),
                         restricted)


def _time_unit(span: float) -> tuple[float, str]:
    for size, name in ((86_400.0, "days"), (3_600.0, "hours"), (60.0, "minutes")):
        if span >= 3 * size:
            return size, name
    return 1.0, "seconds"


def draw_learning_curve(curve: LearningCurve | nx.DiGraph | Iterable[Flow],
                        ax: Axes | None = None, *, plan: Plan | None = None,
                        title: str = "") -> Axes:
    """Cumulative distinct edges over the capture window. A curve still rising at the end
    means the capture has not seen everything the application does yet."""
    if not isinstance(curve, LearningCurve):
        curve = learning_curve(curve, plan)
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(7.5, 3.6), layout="constrained")
    if not curve.times:
        ax.text(0.5, 0.5, "no flows", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        ax.set_title(title or "Learning completeness")
        return ax
    size, unit = _time_unit(curve.end - curve.start)

    def steps(times: Sequence[float]) -> tuple[list[float], list[int]]:
        xs = [0.0] + [(t - curve.start) / size for t in times] + [(curve.end - curve.start)
                                                                   / size]
        ys = [0, *range(1, len(times) + 1), len(times)]
        return xs, ys

    xs, ys = steps(curve.times)
    ax.step(xs, ys, where="post", color="#1565c0", linewidth=1.8,
            label=f"all edges ({curve.total})", gid="curve:all")
    if curve.restricted and any(curve.restricted):
        picked = [t for t, r in zip(curve.times, curve.restricted, strict=True) if r]
        rx, ry = steps(picked)
        ax.step(rx, ry, where="post", color=ZONE_COLOURS[RESTRICTED], linewidth=1.6,
                label=f"touching the restricted zone ({len(picked)})", gid="curve:restricted")
    last = (curve.times[-1] - curve.start) / size
    ax.axvline(last, color="#616161", linestyle=":", linewidth=1.0)
    quiet = curve.quiet_fraction()
    span = max((curve.end - curve.start) / size, 1e-9)
    right = last > 0.6 * span
    # Low down beside the dotted line: a cumulative curve is high by then.
    ax.annotate(f"last new edge\n{quiet:.0%} of the window after it",
                xy=(last, curve.total * 0.4), xytext=(-6 if right else 6, 0),
                textcoords="offset points", fontsize=7.5, va="center",
                ha="right" if right else "left", color="#424242")
    ax.set_xlabel(f"{unit} since the capture started")
    ax.set_ylabel("distinct edges seen")
    ax.set_xlim(0, max((curve.end - curve.start) / size, 1e-9) * 1.02)
    ax.set_ylim(0, curve.total * 1.15 + 1)
    ax.grid(True, color="#eeeeee")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="upper left", fontsize=7.5, frameon=False)
    verdict = ("still learning: new edges near the end of the window" if quiet < 0.2 else
               "levelled off")
    ax.set_title(title or f"Learning completeness: {curve.total} distinct edges; {verdict}",
                 fontsize=9.5)
    return ax
