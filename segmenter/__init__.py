"""segmenter: Kubernetes micro-segmentation planned from observed traffic.

The data flows one way: traffic -> graph -> plan -> policy IR -> targets -> files. This module
is the small surface notebooks use; each function is one stage of :mod:`segmenter.pipeline`.

>>> import segmenter
>>> segmenter.TARGET_NAMES[:2]
('kubernetes', 'calico')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from segmenter.version import package_version

__version__ = package_version()

if TYPE_CHECKING:
    import networkx as nx

    from segmenter.config import Config
    from segmenter.flowfile import Traffic
    from segmenter.model import Inventory
    from segmenter.pipeline import IngestResult
    from segmenter.planner import Plan
    from segmenter.policy.ir import PolicySet


def load_flows(paths: Sequence[str]) -> Traffic:
    """Read flow files (``flows.jsonl``) written by ``segmenter ingest`` or the capture agent."""
    from segmenter.pipeline import read_traffic

    return read_traffic(list(paths))


def ingest(sources: Sequence[str], out: str) -> IngestResult:
    """Fold traffic files (captures, flow files, flow logs) into the flow file ``out``."""
    from segmenter.pipeline import ingest as _ingest

    return _ingest(sources, out)


def load_inventory(paths: Sequence[str]) -> Inventory:
    """Read ``kubectl get ... -A -o json|yaml`` dumps (or ``segmenter inventory`` output)."""
    from segmenter.pipeline import read_inventory

    return read_inventory(list(paths))


def build_graph(flows: Traffic, inventory: Inventory | None = None) -> nx.DiGraph:
    """Resolve flows to workloads; one node per entity, one edge per client -> server.
    Without ``inventory``, one is built from the flow records' identities."""
    from segmenter.pipeline import make_graph

    return make_graph(flows, inventory)


def load_config(path: str | None = None, sensitive: Sequence[str] = ()) -> Config:
    """``segmenter.yaml`` plus ``CLASS=NAMESPACE/LABEL=VALUE`` declarations."""
    from segmenter.pipeline import read_config

    return read_config(path, sensitive)


def make_plan(graph: nx.DiGraph, config: Config, inventory: Inventory | None = None) -> Plan:
    """Zones around the declared sensitive stores (cluster DNS is found from the graph; the
    inventory argument is accepted for older callers and not needed)."""
    from segmenter.pipeline import make_plan as _plan

    return _plan(graph, config)


def compile_policies(graph: nx.DiGraph, plan: Plan, inventory: Inventory,
                     config: Config | None = None) -> PolicySet:
    """The dialect-neutral policy IR for ``plan``; ``config``'s compile options (entry points,
    DNS egress, external blocks) when given."""
    from segmenter.pipeline import compile_policies as _compile

    return _compile(graph, plan, inventory, config.compile if config is not None else None)


def render_yaml(policy_set: PolicySet, dialect: str = "kubernetes", **options: bool) -> str:
    """One target's YAML for a policy set, as a single multi-document string; ``options``: the
    target's writer options (``segmenter.targets``, e.g. ``domains=True`` for Calico)."""
    from segmenter.render import to_yaml
    from segmenter.targets import get_target

    output = get_target(dialect).dialect(**options).emit(policy_set)
    return "---\n".join(to_yaml(ms) for _, ms in sorted(output.files.items()))


def draw(graph: nx.DiGraph, plan: Plan, ax: Any = None) -> Any:
    """The zone map on a matplotlib Axes."""
    from segmenter.views.viz.draw import draw_zones

    return draw_zones(graph, plan, ax)


def __getattr__(name: str) -> Any:
    """The registry's target names, and the notebook helpers, on first use (they pull in
    matplotlib)."""
    if name == "TARGET_NAMES":
        from segmenter.targets import target_names

        return target_names()
    if name in _NOTEBOOK_NAMES:
        from segmenter import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'segmenter' has no attribute {name!r}")


_NOTEBOOK_NAMES = ("Study", "PlanView", "DiffView", "VerifyView", "load_capture",
                   "write_policies", "enable_rich_display")
