"""Calico enforcement: tiers, Pass/Log/end-of-tier, ``types`` defaulting, selector scoping, network
sets, Kubernetes policies converted to the default tier, and the traps of policy-semantics.md
§3.8."""

from __future__ import annotations

from typing import Any

import pytest
from eval_helpers import (
    ICMP,
    TCP,
    UDP,
    allowed,
    calico,
    cnp,
    ext,
    gnp,
    match,
    netpol,
    pod,
    tier,
)
from eval_helpers import engine as make_engine

from segmenter.evaluate import PolicyEngine


def engine(*docs: dict[str, Any], **kw: Any) -> PolicyEngine:
    return make_engine(*docs, enforcement="calico", **kw)


def allow(**kw: Any) -> dict[str, Any]:
    return {"action": "Allow", **kw}


def deny(**kw: Any) -> dict[str, Any]:
    return {"action": "Deny", **kw}


# -- Trap 1: types defaulting differs from Kubernetes ---------------------------------------------

def test_trap1_egress_only_rules_default_to_egress_only() -> None:
    api, other = pod(app="api"), pod(app="other")
    calico_shape = engine(cnp("egress-only", selector="app == 'api'",
                              egress=[allow(destination={"selector": "app == 'db'"})]))
    assert allowed(calico_shape, other, api)  # ingress is not isolated
    assert not allowed(calico_shape, api, other)
    k8s_shape = engine(netpol(pod_selector=match(app="api"),
                              egress=[{"to": [{"podSelector": match(app="db")}]}]))
    assert not allowed(k8s_shape, other, api)  # the Kubernetes defaulting isolates ingress


def test_types_default_both_when_both_rule_lists_and_ingress_when_none() -> None:
    web = pod(app="web")
    both = engine(cnp("both", ingress=[allow()], egress=[deny()]))
    assert allowed(both, ext(), web)
    assert not allowed(both, web, ext())
    none = engine(cnp("none"))
    assert not allowed(none, ext(), web)
    assert allowed(none, web, ext())


# -- Trap 2: a GNP with all() selects every namespace ---------------------------------------------

def test_trap2_global_all_selects_system_namespaces_unless_excluded() -> None:
    dns = pod("kube-system", labels={"k8s-app": "kube-dns"})
    app = pod("shop", app="web")
    everything = engine(gnp("default-deny", selector="all()", types=["Ingress"]))
    assert not allowed(everything, app, dns, UDP, 53)
    scoped = engine(gnp("default-deny", selector="all()", types=["Ingress"],
                        namespaceSelector="kubernetes.io/metadata.name not in "
                                          "{'kube-system', 'calico-system'}"))
    assert allowed(scoped, app, dns, UDP, 53)
    assert not allowed(scoped, dns, app)
    assert scoped.check(dns, app, TCP, 80).ingress.reason == \
        "no rule matched (end of tier default)"


# -- Traps 3 and 4: Pass falls through to the profile; end-of-tier Deny blocks lower tiers ---------

def test_trap3_pass_in_the_last_tier_allows_via_profile() -> None:
    web = pod("shop", app="web")
    e = engine(tier("security", 100),
               gnp("security.pass-web", tier="security", selector="app == 'web'",
                   ingress=[{"action": "Pass"}]))
    v = e.check(ext(), web, TCP, 80)
    assert v.allowed
    assert v.ingress.policy is None
    assert v.ingress.reason.startswith("passed by GlobalNetworkPolicy security.pass-web "
                                       "ingress[0]")
    assert "profile kns.shop" in v.ingress.reason


def test_trap4_end_of_tier_deny_beats_a_lower_tier_allow() -> None:
    web = pod("shop", app="web")
    guard = gnp("security.guard", tier="security", selector="app == 'web'",
                ingress=[allow(source={"nets": ["10.0.0.0/8"]})])
    k8s_allow_all = netpol("allow-all", "shop", ingress=[{}])
    e = engine(tier("security", 100), guard, k8s_allow_all)
    v = e.check(ext("203.0.113.1"), web, TCP, 80)
    assert not v.allowed
    assert v.ingress.policy == "GlobalNetworkPolicy security.guard"
    assert v.ingress.rule is None
    assert v.ingress.reason == "no rule matched (end of tier security)"
    # Allowed in the security tier: final, the default tier is never consulted.
    v2 = e.check(ext("10.9.9.9"), web, TCP, 80)
    assert v2.allowed
    assert v2.ingress.policy == "GlobalNetworkPolicy security.guard"
    # With defaultAction Pass the lower tier decides.
    passing = engine(tier("security", 100, "Pass"), guard, k8s_allow_all)
    v3 = passing.check(ext("203.0.113.1"), web, TCP, 80)
    assert v3.allowed
    assert v3.ingress.policy == "NetworkPolicy shop/knp.default.allow-all"


def test_tier_with_no_policy_selecting_the_endpoint_is_skipped() -> None:
    web, db = pod("shop", app="web"), pod("shop", app="db")
    e = engine(tier("security", 100),
               gnp("security.db-only", tier="security", selector="app == 'db'",
                   ingress=[allow(source={"selector": "app == 'web'"})]))
    assert allowed(e, ext(), web)  # security tier skipped for web: no implicit deny
    assert not allowed(e, ext(), db)
    assert allowed(e, web, db)


def test_tiers_sorted_by_order_then_name_with_missing_order_last() -> None:
    web = pod("shop", app="web")
    e = engine(tier("zz-first", 10), tier("aa-second", 20), tier("unordered"),
               gnp("unordered.deny", tier="unordered", selector="all()", ingress=[deny()]),
               gnp("aa-second.allow", tier="aa-second", selector="all()", ingress=[allow()]),
               gnp("zz-first.pass", tier="zz-first", selector="all()",
                   ingress=[{"action": "Pass"}]))
    v = e.check(ext(), web, TCP, 80)
    assert v.allowed
    assert v.ingress.policy == "GlobalNetworkPolicy aa-second.allow"


def test_policy_order_then_name_within_a_tier_and_log_continues() -> None:
    web = pod("shop", app="web")
    e = engine(gnp("b-allow", order=100, selector="all()", ingress=[allow()]),
               gnp("a-deny", order=100, selector="all()", ingress=[deny()]),
               gnp("logger", order=50, selector="all()", ingress=[{"action": "Log"}]),
               gnp("unordered-allow", selector="all()", ingress=[allow()]))
    v = e.check(ext(), web, TCP, 80)
    assert not v.allowed
    assert (v.ingress.policy, v.ingress.rule) == ("GlobalNetworkPolicy a-deny", "ingress[0]")
    assert v.ingress.reason == "denied by rule ingress[0]; logged by GlobalNetworkPolicy " \
                               "logger ingress[0]"
    assert [p.name for p in e.policies] == ["logger", "a-deny", "b-allow", "unordered-allow"]


def test_rules_are_evaluated_in_order() -> None:
    web = pod("shop", app="web")
    e = engine(gnp("g", selector="all()", ingress=[
        deny(protocol="TCP", destination={"ports": [22]}), allow()]))
    assert not allowed(e, ext(), web, TCP, 22)
    v = e.check(ext(), web, TCP, 80)
    assert v.allowed
    assert v.ingress.rule == "ingress[1]"


# -- Kubernetes policies under Calico (§3.5) ------------------------------------------------------

def test_k8s_policies_sit_in_default_tier_at_order_1000() -> None:
    web = pod("shop", app="web")
    k8s_allow = netpol("allow-web", "shop", pod_selector=match(app="web"), ingress=[{}])
    before = engine(gnp("deny-early", order=500, selector="app == 'web'", ingress=[deny()]),
                    k8s_allow)
    assert not allowed(before, ext(), web)
    after = engine(gnp("deny-late", order=2000, selector="app == 'web'", ingress=[deny()]),
                   k8s_allow)
    v = after.check(ext(), web, TCP, 80)
    assert v.allowed
    assert (v.ingress.policy, v.ingress.rule) == (
        "NetworkPolicy shop/knp.default.allow-web", "ingress[0]")
    unordered = engine(gnp("deny-unordered", selector="app == 'web'", ingress=[deny()]),
                       k8s_allow)
    assert allowed(unordered, ext(), web)


def test_k8s_policy_isolation_under_calico_is_end_of_default_tier() -> None:
    web = pod("shop", app="web")
    e = engine(netpol("deny", "shop", ingress=[]))
    v = e.check(ext(), web, TCP, 80)
    assert not v.allowed
    assert v.ingress.policy == "NetworkPolicy shop/knp.default.deny"
    assert v.ingress.reason == "no rule matched (end of tier default)"
    v2 = e.check(web, ext(), TCP, 80)
    assert v2.egress.reason == "no policy applies: allowed by profile kns.shop"


def test_k8s_peers_never_match_network_sets() -> None:
    web = pod("shop", app="web")
    feed = calico("NetworkSet", "partners", {"nets": ["198.51.100.0/24"]}, ns="shop",
                  labels={"role": "partner"})
    e = engine(feed, netpol("np", "shop", ingress=[{"from": [{"podSelector": {}}]}]))
    assert not allowed(e, ext("198.51.100.1"), web)
    e2 = engine(feed, cnp("np", "shop", ingress=[allow(source={"selector": "all()"})]))
    assert allowed(e2, ext("198.51.100.1"), web)


# -- Trap 5: ports need a protocol ----------------------------------------------------------------

def test_trap5_ports_without_protocol_are_rejected() -> None:
    e = engine(cnp("bad", ingress=[allow(destination={"ports": [80]})]))
    assert len(e.rejected) == 1
    assert "spec.ingress[0].destination.ports: requires protocol" in e.rejected[0]
    assert allowed(e, ext(), pod(app="web"))


# -- Trap 6: notNets and notSelector --------------------------------------------------------------

def test_trap6_not_nets_alone_matches_the_whole_internet() -> None:
    web = pod("shop", app="web")
    e = engine(gnp("egress", selector="app == 'web'", types=["Egress"],
                   egress=[allow(destination={"notNets": ["10.0.0.0/8"]})]))
    assert allowed(e, web, ext("8.8.8.8"))
    assert not allowed(e, web, ext("10.1.2.3"))


def test_trap6_bare_not_selector_is_namespace_scoped_in_a_network_policy() -> None:
    web = pod("shop", app="web")
    e = engine(cnp("np", "shop", selector="app == 'web'",
                   ingress=[allow(source={"notSelector": "role == 'bad'"})]))
    assert allowed(e, pod("shop", role="good"), web)
    assert not allowed(e, pod("shop", role="bad"), web)
    assert not allowed(e, pod("other", role="good"), web)
    assert not allowed(e, ext(), web)
    g = engine(gnp("g", selector="app == 'web'",
                   ingress=[allow(source={"notSelector": "role == 'bad'"})]))
    assert allowed(g, pod("other", role="good"), web)
    assert allowed(g, ext(), web)
    assert not allowed(g, pod("other", role="bad"), web)


def test_selector_not_has_versus_not_selector_has_for_external_traffic() -> None:
    web = pod("shop", app="web")
    sel = engine(gnp("g", selector="app == 'web'", ingress=[allow(source={"selector":
                                                                           "!has(x)"})]))
    notsel = engine(gnp("g", selector="app == 'web'", ingress=[allow(source={"notSelector":
                                                                              "has(x)"})]))
    assert allowed(sel, pod("a"), web)
    assert allowed(notsel, pod("a"), web)
    assert not allowed(sel, ext(), web)  # only known endpoints
    assert allowed(notsel, ext(), web)  # every packet except from endpoints with x
    assert not allowed(sel, pod("a", x="1"), web)
    assert not allowed(notsel, pod("a", x="1"), web)


def test_selector_all_matches_endpoints_not_all_packets() -> None:
    web = pod("shop", app="web")
    e = engine(gnp("g", selector="app == 'web'", ingress=[allow(source={"selector": "all()"})]))
    assert allowed(e, pod("any"), web)
    assert not allowed(e, ext(), web)
    assert allowed(engine(gnp("g", selector="app == 'web'", ingress=[allow()])), ext(), web)


# -- Trap 7 and network sets ----------------------------------------------------------------------

def test_trap7_global_network_sets_are_matched_by_ip() -> None:
    web = pod("shop", app="web")
    threats = calico("GlobalNetworkSet", "threats", {"nets": ["198.51.100.0/24"]},
                     labels={"feed": "threat"})
    e = engine(threats, gnp("block", order=1, selector="all()", ingress=[
        deny(source={"selector": "feed == 'threat'"}), allow()]))
    v = e.check(ext("198.51.100.20"), web, TCP, 443)
    assert not v.allowed
    assert v.ingress.rule == "ingress[0]"
    assert allowed(e, ext("203.0.113.20"), web, TCP, 443)
    # The SNAT'd address of the same client is no longer in the set.
    assert allowed(e, ext("192.168.0.1", node="node-9"), web, TCP, 443)


def test_global_sets_need_global_namespace_selector_in_a_network_policy() -> None:
    web = pod("shop", app="web")
    partners = calico("GlobalNetworkSet", "partners", {"nets": ["198.51.100.0/24"]},
                      labels={"role": "partner"})
    scoped = engine(partners, cnp("np", "shop", ingress=[allow(source={
        "selector": "role == 'partner'"})]))
    assert not allowed(scoped, ext("198.51.100.1"), web)
    global_sel = engine(partners, cnp("np", "shop", ingress=[allow(source={
        "selector": "role == 'partner'", "namespaceSelector": "global()"})]))
    assert allowed(global_sel, ext("198.51.100.1"), web)
    assert not allowed(global_sel, pod("shop", role="partner"), web)
    in_gnp = engine(partners, gnp("g", selector="all()", ingress=[allow(source={
        "selector": "role == 'partner'"})]))
    assert allowed(in_gnp, ext("198.51.100.1"), web)


def test_namespaced_network_sets_only_match_from_their_namespace() -> None:
    web, api = pod("shop", app="web"), pod("billing", app="api")
    partners = calico("NetworkSet", "partners", {"nets": ["198.51.100.0/24"]}, ns="shop",
                      labels={"role": "partner"})
    rule = [allow(source={"selector": "role == 'partner'"})]
    e = engine(partners, cnp("np", "shop", ingress=rule), cnp("np", "billing", ingress=rule))
    assert allowed(e, ext("198.51.100.1"), web)
    assert not allowed(e, ext("198.51.100.1"), api)
    all_ns = engine(partners, cnp("np", "billing", ingress=[allow(source={
        "selector": "role == 'partner'", "namespaceSelector": "all()"})]))
    assert allowed(all_ns, ext("198.51.100.1"), api)


# -- Selector scoping and automatic labels (§3.2) --------------------------------------------------

def test_empty_rule_namespace_selector_means_own_namespace_in_np_any_in_gnp() -> None:
    web = pod("shop", app="web")
    rule = [allow(source={"selector": "app == 'client'"})]
    np_ = engine(cnp("np", "shop", ingress=rule))
    gnp_ = engine(gnp("g", selector="app == 'web'", ingress=rule))
    assert allowed(np_, pod("shop", app="client"), web)
    assert not allowed(np_, pod("other", app="client"), web)
    assert allowed(gnp_, pod("other", app="client"), web)


def test_namespace_selector_with_automatic_labels() -> None:
    web = pod("shop", app="web")
    by_name = engine(cnp("np", "shop", ingress=[allow(source={
        "namespaceSelector": "projectcalico.org/name == 'front'"})]))
    assert allowed(by_name, pod("front"), web)
    assert not allowed(by_name, pod("back"), web)
    by_k8s_name = engine(cnp("np", "shop", ingress=[allow(source={
        "namespaceSelector": "kubernetes.io/metadata.name == 'front'"})]))
    assert allowed(by_k8s_name, pod("front"), web)
    with_labels = engine(cnp("np", "shop", ingress=[allow(source={
        "namespaceSelector": "tier == 'edge'", "selector": "app == 'gw'"})]),
        namespaces={"gw": {"tier": "edge"}})
    assert allowed(with_labels, pod("gw", app="gw"), web)
    assert not allowed(with_labels, pod("gw", app="other"), web)


def test_wrong_automatic_label_in_the_wrong_selector_matches_nothing() -> None:
    web = pod("shop", app="web")
    ns_label_in_pod_selector = engine(gnp("g", selector="app == 'web'", ingress=[allow(source={
        "selector": "projectcalico.org/name == 'front'"})]))
    assert not allowed(ns_label_in_pod_selector, pod("front"), web)
    pod_label_in_ns_selector = engine(gnp("g", selector="app == 'web'", ingress=[allow(source={
        "namespaceSelector": "projectcalico.org/namespace == 'front'"})]))
    assert not allowed(pod_label_in_ns_selector, pod("front"), web)
    right = engine(gnp("g", selector="app == 'web'", ingress=[allow(source={
        "selector": "projectcalico.org/namespace == 'front'"})]))
    assert allowed(right, pod("front"), web)


def test_gnp_top_level_selectors() -> None:
    web, sys_pod = pod("shop", app="web"), pod("kube-system", app="web")
    by_ns_label = engine(gnp("g", selector="projectcalico.org/namespace == 'shop' && "
                                           "projectcalico.org/orchestrator == 'k8s'",
                             ingress=[deny()]))
    assert not allowed(by_ns_label, ext(), web)
    assert allowed(by_ns_label, ext(), sys_pod)
    by_ns_selector = engine(gnp("g", selector="app == 'web'", namespaceSelector="team == 'x'",
                                ingress=[deny()]), namespaces={"shop": {"team": "x"}})
    assert not allowed(by_ns_selector, ext(), web)
    assert allowed(by_ns_selector, ext(), sys_pod)


def test_namespaced_policy_selects_only_its_namespace() -> None:
    e = engine(cnp("np", "shop", selector="all()", ingress=[deny()]))
    assert not allowed(e, ext(), pod("shop"))
    assert allowed(e, ext(), pod("other"))


def test_service_accounts() -> None:
    db = pod("shop", app="db")
    e = engine(cnp("np", "shop", selector="app == 'db'", ingress=[allow(source={
        "serviceAccounts": {"names": ["api"]}})]))
    assert allowed(e, pod("shop", sa="api"), db)
    assert not allowed(e, pod("shop", sa="web"), db)
    assert not allowed(e, pod("shop"), db)  # runs as "default"
    assert not allowed(e, pod("other", sa="api"), db)  # scoped to the namespace
    by_selector = engine(cnp("np", "shop", selector="app == 'db'", ingress=[allow(source={
        "serviceAccounts": {"selector": "projectcalico.org/name == 'api'"}})]))
    assert allowed(by_selector, pod("shop", sa="api"), db)
    top = engine(cnp("np", "shop", serviceAccountSelector="projectcalico.org/name == 'db'",
                     ingress=[deny()]))
    assert not allowed(top, ext(), pod("shop", sa="db"))
    assert allowed(top, ext(), db)
    by_label = engine(cnp("np", "shop", selector="projectcalico.org/serviceaccount == 'db'",
                          ingress=[deny()]))
    assert not allowed(by_label, ext(), pod("shop", sa="db"))


# -- Ports, protocols, ICMP ----------------------------------------------------------------------

def test_ports_ranges_named_ports_and_not_ports() -> None:
    web = pod("shop", app="web", ports=[(8443, "https")])
    e = engine(cnp("np", "shop", ingress=[
        allow(protocol="TCP", destination={"ports": ["8000:8080", 9090, "https"],
                                           "notPorts": [8001]})]))
    assert [allowed(e, ext(), web, TCP, p) for p in (7999, 8000, 8001, 8080, 9090, 8443, 443)
            ] == [False, True, False, True, True, True, False]
    assert not allowed(e, ext(), web, UDP, 8000)


def test_protocol_numbers_not_protocol_and_udplite() -> None:
    web = pod("shop", app="web")
    e = engine(cnp("np", "shop", ingress=[allow(protocol=17)]))
    assert allowed(e, ext(), web, UDP, 53)
    assert not allowed(e, ext(), web, TCP, 53)
    e2 = engine(cnp("np", "shop", ingress=[allow(notProtocol="TCP")]))
    assert allowed(e2, ext(), web, UDP, 53)
    assert not allowed(e2, ext(), web, TCP, 53)
    e3 = engine(cnp("np", "shop", ingress=[allow(protocol="UDPLite")]))
    assert not allowed(e3, ext(), web, UDP, 53)


def test_icmp_type_is_read_from_the_port_argument() -> None:
    web = pod("shop", app="web")
    e = engine(cnp("np", "shop", ingress=[allow(protocol="ICMP", icmp={"type": 8})]))
    assert allowed(e, ext(), web, ICMP, 8)
    assert not allowed(e, ext(), web, ICMP, 0)
    assert not allowed(e, ext(), web, ICMP, None)


def test_source_ports_are_unknown_and_never_match() -> None:
    web = pod("shop", app="web")
    e = engine(cnp("np", "shop", ingress=[allow(protocol="TCP", source={"ports": [1234]})]))
    assert not allowed(e, ext(), web)


def test_ip_version_and_nets() -> None:
    web = pod("shop", app="web")
    e = engine(cnp("np", "shop", ingress=[allow(ipVersion=6)]))
    assert allowed(e, ext("2001:db8::1"), web) is False  # web has an IPv4 address
    e2 = engine(cnp("np", "shop", ingress=[allow(source={"nets": ["203.0.113.0/24"]})]))
    assert allowed(e2, ext("203.0.113.9"), web)
    assert not allowed(e2, ext("203.0.114.9"), web)


# -- Staged policies, hostNetwork, rejected objects ----------------------------------------------

def test_staged_policies_are_recorded_not_enforced() -> None:
    web = pod("shop", app="web")
    staged = calico("StagedGlobalNetworkPolicy", "deny-all",
                    {"selector": "all()", "types": ["Ingress"], "stagedAction": "Set"})
    staged_k8s = calico("StagedKubernetesNetworkPolicy", "deny", {"podSelector": {}},
                        ns="shop")
    e = engine(staged, staged_k8s)
    assert allowed(e, ext(), web)
    assert e.staged == [
        "projectcalico.org/v3 StagedGlobalNetworkPolicy deny-all (stagedAction Set): staged, "
        "not enforced",
        "projectcalico.org/v3 StagedKubernetesNetworkPolicy shop/deny (stagedAction Set): "
        "staged, not enforced",
    ]


def test_host_network_pods_are_not_workload_endpoints() -> None:
    node_agent = pod("kube-system", host_network=True, app="agent")
    e = engine(gnp("deny", selector="all()", types=["Ingress", "Egress"]))
    assert allowed(e, node_agent, ext())
    assert allowed(e, ext(), node_agent)


def test_policy_in_a_missing_tier_is_rejected() -> None:
    e = engine(gnp("nowhere.p", tier="nowhere", selector="all()", ingress=[deny()]))
    assert allowed(e, ext(), pod())
    assert e.rejected == ["GlobalNetworkPolicy nowhere.p: tier 'nowhere' does not exist"]


def test_non_tier_qualified_names_are_warnings() -> None:
    e = engine(tier("security", 10), gnp("guard", tier="security", selector="all()",
                                          ingress=[allow()]))
    assert any("must be named 'security.<name>'" in w for w in e.warnings)
    assert allowed(e, ext(), pod())


@pytest.mark.parametrize("version", ["projectcalico.org/v3", "crd.projectcalico.org/v1"])
def test_calico_api_versions(version: str) -> None:
    doc = gnp("deny", selector="all()", ingress=[deny()])
    doc["apiVersion"] = version
    assert not allowed(engine(doc), ext(), pod())
