"""segmenter: Kubernetes micro-segmentation planned from observed traffic.

The data flows one way: capture -> graph -> plan -> policy IR -> dialects -> files. This module
is the small surface notebooks use; each function is one stage.

>>> import segmenter
>>> sorted(segmenter.DIALECT_NAMES)
['calico', 'clusternetworkpolicy', 'kubernetes']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
DIALECT_NAMES = ("kubernetes", "calico", "clusternetworkpolicy")

if TYPE_CHECKING:
    import networkx as nx

    from segmenter.config import Config
    from segmenter.flows import FlowFile
    from segmenter.model import Inventory
    from segmenter.planner import Plan
    from segmenter.policy.ir import PolicySet


def load_flows(paths: Sequence[str]) -> FlowFile:
    """Read flow files (``flows.jsonl``) written by ``segmenter ingest`` or the capture agent."""
    from segmenter.flows import read_flow_files

    return read_flow_files(list(paths))


def ingest(captures: Sequence[str], out: str) -> dict[str, Any]:
    """Fold pcap/pcapng captures into the flow file ``out``; returns the ingest counts."""
    from segmenter.cli import stage_ingest

    return stage_ingest(captures, out, progress=False)


def load_inventory(paths: Sequence[str]) -> Inventory:
    """Read ``kubectl get ... -A -o json|yaml`` dumps (or ``segmenter inventory`` output)."""
    from segmenter.cli import load_inventory_arg

    return load_inventory_arg(list(paths))


def build_graph(flows: FlowFile, inventory: Inventory) -> nx.DiGraph:
    """Resolve flows to workloads; one node per entity, one edge per client -> server."""
    from segmenter.graph import build_graph as _build

    return _build(flows.flows, inventory, dns=flows.dns)


def load_config(path: str | None = None, sensitive: Sequence[str] = ()) -> Config:
    """``segmenter.yaml`` plus ``CLASS=NAMESPACE/LABEL=VALUE`` declarations."""
    from segmenter.config import load_config as _load
    from segmenter.config import parse_sensitive_arg

    return _load(path, tuple(parse_sensitive_arg(s) for s in sensitive))


def make_plan(graph: nx.DiGraph, config: Config, inventory: Inventory) -> Plan:
    """Zones around the declared sensitive stores."""
    from segmenter.cli import dns_nodes
    from segmenter.planner import plan

    return plan(graph, config, dns_nodes=dns_nodes(graph, inventory))


def compile_policies(graph: nx.DiGraph, plan: Plan, inventory: Inventory) -> PolicySet:
    """The dialect-neutral policy IR for ``plan``."""
    from segmenter.policy.dns import detect_dns
    from segmenter.policy.lower import lower

    return lower(graph, plan, inventory, dns=detect_dns(graph, inventory))


def render_yaml(policy_set: PolicySet, dialect: str = "kubernetes") -> str:
    """One dialect's YAML for a policy set, as a single multi-document string."""
    from segmenter.dialects import get_dialect
    from segmenter.render import to_yaml

    output = get_dialect(dialect).emit(policy_set)
    return "---\n".join(to_yaml(ms) for _, ms in sorted(output.files.items()))


def draw(graph: nx.DiGraph, plan: Plan, ax: Any = None) -> Any:
    """The zone map on a matplotlib Axes."""
    from segmenter.viz import draw_zones

    return draw_zones(graph, plan, ax)


_NOTEBOOK_NAMES = ("Study", "PlanView", "DiffView", "VerifyView", "load_capture",
                   "write_policies", "enable_rich_display")


def __getattr__(name: str) -> Any:
    """Notebook helpers, imported on first use (they pull in matplotlib)."""
    if name in _NOTEBOOK_NAMES:
        from segmenter import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'segmenter' has no attribute {name!r}")
