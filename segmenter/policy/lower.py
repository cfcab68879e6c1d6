"""Lowering: a plan and its graph become a ``PolicySet`` (the only place zones become rules).

What is allowed is exactly the plan:

- every observed flow between a policed workload and its peer (as the server pod sees the port:
  post-DNAT, ``targetPort``), and every flow segmenter.yaml declares (provenance
  ``declared: <reason>``; :mod:`segmenter.graph.declared`);
- DNS to the cluster resolver for the workloads seen resolving names (a default-deny egress
  without DNS breaks name resolution, policy-semantics.md tricky case 3; DNS to a workload that
  never resolves a name is an exfiltration path), or for every policed workload with
  ``compile.dns_egress: all``;
- on internet entry points (:mod:`segmenter.policy.entry`), the internet minus the cluster's
  ranges in place of the outside clients the capture happened to see, on the ports they used.

Every namespace with a policed workload gets a default deny in both directions, the artefact PCI
DSS 1.3.1/1.3.2 asks to see ("everything else is specifically denied").
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
from segmenter.config import CompileOptions, DnsEgress, ExternalBlock
from segmenter.errors import PlanError, UnsupportedError
from segmenter.gcpause import no_gc
from segmenter.graph.declared import DECLARED, apply_declared
from segmenter.k8s import dns1123
from segmenter.model import Inventory, Labels, Transport, WorkloadRef
from segmenter.planner import Plan, Zone
from segmenter.policy.dns import detect_dns, resolving_workloads
from segmenter.policy.entry import ALL_V4, ALL_V6, EntryPoint, find_entry_points, internal_ranges
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
        self.notes: list[str] = []
        self.policed = set(plan.policed)
        self.ranges = internal_ranges(inventory, options.cluster)
        self.entries, entry_notes = find_entry_points(graph, plan, inventory, options)
        self.notes += entry_notes
        # None: every policed workload may resolve names (compile.dns_egress: all).
        self.resolving = (resolving_workloads(graph, inventory)
                          if options.dns_egress is DnsEgress.USED else None)
        self._selectors: dict[str, tuple[Selector, str]] = {}
        self._peers: dict[tuple[str, tuple[int, ...]], tuple[Peer, ...]] = {}
        self._scopes: dict[str, tuple[int, ...]] = {}
        self._ports: dict[tuple[Any, Any], Port] = {}
        # Entry addresses after which kube-proxy SNATs the client: node addresses (NodePort)
        # and load-balancer / external IPs of Services.
        self._node_peers = tuple(dict.fromkeys(
            CidrPeer(host_cidr(a), CidrRole.NODE, (), dns1123(f"{n.name}-{a}"))
            for n in sorted(inventory.nodes, key=lambda n: n.name) for a in n.addresses))
        self._snat_entries = {a for n in inventory.nodes for a in n.addresses} | {
            ip for s in inventory.services for ip in (*s.load_balancer_ips, *s.external_ips)}
        # A ClusterIP is never an external peer: DNAT hands its traffic to the Service's pods
        # before policy sees it (segmenter.graph.ranges refuses such graphs; one written by an
        # older version, or with another inventory, is refused here).
        self._cluster_ips = {ip: f"{s.namespace}/{s.name}" for s in inventory.services
                             for ip in s.cluster_ips}

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

    def scope(self, policed: str) -> tuple[int, ...]:
        """The configured external blocks that may stand for the peers of ``policed``."""
        cached = self._scopes.get(policed)
        if cached is None:
            namespace = str(self.graph.nodes[policed].get("namespace") or "")
            cached = self._scopes[policed] = tuple(
                i for i, (_, _, block) in enumerate(self.blocks)
                if block.applies_to(policed, namespace))
        return cached

    def peers(self, node: str, scope: tuple[int, ...] = ()) -> tuple[Peer, ...]:
        key = (node, scope)
        cached = self._peers.get(key)
        if cached is None:
            cached = self._peers[key] = self._peers_of(node, scope)
        return cached

    def _peers_of(self, node: str, scope: tuple[int, ...]) -> tuple[Peer, ...]:
        attrs = self.graph.nodes[node]
        kind = attrs.get("kind")
        if kind == "workload" and not attrs.get("host_network"):
            return (PodPeer(str(attrs["namespace"]), self.selector(node)[0]),)
        role = {"node": CidrRole.NODE, "apiserver": CidrRole.APISERVER}.get(
            str(kind), CidrRole.EXTERNAL)
        addresses = sorted(attrs.get("addresses") or [])
        names = sorted(attrs.get("dns_names") or [])
        cidrs = sorted(str(c) for c in attrs.get("cidrs") or [])
        if kind == "external" and attrs.get(DECLARED) and cidrs:
            # A declared address block: the block minus the cluster's ranges inside it.
            return tuple(self.declared_block(c, node) for c in cidrs)
        if kind == "workload":
            # hostNetwork pods are their nodes' addresses to the CNI (policy-semantics.md §1.7).
            role = CidrRole.NODE
            addresses = sorted(self.host_addresses(node))
            if not addresses:
                self.errors.append(f"{node} uses hostNetwork and the inventory has no address "
                                   "for its pods: its flows cannot be allowed exactly")
        if not addresses and kind == "external":
            addresses = [node.split(":", 1)[1]]
        out: list[CidrPeer] = []
        unblocked: list[str] = []
        for address in addresses:
            if role is CidrRole.EXTERNAL and address in self._cluster_ips:
                self.errors.append(f"{node} is the ClusterIP of Service "
                                   f"{self._cluster_ips[address]}, which an ipBlock never "
                                   "matches: build the graph again with this inventory")
                continue
            block = self.block_of(address, names, scope) if role is CidrRole.EXTERNAL else None
            if block is not None:
                out.append(CidrPeer(block.cidr, role, block.excepts, block.name))
            else:
                unblocked.append(address)
        if kind == "external" and cidrs and len(unblocked) == len(addresses):
            # A named set of one DNS name's addresses: the graph's exact CIDR cover of them.
            label = dns1123(names[0] if names else str(attrs.get("label") or node))
            out.extend(CidrPeer(c, role, (), label, tuple(names)) for c in cidrs)
            return tuple(dict.fromkeys(out))
        for address in unblocked:
            label = names[0] if names and role is CidrRole.EXTERNAL else address
            if role is not CidrRole.EXTERNAL:
                label = f"{attrs.get('label') or kind}-{address}"
            out.append(CidrPeer(host_cidr(address), role, (), dns1123(label),
                                tuple(names) if role is CidrRole.EXTERNAL else ()))
        return tuple(dict.fromkeys(out))

    def declared_block(self, cidr: str, node: str) -> CidrPeer:
        """A declared address block outside the cluster, minus the cluster's ranges in it."""
        net = ipaddress.ip_network(cidr)
        inside = self.ranges.holding(net)
        if inside is not None:
            raise PlanError(f"the declared block {cidr} ({node}) lies inside the cluster's range "
                            f"{inside}: name the workloads (`workload` or `selector`) instead")
        return CidrPeer(str(net), CidrRole.EXTERNAL, self.ranges.within(net),
                        dns1123(f"declared-{net}"))

    def internet_peers(self, entry: EntryPoint) -> tuple[CidrPeer, ...]:
        """The internet (or the entry point's declared blocks) minus the cluster's ranges."""
        if not entry.cidrs:
            return (CidrPeer(str(ALL_V4), CidrRole.INTERNET, self.ranges.within(ALL_V4),
                             "internet"),
                    CidrPeer(str(ALL_V6), CidrRole.INTERNET, self.ranges.within(ALL_V6),
                             "internet-v6"))
        out = []
        for cidr in entry.cidrs:
            net = ipaddress.ip_network(cidr)
            inside = self.ranges.holding(net)
            if inside is not None:
                raise PlanError(f"entry point {entry.node}: {cidr} lies inside the cluster's "
                                f"range {inside}, not on the internet")
            out.append(CidrPeer(str(net), CidrRole.INTERNET, self.ranges.within(net),
                                dns1123(f"entry-{net}")))
        return tuple(out)

    def entry_covers(self, entry: EntryPoint, client: str) -> bool:
        """Whether the entry point's peers stand for the outside ``client``."""
        if not entry.cidrs:
            return True
        attrs = self.graph.nodes[client]
        blocks = [ipaddress.ip_network(c) for c in (attrs.get("cidrs") or [])] or [
            ipaddress.ip_network(a) for a in (attrs.get("addresses") or [])]
        allowed = [ipaddress.ip_network(c) for c in entry.cidrs]
        return bool(blocks) and all(
            any(b.version == a.version and b.subnet_of(a) for a in allowed)  # type: ignore[arg-type]
            for b in blocks)

    def host_addresses(self, node: str) -> set[str]:
        """Addresses of a hostNetwork workload: its pods' IPs (its nodes' addresses)."""
        ref = WorkloadRef.parse(node)
        return {ip for pod in self.inventory.pods if pod.owner == ref for ip in pod.ips}

    def block_of(self, address: str, names: list[str] | tuple[str, ...] = (),
                 scope: tuple[int, ...] | None = None) -> ExternalBlock | None:
        """The configured aggregate holding ``address`` (outside its excepts) among the blocks
        of ``scope`` (every block when None) that name a peer known by ``names``, if any."""
        ip = ipaddress.ip_address(address)
        for index in range(len(self.blocks)) if scope is None else scope:
            net, excepts, block = self.blocks[index]
            if (ip.version == net.version and ip in net and not any(ip in e for e in excepts)
                    and block.names_peer(names)):
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

    def uses_dns(self, node: str) -> bool:
        return self.resolving is None or node in self.resolving

    def workload_rules(self, node: str, requirements: tuple[str, ...] = ()) -> tuple[
            tuple[Rule, ...], tuple[Rule, ...]]:
        # Accumulate per peer *node* first (string keys hash cheaply), then merge the nodes that
        # share a peer: hashing the nested frozen peers per port entry dominated large plans.
        scope = self.scope(node) if self.blocks else ()
        clients = {client: data for client, _, data in self.graph.in_edges(node, data=True)}
        entry = self.entries.get(node)
        outside: dict[str, dict[str, Any]] = {}
        if entry is not None:
            # Every outside client says which ports the internet uses; those the entry point's
            # blocks hold are folded into them, the others keep their own address.
            outside = {c: d for c, d in clients.items()
                       if self.graph.nodes[c].get("kind") == "external"}
            for client in sorted(outside):
                if not self.entry_covers(entry, client):
                    self.notes.append(f"{client} reached the entry point {node} from outside its "
                                      f"declared blocks ({', '.join(entry.cidrs)}): allowed by "
                                      "its own address")
            clients = {c: d for c, d in clients.items()
                       if c not in outside or not self.entry_covers(entry, c)}
        ingress = self._merge(clients, "from", scope)
        if entry is not None and outside:
            self._add_internet(entry, outside, ingress)
        self._add_snat_sources(node, ingress)
        egress = self._merge({server: data for _, server, data
                              in self.graph.out_edges(node, data=True)}, "to", scope)
        if self.dns is not None and self.uses_dns(node):
            for peer in self.dns.peers:
                for port in self.dns.ports:
                    egress[peer].add(port, 0, None, None, self.dns.description)
        ranges = self.options.port_ranges
        return (_rules(ingress, Action.ALLOW, requirements, ranges),
                _rules(egress, Action.ALLOW, requirements, ranges))

    def _merge(self, edges: dict[str, dict[str, Any]], way: str, scope: tuple[int, ...]
               ) -> defaultdict[Peer, _RuleAcc]:
        acc: defaultdict[Peer, _RuleAcc] = defaultdict(_RuleAcc)
        for other, data in edges.items():
            item = _RuleAcc()
            observed = f"observed {way} {other}"
            for entry in data.get("ports", []):
                item.add(self.port(entry), int(entry.get("flows", 0)), entry.get("first_seen"),
                         entry.get("last_seen"),
                         _provenance(entry, way, other) if DECLARED in entry else observed)
                item.sources.update(entry.get("sources") or ())
                item.sampled = item.sampled or bool(entry.get("sampled"))
            for peer in self.peers(other, scope):
                target = acc[peer]
                target.sources |= item.sources
                target.sampled = target.sampled or item.sampled
                if not target.ports:
                    acc[peer] = _RuleAcc(set(item.ports), item.flows, item.first, item.last,
                                         set(item.reasons), target.sources, target.sampled)
                    continue
                target.ports.update(item.ports)
                target.reasons.update(item.reasons)
                target.flows += item.flows
                target.add_times(item.first, item.last)
        return acc

    def _add_internet(self, entry: EntryPoint, clients: dict[str, dict[str, Any]],
                      ingress: defaultdict[Peer, _RuleAcc]) -> None:
        """The outside clients of an entry point stand for the internet (or its declared
        blocks): one rule per block, on every port any of them was seen (or declared) using."""
        # Ports: every port any client used, on every block; evidence: each block counts the
        # flows of the clients of its address family.
        ports: set[Port] = set()
        by_family: dict[int, _RuleAcc] = defaultdict(_RuleAcc)
        for client, data in clients.items():
            family = self._family(client)
            for port_entry in data.get("ports", []):
                ports.add(self.port(port_entry))
                by_family[family].add(self.port(port_entry), int(port_entry.get("flows", 0)),
                                      port_entry.get("first_seen"), port_entry.get("last_seen"),
                                      "")
        sample = sorted(clients)
        seen = ", ".join(sample[:3]) + (f" and {len(sample) - 3} more" if len(sample) > 3
                                        else "")
        where = (", ".join(entry.cidrs) if entry.cidrs else "the internet") + (
            " except the cluster's pod, Service and node ranges")
        reason = (f"internet entry point, {entry.reason}: allowed from {where}; the "
                  f"{len(sample)} client(s) seen ({seen}) are a sample of it")
        for peer in self.internet_peers(entry):
            item = by_family[ipaddress.ip_network(peer.cidr).version]
            target = ingress[peer]
            target.ports.update(ports)
            target.reasons.add(reason)
            target.flows += item.flows
            target.add_times(item.first, item.last)

    def _family(self, node: str) -> int:
        """The address family of an outside node (4 unless its addresses are IPv6)."""
        attrs = self.graph.nodes[node]
        for text in [*(attrs.get("cidrs") or []), *(attrs.get("addresses") or [])]:
            return ipaddress.ip_network(text, strict=False).version
        return 4

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


def _provenance(entry: dict[str, Any], way: str, other: str) -> str:
    """Why a port entry is allowed: observed, declared (the reason), or both."""
    declared = entry.get(DECLARED)
    if not declared:
        return f"observed {way} {other}"
    if entry.get("flows"):
        return f"observed {way} {other}; declared: {declared}"
    return f"declared: {declared} ({way} {other})"


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

    The policed workloads seen resolving names (every one with ``compile.dns_egress: all``) may
    reach the cluster DNS resolver: ``dns``, or, when it is None and ``find_dns`` is true (the
    default), the one :func:`~segmenter.policy.dns.detect_dns` finds in the inventory and the
    graph. ``find_dns=False`` with no ``dns`` allows no DNS. The plan's declared flows are put
    into ``graph`` first (in place; a graph read from its file does not hold them).

    Raises:
        UnsupportedError: a workload cannot be selected exactly by stable labels.
        PlanError: a declared entry point or block that cannot stand (matches nothing, lies
            inside the cluster, restricted without a justification).
    """
    apply_declared(graph, plan.declared)
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
    with_declared = ({n for u, v, d in graph.edges(data=True) if d.get(DECLARED)
                      or any(DECLARED in p for p in d.get("ports", [])) for n in (u, v)}
                     if graph.graph.get(DECLARED) else set())
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
        declared = node in with_declared
        entry = low.entries.get(node)
        policies.append(Policy(
            name=name, namespace=namespace, target=target, ingress=ingress, egress=egress,
            order=WORKLOAD_POLICY_ORDER,
            description=f"{'Observed and declared' if declared else 'Observed'} traffic of "
                        f"{node}; everything else is denied by default-deny",
            zone=zone, requirements=reqs, selector_note=note,
            entry_point=_entry_text(entry, ingress) if entry is not None else ""))
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
    notes = [*plan.notes, *low.notes]
    if any(r.peers and isinstance(r.peers[0], CidrPeer) and r.peers[0].role is CidrRole.INTERNET
           for p in policies for r in p.ingress or ()):
        notes.append("internet entry points exclude the cluster's ranges "
                     f"({', '.join(low.ranges.cidrs) or 'none found'}): "
                     + "; ".join(low.ranges.basis))
    if dns is not None and low.resolving is not None:
        silent = sorted(n for n in plan.policed if n not in low.resolving)
        if silent:
            shown = ", ".join(silent[:5]) + (f" and {len(silent) - 5} more" if len(silent) > 5
                                            else "")
            notes.append(f"no DNS egress for {len(silent)} workload(s) seen making no DNS query "
                         f"({shown}); compile.dns_egress: all allows DNS for every workload")

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
    return PolicySet(tuple(policies), tuple(guards), tiers, tuple(dict.fromkeys(notes)))


def _entry_text(entry: EntryPoint, ingress: tuple[Rule, ...]) -> str:
    """The entry point annotation: why, and from where on which ports."""
    ports = sorted({f"{p.transport}/{p.port}" if p.port is not None else str(p.transport)
                    for r in ingress for peer in r.peers[:1]
                    if isinstance(peer, CidrPeer) and peer.role is CidrRole.INTERNET
                    for p in r.ports})
    where = ", ".join(entry.cidrs) if entry.cidrs else "the internet (0.0.0.0/0, ::/0)"
    if not ports:
        return (f"{entry.reason}; no client outside the cluster was seen, so nothing is "
                "allowed from outside")
    return (f"{entry.reason}; allowed from {where} except the cluster's pod, Service and node "
            f"ranges, on {', '.join(ports)}")


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
