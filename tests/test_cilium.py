"""The Cilium dialect: CRD schema validity, the mapping of each IR construct, what it reports,
and its output read back through the evaluator under Cilium enforcement.

Golden files and determinism are in test_compile.py (parametrised over every dialect); the
"exactly the planned flows" property in test_properties.py.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

import pytest
import yaml

from segmenter.config import Config, SensitiveDecl
from segmenter.dialects.cilium import MAX_COMPLEMENT_TERMS, in_identity
from segmenter.errors import UnsupportedError
from segmenter.evaluate import EvalEndpoint, PolicyEngine
from segmenter.evaluate.cilium import identity_label_kept
from segmenter.model import Labels, Transport
from segmenter.planner import plan
from segmenter.policy.dns import detect_dns
from segmenter.policy.ir import (
    Action,
    CidrPeer,
    CidrRole,
    PodPeer,
    Policy,
    PolicySet,
    Port,
    Rule,
    Selector,
)
from segmenter.policy.lower import lower
from segmenter.targets import get_target
from tests.conftest import CORPORA
from tests.scenarios import SCENARIOS, infrastructure_peers
from tests.test_compile import compile_scenario

CRDS = CORPORA / "crds" / "cilium"
TCP, UDP = Transport.TCP, Transport.UDP


def emit(*policies: Policy, guardrails: tuple[Policy, ...] = (), best_effort: bool = False
         ) -> tuple[dict[str, list[dict[str, Any]]], tuple[str, ...], tuple[str, ...]]:
    out = get_target("cilium").dialect(best_effort=best_effort).emit(
        PolicySet(policies, guardrails))
    return out.files, out.notes, out.dropped


def workload(ingress: tuple[Rule, ...] | None = (), egress: tuple[Rule, ...] | None = (),
             **labels: str) -> Policy:
    return Policy("p", "shop", Selector(Labels.of(labels or {"app": "web"})), ingress=ingress,
                  egress=egress)


def spec_of(files: dict[str, list[dict[str, Any]]], key: str = "shop/p.yaml") -> dict[str, Any]:
    return files[key][0]["spec"]


def pods(namespace: str, **labels: str) -> PodPeer:
    return PodPeer(namespace, Selector(Labels.of(labels)))


def allow(*peers: Any, ports: tuple[Port, ...] = ()) -> Rule:
    return Rule(Action.ALLOW, tuple(peers), ports)


DNS_RULE = allow(pods("kube-system", **{"k8s-app": "kube-dns"}),
                 ports=(Port(TCP, 53), Port(UDP, 53)))


# ------------------------------------------------------------------------------------------------
# CRD schemas (datree CRDs-catalog JSON schemas of the upstream CRDs, read in place)


def _schema(kind: str) -> dict[str, Any]:
    path = CRDS / f"{kind.lower()}_v2.json"
    if not path.is_file():
        pytest.skip(f"Cilium CRD schemas not found at {CRDS} (shared corpus beside the checkout)")
    schema = json.loads(path.read_text(encoding="utf-8"))

    # The schema's `log.value` pattern uses \PC (Unicode "not a control or format character"),
    # which Python's re lacks; an equivalent printable-characters class stands in.
    def fix(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("pattern") == r"^\PC*$":
                node["pattern"] = r"^[^\x00-\x1f\x7f-\x9f]*$"
            for value in node.values():
                fix(value)
        elif isinstance(node, list):
            for value in node:
                fix(value)

    fix(schema)
    return schema


def _validator(kind: str) -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    checker = jsonschema.FormatChecker()

    @checker.checks("cidr", raises=ValueError)
    def is_cidr(value: object) -> bool:
        return not isinstance(value, str) or bool(ipaddress.ip_network(value, strict=True))

    return jsonschema.Draft7Validator(_schema(kind), format_checker=checker)


DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def schema_problems(doc: dict[str, Any]) -> list[str]:
    """What the API server would reject in one emitted document."""
    kind = doc.get("kind")
    if kind not in ("CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"):
        return [f"unexpected kind {kind}"]
    problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                for e in _validator(kind).iter_errors(doc)]
    if doc.get("apiVersion") != "cilium.io/v2":
        problems.append(f"apiVersion {doc.get('apiVersion')}")
    meta = doc["metadata"]
    if not DNS_SUBDOMAIN.fullmatch(meta["name"]) or len(meta["name"]) > 253:
        problems.append(f"metadata.name {meta['name']!r} is not a DNS-1123 subdomain")
    if (kind == "CiliumNetworkPolicy") != ("namespace" in meta):
        problems.append("namespace must be set on CNPs only")
    return problems


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_document_validates_against_the_upstream_crd_schema(scenario: str) -> None:
    docs = list(yaml.safe_load_all(compile_scenario(scenario, "cilium")))
    kinds = {d["kind"] for d in docs}
    assert "CiliumNetworkPolicy" in kinds
    for doc in docs:
        assert schema_problems(doc) == [], doc["metadata"]["name"]


def test_every_construct_the_dialect_writes_validates() -> None:
    """Beyond the scenarios: ranges, ANY, every port, ICMP, entities, CIDR excepts, toFQDNs with
    the DNS proxy, a cluster-scoped policy with several members, and a guardrail."""
    gw = CidrPeer("203.0.113.10/32", CidrRole.EXTERNAL, (), "gw", ("api.gw.example",))
    everything = workload(
        ingress=(allow(pods("shop", app="a"), ports=(
            Port(TCP, 8000, 8080), Port(UDP), *(Port(t, 53) for t in (TCP, UDP,
                                                                       Transport.SCTP)),
            Port(Transport.ICMP, 8), Port(Transport.ICMPV6, 128))),
                 allow(CidrPeer("10.0.0.0/8", excepts=("10.1.0.0/16",)), ports=(Port(TCP, 22),)),
                 allow(CidrPeer("172.18.0.2/32", CidrRole.NODE), ports=(Port(TCP, 10250),))),
        egress=(DNS_RULE, allow(gw, ports=(Port(TCP, 443),)),
                allow(CidrPeer("0.0.0.0/0"), CidrPeer("::/0"), ports=(Port(TCP, 80),)),
                allow(CidrPeer("172.18.0.1/32", CidrRole.APISERVER), ports=(Port(TCP, 6443),)),
                allow()))
    members = Policy("baseline", None, members=(pods("shop", app="a"), pods("bank", app="b")),
                     ingress=(allow(pods("shop", app="lb")),), egress=())
    files, _, _ = emit(everything, members, guardrails=(guard(
        (passes(pods("bank", app="api", tier="x"), pods("bank", app="batch")),),
        (passes(pods("kube-system", **{"k8s-app": "kube-dns"})),)),))
    docs = [d for ds in files.values() for d in ds]
    assert {d["kind"] for d in docs} == {"CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"}
    for doc in docs:
        assert schema_problems(doc) == [], doc["metadata"]["name"]


def test_the_schema_check_can_fail() -> None:
    doc = next(iter(yaml.safe_load_all(compile_scenario("two-tier", "cilium"))))
    spec = doc["spec"]
    bad = {**doc, "spec": {**spec, "ingressDeny": [{"fromEntities": ["world-ipv4"]}]}}
    assert any("world-ipv4" in p for p in schema_problems(bad))  # tricky case 11
    ports = {**doc, "spec": {"endpointSelector": {}, "ingress": [
        {"toPorts": [{"ports": [{"port": 80, "protocol": "TCP"}]}]}]}}
    assert schema_problems(ports)  # a port is a string in the CRD
    cidr = {**doc, "spec": {"endpointSelector": {}, "egress": [
        {"toCIDRSet": [{"cidr": "10.0.0.1/8"}]}]}}
    assert schema_problems(cidr)  # host bits set
    empty = {**doc, "spec": {"endpointSelector": {}}}
    assert schema_problems(empty)  # a rule needs an entry


# ------------------------------------------------------------------------------------------------
# Subjects, peers, ports


def test_default_deny_is_one_rule_that_matches_nothing_per_direction() -> None:
    files, _, _ = emit(Policy("default-deny", "shop", Selector(), ingress=(), egress=()))
    assert spec_of(files, "shop/default-deny.yaml") == {
        "endpointSelector": {}, "enableDefaultDeny": {"ingress": True, "egress": True},
        "ingress": [{}], "egress": [{}]}


def test_unrestricted_direction_is_left_out() -> None:
    files, _, _ = emit(workload(ingress=(allow(pods("shop", app="lb")),), egress=None))
    spec = spec_of(files)
    assert "egress" not in spec
    assert spec["enableDefaultDeny"] == {"ingress": True}


def test_labels_carry_the_k8s_source_and_peers_name_their_namespace() -> None:
    files, _, _ = emit(workload(ingress=(allow(pods("shop", app="lb")),
                                         allow(pods("edge", app="gw"))), egress=None,
                                app="web"))
    spec = spec_of(files)
    assert spec["endpointSelector"] == {"matchLabels": {"k8s:app": "web"}}
    assert spec["ingress"] == [
        {"fromEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "shop",
                                            "k8s:app": "lb"}}]},
        {"fromEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "edge",
                                            "k8s:app": "gw"}}]}]


def test_any_peer_is_the_all_entity_never_an_empty_rule() -> None:
    files, _, _ = emit(workload(ingress=(allow(), allow(ports=(Port(TCP, 443),))),
                                egress=None))
    assert spec_of(files)["ingress"] == [
        {"fromEntities": ["all"]},
        {"fromEntities": ["all"], "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}]}]


def test_ports_ranges_every_port_and_the_40_port_limit() -> None:
    many = tuple(Port(TCP, 1000 + 2 * i) for i in range(41))
    files, notes, _ = emit(workload(ingress=(
        allow(pods("shop", app="a"), ports=(Port(TCP, 8000, 8080), Port(UDP), Port(
            Transport.SCTP, 3868))),
        allow(pods("shop", app="b"), ports=many)), egress=None))
    first, second = spec_of(files)["ingress"]
    assert first["toPorts"] == [{"ports": [
        {"port": "8000", "endPort": 8080, "protocol": "TCP"},
        {"port": "0", "protocol": "UDP"},
        {"port": "3868", "protocol": "SCTP"}]}]
    assert [len(p["ports"]) for p in second["toPorts"]] == [40, 1]
    assert any("endPort" in n and "1.16" in n for n in notes)


def test_any_protocol_only_where_all_three_are_listed() -> None:
    three = tuple(Port(t, 53) for t in (TCP, UDP, Transport.SCTP))
    files, _, _ = emit(workload(ingress=(
        allow(pods("shop", app="a"), ports=(*three, Port(TCP, 80), Port(UDP, 80))),),
        egress=None))
    assert spec_of(files)["ingress"][0]["toPorts"] == [{"ports": [
        {"port": "53", "protocol": "ANY"}, {"port": "80", "protocol": "TCP"},
        {"port": "80", "protocol": "UDP"}]}]


def test_cidr_peers_keep_their_excepts() -> None:
    block = CidrPeer("10.0.0.0/8", CidrRole.EXTERNAL, ("10.1.0.0/16",), "corp")
    files, _, _ = emit(workload(egress=(allow(block, ports=(Port(TCP, 443),)),), ingress=None))
    assert spec_of(files)["egress"] == [{
        "toCIDRSet": [{"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}],
        "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}]}]


def test_both_whole_address_families_are_the_world_entity() -> None:
    v4, v6 = CidrPeer("0.0.0.0/0", name="internet"), CidrPeer("::/0", name="internet6")
    files, _, _ = emit(workload(ingress=None, egress=(
        allow(v4, v6, ports=(Port(TCP, 443),)), allow(v4, ports=(Port(TCP, 80),)))))
    first, second = spec_of(files)["egress"]
    assert first == {"toEntities": ["world"],
                     "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}]}
    assert second["toCIDRSet"] == [{"cidr": "0.0.0.0/0"}]  # world-ipv4 is not in the CRD


def test_mixed_peer_kinds_become_one_rule_per_kind() -> None:
    rule = allow(pods("shop", app="a"), CidrPeer("203.0.113.7/32"), ports=(Port(TCP, 80),))
    files, _, _ = emit(workload(ingress=(rule,), egress=None))
    assert [sorted(r) for r in spec_of(files)["ingress"]] == [
        ["fromEndpoints", "toPorts"], ["fromCIDRSet", "toPorts"]]


def test_icmp_by_type_in_a_rule_of_its_own_and_every_type_is_reported() -> None:
    rule = allow(pods("shop", app="a"), ports=(Port(TCP, 80), Port(Transport.ICMP, 8),
                                               Port(Transport.ICMPV6, 128)))
    files, _, _ = emit(workload(ingress=(rule,), egress=None))
    assert spec_of(files)["ingress"] == [
        {"fromEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "shop",
                                            "k8s:app": "a"}}],
         "toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}]}]},
        {"fromEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "shop",
                                            "k8s:app": "a"}}],
         "icmps": [{"fields": [{"family": "IPv4", "type": 8},
                               {"family": "IPv6", "type": 128}]}]}]
    every = workload(ingress=(allow(pods("shop", app="a"), ports=(Port(Transport.ICMP),)),),
                     egress=None)
    with pytest.raises(UnsupportedError, match="every ICMP type"):
        emit(every)
    files, _, dropped = emit(every, best_effort=True)
    assert len(dropped) == 1
    # The rule is left out whole, not widened to every port: the direction stays isolated.
    assert spec_of(files)["ingress"] == [{}]


def test_apiserver_is_the_kube_apiserver_entity() -> None:
    api = CidrPeer("172.18.0.1/32", CidrRole.APISERVER, (), "apiserver")
    files, notes, _ = emit(workload(egress=(allow(api, ports=(Port(TCP, 6443),)),),
                                    ingress=None))
    assert spec_of(files)["egress"][0]["toEntities"] == ["kube-apiserver"]
    assert any("kube-apiserver entity" in n for n in notes)


def test_node_addresses_stay_cidrs_and_say_what_they_need() -> None:
    node = CidrPeer("172.18.0.2/32", CidrRole.NODE, (), "worker-1")
    files, notes, _ = emit(workload(ingress=(allow(node, ports=(Port(TCP, 8080),)),),
                                    egress=None))
    assert spec_of(files)["ingress"][0]["fromCIDRSet"] == [{"cidr": "172.18.0.2/32"}]
    assert any("policy-cidr-match-mode: nodes" in n and "shop/p" in n for n in notes)


# ------------------------------------------------------------------------------------------------
# toFQDNs and the DNS proxy


def test_named_external_peers_are_fqdns_with_the_dns_proxy_rule() -> None:
    gw = CidrPeer("203.0.113.10/32", CidrRole.EXTERNAL, (), "api-gw", ("api.gw.example",))
    resolver = CidrPeer("169.254.20.10/32", CidrRole.DNS, (), "dns-169-254-20-10")
    files, notes, _ = emit(workload(ingress=None, egress=(
        DNS_RULE, allow(resolver, ports=(Port(UDP, 53), Port(TCP, 5353))),
        allow(gw, ports=(Port(TCP, 443),)))))
    egress = spec_of(files)["egress"]
    dns = {"dns": [{"matchPattern": "*"}]}
    assert egress[0]["toPorts"] == [{"ports": [{"port": "53", "protocol": "TCP"},
                                               {"port": "53", "protocol": "UDP"}],
                                     "rules": dns}]
    # Only port 53 goes through the proxy; the other port of the same rule stays plain.
    assert egress[1]["toPorts"] == [{"ports": [{"port": "53", "protocol": "UDP"}], "rules": dns},
                                    {"ports": [{"port": "5353", "protocol": "TCP"}]}]
    assert egress[2] == {"toFQDNs": [{"matchName": "api.gw.example"}],
                         "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}]}
    assert any("toFQDNs" in n for n in notes)
    assert any("Local Redirect Policy" in n for n in notes)


def test_without_dns_egress_named_peers_keep_their_addresses() -> None:
    gw = CidrPeer("203.0.113.10/32", CidrRole.EXTERNAL, (), "api-gw", ("api.gw.example",))
    files, notes, _ = emit(workload(ingress=None, egress=(allow(gw, ports=(Port(TCP, 443),)),)))
    assert spec_of(files)["egress"] == [{
        "toCIDRSet": [{"cidr": "203.0.113.10/32"}],
        "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}]}]
    assert not any("toFQDNs" in n for n in notes)


def test_names_cilium_cannot_match_keep_their_addresses() -> None:
    odd = CidrPeer("203.0.113.11/32", CidrRole.EXTERNAL, (), "odd", ("bad name.example",))
    files, _, _ = emit(workload(ingress=None, egress=(
        DNS_RULE, allow(odd, ports=(Port(TCP, 443),)))))
    egress = spec_of(files)["egress"]
    assert egress[1]["toCIDRSet"] == [{"cidr": "203.0.113.11/32"}]
    assert "rules" not in egress[0]["toPorts"][0]  # no FQDN rule: no proxy either


def test_ingress_from_a_named_peer_is_by_address() -> None:
    client = CidrPeer("198.51.100.7/32", CidrRole.EXTERNAL, (), "c", ("client.example",))
    files, _, _ = emit(workload(ingress=(allow(client, ports=(Port(TCP, 443),)),),
                                egress=(DNS_RULE,)))
    assert spec_of(files)["ingress"][0]["fromCIDRSet"] == [{"cidr": "198.51.100.7/32"}]


# ------------------------------------------------------------------------------------------------
# What is reported


def test_identity_label_filter() -> None:
    for key in ("app", "app.kubernetes.io/name", "pod-template-hash", "kubernetes.io/os",
                "k8s.io/x", "statefulset.kubernetes.io/pod-name", "controller-revision-hash",
                "topology.kubernetes.io/zone", "beta.kubernetes.io/arch",
                "node.beta.kubernetes.io/x", "annotation.x", "io.kubernetes.pod.namespace",
                "io.kubernetes.container.name", "batch.kubernetes.io/job-name", "etcd_node"):
        # The dialect's copy agrees with the evaluator's (pkg/labelsfilter/filter.go).
        assert in_identity(key) == identity_label_kept(key), key
    assert not in_identity("pod-template-hash")
    assert in_identity("topology.kubernetes.io/zone")  # ignore prefixes anchor at the start


def test_selectors_on_filtered_labels_are_reported() -> None:
    policy = workload(ingress=(allow(pods("shop", **{"kubernetes.io/os": "linux"})),),
                      egress=None, **{"pod-template-hash": "abc"})
    with pytest.raises(UnsupportedError) as info:
        emit(policy)
    assert len(info.value.reasons) == 2
    assert all("left out of Cilium identities" in r for r in info.value.reasons)


def test_ordered_actions_are_reported_not_widened() -> None:
    policy = workload(ingress=(Rule(Action.DENY, (pods("shop", app="x"),)), allow()),
                      egress=None)
    with pytest.raises(UnsupportedError, match="Deny rule"):
        emit(policy)
    files, _, dropped = emit(policy, best_effort=True)
    assert dropped and spec_of(files)["ingress"] == [{"fromEntities": ["all"]}]


def test_staged_is_noted() -> None:
    out = get_target("cilium").dialect(staged=True).emit(PolicySet((workload(),)))
    assert any("--staged" in n for n in out.notes)


def test_cluster_scoped_policies_become_ccnps_one_spec_per_member() -> None:
    policy = Policy("baseline", None, members=(pods("shop", app="a"), pods("bank", app="b")),
                    ingress=(allow(pods("shop", app="lb")),))
    files, _, _ = emit(policy)
    doc = files["_clusterwide/baseline.yaml"][0]
    assert doc["kind"] == "CiliumClusterwideNetworkPolicy"
    assert [s["endpointSelector"] for s in doc["specs"]] == [
        {"matchLabels": {"k8s:io.kubernetes.pod.namespace": "shop", "k8s:app": "a"}},
        {"matchLabels": {"k8s:io.kubernetes.pod.namespace": "bank", "k8s:app": "b"}}]
    with pytest.raises(UnsupportedError, match="without members"):
        emit(Policy("all", None, ingress=()))


# ------------------------------------------------------------------------------------------------
# Guardrails


def guard(ingress: tuple[Rule, ...] | None, egress: tuple[Rule, ...] | None = None) -> Policy:
    def close(rules: tuple[Rule, ...] | None) -> tuple[Rule, ...] | None:
        return None if rules is None else (*rules, Rule(Action.LOG), Rule(Action.DENY))

    return Policy("pci-bank-db", None, members=(pods("bank", app="db"),),
                  ingress=close(ingress), egress=close(egress), tier="segmenter-compliance",
                  zone="pci: restricted")


def passes(*peers: Any) -> Rule:
    return Rule(Action.PASS, tuple(peers), (Port(TCP, 5432),))


def test_guardrail_denies_the_complement_of_the_planned_peers() -> None:
    files, notes, _ = emit(guardrails=(guard((passes(pods("bank", app="api", tier="x"),
                                                     pods("bank", app="batch")),)),))
    doc = files["_clusterwide/segmenter-compliance.pci-bank-db.yaml"][0]
    spec = doc["spec"]
    assert spec["endpointSelector"] == {
        "matchLabels": {"k8s:io.kubernetes.pod.namespace": "bank", "k8s:app": "db"}}
    assert spec["enableDefaultDeny"] == {"ingress": False, "egress": False}
    assert "egressDeny" not in spec
    selectors, entities = spec["ingressDeny"]
    assert entities == {"fromEntities": ["remote-node", "world"]}
    assert selectors["fromEndpoints"] == [
        {"matchExpressions": [
            {"key": "k8s:io.kubernetes.pod.namespace", "operator": "Exists"},
            {"key": "k8s:io.kubernetes.pod.namespace", "operator": "NotIn",
             "values": ["bank"]}]},
        # not (api and x) and not batch = (app not in {api, batch}) or (tier != x, app != batch)
        {"matchLabels": {"k8s:io.kubernetes.pod.namespace": "bank"},
         "matchExpressions": [{"key": "k8s:app", "operator": "NotIn",
                               "values": ["api", "batch"]}]},
        {"matchLabels": {"k8s:io.kubernetes.pod.namespace": "bank"},
         "matchExpressions": [{"key": "k8s:app", "operator": "NotIn", "values": ["batch"]},
                              {"key": "k8s:tier", "operator": "NotIn", "values": ["x"]}]}]
    assert any("planned peers on unplanned ports" in n for n in notes)


def test_guardrail_keeps_world_and_nodes_when_address_peers_are_planned() -> None:
    files, notes, _ = emit(guardrails=(guard(
        (passes(CidrPeer("203.0.113.7/32")),),
        (passes(CidrPeer("172.18.0.1/32", CidrRole.APISERVER)),)),))
    spec = spec_of(files, "_clusterwide/segmenter-compliance.pci-bank-db.yaml")
    assert spec["ingressDeny"][1] == {"fromEntities": ["remote-node"]}
    # The kube-apiserver identity also carries remote-node or world: neither is denied.
    assert len(spec["egressDeny"]) == 1 and "toEndpoints" in spec["egressDeny"][0]
    assert any("unplanned addresses outside the cluster (ingress)" in n for n in notes)
    assert any("other nodes (egress)" in n for n in notes)


def test_guardrail_with_every_peer_planned_writes_nothing() -> None:
    files, notes, _ = emit(guardrails=(guard((Rule(Action.PASS, (), (Port(TCP, 5432),)),)),))
    assert files == {}
    assert any("zone guardrail" in n for n in notes)


def test_guardrail_of_another_shape_is_reported() -> None:
    odd = Policy("g", None, members=(pods("bank", app="db"),),
                 ingress=(Rule(Action.DENY, (pods("bank", app="x"),)),
                          Rule(Action.PASS, (pods("bank", app="y"),))))
    with pytest.raises(UnsupportedError, match="guardrail g"):
        emit(guardrails=(odd,))


def test_guardrail_complement_too_large_is_left_to_default_deny() -> None:
    peers = [pods("bank", **{f"k{i}": "a", f"j{i}": "b"}) for i in range(6)]
    assert MAX_COMPLEMENT_TERMS < 2 ** 6
    files, notes, _ = emit(guardrails=(guard((passes(*peers),)),))
    spec = spec_of(files, "_clusterwide/segmenter-compliance.pci-bank-db.yaml")
    assert len(spec["ingressDeny"][0]["fromEndpoints"]) == 1  # other namespaces only
    assert any("pods of bank outside the planned selectors" in n for n in notes)


# ------------------------------------------------------------------------------------------------
# Read back through the evaluator


def test_infrastructure_scenario_allows_exactly_its_flows_under_cilium() -> None:
    b = infrastructure_peers()
    graph, inventory = b.graph, b.inventory()
    result = plan(graph, Config(), dns_nodes=["kube-system/Deployment/coredns"])
    output = get_target("cilium").dialect().emit(lower(graph, result, inventory,
                                              dns=detect_dns(graph, inventory)))
    docs = [m for _, ms in sorted(output.files.items()) for m in ms]
    engine = PolicyEngine.from_manifests(
        docs, namespaces={n.name: n.labels for n in inventory.namespaces}, enforcement="cilium")
    assert engine.rejected == [] and engine.ignored == []
    by_owner = {p.owner.id: p for p in inventory.pods}

    def endpoint(node: str) -> EvalEndpoint:
        if node in by_owner:
            pod = by_owner[node]
            return EvalEndpoint(pod.ips[0], pod.namespace, pod.labels, node=pod.node,
                                ports=pod.ports, name=node)
        attrs = graph.nodes[node]
        return EvalEndpoint(attrs["addresses"][0], name=node,
                            node=node.split(":", 1)[1] if attrs["kind"] == "node" else None,
                            kube_apiserver=attrs["kind"] == "apiserver",
                            dns_names=tuple(attrs.get("dns_names") or ()))

    for client, server, data in graph.edges(data=True):
        for entry in data["ports"]:
            verdict = engine.check(endpoint(client), endpoint(server),
                                   Transport.parse(entry["protocol"]), entry["port"])
            assert verdict.allowed, (client, server, verdict.summary())
    api, db = endpoint("clinic/Deployment/api"), endpoint("clinic/StatefulSet/billing-db")
    # The kubelet probe comes from the pod's own node: always allowed. Another node is not
    # (its CIDR rule needs policy-cidr-match-mode: nodes, as noted).
    assert engine.check(EvalEndpoint("172.18.0.3", node="worker-2"), api, TCP, 8080).allowed \
        is False
    # The API server by identity, whichever address; not another address on that port.
    assert engine.check(api, EvalEndpoint("172.18.0.9", kube_apiserver=True), TCP, 6443).allowed
    assert not engine.check(api, EvalEndpoint("172.18.0.9"), TCP, 6443).allowed
    # By name: another address of fhir.example is allowed, the same address without it is not.
    assert engine.check(api, EvalEndpoint("2001:db8::99", dns_names=("fhir.example",)), TCP,
                        443).allowed
    assert not engine.check(api, EvalEndpoint("2001:db8::10"), TCP, 443).allowed
    assert not engine.check(db, api, TCP, 8080).allowed


def test_two_tier_guardrail_holds_against_a_broad_allow() -> None:
    """Defence in depth: a Kubernetes policy opening the PCI database to every pod and the
    internet leaves the unplanned peers denied by the guardrail (deny precedence)."""
    b = SCENARIOS["two-tier"]()
    graph, inventory = b.graph, b.inventory()
    pci = SensitiveDecl("pci", Labels.of({"app": "db"}), "payments", source="t")
    result = plan(graph, Config(sensitive=(pci,)), dns_nodes=["kube-system/Deployment/coredns"])
    output = get_target("cilium").dialect().emit(lower(graph, result, inventory,
                                              dns=detect_dns(graph, inventory)))
    docs = [m for _, ms in sorted(output.files.items()) for m in ms]
    broad = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": "oops", "namespace": "payments"},
             "spec": {"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]}}
    namespaces = {n.name: n.labels for n in inventory.namespaces}
    opened = PolicyEngine.from_manifests([*docs, broad], namespaces=namespaces,
                                         enforcement="cilium")
    by_owner = {p.owner.id: p for p in inventory.pods}

    def pod(owner: str) -> EvalEndpoint:
        p = by_owner[owner]
        return EvalEndpoint(p.ips[0], p.namespace, p.labels, node=p.node, ports=p.ports)

    db, api, web = (pod("payments/StatefulSet/db"), pod("payments/Deployment/api"),
                    pod("shop/Deployment/web"))
    assert opened.check(api, db, TCP, 5432).allowed  # planned
    # A new pod beside the database: the broad policy admits it, the guardrail denies it.
    stranger = EvalEndpoint("10.244.9.9", "payments", Labels.of({"app": "x"}))
    assert not opened.check(stranger, db, TCP, 5432).ingress.allowed
    without = PolicyEngine.from_manifests(
        [d for d in docs if d["kind"] != "CiliumClusterwideNetworkPolicy"] + [broad],
        namespaces=namespaces, enforcement="cilium")
    assert without.check(stranger, db, TCP, 5432).ingress.allowed
    # web -> db: web's egress denies it anyway; the guardrail denies it at the db too.
    ingress = opened.check(web, db, TCP, 5432).ingress
    assert not ingress.allowed and ingress.rule == "ingressDeny[0]"
    outside = opened.check(EvalEndpoint("198.51.100.20"), db, TCP, 5432).ingress
    assert not outside.allowed and outside.rule == "ingressDeny[1]"
    # A planned peer on an unplanned port: the broad allow wins there (noted gap).
    assert opened.check(api, db, TCP, 22).ingress.allowed
