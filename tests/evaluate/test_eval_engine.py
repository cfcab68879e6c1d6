"""Engine mechanics: caches and indexes never change an answer; API details."""

from __future__ import annotations

from typing import Any

import pytest
from eval_helpers import TCP, UDP, allowed, calico, ext, gnp, match, netpol, pod, tier
from eval_helpers import engine as make_engine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segmenter.evaluate import EvalEndpoint, PolicyEngine
from segmenter.model import Labels, Transport

NAMESPACES = ("a", "b")
APPS = ("web", "db", "api")
NS_LABELS = {"a": Labels.of({"team": "x"}), "b": Labels.of({"team": "y"})}

_ns = st.sampled_from(NAMESPACES)
_app = st.sampled_from(APPS)
_cidr = st.sampled_from(["10.0.0.0/24", "10.0.0.0/25", "10.0.0.128/26", "203.0.113.0/24",
                         "0.0.0.0/0"])
_port = st.sampled_from([None, 53, 80, 443, "http"])
_proto = st.sampled_from(["TCP", "UDP"])


@st.composite
def k8s_peer(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["pod", "ns", "both", "ip"]))
    if kind == "ip":
        cidr = draw(_cidr)
        block: dict[str, Any] = {"cidr": cidr}
        if cidr == "10.0.0.0/24" and draw(st.booleans()):
            block["except"] = ["10.0.0.0/26"]
        return {"ipBlock": block}
    peer: dict[str, Any] = {}
    if kind in ("pod", "both"):
        peer["podSelector"] = draw(st.sampled_from([{}, match(app=draw(_app))]))
    if kind in ("ns", "both"):
        peer["namespaceSelector"] = draw(st.sampled_from([{}, match(team="x")]))
    return peer


@st.composite
def k8s_rule(draw: st.DrawFn, key: str) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    if draw(st.booleans()):
        rule[key] = draw(st.lists(k8s_peer(), max_size=2))
    if draw(st.booleans()):
        ports = []
        for _ in range(draw(st.integers(1, 2))):
            entry: dict[str, Any] = {"protocol": draw(_proto)}
            port = draw(_port)
            if port is not None:
                entry["port"] = port
            ports.append(entry)
        rule["ports"] = ports
    return rule


@st.composite
def k8s_policy(draw: st.DrawFn, index: int) -> dict[str, Any]:
    types = draw(st.sampled_from([None, ["Ingress"], ["Egress"], ["Ingress", "Egress"]]))
    return netpol(f"k{index}", draw(_ns),
                  pod_selector=draw(st.sampled_from([{}, match(app=draw(_app))])), types=types,
                  ingress=draw(st.none() | st.lists(k8s_rule("from"), max_size=2)),
                  egress=draw(st.none() | st.lists(k8s_rule("to"), max_size=2)))


@st.composite
def calico_rule(draw: st.DrawFn) -> dict[str, Any]:
    rule: dict[str, Any] = {"action": draw(st.sampled_from(["Allow", "Deny", "Pass", "Log"]))}
    if draw(st.booleans()):
        rule["protocol"] = draw(_proto)
        if draw(st.booleans()):
            rule["destination"] = {"ports": [draw(st.sampled_from([80, "50:60", "http"]))]}
    side: dict[str, Any] = {}
    choice = draw(st.sampled_from(["none", "sel", "notsel", "nets", "nsel", "global"]))
    if choice == "sel":
        side["selector"] = draw(st.sampled_from(["app == 'web'", "all()", "!has(app)",
                                                 "feed == 'bad'"]))
    elif choice == "notsel":
        side["notSelector"] = "app == 'db'"
    elif choice == "nets":
        side["nets"] = [draw(_cidr)]
    elif choice == "nsel":
        side["namespaceSelector"] = "team == 'x'"
    elif choice == "global":
        side.update(namespaceSelector="global()", selector="feed == 'bad'")
    if side:
        rule["source"] = side
    return rule


@st.composite
def calico_policy(draw: st.DrawFn, index: int) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": draw(st.sampled_from(["all()", "app == 'web'", "app != 'db'"])),
        "ingress": draw(st.lists(calico_rule(), max_size=2)),
        "egress": draw(st.lists(calico_rule(), max_size=2)),
        "tier": draw(st.sampled_from(["default", "sec"])),
    }
    if draw(st.booleans()):
        spec["order"] = draw(st.sampled_from([1, 1000, 2000]))
    if draw(st.booleans()):
        return calico("GlobalNetworkPolicy", f"g{index}", spec)
    return calico("NetworkPolicy", f"c{index}", spec, ns=draw(_ns))


@st.composite
def endpoint(draw: st.DrawFn) -> EvalEndpoint:
    if draw(st.integers(0, 3)) == 0:
        return EvalEndpoint(ip=draw(st.sampled_from(["203.0.113.5", "198.51.100.1",
                                                     "10.0.0.200"])),
                            node=draw(st.sampled_from([None, "n1"])))
    host = draw(st.integers(1, 250))
    return pod(draw(_ns), ip=f"10.0.0.{host}", app=draw(_app), node="n1",
               host_network=draw(st.integers(0, 9)) == 0,
               ports=draw(st.sampled_from([(), ((8080, "http"),), ((80, "http"),)])))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.data(),
    st.sampled_from(["kubernetes", "calico"]),
    st.booleans(),
)
def test_cache_never_changes_an_answer(data: st.DataObject, enforcement: str,
                                       ipblock_pods: bool) -> None:
    docs: list[dict[str, Any]] = [
        tier("sec", 10, data.draw(st.sampled_from(["Deny", "Pass"]))),
        calico("GlobalNetworkSet", "bad", {"nets": ["198.51.100.0/24"]},
               labels={"feed": "bad"}),
    ]
    docs += [data.draw(k8s_policy(i)) for i in range(data.draw(st.integers(0, 4)))]
    if enforcement == "calico":
        docs += [data.draw(calico_policy(i)) for i in range(data.draw(st.integers(0, 4)))]
    fast = PolicyEngine.from_manifests(docs, namespaces=NS_LABELS, enforcement=enforcement,
                                       ipblock_matches_pods=ipblock_pods)
    naive = PolicyEngine.from_manifests(docs, namespaces=NS_LABELS, enforcement=enforcement,
                                        ipblock_matches_pods=ipblock_pods, cache=False)
    flows = data.draw(st.lists(st.tuples(endpoint(), endpoint(),
                                         st.sampled_from([TCP, UDP]),
                                         st.sampled_from([53, 55, 80, 8080])),
                               min_size=1, max_size=25))
    for _ in range(2):  # the second pass is served from the caches
        for src, dst, proto, port in flows:
            assert fast.check(src, dst, proto, port) == naive.check(src, dst, proto, port)


def test_adding_a_manifest_after_checks_invalidates_caches() -> None:
    e = make_engine()
    web = pod(app="web")
    assert allowed(e, ext(), web)
    e.add_manifest(netpol(ingress=[]))
    assert not allowed(e, ext(), web)
    e.add_manifest({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": "gw", "labels": {"tier": "edge"}}})
    e.add_manifest(netpol("from-edge", ingress=[{"from": [{"namespaceSelector":
                                                           match(tier="edge")}]}]))
    assert allowed(e, pod("gw"), web)


def test_explicit_namespace_labels_win_over_namespace_manifests() -> None:
    doc = {"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": "gw", "labels": {"tier": "core"}}}
    e = PolicyEngine.from_manifests([doc], namespaces={"gw": Labels.of({"tier": "edge"})})
    assert e.namespace_labels("gw") == {"tier": "edge", "kubernetes.io/metadata.name": "gw"}


def test_transport_may_be_a_string_and_bad_enforcement_is_refused() -> None:
    e = make_engine(netpol(ingress=[{"ports": [{"protocol": "UDP", "port": 53}]}]))
    assert e.check(ext(), pod(), "udp", 53).allowed
    with pytest.raises(ValueError, match="enforcement must be one of"):
        PolicyEngine(enforcement="antrea")


def test_verdicts_are_shared_by_pods_of_the_same_class() -> None:
    e = make_engine(netpol(pod_selector=match(app="db"),
                           ingress=[{"from": [{"podSelector": match(app="web")}]}]))
    db = pod(app="db")
    first = e.check(pod(app="web"), db, TCP, 5432)
    second = e.check(pod(app="web"), db, TCP, 5432)
    assert first is second


def test_summary_line() -> None:
    e = make_engine(netpol(ingress=[]))
    assert e.check(ext(), pod(), Transport.TCP, 80).summary() == (
        "denied at ingress: isolated for ingress by default/np; no rule allows it "
        "(networking.k8s.io/NetworkPolicy default/np)")
    assert e.check(pod(), ext(), Transport.TCP, 80).summary() == "allowed"


def test_gnp_display_and_policies_for_in_calico() -> None:
    e = make_engine(gnp("g", selector="all()", types=["Egress"]), enforcement="calico")
    web = pod(app="web")
    assert e.policies_for(web, "egress") == ["GlobalNetworkPolicy g"]
    assert e.policies_for(web, "ingress") == []
    assert e.policies_for(ext(), "egress") == []
