"""Reachability into the restricted zone: every other node (workloads, the API server, nodes, the
internet) probed against every restricted member with the project's evaluator, before and
after a policy change (PCI DSS 11.4.5 segmentation evidence). Drawn by
:mod:`segmenter.views.viz.reach`."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import networkx as nx

from segmenter.analysis.policies import PolicySource, load_policies
from segmenter.evaluate import EvalEndpoint
from segmenter.graph.labels import display_label, drawn_nodes
from segmenter.model import ContainerPort, Inventory, Labels, NodeId, Transport
from segmenter.planner import ZONE_FLOW_ORDER, Plan, Zone, node_zone
from segmenter.targets import get_target

# Reachability heatmaps with more sources than this group the rows by namespace.
MAX_MATRIX_ROWS: Final = 60


DENIED, PLANNED, UNPLANNED = 0, 1, 2
REACH_LABELS = {DENIED: "denied on every probed port",
                PLANNED: "allowed, only where a flow was observed",
                UNPLANNED: "allowed beyond the observed flows"}


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


def reachability(graph: nx.DiGraph, plan: Plan, after: PolicySource,
                 before: PolicySource = None, *, inventory: Inventory | None = None,
                 enforcement: str = "kubernetes", data_class: str | None = None,
                 max_rows: int = MAX_MATRIX_ROWS, before_label: str = "",
                 after_label: str = "") -> Reachability:
    """Probe every non-restricted node (workloads, the API server, nodes, externals) against
    every restricted member on :func:`target_probes`, with the evaluator of the target
    ``enforcement``, under ``before`` (default: no policies, i.e. today's open cluster) and
    ``after`` (the new policies). Policies are anything
    :func:`~segmenter.analysis.policies.load_policies` reads."""
    target = get_target(enforcement)
    namespaces: dict[str, Any] = {}
    if inventory is not None:
        namespaces = {ns.name: ns.labels for ns in inventory.namespaces}
    engines = [target.evaluator(load_policies(side, target).manifests, namespaces)
               for side in (before, after)]
    endpoints = eval_endpoints(graph, inventory)
    nodes = drawn_nodes(graph)
    zone = {n: node_zone(graph, plan, n, data_class) for n in nodes}
    targets = [n for n in nodes if zone[n] == Zone.RESTRICTED]
    sources = sorted((n for n in nodes if zone[n] != Zone.RESTRICTED),
                     key=lambda n: (ZONE_FLOW_ORDER.index(zone[n]), display_label(
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
    zones_of: list[str] = [zone[n] for n in sources]
    grouped = ""
    if len(sources) > max_rows:
        grouped = "namespace"
        keys: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, s in enumerate(sources):
            attrs = graph.nodes[s]
            key = str(attrs.get("namespace")) if attrs.get("kind") == "workload" else \
                str(attrs.get("kind"))
            keys[(zones_of[i], key)].append(i)
        order = sorted(keys, key=lambda k: (ZONE_FLOW_ORDER.index(k[0]), k[1]))
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
