"""Finding the cluster's DNS resolver, whatever it is (policy-semantics.md §1.8).

- CoreDNS / kube-dns pods behind ``kube-system/kube-dns`` (label ``k8s-app: kube-dns``), on the
  ports the pods declare (53/UDP ``dns``, 53/TCP ``dns-tcp``; OpenShift uses 5353);
- OpenShift's ``openshift-dns`` pods (``dns.operator.openshift.io/daemonset-dns: default``);
- NodeLocal DNSCache and cloud resolvers on link-local addresses (169.254.0.0/16), seen in the
  capture as DNS traffic to such an address: allowed by ``ipBlock``, together with the kube-dns
  ClusterIP, where NodeLocal DNSCache also listens in iptables mode (tricky case 18).
"""

from __future__ import annotations

import ipaddress

import networkx as nx

from segmenter.cluster.dns import dns_service_ips, dns_workload
from segmenter.model import Inventory, Pod, Transport
from segmenter.policy.ir import (
    CidrPeer,
    CidrRole,
    DnsTarget,
    Peer,
    PodPeer,
    Port,
    Selector,
    host_cidr,
)
from segmenter.policy.selectors import SelectorChooser, UnselectableWorkload

DNS_PORTS = (53, 5353)
_LINK_LOCAL = ipaddress.ip_network("169.254.0.0/16")


def dns_pods(inventory: Inventory) -> list[Pod]:
    """Pods of the workload that serves cluster DNS (``inventory.dns_workload``: the kube-dns
    Service's backend, else the well-known CoreDNS / OpenShift labels)."""
    ref = dns_workload(inventory)
    return [p for p in inventory.pods if p.owner == ref] if ref is not None else []


def _declared_dns_ports(pods: list[Pod]) -> set[Port]:
    return {
        Port(cport.protocol, cport.port)
        for pod in pods for cport in pod.ports
        if (cport.port in DNS_PORTS or (cport.name or "").startswith("dns"))
        and cport.protocol in (Transport.UDP, Transport.TCP)
    }


def _address_peer(address: str) -> CidrPeer:
    return CidrPeer(host_cidr(address), CidrRole.DNS, (),
                    f"dns-{address.replace('.', '-').replace(':', '-')}")


def resolving_workloads(graph: nx.DiGraph, inventory: Inventory) -> set[str]:
    """The workloads seen resolving names: an edge on a DNS port (UDP or TCP) to the cluster
    DNS workload (its Service or pods, NodeLocal DNSCache which the graph names by it), or to a
    link-local resolver address (a cloud resolver, NodeLocal DNSCache); a declared flow there
    counts too (it is an edge of the graph)."""
    ref = dns_workload(inventory)
    resolvers = {n for n, a in graph.nodes(data=True) if a.get("cluster_dns")}
    if ref is not None:
        resolvers.add(ref.id)
    service_ips = set(dns_service_ips(inventory))
    # Only edges into a resolver or to an address outside the pod network can be lookups (the
    # graph names the kube-dns ClusterIP and NodeLocal DNSCache by the DNS workload).
    servers = resolvers | {n for n, a in graph.nodes(data=True)
                           if a.get("kind") in {"external", "node"}}
    out: set[str] = set()
    for client, server, data in graph.in_edges(sorted(servers & set(graph)), data=True):
        if client in out:
            continue
        attrs = graph.nodes[server]
        for entry in data.get("ports", []):
            if entry.get("port") not in DNS_PORTS or entry.get("protocol") not in ("UDP", "TCP"):
                continue
            addresses = [*(entry.get("via_addresses") or [])]
            if attrs.get("kind") in {"external", "node"}:
                addresses += list(attrs.get("addresses") or [])
            if server in resolvers or any(
                    a in service_ips or _is_link_local(a) for a in addresses):
                out.add(client)
                break
    return out


def _is_link_local(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.version == 4 and ip in _LINK_LOCAL


def detect_dns(graph: nx.DiGraph, inventory: Inventory) -> DnsTarget | None:
    """The DNS peers and ports every policed workload may reach; None when there is none."""
    peers: list[Peer] = []
    found: list[str] = []
    every = dns_pods(inventory)
    pods = [p for p in every if not p.host_network]
    host_network = [p for p in every if p.host_network]
    ports = _declared_dns_ports(every)
    if host_network:
        # DNS pods on the host network are node addresses to the CNI (policy-semantics.md
        # §1.7): allow them by ipBlock, and the kube-dns ClusterIP that fronts them.
        addresses = {ip for p in host_network for ip in p.ips} | set(dns_service_ips(inventory))
        peers.extend(_address_peer(a) for a in sorted(addresses))
        found.append("hostNetwork DNS pods " + ", ".join(sorted({p.owner.id
                                                                 for p in host_network})))
    if pods:
        chooser = SelectorChooser(inventory)
        for owner in sorted({p.owner for p in pods}):
            try:
                choice = chooser.choose(owner)
            except UnselectableWorkload:
                continue
            peers.append(PodPeer(owner.namespace, Selector(choice.labels)))
            found.append(owner.id)
    link_local: set[str] = set()
    for _, server, data in graph.edges(data=True):
        attrs = graph.nodes[server]
        dns_ports = [p for p in data.get("ports", []) if p.get("port") in DNS_PORTS]
        if not dns_ports:
            continue
        # The graph names NodeLocal DNSCache traffic by the DNS workload; the address the pod
        # actually sent to is kept in `via_addresses`. Cloud resolvers stay external/node nodes.
        candidates = [a for p in dns_ports for a in p.get("via_addresses") or []]
        if attrs.get("kind") in {"external", "node"}:
            candidates += list(attrs.get("addresses") or [])
        for address in candidates:
            ip = ipaddress.ip_address(address)
            if ip.version == 4 and ip in _LINK_LOCAL:
                link_local.add(address)
    if link_local:
        link_local.update(ip for ip in dns_service_ips(inventory) if ":" not in ip)
        peers.extend(_address_peer(a) for a in sorted(link_local))
        found.append("node-local/cloud resolver " + ", ".join(sorted(link_local)))
    if not peers:
        return None
    for transport in (Transport.UDP, Transport.TCP):
        if not any(p.transport is transport for p in ports):
            ports.add(Port(transport, 53))
    ordered = tuple(sorted(ports, key=lambda p: (p.transport.value, p.port or 0)))
    return DnsTarget(tuple(dict.fromkeys(peers)), ordered, "cluster DNS: " + "; ".join(found))
