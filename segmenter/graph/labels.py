"""How graph nodes are named for people, and which of them are worth showing."""

from __future__ import annotations

import networkx as nx

from segmenter.model import NodeId, is_workload_id


def drawn_nodes(graph: nx.DiGraph) -> list[str]:
    """Every workload, and every other node that has a flow with something else."""
    out = []
    for node, attrs in graph.nodes(data=True):
        if attrs.get("kind") == "workload" or any(
                peer != node for peer in (*graph.successors(node), *graph.predecessors(node))):
            out.append(node)
    return sorted(out)


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
    if kind is None and is_workload_id(node):
        ref = NodeId.parse(node).workload
        assert ref is not None
        return f"{ref.namespace}/{ref.name}" if with_namespace else ref.name
    return str(attrs.get("label") or node)
