"""Semantic diff: what connections change between two policy sets.

With an inventory, every observed flow is evaluated against both sides with the project's
evaluator (:func:`segmenter.analysis.verify.verify_flows`), and every ordered pair of workloads
(one pod each; at most ``max_workloads``, reported when capped) is probed on every (protocol,
port) that appears in either side's rules or in the flows, to list the connections newly
allowed and newly denied.

Every workload is also probed, in both directions, against every peer that is not a pod:
the nodes' addresses, the API server's, the external addresses the flows show, an address
inside and one just outside every CIDR either side names (ipBlocks and their excepts, Calico
nets and network sets, Cilium CIDRs), and the internet (an IPv4 and an IPv6 address): a rule
widened from ``203.0.113.10/32`` to ``0.0.0.0/0`` shows as newly allowed destinations."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from segmenter.analysis.diff.structural import diff_policies
from segmenter.analysis.probes import INTERNET_ADDRESSES, probe_ports, representative_pods
from segmenter.analysis.verify import EndpointFinder, verify_flows
from segmenter.evaluate import EvalEndpoint, PolicyEngine
from segmenter.evaluate.model import IPNetwork
from segmenter.model import APISERVER_ID, Flow, Inventory, NodeId, NodeKind, Transport
from segmenter.targets import kind_of

DEFAULT_MAX_WORKLOADS: Final = 200



@dataclass(frozen=True)
class FlowChange:
    """Observed flows (same client, server, protocol and port) whose verdict changes."""

    client: str
    server: str
    transport: str
    port: int | None
    flows: int
    allowed_before: bool
    allowed_after: bool
    before: str
    after: str


@dataclass(frozen=True)
class ReachChange:
    """A workload-to-workload connection on one (protocol, port) that changes verdict."""

    source: str
    destination: str
    transport: str
    port: int | None
    allowed_before: bool
    allowed_after: bool
    before: str
    after: str


@dataclass(frozen=True)
class SemanticDiff:
    enforcement: str
    flow_changes: tuple[FlowChange, ...] = ()
    reach_changes: tuple[ReachChange, ...] = ()
    flows_checked: int = 0
    workloads_total: int = 0
    workloads_checked: int = 0
    probes: tuple[tuple[str, int | None], ...] = ()
    notes: tuple[str, ...] = ()
    # Peers that are not pods (nodes, the API server, external addresses), as "id (what)".
    others: tuple[str, ...] = ()

    @property
    def capped(self) -> bool:
        return self.workloads_checked < self.workloads_total

    @property
    def has_changes(self) -> bool:
        return bool(self.flow_changes or self.reach_changes)


def _affected(
    old: Sequence[Mapping[str, Any]],
    new: Sequence[Mapping[str, Any]],
    endpoints: Sequence[Any],
    namespaces: Mapping[str, Any],
    enforcement: str,
) -> tuple[set[int], set[int]] | None:
    """Indexes of ``endpoints`` whose egress, and whose ingress, a changed policy selects.

    A direction's decision depends only on the policies that select the endpoint for it, so a
    connection can change verdict only if a changed policy (its OLD or NEW version) selects the
    source for egress or the destination for ingress. ``None`` (check every pair) when
    something else changed: tiers, network sets, namespaces or kinds this does not know.
    """
    structural = diff_policies(old, new)
    keys = [*(a.key for a in structural.added), *(r.key for r in structural.removed),
            *(c.key for c in structural.changed)]
    if any(not k.kind.endswith("Policy") or kind_of(
            {"apiVersion": f"{k.group}/v", "kind": k.kind}) is None for k in keys):
        return None
    tiers = [d for d in old if d.get("kind") == "Tier" and kind_of(d) is not None]
    before = [*(r.manifest for r in structural.removed), *(c.old for c in structural.changed)]
    after = [*(a.manifest for a in structural.added), *(c.new for c in structural.changed)]
    engines = [PolicyEngine.from_manifests([*tiers, *docs], namespaces=namespaces,
                                           enforcement=enforcement) for docs in (before, after)]
    egress = {i for i, ep in enumerate(endpoints)
              if any(e.policies_for(ep, "egress") for e in engines)}
    ingress = {i for i, ep in enumerate(endpoints)
               if any(e.policies_for(ep, "ingress") for e in engines)}
    return egress, ingress


def _host(value: int, version: int) -> str:
    return str(ipaddress.ip_address(value) if version == 4 else ipaddress.IPv6Address(value))


def cidr_representatives(networks: Iterable[IPNetwork]) -> list[tuple[str, str]]:
    """(address, what it stands for): for every network, one address inside it and outside
    every smaller network listed within it (an except), and one just outside it.

    >>> from ipaddress import ip_network as net
    >>> cidr_representatives([net("203.0.113.10/32")])
    [('203.0.113.10', 'inside 203.0.113.10/32'), ('203.0.113.9', 'just outside 203.0.113.10/32')]
    """
    nets = sorted(set(networks), key=lambda n: (n.version, int(n.network_address), n.prefixlen))
    out: list[tuple[str, str]] = []
    for network in nets:
        first, last = int(network.network_address), int(network.broadcast_address)
        inner = sorted((int(n.network_address), int(n.broadcast_address)) for n in nets
                       if n.version == network.version and n != network and n.prefixlen >
                       network.prefixlen and n.subnet_of(network))  # type: ignore[arg-type]
        # A host address: skip the network address of blocks wider than /31 (/127).
        candidate = first + 1 if network.num_addresses > 2 else first
        for low, high in inner:
            if low <= candidate <= high:
                candidate = high + 1
        if candidate <= last:
            out.append((_host(candidate, network.version), f"inside {network}"))
        top = (1 << network.max_prefixlen) - 1
        if first > 0:
            out.append((_host(first - 1, network.version), f"just outside {network}"))
        elif last < top:
            out.append((_host(last + 1, network.version), f"just outside {network}"))
    return out


def other_peers(inventory: Inventory, finder: EndpointFinder, networks: Iterable[IPNetwork],
                observed: Mapping[str, str]) -> list[tuple[str, EvalEndpoint]]:
    """Every peer that is not a pod, as ("id (what)", endpoint): node addresses, the API
    server's, the ``observed`` external addresses (node id -> address), representatives of
    every CIDR (:func:`cidr_representatives`) and the internet, one endpoint per address."""
    found: dict[str, tuple[str, EvalEndpoint]] = {}

    def add(address: str, label: str, endpoint: EvalEndpoint) -> None:
        found.setdefault(address, (label, endpoint))

    for node in sorted(inventory.nodes, key=lambda n: n.name):
        for address in node.addresses:
            node_id = NodeId.of_node(node.name)
            add(address, f"{node_id} ({address})",
                EvalEndpoint(ip=address, node=node.name, name=node_id))
    for address in finder.apiserver:
        add(address, f"{APISERVER_ID} ({address})",
            EvalEndpoint(ip=address, name=APISERVER_ID, kube_apiserver=True))
    for node_id, address in sorted(observed.items()):
        add(address, f"{node_id} (observed)", EvalEndpoint(
            ip=address, name=node_id, dns_names=finder.dns_names.get(address, ())))
    for address in INTERNET_ADDRESSES:
        add(address, f"{NodeId.of_external(address)} (the internet)",
            EvalEndpoint(ip=address, name=address))
    for address, what in cidr_representatives(networks):
        node_name = finder.node_of_ip.get(address)
        add(address, f"{NodeId.of_external(address)} ({what})",
            EvalEndpoint(ip=address, node=node_name, name=address))
    return sorted(found.values(), key=lambda item: item[0])


def semantic_diff(
    old: Sequence[Mapping[str, Any]],
    new: Sequence[Mapping[str, Any]],
    inventory: Inventory,
    flows: Sequence[Flow] = (),
    enforcement: str = "kubernetes",
    *,
    max_workloads: int = DEFAULT_MAX_WORKLOADS,
    focus_namespaces: Iterable[str] = (),
) -> SemanticDiff:
    """Which observed flows and which workload-to-workload connections change verdict.

    ``flows`` are evaluated as :func:`segmenter.verify.verify_flows` does. Workload pairs
    (ordered, one representative pod each, hostNetwork pods left out since policy does not
    govern them) are probed on :func:`probe_ports` of both sides plus the flows' ports. Above
    ``max_workloads`` workloads, those in ``focus_namespaces`` come first, then the rest in
    name order; ``workloads_checked < workloads_total`` tells the cap was hit.
    """
    notes: list[str] = []
    flow_changes: list[FlowChange] = []
    flow_probes: set[tuple[Transport, int | None]] = set()
    observed: dict[str, str] = {}
    if flows:
        before = verify_flows(flows, inventory, old, enforcement=enforcement)
        after = verify_flows(flows, inventory, new, enforcement=enforcement)
        groups: dict[tuple[Any, ...], list[Any]] = {}
        for b, a in zip(before, after, strict=True):
            flow_probes.add((b.flow.transport, b.port))
            for node_id, address in ((b.client, b.flow.client), (b.server, b.flow.server)):
                if address is not None and NodeId.parse(node_id).kind is NodeKind.EXTERNAL:
                    observed.setdefault(node_id, address)
            if b.allowed == a.allowed:
                continue
            key = (b.client, b.server, str(b.flow.transport), b.port, b.allowed, a.allowed)
            groups.setdefault(key, [b.verdict.summary(), a.verdict.summary(), 0])[2] += 1
        for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], -1 if k[3] is None else k[3],
                                                 k[4])):
            before_text, after_text, count = groups[key]
            flow_changes.append(FlowChange(key[0], key[1], key[2], key[3], count, key[4],
                                           key[5], before_text, after_text))
    namespaces = {ns.name: ns.labels for ns in inventory.namespaces}
    engines = []
    for side, docs in (("OLD", old), ("NEW", new)):
        engine = PolicyEngine.from_manifests(docs, namespaces=namespaces,
                                             enforcement=enforcement)
        engines.append(engine)
        notes.extend(f"{side}: left out (invalid): {r}" for r in engine.rejected)
        calico_ignored = sum(1 for i in engine.ignored if "not enforced under kubernetes" in i)
        if calico_ignored:
            notes.append(f"{side}: {calico_ignored} Calico object(s) not evaluated under "
                         "kubernetes enforcement (see --enforcement calico)")
    old_engine, new_engine = engines
    probes = probe_ports([*old, *new], inventory, flow_probes)
    reps = representative_pods(inventory)
    focus = set(focus_namespaces)
    order = sorted(reps, key=lambda ref: (ref.namespace not in focus, ref))
    total = len(order)
    chosen = sorted(order[:max_workloads])
    if total > max_workloads:
        notes.append(f"connections checked between {max_workloads} of {total} workloads "
                     f"(capped; changed namespaces first)")
    endpoints = [(ref.id, EndpointFinder.of_pod(reps[ref])) for ref in chosen]
    affected = _affected(old, new, [ep for _, ep in endpoints], namespaces, enforcement)
    reach: list[ReachChange] = []
    for i, (src_id, src) in enumerate(endpoints):
        for j, (dst_id, dst) in enumerate(endpoints):
            if src_id == dst_id:
                continue
            if affected is not None and i not in affected[0] and j not in affected[1]:
                continue  # no changed policy selects src for egress or dst for ingress
            for transport, port in probes:
                was = old_engine.check(src, dst, transport, port)
                now = new_engine.check(src, dst, transport, port)
                if was.allowed != now.allowed:
                    reach.append(ReachChange(src_id, dst_id, str(transport), port, was.allowed,
                                             now.allowed, was.summary(), now.summary()))
    finder = EndpointFinder(inventory)
    others = other_peers(inventory, finder,
                         [*old_engine.networks(), *new_engine.networks()], observed)
    for i, (pod_id, pod) in enumerate(endpoints):
        for label, other in others:
            for outbound in (True, False):
                # A connection out of a pod to something that is not a pod is decided by the
                # pod's egress alone, and one into it by its ingress alone.
                if affected is not None and i not in affected[0 if outbound else 1]:
                    continue
                src, dst = (pod, other) if outbound else (other, pod)
                names = (pod_id, label) if outbound else (label, pod_id)
                for transport, port in probes:
                    was = old_engine.check(src, dst, transport, port)
                    now = new_engine.check(src, dst, transport, port)
                    if was.allowed != now.allowed:
                        reach.append(ReachChange(names[0], names[1], str(transport), port,
                                                 was.allowed, now.allowed, was.summary(),
                                                 now.summary()))
    return SemanticDiff(
        enforcement=enforcement,
        flow_changes=tuple(flow_changes),
        reach_changes=tuple(reach),
        flows_checked=len(flows),
        workloads_total=total,
        workloads_checked=len(chosen),
        probes=tuple((str(t), p) for t, p in probes),
        notes=tuple(notes),
        others=tuple(label for label, _ in others),
    )
