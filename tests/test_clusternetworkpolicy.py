"""The clusternetworkpolicy dialect: shape, limits and splitting, exactness through the engine.

Plans are built by the tests themselves (``segmenter.synthetic.ClusterBuilder``); the YAML is read
back and evaluated by ``segmenter.evaluate`` under ``clusternetworkpolicy`` enforcement. Schema
checks against the upstream CRDs are in ``test_clusternetworkpolicy_schema.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from segmenter.config import CompileOptions, Config, ExternalBlock, SensitiveDecl
from segmenter.dialects.base import Output
from segmenter.dialects.clusternetworkpolicy import (
    ADMIN_FILE,
    ADMIN_PRIORITY_START,
    BASELINE_FILE,
    BASELINE_PRIORITY,
    MAX_ITEMS,
    ClusterNetworkPolicy,
    subtract_cidrs,
)
from segmenter.errors import UnsupportedError
from segmenter.evaluate import EvalEndpoint, PolicyEngine, validate_manifest
from segmenter.model import Labels, Transport
from segmenter.planner import plan
from segmenter.policy.dns import detect_dns
from segmenter.policy.ir import (
    Action,
    CidrPeer,
    Evidence,
    PodPeer,
    Policy,
    PolicySet,
    Port,
    Rule,
    Selector,
)
from segmenter.policy.lower import lower
from segmenter.render import to_yaml
from segmenter.targets import get_target
from tests.scenarios import SCENARIOS, ClusterBuilder, two_tier, with_dns

DNS_NODE = "kube-system/Deployment/coredns"
PCI_DB = SensitiveDecl("pci", Labels.of({"app": "db"}), "payments", reason="cards",
                       source="test")


@dataclass
class Case:
    builder: ClusterBuilder
    config: Config


def scenario_case(name: str) -> Output:
    config = Config(sensitive=(PCI_DB,) if name == "two-tier" else ())
    return compile_case(Case(SCENARIOS[name](), config))


def compile_case(case: Case, dialect: ClusterNetworkPolicy | None = None) -> Output:
    graph, inventory = case.builder.graph, case.builder.inventory()
    result = plan(graph, case.config, dns_nodes=[DNS_NODE])
    policy_set = lower(graph, result, inventory, dns=detect_dns(graph, inventory),
                       options=case.config.compile)
    return (dialect or ClusterNetworkPolicy()).emit(policy_set)


def big_case() -> Case:
    """A restricted ``vault`` with 60 clients and 31 external peers: more rules, peers,
    protocols and CIDRs than one ClusterNetworkPolicy holds.

    - c00 talks to the vault on 30 ports (one rule with 30 protocol entries);
    - c01..c29 on one port each (29 rules: ingress needs two objects);
    - c30..c59 all on 5432 (one rule with 30 peers);
    - the vault calls 30 named hosts on 443 (one rule, 30 CIDRs) and a host of the configured
      block 203.0.113.0/24 minus 6 addresses (the difference is 31 CIDRs).
    """
    b = ClusterBuilder()
    dns = with_dns(b)
    vault = b.workload("pay", "vault", {"app": "vault"}, kind="StatefulSet")
    clients = [b.workload("shop", f"c{i:02d}", {"app": f"c{i:02d}"}) for i in range(60)]
    for port in range(7000, 7060, 2):
        b.flow(clients[0], vault, port)
    for i in range(1, 30):
        b.flow(clients[i], vault, 6000 + i)
    for i in range(30, 60):
        b.flow(clients[i], vault, 5432)
    for i in range(30):
        b.flow(vault, b.external(f"198.51.100.{i + 1}", f"api{i}.partner.example"), 443)
    b.flow(vault, b.external("203.0.113.10"), 8443)
    b.flow(vault, dns, 53, "UDP")
    for client in clients[:3]:
        b.flow(client, dns, 53, "UDP")
    block = ExternalBlock("203.0.113.0/24", ("203.0.113.1/32", "203.0.113.20/32",
                                             "203.0.113.66/32", "203.0.113.100/32",
                                             "203.0.113.130/32", "203.0.113.200/32"),
                          "partner-net")
    config = Config(sensitive=(SensitiveDecl("pci", Labels.of({"app": "vault"}), "pay",
                                             source="test"),),
                    compile=CompileOptions(external_cidrs=(block,)))
    return Case(b, config)


def domain_case() -> Case:
    """A restricted store calling two named hosts and one whose name no CRD accepts."""
    b = ClusterBuilder()
    dns = with_dns(b)
    db = b.workload("payments", "db", {"app": "db"}, kind="StatefulSet")
    api = b.workload("payments", "api", {"app": "api"})
    b.flow(api, db, 5432)
    b.flow(db, b.external("203.0.113.50", "api.stripe.example"), 443)
    b.flow(db, b.external("203.0.113.51", "hooks.stripe.example"), 443)
    b.flow(db, b.external("203.0.113.52", "localhost"), 8443)
    b.flow(db, dns, 53, "UDP")
    return Case(b, Config(sensitive=(PCI_DB,)))


# ---------------------------------------------------------------------------------------------
# Evaluation helpers


def documents(output: Output) -> list[dict[str, Any]]:
    """Every document of an output, read back from its YAML (what a cluster would get)."""
    return [d for _, ms in sorted(output.files.items())
            for d in yaml.safe_load_all(to_yaml(ms))]


def endpoints(b: ClusterBuilder) -> dict[str, EvalEndpoint]:
    out = {}
    for pod in b.inventory().pods:
        out.setdefault(pod.owner.id, EvalEndpoint(ip=pod.ips[0], namespace=pod.namespace,
                                                  labels=pod.labels, node=pod.node,
                                                  ports=pod.ports, name=pod.owner.id))
    for node in b.graph.nodes:
        if node.startswith("external:"):
            out[node] = EvalEndpoint(ip=node.split(":", 1)[1], name=node)
    return out


def planned(b: ClusterBuilder) -> set[tuple[str, str, str, int]]:
    """Observed flows, plus DNS on both protocols from every policed workload seen resolving
    names (the plan's one addition)."""
    out = {(u, v, p["protocol"], p["port"]) for u, v, d in b.graph.edges(data=True)
           for p in d["ports"]}
    for node in endpoints(b):
        if not node.startswith(("kube-system/", "external:")) and b.graph.has_edge(node,
                                                                                 DNS_NODE):
            out |= {(node, DNS_NODE, proto, 53) for proto in ("UDP", "TCP")}
    return out


def engine(docs: Iterable[dict[str, Any]], b: ClusterBuilder) -> PolicyEngine:
    namespaces = {ns.name: ns.labels for ns in b.inventory().namespaces}
    result = PolicyEngine.from_manifests(docs, namespaces=namespaces,
                                         enforcement="clusternetworkpolicy")
    assert result.rejected == []
    return result


def mismatches(e: PolicyEngine, b: ClusterBuilder, pairs: Iterable[tuple[str, str]],
               ports: Sequence[tuple[str, int]], expected: set[tuple[str, str, str, int]]
               ) -> tuple[int, list[Any]]:
    eps = endpoints(b)
    checked, wrong = 0, []
    for client, server in pairs:
        for proto, port in ports:
            verdict = e.check(eps[client], eps[server], Transport.parse(proto), port)
            checked += 1
            if verdict.allowed != ((client, server, proto, port) in expected):
                wrong.append((client, server, proto, port, verdict.summary()))
    return checked, wrong


def probe_ports(b: ClusterBuilder, extra: Iterable[int] = (1, 5433, 9999)) -> list[tuple[str, int]]:
    ports = {(p["protocol"], p["port"]) for _, _, d in b.graph.edges(data=True)
             for p in d["ports"]}
    ports |= {("UDP", 53), ("TCP", 53)} | {("TCP", p) for p in extra}
    return sorted(ports)


def allow_all(namespace: str) -> dict[str, Any]:
    """A NetworkPolicy allowing everything: with it, a verdict shows the Admin tier's own."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "allow-all", "namespace": namespace},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                     "ingress": [{}], "egress": [{}]}}


# ---------------------------------------------------------------------------------------------
# Splitting at the API limits


def test_big_plan_splits_at_every_limit() -> None:
    docs = [d for d in documents(compile_case(big_case()))
            if d["kind"] == "ClusterNetworkPolicy"]
    admin = [d for d in docs if d["spec"]["tier"] == "Admin"]
    assert [d["metadata"]["name"] for d in admin] == ["segmenter.pci-pay-vault",
                                                      "segmenter.pci-pay-vault.part-2"]
    assert [d["spec"]["priority"] for d in admin] == [ADMIN_PRIORITY_START,
                                                      ADMIN_PRIORITY_START + 1]
    assert [d["metadata"]["annotations"]["segmenter.io/part"] for d in admin] == ["1 of 2",
                                                                                "2 of 2"]
    rules = [r for d in admin for direction in ("ingress", "egress")
             for r in d["spec"].get(direction, [])]
    for d in admin:
        for direction in ("ingress", "egress"):
            assert len(d["spec"].get(direction, [])) <= MAX_ITEMS
    for rule in rules:
        peers = rule.get("from") or rule.get("to")
        assert 1 <= len(peers) <= MAX_ITEMS
        assert len(rule.get("protocols", [])) <= MAX_ITEMS
        assert all(len(p.get("networks", [])) <= MAX_ITEMS for p in peers)
        assert len(rule["name"]) <= 100
    names = [r["name"] for r in rules]
    assert len(names) == len(set(names))
    ingress = [r for d in admin for r in d["spec"].get("ingress", [])]
    # 30 protocols: 25 + 5; 30 peers on 5432: 25 + 5; 29 + 4 rules: 25 + 8.
    assert [len(r["protocols"]) for r in ingress[:2]] == [25, 5]
    assert sorted(len(r["from"]) for r in ingress if r.get("protocols") == [
        {"tcp": {"destinationPort": {"number": 5432}}}]) == [5, 25]
    assert len(admin[0]["spec"]["ingress"]) == 25 and ingress[-1]["action"] == "Deny"
    egress = [r for d in admin for r in d["spec"].get("egress", [])]
    networks = [len(p["networks"]) for r in egress for p in r["to"] if "networks" in p]
    assert networks == [25, 5, 25, 6, 2]  # 30 hosts, the block's 31 CIDRs, 0.0.0.0/0 and ::/0
    assert egress[-1]["to"] == [{"namespaces": {}}, {"networks": ["0.0.0.0/0", "::/0"]}]


def test_big_plan_allows_exactly_the_plan() -> None:
    case = big_case()
    b = case.builder
    e = engine(documents(compile_case(case)), b)
    eps = endpoints(b)
    vault = "pay/StatefulSet/vault"
    pairs = [(o, vault) for o in eps if o != vault] + [(vault, o) for o in eps if o != vault]
    checked, wrong = mismatches(e, b, pairs, probe_ports(b), planned(b))
    assert checked > 5000
    assert wrong == []


def test_split_guardrail_alone_decides_exactly_the_plan() -> None:
    """With every NetworkPolicy replaced by allow-all, a verdict is the Admin tier's: the split
    chain must Pass exactly the planned flows of pod peers and Deny every other one."""
    case = big_case()
    b = case.builder
    admin = [d for d in documents(compile_case(case))
             if d.get("spec", {}).get("tier") == "Admin"]
    e = engine([*admin, allow_all("shop"), allow_all("pay"), allow_all("kube-system")], b)
    eps = endpoints(b)
    vault = "pay/StatefulSet/vault"
    pods = [n for n in eps if not n.startswith("external:") and n != vault]
    externals = [n for n in eps if n.startswith("external:")]
    expected = planned(b)
    pairs = [(o, vault) for o in pods] + [(vault, o) for o in (*pods, *externals)]
    checked, wrong = mismatches(e, b, pairs, probe_ports(b), expected)
    assert checked > 5000
    assert wrong == []
    # The documented limit: ingress from outside the pod network is not the Admin tier's.
    checked, wrong = mismatches(e, b, [(x, vault) for x in externals], [("TCP", 9999)],
                                set())
    assert len(wrong) == checked == len(externals)


def test_one_limit_lower_changes_the_objects_not_the_verdicts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Splitting at 10 instead of 25 gives more objects and the same verdicts."""
    import segmenter.dialects.clusternetworkpolicy as module

    case = big_case()
    b = case.builder
    at_25 = documents(compile_case(case))
    monkeypatch.setattr(module, "MAX_ITEMS", 10)
    at_10 = documents(compile_case(case))
    count = {k: sum(1 for d in docs if d.get("spec", {}).get("tier") == "Admin")
             for k, docs in (("25", at_25), ("10", at_10))}
    assert count["10"] > count["25"]
    eps = endpoints(b)
    vault = "pay/StatefulSet/vault"
    pairs = [(o, vault) for o in eps if o != vault] + [(vault, o) for o in eps if o != vault]
    verdicts = []
    for docs in (at_25, at_10):
        admin = [d for d in docs if d.get("spec", {}).get("tier") == "Admin"]
        e = engine([*admin, allow_all("shop"), allow_all("pay")], b)
        verdicts.append([e.check(eps[c], eps[s], Transport.parse(proto), port).allowed
                         for c, s in pairs for proto, port in probe_ports(b)])
    assert verdicts[0] == verdicts[1]
    assert verdicts[0].count(False) > 1000


def test_subtract_cidrs_is_exact() -> None:
    import ipaddress

    excepts = ("203.0.113.1/32", "203.0.113.66/32", "203.0.113.128/25", "10.0.0.0/8")
    parts = [ipaddress.ip_network(c) for c in subtract_cidrs("203.0.113.0/24", excepts)]
    for host in ipaddress.ip_network("203.0.113.0/24"):
        inside = any(host in p for p in parts)
        assert inside == (not any(host in ipaddress.ip_network(e) for e in excepts))
    assert subtract_cidrs("203.0.113.0/24", ("203.0.113.0/24",)) == []
    assert subtract_cidrs("2001:db8::/64", ("203.0.113.0/24",)) == ["2001:db8::/64"]


# ---------------------------------------------------------------------------------------------
# Shape


def test_two_tier_shape_and_priorities() -> None:
    docs = documents(scenario_case("two-tier"))
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == ["ClusterNetworkPolicy", "NetworkPolicy"]
    admin = [d for d in docs if d.get("spec", {}).get("tier") == "Admin"]
    baseline = [d for d in docs if d.get("spec", {}).get("tier") == "Baseline"]
    assert len(admin) == 1
    guard = admin[0]["spec"]
    assert guard["subject"] == {"pods": {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "payments"}},
        "podSelector": {"matchLabels": {"app": "db"}}}}
    for direction in ("ingress", "egress"):
        actions = [r["action"] for r in guard[direction]]
        assert actions[-1] == "Deny" and set(actions[:-1]) <= {"Pass"}
    # The db is called on 5432 and calls nothing (no DNS query either): ingress passes the
    # api, egress denies everything.
    assert [r["action"] for r in guard["ingress"]] == ["Pass", "Deny"]
    assert [r["action"] for r in guard["egress"]] == ["Deny"]
    assert [r["from"] for r in guard["ingress"]][-1] == [{"namespaces": {}}]
    assert {d["metadata"]["name"]: d["spec"]["priority"] for d in baseline} == {
        "segmenter.payments.default-deny": BASELINE_PRIORITY,
        "segmenter.shop.default-deny": BASELINE_PRIORITY}
    for doc in baseline:
        namespace = doc["metadata"]["name"].split(".")[1]
        assert doc["spec"]["subject"] == {"namespaces": {"matchLabels": {
            "kubernetes.io/metadata.name": namespace}}}
        assert [r["action"] for r in doc["spec"]["ingress"] + doc["spec"]["egress"]] == [
            "Deny", "Deny"]
    # The folder is complete: the NetworkPolicies are the kubernetes dialect's, unchanged.
    kubernetes = get_target("kubernetes").dialect().emit(_two_tier_set()).files
    ours = scenario_case("two-tier").files
    assert {k: v for k, v in ours.items() if k not in (ADMIN_FILE, BASELINE_FILE)} == kubernetes


def _two_tier_set() -> PolicySet:
    b = two_tier()
    graph, inventory = b.graph, b.inventory()
    result = plan(graph, Config(sensitive=(PCI_DB,)), dns_nodes=[DNS_NODE])
    return lower(graph, result, inventory, dns=detect_dns(graph, inventory))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_scenarios_allow_exactly_the_plan(scenario: str) -> None:
    config = Config(sensitive=(PCI_DB,) if scenario == "two-tier" else ())
    b = SCENARIOS[scenario]()
    output = compile_case(Case(b, config))
    e = engine(documents(output), b)
    eps = endpoints(b)
    pairs = [(c, s) for c in eps for s in eps if c != s
             and not (c.startswith("external:") and s.startswith("external:"))
             and DNS_NODE not in (c, s)]
    pairs += [(c, DNS_NODE) for c in eps if not c.startswith(("external:", "kube-system/"))]
    checked, wrong = mismatches(e, b, pairs, probe_ports(b), planned(b))
    assert checked > 50
    assert wrong == []


def test_every_emitted_document_passes_validation() -> None:
    for output in (scenario_case("two-tier"), compile_case(big_case())):
        for doc in documents(output):
            assert [p for p in validate_manifest(doc) if not p.startswith("warning")] == [], doc


def test_deterministic_output() -> None:
    first = {k: to_yaml(v) for k, v in compile_case(big_case()).files.items()}
    second = {k: to_yaml(v) for k, v in compile_case(big_case()).files.items()}
    assert first == second


# ---------------------------------------------------------------------------------------------
# What cannot be said


def _guard(*ingress: Rule, egress: tuple[Rule, ...] = ()) -> PolicySet:
    guard = Policy("g", None, members=(PodPeer("pay", Selector(Labels.of({"app": "v"}))),),
                   ingress=tuple(ingress), egress=egress, tier="t", order=100.0)
    return PolicySet((), (guard,))


def test_pass_from_outside_the_pod_network_is_left_out_exactly() -> None:
    node = CidrPeer("172.18.0.2/32", name="worker-1")
    pod = PodPeer("shop", Selector(Labels.of({"app": "web"})))
    output = ClusterNetworkPolicy().emit(_guard(
        Rule(Action.PASS, (node,), (Port(Transport.TCP, 8080),)),
        Rule(Action.PASS, (node, pod), (Port(Transport.TCP, 9090),)),
        Rule(Action.LOG), Rule(Action.DENY)))
    [doc] = output.files[ADMIN_FILE]
    assert [(r["action"], r["from"]) for r in doc["spec"]["ingress"]] == [
        ("Pass", [{"pods": {"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "shop"}},
            "podSelector": {"matchLabels": {"app": "web"}}}}]),
        ("Deny", [{"namespaces": {}}])]
    assert output.dropped == ()
    assert any("need no ClusterNetworkPolicy rule" in n for n in output.notes)
    assert any("no Log action" in n for n in output.notes)


@pytest.mark.parametrize(("rule", "reason"), [
    (Rule(Action.ALLOW, (CidrPeer("198.51.100.0/24"),)), "Accept from 198.51.100.0/24"),
    (Rule(Action.DENY, (CidrPeer("198.51.100.0/24"),)), "Deny from 198.51.100.0/24"),
    (Rule(Action.ALLOW), "an Accept from any source"),
    (Rule(Action.PASS, (PodPeer("a", Selector()),), (Port(Transport.ICMP),)), "ICMP"),
], ids=["accept-cidr", "deny-cidr", "accept-any", "icmp"])
def test_unsupported_ingress_is_reported(rule: Rule, reason: str) -> None:
    with pytest.raises(UnsupportedError) as info:
        ClusterNetworkPolicy().emit(_guard(rule, Rule(Action.DENY)))
    assert any(reason in r for r in info.value.reasons), info.value.reasons
    best = ClusterNetworkPolicy(best_effort=True).emit(_guard(rule, Rule(Action.DENY)))
    assert any(reason in d for d in best.dropped)
    [doc] = best.files[ADMIN_FILE]
    assert doc["spec"]["ingress"][-1]["action"] == "Deny"


def test_workload_policy_problems_come_from_the_kubernetes_emitter() -> None:
    policy = Policy("p", "ns", Selector(), ingress=(Rule(Action.DENY),), egress=())
    with pytest.raises(UnsupportedError) as info:
        ClusterNetworkPolicy().emit(PolicySet((policy,)))
    assert info.value.reasons == ["ns/p: Deny rule"]


def test_all_ports_of_a_protocol_is_a_full_range() -> None:
    output = ClusterNetworkPolicy().emit(_guard(
        Rule(Action.PASS, (PodPeer("a", Selector()),),
             (Port(Transport.UDP), Port(Transport.TCP, 8000, 8080), Port(Transport.SCTP, 5, 5))),
        Rule(Action.DENY)))
    [doc] = output.files[ADMIN_FILE]
    assert doc["spec"]["ingress"][0]["protocols"] == [
        {"udp": {"destinationPort": {"range": {"start": 1, "end": 65535}}}},
        {"tcp": {"destinationPort": {"range": {"start": 8000, "end": 8080}}}},
        {"sctp": {"destinationPort": {"number": 5}}}]


def test_priorities_are_contiguous_per_chain_and_unique() -> None:
    members = [PodPeer("pay", Selector(Labels.of({"app": f"v{i}"}))) for i in range(3)]
    pods = tuple(PodPeer("shop", Selector(Labels.of({"app": f"c{i}"}))) for i in range(40))
    guards = tuple(
        Policy(f"g{i}", None, members=(m,), ingress=(
            *(Rule(Action.PASS, (p,), (Port(Transport.TCP, 1000 + j),))
              for j, p in enumerate(pods[: 10 + 15 * i])), Rule(Action.DENY)),
            egress=(Rule(Action.DENY),), tier="t", order=100.0 + i)
        for i, m in enumerate(members))
    docs = ClusterNetworkPolicy().emit(PolicySet((), guards)).files[ADMIN_FILE]
    chain = [(d["metadata"]["name"], d["spec"]["priority"]) for d in docs]
    assert chain == [("segmenter.g0", 100), ("segmenter.g1", 101), ("segmenter.g1.part-2", 102),
                     ("segmenter.g2", 103), ("segmenter.g2.part-2", 104)]


def test_too_many_admin_objects_is_reported() -> None:
    guards = tuple(Policy(f"g{i:04d}", None, members=(PodPeer("a", Selector()),),
                          ingress=(Rule(Action.DENY),), order=float(i)) for i in range(902))
    with pytest.raises(UnsupportedError, match="beyond the 1000"):
        ClusterNetworkPolicy().emit(PolicySet((), guards))


def test_domain_names_are_opt_in_and_keep_the_addresses() -> None:
    case = domain_case()
    plain = documents(compile_case(case))
    assert "domainNames" not in yaml.safe_dump_all(plain)
    dialect = ClusterNetworkPolicy(domain_names=True)
    output = compile_case(case, dialect)
    [guard] = [d for d in documents(output) if d.get("spec", {}).get("tier") == "Admin"]
    egress = [(r["action"], r["to"]) for r in guard["spec"]["egress"]]
    accept = [to for action, to in egress if action == "Accept"]
    assert accept == [[{"domainNames": ["api.stripe.example", "hooks.stripe.example"]}]]
    # The Accepts go first (names win over the addresses), and the Pass of those addresses
    # stays after them.
    assert egress[0][0] == "Accept"
    assert ("Pass", [{"networks": ["203.0.113.50/32", "203.0.113.51/32"]}]) in egress
    assert any("'localhost' does not fit the domainNames pattern" in n for n in output.notes)
    # The engine credits no name-based Accept (resolution is implementation-defined): the
    # observed flows are still allowed, through the Pass and the NetworkPolicies.
    b = case.builder
    e = engine(documents(output), b)
    assert any("domainNames: matches nothing here" in w for w in e.warnings)
    eps = endpoints(b)
    db = "payments/StatefulSet/db"
    checked, wrong = mismatches(e, b, [(db, x) for x in eps if x.startswith("external:")],
                                probe_ports(b), planned(b))
    assert checked and wrong == []


def test_staged_is_noted() -> None:
    output = get_target("clusternetworkpolicy").dialect(staged=True).emit(_two_tier_set())
    assert any("--staged applies to Calico only" in n for n in output.notes)


def test_evidence_names_the_rules() -> None:
    rule = Rule(Action.PASS, (PodPeer("shop", Selector(Labels.of({"app": "web"}))),),
                (Port(Transport.TCP, 80),), Evidence(7, 1764000000.0, 1764000060.0,
                                                     "observed from shop/Deployment/web"))
    [doc] = ClusterNetworkPolicy().emit(_guard(rule, Rule(Action.DENY))).files[ADMIN_FILE]
    assert doc["metadata"]["annotations"]["segmenter.io/evidence"].splitlines()[0] == (
        "pass-from-shop-web: 7 flows, 2025-11-24T16:00:00Z to 2025-11-24T16:01:00Z; "
        "observed from shop/Deployment/web")


def test_a_guardrail_direction_ends_in_deny_as_its_tier_would() -> None:
    """() isolates with nothing allowed; rules without a final catch-all end in the tier's
    implicit deny under Calico: both are written out, since a ClusterNetworkPolicy tier ends in
    Pass. None leaves the direction alone."""
    web = PodPeer("shop", Selector(Labels.of({"app": "web"})))
    guard = Policy("g", None, members=(PodPeer("pay", Selector()),), ingress=(),
                   egress=(Rule(Action.PASS, (web,), (Port(Transport.TCP, 80),)),))
    [doc] = ClusterNetworkPolicy().emit(PolicySet((), (guard,))).files[ADMIN_FILE]
    assert [(r["action"], r["from"]) for r in doc["spec"]["ingress"]] == [
        ("Deny", [{"namespaces": {}}])]
    assert [r["action"] for r in doc["spec"]["egress"]] == ["Pass", "Deny"]
    one_way = Policy("g", None, members=(PodPeer("pay", Selector()),), ingress=None, egress=())
    [doc] = ClusterNetworkPolicy().emit(PolicySet((), (one_way,))).files[ADMIN_FILE]
    assert "ingress" not in doc["spec"] and len(doc["spec"]["egress"]) == 1


def test_invalid_object_names_are_reported() -> None:
    guard = Policy("Card_Vault", None, members=(PodPeer("pay", Selector()),), ingress=())
    with pytest.raises(UnsupportedError, match="not a valid object name"):
        ClusterNetworkPolicy().emit(PolicySet((), (guard,)))
