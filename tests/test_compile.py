"""Compiler: golden YAML per scenario and dialect, schema validity, determinism."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from segmenter.config import Config, SensitiveDecl
from segmenter.errors import UnsupportedError
from segmenter.model import Labels, Transport
from segmenter.planner import plan
from segmenter.policy.dns import detect_dns
from segmenter.policy.ir import Action, Policy, PolicySet, Port, Rule, Selector
from segmenter.policy.lower import lower
from segmenter.render import to_yaml
from segmenter.targets import TARGETS, get_target
from tests.scenarios import SCENARIOS, two_tier

GOLDEN = Path(__file__).parent / "golden"
PCI_DB = SensitiveDecl("pci", Labels.of({"app": "db"}), "payments", reason="cards",
                       source="test")


def compile_scenario(name: str, dialect: str) -> str:
    b = SCENARIOS[name]()
    graph, inventory = b.graph, b.inventory()
    config = Config(sensitive=(PCI_DB,) if name == "two-tier" else ())
    result = plan(graph, config, dns_nodes=["kube-system/Deployment/coredns"])
    policy_set = lower(graph, result, inventory, dns=detect_dns(graph, inventory))
    output = get_target(dialect).dialect().emit(policy_set)
    parts = []
    for rel, manifests in sorted(output.files.items()):
        parts.append(f"# {rel}\n" + to_yaml(manifests))
    return "---\n".join(parts)


@pytest.mark.parametrize("dialect", sorted(TARGETS))
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_golden(scenario: str, dialect: str, update_golden: bool) -> None:
    text = compile_scenario(scenario, dialect)
    expected = GOLDEN / scenario / f"{dialect}.yaml"
    if update_golden:
        expected.parent.mkdir(parents=True, exist_ok=True)
        expected.write_text(text, encoding="utf-8")
    assert expected.exists(), f"run pytest --update-golden to create {expected}"
    assert text == expected.read_text(encoding="utf-8")


@pytest.mark.parametrize("dialect", sorted(TARGETS))
def test_deterministic(dialect: str) -> None:
    assert compile_scenario("two-tier", dialect) == compile_scenario("two-tier", dialect)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_kubernetes_output_validates_against_the_api_schema(scenario: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    docs = list(yaml.safe_load_all(compile_scenario(scenario, "kubernetes")))
    assert docs
    for doc in docs:
        # validate() raises ValidationError on anything the API schema rejects.
        kubernetes_validate.validate(doc, "1.30.0", strict=True)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_calico_output_passes_validation(scenario: str) -> None:
    from segmenter.evaluate import is_warning, validate_manifest

    for doc in yaml.safe_load_all(compile_scenario(scenario, "calico")):
        assert [p for p in validate_manifest(doc) if not is_warning(p)] == []


def test_policy_types_always_explicit_and_no_volatile_labels() -> None:
    for scenario in SCENARIOS:
        for doc in yaml.safe_load_all(compile_scenario(scenario, "kubernetes")):
            assert doc["spec"]["policyTypes"] == ["Ingress", "Egress"]
            text = yaml.safe_dump(doc)
            for key in ("pod-template-hash", "controller-revision-hash", "version:",
                        "statefulset.kubernetes.io/pod-name"):
                assert key not in text


def test_dns_egress_uses_both_protocols_and_pod_ports() -> None:
    docs = list(yaml.safe_load_all(compile_scenario("two-tier", "kubernetes")))
    api = next(d for d in docs if d["metadata"]["name"] == "allow-api")
    dns_rules = [r for r in api["spec"]["egress"]
                 if r["to"][0].get("podSelector", {}).get("matchLabels") == {"k8s-app": "kube-dns"}]
    assert len(dns_rules) == 1
    assert {(p["protocol"], p["port"]) for p in dns_rules[0]["ports"]} == {("UDP", 53),
                                                                              ("TCP", 53)}


def test_selectors_distinguish_workloads_sharing_a_label() -> None:
    docs = list(yaml.safe_load_all(compile_scenario("shared-app-label", "kubernetes")))
    by_name = {d["metadata"]["name"]: d for d in docs}
    # component tells them apart; app (an identity label) is kept so that a future workload
    # with another app but the same component is not selected.
    assert by_name["allow-reader"]["spec"]["podSelector"] == {
        "matchLabels": {"app": "ledger", "component": "reader"}}


def test_kubernetes_reports_deny_rules_and_icmp() -> None:
    policy = Policy("p", "ns", Selector(), ingress=(
        Rule(Action.DENY),
        Rule(Action.ALLOW, (), (Port(Transport.ICMP),)),
    ), egress=())
    with pytest.raises(UnsupportedError) as info:
        get_target("kubernetes").dialect().emit(PolicySet((policy,)))
    assert len(info.value.reasons) == 2
    best = get_target("kubernetes").dialect(best_effort=True).emit(PolicySet((policy,)))
    assert len(best.dropped) == 2


def test_calico_guardrail_shape() -> None:
    docs = list(yaml.safe_load_all(compile_scenario("two-tier", "calico")))
    tier = next(d for d in docs if d["kind"] == "Tier")
    assert tier["spec"]["order"] < 1_000_000  # before the default tier
    guard = next(d for d in docs if d["kind"] == "GlobalNetworkPolicy")
    assert guard["metadata"]["name"].startswith(tier["metadata"]["name"] + ".")
    assert guard["spec"]["selector"].startswith("projectcalico.org/namespace == 'payments'")
    assert guard["spec"]["types"] == ["Ingress", "Egress"]
    actions = {d: [r["action"] for r in guard["spec"][d]] for d in ("ingress", "egress")}
    # The db is called by the api and calls nothing, DNS included (it resolved no name).
    assert actions == {"ingress": ["Pass", "Log", "Deny"], "egress": ["Log", "Deny"]}
    sets = [d for d in docs if d["kind"] == "GlobalNetworkSet"]
    assert sets
    assert all(s["spec"]["nets"] for s in sets)
    for doc in docs:
        for direction in ("ingress", "egress"):
            for rule in doc.get("spec", {}).get(direction, []):
                ports = rule.get("destination", {}).get("ports")
                if ports:
                    assert rule.get("protocol"), "Calico rejects ports without protocol"


def test_staged_calico_kinds() -> None:
    b = two_tier()
    graph, inventory = b.graph, b.inventory()
    result = plan(graph, Config(sensitive=(PCI_DB,)))
    output = get_target("calico").dialect(staged=True).emit(lower(graph, result, inventory))
    kinds = {m["kind"] for ms in output.files.values() for m in ms}
    assert {"StagedNetworkPolicy", "StagedGlobalNetworkPolicy"} <= kinds
    assert "NetworkPolicy" not in kinds
