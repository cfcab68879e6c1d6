"""Lowering: a plan and its graph become a ``PolicySet`` (the only place zones become rules).

What is allowed is exactly the plan: every observed flow between a policed workload and its peer
(as the server pod sees the port: post-DNAT, ``targetPort``), plus DNS to the cluster resolver
for every policed workload (a default-deny egress without DNS breaks name resolution,
policy-semantics.md tricky case 3). Every namespace with a policed workload gets a default deny
in both directions, the artefact PCI DSS 1.3.1/1.3.2 asks to see ("everything else is
specifically denied").
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from segmenter.compliance import PolicyRole, citations
from segmenter.config import CompileOptions, ExternalBlock
from segmenter.errors import UnsupportedError
from segmenter.gcpause import no_gc
from segmenter.k8s import dns1123
from segmenter.model import Inventory, Labels, Transport, WorkloadRef
from segmenter.planner import Plan, Zone
from segmenter.policy.dns import detect_dns
from segmenter.policy.ir import (
    Action,
    CidrPeer,
    CidrRole,
    DnsTarget,
    Evidence,
    Peer,
    PodPeer,
    Policy,
    PolicySet,
    Port,
    Rule,
    Selector,
    Tier,
    host_cidr,
)
from segmenter.policy.selectors import SelectorChooser, UnselectableWorkload

COMPLIANCE_TIER = "segmenter-compliance"
COMPLIANCE_TIER_ORDER = 100.0
WORKLOAD_POLICY_ORDER = 500.0
DEFAULT_DENY_ORDER = 10000.0

@dataclass
class _RuleAcc:
    ports: set[Port] = field(default_factory=set)
    flows: int = 0
    first: float | None = None
    last: float | None = None
    reasons: set[str] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)
    sampled: bool = False

    def add(self, port: Port, flows: int, first: float | None, last: float | None,
            reason: str) -> None:
        self.ports.add(port)
        self.flows += flows
        self.add_times(first, last)
        self.reasons.add(reason)

    def add_times(self, first: float | None, last: float | None) -> None:
        if first is not None:
            self.first = first if self.first is None else min(self.first, first)
        if last is not None:
            self.last = last if self.last is None else max(self.last, last)


def _port(entry: dict[str, Any]) -> Port:
    transport = Transport.parse(str(entry.get("protocol", "TCP")))
    number = entry.get("port")
    return Port(transport, int(number) if number is not None else None)


class Lowering:
    """Builds peers, selectors and rules for one plan."""

    def __init__(self, graph: nx.DiGraph, plan: Plan, inventory: Inventory,
                 dns: DnsTarget | None, options: CompileOptions):
        self.options = options
        self.blocks = [(ipaddress.ip_network(b.cidr), [ipaddress.ip_network(e) for e in b.excepts],
                        b) for b in options.external_cidrs]
        self.graph = graph
        self.plan = plan
        self.inventory = inventory
        self.dns = dns
        self.chooser = SelectorChooser(inventory)
        self.errors: list[str] = []
        self.policed = set(plan.policed)
        self._selectors: dict[str, tuple[Selector, str]] = {}
        self._peers: dict[str, tuple[Peer, ...]] = {}
        self._ports: dict[tuple[Any, Any], Port] = {}
        # Entry addresses after which kube-proxy SNATs the client: node addresses (NodePort)
        # and load-balancer / external IPs of Services.
        self._node_peers = tuple(dict.fromkeys(
            CidrPeer(host_cidr(a), CidrRole.NODE, (), dns1123(f"{n.name}-{a}"))
            for n in sorted(inventory.nodes, key=lambda n: n.name) for a in n.addresses))
        self._snat_entries = {a for n in inventory.nodes for a in n.addresses} | {
            ip for s in inventory.services for ip in (*s.load_balancer_ips, *s.external_ips)}

    def selector(self, node: str) -> tuple[Selector, str]:
        cached = self._selectors.get(node)
        if cached is None:
            cached = self._selectors[node] = self._selector(node)
        return cached

    def _selector(self, node: str) -> tuple[Selector, str]:
        attrs = self.graph.nodes[node]
        try:
            choice = self.chooser.choose(WorkloadRef.parse(node),
                                         Labels.of(attrs.get("labels") or {}))
        except UnselectableWorkload as exc:
            self.errors.append(str(exc))
            return Selector(Labels.of(attrs.get("labels") or {})), ""
        return Selector(choice.labels), choice.note

    def peers(self, node: str) -> tuple[Peer, ...]:
        cached = self._peers.get(node)
        if cached is None:
            cached = self._peers[node] = self._peers_of(node)
        return cached

    def _peers_of(self, node: str) -> tuple[Peer, ...]:
        attrs = self.graph.nodes[node]
        kind = attrs.get("kind")
        if kind == "workload" and not attrs.get("host_network"):
            return (PodPeer(str(attrs["namespace"]), self.selector(node)[0]),)
        role = {"node": CidrRole.NODE, "apiserver": CidrRole.APISERVER}.get(
            str(kind), CidrRole.EXTERNAL)
        addresses = sorted(attrs.get("addresses") or [])
        if kind == "workload":
            # hostNetwork pods are their nodes' addresses to the CNI (policy-semantics.md §1.7).
            role = CidrRole.NODE
            addresses = sorted(self.host_addresses(node))
            if not addresses:
                self.errors.append(f"{node} uses hostNetwork and the inventory has no address "
                                   "for its pods: its flows cannot be allowed exactly")
        if not addresses and kind == "external":
            addresses = [node.split(":", 1)[1]]
        names = sorted(attrs.get("dns_names") or [])
        out: list[CidrPeer] = []
        cidrs = attrs.get("cidrs") or []
        if kind == "external" and cidrs and not self.blocks:
            # A named set of one DNS name's addresses: the graph's exact CIDR cover of them.
            label = dns1123(names[0] if names else str(attrs.get("label") or node))
            return tuple(dict.fromkeys(CidrPeer(str(c), role, (), label, tuple(names))
                                       for c in sorted(cidrs)))
        for address in addresses:
            block = self.block_of(address) if role is CidrRole.EXTERNAL else None
            if block is not None:
                out.append(CidrPeer(block.cidr, role, block.excepts, block.name))
                continue
            label = names[0] if names and role is CidrRole.EXTERNAL else address
            if role is not CidrRole.EXTERNAL:
                label = f"{attrs.get('label') or kind}-{address}"
            out.append(CidrPeer(host_cidr(address), role, (), dns1123(label),
                                tuple(names) if role is CidrRole.EXTERNAL else ()))
        return tuple(dict.fromkeys(out))

    def host_addresses(self, node: str) -> set[str]:
        """Addresses of a hostNetwork workload: its pods' IPs (its nodes' addresses)."""
        ref = WorkloadRef.parse(node)
        return {ip for pod in self.inventory.pods if pod.owner == ref for ip in pod.ips}

    def block_of(self, address: str) -> ExternalBlock | None:
        """The configured aggregate holding ``address`` (outside its excepts), if any."""
        ip = ipaddress.ip_address(address)
        for net, excepts, block in self.blocks:
            if ip.version == net.version and ip in net and not any(ip in e for e in excepts):
                return block
        return None

    def zone_requirements(self, node: str) -> tuple[str, tuple[str, ...]]:
        zones = []
        reqs: set[str] = set()
        for scope in self.plan.classes:
            zone = scope.zone_of(node)
            zones.append(f"{scope.data_class}: {zone}")
            reqs.update(citations(scope.framework, zone))
        return "; ".join(zones), tuple(sorted(reqs))

    def workload_rules(self, node: str, requirements: tuple[str, ...] = ()) -> tuple[
            tuple[Rule, ...], tuple[Rule, ...]]:
        # Accumulate per peer *node* first (string keys hash cheaply), then merge the nodes that
        # share a peer: hashing the nested frozen peers per port entry dominated large plans.
        ingress = self._merge({client: (data, f"observed from {client}")
                               for client, _, data in self.graph.in_edges(node, data=True)})
        self._add_snat_sources(node, ingress)
        egress = self._merge({server: (data, f"observed to {server}")
                              for _, server, data in self.graph.out_edges(node, data=True)})
        if self.dns is not None:
            for peer in self.dns.peers:
                for port in self.dns.ports:
                    egress[peer].add(port, 0, None, None, self.dns.description)
        ranges = self.options.port_ranges
        return (_rules(ingress, Action.ALLOW, requirements, ranges),
                _rules(egress, Action.ALLOW, requirements, ranges))

    def _merge(self, edges: dict[str, tuple[dict[str, Any], str]]) -> defaultdict[Peer,
                                                                                   _RuleAcc]:
        acc: defaultdict[Peer, _RuleAcc] = defaultdict(_RuleAcc)
        for other, (data, reason) in edges.items():
            item = _RuleAcc()
            for entry in data.get("ports", []):
                item.add(self.port(entry), int(entry.get("flows", 0)), entry.get("first_seen"),
                         entry.get("last_seen"), reason)
                item.sources.update(entry.get("sources") or ())
                item.sampled = item.sampled or bool(entry.get("sampled"))
            for peer in self.peers(other):
                target = acc[peer]
                target.sources |= item.sources
                target.sampled = target.sampled or item.sampled
                if not target.ports:
                    acc[peer] = _RuleAcc(set(item.ports), item.flows, item.first, item.last,
                                         set(item.reasons), target.sources, target.sampled)
                    continue
                for port in item.ports:
                    target.add(port, 0, None, None, reason)
                target.flows += item.flows
                target.add_times(item.first, item.last)
        return acc

    def _add_snat_sources(self, node: str, ingress: defaultdict[Peer, _RuleAcc]) -> None:
        """External clients that came in through a NodePort or a LoadBalancer reach the pod
        from a node address: kube-proxy SNATs them under externalTrafficPolicy: Cluster, the
        default (policy-semantics.md §1.5). Allow the nodes on those ports too."""
        if not self._snat_entries:
            return
        for client, _, data in self.graph.in_edges(node, data=True):
            if self.graph.nodes[client].get("kind") != "external":
                continue
            for entry in data.get("ports", []):
                if not set(entry.get("via_addresses") or ()) & self._snat_entries:
                    continue
                for peer in self._node_peers:
                    ingress[peer].add(self.port(entry), 0, entry.get("first_seen"),
                                      entry.get("last_seen"),
                                      f"{client} through a NodePort/LoadBalancer: SNAT to a node "
                                      "address (externalTrafficPolicy: Cluster)")

    def port(self, entry: dict[str, Any]) -> Port:
        key = (entry.get("protocol", "TCP"), entry.get("port"))
        cached = self._ports.get(key)
        if cached is None:
            cached = self._ports[key] = _port(entry)
        return cached


def _rules(acc: dict[Peer, _RuleAcc], action: Action, requirements: tuple[str, ...],
           port_ranges: bool) -> tuple[Rule, ...]:
    rules = []
    for peer in sorted(acc, key=_peer_key):
        item = acc[peer]
        ports = fold_port_ranges(item.ports) if port_ranges else item.ports
        rules.append(Rule(action, (peer,), tuple(sorted(ports, key=_port_key)),
                          Evidence(item.flows, item.first, item.last,
                                   "; ".join(sorted(item.reasons)), requirements,
                                   tuple(sorted(item.sources)), item.sampled)))
    return tuple(rules)


def fold_port_ranges(ports: Iterable[Port], minimum: int = 3) -> set[Port]:
    """Fold runs of ``minimum`` or more consecutive single ports into one ``endPort`` range.

    The range is exactly the observed ports, nothing more. (A CNI without endPort support opens
    only the first port of a range, policy-semantics.md tricky case 20: hence opt-in.)

    >>> from segmenter.model import Transport as T
    >>> folded = fold_port_ranges({Port(T.TCP, p) for p in (80, 81, 82, 90)})
    >>> sorted((p.port, p.end_port) for p in folded)
    [(80, 82), (90, None)]
    """
    out: set[Port] = set()
    singles: dict[Transport, list[int]] = defaultdict(list)
    for port in ports:
        if port.port is None or port.end_port is not None:
            out.add(port)
        else:
            singles[port.transport].append(port.port)
    for transport, numbers in singles.items():
        run: list[int] = []
        for number in [*sorted(set(numbers)), -1]:
            if run and number == run[-1] + 1:
                run.append(number)
                continue
            if len(run) >= minimum:
                out.add(Port(transport, run[0], run[-1]))
            else:
                out.update(Port(transport, n) for n in run)
            run = [number]
    return out


def _peer_key(peer: Peer) -> tuple[Any, ...]:
    if isinstance(peer, PodPeer):
        return (0, peer.namespace, peer.pods.labels.items)
    return (1, peer.role.value, peer.cidr)


def _port_key(port: Port) -> tuple[str, int, int]:
    return (port.transport.value, port.port or 0, port.end_port or 0)


def lower(graph: nx.DiGraph, plan: Plan, inventory: Inventory, *,
          dns: DnsTarget | None = None, find_dns: bool = True, guardrails: bool = True,
          options: CompileOptions | None = None) -> PolicySet:
    """Compile ``plan`` into the policy IR.

    Every policed workload may reach the cluster DNS resolver: ``dns``, or, when it is None and
    ``find_dns`` is true (the default), the one :func:`~segmenter.policy.dns.detect_dns` finds
    in the inventory and the graph. ``find_dns=False`` with no ``dns`` allows no DNS.

    Raises:
        UnsupportedError: a workload cannot be selected exactly by stable labels.
    """
    if dns is None and find_dns:
        dns = detect_dns(graph, inventory)
    with no_gc():
        policy_set = _lower(graph, plan, inventory, dns=dns, guardrails=guardrails,
                            options=options)
    if dns is None and find_dns and plan.policed:
        policy_set = dataclasses.replace(policy_set, notes=(
            *policy_set.notes,
            "no cluster DNS found in the inventory (kube-system/kube-dns, k8s-app=kube-dns, "
            "OpenShift DNS): the policies allow no DNS egress; add the resolver to the "
            "inventory or allow it by hand"))
    return policy_set


def _lower(graph: nx.DiGraph, plan: Plan, inventory: Inventory, *, dns: DnsTarget | None,
           guardrails: bool, options: CompileOptions | None) -> PolicySet:
    low = Lowering(graph, plan, inventory, dns, options or CompileOptions())
    policies: list[Policy] = []
    namespaces: set[str] = set()
    used_names: dict[tuple[str, str], str] = {}
    rules_of: dict[str, tuple[tuple[Rule, ...], tuple[Rule, ...]]] = {}
    for node in plan.policed:
        attrs = graph.nodes[node]
        namespace = str(attrs["namespace"])
        namespaces.add(namespace)
        target, note = low.selector(node)
        zone, reqs = low.zone_requirements(node)
        ingress, egress = low.workload_rules(node, reqs)
        rules_of[node] = (ingress, egress)
        name = _unique_name(used_names, namespace, f"allow-{dns1123(str(attrs['name']), 56)}",
                            node)
        policies.append(Policy(
            name=name, namespace=namespace, target=target, ingress=ingress, egress=egress,
            order=WORKLOAD_POLICY_ORDER,
            description=f"Observed traffic of {node}; everything else is denied by default-deny",
            zone=zone, requirements=reqs, selector_note=note))
    frameworks = {scope.framework for scope in plan.classes}
    deny_reqs = tuple(sorted({r for f in frameworks
                              for r in citations(f, PolicyRole.DEFAULT_DENY)}))
    for namespace in sorted(namespaces):
        policies.append(Policy(
            name=_unique_name(used_names, namespace, "default-deny", "default-deny"),
            namespace=namespace, target=Selector(), ingress=(), egress=(),
            order=DEFAULT_DENY_ORDER,
            description=f"Deny all ingress and egress in {namespace} not allowed by another policy",
            zone="namespace default", requirements=deny_reqs))
    if low.errors:
        raise UnsupportedError(sorted(set(low.errors)), dialect="policy IR")

    guards: list[Policy] = []
    tiers: tuple[Tier, ...] = ()
    if guardrails and plan.classes:
        tiers = (Tier(COMPLIANCE_TIER, COMPLIANCE_TIER_ORDER,
                      "Zone guardrails around restricted zones, evaluated before the default "
                      "tier"),)
        order = COMPLIANCE_TIER_ORDER
        for scope in plan.classes:
            for member in scope.members(Zone.RESTRICTED):
                node = member.node
                ingress, egress = rules_of[node]
                attrs = graph.nodes[node]
                target, _ = low.selector(node)
                reqs = citations(scope.framework, PolicyRole.RESTRICTED)
                guards.append(Policy(
                    name=_unique_name(used_names, "", dns1123(
                        f"{scope.data_class}-{attrs['namespace']}-{attrs['name']}", 200), node),
                    namespace=None,
                    members=(PodPeer(str(attrs["namespace"]), target),),
                    ingress=_guard(ingress, scope.data_class, "into"),
                    egress=_guard(egress, scope.data_class, "out of"),
                    tier=COMPLIANCE_TIER, order=order,
                    description=(f"Restricted {scope.data_class} zone boundary for {node}: "
                                 "planned flows pass to the application policies; everything "
                                 "else is logged and denied"),
                    zone=f"{scope.data_class}: restricted", requirements=reqs))
                order += 1
    return PolicySet(tuple(policies), tuple(guards), tiers, plan.notes)


def _guard(rules: Iterable[Rule], data_class: str, way: str) -> tuple[Rule, ...]:
    passes = tuple(Rule(Action.PASS, r.peers, r.ports, r.evidence) for r in rules)
    audit = Evidence(reason=f"audit: unplanned traffic {way} the restricted {data_class} zone")
    return (*passes, Rule(Action.LOG, evidence=audit), Rule(Action.DENY, evidence=audit))


def _unique_name(used: dict[tuple[str, str], str], namespace: str, name: str, owner: str) -> str:
    candidate = name
    index = 2
    while (namespace, candidate) in used and used[(namespace, candidate)] != owner:
        candidate = f"{name[:58]}-{index}"
        index += 1
    used[(namespace, candidate)] = owner
    return candidate
