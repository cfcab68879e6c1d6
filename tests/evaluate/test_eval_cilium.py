"""Cilium enforcement: the tricky cases of policy-semantics.md §4.10 one by one, then default deny
and ``enableDefaultDeny`` (§4.4), selectors and namespaces (§4.2, §4.3), peers (§4.5), ports
(§4.6), Kubernetes policies as Cilium translates them (§4.8), and what the engine rejects or
leaves out.

Manifests are written here by hand, in the documented CRD shape.
"""

from __future__ import annotations

from typing import Any

import pytest
from eval_helpers import ICMP, TCP, UDP, allowed, ext, match, netpol, pod
from eval_helpers import engine as make_engine

from segmenter.evaluate import EvalEndpoint, PolicyEngine
from segmenter.model import Transport


def engine(*docs: dict[str, Any], **kw: Any) -> PolicyEngine:
    return make_engine(*docs, enforcement="cilium", **kw)


def cnp(name: str = "p", ns: str = "default", **spec: Any) -> dict[str, Any]:
    spec.setdefault("endpointSelector", {})
    return {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def ccnp(name: str = "c", **spec: Any) -> dict[str, Any]:
    spec.setdefault("endpointSelector", {})
    return {"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy",
            "metadata": {"name": name}, "spec": spec}


def sel(**labels: str) -> dict[str, Any]:
    return {"matchLabels": dict(labels)}


def ports(*entries: tuple[str, str], **extra: Any) -> list[dict[str, Any]]:
    return [{"ports": [{"port": p, "protocol": proto} for p, proto in entries], **extra}]


NODE_1 = "node-1"


def host_of(p: EvalEndpoint) -> EvalEndpoint:
    return ext("192.168.0.1", node=p.node)


def remote_node() -> EvalEndpoint:
    return ext("192.168.0.2", node="node-2")


DNS = pod("kube-system", ip="10.244.200.10", labels={"k8s-app": "kube-dns"})


# ------------------------------------------------------------------------------------------------
# §4.10, one test per case


def test_case_1_ingress_one_empty_rule_denies_all_and_an_empty_list_enforces_nothing() -> None:
    web, client = pod(app="web"), pod(app="client")
    deny_all = engine(cnp(endpointSelector=sel(app="web"), ingress=[{}]))
    assert not allowed(deny_all, client, web)
    assert not allowed(deny_all, ext(), web, UDP, 53)
    assert allowed(deny_all, web, client)  # egress untouched
    untouched = engine(cnp(endpointSelector=sel(app="web"), ingress=[],
                           egress=[{"toEntities": ["world"]}]))
    assert allowed(untouched, client, web)
    rejected = engine(cnp(endpointSelector=sel(app="web"), ingress=[]))
    assert allowed(rejected, client, web)
    assert any("at least one" in r for r in rejected.rejected)


def test_case_2_peer_without_namespace_is_pinned_to_the_policy_namespace() -> None:
    api, gateway = pod("shop", app="api"), pod("edge", app="gateway")
    pinned = engine(cnp(ns="shop", endpointSelector=sel(app="api"),
                        ingress=[{"fromEndpoints": [sel(app="gateway")]}]))
    assert not allowed(pinned, gateway, api)
    assert allowed(pinned, pod("shop", app="gateway"), api)
    named = engine(cnp(ns="shop", endpointSelector=sel(app="api"), ingress=[{"fromEndpoints": [
        sel(app="gateway", **{"k8s:io.kubernetes.pod.namespace": "edge"})]}]))
    assert allowed(named, gateway, api)
    assert not allowed(named, pod("shop", app="gateway"), api)


def test_case_3_cidr_rules_never_match_pods_or_nodes() -> None:
    api = pod(app="api")
    e = engine(cnp(endpointSelector=sel(app="api"),
                   ingress=[{"fromCIDRSet": [{"cidr": "10.0.0.0/8"}]}]))
    assert not allowed(e, pod(ip="10.244.3.3", app="client"), api)
    assert not allowed(e, ext("10.1.0.5", node="node-2"), api)
    assert allowed(e, ext("10.99.0.5"), api)  # an address outside the cluster


def test_case_4_knp_ipblock_of_node_ips_does_not_admit_a_host_network_agent() -> None:
    api = pod(app="api", node=NODE_1)
    agent = pod("monitoring", ip="192.168.0.2", host_network=True, node="node-2", app="agent")
    knp = engine(netpol(pod_selector=match(app="api"), types=["Ingress"],
                        ingress=[{"from": [{"ipBlock": {"cidr": "192.168.0.0/24"}}]}]))
    assert not allowed(knp, agent, api)
    entities = engine(cnp(endpointSelector=sel(app="api"),
                          ingress=[{"fromEntities": ["remote-node", "host"]}]))
    assert allowed(entities, agent, api)
    assert not allowed(entities, pod(app="client"), api)


def test_case_5_selectors_on_filtered_labels_select_nothing() -> None:
    db = pod(app="db", **{"pod-template-hash": "7d9f"})
    client = pod(app="client", **{"statefulset.kubernetes.io/pod-name": "client-0"})
    subject = engine(cnp(endpointSelector=sel(**{"pod-template-hash": "7d9f"}), ingress=[{}]))
    assert allowed(subject, client, db)  # the subject stays unrestricted
    peer = engine(cnp(endpointSelector=sel(app="db"), ingress=[{"fromEndpoints": [
        sel(**{"statefulset.kubernetes.io/pod-name": "client-0"})]}]))
    assert not allowed(peer, client, db)
    knp = engine(netpol(pod_selector=match(**{"pod-template-hash": "7d9f"}), types=["Ingress"]))
    assert allowed(knp, client, db)


def test_case_6_deny_beats_allow_across_kinds() -> None:
    web, client = pod(app="web"), pod(app="client")
    e = engine(cnp(endpointSelector=sel(app="web"), ingress=[{
                   "fromEndpoints": [sel(app="client")],
                   "toPorts": ports(("80", "TCP"), ("81", "TCP"))}]),
               ccnp(ingressDeny=[{"fromEndpoints": [sel(app="client")],
                                  "toPorts": ports(("80", "TCP"))}]))
    denied = e.check(client, web, TCP, 80)
    assert not denied.allowed
    assert denied.ingress.policy == "CiliumClusterwideNetworkPolicy c"
    assert denied.ingress.rule == "ingressDeny[0]"
    assert allowed(e, client, web, TCP, 81)
    knp = engine(netpol(pod_selector=match(app="web"), ingress=[{}]),
                 ccnp(ingressDeny=[{"fromEndpoints": [sel(app="client")]}]))
    assert not allowed(knp, client, web)  # a CNP/CCNP deny overrides a KNP allow too


def test_case_7_a_deny_only_policy_makes_every_pod_default_deny() -> None:
    web, client = pod(app="web"), pod("other", app="client")
    deny_only = engine(ccnp(ingressDeny=[{"fromEntities": ["world"]}]))
    assert not allowed(deny_only, ext(), web)
    assert not allowed(deny_only, client, web)  # in-cluster traffic dropped too
    upstream = engine(ccnp(ingressDeny=[{"fromEntities": ["world"]}],
                           ingress=[{"fromEntities": ["all"]}]))
    assert allowed(upstream, client, web)
    assert not allowed(upstream, ext(), web)


def test_case_8_fqdn_needs_the_dns_proxy_rule() -> None:
    app = pod(app="app")
    api = ext("203.0.113.5")
    named = EvalEndpoint(api.ip, dns_names=("api.example.com",))
    fqdn = {"toFQDNs": [{"matchName": "api.example.com"}], "toPorts": ports(("443", "TCP"))}
    to_dns = {"toEndpoints": [sel(**{"k8s:io.kubernetes.pod.namespace": "kube-system",
                                     "k8s-app": "kube-dns"})]}
    plain = engine(cnp(endpointSelector=sel(app="app"), egress=[
        fqdn, {**to_dns, "toPorts": ports(("53", "UDP"))}]))
    assert allowed(plain, app, DNS, UDP, 53)
    assert not allowed(plain, app, named, TCP, 443)
    proxied = engine(cnp(endpointSelector=sel(app="app"), egress=[
        fqdn, {**to_dns, "toPorts": ports(("53", "UDP"), rules={"dns": [{"matchPattern": "*"}]})}]))
    assert allowed(proxied, app, named, TCP, 443)
    assert not allowed(proxied, app, named, TCP, 80)
    assert not allowed(proxied, app, api, TCP, 443)  # the address alone is not the name
    assert not allowed(proxied, app, EvalEndpoint("203.0.113.6", dns_names=("other.example",)),
                       TCP, 443)
    # The proxy only learns names it lets through: a DNS rule for other names is not enough.
    narrow = engine(cnp(endpointSelector=sel(app="app"), egress=[
        fqdn, {**to_dns, "toPorts": ports(("53", "UDP"),
                                          rules={"dns": [{"matchName": "other.example"}]})}]))
    assert not allowed(narrow, app, named, TCP, 443)


def test_case_9_ports_without_a_peer_open_every_destination() -> None:
    app = pod(app="app")
    e = engine(cnp(endpointSelector=sel(app="app"), egress=[{"toPorts": ports(("443", "TCP"))}]))
    assert allowed(e, app, ext(), TCP, 443)
    assert allowed(e, app, pod("other", app="x"), TCP, 443)
    assert allowed(e, app, remote_node(), TCP, 443)
    assert not allowed(e, app, ext(), TCP, 80)


def test_case_10_cluster_entity_is_more_than_pods() -> None:
    web = pod(app="web", node=NODE_1)
    e = engine(cnp(endpointSelector=sel(app="web"), ingress=[{"fromEntities": ["cluster"]}]))
    assert allowed(e, pod("other", app="x"), web)
    assert allowed(e, remote_node(), web)
    assert allowed(e, pod("monitoring", host_network=True, node="node-3"), web)
    assert allowed(e, EvalEndpoint("172.18.0.1", kube_apiserver=True), web)
    assert not allowed(e, ext(), web)


def test_case_11_world_ipv4_is_rejected() -> None:
    e = engine(cnp(endpointSelector=sel(app="web"), egress=[{"toEntities": ["world-ipv4"]}]))
    assert any("unsupported entity 'world-ipv4'" in r for r in e.rejected)
    assert allowed(e, pod(app="web"), ext())  # left out, not evaluated as something else


def test_case_12_knp_egress_only_type_still_enforces_its_ingress_rules() -> None:
    web = pod(app="web")
    doc = netpol(pod_selector=match(app="web"), types=["Egress"],
                 ingress=[{"from": [{"podSelector": match(app="lb")}]}], egress=[{}])
    assert not allowed(engine(doc), pod(app="client"), web)
    assert allowed(engine(doc), pod(app="lb"), web)
    assert allowed(make_engine(doc), pod(app="client"), web)  # Kubernetes ignores them


def test_case_13_ports_are_backend_ports() -> None:
    web, client = pod(app="web"), pod(app="client")
    e = engine(cnp(endpointSelector=sel(app="web"),
                   ingress=[{"fromEndpoints": [{}], "toPorts": ports(("80", "TCP"))}]))
    # The Service maps 80 to targetPort 8080; the engine is given the port the pod sees.
    assert not allowed(e, client, web, TCP, 8080)
    assert allowed(e, client, web, TCP, 80)


def test_case_14_dns_rules_without_default_deny_isolate_nothing() -> None:
    app = pod("shop", app="app")
    e = engine(ccnp(enableDefaultDeny={"ingress": False, "egress": False}, egress=[{
        "toEndpoints": [sel(**{"k8s:io.kubernetes.pod.namespace": "kube-system",
                               "k8s-app": "kube-dns"})],
        "toPorts": ports(("53", "ANY"), rules={"dns": [{"matchName": "a.example"}]})}]))
    assert allowed(e, app, pod("other", app="x"), TCP, 5432)
    assert allowed(e, app, ext(), TCP, 443)
    decision = e.check(app, ext(), TCP, 443).egress
    assert decision.reason.startswith("no deny matched and no selecting rule enables")


def test_case_15_world_is_not_the_ingress_proxy() -> None:
    """Cilium Ingress/Gateway traffic arrives from the ``ingress`` identity. The engine's
    endpoints never carry it (it models no Envoy), so what can be checked is that neither
    `world` nor `ingress` admits an in-cluster source."""
    backend = pod(app="backend", node=NODE_1)
    world = engine(cnp(endpointSelector=sel(app="backend"), ingress=[{"fromEntities": ["world"]}]))
    assert allowed(world, ext(), backend)
    assert not allowed(world, remote_node(), backend)
    proxy = engine(cnp(endpointSelector=sel(app="backend"),
                       ingress=[{"fromEntities": ["ingress"]}]))
    assert not allowed(proxy, ext(), backend)
    assert not allowed(proxy, pod(app="x"), backend)


# ------------------------------------------------------------------------------------------------
# Default deny and enableDefaultDeny (§4.4)


def test_own_node_always_reaches_the_pod() -> None:
    web = pod(app="web", node=NODE_1)
    e = engine(cnp(endpointSelector=sel(app="web"), ingress=[{}]))
    assert allowed(e, host_of(web), web)
    assert not allowed(e, remote_node(), web)
    assert e.check(host_of(web), web, TCP, 80).ingress.reason.startswith("from the pod's own")


def test_enable_default_deny_false_does_not_isolate_but_allows_and_denies() -> None:
    web, client = pod(app="web"), pod(app="client")
    soft = cnp("soft", endpointSelector=sel(app="web"),
               enableDefaultDeny={"ingress": False},
               ingress=[{"fromEndpoints": [sel(app="client")], "toPorts": ports(("80", "TCP"))}],
               ingressDeny=[{"fromEntities": ["world"]}])
    alone = engine(soft)
    assert allowed(alone, pod(app="other"), web)
    assert not allowed(alone, ext(), web)
    hard = cnp("hard", endpointSelector=sel(app="web"), ingress=[{"fromEntities": ["world"],
                                                                  "toPorts": ports(("443",
                                                                                    "TCP"))}])
    both = engine(soft, hard)
    assert allowed(both, client, web, TCP, 80)  # the soft rule's allow counts once isolated
    assert not allowed(both, pod(app="other"), web, TCP, 80)
    assert not allowed(both, ext(), web, TCP, 443)  # the soft rule's deny still wins
    assert both.policies_for(web, "ingress") == ["CiliumNetworkPolicy default/soft",
                                                 "CiliumNetworkPolicy default/hard"]


def test_specs_are_separate_rules_with_their_own_subjects() -> None:
    web, db, client = pod(app="web"), pod(app="db"), pod(app="client")
    doc = cnp()
    del doc["spec"]
    doc["specs"] = [{"endpointSelector": sel(app="web"), "ingress": [{}]},
                    {"endpointSelector": sel(app="db"),
                     "ingress": [{"fromEndpoints": [sel(app="client")]}]}]
    e = engine(doc)
    assert not allowed(e, client, web)
    verdict = e.check(client, db, TCP, 5432)
    assert verdict.allowed and verdict.ingress.rule == "specs[1].ingress[0]"


# ------------------------------------------------------------------------------------------------
# Selectors and namespaces (§4.2, §4.3)


def test_cnp_subject_is_always_its_own_namespace() -> None:
    e = engine(cnp(ns="shop", endpointSelector=sel(**{"k8s:io.kubernetes.pod.namespace": "bank",
                                                      "app": "web"}), ingress=[{}]))
    assert not allowed(e, pod("x", app="c"), pod("shop", app="web"))
    assert allowed(e, pod("x", app="c"), pod("bank", app="web"))


def test_empty_peer_selector_is_the_namespace_in_a_cnp_and_every_pod_in_a_ccnp() -> None:
    web, same, other = pod("shop", app="web"), pod("shop", app="c"), pod("bank", app="c")
    namespaced = engine(cnp(ns="shop", endpointSelector=sel(app="web"),
                            ingress=[{"fromEndpoints": [{}]}]))
    assert allowed(namespaced, same, web)
    assert not allowed(namespaced, other, web)
    cluster = engine(ccnp(endpointSelector=sel(app="web"), ingress=[{"fromEndpoints": [{}]}]))
    assert allowed(cluster, other, web)
    assert not allowed(cluster, ext(), web)  # never a reserved identity
    assert not allowed(cluster, remote_node(), web)


def test_label_sources() -> None:
    web, client = pod(app="web"), pod(app="client")
    for key in ("app", "k8s:app", "any:app"):
        e = engine(cnp(endpointSelector=sel(app="web"),
                       ingress=[{"fromEndpoints": [{"matchLabels": {key: "client"}}]}]))
        assert allowed(e, client, web), key
    container = engine(cnp(endpointSelector=sel(app="web"),
                           ingress=[{"fromEndpoints": [sel(**{"container:app": "client"})]}]))
    assert not allowed(container, client, web)
    reserved = engine(cnp(endpointSelector=sel(app="web"),
                          ingress=[{"fromEndpoints": [sel(**{"reserved:remote-node": ""})]}]))
    assert allowed(reserved, remote_node(), web)
    assert not allowed(reserved, client, web)


def test_namespace_labels_service_account_and_expressions() -> None:
    web = pod("shop", app="web")
    client = pod("bank", app="client", sa="payer")
    e = engine(cnp(ns="shop", endpointSelector=sel(app="web"), ingress=[{"fromEndpoints": [{
        "matchLabels": {"k8s:io.cilium.k8s.namespace.labels.team": "money",
                        "k8s:io.cilium.k8s.policy.serviceaccount": "payer"},
        "matchExpressions": [{"key": "k8s:app", "operator": "In", "values": ["client"]},
                             {"key": "tier", "operator": "DoesNotExist"}]}]}]),
               namespaces={"bank": {"team": "money"}})
    assert allowed(e, client, web)
    assert not allowed(e, pod("bank", app="client"), web)  # the default service account
    assert not allowed(e, pod("bank", app="client", sa="payer", tier="x"), web)


# ------------------------------------------------------------------------------------------------
# Peers (§4.5)


def test_node_identities_depend_on_the_subject_node() -> None:
    app = pod(app="app", node=NODE_1)
    here, there = ext("192.168.0.1", node=NODE_1), ext("192.168.0.1", node="node-2")
    e = engine(cnp(endpointSelector=sel(app="app"), egress=[{"toEntities": ["host"]}]))
    assert allowed(e, app, here)
    assert not allowed(e, app, there)  # the same address class, another node: not cached alike
    e = engine(cnp(endpointSelector=sel(app="app"), egress=[{"toEntities": ["remote-node"]}]))
    assert allowed(e, app, there)
    assert not allowed(e, app, here)


def test_kube_apiserver_identity() -> None:
    app = pod(app="app", node=NODE_1)
    outside = EvalEndpoint("203.0.113.1", kube_apiserver=True)
    on_node = EvalEndpoint("192.168.0.9", node="cp-1", kube_apiserver=True)
    e = engine(cnp(endpointSelector=sel(app="app"), egress=[{"toEntities": ["kube-apiserver"]}]))
    assert allowed(e, app, outside) and allowed(e, app, on_node)
    assert not allowed(e, app, EvalEndpoint("203.0.113.1"))  # same address, not flagged
    # identity.ReservedIdentityKubeAPIServer also carries remote-node; outside, it is world.
    remote = engine(cnp(endpointSelector=sel(app="app"), egress=[{"toEntities": ["remote-node"]}]))
    assert allowed(remote, app, on_node)
    cidr = engine(cnp(endpointSelector=sel(app="app"),
                      egress=[{"toCIDR": ["203.0.113.0/24", "192.168.0.0/24"]}]))
    assert allowed(cidr, app, outside)
    assert not allowed(cidr, app, on_node)


def test_cidr_except_narrows_only_its_own_item() -> None:
    app = pod(app="app")
    e = engine(cnp(endpointSelector=sel(app="app"), egress=[
        {"toCIDRSet": [{"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}]},
        {"toCIDR": ["10.1.2.0/24"]}]))
    assert allowed(e, app, ext("10.9.0.1"))
    assert not allowed(e, app, ext("10.1.9.1"))
    assert allowed(e, app, ext("10.1.2.5"))


def test_fqdn_patterns() -> None:
    app = pod(app="app")
    dns = {"toEndpoints": [sel(**{"k8s:io.kubernetes.pod.namespace": "kube-system"})],
           "toPorts": ports(("53", "UDP"), rules={"dns": [{"matchPattern": "*"}]})}

    def reach(pattern: dict[str, str], name: str) -> bool:
        e = engine(cnp(endpointSelector=sel(app="app"), egress=[dns, {"toFQDNs": [pattern]}]))
        return allowed(e, app, EvalEndpoint("203.0.113.9", dns_names=(name,)), TCP, 443)

    assert reach({"matchPattern": "*.example.com"}, "www.example.com")
    assert not reach({"matchPattern": "*.example.com"}, "a.b.example.com")
    assert not reach({"matchPattern": "*.example.com"}, "example.com")
    assert reach({"matchPattern": "**.example.com"}, "a.b.example.com")
    assert reach({"matchPattern": "*"}, "anything.example")
    assert reach({"matchName": "API.Example.com."}, "api.example.com")
    assert not reach({"matchName": "api.example.com"}, "xapi.example.com")
    # A name that resolves into the cluster: toFQDNs does not apply to cluster addresses.
    e = engine(cnp(endpointSelector=sel(app="app"),
                   egress=[dns, {"toFQDNs": [{"matchName": "db.shop"}]}]))
    inside = EvalEndpoint("10.244.1.1", "shop", dns_names=("db.shop",))
    assert not allowed(e, app, inside)


def test_verdicts_are_cached_per_dns_name_and_apiserver_flag() -> None:
    app = pod(app="app")
    e = engine(cnp(endpointSelector=sel(app="app"), egress=[
        {"toEndpoints": [sel(**{"k8s:io.kubernetes.pod.namespace": "kube-system"})],
         "toPorts": ports(("53", "UDP"), rules={"dns": [{"matchPattern": "*"}]})},
        {"toFQDNs": [{"matchName": "a.example"}]}]))
    assert allowed(e, app, EvalEndpoint("203.0.113.9", dns_names=("a.example",)))
    assert not allowed(e, app, EvalEndpoint("203.0.113.9", dns_names=("b.example",)))
    assert not allowed(e, app, EvalEndpoint("203.0.113.9"))


# ------------------------------------------------------------------------------------------------
# Ports and protocols (§4.6)


def test_protocols_any_every_port_and_ranges() -> None:
    web, client = pod(app="web"), pod(app="client")
    e = engine(cnp(endpointSelector=sel(app="web"), ingress=[
        {"fromEndpoints": [sel(app="client")], "toPorts": [{"ports": [
            {"port": "53", "protocol": "ANY"}, {"port": "0", "protocol": "SCTP"},
            {"port": "8000", "endPort": 8010, "protocol": "TCP"}, {"port": "9000"}]}]}]))
    assert allowed(e, client, web, UDP, 53) and allowed(e, client, web, TCP, 53)
    assert allowed(e, client, web, Transport.SCTP, 3868)
    assert allowed(e, client, web, TCP, 8010) and not allowed(e, client, web, TCP, 8011)
    assert allowed(e, client, web, UDP, 9000)  # no protocol: TCP, UDP and SCTP
    assert not allowed(e, client, web, ICMP, 8)


def test_named_ports_resolve_on_the_pod() -> None:
    web = pod(app="web", ports=[(8080, "http")])
    other = pod(app="web", ports=[(9090, "http")])
    e = engine(cnp(endpointSelector=sel(app="web"),
                   ingress=[{"toPorts": [{"ports": [{"port": "HTTP", "protocol": "TCP"}]}]}]))
    assert allowed(e, pod(app="c"), web, TCP, 8080)
    assert allowed(e, pod(app="c"), other, TCP, 9090)
    assert not allowed(e, pod(app="c"), web, TCP, 9090)


def test_icmp_by_type_and_family() -> None:
    web, client = pod(app="web"), pod(app="client")
    e = engine(cnp(endpointSelector=sel(app="web"), ingress=[{
        "fromEndpoints": [sel(app="client")],
        "icmps": [{"fields": [{"type": 8}, {"family": "IPv6", "type": "EchoRequest"}]}]}]))
    assert allowed(e, client, web, ICMP, 8)
    assert not allowed(e, client, web, ICMP, 13)
    assert allowed(e, client, web, Transport.ICMPV6, 128)
    assert not allowed(e, client, web, TCP, 8)
    l4 = engine(cnp(endpointSelector=sel(app="web"), ingress=[
        {"fromEndpoints": [sel(app="client")], "toPorts": ports(("80", "TCP"))}]))
    assert not allowed(l4, client, web, ICMP, 8)  # an L4 rule does not let ICMP through
    l3 = engine(cnp(endpointSelector=sel(app="web"),
                    ingress=[{"fromEndpoints": [sel(app="client")]}]))
    assert allowed(l3, client, web, ICMP, 8)  # an L3-only rule allows every protocol


def test_l7_rules_count_as_l4_allows() -> None:
    web, client = pod(app="web"), pod(app="client")
    e = engine(cnp(endpointSelector=sel(app="web"), ingress=[{
        "fromEndpoints": [sel(app="client")],
        "toPorts": ports(("80", "TCP"), rules={"http": [{"method": "GET"}]})}]))
    assert allowed(e, client, web, TCP, 80)


# ------------------------------------------------------------------------------------------------
# Kubernetes NetworkPolicy under Cilium (§4.8)


def test_knp_ipblock_never_matches_pods_and_empty_from_is_everything() -> None:
    web = pod(app="web", node=NODE_1)
    client = pod(ip="10.244.7.7", app="client")
    block = engine(netpol(pod_selector=match(app="web"),
                          ingress=[{"from": [{"ipBlock": {"cidr": "10.244.0.0/16"}}]}]))
    assert not allowed(block, client, web)
    assert make_engine(netpol(pod_selector=match(app="web"), ingress=[{"from": [
        {"ipBlock": {"cidr": "10.244.0.0/16"}}]}])).check(client, web, TCP, 80).allowed
    anything = engine(netpol(pod_selector=match(app="web"), ingress=[{}]))
    assert allowed(anything, ext(), web)
    assert allowed(anything, remote_node(), web)


def test_knp_selectors_and_namespaces() -> None:
    web = pod("shop", app="web")
    e = engine(netpol(ns="shop", pod_selector=match(app="web"), ingress=[{"from": [
        {"namespaceSelector": match(team="money"), "podSelector": match(app="client")},
        {"podSelector": match(app="lb")}]}]), namespaces={"bank": {"team": "money"}})
    assert allowed(e, pod("bank", app="client"), web)
    assert not allowed(e, pod("bank", app="lb"), web)  # podSelector alone: the policy namespace
    assert allowed(e, pod("shop", app="lb"), web)
    everyone = engine(netpol(ns="shop", pod_selector=match(app="web"),
                             ingress=[{"from": [{"namespaceSelector": {}}]}]))
    assert allowed(everyone, pod("bank", app="x"), web)
    assert not allowed(everyone, ext(), web)
    assert not allowed(everyone, remote_node(), web)


def test_knp_ports_and_deny_all_egress() -> None:
    web = pod(app="web")
    e = engine(netpol(pod_selector=match(app="web"), types=["Ingress", "Egress"],
                      ingress=[{"ports": [{"port": 80}, {"protocol": "UDP"}]}]))
    assert allowed(e, pod(app="c"), web, TCP, 80)  # no protocol: TCP
    assert allowed(e, pod(app="c"), web, UDP, 1)  # no port: every port
    assert not allowed(e, pod(app="c"), web, Transport.SCTP, 80)
    assert not allowed(e, pod(app="c"), web, TCP, 81)
    assert not allowed(e, web, pod(app="c"))
    assert e.check(pod(app="c"), web, TCP, 80).ingress.policy == \
        "networking.k8s.io/NetworkPolicy default/np"


# ------------------------------------------------------------------------------------------------
# What the engine rejects, and what it leaves out


@pytest.mark.parametrize(("spec", "problem"), [
    ({"ingress": [{"fromEndpoints": [{}], "fromEntities": ["world"]}]}, "combining"),
    ({"ingress": [{"toPorts": ports(("80", "TCP")), "icmps": [{"fields": [{"type": 8}]}]}]},
     "icmps block"),
    ({"ingress": [{"toPorts": ports(("53", "UDP"), rules={"dns": [{"matchPattern": "*"}]})}]},
     "not allowed on ingress"),
    ({"egress": [{"toPorts": [{"ports": [{"port": 80, "protocol": "TCP"}]}]}]}, "a string"),
    ({"egress": [{"toPorts": [{"ports": [{"port": str(p)} for p in range(41)]}]}]},
     "too many ports"),
    ({"egress": [{"toPorts": ports(("0", "UDP"), rules={"dns": [{"matchPattern": "*"}]})}]},
     "port is 0"),
    ({"egress": [{"toCIDRSet": [{"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24"]}]}]},
     "not inside"),
    ({"egress": [{"toFQDNs": [{"matchName": "a.example", "matchPattern": "*"}]}]},
     "exactly one"),
    ({"egressDeny": [{"toFQDNs": [{"matchName": "a.example"}]}]}, "unknown field"),
    ({"ingress": [{"fromRequires": [{}]}]}, "removed"),
    ({"ingress": [{}], "bogus": 1}, "unknown field"),
    ({"ingress": [{}], "nodeSelector": {}}, "exactly one of endpointSelector"),
])
def test_invalid_rules_are_rejected_with_their_path(spec: dict[str, Any], problem: str) -> None:
    e = engine(cnp("bad", endpointSelector=sel(app="web"), **spec))
    assert len(e.rejected) == 1
    assert problem in e.rejected[0]
    assert e.rejected[0].startswith("cilium.io/v2 CiliumNetworkPolicy default/bad")


def test_constructs_not_modelled_are_listed_not_guessed() -> None:
    host_policy = ccnp("host", ingress=[{}])
    del host_policy["spec"]["endpointSelector"]
    host_policy["spec"]["nodeSelector"] = {}
    services = cnp("svc", egress=[{"toServices": [{"k8sService": {"serviceName": "x",
                                                                  "namespace": "y"}}]}])
    e = engine(host_policy, services, {"apiVersion": "cilium.io/v2", "kind": "CiliumCIDRGroup",
                                       "metadata": {"name": "g"}})
    assert e.rejected == []
    assert [i.split(":", 1)[0] for i in e.ignored] == [
        "cilium.io/v2 CiliumClusterwideNetworkPolicy host",
        "cilium.io/v2 CiliumNetworkPolicy default/svc",
        "cilium.io/v2 CiliumCIDRGroup g"]
    assert allowed(e, pod(), ext())


def test_other_enforcements_leave_cilium_objects_out() -> None:
    doc = cnp(endpointSelector=sel(app="web"), ingress=[{}])
    for enforcement in ("kubernetes", "calico"):
        e = make_engine(doc, enforcement=enforcement)
        assert allowed(e, pod(app="c"), pod(app="web"))
        assert e.ignored == [f"cilium.io/v2 CiliumNetworkPolicy default/p: Cilium objects are "
                             f"not enforced under {enforcement} enforcement"]
    calico = {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
              "metadata": {"name": "g"}, "spec": {"selector": "all()", "ingress": []}}
    assert engine(calico).ignored == ["projectcalico.org/v3 GlobalNetworkPolicy g: Calico "
                                      "objects are not enforced under cilium enforcement"]
