"""Policy CIDRs that cover a Service ClusterIP: rules that look like they allow (or deny) a
Service and never match its traffic.

kube-proxy (iptables, IPVS, nftables) and eBPF dataplanes (Cilium's socket load balancer,
Calico eBPF) rewrite a ClusterIP to a backend pod before the policy of either end is evaluated
(policy-semantics.md §1.6, tricky case 19): an ``ipBlock``, Calico ``nets``, Cilium
``toCIDR`` or ClusterNetworkPolicy ``networks`` holding a ClusterIP is never matched by
traffic to that Service, under any enforcement. The one exception is NodeLocal DNSCache in
iptables mode, which listens on the kube-dns ClusterIP itself and untracks that traffic, so
that the pod's packets reach it undNATed ("Using NodeLocal DNSCache in Kubernetes Clusters",
kubernetes.io): the cluster DNS ClusterIPs are not flagged when the traffic shows NodeLocal
DNSCache.

:func:`cluster_ip_notes` returns one note per (policy, rule, CIDR) inside the Service range
(declared in ``segmenter.yaml``, or the block around the ClusterIPs:
:mod:`segmenter.graph.ranges`) for ``run``'s self-check and ``verify`` to print.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from segmenter.cluster.dns import dns_service_ips
from segmenter.evaluate import PolicyEngine
from segmenter.graph.ranges import ClusterRanges
from segmenter.graph.resolve import Resolver
from segmenter.model import Flow, Inventory, Resolution
from segmenter.targets import TARGETS, target_of

_SHOWN = 3


def shows_node_local_dns(flows: Iterable[Flow], inventory: Inventory) -> bool:
    """Whether any flow went to NodeLocal DNSCache (its link-local address, port 53)."""
    found = NodeLocalDns(inventory)
    found.add(flows)
    return found.seen


class NodeLocalDns:
    """:func:`shows_node_local_dns`, added up over the chunks of a pass over the flows."""

    def __init__(self, inventory: Inventory, resolver: Resolver | None = None) -> None:
        self.resolver = resolver if resolver is not None else Resolver(inventory)
        self.seen = False

    def add(self, flows: Iterable[Flow]) -> None:
        if self.seen:
            return
        resolve = self.resolver.resolve
        self.seen = any(resolve(f.server, f.server_port, f.transport, f.first_seen).how
                        is Resolution.NODELOCAL_DNS for f in flows
                        if f.server_port == 53 and f.server is not None)


def cluster_ip_notes(manifests: Sequence[Mapping[str, Any]], inventory: Inventory,
                     ranges: ClusterRanges, *, node_local_dns: bool = False) -> list[str]:
    """A note for every CIDR in a policy rule (or a Calico network set) that lies inside the
    cluster's Service range (``ranges``): it can only ever name ClusterIPs, which no traffic
    carries when policy sees it. A wider block that merely holds the Service range (an
    ``0.0.0.0/0``, a ``10.0.0.0/8`` for the corporate network) is not flagged: it means other
    addresses too. The cluster DNS ClusterIPs are exempt when ``node_local_dns`` (the traffic
    shows NodeLocal DNSCache). Sorted."""
    if not ranges.services or not manifests:
        return []
    exempt = {ipaddress.ip_network(ip) for ip in dns_service_ips(inventory)} \
        if node_local_dns else set()
    cluster_ips = [(ipaddress.ip_address(ip), f"{s.namespace}/{s.name}")
                   for s in inventory.services for ip in s.cluster_ips]
    namespaces = {ns.name: ns.labels for ns in inventory.namespaces}
    # Every target whose objects are here compiles them (Kubernetes NetworkPolicy under each).
    targets = {t.name for t in (target_of(doc) for doc in manifests) if t is not None}
    found: set[tuple[str, str, str]] = set()
    for name in sorted(targets):
        engine = PolicyEngine.from_manifests(manifests, namespaces=namespaces,
                                             enforcement=TARGETS[name].name)
        found.update((policy, rule, str(net)) for policy, rule, net in engine.cidr_peers())
    notes = []
    for policy, rule, cidr in sorted(found):
        net = ipaddress.ip_network(cidr)
        inside = [r for r in ranges.services if r.network.version == net.version
                  and net.subnet_of(r.network)]  # type: ignore[arg-type]
        if not inside or net in exempt:
            continue
        services = sorted({name for ip, name in cluster_ips
                           if ip.version == net.version and ip in net})
        held = ("the ClusterIP of " + ", ".join(services[:_SHOWN])
                + (f" and {len(services) - _SHOWN} more" if len(services) > _SHOWN else "")
                if services else "no Service's ClusterIP today")
        where = f"{policy} {rule}".strip()
        notes.append(
            f"{where}: {cidr} lies in the Service range {inside[0]} (it holds {held}) and never "
            "matches: traffic to a Service is DNATed to its pods before any policy sees it; "
            "allow the Service's pods instead")
    return notes
