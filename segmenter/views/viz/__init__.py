"""Pictures of the graph and the plan (matplotlib, imported lazily inside each function).

- :mod:`.zonemap` / :mod:`.draw`: the zone map. Workloads grouped by zone, each zone a shaded
  rounded region (left to right the way traffic usually flows towards the data: external,
  general, connected, restricted, infrastructure), namespaces as headings inside a zone,
  sensitive stores marked, edges styled by allowed / crossing a zone boundary / would be
  denied. Above ``max_workloads`` workloads it collapses to namespaces (then to zones) and says
  so in the title. ``draw_diff``: the same map with what a policy change opens and closes.
- :mod:`.reach`: who can reach the restricted zone and what it can reach, now versus with the
  new policies.
- :mod:`.learning`: distinct edges discovered over the capture window.

Every layout is deterministic (no randomness anywhere); figures are written as PNG and SVG
without timestamps, so the same inputs give the same bytes.
"""

from segmenter.analysis.reachability import (
    DENIED,
    NODE_LOCAL,
    PLANNED,
    UNPLANNED,
    reachability,
)
from segmenter.views.viz.draw import (
    draw_diff,
    draw_zones,
    figure_bytes,
    save_figure,
    save_zone_map,
    zone_map_figure,
)
from segmenter.views.viz.learning import LearningCurve, draw_learning_curve, learning_curve
from segmenter.views.viz.reach import draw_reachability
from segmenter.views.viz.zonemap import ZoneMap, layout_zone_map, zone_map_model

__all__ = [
    "DENIED",
    "NODE_LOCAL",
    "PLANNED",
    "UNPLANNED",
    "LearningCurve",
    "ZoneMap",
    "draw_diff",
    "draw_learning_curve",
    "draw_reachability",
    "draw_zones",
    "figure_bytes",
    "layout_zone_map",
    "learning_curve",
    "reachability",
    "save_figure",
    "save_zone_map",
    "zone_map_figure",
    "zone_map_model",
]
