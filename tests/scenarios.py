"""Small hand-built inventories and graphs (graph format: docs/graph-format.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from segmenter.model import (
    ContainerPort,
    Inventory,
    Labels,
    Namespace,
    Pod,
    Service,
    ServicePort,
    Transport,
    Workload,
    WorkloadRef,
)

T0 = 1_764_000_000.0


@dataclass
class Builder:
    """Builds a consistent inventory and graph together."""

    pods: list[Pod] = field(default_factory=list)
    workloads: list[Workload] = field(default_factory=list)
    namespaces: set[str] = field(default_factory=set)
    services: list[Service] = field(default_factory=list)
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)
    _ip: int = 10

    def workload(self, namespace: str, name: str, labels: dict[str, str], *,
                 kind: str = "Deployment", replicas: int = 1,
                 ports: tuple[ContainerPort, ...] = (), annotations: dict[str, str] | None = None,
                 host_network: bool = False) -> str:
        ref = WorkloadRef(namespace, kind, name)
        self.namespaces.add(namespace)
        self.workloads.append(Workload(ref, Labels.of(labels), Labels.of(annotations),
                                       Labels.of(labels), host_network))
        for i in range(replicas):
            self._ip += 1
            pod_labels = dict(labels)
            if kind == "Deployment":
                pod_labels["pod-template-hash"] = "7d9f8c6b5"
            if kind == "StatefulSet":
                pod_labels["statefulset.kubernetes.io/pod-name"] = f"{name}-{i}"
                pod_labels["controller-revision-hash"] = f"{name}-5f6d7"
            self.pods.append(Pod(namespace, f"{name}-{i}", Labels.of(pod_labels),
                                 (f"10.244.{self._ip // 250}.{self._ip % 250}",), ref,
                                 node="worker-1", host_network=host_network, ports=ports,
                                 annotations=Labels.of(annotations)))
        self.graph.add_node(ref.id, kind="workload", namespace=namespace, name=name,
                            workload_kind=kind, labels=dict(labels),
                            annotations=dict(annotations or {}), host_network=host_network,
                            pod_count=replicas, label=f"{namespace}/{name}")
        return ref.id

    def external(self, ip: str, name: str | None = None) -> str:
        node = f"external:{ip}"
        self.graph.add_node(node, kind="external", addresses=[ip],
                            dns_names=[name] if name else [], private=False, label=name or ip)
        return node

    def node(self, name: str, ip: str) -> str:
        node = f"node:{name}"
        self.graph.add_node(node, kind="node", addresses=[ip], label=name)
        return node

    def flow(self, client: str, server: str, port: int | None, protocol: str = "TCP", *,
             flows: int = 3, tls: bool = False) -> None:
        entry = {"protocol": protocol, "port": port, "flows": flows, "packets": flows * 10,
                 "bytes": flows * 1000, "first_seen": T0, "last_seen": T0 + 60, "tls": tls,
                 "via_service": None}
        if self.graph.has_edge(client, server):
            data = self.graph.edges[client, server]
            data["ports"] = sorted([*data["ports"], entry],
                                   key=lambda p: (p["protocol"], p["port"] or 0))
            data["flows"] += flows
        else:
            self.graph.add_edge(client, server, ports=[entry], flows=flows, packets=flows * 10,
                                bytes=flows * 1000, first_seen=T0, last_seen=T0 + 60)

    def inventory(self) -> Inventory:
        nss = tuple(Namespace(n, Labels.of({"kubernetes.io/metadata.name": n}))
                    for n in sorted(self.namespaces))
        return Inventory(namespaces=nss, workloads=tuple(self.workloads),
                         pods=tuple(self.pods), services=tuple(self.services))


def with_dns(b: Builder) -> str:
    dns = b.workload("kube-system", "coredns", {"k8s-app": "kube-dns"},
                     ports=(ContainerPort(53, Transport.UDP, "dns"),
                            ContainerPort(53, Transport.TCP, "dns-tcp"),
                            ContainerPort(9153, Transport.TCP, "metrics")))
    b.services.append(Service("kube-system", "kube-dns", cluster_ips=("10.96.0.10",),
                              selector=Labels.of({"k8s-app": "kube-dns"}),
                              ports=(ServicePort(53, Transport.UDP, "dns", "dns"),
                                     ServicePort(53, Transport.TCP, "dns-tcp", "dns-tcp"))))
    return dns


def two_tier() -> Builder:
    """web -> api -> db(pci), api -> external gateway, a batch job in the same namespace."""
    b = Builder()
    dns = with_dns(b)
    web = b.workload("shop", "web", {"app": "web", "version": "v1"}, replicas=2)
    api = b.workload("payments", "api", {"app": "api", "tier": "backend"})
    db = b.workload("payments", "db", {"app": "db", "tier": "backend"}, kind="StatefulSet")
    report = b.workload("shop", "report", {"app": "report"})
    gw = b.external("203.0.113.10", "api.gateway.example")
    shopper = b.external("198.51.100.20")
    b.flow(shopper, web, 8080)
    b.flow(web, api, 8443)
    b.flow(api, db, 5432)
    b.flow(api, gw, 443, tls=True)
    b.flow(report, web, 8080)
    for client in (web, api, report):
        b.flow(client, dns, 53, "UDP")
    return b


def cross_namespace_labels() -> Builder:
    """Two workloads in one namespace share `app`; only a second label tells them apart."""
    b = Builder()
    with_dns(b)
    a = b.workload("team", "reader", {"app": "ledger", "component": "reader"})
    w = b.workload("team", "writer", {"app": "ledger", "component": "writer"},
                   annotations={"segmenter.io/data-class": "phi"})
    c = b.workload("clinic", "portal", {"app": "portal"})
    b.flow(c, a, 9000)
    b.flow(a, w, 7000)
    b.flow(w, w, 7001)
    return b


def infrastructure_peers() -> Builder:
    """Kubelet probes from a node, the API server after DNAT, NodeLocal DNSCache, an IPv6
    external peer, and both a PCI and a PHI store in one namespace."""
    b = Builder()
    dns = with_dns(b)
    node = b.node("worker-1", "172.18.0.2")
    b.graph.add_node("apiserver", kind="apiserver", addresses=["172.18.0.1"], label="apiserver")
    api = b.workload("clinic", "api", {"app.kubernetes.io/name": "api", "tier": "web"},
                     replicas=2)
    cards = b.workload("clinic", "billing-db", {"app.kubernetes.io/name": "postgresql",
                                                "app": "billing-db"}, kind="StatefulSet",
                       annotations={"segmenter.io/data-class": "pci"})
    records = b.workload("clinic", "records-db", {"app.kubernetes.io/name": "postgresql",
                                                  "app": "records-db"}, kind="StatefulSet",
                         annotations={"segmenter.io/data-class": "phi"})
    v6 = b.external("2001:db8::10", "fhir.example")
    b.flow(node, api, 8080)
    b.flow(api, cards, 5432)
    b.flow(api, records, 5432, tls=True)
    b.flow(api, "apiserver", 6443)
    b.flow(api, v6, 443, tls=True)
    b.flow(api, dns, 53, "UDP")
    b.graph.edges[api, dns]["ports"][0]["via_addresses"] = ["169.254.20.10"]
    return b


SCENARIOS = {"two-tier": two_tier, "shared-app-label": cross_namespace_labels,
             "infrastructure-peers": infrastructure_peers}
