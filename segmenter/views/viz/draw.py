"""Drawing the zone map with matplotlib (imported lazily), the diff view on it, and writing
figures as PNG / SVG without timestamps, so the same inputs give the same bytes."""

from __future__ import annotations

import io
import logging
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import networkx as nx

from segmenter.planner import ZONE_FLOW_ORDER, Plan, Zone
from segmenter.views.viz.zonemap import (
    EDGE_STYLES,
    FONT_PT,
    LEVELS,
    MARKER_IN,
    MAX_DIFF_EDGES,
    MAX_LABEL,
    MAX_WORKLOADS,
    TITLE_BAND,
    ZONE_COLOURS,
    ZONE_DESCRIPTIONS,
    ZONE_PAD,
    MapEdge,
    MapNode,
    ZoneMap,
    layout_zone_map,
    truncate,
    zone_map_model,
    zone_title,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Drawing


def _tint(colour: str, amount: float) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(colour)
    return (1 - (1 - r) * amount, 1 - (1 - g) * amount, 1 - (1 - b) * amount)


def new_figure(width: float, height: float, *, pyplot: bool) -> Figure:
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
    for zone in ZONE_FLOW_ORDER:
        if model.zone_nodes(zone):
            handles.append(Patch(facecolor=_tint(ZONE_COLOURS[zone], 0.25),
                                 edgecolor=ZONE_COLOURS[zone], label=zone))
    roles = {n.role for n in model.nodes.values()}
    if "store" in roles:
        handles.append(Line2D([], [], ls="none", marker="*", ms=11,
                              mfc=ZONE_COLOURS[Zone.RESTRICTED], mec="black",
                              label="sensitive data store"))
    if "processor" in roles:
        handles.append(Line2D([], [], ls="none", marker="h", ms=8,
                              mfc=ZONE_COLOURS[Zone.RESTRICTED], mec="black",
                              label="sensitive data processor"))
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
                    y = y1 - TITLE_BAND - 0.2 - 0.16 * index
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
    scale = font / FONT_PT
    marker_pt = max(3.0, min(MARKER_IN * unit, model.row_height * sy * 0.6))
    halo = [withStroke(linewidth=2.0, foreground="white")]
    for zone, x0, y0, x1, y1 in model.regions:
        colour = ZONE_COLOURS[zone]
        ax.add_patch(FancyBboxPatch((x0, y0), x1 - x0, y1 - y0,
                                    boxstyle="round,pad=0,rounding_size=0.1",
                                    facecolor=_tint(colour, 0.10), edgecolor=colour,
                                    linewidth=1.2, zorder=0, gid=f"zone:{zone}"))
        ax.text(x0 + ZONE_PAD * 0.8, y1 - 0.06, zone_title(model, zone),
                fontsize=font * 1.2, weight="bold", color=colour, va="top", ha="left",
                zorder=5, clip_on=True)
        ax.text(x0 + ZONE_PAD * 0.8, y1 - 0.06 - font * 1.55 / unit, ZONE_DESCRIPTIONS[zone],
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
        quiet = edge.style == "crossing" and zones <= {Zone.GENERAL, Zone.INFRASTRUCTURE}
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
        chars = model.zone_chars.get(mn.zone, MAX_LABEL)
        label = mn.label
        if mn.role in {"store", "processor"} and len(mn.classes) > 1:
            label = f"{mn.label} [{','.join(mn.classes)}]"
        gap = (_marker_size(mn, marker_pt) / 2 + 2.5) / unit
        ax.text(x + gap, y, truncate(label, chars), fontsize=font,
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
            fig = new_figure(6, 3, pyplot=pyplot)
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
        fig = new_figure(fig_w, fig_h, pyplot=pyplot)
        ax = fig.add_axes((side_in / fig_w, bottom_in / fig_h, (fig_w - 2 * side_in) / fig_w,
                           (fig_h - top_in - bottom_in) / fig_h))
        _render_map(ax, model, font=FONT_PT)
        fig.legend(handles=legend_handles, loc="lower center", ncol=legend_cols,
                   frameon=False, fontsize=FONT_PT, bbox_to_anchor=(0.5, 0.02),
                   handlelength=2.6, columnspacing=1.4)
        fig.suptitle(_title_text(title, "Observed communications by zone", model),
                     fontsize=FONT_PT * 1.5, y=1 - 0.12 / fig_h, va="top")
    else:
        # Someone else's Axes: fit the map to it, shortening labels before letting the
        # text get smaller than 6 points.
        bbox = ax.get_window_extent()
        dpi = ax.figure.dpi
        w_in, h_in = bbox.width / dpi, max(bbox.height / dpi, 1e-6)
        best: tuple[float, int] | None = None
        for chars in (MAX_LABEL, 20, 16, 13, 10):
            layout_zone_map(model, aspect=w_in / h_in, max_chars=chars)
            fit = min(w_in / (model.width + 0.24), h_in / (model.height + 0.24))
            if FONT_PT * fit >= 6.0:
                best = (fit, chars)
                break
            if best is None or fit > best[0] * 1.05:  # shorter labels only if they help
                best = (fit, chars)
        layout_zone_map(model, aspect=w_in / h_in, max_chars=best[1] if best else MAX_LABEL)
        pad = 0.12
        ax.set_xlim(-pad, model.width + pad)
        ax.set_ylim(model.regions[0][2] - pad, model.regions[0][4] + pad)
        sx, sy = _points_per_unit(ax)
        font = max(3.5, min(9.0, FONT_PT * min(sx, sy) / 72))
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
