"""The segmentation test of the evidence report (PCI DSS 11.4.5; 11.4.6 for service providers,
every six months): can anything outside the restricted zone open a connection into a restricted
workload, or the restricted workload out to it, beyond what the plan allows?

Every restricted workload of the plan is probed with the project's evaluator, end to end (both
sides' policies: what a tester's packet would meet), in both directions, against every peer
outside the restricted zones: every other workload (the graph's and the inventory's), every
node, the API server, the external addresses seen and the internet (one IPv4 and one IPv6
address, :data:`~segmenter.analysis.probes.INTERNET_ADDRESSES`), the same peers the isolation
check uses (:func:`~segmenter.analysis.isolation.graph_probes`). Ports: the isolation check's
(every port a rule names, the observed and declared ports, :data:`~segmenter.analysis.isolation.
COMMON_PORTS`), plus every observed port and :data:`WELL_KNOWN_PORTS`, each over TCP **and**
UDP.

Each probe falls in one category, the worst of a path's probes being the path's:

- ``DENIED``;
- ``PLANNED``: allowed, and an observed or declared flow (or cluster DNS, or a NodePort's node
  SNAT) explains it;
- ``NODE_LOCAL``: allowed only because the peer is the workload's own node (kubelet probes): no
  NetworkPolicy governs it (policy-semantics note "Nodes and host networking"); an exception
  whose compensating control (node isolation) the policies cannot show: a ``node-path`` finding
  (low) per (workload, direction, peer), so that it is listed and accepted, not missed;
- ``UNPLANNED``: allowed beyond the plan: a ``segmentation`` finding per (workload, direction,
  peer).

The report's summary, its tables and its picture (:func:`segmenter.analysis.reachability.
reach_matrix`) are all read from one :class:`SegmentationTest`, so they cannot disagree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from segmenter.analysis.findings import Finding, FindingKind
from segmenter.analysis.isolation import (
    EGRESS,
    INGRESS,
    Peer,
    graph_probes,
    in_scope,
    isolation_ports,
)
from segmenter.analysis.probes import probe_key
from segmenter.evaluate import Decision, EvalEndpoint, PolicyEngine
from segmenter.evaluate.engine import NODE_DECISION
from segmenter.model import Inventory, NodeKind, Transport
from segmenter.planner import Plan, Zone

DENIED, PLANNED, NODE_LOCAL, UNPLANNED = 0, 1, 2, 3
REACH_LABELS: Final = {
    DENIED: "denied on every probed port",
    PLANNED: "allowed, only where a flow was observed or declared",
    NODE_LOCAL: "allowed from the workload's own node only (not governed by policy)",
    UNPLANNED: "allowed beyond the plan",
}

# Probed over TCP and over UDP on every restricted workload, besides the ports rules name and
# the observed ones: the services a tester tries first (IANA Service Name and Transport Protocol
# Port Number Registry; Kubernetes "Ports and Protocols" for 2379-2380, 6443, 10250, 10255;
# the VXLAN ports of RFC 7348 and flannel, WireGuard's default).
WELL_KNOWN_PORTS: Final = (
    20, 21, 22, 23, 25, 53, 67, 69, 80, 88, 110, 111, 123, 135, 137, 139, 143, 161, 179, 389,
    443, 445, 500, 514, 636, 853, 873, 993, 1433, 1521, 2049, 2379, 2380, 3306, 3389, 4500,
    4789, 5353, 5432, 5672, 5900, 6379, 6443, 8080, 8443, 8472, 9092, 9200, 10250, 10255,
    11211, 27017, 51820,
)
_BOTH: Final = (Transport.TCP, Transport.UDP)
_FINDING_PORTS: Final = 12  # ports named in a finding's line


@dataclass(frozen=True)
class AllowedProbe:
    """A probe the policies let through, and why."""

    protocol: str
    port: int | None
    reach: int  # PLANNED, NODE_LOCAL or UNPLANNED
    decided_by: str

    def port_text(self) -> str:
        return self.protocol if self.port is None else f"{self.protocol}/{self.port}"


@dataclass(frozen=True)
class PathResult:
    """Every probe between one restricted workload and one peer in one direction (``ingress``:
    from the peer into the workload; ``egress``: from the workload out to the peer)."""

    member: str
    direction: str
    peer: str
    probes: int
    allowed: tuple[AllowedProbe, ...] = ()

    @property
    def reach(self) -> int:
        return max((a.reach for a in self.allowed), default=DENIED)

    def ports(self, reach: int) -> tuple[str, ...]:
        return tuple(a.port_text() for a in self.allowed if a.reach == reach)


@dataclass(frozen=True)
class TestPeer:
    """A peer as the test shows it: id, label for people, zone and kind."""

    id: str
    label: str
    zone: str
    kind: NodeKind


@dataclass(frozen=True)
class SegmentationTest:
    """The result: every path probed, under one enforcement."""

    enforcement: str
    members: tuple[str, ...]  # restricted workloads probed, sorted
    member_classes: Mapping[str, tuple[str, ...]]
    unchecked: tuple[str, ...]  # restricted workloads with no endpoint to probe
    peers: tuple[TestPeer, ...]
    ports: tuple[tuple[str, int | None], ...]
    paths: tuple[PathResult, ...]

    @property
    def probes(self) -> int:
        return sum(p.probes for p in self.paths)

    def count(self, reach: int) -> int:
        """Probes of one category."""
        if reach == DENIED:
            return self.probes - sum(len(p.allowed) for p in self.paths)
        return sum(1 for p in self.paths for a in p.allowed if a.reach == reach)

    def paths_at(self, reach: int) -> tuple[PathResult, ...]:
        """Paths whose worst probe is of category ``reach``."""
        return tuple(p for p in self.paths if p.reach == reach)

    def label(self, peer: str) -> str:
        return next((p.label for p in self.peers if p.id == peer), peer)

    def findings(self) -> list[Finding]:
        """One ``segmentation`` finding per path allowed beyond the plan, one ``node-path``
        finding per path allowed from the workload's own node only."""
        out = []
        for path in self.paths_at(NODE_LOCAL):
            classes = "/".join(self.member_classes.get(path.member, ()))
            verb = "is reachable from" if path.direction == INGRESS else "reaches out to"
            ports = path.ports(NODE_LOCAL)
            shown = (f"all {len(ports)} ports probed" if len(ports) == path.probes
                     else ", ".join(ports[:_FINDING_PORTS]) + (
                         f" and {len(ports) - _FINDING_PORTS} more port(s)"
                         if len(ports) > _FINDING_PORTS else ""))
            out.append(Finding.of(
                FindingKind.NODE_PATH, path.member,
                f"{path.member} ({classes} restricted) {verb} {self.label(path.peer)} on "
                f"{shown}, only because that is its own node or a hostNetwork pod on it, "
                "which no policy governs: show node isolation (a dedicated node pool, taints) "
                "as the compensating control"))
        for path in self.paths_at(UNPLANNED):
            classes = "/".join(self.member_classes.get(path.member, ()))
            who = f"{path.member} ({classes} restricted)"
            verb = "is reachable from" if path.direction == INGRESS else "reaches out to"
            first = next(a for a in path.allowed if a.reach == UNPLANNED)
            ports = path.ports(UNPLANNED)
            shown = ", ".join(ports[:_FINDING_PORTS]) + (
                f" and {len(ports) - _FINDING_PORTS} more port(s)"
                if len(ports) > _FINDING_PORTS else "")
            out.append(Finding.of(
                FindingKind.SEGMENTATION, path.member,
                f"{who} {verb} {self.label(path.peer)} beyond the plan on {shown} (allowed "
                f"by {first.decided_by})"))
        return sorted(out)

    def as_dict(self) -> dict[str, Any]:
        return {
            "enforcement": self.enforcement, "members": list(self.members),
            "unchecked": list(self.unchecked), "probes": self.probes,
            "ports": [{"protocol": t, "port": p} for t, p in self.ports],
            "counts": {name: self.count(reach) for reach, name in (
                (DENIED, "denied"), (PLANNED, "planned"), (NODE_LOCAL, "node_local"),
                (UNPLANNED, "unplanned"))},
            "paths": [{"member": p.member, "direction": p.direction, "peer": p.peer,
                       "probes": p.probes, "allowed": [vars(a) for a in p.allowed]}
                      for p in self.paths if p.allowed],
        }


def _side(name: str, decision: Decision) -> str:
    if decision.policy is None:
        return f"{name}: {decision.reason}"
    return f"{name}: {decision.policy}{' ' + decision.rule if decision.rule else ''}"


def segmentation_ports(planned_ports: Sequence[tuple[Transport, int | None]]
                       ) -> list[tuple[Transport, int | None]]:
    """The ports probed: ``planned_ports`` (the isolation check's), and every observed port and
    :data:`WELL_KNOWN_PORTS` over both TCP and UDP."""
    found = set(planned_ports)
    for transport, port in planned_ports:
        if transport in _BOTH and port is not None:
            found.update((t, port) for t in _BOTH)
    found.update((t, port) for port in WELL_KNOWN_PORTS for t in _BOTH)
    return sorted(found, key=probe_key)


def segmentation_test(graph: Any, plan: Plan, engine: PolicyEngine, *,
                      endpoints: Mapping[str, EvalEndpoint],
                      manifests: Sequence[Mapping[str, Any]],
                      inventory: Inventory | None = None,
                      data_class: str | None = None) -> SegmentationTest:
    """Probe every restricted workload of ``plan`` (of ``data_class`` only, when given) in both
    directions against every peer outside the restricted zones, under ``engine``."""
    setup = graph_probes(graph, endpoints=endpoints, inventory=inventory)
    restricted: dict[str, list[str]] = {}
    for scope in plan.classes:
        for member in scope.members(Zone.RESTRICTED):
            restricted.setdefault(member.node, []).append(scope.data_class)
    subjects = [s for s in in_scope(plan, endpoints.get) if s.zone is Zone.RESTRICTED
                and (data_class is None or data_class in restricted.get(s.node, ()))]
    ports = segmentation_ports(isolation_ports(manifests, inventory or Inventory(),
                                               setup.planned, subjects))
    peers = [p for p in setup.peers if p.id not in restricted]
    results: list[PathResult] = []
    unchecked: list[str] = []
    shared: dict[Any, Any] = {}
    for subject in subjects:
        ep = subject.endpoint
        if ep is None:
            unchecked.append(subject.node)
            continue
        for peer in peers:
            for direction in (INGRESS, EGRESS):
                results.append(_probe_path(engine, subject.node, ep, peer,
                                           direction=direction, ports=ports,
                                           allows=setup.planned.allows, shared=shared))
    return SegmentationTest(
        engine.enforcement, tuple(s.node for s in subjects),
        {node: tuple(sorted(set(classes))) for node, classes in restricted.items()},
        tuple(unchecked), tuple(_test_peer(graph, plan, p) for p in peers),
        tuple((str(t), p) for t, p in ports), tuple(results))


def _probe_path(engine: PolicyEngine, member: str, ep: EvalEndpoint, peer: Peer, *,
                direction: str, ports: Sequence[tuple[Transport, int | None]],
                allows: Any, shared: dict[Any, Any]) -> PathResult:
    """One path's probes. ``shared`` holds the texts and probes already made: an open cluster
    allows millions of probes that say the same few things (kept once, not once each)."""
    src, dst = (peer.endpoint, ep) if direction == INGRESS else (ep, peer.endpoint)
    client, server = (peer.id, member) if direction == INGRESS else (member, peer.id)
    allowed = []
    for transport, port in ports:
        verdict = engine.check(src, dst, transport, port)
        if not verdict.allowed:
            continue
        if allows(client, server, str(transport), port):
            reach = PLANNED
        elif verdict.ingress == NODE_DECISION:
            reach = NODE_LOCAL
        else:
            reach = UNPLANNED
        text = shared.get(verdict)
        if text is None:
            text = shared[verdict] = (f"{_side('egress', verdict.egress)}; "
                                      f"{_side('ingress', verdict.ingress)}")
        key = (transport, port, reach, text)
        probe = shared.get(key)
        if probe is None:
            probe = shared[key] = AllowedProbe(str(transport), port, reach, text)
        allowed.append(probe)
    return PathResult(member, direction, peer.id, len(ports), tuple(allowed))


def _peer_label(graph: Any, peer: Peer) -> str:
    """Workloads by id; nodes and addresses as people know them (``node worker-1``,
    ``api.gateway.example (203.0.113.10)``)."""
    from segmenter.graph.labels import display_label

    if peer.id not in graph or peer.kind is NodeKind.WORKLOAD:
        return peer.label
    if peer.kind is NodeKind.NODE:
        return f"node {display_label(graph, peer.id)}"
    label = display_label(graph, peer.id)
    address = peer.endpoint.ip
    return f"{label} ({address})" if address and address != label else label


def _test_peer(graph: Any, plan: Plan, peer: Peer) -> TestPeer:
    zone = plan.zone_of(peer.id) if plan.classes else Zone.GENERAL
    if zone == Zone.GENERAL and peer.kind is NodeKind.EXTERNAL:
        zone = Zone.EXTERNAL  # the internet's representatives are in no plan
    elif zone == Zone.GENERAL and peer.kind in (NodeKind.NODE, NodeKind.APISERVER):
        zone = Zone.INFRASTRUCTURE
    return TestPeer(peer.id, _peer_label(graph, peer), str(zone), peer.kind)


def reach_counts(test: SegmentationTest) -> Counter[int]:
    """Probes per category (the summary's numbers)."""
    return Counter({reach: test.count(reach)
                    for reach in (DENIED, PLANNED, NODE_LOCAL, UNPLANNED)})


__all__ = ["DENIED", "NODE_LOCAL", "PLANNED", "REACH_LABELS", "UNPLANNED", "WELL_KNOWN_PORTS",
           "AllowedProbe", "PathResult", "SegmentationTest", "TestPeer", "reach_counts",
           "segmentation_ports", "segmentation_test"]
