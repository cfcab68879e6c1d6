"""Targets that take options, ``--dialect auto``, and DNS names for Calico Enterprise.

Inventories are built here (model dataclasses, or a ``kubectl get -o json`` List written to a
temporary file, the format ``segmenter inventory`` reads); the API discovery document comes from
a loopback server (``tests/fake_apiserver.py``) answering the documented ``APIGroupList`` shape.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from segmenter import pipeline
from segmenter.cli import main
from segmenter.cluster.cni import recognise_engines, served_api_groups
from segmenter.config import CompileOptions, Config
from segmenter.errors import InputError, InventoryError, UnknownNameError
from segmenter.evaluate import EvalEndpoint, PolicyEngine, is_warning, validate_manifest
from segmenter.model import Inventory, Labels, Pod, Transport, Workload, WorkloadRef
from segmenter.planner import plan
from segmenter.policy.lower import lower
from segmenter.render import to_yaml
from segmenter.targets import TARGETS, detect_targets, get_target, target_options
from tests.fake_apiserver import FakeApiServer, kubeconfig
from tests.scenarios import two_tier

SAMPLE = Path(__file__).resolve().parents[1] / "sample"


def agent(namespace: str, name: str, kind: str, labels: dict[str, str], image: str) -> Inventory:
    ref = WorkloadRef(namespace, kind, name)
    return Inventory(workloads=(Workload(ref, Labels.of(labels), template_labels=Labels.of(
        labels)),), pods=(Pod(namespace, f"{name}-x1", Labels.of(labels), ("172.18.0.2",), ref,
                               host_network=True, images=(image,)),))


CALICO_NODE = agent("calico-system", "calico-node", "DaemonSet", {"k8s-app": "calico-node"},
                    "quay.io/calico/node:v3.29.1")
TIGERA_OPERATOR = agent("tigera-operator", "tigera-operator", "Deployment",
                        {"k8s-app": "tigera-operator", "name": "tigera-operator"},
                        "quay.io/tigera/operator:v1.36.2")
CILIUM = agent("kube-system", "cilium", "DaemonSet",
               {"k8s-app": "cilium", "app.kubernetes.io/name": "cilium-agent",
                "app.kubernetes.io/part-of": "cilium"}, "quay.io/cilium/cilium:v1.16.3")
KNP = agent("kube-system", "kube-network-policies", "DaemonSet",
            {"app": "kube-network-policies", "k8s-app": "kube-network-policies"},
            "registry.k8s.io/networking/kube-network-policies:v1.0.0")
KNP_CNP = agent("kube-system", "kube-network-policies", "DaemonSet",
                {"app": "kube-network-policies"},
                "registry.k8s.io/networking/kube-network-policies:v1.0.0-npa-v1alpha2")
# An agent relabelled by its installer is still known by its image.
RELABELLED = agent("net", "agent", "DaemonSet", {"app": "agent"}, "docker.io/calico/node:v3.28")
FLANNEL = agent("kube-flannel", "kube-flannel-ds", "DaemonSet", {"app": "flannel"},
                "docker.io/flannel/flannel:v0.25.6")


def names(found: Any) -> list[str]:
    return [t.name for t in found.targets]


@pytest.mark.parametrize(("inventory", "expected"), [
    (CALICO_NODE, ["kubernetes", "calico"]),
    (TIGERA_OPERATOR, ["kubernetes", "calico"]),
    (RELABELLED, ["kubernetes", "calico"]),
    (CILIUM, ["kubernetes", "cilium"]),
    (KNP, ["kubernetes"]),
    (KNP_CNP, ["kubernetes", "clusternetworkpolicy"]),
])
def test_auto_picks_the_targets_the_inventory_shows(inventory: Inventory,
                                                    expected: list[str]) -> None:
    found = detect_targets(inventory)
    assert names(found) == expected
    assert found.evidence and all(":" in e for e in found.evidence)


def test_evidence_names_the_workload_and_what_gave_it_away() -> None:
    [finding] = recognise_engines(CILIUM)
    assert finding.engine == "Cilium"
    assert finding.evidence == ("DaemonSet kube-system/cilium (k8s-app=cilium, "
                                "app.kubernetes.io/name=cilium-agent, image "
                                "quay.io/cilium/cilium:v1.16.3)")


@pytest.mark.parametrize("inventory", [Inventory(), FLANNEL], ids=["empty", "flannel"])
def test_auto_with_nothing_recognisable_fails_closed(inventory: Inventory) -> None:
    with pytest.raises(InputError, match="no network policy engine recognised"):
        detect_targets(inventory)


def test_auto_from_the_api_groups_the_cluster_serves() -> None:
    served = [("networking.k8s.io", "v1"), ("cilium.io", "v2"),
              ("policy.networking.k8s.io", "v1alpha2")]
    found = detect_targets(Inventory(), served)
    assert names(found) == ["kubernetes", "cilium", "clusternetworkpolicy"]
    # Calico in classic mode serves only its storage group.
    assert names(detect_targets(None, [("crd.projectcalico.org", "v1")])) == [
        "kubernetes", "calico"]
    # networking.k8s.io alone says nothing about enforcement; ANP v1alpha1 is not v1alpha2.
    with pytest.raises(InputError, match="API groups"):
        detect_targets(None, [("networking.k8s.io", "v1"), ("policy.networking.k8s.io",
                                                             "v1alpha1")])


class DiscoveryServer(FakeApiServer):
    """Answers ``/apis`` with an APIGroupList the test writes (Kubernetes API discovery)."""

    def route(self, path: str, query: dict[str, list[str]]) -> tuple[int, str]:
        if path.rstrip("/") == "/apis":
            return 200, self.read("apis")
        return 404, json.dumps({"kind": "Status", "code": 404, "message": "not found"})


def test_served_api_groups_through_the_real_client(tmp_path: Path) -> None:
    groups = [{"name": "cilium.io", "versions": [{"groupVersion": "cilium.io/v2",
                                                  "version": "v2"}]},
              {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}]}]
    (tmp_path / "apis.json").write_text(json.dumps(
        {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
    DiscoveryServer.FIXTURES = tmp_path
    with DiscoveryServer() as server:
        config = kubeconfig(tmp_path, server.url)
        served = served_api_groups(kubeconfig=config)
        assert served == (("apps", "v1"), ("cilium.io", "v2"))
        targets, how = pipeline.choose_targets(["auto"], Inventory(), live=True,
                                               kubeconfig=config)
        assert [t.name for t in targets] == ["kubernetes", "cilium"]
        assert how == ["--dialect auto chose kubernetes, cilium: Cilium cilium.io/v2: the "
                       "cluster serves cilium.io/v2"]
        assert {path for path, _, _ in server.requests} == {"/apis/"}
        server.overrides["/apis"] = (403, "apis")
        with pytest.raises(InventoryError, match="forbidden"):
            served_api_groups(kubeconfig=config)


def test_choose_targets() -> None:
    assert [t.name for t in pipeline.choose_targets()[0]] == list(TARGETS)
    assert [t.name for t in pipeline.choose_targets(["calico", "kubernetes", "calico"])[0]] == [
        "calico", "kubernetes"]
    with pytest.raises(InputError, match="do not name others"):
        pipeline.choose_targets(["auto", "calico"], CALICO_NODE)


def _dump(tmp_path: Path) -> str:
    """The sample's dump plus a calico-node DaemonSet and its pod (kubectl get -o json)."""
    data = json.loads((SAMPLE / "shop-inventory.json").read_text())
    labels = {"k8s-app": "calico-node"}
    data["items"] += [
        {"apiVersion": "apps/v1", "kind": "DaemonSet",
         "metadata": {"name": "calico-node", "namespace": "calico-system", "labels": labels,
                      "uid": "ds-calico"},
         "spec": {"selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels},
             "spec": {"hostNetwork": True, "containers": [
                 {"name": "calico-node", "image": "quay.io/calico/node:v3.29.1"}]}}}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "calico-node-abcde", "namespace": "calico-system",
                      "labels": labels, "uid": "pod-calico",
                      "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet",
                                           "name": "calico-node", "uid": "ds-calico",
                                           "controller": True}]},
         "spec": {"hostNetwork": True, "nodeName": "worker-1", "containers": [
             {"name": "calico-node", "image": "quay.io/calico/node:v3.29.1"}]},
         "status": {"phase": "Running", "podIP": "172.18.0.2",
                    "podIPs": [{"ip": "172.18.0.2"}]}},
    ]
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_run_with_dialect_auto_writes_what_the_cluster_enforces(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(["run", str(SAMPLE / "shop.pcapng"), "--inventory", _dump(tmp_path), "--config",
                 str(SAMPLE / "segmenter.yaml"), "--dialect", "auto", "-o", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["calico", "kubernetes"]
    assert "note: --dialect auto chose kubernetes, calico: Calico: DaemonSet " \
           "calico-system/calico-node" in text
    assert "verify (calico enforcement): 61/61 observed flows allowed" in text
    assert "verify (kubernetes enforcement): 61/61 observed flows allowed" in text


def test_compile_with_dialect_auto_and_no_cni_is_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["run", str(SAMPLE / "shop.pcapng"), "--inventory",
                 str(SAMPLE / "shop-inventory.json"), "--dialect", "kubernetes", "-o",
                 str(run)]) == 0
    capsys.readouterr()
    code = main(["compile", "--graph", str(run / "graph.json"), "--plan", str(run / "plan.json"),
                 "--inventory", str(SAMPLE / "shop-inventory.json"), "--dialect", "auto", "-o",
                 str(tmp_path / "policies")])
    err = capsys.readouterr().err
    assert code == 2
    assert "no network policy engine recognised" in err and "--dialect" in err
    assert not (tmp_path / "policies").exists()


# ---------------------------------------------------------------------------------------------
# Target options


def test_target_options_come_from_the_registry() -> None:
    assert [o.name for o in get_target("calico").options] == ["domains"]
    assert [o.name for o in get_target("clusternetworkpolicy").options] == ["domain_names"]
    with pytest.raises(UnknownNameError, match="option of target kubernetes"):
        get_target("kubernetes").dialect(domains=True)
    assert target_options({"calico": {"domains": True}}) == {"calico": {"domains": True}}
    with pytest.raises(UnknownNameError) as info:
        target_options({"calico": {"domain": True}}, path="s.yaml")
    assert info.value.record == "compile.targets.calico.domain"
    assert "did you mean domains" in str(info.value)
    with pytest.raises(UnknownNameError, match="unknown target 'calicoo'"):
        target_options({"calicoo": {}})
    with pytest.raises(InputError, match="true or false"):
        target_options({"calico": {"domains": "yes"}}, path="s.yaml")


def test_cli_flags_override_the_config() -> None:
    config = Config(compile=CompileOptions(targets={"calico": {"domains": False}}))
    assert pipeline.writer_options(config, {"calico": {"domains": True}}) == {
        "calico": {"domains": True}}
    assert pipeline.writer_options(None, None) == {}


def test_compile_cli_takes_target_flags(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["run", str(SAMPLE / "shop.pcapng"), "--inventory",
                 str(SAMPLE / "shop-inventory.json"), "--dialect", "kubernetes", "-o",
                 str(run)]) == 0
    code = main(["compile", "--graph", str(run / "graph.json"), "--plan", str(run / "plan.json"),
                 "--inventory", str(SAMPLE / "shop-inventory.json"), "--dialect", "calico",
                 "--calico-domains", "-o", str(tmp_path / "calico")])
    assert code == 0
    assert "Calico Enterprise only" in capsys.readouterr().out
    sets = yaml.safe_load_all((tmp_path / "calico" / "05-globalnetworksets.yaml").read_text())
    named = [s for s in sets if s["spec"].get("allowedEgressDomains")]
    assert [s["spec"]["allowedEgressDomains"] for s in named] == [["api.gateway.example"]]


# ---------------------------------------------------------------------------------------------
# Calico Enterprise domains, and what the evaluator makes of them


def _calico(domains: bool) -> list[dict[str, Any]]:
    b = two_tier()
    result = plan(b.graph, Config())
    output = get_target("calico").dialect(domains=domains).emit(lower(b.graph, result,
                                                                       b.inventory()))
    return [d for _, ms in sorted(output.files.items()) for d in yaml.safe_load_all(to_yaml(ms))]


def test_calico_domains_are_opt_in_and_keep_the_addresses() -> None:
    plain = _calico(False)
    assert "allowedEgressDomains" not in yaml.safe_dump_all(plain)
    named = _calico(True)
    [gateway] = [d for d in named if d["kind"] == "GlobalNetworkSet"
                 and d["spec"].get("allowedEgressDomains")]
    assert gateway["spec"] == {"nets": ["203.0.113.10/32"],
                               "allowedEgressDomains": ["api.gateway.example"]}
    problems = validate_manifest(gateway)
    assert problems and all(is_warning(p) for p in problems)
    assert any("Calico Enterprise only" in p for p in problems)


def test_the_calico_evaluator_honours_domains_for_egress_allow_only() -> None:
    docs = _calico(True)
    b = two_tier()
    inventory = b.inventory()
    engine = PolicyEngine.from_manifests(docs, namespaces={ns.name: ns.labels
                                                           for ns in inventory.namespaces},
                                         enforcement="calico")
    pods = {p.owner.id: p for p in inventory.pods}
    api = pods["payments/Deployment/api"]
    api_ep = EvalEndpoint(ip=api.ips[0], namespace="payments", labels=api.labels)
    # Another address the name resolves to: allowed by name; a stranger is not.
    moved = EvalEndpoint(ip="198.51.100.200", dns_names=("api.gateway.example",))
    assert engine.check(api_ep, moved, Transport.TCP, 443).allowed
    assert not engine.check(api_ep, moved, Transport.TCP, 80).allowed
    assert not engine.check(api_ep, EvalEndpoint(ip="198.51.100.200"), Transport.TCP,
                            443).allowed
    # Names have no effect on ingress: the named host cannot call in.
    web = pods["shop/Deployment/web"]
    web_ep = EvalEndpoint(ip=web.ips[0], namespace="shop", labels=web.labels)
    assert not engine.check(moved, api_ep, Transport.TCP, 8443).allowed
    assert not engine.check(moved, web_ep, Transport.TCP, 8080).allowed
    # Without the option the same destination is denied: the evaluator is what changed.
    plain = PolicyEngine.from_manifests(_calico(False), namespaces={
        ns.name: ns.labels for ns in inventory.namespaces}, enforcement="calico")
    assert not plain.check(api_ep, moved, Transport.TCP, 443).allowed


def _rule_domains_policy(action: str, direction: str = "egress",
                         side: str = "destination") -> dict[str, Any]:
    rule = {"action": action, "protocol": "TCP",
            side: {"domains": ["*.example.com"], **({"ports": [443]} if side == "destination"
                                                    else {})}}
    return {"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
            "metadata": {"name": "p", "namespace": "shop"},
            "spec": {"selector": "app == 'web'", "types": ["Egress"] if direction == "egress"
                     else ["Ingress"], direction: [rule]}}


def test_rule_domains_in_the_evaluator_and_the_validator() -> None:
    good = _rule_domains_policy("Allow")
    assert all(is_warning(p) for p in validate_manifest(good))
    for bad in (_rule_domains_policy("Deny"), _rule_domains_policy("Allow", "ingress"),
                _rule_domains_policy("Allow", side="source")):
        assert any("only allowed in the destination of egress Allow rules" in p
                   for p in validate_manifest(bad))
    engine = PolicyEngine.from_manifests([good], namespaces={}, enforcement="calico")
    web = EvalEndpoint(ip="10.244.0.5", namespace="shop", labels=Labels.of({"app": "web"}))
    named = EvalEndpoint(ip="198.51.100.7", dns_names=("api.eu.example.com",))
    bare = EvalEndpoint(ip="198.51.100.7", dns_names=("example.com",))
    assert engine.check(web, named, Transport.TCP, 443).allowed
    assert not engine.check(web, bare, Transport.TCP, 443).allowed  # `*.` needs a label
    bad_name = _rule_domains_policy("Allow")
    bad_name["spec"]["egress"][0]["destination"]["domains"] = ["www.g*.com"]
    assert any("invalid domain name" in p for p in validate_manifest(bad_name))
