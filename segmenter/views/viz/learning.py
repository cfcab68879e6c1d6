"""Learning completeness: distinct edges discovered over the capture window (is the capture long
enough to have seen everything?), as data and as a step plot."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import networkx as nx

from segmenter.model import Flow
from segmenter.planner import Plan, Zone
from segmenter.views.viz.zonemap import ZONE_COLOURS

if TYPE_CHECKING:
    from matplotlib.axes import Axes


# ---------------------------------------------------------------------------------------------
# Learning completeness

# A new edge first seen in this last share of the window: the capture was still learning (the
# curve's verdict, and the evidence report's ``still-learning`` finding).
LEARNING_TAIL: Final = 0.2


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
            if not flow.forwarded:
                continue  # evidence of what the policies in force block, not traffic to learn
            # An end a flow log names without an address (Goldmane) counts as one address.
            key = (flow.client or "", flow.server or "", str(flow.transport), flow.server_port)
            keys[key] = min(keys.get(key, math.inf), flow.first_seen)
            start = min(start, flow.first_seen)
            end = max(end, flow.last_seen)
    ordered = sorted(keys.items(), key=lambda kv: (kv[1], kv[0][0], kv[0][1], kv[0][2],
                                                   -1 if kv[0][3] is None else kv[0][3]))
    restricted: tuple[bool, ...] = ()
    if graph is not None and plan is not None and plan.classes:
        restricted = tuple(Zone.RESTRICTED in (plan.zone_of(k[0]), plan.zone_of(k[1]))
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
        ax.step(rx, ry, where="post", color=ZONE_COLOURS[Zone.RESTRICTED], linewidth=1.6,
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
    verdict = ("still learning: new edges near the end of the window"
               if curve.new_in_last(LEARNING_TAIL) else "levelled off")
    ax.set_title(title or f"Learning completeness: {curve.total} distinct edges; {verdict}",
                 fontsize=9.5)
    return ax
