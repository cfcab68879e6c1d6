"""Small hand-built inventories and graphs (graph format: docs/graph-format.md), made with the
project's one synthetic-cluster builder."""

from __future__ import annotations

from segmenter.config import (
    CompileOptions,
    Config,
    DeclaredFlowDecl,
    EntryPointDecl,
    FlowEnd,
    SensitiveDecl,
    WorkloadMatch,
)
from segmenter.model import Labels, Service, ServicePort, Transport
from segmenter.synthetic import T0, ClusterBuilder, with_dns

__all__ = ["SCENARIOS", "T0", "ClusterBuilder", "cross_namespace_labels", "infrastructure_peers",
           "meant", "two_tier", "with_dns"]


def two_tier() -> ClusterBuilder:
    """web -> api -> db(pci), api -> external gateway, a batch job in the same namespace."""
    b = ClusterBuilder()
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


def cross_namespace_labels() -> ClusterBuilder:
    """Two workloads in one namespace share `app`; only a second label tells them apart."""
    b = ClusterBuilder()
    with_dns(b)
    a = b.workload("team", "reader", {"app": "ledger", "component": "reader"})
    w = b.workload("team", "writer", {"app": "ledger", "component": "writer"},
                   annotations={"segmenter.io/data-class": "phi"})
    c = b.workload("clinic", "portal", {"app": "portal"})
    b.flow(c, a, 9000)
    b.flow(a, w, 7000)
    b.flow(w, w, 7001)
    return b


def infrastructure_peers() -> ClusterBuilder:
    """Kubelet probes from a node, the API server after DNAT, NodeLocal DNSCache, an IPv6
    external peer, and both a PCI and a PHI store in one namespace."""
    b = ClusterBuilder()
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


def meant() -> tuple[ClusterBuilder, Config]:
    """Policies that say what is meant: an ingress-nginx controller and a shop behind a
    LoadBalancer Service (internet entry points found in the inventory), a declared partner
    API (entry point restricted to its block), flows the capture cannot show (a monthly
    settlement into the card store, approved; a failover acquirer), and DNS only where used.

    Returns the builder and the config that declares them (as segmenter.yaml would).
    """
    b = ClusterBuilder()
    dns = with_dns(b)
    ingress = b.workload("ingress-nginx", "ingress-nginx-controller",
                         {"app.kubernetes.io/name": "ingress-nginx",
                          "app.kubernetes.io/component": "controller"}, replicas=2)
    web = b.workload("shop", "web", {"app": "web"}, replicas=2)
    b.services.append(Service("shop", "web", "LoadBalancer", ("10.96.1.10",),
                              selector=Labels.of({"app": "web"}),
                              ports=(ServicePort(80, Transport.TCP, 8080),),
                              load_balancer_ips=("192.0.2.80",)))
    partner_api = b.workload("shop", "partner-api", {"app": "partner-api"})
    api = b.workload("payments", "api", {"app": "api"})
    db = b.workload("payments", "db", {"app": "db"}, kind="StatefulSet")
    b.workload("payments", "settlement", {"app": "settlement"}, kind="CronJob")
    shopper = b.external("198.51.100.20")
    shopper6 = b.external("2001:db8::20")
    partner = b.external("203.0.113.7")
    gateway = b.external("203.0.113.10", "api.gateway.example")
    b.flow(shopper, ingress, 443, tls=True)
    b.flow(shopper6, ingress, 443, tls=True)
    b.flow(shopper, web, 8080)
    b.flow(ingress, web, 8080)
    b.flow(partner, partner_api, 8443, tls=True)
    b.flow(web, api, 8443, tls=True)
    b.flow(api, db, 5432)
    b.flow(api, gateway, 443, tls=True)
    for client in (web, api, ingress):
        b.flow(client, dns, 53, "UDP")
    config = Config(
        sensitive=(SensitiveDecl("pci", Labels.of({"app": "db"}), "payments", reason="cards",
                                 source="test sensitive[0]"),),
        declared_flows=(
            DeclaredFlowDecl(FlowEnd(WorkloadMatch(namespace="payments",
                                                   selector=Labels.of({"app": "settlement"}))),
                             FlowEnd(WorkloadMatch(workload=db)), Transport.TCP, (5432,),
                             "monthly settlement run (1st of the month)",
                             "PCI DSS 1.2.5: settlement reads the day's authorisations",
                             "payments security lead", "test.yaml declared_flows[0]"),
            DeclaredFlowDecl(FlowEnd(WorkloadMatch(workload=api)),
                             FlowEnd(cidr="192.0.2.128/25"), Transport.TCP, (443,),
                             "failover acquirer, used when the gateway is down",
                             source="test.yaml declared_flows[1]"),
        ),
        compile=CompileOptions(entry_points=(
            EntryPointDecl(WorkloadMatch(workload=partner_api), "partner callbacks",
                           ("203.0.113.0/24",), source="test.yaml entry_points[0]"),)))
    return b, config
