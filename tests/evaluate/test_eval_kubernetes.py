"""Kubernetes NetworkPolicy semantics: the twenty tricky cases of policy-semantics.md §1.10 that an
evaluator can decide, plus the further pitfalls listed after them."""

from __future__ import annotations

import pytest
from eval_helpers import ICMP, SCTP, TCP, UDP, allowed, engine, ext, match, netpol, pod

from segmenter.evaluate import PolicyEngine

ANY_PEER_RULES = [{}]


# -- 1, 2, 3: policyTypes defaulting (§1.3) -------------------------------------------------------

def test_case01_egress_rules_only_default_to_ingress_and_egress() -> None:
    api, db, other = pod(app="api"), pod(app="db"), pod(app="other")
    e = engine(netpol(pod_selector=match(app="api"),
                      egress=[{"to": [{"podSelector": match(app="db")}]}]))
    v = e.check(other, api, TCP, 8080)
    assert not v.allowed
    assert v.ingress.policy == "networking.k8s.io/NetworkPolicy default/np"
    assert v.ingress.rule is None
    assert "isolated for ingress" in v.ingress.reason
    assert allowed(e, api, db, TCP, 5432)
    assert not allowed(e, api, other, TCP, 5432)
    # ... except from its own node (kubelet probes).
    assert allowed(e, ext("192.168.0.10", node=api.node), api, TCP, 8080)


def test_case02_empty_egress_list_defaults_to_ingress_only() -> None:
    api, other = pod(app="api"), pod(app="other")
    e = engine(netpol(pod_selector=match(app="api"), egress=[]))
    assert allowed(e, api, ext(), TCP, 443)
    assert e.check(api, ext(), TCP, 443).egress.reason == "not isolated for egress"
    assert not allowed(e, other, api)


def test_case03_both_types_without_egress_rules_blocks_dns() -> None:
    api, dns = pod(app="api"), pod("kube-system", labels={"k8s-app": "kube-dns"})
    e = engine(netpol(pod_selector=match(app="api"), types=["Ingress", "Egress"],
                      ingress=ANY_PEER_RULES))
    v = e.check(api, dns, UDP, 53)
    assert not v.allowed
    assert not v.egress.allowed
    assert v.ingress.allowed


# -- 4, 5, 6, 7: empty vs missing, peers (§1.4, §1.5) ----------------------------------------------

def test_case04_empty_rule_allows_all_empty_list_denies_all() -> None:
    web = pod(app="web")
    allow_all = engine(netpol(types=["Ingress"], ingress=[{}]))
    deny_all = engine(netpol(types=["Ingress"], ingress=[]))
    for proto, port in ((TCP, 80), (UDP, 53), (SCTP, 9), (TCP, None)):
        assert allowed(allow_all, ext(), web, proto, port)
        assert not allowed(deny_all, ext(), web, proto, port)
    v = allow_all.check(ext(), web, TCP, 80)
    assert (v.ingress.policy, v.ingress.rule) == ("networking.k8s.io/NetworkPolicy default/np",
                                                  "ingress[0]")


def test_case05_ports_without_from_open_to_any_source() -> None:
    db = pod(app="db")
    e = engine(netpol(pod_selector=match(app="db"), ingress=[{"ports": [{"port": 5432}]}]))
    assert allowed(e, ext("198.51.100.1"), db, TCP, 5432)
    assert allowed(e, pod("elsewhere"), db, TCP, 5432)
    assert not allowed(e, ext(), db, TCP, 5433)
    assert not allowed(e, ext(), db, UDP, 5432)


def test_case06_and_versus_or_peers() -> None:
    namespaces = {"mon": {"team": "ops"}, "default": {}}
    web = pod(app="web")
    mon_y, mon_other = pod("mon", app="y"), pod("mon", app="z")
    local_y = pod("default", app="y")
    and_peer = engine(netpol(pod_selector=match(app="web"), ingress=[{"from": [
        {"namespaceSelector": match(team="ops"), "podSelector": match(app="y")}]}]),
        namespaces=namespaces)
    or_peers = engine(netpol(pod_selector=match(app="web"), ingress=[{"from": [
        {"namespaceSelector": match(team="ops")}, {"podSelector": match(app="y")}]}]),
        namespaces=namespaces)
    assert [allowed(and_peer, s, web) for s in (mon_y, mon_other, local_y)] == [True, False,
                                                                                False]
    assert [allowed(or_peers, s, web) for s in (mon_y, mon_other, local_y)] == [True, True, True]


def test_case07_empty_namespace_selector_is_not_anywhere() -> None:
    web = pod(app="web", node="node-1")
    e = engine(netpol(pod_selector=match(app="web"),
                      ingress=[{"from": [{"namespaceSelector": {}}]}]))
    assert allowed(e, pod("other-ns"), web)
    assert not allowed(e, ext(), web)
    # A hostNetwork pod on another node is node traffic, not a pod.
    assert not allowed(e, pod("kube-system", host_network=True, node="node-2"), web)


# -- 8, 9, 10, 11, 12: ipBlock and ports (§1.5, §1.6) ---------------------------------------------

def test_case08_except_does_not_override_other_policies() -> None:
    web = pod(app="web")
    a = netpol("a", ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/8",
                                                   "except": ["10.1.0.0/16"]}}]}])
    b = netpol("b", ingress=[{"from": [{"ipBlock": {"cidr": "10.1.2.0/24"}}]}])
    only_a = engine(a)
    both = engine(a, b)
    assert not allowed(only_a, ext("10.1.2.5"), web)
    assert allowed(only_a, ext("10.2.0.1"), web)
    v = both.check(ext("10.1.2.5"), web, TCP, 80)
    assert v.allowed
    assert v.ingress.policy == "networking.k8s.io/NetworkPolicy default/b"


def test_case09_port_without_protocol_is_tcp_only() -> None:
    client = pod(app="client")
    dns = pod("kube-system", labels={"k8s-app": "kube-dns"})
    e = engine(netpol(pod_selector=match(app="client"), types=["Egress"],
                      egress=[{"ports": [{"port": 53}]}]))
    assert allowed(e, client, dns, TCP, 53)
    assert not allowed(e, client, dns, UDP, 53)
    # ports: [{}] is every TCP port, and nothing else.
    e2 = engine(netpol(pod_selector=match(app="client"), types=["Egress"],
                       egress=[{"ports": [{}]}]))
    assert allowed(e2, client, dns, TCP, 1234)
    assert not allowed(e2, client, dns, UDP, 53)


def test_case10_policy_sees_the_target_port_not_the_service_port() -> None:
    client, server = pod(app="client"), pod(app="server", ports=[(8080, "http")])
    svc_port_rule = engine(netpol(pod_selector=match(app="server"),
                                  ingress=[{"ports": [{"port": 80}]}]))
    # The connection after DNAT goes to 8080: the Service-port rule does not open it.
    assert not allowed(svc_port_rule, client, server, TCP, 8080)
    fixed = engine(netpol(pod_selector=match(app="server"),
                          ingress=[{"ports": [{"port": "http"}]}]))
    assert allowed(fixed, client, server, TCP, 8080)


def test_case11_named_port_resolves_per_destination_pod() -> None:
    a = pod(app="svc", ports=[(8080, "http")])
    b = pod(app="svc", ports=[(9090, "http")])
    c = pod(app="svc", ports=[(7070, "metrics")])
    client = pod(app="client")
    e = engine(netpol(pod_selector=match(app="svc"), ingress=[{"ports": [{"port": "http"}]}]))
    assert allowed(e, client, a, TCP, 8080)
    assert not allowed(e, client, a, TCP, 9090)
    assert allowed(e, client, b, TCP, 9090)
    assert not allowed(e, client, b, TCP, 8080)
    assert not any(allowed(e, client, c, TCP, p) for p in (8080, 9090, 7070))
    # The protocol is part of the name lookup.
    d = pod(app="svc", ports=[(8080, "http", UDP)])
    assert not allowed(e, client, d, TCP, 8080)


def test_case12_named_port_to_ipblock_matches_nothing() -> None:
    client = pod(app="client")
    e = engine(netpol(pod_selector=match(app="client"), types=["Egress"], egress=[
        {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"port": "https"}]}]))
    assert not allowed(e, client, ext("203.0.113.9"), TCP, 443)
    # Egress with a named port and no `to`: any pod that names the port, on its number.
    e2 = engine(netpol(pod_selector=match(app="client"), types=["Egress"],
                       egress=[{"ports": [{"port": "https"}]}]))
    assert allowed(e2, client, pod("x", ports=[(8443, "https")]), TCP, 8443)
    assert not allowed(e2, client, ext(), TCP, 443)


# -- 13, 14, 15, 16: both ends, replies, node traffic (§1.2, §1.7) --------------------------------

def test_case13_both_ends_must_allow() -> None:
    client, db = pod(app="client"), pod(app="db")
    e = engine(
        netpol("client-egress", pod_selector=match(app="client"), types=["Egress"],
               egress=[{"to": [{"podSelector": match(app="db")}]}]),
        netpol("db-ingress", pod_selector=match(app="db"),
               ingress=[{"from": [{"podSelector": match(app="api")}]}]),
    )
    v = e.check(client, db, TCP, 5432)
    assert not v.allowed
    assert v.egress.allowed
    assert v.egress.rule == "egress[0]"
    assert not v.ingress.allowed
    assert v.ingress.policy.endswith("default/db-ingress")
    assert "denied at ingress" in v.summary()


def test_case14_replies_are_implicit_new_outbound_is_not() -> None:
    client, server = pod(app="client"), pod(app="server")
    e = engine(netpol(pod_selector=match(app="server"), types=["Ingress", "Egress"],
                      ingress=[{}]))
    # The inbound connection is evaluated in its initiating direction only.
    assert allowed(e, client, server, TCP, 443)
    assert not allowed(e, server, client, TCP, 443)


def test_case15_own_node_and_hostnetwork_pod_on_same_node_are_allowed() -> None:
    web = pod(app="web", node="node-1")
    e = engine(netpol(types=["Ingress"], ingress=[]))
    kubelet = ext("192.168.0.11", node="node-1")
    v = e.check(kubelet, web, TCP, 8080)
    assert v.allowed
    assert v.ingress.reason == "from the pod's own node: always allowed"
    assert allowed(e, pod("kube-system", host_network=True, node="node-1"), web)
    assert not allowed(e, ext("192.168.0.12", node="node-2"), web)
    assert not allowed(e, ext("192.168.0.12"), web)


def test_case16_hostnetwork_agents_are_not_matched_by_pod_selectors() -> None:
    web = pod(app="web", node="node-1")
    agent = pod("monitoring", ip="192.168.0.12", host_network=True, node="node-2", app="agent")
    by_label = engine(netpol(pod_selector=match(app="web"), ingress=[{"from": [
        {"namespaceSelector": {}, "podSelector": match(app="agent")}]}]))
    assert not allowed(by_label, agent, web)
    by_node_ip = engine(netpol(pod_selector=match(app="web"), ingress=[{"from": [
        {"ipBlock": {"cidr": "192.168.0.0/24"}}]}]))
    assert allowed(by_node_ip, agent, web)
    # Policies never apply to hostNetwork pods themselves.
    v = by_label.check(web, agent, TCP, 9100)
    assert v.allowed
    assert "hostNetwork" in v.ingress.reason


# -- 17, 18, 19, 20: [I] ipBlock on pods, DNS, API server, endPort --------------------------------

@pytest.mark.parametrize(("matches_pods", "expected"), [(True, True), (False, False)])
def test_case17_ipblock_for_a_pod_ip_is_implementation_defined(matches_pods: bool,
                                                               expected: bool) -> None:
    client, target = pod(app="client"), pod(app="target", ip="10.244.9.9")
    doc = netpol(pod_selector=match(app="client"), types=["Egress"],
                 egress=[{"to": [{"ipBlock": {"cidr": "10.244.9.9/32"}}]}])
    assert allowed(engine(doc, ipblock_matches_pods=matches_pods), client, target) is expected
    # Calico always matches pod IPs.
    assert allowed(engine(doc, enforcement="calico", ipblock_matches_pods=False), client, target)


def test_case18_nodelocal_dns_needs_ipblocks() -> None:
    client = pod(app="client")
    dns_rule = {"to": [{"namespaceSelector": match(**{"kubernetes.io/metadata.name":
                                                      "kube-system"}),
                        "podSelector": match(**{"k8s-app": "kube-dns"})}],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
    nodelocal = ext("169.254.20.10", node="node-1")
    e = engine(netpol(pod_selector=match(app="client"), types=["Egress"], egress=[dns_rule]))
    assert allowed(e, client, pod("kube-system", labels={"k8s-app": "kube-dns"}), UDP, 53)
    assert not allowed(e, client, nodelocal, UDP, 53)
    fixed = engine(netpol(pod_selector=match(app="client"), types=["Egress"], egress=[
        dns_rule, {"to": [{"ipBlock": {"cidr": "169.254.20.10/32"}}],
                   "ports": [{"protocol": "UDP", "port": 53}]}]))
    assert allowed(fixed, client, nodelocal, UDP, 53)


def test_case19_api_server_is_not_a_pod() -> None:
    client = pod(app="client")
    api_server = ext("172.18.0.2")
    e = engine(netpol(pod_selector=match(app="client"), types=["Egress"], egress=[{
        "to": [{"namespaceSelector": match(**{"kubernetes.io/metadata.name": "default"}),
                "podSelector": {}}], "ports": [{"port": 443}]}]))
    assert not allowed(e, client, api_server, TCP, 6443)
    fixed = engine(netpol(pod_selector=match(app="client"), types=["Egress"], egress=[{
        "to": [{"ipBlock": {"cidr": "172.18.0.2/32"}}], "ports": [{"port": 6443}]}]))
    assert allowed(fixed, client, api_server, TCP, 6443)


def test_case20_end_port_range_is_inclusive() -> None:
    node_ports = pod(app="np")
    e = engine(netpol(pod_selector=match(app="np"),
                      ingress=[{"ports": [{"port": 30000, "endPort": 32767}]}]))
    assert [allowed(e, ext(), node_ports, TCP, p) for p in (29999, 30000, 31000, 32767, 32768)
            ] == [False, True, True, True, False]


# -- More pitfalls --------------------------------------------------------------------------------

def test_not_in_and_does_not_exist_select_unlabelled_pods() -> None:
    unlabelled, prod, dev = pod(), pod(env="prod"), pod(env="dev")
    e = engine(netpol(pod_selector={"matchExpressions": [
        {"key": "env", "operator": "NotIn", "values": ["prod"]}]}, ingress=[]))
    assert [allowed(e, ext(), p) for p in (unlabelled, prod, dev)] == [False, True, False]
    e2 = engine(netpol(pod_selector={"matchExpressions": [
        {"key": "env", "operator": "DoesNotExist"}]}, ingress=[]))
    assert [allowed(e2, ext(), p) for p in (unlabelled, prod, dev)] == [False, True, True]


def test_ingress_rules_ignored_when_types_is_egress_only() -> None:
    web = pod(app="web")
    e = engine(netpol(types=["Egress"], ingress=[{"from": [{"podSelector": match(app="x")}]}],
                      egress=[]))
    assert allowed(e, ext(), web)
    assert not allowed(e, web, ext())


def test_ipv6_needs_its_own_cidrs() -> None:
    web = pod(app="web")
    v4_only = engine(netpol(ingress=[{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]))
    assert allowed(v4_only, ext("198.51.100.7"), web)
    assert not allowed(v4_only, ext("2001:db8::7"), web)
    dual = engine(netpol(ingress=[{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}},
                                            {"ipBlock": {"cidr": "::/0"}}]}]))
    assert allowed(dual, ext("2001:db8::7"), web)


def test_rules_without_ports_cover_every_protocol_but_port_rules_only_tcp_udp_sctp() -> None:
    web = pod(app="web")
    e = engine(netpol(ingress=[{}]))
    assert allowed(e, ext(), web, ICMP, None)
    e2 = engine(netpol(ingress=[{"ports": [{"protocol": "TCP"}]}]))
    assert allowed(e2, ext(), web, TCP, 1)
    assert not allowed(e2, ext(), web, UDP, 1)


def test_pod_selector_only_peer_is_scoped_to_policy_namespace() -> None:
    web = pod("shop", app="web")
    e = engine(netpol(ns="shop", pod_selector=match(app="web"),
                      ingress=[{"from": [{"podSelector": {}}]}]))
    assert allowed(e, pod("shop"), web)
    assert not allowed(e, pod("other"), web)
    assert not allowed(e, ext(), web)


def test_namespace_selector_by_name_and_custom_labels() -> None:
    web = pod("shop", app="web")
    e = engine(netpol(ns="shop", pod_selector=match(app="web"), ingress=[{"from": [
        {"namespaceSelector": match(**{"kubernetes.io/metadata.name": "front"})},
        {"namespaceSelector": match(tier="edge")}]}]), namespaces={"gw": {"tier": "edge"}})
    assert allowed(e, pod("front"), web)
    assert allowed(e, pod("gw"), web)
    assert not allowed(e, pod("back"), web)


def test_namespace_manifests_supply_labels() -> None:
    ns_doc = {"apiVersion": "v1", "kind": "Namespace",
              "metadata": {"name": "gw", "labels": {"tier": "edge"}}}
    web = pod("shop", app="web")
    doc = netpol(ns="shop", ingress=[{"from": [{"namespaceSelector": match(tier="edge")}]}])
    assert allowed(PolicyEngine.from_manifests([doc, ns_doc], namespaces={}), pod("gw"), web)


def test_pod_reaches_itself() -> None:
    web = pod(app="web")
    e = engine(netpol(types=["Ingress", "Egress"]))
    v = e.check(web, web, TCP, 80)
    assert v.allowed
    assert v.ingress.reason == "a pod can always reach itself"


def test_traffic_between_non_pods_is_not_governed() -> None:
    e = engine(netpol(types=["Ingress", "Egress"]))
    v = e.check(ext("1.1.1.1"), ext("8.8.8.8"), UDP, 53)
    assert v.allowed
    assert "not a pod" in v.egress.reason
    assert "not a pod" in v.ingress.reason


def test_calico_objects_are_ignored_under_kubernetes_enforcement() -> None:
    deny = {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "deny"}, "spec": {"selector": "all()", "types": ["Ingress"]}}
    e = engine(deny)
    assert allowed(e, ext(), pod())
    assert e.ignored == ["projectcalico.org/v3 GlobalNetworkPolicy deny: Calico objects are "
                         "not enforced under kubernetes enforcement"]


def test_admin_policies_and_other_policy_kinds_are_reported_ignored() -> None:
    anp = {"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
           "metadata": {"name": "a"}, "spec": {}}
    cilium = {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
              "metadata": {"name": "c", "namespace": "x"}, "spec": {}}
    e = engine(anp, cilium, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})
    assert len(e.ignored) == 2
    assert "not evaluated" in e.ignored[0]
    assert "CiliumNetworkPolicy" in e.ignored[1]


def test_invalid_policies_are_rejected_and_listed() -> None:
    bad = netpol("bad", ingress=[{"from": [{}]}])
    e = engine(bad, netpol("ok", pod_selector=match(app="x"), ingress=[]))
    assert e.rejected == ["networking.k8s.io/v1 NetworkPolicy default/bad: "
                          "spec.ingress[0].from[0]: must specify a peer (podSelector, "
                          "namespaceSelector or ipBlock)"]
    assert allowed(e, ext(), pod(app="web"))
    keep = engine(bad, skip_invalid=False)
    assert keep.rejected  # compiled anyway, but the compiler refuses an empty peer too


def test_deny_reason_names_the_isolating_policies() -> None:
    web = pod(app="web")
    e = engine(netpol("a", ingress=[]), netpol("b", ingress=[{"ports": [{"port": 1}]}]))
    v = e.check(ext(), web, TCP, 80)
    assert v.ingress.reason == "isolated for ingress by default/a, default/b; no rule allows it"
    assert e.policies_for(web, "ingress") == ["networking.k8s.io/NetworkPolicy default/a",
                                              "networking.k8s.io/NetworkPolicy default/b"]
