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

from segmenter.model import Inventory, Labels, Pod, Transport, WorkloadRef
from segmenter.policy.ir import CidrPeer, CidrRole, Peer, PodPeer, Port, Selector
from segmenter.policy.lower import DnsTarget
from segmenter.policy.selectors import SelectorChooser, SelectorError

DNS_PORTS = (53, 5353)
_LINK_LOCAL = ipaddress.ip_network("169.254.0.0/16")


def dns_pods(inventory: Inventory) -> list[Pod]:
    """Pods that serve cluster DNS, found by Service, then by well-known labels."""
    for service in inventory.services:
        if (service.namespace, service.name) == ("kube-system", "kube-dns") and service.selector:
            pods = [p for p in inventory.pods
                    if p.namespace == service.namespace and p.labels.matches(service.selector)]
            if pods:
                return pods
    markers = (Labels.of({"k8s-app": "kube-dns"}),
               Labels.of({"dns.operator.openshift.io/daemonset-dns": "default"}))
    return [p for p in inventory.pods if any(p.labels.matches(m) for m in markers)]


def detect_dns(graph: nx.DiGraph, inventory: Inventory) -> DnsTarget | None:
    """The DNS peers and ports every policed workload may reach; None when there is none."""
    peers: list[Peer] = []
    ports: set[Port] = set()
    found: list[str] = []
    every = dns_pods(inventory)
    pods = [p for p in every if not p.host_network]
    host_network = [p for p in every if p.host_network]
    if host_network:
        # DNS pods on the host network are node addresses to the CNI (policy-semantics.md
        # §1.7): allow them by ipBlock, and the kube-dns ClusterIP that fronts them.
        addresses = {ip for p in host_network for ip in p.ips}
        addresses.update(ip for s in inventory.services
                         if (s.namespace, s.name) == ("kube-system", "kube-dns")
                         for ip in s.cluster_ips)
        for address in sorted(addresses):
            prefix = 128 if ":" in address else 32
            peers.append(CidrPeer(f"{address}/{prefix}", CidrRole.DNS, (),
                                  f"dns-{address.replace('.', '-').replace(':', '-')}"))
        found.append("hostNetwork DNS pods " + ", ".join(sorted({p.owner.id
                                                                 for p in host_network})))
        for pod in host_network:
            for cport in pod.ports:
                if (cport.port in DNS_PORTS or (cport.name or "").startswith("dns")) and (
                        cport.protocol in (Transport.UDP, Transport.TCP)):
                    ports.add(Port(cport.protocol, cport.port))
    if pods:
        chooser = SelectorChooser(inventory)
        owners: set[WorkloadRef] = {p.owner for p in pods}
        for owner in sorted(owners):
            try:
                choice = chooser.choose(owner)
            except SelectorError:
                continue
            peers.append(PodPeer(owner.namespace, Selector(choice.labels)))
            found.append(owner.id)
        for pod in pods:
            for cport in pod.ports:
                if (cport.port in DNS_PORTS or (cport.name or "").startswith("dns")) and (
                        cport.protocol in (Transport.UDP, Transport.TCP)):
                    ports.add(Port(cport.protocol, cport.port))
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
        for service in inventory.services:
            if (service.namespace, service.name) == ("kube-system", "kube-dns"):
                link_local.update(ip for ip in service.cluster_ips if ":" not in ip)
        for address in sorted(link_local):
            peers.append(CidrPeer(f"{address}/32", CidrRole.DNS, (),
                                  f"dns-{address.replace('.', '-')}"))
        found.append("node-local/cloud resolver " + ", ".join(sorted(link_local)))
    if not peers:
        return None
    for transport in (Transport.UDP, Transport.TCP):
        if not any(p.transport is transport for p in ports):
            ports.add(Port(transport, 53))
    return DnsTarget(tuple(peers), tuple(sorted(ports, key=lambda p: (p.transport.value,
                                                                      p.port or 0))),
                     "cluster DNS: " + "; ".join(found))
