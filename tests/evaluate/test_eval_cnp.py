"""ClusterNetworkPolicy enforcement: policy-semantics.md §2.8's tricky cases one by one, then the
rest of §2.7 (priorities, protocols, named ports, fail-closed peers), validation, and the
upstream valid/invalid examples of the corpus."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest
import yaml
from eval_helpers import ICMP, TCP, UDP, allowed, ext, match, netpol, pod
from eval_helpers import engine as make_engine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_eval_engine import NS_LABELS, endpoint, k8s_policy

from segmenter.evaluate import EvalEndpoint, PolicyEngine, is_warning, validate_manifest
from segmenter.model import Transport
from tests.conftest import CORPORA

CNP = "clusternetworkpolicy"
EXAMPLES = CORPORA / "crds" / "network-policy-api" / "examples"
ALL_PODS: dict[str, Any] = {"namespaces": {}}


def cnp(name: str, tier: str = "Admin", priority: int = 100, *,
        subject: dict[str, Any] | None = None, ingress: Any = None, egress: Any = None
        ) -> dict[str, Any]:
    """A ClusterNetworkPolicy; ``subject`` defaults to every pod (``namespaces: {}``)."""
    spec: dict[str, Any] = {"tier": tier, "priority": priority,
                            "subject": subject if subject is not None else dict(ALL_PODS)}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": name}, "spec": spec}


def rule(action: str, *peers: dict[str, Any], protocols: Any = None, egress: bool = False,
         name: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"action": action, "to" if egress else "from": list(peers)}
    if name is not None:
        out["name"] = name
    if protocols is not None:
        out["protocols"] = protocols
    return out


def ns_peer(name: str) -> dict[str, Any]:
    return {"namespaces": match(**{"kubernetes.io/metadata.name": name})}


def tcp(number: int) -> dict[str, Any]:
    return {"tcp": {"destinationPort": {"number": number}}}


def engine(*docs: dict[str, Any], **options: Any) -> PolicyEngine:
    return make_engine(*docs, enforcement=CNP, **options)


def errors(doc: dict[str, Any]) -> list[str]:
    return [p for p in validate_manifest(doc) if not is_warning(p)]


# ---------------------------------------------------------------------------------------------
# §2.8, case by case


def test_case_1_baseline_ingress_deny_never_matches_an_external_client() -> None:
    e = engine(cnp("b", "Baseline", subject=ALL_PODS, ingress=[rule("Deny", ALL_PODS)]))
    server = pod("shop", app="web")
    assert allowed(e, ext("198.51.100.9"), server, TCP, 8080)
    assert not allowed(e, pod("other"), server, TCP, 8080)
    # The NetworkPolicy default deny is what blocks it (the tricky case's advice).
    e = engine(cnp("b", "Baseline", ingress=[rule("Deny", ALL_PODS)]),
               netpol("deny", "shop", types=["Ingress"]))
    assert not allowed(e, ext("198.51.100.9"), server, TCP, 8080)


def test_case_2_baseline_egress_deny_to_namespaces_leaves_the_internet_open() -> None:
    client = pod("shop", app="web")
    e = engine(cnp("b", "Baseline", egress=[rule("Deny", ALL_PODS, egress=True)]))
    assert allowed(e, client, ext("203.0.113.7"), TCP, 443)
    assert not allowed(e, client, pod("other"), TCP, 443)
    e = engine(cnp("b", "Baseline", egress=[rule(
        "Deny", ALL_PODS, {"networks": ["0.0.0.0/0", "::/0"]}, egress=True)]))
    assert not allowed(e, client, ext("203.0.113.7"), TCP, 443)
    assert not allowed(e, client, ext("2001:db8::7"), TCP, 443)


def test_case_3_networks_0_0_0_0_also_matches_pod_traffic() -> None:
    deny_internet = rule("Deny", {"networks": ["0.0.0.0/0"]}, egress=True)
    client, server = pod("shop", app="web"), pod("shop", app="api")
    e = engine(cnp("a", egress=[deny_internet]))
    assert not allowed(e, client, server, TCP, 80)
    assert allowed(e, client, ext("2001:db8::7"), TCP, 443)  # IPv6 is separate
    # An earlier Pass for pod traffic hands it to the NetworkPolicy tier (none here: allowed).
    e = engine(cnp("a", egress=[rule("Pass", ALL_PODS, egress=True), deny_internet]))
    assert allowed(e, client, server, TCP, 80)
    assert not allowed(e, client, ext("203.0.113.7"), TCP, 443)


def test_case_4_admin_accept_overrides_a_networkpolicy_deny() -> None:
    e = engine(cnp("a", ingress=[rule("Accept", ns_peer("monitoring"))]),
               netpol("deny", "shop", types=["Ingress"]))
    server = pod("shop", app="web")
    verdict = e.check(pod("monitoring", app="prom"), server, TCP, 9090)
    assert verdict.allowed
    assert verdict.ingress.policy == "policy.networking.k8s.io/ClusterNetworkPolicy a"
    assert verdict.ingress.rule == "ingress[0]"
    assert not allowed(e, pod("shop", app="x"), server, TCP, 9090)


def test_case_5_admin_pass_leaves_the_decision_to_the_networkpolicy() -> None:
    e = engine(cnp("a", ingress=[rule("Pass", ALL_PODS)]),
               netpol("deny", "shop", types=["Ingress"]),
               cnp("b", "Baseline", ingress=[rule("Accept", ALL_PODS)]))
    verdict = e.check(pod("other"), pod("shop", app="web"), TCP, 80)
    assert not verdict.allowed
    assert verdict.ingress.policy == "networking.k8s.io/NetworkPolicy shop/deny"
    # Not isolated by a NetworkPolicy: the Baseline tier decides (here Accept).
    assert allowed(e, pod("other"), pod("free"), TCP, 80)


def test_case_6_baseline_pass_ends_the_tier_and_allows() -> None:
    e = engine(cnp("p", "Baseline", 10, ingress=[rule("Pass", ALL_PODS)]),
               cnp("d", "Baseline", 20, ingress=[rule("Deny", ALL_PODS)]))
    verdict = e.check(pod("a"), pod("b"), TCP, 80)
    assert verdict.allowed
    assert "allowed by the Kubernetes default" in verdict.ingress.reason
    # Without the Pass, the Deny at 20 decides.
    assert not allowed(engine(cnp("d", "Baseline", 20, ingress=[rule("Deny", ALL_PODS)])),
                       pod("a"), pod("b"), TCP, 80)


def test_case_7_egress_accept_does_not_bypass_ingress_at_the_destination() -> None:
    a, b = pod("shop", app="a"), pod("shop", app="b")
    e = engine(cnp("a", subject={"pods": {"podSelector": match(app="a")}},
                   egress=[rule("Accept", {"pods": {"podSelector": match(app="b")}},
                                egress=True)]),
               netpol("b-ingress", "shop", pod_selector=match(app="b"), types=["Ingress"],
                      ingress=[{"from": [{"podSelector": match(app="c")}]}]))
    verdict = e.check(a, b, TCP, 80)
    assert verdict.egress.allowed and not verdict.ingress.allowed
    assert not verdict.allowed


def test_case_8_equal_priorities_are_broken_by_name() -> None:
    accept = cnp("a-accept", priority=100, ingress=[rule("Accept", ALL_PODS)])
    deny = cnp("b-deny", priority=100, ingress=[rule("Deny", ALL_PODS)])
    assert allowed(engine(accept, deny), pod("x"), pod("y"), TCP, 80)
    deny["metadata"]["name"] = "0-deny"
    assert not allowed(engine(accept, deny), pod("x"), pod("y"), TCP, 80)


def test_case_9_tcp_without_destination_port_is_rejected() -> None:
    doc = cnp("a", ingress=[rule("Deny", ALL_PODS, protocols=[{"tcp": {}}])])
    assert errors(doc) == ["spec.ingress[0].protocols[0].tcp.destinationPort: required (use "
                           "range 1-65535 for every port)"]
    e = engine(doc)
    assert len(e.rejected) == 1
    assert allowed(e, pod("x"), pod("y"), TCP, 80)


def test_case_10_named_port_with_networks() -> None:
    doc = cnp("a", egress=[rule("Deny", {"networks": ["203.0.113.0/24"]}, egress=True,
                                protocols=[{"destinationNamedPort": "https"}])])
    problems = validate_manifest(doc)
    assert errors(doc) == [] and any("rejected by the experimental CRD" in p for p in problems)
    e = engine(doc)
    assert allowed(e, pod("x"), ext("203.0.113.7"), TCP, 443)  # no named ports out there
    nodes = cnp("a", egress=[rule("Accept", {"nodes": {}}, egress=True,
                                  protocols=[{"destinationNamedPort": "https"}])])
    assert any("rejected by the experimental CRD" in p for p in errors(nodes))


def test_case_11_host_networked_pods_are_never_peers_nor_subjects() -> None:
    e = engine(cnp("a", ingress=[rule("Accept", ns_peer("monitoring"))]),
               netpol("deny", "shop", types=["Ingress"]))
    scraper = pod("monitoring", host_network=True, node="node-2", app="agent")
    assert not allowed(e, scraper, pod("shop", node="node-1"), TCP, 9100)
    # As a subject: an Admin egress Deny for every namespace does not reach it.
    e = engine(cnp("a", egress=[rule("Deny", ALL_PODS, {"networks": ["0.0.0.0/0"]},
                                     egress=True)]))
    assert allowed(e, scraper, ext("203.0.113.7"), TCP, 443)
    assert not allowed(e, pod("monitoring"), ext("203.0.113.7"), TCP, 443)


# ---------------------------------------------------------------------------------------------
# The rest of §2.7


def test_priority_orders_policies_before_names() -> None:
    e = engine(cnp("a", priority=20, ingress=[rule("Accept", ALL_PODS)]),
               cnp("z", priority=10, ingress=[rule("Deny", ALL_PODS)]))
    assert not allowed(e, pod("x"), pod("y"), TCP, 80)
    assert [p.name for p in e.policies] == ["z", "a"]


def test_rules_run_in_written_order_and_admin_runs_before_baseline() -> None:
    e = engine(cnp("a", ingress=[rule("Deny", ns_peer("x"), protocols=[tcp(22)]),
                                 rule("Accept", ALL_PODS)]),
               cnp("b", "Baseline", priority=0, ingress=[rule("Deny", ALL_PODS)]))
    assert not allowed(e, pod("x"), pod("y"), TCP, 22)
    assert allowed(e, pod("x"), pod("y"), TCP, 23)


def test_subject_pods_and_namespaces() -> None:
    e = engine(cnp("a", subject={"pods": {"namespaceSelector": match(env="prod"),
                                          "podSelector": match(app="db")}},
                   ingress=[rule("Deny", ALL_PODS)]),
               namespaces={"pay": {"env": "prod"}, "dev": {"env": "dev"}})
    assert not allowed(e, pod("x"), pod("pay", app="db"), TCP, 5432)
    assert allowed(e, pod("x"), pod("pay", app="api"), TCP, 5432)
    assert allowed(e, pod("x"), pod("dev", app="db"), TCP, 5432)
    # pods.namespaceSelector left out means every namespace (a value field upstream).
    e = engine(cnp("a", subject={"pods": {"podSelector": match(app="db")}},
                   ingress=[rule("Deny", ALL_PODS)]))
    assert not allowed(e, pod("x"), pod("dev", app="db"), TCP, 5432)


def test_pods_peer_is_namespace_and_pod_selector() -> None:
    peer = {"pods": {"namespaceSelector": match(team="a"), "podSelector": match(app="web")}}
    e = engine(cnp("a", ingress=[rule("Deny", peer)]),
               namespaces={"one": {"team": "a"}, "two": {"team": "b"}})
    assert not allowed(e, pod("one", app="web"), pod("x"), TCP, 80)
    assert allowed(e, pod("one", app="api"), pod("x"), TCP, 80)
    assert allowed(e, pod("two", app="web"), pod("x"), TCP, 80)


def test_protocols_ranges_named_ports_and_icmp() -> None:
    protocols = [{"tcp": {"destinationPort": {"range": {"start": 8000, "end": 8080}}}},
                 {"udp": {"destinationPort": {"number": 53}}},
                 {"destinationNamedPort": "metrics"}]
    e = engine(cnp("a", ingress=[rule("Deny", ALL_PODS, protocols=protocols)]))
    server = pod("s", ports=[(9153, "metrics"), (9154, "metrics", UDP)])
    assert not allowed(e, pod("c"), server, TCP, 8000)
    assert not allowed(e, pod("c"), server, TCP, 8080)
    assert allowed(e, pod("c"), server, TCP, 8081)
    assert not allowed(e, pod("c"), server, UDP, 53)
    assert allowed(e, pod("c"), server, TCP, 53)
    assert not allowed(e, pod("c"), server, TCP, 9153)  # named port of the destination pod
    assert not allowed(e, pod("c"), server, UDP, 9154)  # its own protocol
    assert allowed(e, pod("c"), server, UDP, 9153)
    assert allowed(e, pod("c"), pod("s"), TCP, 9153)  # a pod without the name
    assert allowed(e, pod("c"), server, ICMP, 8)  # protocols set: never ICMP
    e = engine(cnp("a", ingress=[rule("Deny", ALL_PODS)]))
    assert not allowed(e, pod("c"), server, ICMP, 8)  # no protocols: every protocol
    assert not allowed(e, pod("c"), server, Transport.SCTP, 3868)


def test_fail_closed_on_a_peer_with_no_known_field() -> None:
    unknown = {"services": {"name": "x"}}
    deny = cnp("a", ingress=[rule("Deny", unknown)])
    assert errors(deny)
    assert engine(deny).rejected  # the API server would refuse it; by default left out
    assert not allowed(engine(deny, skip_invalid=False), pod("x"), pod("y"), TCP, 80)
    passing = cnp("a", ingress=[rule("Pass", unknown)])
    assert not allowed(engine(passing, skip_invalid=False), pod("x"), pod("y"), TCP, 80)
    accept = cnp("a", ingress=[rule("Accept", unknown), rule("Deny", ALL_PODS)])
    assert not allowed(engine(accept, skip_invalid=False), pod("x"), pod("y"), TCP, 80)
    # An ingress networks peer is unknown to ingress (ingress peers are pods only).
    wrong = cnp("a", ingress=[rule("Deny", {"networks": ["0.0.0.0/0"]})])
    assert any("ingress peers can only be namespaces or pods" in p for p in errors(wrong))
    assert not allowed(engine(wrong, skip_invalid=False), ext("203.0.113.7"), pod("y"), TCP, 80)


def test_nodes_and_domain_names_are_never_credited() -> None:
    accept = cnp("a", egress=[rule("Accept", {"nodes": {}},
                                   {"domainNames": ["api.example.com"]}, egress=True),
                              rule("Deny", ALL_PODS, {"networks": ["0.0.0.0/0"]}, egress=True)])
    e = engine(accept)
    assert e.rejected == []
    assert len([w for w in e.warnings if "matches nothing here" in w]) == 2
    assert not allowed(e, pod("x"), ext("172.18.0.2", node="node-1"), TCP, 10250)
    deny = cnp("a", egress=[rule("Deny", {"nodes": {}}, egress=True)])
    e = engine(deny)
    assert len(e.rejected) == 1 and "cannot be evaluated here" in e.rejected[0]


def test_hairpin_on_the_pod_ip_is_outside_cluster_network_policy() -> None:
    e = engine(cnp("a", ingress=[rule("Deny", ALL_PODS)],
                   egress=[rule("Deny", ALL_PODS, egress=True)]))
    me = pod("x")
    assert allowed(e, me, me, TCP, 80)


def test_verdict_cache_tells_cidrs_apart() -> None:
    """Two external addresses differ only by a CNP network: the engine must not share their
    cached verdict (its endpoint classes include the CNP CIDRs)."""
    e = engine(cnp("a", egress=[rule("Deny", {"networks": ["203.0.113.0/24"]}, egress=True)]))
    client = pod("x")
    assert not allowed(e, client, ext("203.0.113.7"), TCP, 443)
    assert allowed(e, client, ext("198.51.100.7"), TCP, 443)
    assert not allowed(e, client, ext("203.0.113.8"), TCP, 443)


def test_other_enforcements_ignore_cluster_network_policy() -> None:
    doc = cnp("a", ingress=[rule("Deny", ALL_PODS)])
    for enforcement in ("kubernetes", "calico"):
        e = make_engine(doc, enforcement=enforcement)
        assert allowed(e, pod("x"), pod("y"), TCP, 80)
        assert any("not evaluated" in i for i in e.ignored)
    assert not allowed(engine(doc), pod("x"), pod("y"), TCP, 80)


def test_policies_for_lists_both_tiers_in_order() -> None:
    e = engine(cnp("base", "Baseline", ingress=[rule("Deny", ALL_PODS)]),
               netpol("np", "shop", types=["Ingress"]),
               cnp("admin", ingress=[rule("Pass", ALL_PODS)]))
    assert e.policies_for(pod("shop"), "ingress") == [
        "policy.networking.k8s.io/ClusterNetworkPolicy admin",
        "networking.k8s.io/NetworkPolicy shop/np",
        "policy.networking.k8s.io/ClusterNetworkPolicy base"]


# ---------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda d: d["spec"].pop("tier"), "spec.tier: required"),
    (lambda d: d["spec"].update(tier="Developer"), "spec.tier: unsupported value 'Developer'"),
    (lambda d: d["spec"].update(priority=1001), "spec.priority: must be an integer from 0"),
    (lambda d: d["spec"].update(subject={}), "spec.subject: must set exactly one"),
    (lambda d: d["spec"].update(subject={"pods": {}}), "spec.subject.pods.podSelector: required"),
    (lambda d: d["spec"]["ingress"][0].update(action="Allow"), "must be Accept, Deny or Pass"),
    (lambda d: d["spec"]["ingress"][0].update({"from": []}), "at least 1 item"),
    (lambda d: d["spec"]["ingress"][0].update({"from": [ALL_PODS] * 26}), "at most 25 items"),
    (lambda d: d["spec"].update(ingress=d["spec"]["ingress"] * 26), "at most 25 rules"),
    (lambda d: d["spec"]["ingress"][0].update(name="x" * 101), "at most 100 characters"),
    (lambda d: d["spec"]["ingress"][0]["from"].append({"namespaces": {}, "pods": {
        "podSelector": {}}}), "must set exactly one of namespaces, pods"),
    (lambda d: d["spec"]["ingress"][0].update(protocols=[tcp(0)]), "from 1 to 65535"),
    (lambda d: d["spec"]["ingress"][0].update(protocols=[{"tcp": {"destinationPort": {
        "range": {"start": 80, "end": 80}}}}]), "start 80 must be less than end 80"),
    (lambda d: d["spec"].update(egress=[rule("Deny", {"networks": ["10.0.0.1"]}, egress=True)]),
     "is not a CIDR"),
    (lambda d: d["spec"].update(egress=[rule("Deny", {"networks": ["10.0.0.0/8"] * 2},
                                             egress=True)]), "duplicate value"),
    (lambda d: d["spec"].update(egress=[rule("Accept", {"domainNames": ["*"]}, egress=True)]),
     "is not a domain name"),
    (lambda d: d["spec"].update(ports=[]), "unknown field 'ports'"),
], ids=["tier-missing", "tier-enum", "priority", "subject-empty", "subject-pods", "action",
        "no-peers", "peers-26", "rules-26", "name-101", "two-fields", "port-0", "range-equal",
        "cidr", "cidr-set", "domain", "unknown-field"])
def test_validation_refuses(edit: Any, expected: str) -> None:
    doc = cnp("a", ingress=[rule("Deny", ALL_PODS)])
    edit(doc)
    problems = errors(doc)
    assert any(expected in p for p in problems), problems


def test_validation_warnings() -> None:
    doc = cnp("a", egress=[rule("Deny", {"domainNames": ["*.example.com"]}, egress=True)])
    doc["metadata"]["namespace"] = "shop"
    assert errors(doc) == []
    warnings = [p for p in validate_manifest(doc) if is_warning(p)]
    assert any("only supported in Accept rules" in w for w in warnings)
    assert any("experimental channel CRD only" in w for w in warnings)
    assert any("cluster-scoped" in w for w in warnings)


def _examples(kind: str) -> list[Any]:
    folder = EXAMPLES / kind
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent: the upstream examples come from the team corpus")
    files = sorted(folder.glob("*.yaml"))
    assert files
    return files


def test_upstream_valid_examples_validate_and_evaluate() -> None:
    for path in _examples("valid"):
        doc = yaml.safe_load(path.read_text())
        assert errors(doc) == [], path.name
        e = engine(doc)
        assert e.rejected == [] and len(e.policies) == 1, path.name
        # Both deny ingress into namespace sensitive-ns from every pod (on some ports).
        target = pod("sensitive-ns", ports=[(9000, "http")])
        assert not allowed(e, pod("other"), target, TCP, 8080), path.name
        assert allowed(e, ext(), target, TCP, 8080), path.name


def test_upstream_invalid_examples_are_refused() -> None:
    for path in _examples("invalid"):
        doc = yaml.safe_load(path.read_text())
        problems = errors(doc)
        assert problems, path.name
        assert engine(doc).rejected, path.name
    doc = yaml.safe_load((EXAMPLES / "invalid" / "invalid-ingress-action.yaml").read_text())
    assert "spec.ingress[0].action: unsupported value 'Invalid': must be Accept, Deny or Pass" in (
        errors(doc))


# ---------------------------------------------------------------------------------------------
# The engine against a direct transcription of §2.7 (and §1.9 for the NetworkPolicy tier)


def _sel(sel: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """matchLabels only: the strategies below never draw expressions."""
    return all(labels.get(k) == v for k, v in ((sel or {}).get("matchLabels") or {}).items())


def _ns_labels(ns: str) -> dict[str, str]:
    return {**dict(NS_LABELS[ns].items), "kubernetes.io/metadata.name": ns}


def _in(ip: str, cidr: str) -> bool:
    import ipaddress

    address, net = ipaddress.ip_address(ip), ipaddress.ip_network(cidr)
    return address.version == net.version and address in net


def _named(dst: EvalEndpoint, name: str, proto: Transport, port: int) -> bool:
    return dst.is_pod and any(cp.name == name and cp.protocol == proto and cp.port == port
                              for cp in dst.ports)


def _np_peer(q: dict[str, Any], other: EvalEndpoint, pol_ns: str) -> bool:
    if "ipBlock" in q:
        block = q["ipBlock"]
        return _in(other.ip, block["cidr"]) and not any(_in(other.ip, e)
                                                        for e in block.get("except", []))
    if not other.is_pod:
        return False
    assert other.namespace is not None
    if "namespaceSelector" in q:
        if not _sel(q["namespaceSelector"], _ns_labels(other.namespace)):
            return False
    elif other.namespace != pol_ns:
        return False
    return _sel(q.get("podSelector"), dict(other.labels.items))


def _np_ports(ports: list[dict[str, Any]] | None, dst: EvalEndpoint, proto: Transport,
              port: int) -> bool:
    if not ports:
        return True
    for e in ports:
        if proto != Transport.parse(e.get("protocol", "TCP")):
            continue
        number = e.get("port")
        if number is None or (isinstance(number, int) and number == port) or (
                isinstance(number, str) and _named(dst, number, proto, port)):
            return True
    return False


class Conn(NamedTuple):
    src: EvalEndpoint
    dst: EvalEndpoint
    proto: Transport
    port: int

    def sides(self, direction: str) -> tuple[EvalEndpoint, EvalEndpoint]:
        """(the end whose policy applies, the other end)."""
        return (self.src, self.dst) if direction == "egress" else (self.dst, self.src)


def _np_side(nps: list[dict[str, Any]], c: Conn, direction: str) -> bool | None:
    """None when no NetworkPolicy isolates the end in ``direction``; else the NP verdict."""
    ep, other = c.sides(direction)
    key, peer_key = ("egress", "to") if direction == "egress" else ("ingress", "from")
    selecting = []
    for p in nps:
        spec = p["spec"]
        types = spec.get("policyTypes") or (["Ingress", "Egress"] if spec.get("egress")
                                            else ["Ingress"])
        if (p["metadata"]["namespace"] == ep.namespace and direction.title() in types
                and _sel(spec.get("podSelector"), dict(ep.labels.items))):
            selecting.append(p)
    if not selecting:
        return None
    return any((not r.get(peer_key) or any(_np_peer(q, other, p["metadata"]["namespace"])
                                           for q in r[peer_key]))
               and _np_ports(r.get("ports"), c.dst, c.proto, c.port)
               for p in selecting for r in p["spec"].get(key) or [])


def _cnp_peer(q: dict[str, Any], other: EvalEndpoint) -> bool:
    if "networks" in q:
        return any(_in(other.ip, c) for c in q["networks"])
    if not other.is_pod:
        return False
    assert other.namespace is not None
    if "namespaces" in q:
        return _sel(q["namespaces"], _ns_labels(other.namespace))
    return (_sel(q["pods"].get("namespaceSelector"), _ns_labels(other.namespace))
            and _sel(q["pods"]["podSelector"], dict(other.labels.items)))


def _cnp_protocols(ps: list[dict[str, Any]] | None, dst: EvalEndpoint, proto: Transport,
                   port: int) -> bool:
    if ps is None:
        return True
    for e in ps:
        if "destinationNamedPort" in e:
            if _named(dst, e["destinationNamedPort"], proto, port):
                return True
            continue
        (name, body), = e.items()
        if Transport.parse(name) != proto:
            continue
        dp = body["destinationPort"]
        if dp.get("number") == port or ("range" in dp and dp["range"]["start"] <= port
                                        <= dp["range"]["end"]):
            return True
    return False


def _tier(cnps: list[dict[str, Any]], tier: str, c: Conn, direction: str) -> str | None:
    ep, other = c.sides(direction)
    assert ep.namespace is not None
    chosen = []
    for p in cnps:
        subject = p["spec"]["subject"]
        if p["spec"]["tier"] != tier:
            continue
        if "namespaces" in subject:
            hit = _sel(subject["namespaces"], _ns_labels(ep.namespace))
        else:
            hit = (_sel(subject["pods"].get("namespaceSelector"), _ns_labels(ep.namespace))
                   and _sel(subject["pods"]["podSelector"], dict(ep.labels.items)))
        if hit:
            chosen.append(p)
    peer_key = "to" if direction == "egress" else "from"
    for p in sorted(chosen, key=lambda p: (p["spec"]["priority"], p["metadata"]["name"])):
        for r in p["spec"].get(direction) or []:
            if _cnp_protocols(r.get("protocols"), c.dst, c.proto, c.port) and any(
                    _cnp_peer(q, other) for q in r[peer_key]):
                return str(r["action"])
    return None


def reference_allowed(docs: list[dict[str, Any]], src: EvalEndpoint, dst: EvalEndpoint,
                      proto: Transport, port: int) -> bool:
    """allowed(c) of §2.7, written out again from the text, independently of the engine."""
    cnps = [d for d in docs if d["kind"] == "ClusterNetworkPolicy"]
    nps = [d for d in docs if d["kind"] == "NetworkPolicy"]
    if src.ip == dst.ip and (src.is_pod or dst.is_pod):
        return True  # hairpin on the pod IP; a pod always reaches itself (§1.2)
    c = Conn(src, dst, proto, port)
    for direction in ("egress", "ingress"):
        if not c.sides(direction)[0].is_pod:
            continue
        if direction == "ingress" and not src.is_pod and src.node and src.node == dst.node:
            continue  # the pod's own node (§1.2); no ClusterNetworkPolicy peer matches it
        verdict = _tier(cnps, "Admin", c, direction)
        if verdict == "Deny":
            return False
        if verdict == "Accept":
            continue
        np_verdict = _np_side(nps, c, direction)
        if np_verdict is not None:
            if not np_verdict:
                return False
            continue
        if _tier(cnps, "Baseline", c, direction) == "Deny":
            return False
    return True


_peer_choices = [{"namespaces": {}}, {"namespaces": {"matchLabels": {"team": "x"}}},
                 {"pods": {"podSelector": {"matchLabels": {"app": "web"}}}},
                 {"pods": {"namespaceSelector": {"matchLabels": {"team": "y"}},
                           "podSelector": {}}}]
_network_choices = [{"networks": ["10.0.0.0/25"]}, {"networks": ["0.0.0.0/0"]},
                    {"networks": ["203.0.113.0/24", "198.51.100.0/24"]}]
_protocol_choices = [None, [tcp(80)], [{"udp": {"destinationPort": {"number": 53}}}],
                     [{"tcp": {"destinationPort": {"range": {"start": 50, "end": 8080}}}}],
                     [{"destinationNamedPort": "http"}, tcp(55)]]


@st.composite
def cluster_policy(draw: st.DrawFn, index: int) -> dict[str, Any]:
    subject = draw(st.sampled_from([
        {"namespaces": {}}, {"namespaces": {"matchLabels": {"team": "x"}}},
        {"pods": {"podSelector": {"matchLabels": {"app": "db"}}}}]))
    rules: dict[str, list[dict[str, Any]]] = {}
    for direction in ("ingress", "egress"):
        choices = _peer_choices + (_network_choices if direction == "egress" else [])
        rules[direction] = [
            rule(draw(st.sampled_from(["Accept", "Deny", "Pass"])),
                 *draw(st.lists(st.sampled_from(choices), min_size=1, max_size=2)),
                 protocols=draw(st.sampled_from(_protocol_choices)),
                 egress=direction == "egress")
            for _ in range(draw(st.integers(0, 2)))]
    return cnp(f"p{index}", draw(st.sampled_from(["Admin", "Baseline"])),
               draw(st.sampled_from([1, 5, 10])), subject=subject,
               ingress=rules["ingress"] or None, egress=rules["egress"] or None)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_engine_agrees_with_the_reference_algorithm(data: st.DataObject) -> None:
    docs = [data.draw(cluster_policy(i)) for i in range(data.draw(st.integers(1, 4)))]
    docs += [data.draw(k8s_policy(i)) for i in range(data.draw(st.integers(0, 3)))]
    for doc in docs:
        assert errors(doc) == [], doc
    fast = engine(*docs, namespaces={k: dict(v.items) for k, v in NS_LABELS.items()})
    naive = engine(*docs, namespaces={k: dict(v.items) for k, v in NS_LABELS.items()},
                   cache=False)
    assert fast.rejected == []
    flows = data.draw(st.lists(st.tuples(endpoint(), endpoint(), st.sampled_from([TCP, UDP]),
                                         st.sampled_from([53, 55, 80, 8080])),
                               min_size=1, max_size=25))
    for _ in range(2):
        for src, dst, proto, port in flows:
            verdict = fast.check(src, dst, proto, port)
            assert verdict == naive.check(src, dst, proto, port)
            assert verdict.allowed == reference_allowed(docs, src, dst, proto, port), (
                src, dst, proto, port, verdict)
