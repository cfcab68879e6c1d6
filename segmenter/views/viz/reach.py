"""The reachability matrices (:mod:`segmenter.analysis.reachability`) as heatmaps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from segmenter.analysis.reachability import (
    DENIED,
    NODE_LOCAL,
    PLANNED,
    REACH_LABELS,
    UNPLANNED,
    Reachability,
)
from segmenter.views.viz.draw import (
    new_figure,
)
from segmenter.views.viz.zonemap import ZONE_COLOURS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


REACH_COLOURS = {DENIED: "#e8f5e9", PLANNED: "#64b5f6", NODE_LOCAL: "#bdbdbd",
                 UNPLANNED: "#d32f2f"}
CATEGORIES = (DENIED, PLANNED, NODE_LOCAL, UNPLANNED)


def draw_reachability(reach: Reachability, axes: Sequence[Axes] | None = None, *,
                      title: str = "") -> tuple[Axes, Axes]:
    """Two heatmaps side by side (now | with the new policies): rows are the peers grouped by
    zone, columns each restricted workload in (the row opens a connection to it) and out (it
    opens one to the row); returns the two Axes. The cells are :class:`Reachability`'s, as
    they are: the picture shows exactly what the segmentation test found."""
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
        legend_rows = 2 if fig_w >= 9.5 else 4
        bottom = 0.55 + 0.2 * (legend_rows + 1) + 0.1
        body = max(n_rows, 1) * cell
        fig_h = top + col_label_in + body + bottom
        fig = new_figure(fig_w, fig_h, pyplot=True)
        ax1 = fig.add_axes((label_in / fig_w, bottom / fig_h, panel_w / fig_w, body / fig_h))
        ax2 = fig.add_axes(((label_in + panel_w + gap) / fig_w, bottom / fig_h,
                            panel_w / fig_w, body / fig_h))
    else:
        ax1, ax2 = axes[0], axes[1]
        legend_rows = 4
    fig = cast("Figure", ax1.figure)
    cmap = ListedColormap([REACH_COLOURS[c] for c in CATEGORIES])
    norm = BoundaryNorm([c - 0.5 for c in CATEGORIES] + [CATEGORIES[-1] + 0.5], len(CATEGORIES))
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
    fig.suptitle(title or f"Who can reach the restricted zone, and what it can reach "
                          f"({reach.enforcement} enforcement){grouped}", fontsize=10, y=0.995,
                 va="top")
    handles = [Patch(facecolor=REACH_COLOURS[c], edgecolor="#9e9e9e", label=REACH_LABELS[c])
               for c in CATEGORIES]
    fig.legend(handles=handles, loc="lower center", ncol=2 if legend_rows == 1 else 1,
               frameon=False, fontsize=7, bbox_to_anchor=(0.5, 0.0),
               title="number in a cell: probed ports open", title_fontsize=7)
    return ax1, ax2
