"""Isolation of the in-scope workloads: not only replaying what was observed, probing what was
not.

For every restricted and connected workload of a plan, under one enforcement:

- *isolated*: for ingress and for egress, some policy decides its connections (no probe is let
  through only because nothing selects it: the "not isolated" / Calico profile / Cilium
  "no default deny" decisions);
- *reachable only as planned*: every other workload, every node address, the API server, the
  external addresses the traffic showed and the internet (one IPv4 and one IPv6 address) are
  probed into the workload, and the workload is probed out to each of them, on every port a
  rule names, the ports observed, the workload's declared ports and a few common ways in and
  out (:data:`COMMON_PORTS`). An allowed probe that no observed flow (or the cluster DNS the
  plan adds) explains is reachability beyond the plan.

Probes go through the project's evaluator (:class:`~segmenter.evaluate.PolicyEngine`), one
representative pod per workload, as :mod:`segmenter.analysis.reachability` does; the results
are :class:`~segmenter.analysis.findings.Finding` s (``unisolated``, ``over-permissive``,
``unchecked``).

Two facts of every dataplane are not findings: a pod's own node always reaches it (kubelet
probes; policy-semantics.md §1.7), and a node reaches a workload on a port that a client
outside the cluster was seen using, since a NodePort or LoadBalancer SNATs such clients to a
node address (§1.5).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from segmenter.analysis.findings import Finding, FindingKind
from segmenter.analysis.probes import (
    CANARY_PORTS,
    INTERNET_ADDRESSES,
    probe_ports,
    representative_pods,
)
from segmenter.analysis.replay import Replay, group_verdicts
from segmenter.analysis.verify import EndpointFinder, FlowVerdict
from segmenter.evaluate import Decision, EvalEndpoint, PolicyEngine
from segmenter.evaluate.engine import NODE_DECISION
from segmenter.model import (
    APISERVER_ID,
    Inventory,
    NodeId,
    NodeKind,
    Transport,
)
from segmenter.planner import Plan, Zone

# Probed besides the ports rules name and the ports observed: the usual ways in (the
# reachability matrix's canaries: SSH, HTTPS, an admin or proxy port) and out (DNS, HTTP).
COMMON_PORTS: Final = (*((Transport.parse(t), p) for t, p in CANARY_PORTS),
                       (Transport.UDP, 53), (Transport.TCP, 53), (Transport.TCP, 80))

IN_SCOPE_ZONES: Final = (Zone.RESTRICTED, Zone.CONNECTED)
INGRESS, EGRESS = "ingress", "egress"
_SHOWN: Final = 4  # openings named in a finding's line

Probe = tuple[str, str, str, int | None]  # (client id, server id, protocol, port)


@dataclass(frozen=True)
class Peer:
    """Something probed against an in-scope workload: ``id`` is a graph node id."""

    id: str
    label: str
    endpoint: EvalEndpoint
    kind: NodeKind


@dataclass(frozen=True)
class InScope:
    """A restricted or connected workload: its most restrictive zone, the data classes that put
    it there, and the endpoint probed (None: no pod of it in the inventory)."""

    node: str
    zone: Zone
    classes: tuple[str, ...]
    endpoint: EvalEndpoint | None


@dataclass(frozen=True)
class Opening:
    """A probe that the workload's own policies allow and the plan does not explain.

    ``reachable``: the connection is allowed end to end; False when only the peer's own
    policies (its egress, for ingress into the workload) stop it, which a change on the peer's
    side would undo: the restricted zone's own controls must hold alone (PCI DSS 1.3.1).
    """

    direction: str  # ingress: from ``peer``; egress: to ``peer``
    peer: str
    protocol: str
    port: int | None
    decided_by: str
    reachable: bool = True

    def port_text(self) -> str:
        return self.protocol if self.port is None else f"{self.protocol}/{self.port}"


@dataclass(frozen=True)
class WorkloadIsolation:
    """What the probes found for one in-scope workload."""

    node: str
    zone: Zone
    classes: tuple[str, ...]
    checked: bool
    # direction -> why it is not isolated (the evaluator's reason), for open directions only
    unisolated: tuple[tuple[str, str], ...] = ()
    beyond_plan: tuple[Opening, ...] = ()
    probes: int = 0
    planned_allowed: int = 0
    unpoliced: int = 0  # probes allowed because no policy decides at the workload
    peer_labels: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def scope(self) -> str:
        """``pci restricted``."""
        return f"{'/'.join(self.classes)} {self.zone}"

    @property
    def clean(self) -> bool:
        return self.checked and not self.unisolated and not self.beyond_plan

    def summary(self) -> str:
        """One line for people."""
        if not self.checked:
            return "NOT CHECKED: no pod of it in the inventory"
        parts = []
        if self.unisolated:
            parts.append("NOT ISOLATED for " + " and ".join(d for d, _ in self.unisolated)
                         + f" ({self.unpoliced} of {self.probes} probes allowed with no policy "
                         "deciding)")
        else:
            parts.append("isolated for ingress and egress")
        if self.beyond_plan:
            peers = {(o.direction, o.peer) for o in self.beyond_plan}
            parts.append(f"{len(self.beyond_plan)} probe(s) allowed BEYOND THE PLAN by a rule "
                         f"({len(peers)} peer(s))")
        elif not self.unisolated:
            parts.append(f"only planned connections allowed ({self.planned_allowed} of "
                         f"{self.probes} probes)")
        return "; ".join(parts)

    def findings(self) -> list[Finding]:
        who = f"{self.node} ({self.scope})"
        if not self.checked:
            return [Finding.of(FindingKind.UNCHECKED, self.node,
                               f"{who} cannot be checked: no pod of it in the inventory",
                               self.zone)]
        out = []
        if self.unisolated:
            directions = " and ".join(d for d, _ in self.unisolated)
            why = "; ".join(f"{d}: {reason}" for d, reason in self.unisolated)
            out.append(Finding.of(FindingKind.UNISOLATED, self.node,
                                  f"{who} is not isolated for {directions} ({why})", self.zone))
        for direction in (INGRESS, EGRESS):
            opened = [o for o in self.beyond_plan if o.direction == direction]
            if not opened:
                continue
            by_peer: dict[str, list[str]] = defaultdict(list)
            for o in opened:
                by_peer[o.peer].append(o.port_text())
            shown = [f"{'from' if direction == INGRESS else 'to'} "
                     f"{self.peer_labels.get(p, p)} {', '.join(ports)}"
                     for p, ports in sorted(by_peer.items())[:_SHOWN]]
            more = f"; and {len(by_peer) - _SHOWN} more peer(s)" if len(by_peer) > _SHOWN \
                else ""
            verb = "is reachable" if direction == INGRESS else "reaches out"
            blocked = sum(1 for o in opened if not o.reachable)
            caveat = (f"; {blocked} of them stopped only by the peers' own policies"
                      if blocked else "")
            if blocked == len(opened):
                verb = ("admits by its own policies" if direction == INGRESS
                        else "is let out by its own policies")
            out.append(Finding.of(
                FindingKind.OVER_PERMISSIVE, self.node,
                f"{who} {verb} beyond the plan ({len(opened)} probe(s){caveat}; e.g. allowed "
                f"by {opened[0].decided_by}): {'; '.join(shown)}{more}", self.zone))
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "node": self.node, "zone": str(self.zone), "classes": list(self.classes),
            "checked": self.checked,
            "unisolated": [{"direction": d, "reason": r} for d, r in self.unisolated],
            "beyond_plan": [vars(o) for o in self.beyond_plan],
            "probes": self.probes, "planned_allowed": self.planned_allowed,
            "unpoliced": self.unpoliced,
        }


@dataclass(frozen=True)
class IsolationCheck:
    """Every in-scope workload's isolation under one enforcement."""

    enforcement: str
    workloads: tuple[WorkloadIsolation, ...]
    peers: int
    ports: tuple[tuple[str, int | None], ...]

    def findings(self) -> list[Finding]:
        return sorted(f for w in self.workloads for f in w.findings())

    def as_dict(self) -> dict[str, Any]:
        return {"enforcement": self.enforcement, "peers": self.peers,
                "ports": [{"protocol": t, "port": p} for t, p in self.ports],
                "workloads": [w.as_dict() for w in self.workloads]}


# ---------------------------------------------------------------------------------------------
# What is in scope, and what is planned


def in_scope(plan: Plan, endpoint_of: Callable[[str], EvalEndpoint | None]) -> list[InScope]:
    """The plan's restricted and connected workloads (their most restrictive zone), sorted
    restricted first."""
    found: dict[str, tuple[Zone, list[str]]] = {}
    for scope in plan.classes:
        for zone in IN_SCOPE_ZONES:
            for member in scope.members(zone):
                try:
                    if NodeId.parse(member.node).kind is not NodeKind.WORKLOAD:
                        continue
                except ValueError:
                    continue
                current = found.get(member.node)
                if current is None:
                    found[member.node] = (zone, [scope.data_class])
                    continue
                best = min(current[0], zone, key=IN_SCOPE_ZONES.index)
                found[member.node] = (best, [*current[1], scope.data_class])
    out = [InScope(node, zone, tuple(sorted(set(classes))), endpoint_of(node))
           for node, (zone, classes) in found.items()]
    return sorted(out, key=lambda s: (IN_SCOPE_ZONES.index(s.zone), s.node))


class Planned:
    """The connections a plan allows: the observed ones, cluster DNS from every workload, and
    from nodes on ports that clients outside the cluster were seen using (NodePort SNAT)."""

    def __init__(self, observed: Iterable[Probe], *, dns_servers: Iterable[str] = (),
                 dns_ports: Iterable[tuple[str, int | None]] = (),
                 host_nodes: Mapping[str, Iterable[str]] | None = None):
        hosts = {k: tuple(v) for k, v in (host_nodes or {}).items()}
        self.observed: set[Probe] = set()
        for client, server, protocol, port in observed:
            for c in (client, *hosts.get(client, ())):
                for s in (server, *hosts.get(server, ())):
                    self.observed.add((c, s, protocol, port))
        self.dns_servers = set(dns_servers)
        for server in list(self.dns_servers):
            self.dns_servers.update(hosts.get(server, ()))
        self.dns_ports = set(dns_ports) or {(str(Transport.UDP), 53), (str(Transport.TCP), 53)}
        # (server, protocol, port) reached from outside the cluster or from a node
        self.from_outside = {(s, p, n) for c, s, p, n in self.observed
                             if _kind(c) in (NodeKind.EXTERNAL, NodeKind.NODE)}

    def allows(self, client: str, server: str, protocol: str, port: int | None) -> bool:
        if (client, server, protocol, port) in self.observed:
            return True
        if server in self.dns_servers and (protocol, port) in self.dns_ports:
            return True
        return _kind(client) is NodeKind.NODE and (server, protocol, port) in self.from_outside

    def ports(self) -> set[tuple[str, int | None]]:
        return {(p, n) for _, _, p, n in self.observed} | self.dns_ports


def _kind(node_id: str) -> NodeKind | None:
    try:
        return NodeId.parse(node_id).kind
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# The probes


def _decided_by(decision: Decision) -> str:
    if decision.policy is None:
        return decision.reason
    return f"{decision.policy}{' ' + decision.rule if decision.rule else ''}"


def check_isolation(engine: PolicyEngine, subjects: Sequence[InScope], peers: Sequence[Peer],
                    planned: Planned, ports: Sequence[tuple[Transport, int | None]], *,
                    enforcement: str) -> IsolationCheck:
    """Probe every subject against every peer on every port, both directions."""
    labels = {p.id: p.label for p in peers}
    results = []
    for subject in subjects:
        ep = subject.endpoint
        if ep is None:
            results.append(WorkloadIsolation(subject.node, subject.zone, subject.classes, False))
            continue
        if not ep.is_pod:
            why = ("runs on the host network, which policy does not govern"
                   if ep.host_network else "not a pod")
            results.append(WorkloadIsolation(subject.node, subject.zone, subject.classes, True,
                                             ((INGRESS, why), (EGRESS, why))))
            continue
        open_sides: dict[str, str] = {}
        openings: list[Opening] = []
        probes = planned_allowed = unpoliced = 0
        for peer in peers:
            if peer.id == subject.node:
                continue
            # A pod's own node (and its hostNetwork pods) always reaches it: kubelet probes.
            own_node = not peer.endpoint.is_pod and peer.endpoint.node is not None and \
                peer.endpoint.node == ep.node
            for direction in (INGRESS, EGRESS):
                if direction == INGRESS and own_node:
                    continue
                src, dst = (peer.endpoint, ep) if direction == INGRESS else (ep, peer.endpoint)
                client = peer.id if direction == INGRESS else subject.node
                server = subject.node if direction == INGRESS else peer.id
                for transport, port in ports:
                    probes += 1
                    # The workload's own side decides whether its controls hold.
                    decision = engine.decide(direction, src, dst, transport, port)
                    if not decision.allowed:
                        continue
                    if planned.allows(client, server, str(transport), port):
                        planned_allowed += 1
                        continue
                    if decision == NODE_DECISION:
                        continue  # the engine's own-node rule, whatever the peer's name
                    if decision.policy is None:
                        open_sides.setdefault(direction, decision.reason)
                        unpoliced += 1
                        continue
                    reachable = engine.check(src, dst, transport, port).allowed
                    openings.append(Opening(direction, peer.id, str(transport), port,
                                            _decided_by(decision), reachable))
        unisolated = tuple((d, open_sides[d]) for d in (INGRESS, EGRESS) if d in open_sides)
        results.append(WorkloadIsolation(
            subject.node, subject.zone, subject.classes, True, unisolated,
            tuple(sorted(openings, key=lambda o: (o.direction, o.peer, o.protocol,
                                                  -1 if o.port is None else o.port))),
            probes, planned_allowed, unpoliced, labels))
    return IsolationCheck(enforcement, tuple(results), len(peers),
                          tuple((str(t), p) for t, p in ports))


def isolation_ports(manifests: Sequence[Mapping[str, Any]], inventory: Inventory,
                    planned: Planned, subjects: Sequence[InScope]
                    ) -> list[tuple[Transport, int | None]]:
    """Every port a rule names, the planned ports, the subjects' declared ports and
    :data:`COMMON_PORTS`."""
    extra: set[tuple[Transport, int | None]] = set(COMMON_PORTS)
    for protocol, port in planned.ports():
        try:
            extra.add((Transport.parse(protocol), port))
        except ValueError:
            continue
    for subject in subjects:
        if subject.endpoint is not None:
            extra.update((cp.protocol, cp.port) for cp in subject.endpoint.ports)
    return probe_ports(manifests, inventory, extra)


def internet_peers(taken: Iterable[str] = ()) -> list[Peer]:
    """:data:`INTERNET_ADDRESSES` as peers, unless already among ``taken`` ids."""
    seen = set(taken)
    return [Peer(NodeId.of_external(a), f"the internet ({a})", EvalEndpoint(ip=a, name=a),
                 NodeKind.EXTERNAL)
            for a in INTERNET_ADDRESSES if NodeId.of_external(a) not in seen]


# ---------------------------------------------------------------------------------------------
# From an inventory and replayed flows (``verify``)


def inventory_peers(inventory: Inventory, finder: EndpointFinder,
                    externals: Mapping[str, str]) -> list[Peer]:
    """One pod per workload, every node address, the API server's addresses, the external
    addresses the traffic showed (``externals``: node id -> address) and the internet."""
    peers = [Peer(ref.id, ref.id, finder.of_pod(pod), NodeKind.WORKLOAD)
             for ref, pod in representative_pods(inventory).items()]
    for node in sorted(inventory.nodes, key=lambda n: n.name):
        for address in node.addresses:
            peers.append(Peer(NodeId.of_node(node.name), f"node {node.name} ({address})",
                              EvalEndpoint(ip=address, node=node.name,
                                           name=NodeId.of_node(node.name)), NodeKind.NODE))
    for address in finder.apiserver:
        peers.append(Peer(APISERVER_ID, f"the API server ({address})",
                          EvalEndpoint(ip=address, name=APISERVER_ID, kube_apiserver=True),
                          NodeKind.APISERVER))
    for node_id, address in sorted(externals.items()):
        peers.append(Peer(node_id, node_id, EvalEndpoint(
            ip=address, name=node_id, dns_names=finder.dns_names.get(address, ())),
            NodeKind.EXTERNAL))
    return [*peers, *internet_peers(externals)]


def _host_nodes(inventory: Inventory) -> dict[str, set[str]]:
    """hostNetwork workloads -> the node ids their pods run on (their traffic is the node's)."""
    out: dict[str, set[str]] = defaultdict(set)
    for pod in inventory.pods:
        if pod.host_network and pod.node:
            out[pod.owner.id].add(NodeId.of_node(pod.node))
    return out


def _dns(inventory: Inventory) -> tuple[list[str], set[tuple[str, int | None]]]:
    from segmenter.cluster.dns import dns_workload
    from segmenter.policy.dns import DNS_PORTS

    ref = dns_workload(inventory)
    if ref is None:
        return [], set()
    ports: set[tuple[str, int | None]] = {(str(Transport.UDP), 53), (str(Transport.TCP), 53)}
    for pod in inventory.pods_of(ref):
        ports.update((str(cp.protocol), cp.port) for cp in pod.ports
                     if cp.port in DNS_PORTS and cp.protocol in (Transport.UDP, Transport.TCP))
    return [ref.id], ports


def check_from_flows(plan: Plan, inventory: Inventory, manifests: Sequence[Mapping[str, Any]],
                     verdicts: Replay | Sequence[FlowVerdict], *, enforcement: str,
                     finder: EndpointFinder | None = None) -> IsolationCheck:
    """The isolation of ``plan``'s in-scope workloads under ``manifests``, the planned
    connections being the replayed flows (``verdicts``, one by one or grouped) plus cluster
    DNS. An external node is probed from the least address the flows reached it at."""
    if not isinstance(verdicts, Replay):
        verdicts = group_verdicts(verdicts)
    finder = finder or EndpointFinder(inventory)
    namespaces = {ns.name: ns.labels for ns in inventory.namespaces}
    engine = PolicyEngine.from_manifests(manifests, namespaces=namespaces,
                                         enforcement=enforcement)
    reps = representative_pods(inventory)
    by_id = {ref.id: pod for ref, pod in reps.items()}
    host_only = {p.owner.id: p for p in inventory.pods if p.host_network}

    def endpoint_of(node: str) -> EvalEndpoint | None:
        pod = by_id.get(node) or host_only.get(node)
        return finder.of_pod(pod) if pod is not None else None

    subjects = in_scope(plan, endpoint_of)
    externals = dict(verdicts.addresses)
    dns_servers, dns_ports = _dns(inventory)
    planned = Planned(((v.client, v.server, str(v.transport), v.port) for v in verdicts),
                      dns_servers=dns_servers, dns_ports=dns_ports,
                      host_nodes=_host_nodes(inventory))
    ports = isolation_ports(manifests, inventory, planned, subjects)
    return check_isolation(engine, subjects, inventory_peers(inventory, finder, externals),
                           planned, ports, enforcement=enforcement)


# ---------------------------------------------------------------------------------------------
# From a graph (the evidence report)


@dataclass(frozen=True)
class GraphProbes:
    """What probing a graph's in-scope workloads starts from: the peers (every workload, node,
    API server and external address of the graph, the inventory's other workloads and the
    internet) and the planned connections (the graph's edges, cluster DNS, NodePort SNAT)."""

    peers: tuple[Peer, ...]
    planned: Planned


def graph_probes(graph: Any, *, endpoints: Mapping[str, EvalEndpoint],
                 inventory: Inventory | None = None) -> GraphProbes:
    """The peers and planned connections of a graph (the isolation check and the segmentation
    test of the evidence report probe the same ones)."""
    peers: list[Peer] = []
    for node, ep in sorted(endpoints.items()):
        kind = _kind(node)
        if kind is None:
            continue
        peers.append(Peer(node, node, ep, kind))
    if inventory is not None:
        finder = EndpointFinder(inventory)
        peers.extend(Peer(ref.id, ref.id, finder.of_pod(pod), NodeKind.WORKLOAD)
                     for ref, pod in representative_pods(inventory).items()
                     if ref.id not in endpoints)
    peers.extend(internet_peers(endpoints))
    observed: list[Probe] = []
    for client, server, data in graph.edges(data=True):
        for p in data.get("ports", []):
            observed.append((client, server, str(p.get("protocol")), p.get("port")))
    dns_servers = {n for n, a in graph.nodes(data=True) if a.get("cluster_dns")}
    dns_ports: set[tuple[str, int | None]] = set()
    if inventory is not None:
        servers, dns_ports = _dns(inventory)
        dns_servers.update(servers)
    host_nodes: dict[str, set[str]] = defaultdict(set)
    for node, ep in endpoints.items():
        if ep.host_network and ep.node:
            host_nodes[node].add(NodeId.of_node(ep.node))
    planned = Planned(observed, dns_servers=dns_servers, dns_ports=dns_ports,
                      host_nodes=host_nodes)
    return GraphProbes(tuple(peers), planned)


def check_from_graph(graph: Any, plan: Plan, engine: PolicyEngine, *,
                     endpoints: Mapping[str, EvalEndpoint],
                     manifests: Sequence[Mapping[str, Any]],
                     inventory: Inventory | None = None) -> IsolationCheck:
    """The same check with the graph's nodes as peers (every workload, node, API server and
    external address it holds, plus the inventory's other workloads and the internet) and its
    edges as the planned connections."""
    setup = graph_probes(graph, endpoints=endpoints, inventory=inventory)
    subjects = in_scope(plan, endpoints.get)
    ports = isolation_ports(manifests, inventory or Inventory(), setup.planned, subjects)
    return check_isolation(engine, subjects, setup.peers, setup.planned, ports,
                           enforcement=engine.enforcement)


__all__ = [
    "COMMON_PORTS",
    "INTERNET_ADDRESSES",
    "GraphProbes",
    "InScope",
    "IsolationCheck",
    "Opening",
    "Peer",
    "Planned",
    "WorkloadIsolation",
    "check_from_flows",
    "check_from_graph",
    "check_isolation",
    "graph_probes",
    "in_scope",
    "internet_peers",
    "inventory_peers",
    "isolation_ports",
]
