"""Reachability of the restricted zone as a matrix: every peer outside it (workloads, the API
server, nodes, external addresses, the internet) against every restricted workload, in and out,
before and after a policy change (PCI DSS 11.4.5 segmentation evidence). Each side is a
:class:`~segmenter.analysis.segmentation.SegmentationTest`; the matrix is read from them
(:func:`reach_matrix`), so the picture (drawn by :mod:`segmenter.views.viz.reach`) shows
exactly what the report's tables list."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import networkx as nx

from segmenter.analysis.isolation import INGRESS
from segmenter.analysis.policies import PolicySource, load_policies
from segmenter.analysis.probes import CANARY_PORTS
from segmenter.analysis.segmentation import (
    DENIED,
    NODE_LOCAL,
    PLANNED,
    REACH_LABELS,
    UNPLANNED,
    SegmentationTest,
    segmentation_test,
)
from segmenter.evaluate import EvalEndpoint
from segmenter.graph.labels import display_label
from segmenter.model import ContainerPort, Inventory, Labels, NodeId, Transport
from segmenter.planner import ZONE_FLOW_ORDER, Plan
from segmenter.targets import get_target

# Reachability heatmaps with more sources than this group the rows by namespace.
MAX_MATRIX_ROWS: Final = 60


@dataclass(frozen=True)
class Reachability:
    """Who can open a connection with each restricted workload, before and after.

    Columns are (restricted workload, direction): ``ingress`` (the row opens a connection to
    the workload) or ``egress`` (the workload opens one to the row). Cells hold DENIED,
    PLANNED, NODE_LOCAL or UNPLANNED: the worst of the path's probes; ``open_*`` count the
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
    directions: tuple[str, ...] = ()  # per column: ingress or egress

    def count(self, which: str, category: int) -> int:
        cells = self.before if which == "before" else self.after
        return sum(1 for row in cells for c in row if c == category)


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
            ports = tuple(sorted({ContainerPort(int(p["port"]), transport)
                                  for _, _, d in graph.in_edges(node, data=True)
                                  for p in d.get("ports", []) if p.get("port") is not None
                                  for transport in [_transport(p["protocol"])]
                                  if transport is not None}))
            out[node] = EvalEndpoint(ip="", namespace=str(attrs.get("namespace")),
                                     labels=Labels.of(attrs.get("labels") or {}),
                                     host_network=bool(attrs.get("host_network")),
                                     ports=ports, name=node)
        else:
            addresses = attrs.get("addresses") or []
            out[node] = EvalEndpoint(ip=str(addresses[0]) if addresses else "", namespace=None,
                                     labels=Labels(), node=NodeId.parse(node).node_name,
                                     name=node, dns_names=tuple(attrs.get("dns_names") or ()),
                                     kube_apiserver=kind == "apiserver")
    return out


def _transport(value: Any) -> Transport | None:
    try:
        return Transport.parse(str(value))
    except ValueError:
        return None


def reach_matrix(after: SegmentationTest, before: SegmentationTest | None, graph: nx.DiGraph,
                 *, max_rows: int = MAX_MATRIX_ROWS, before_label: str = "no policies",
                 after_label: str = "new policies") -> Reachability:
    """The matrix of two segmentation tests of the same graph (``before`` None: an empty
    side): rows are the peers by zone, columns each restricted workload in and out."""
    columns = [(m, d) for m in after.members for d in (INGRESS, "egress")]
    peers = sorted(after.peers, key=lambda p: (
        ZONE_FLOW_ORDER.index(p.zone) if p.zone in ZONE_FLOW_ORDER else len(ZONE_FLOW_ORDER),
        _row_label(graph, p.id, p.label), p.id))
    sides: list[list[list[tuple[int, int]]]] = []
    for test in (before, after):
        index = {(p.member, p.direction, p.peer): p for p in test.paths} if test else {}
        rows = []
        for peer in peers:
            row = []
            for member, direction in columns:
                path = index.get((member, direction, peer.id))
                row.append((path.reach, len(path.allowed)) if path else (DENIED, 0))
            rows.append(row)
        sides.append(rows)
    sources = [p.id for p in peers]
    labels = [_row_label(graph, p.id, p.label) for p in peers]
    zones_of = [p.zone for p in peers]
    grouped = ""
    if len(sources) > max_rows:
        grouped = "namespace"
        keys: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, source in enumerate(sources):
            attrs = graph.nodes[source] if source in graph else {}
            key = str(attrs.get("namespace")) if attrs.get("kind") == "workload" else \
                str(attrs.get("kind") or NodeId.parse(source).kind)
            keys[(zones_of[i], key)].append(i)
        order = sorted(keys, key=lambda k: (ZONE_FLOW_ORDER.index(k[0])
                                            if k[0] in ZONE_FLOW_ORDER else 9, k[1]))
        sides = [[[(max(side[i][j][0] for i in keys[k]),
                    sum(1 for i in keys[k] if side[i][j][0] != DENIED))
                   for j in range(len(columns))] for k in order] for side in sides]
        sources = [f"{z}:{k}" for z, k in order]
        labels = [f"{k} ({len(keys[(z, k)])})" for z, k in order]
        zones_of = [z for z, _ in order]
    probes = {m: after.ports for m in after.members}
    return Reachability(
        tuple(sources), tuple(zones_of), tuple(labels), tuple(m for m, _ in columns),
        tuple(f"{display_label(graph, m, with_namespace=True) if m in graph else m} "
              f"({'in' if d == INGRESS else 'out'})" for m, d in columns),
        tuple(tuple(c for c, _ in row) for row in sides[0]),
        tuple(tuple(c for c, _ in row) for row in sides[1]),
        tuple(tuple(n for _, n in row) for row in sides[0]),
        tuple(tuple(n for _, n in row) for row in sides[1]),
        probes, before_label, after_label, after.enforcement, grouped,
        tuple(d for _, d in columns))


def _row_label(graph: nx.DiGraph, node: str, fallback: str) -> str:
    return display_label(graph, node, with_namespace=True) if node in graph else fallback


def reachability(graph: nx.DiGraph, plan: Plan, after: PolicySource,
                 before: PolicySource = None, *, inventory: Inventory | None = None,
                 enforcement: str = "kubernetes", data_class: str | None = None,
                 max_rows: int = MAX_MATRIX_ROWS, before_label: str = "",
                 after_label: str = "") -> Reachability:
    """The segmentation test (:func:`~segmenter.analysis.segmentation.segmentation_test`) of
    every restricted workload under ``before`` (default: no policies, i.e. today's open
    cluster) and ``after`` (the new policies), with the evaluator of the target
    ``enforcement``, as a matrix. Policies are anything
    :func:`~segmenter.analysis.policies.load_policies` reads."""
    target = get_target(enforcement)
    namespaces: dict[str, Any] = {}
    if inventory is not None:
        namespaces = {ns.name: ns.labels for ns in inventory.namespaces}
    endpoints = eval_endpoints(graph, inventory)
    tests = []
    for side in (before, after):
        docs = load_policies(side, target)
        engine = target.evaluator(docs.manifests, namespaces)
        tests.append(segmentation_test(graph, plan, engine, endpoints=endpoints,
                                       manifests=docs.manifests, inventory=inventory,
                                       data_class=data_class))
    return reach_matrix(tests[1], tests[0], graph, max_rows=max_rows,
                        before_label=before_label or _side_label(before, "before"),
                        after_label=after_label or _side_label(after, "new policies"))


__all__ = ["CANARY_PORTS", "DENIED", "MAX_MATRIX_ROWS", "NODE_LOCAL", "PLANNED",
           "REACH_LABELS", "UNPLANNED", "Reachability", "eval_endpoints", "reach_matrix",
           "reachability"]
