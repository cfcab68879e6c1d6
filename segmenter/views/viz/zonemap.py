"""The zone map as data, independent of matplotlib: which nodes are drawn in which zone (collapsed
to namespaces or zones on large graphs), the edges between them with their style, and the
layout of zones as columns of rows. Drawn by :mod:`segmenter.views.viz.draw`."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import networkx as nx

from segmenter.graph.labels import display_label, drawn_nodes
from segmenter.planner import ZONE_FLOW_ORDER, Plan, Zone, node_zone

ZONE_COLOURS: dict[str, str] = {
    Zone.RESTRICTED: "#c62828",
    Zone.CONNECTED: "#ef6c00",
    Zone.GENERAL: "#1565c0",
    Zone.INFRASTRUCTURE: "#616161",
    Zone.EXTERNAL: "#6a1b9a",
}
ZONE_DESCRIPTIONS: dict[str, str] = {
    Zone.RESTRICTED: "declared sensitive stores",
    Zone.CONNECTED: "connected-to: in scope",
    Zone.GENERAL: "out of scope once enforced",
    Zone.INFRASTRUCTURE: "security-impacting",
    Zone.EXTERNAL: "outside the cluster",
}


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
FONT_PT = 7.5
CHAR_IN = FONT_PT * 0.6 / 72
ROW_IN = 0.30
MARKER_IN = 0.15
MAX_LABEL = 24
ZONE_PAD = 0.16
ZONE_GAP = 0.28
TITLE_BAND = 0.46
TARGET_ASPECT = 1.6


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
    row_height: float = ROW_IN
    zone_chars: dict[str, int] = field(default_factory=dict)

    def zone_nodes(self, zone: str) -> list[MapNode]:
        return [n for n in self.nodes.values() if n.zone == zone]


def _roles(plan: Plan | None, data_class: str | None) -> dict[str, tuple[str, tuple[str, ...]]]:
    """node -> (store|processor|suggested, classes)."""
    out: dict[str, tuple[str, list[str]]] = {}
    if plan is None:
        return {}
    for scope in plan.classes:
        if data_class is not None and scope.data_class != data_class:
            continue
        for member in scope.members(Zone.RESTRICTED):
            role = "processor" if member.reason.startswith("processor") else "store"
            previous = out.get(member.node)
            if previous is not None and previous[0] == "store":
                role = "store"
            classes = [*(previous[1] if previous else []), scope.data_class]
            out[member.node] = (role, classes)
    for member in plan.suggestions:
        out.setdefault(member.node, ("suggested", []))
    return {k: (role, tuple(sorted(set(c)))) for k, (role, c) in out.items()}


def _traffic(graph: nx.DiGraph, node: str) -> int:
    return sum(int(d.get("flows", 0)) for _, _, d in graph.in_edges(node, data=True)) + sum(
        int(d.get("flows", 0)) for _, _, d in graph.out_edges(node, data=True))


_GROUP_RANK = {"external": 0, "apiserver": 1, "node": 2, "others": 3}


def _group_nodes(graph: nx.DiGraph, nodes: Sequence[str], zone_of: Callable[[str], str],
                 roles: Mapping[str, tuple[str, tuple[str, ...]]], level: str
                 ) -> tuple[dict[str, MapNode], dict[str, str]]:
    """Display nodes and the map original node -> display node id."""
    display: dict[str, list[str]] = defaultdict(list)
    info: dict[str, tuple[str, str, str, str]] = {}  # id -> (label, zone, group, kind)
    restricted = [n for n in nodes if zone_of(n) == Zone.RESTRICTED]
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
                zone == Zone.RESTRICTED and keep_restricted):
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
    nodes = drawn_nodes(graph)
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


def truncate(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[:max(1, chars - 1)] + "…"


def zone_title(model: ZoneMap, zone: str) -> str:
    nodes = model.zone_nodes(zone)
    members = sum(n.count for n in nodes)
    groups = sum(1 for n in nodes if n.count > 1)
    what = f"{members}" if not groups else (
        f"{members} in {len(nodes)} group{'s' if len(nodes) != 1 else ''}")
    return f"{zone.upper()}  ·  {what}"


def layout_zone_map(model: ZoneMap, *, aspect: float = TARGET_ASPECT,
                    max_chars: int = MAX_LABEL) -> ZoneMap:
    """Place every node (in inches).

    Each zone is a region of columns of rows; namespaces are headings. The number of rows is
    the one whose wrapped columns give a picture closest to ``aspect`` (width / height), then
    lowered as far as the column count allows, so that columns are balanced. Deterministic.
    """
    zones = [z for z in ZONE_FLOW_ORDER if model.zone_nodes(z)]
    items = {z: _zone_items(model, z) for z in zones}
    col_w: dict[str, float] = {}
    chars: dict[str, int] = {}
    for zone in zones:
        longest = max((len(model.nodes[v].label) if k == "node" else len(v) + 8
                       for k, v in items[zone]), default=8)
        chars[zone] = min(max_chars, max(longest, 10))
        col_w[zone] = MARKER_IN + 0.1 + chars[zone] * CHAR_IN + 0.14
    # A one-column zone is at least as wide as its title and description.
    min_inner = {z: max(len(zone_title(model, z)) * CHAR_IN * 1.32,
                        len(ZONE_DESCRIPTIONS[z]) * CHAR_IN * 1.0) + 0.05 for z in zones}
    tallest = max((len(v) for v in items.values()), default=1)
    low = 3 if any(k == "header" for v in items.values() for k, _ in v) else 1
    low = min(low, tallest)

    def width_for(rows: int) -> tuple[float, int]:
        total, ncols = 0.0, 0
        for z in zones:
            n = len(_fill(items[z], rows))
            ncols += n
            total += max(n * col_w[z], min_inner[z]) + 2 * ZONE_PAD + ZONE_GAP
        return total - ZONE_GAP, ncols

    best: tuple[float, int] | None = None
    for rows in range(low, tallest + 1):
        width, _ = width_for(rows)
        height = rows * ROW_IN + TITLE_BAND + ZONE_PAD
        score = abs(math.log(width / height) - math.log(aspect))
        if best is None or score < best[0] - 1e-9:
            best = (score, rows)
    rows = best[1] if best else 1
    columns_at = [len(_fill(items[z], rows)) for z in zones]
    while rows > low and [len(_fill(items[z], rows - 1)) for z in zones] == columns_at:
        rows -= 1  # same columns, shorter: balance them
    row_h = ROW_IN
    if rows * row_h < 2.4:  # few rows: spread them a little
        row_h = min(0.5, 2.4 / max(rows, 1))
    positions: dict[str, tuple[float, float]] = {}
    headers: list[tuple[float, float, str]] = []
    regions: list[tuple[str, float, float, float, float]] = []
    x = 0.0
    top = row_h / 2 + TITLE_BAND
    bottom = -(rows - 1) * row_h - row_h / 2 - ZONE_PAD
    for zone in zones:
        columns = _fill(items[zone], rows)
        x0 = x
        for c, column in enumerate(columns):
            cx = x0 + ZONE_PAD + c * col_w[zone]
            for r, (kind, value) in enumerate(column):
                y = -r * row_h
                if kind == "header":
                    headers.append((cx, y, truncate(value, chars[zone] + 1)))
                else:
                    positions[value] = (cx + MARKER_IN / 2 + 0.02, y)
        inner = max(len(columns) * col_w[zone], min_inner[zone])
        x1 = x0 + 2 * ZONE_PAD + inner
        regions.append((zone, x0, bottom, x1, top))
        x = x1 + ZONE_GAP
    model.positions = positions
    model.headers = headers
    model.regions = regions
    model.width = max(x - ZONE_GAP, 1.0)
    model.height = top - bottom
    model.row_height = row_h
    model.zone_chars = chars
    return model
