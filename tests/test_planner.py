"""Planner: zones, declarations, scope summary, and bad declarations."""

from __future__ import annotations

import pytest

from segmenter.config import Config, SensitiveDecl, load_config, parse_sensitive_arg
from segmenter.errors import PlanError
from segmenter.model import Labels
from segmenter.planner import ZONES, Zone, plan, plan_from_dict, plan_to_dict, summary_lines
from tests.scenarios import cross_namespace_labels, two_tier

DB = SensitiveDecl("pci", Labels.of({"app": "db"}), "payments", source="test")
DNS = ["kube-system/Deployment/coredns"]


def test_zones_partition_the_graph() -> None:
    b = two_tier()
    result = plan(b.graph, Config(sensitive=(DB,)), dns_nodes=DNS)
    (scope,) = result.classes
    seen = [m.node for zone in ZONES for m in scope.members(zone)]
    assert sorted(seen) == sorted(b.graph.nodes)
    assert len(seen) == len(set(seen))


def test_restricted_connected_general() -> None:
    b = two_tier()
    result = plan(b.graph, Config(sensitive=(DB,)), dns_nodes=DNS)
    (scope,) = result.classes
    assert [m.node for m in scope.members(Zone.RESTRICTED)] == ["payments/StatefulSet/db"]
    assert [m.node for m in scope.members(Zone.CONNECTED)] == ["payments/Deployment/api"]
    assert {m.node for m in scope.members(Zone.GENERAL)} == {"shop/Deployment/web",
                                                        "shop/Deployment/report"}
    assert {m.node for m in scope.members(Zone.INFRASTRUCTURE)} == {
        "kube-system/Deployment/coredns"}
    assert len(scope.members(Zone.EXTERNAL)) == 2
    reason = scope.members(Zone.CONNECTED)[0].reason
    assert "payments/StatefulSet/db" in reason
    assert "TCP/5432" in reason
    assert all(c.client_zone != c.server_zone for c in scope.crossings)
    assert result.zone_of("payments/StatefulSet/db") == Zone.RESTRICTED


def test_declaration_by_annotation() -> None:
    b = cross_namespace_labels()
    result = plan(b.graph, Config(), dns_nodes=DNS)
    (scope,) = result.classes
    assert scope.data_class == "phi"
    assert [m.node for m in scope.members(Zone.RESTRICTED)] == ["team/Deployment/writer"]
    assert [m.node for m in scope.members(Zone.CONNECTED)] == ["team/Deployment/reader"]


def test_system_namespaces_are_not_policed() -> None:
    result = plan(two_tier().graph, Config(sensitive=(DB,)), dns_nodes=DNS)
    assert "kube-system/Deployment/coredns" not in result.policed
    assert "payments/StatefulSet/db" in result.policed


def test_selector_matching_nothing_is_an_error() -> None:
    decl = SensitiveDecl("pci", Labels.of({"app": "nope"}), "payments", source="x.yaml "
                         "sensitive[0]")
    with pytest.raises(PlanError, match="matches no pod"):
        plan(two_tier().graph, Config(sensitive=(decl,), path="x.yaml"))


def test_plan_json_round_trip() -> None:
    result = plan(two_tier().graph, Config(sensitive=(DB,)), dns_nodes=DNS)
    assert plan_from_dict(plan_to_dict(result)) == result


def test_no_sensitive_store_says_nothing_in_scope() -> None:
    result = plan(two_tier().graph, Config(), dns_nodes=DNS)
    assert result.classes == ()
    assert "nothing is in scope" in summary_lines(result)[0]


@pytest.mark.parametrize("spec", ["pci", "pci=payments", "pci=payments/app", "PCI=x/a=b",
                                  "pci=payments/app=bad value"])
def test_bad_sensitive_argument(spec: str) -> None:
    with pytest.raises(PlanError):
        parse_sensitive_arg(spec)


def test_label_rules_are_the_evaluators() -> None:
    """One home for Kubernetes naming rules: a key the API server (and the evaluator) rejects
    is rejected on the command line too -- a 64-character name part, an empty prefix."""
    from segmenter.evaluate.selector import label_selector_problems

    for key in ("x" * 64, "/app", "Example.com/app"):
        with pytest.raises(PlanError, match="invalid label key"):
            parse_sensitive_arg(f"pci=payments/{key}=db")
        assert label_selector_problems({"matchLabels": {key: "db"}}, "s")
    parse_sensitive_arg(f"pci=payments/example.com/{'x' * 63}=db")


def test_sensitive_argument_unknown_class() -> None:
    with pytest.raises(PlanError, match="unknown class"):
        load_config(None, (parse_sensitive_arg("cde=payments/app=db"),))


@pytest.mark.parametrize(("text", "message"), [
    ("sensitive:\n- class: gold\n  selector: {app: db}\n", "unknown class"),
    ("sensitive:\n- class: pci\n  selector: {'bad key!': db}\n", "invalid label key"),
    ("sensitive:\n- class: pci\n", "selector must be"),
    ("sensitive:\n- class: pci\n  selector: {app: db}\n  role: owner\n", "role must be"),
    ("colour: blue\n", "unknown key"),
    ("sensitive: [\n", "malformed YAML"),
])
def test_bad_config(tmp_path, text: str, message: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "segmenter.yaml"
    path.write_text(text)
    with pytest.raises(Exception, match=message) as info:
        load_config(str(path))
    assert "segmenter.yaml" in str(info.value)
    assert "\n" not in str(info.value)


def test_custom_class(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "segmenter.yaml"
    path.write_text("classes:\n  ledger: {framework: pci}\nsensitive:\n- class: ledger\n"
                    "  namespace: payments\n  selector: {app: db}\n")
    config = load_config(str(path))
    result = plan(two_tier().graph, config, dns_nodes=DNS)
    assert result.classes[0].data_class == "ledger"
    assert result.classes[0].framework == "pci"


def test_conflicting_declarations(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "segmenter.yaml"
    path.write_text("sensitive:\n- class: pci\n  namespace: payments\n  selector: {app: db}\n"
                    "- class: pci\n  namespace: payments\n  selector: {app: db}\n"
                    "  role: processor\n")
    with pytest.raises(PlanError, match="conflicts with") as info:
        load_config(str(path))
    assert "segmenter.yaml (segmenter.yaml sensitive[1])" in str(info.value)
    path.write_text("sensitive:\n- class: pci\n  namespace: kube-system\n  selector: {app: x}\n")
    with pytest.raises(PlanError, match="unpoliced"):
        load_config(str(path))
    with pytest.raises(PlanError, match="unpoliced"):
        load_config(None, (parse_sensitive_arg("pci=kube-system/k8s-app=kube-dns"),))


def test_image_suggests_a_store() -> None:
    b = two_tier()
    b.graph.nodes["shop/Deployment/report"]["images"] = ["docker.io/library/mariadb:11"]
    result = plan(b.graph, Config(sensitive=(DB,)), dns_nodes=DNS)
    reasons = {s.node: s.reason for s in result.suggestions}
    assert "mariadb" in reasons["shop/Deployment/report"]
