"""Structural and semantic policy diffs, their renderers and the ``segmenter diff`` command.

The fixtures (``tests/fixtures/policies/``) are small hand-written folders: ``k8s/old`` and
``k8s/new`` (three workloads in ``shop``: frontend -> web:8080 -> db:5432 in OLD; in NEW web no
longer reaches db and frontend does), a Calico folder with a tier guardrail, an inventory and a
flow file. The ``--cluster`` side is exercised with a stubbed reader here and through the real
client in ``test_kube_policies.py``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import doctest
import json
from pathlib import Path
from typing import Any

import pytest

import segmenter.analysis.diff.normalize
import segmenter.analysis.diff.semantic
import segmenter.analysis.diff.structural
import segmenter.cluster.policies
import segmenter.targets
from segmenter.analysis.diff.normalize import ObjectKey, normalize
from segmenter.analysis.diff.semantic import semantic_diff
from segmenter.analysis.diff.structural import Added, Changed, Removed, diff_policies, overlay
from segmenter.analysis.diff.text import to_json, to_text
from segmenter.analysis.probes import probe_ports
from segmenter.cli import build_parser, main
from segmenter.cli.checks import CLUSTER
from segmenter.cluster.dump import load_inventory
from segmenter.cluster.policies import LivePolicies
from segmenter.evaluate import load_manifests
from segmenter.flowfile import read_flow_files
from segmenter.model import ContainerPort, Inventory, Labels, Pod, Transport, WorkloadRef

FIXTURES = Path(__file__).parent / "fixtures" / "policies"
OLD = str(FIXTURES / "k8s" / "old")
NEW = str(FIXTURES / "k8s" / "new")
CALICO_DIR = str(FIXTURES / "calico")
INVENTORY = str(FIXTURES / "inventory.json")
FLOWS = str(FIXTURES / "flows.jsonl")
TCP, UDP = Transport.TCP, Transport.UDP


def _np(name: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": "shop", **meta}, "spec": spec}


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return load_inventory([INVENTORY])


def test_doctests() -> None:
    for module in (segmenter.analysis.diff.normalize, segmenter.targets):
        result = doctest.testmod(module)
        assert result.failed == 0
        assert result.attempted > 0


# ---------------------------------------------------------------------------------------------
# normalize


def test_normalize_removes_server_fields_and_fills_kubernetes_defaults() -> None:
    live = _np("web", {"podSelector": {"matchLabels": {"app": "web"}},
                       "egress": [{"ports": [{"port": 53}, {"port": 53, "protocol": "UDP"}],
                                   "to": []}],
                       "ingress": []},
               uid="u", resourceVersion="12", generation=3,
               creationTimestamp="2026-01-01T00:00:00Z", managedFields=[{"manager": "kubectl"}],
               annotations={"kubectl.kubernetes.io/last-applied-configuration": "{}",
                            "team": "shop"},
               labels={})
    live["status"] = {}
    out = normalize(live)
    assert out == {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "web", "namespace": "shop", "annotations": {"team": "shop"}},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                 "egress": [{"ports": [{"port": 53, "protocol": "TCP"},
                                       {"port": 53, "protocol": "UDP"}]}],
                 # egress rules present: Ingress and Egress (policy-semantics.md §1.3)
                 "policyTypes": ["Egress", "Ingress"]},
    }
    assert live["metadata"]["uid"] == "u"  # the input is not modified


def test_normalize_keeps_meaningful_empty_selectors() -> None:
    out = normalize(_np("all", {"podSelector": {}, "ingress": [
        {"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {}}}]}]}))
    assert out["spec"]["podSelector"] == {}
    assert out["spec"]["ingress"] == [{"from": [{"namespaceSelector": {}, "podSelector": {}}]}]
    assert out["spec"]["policyTypes"] == ["Ingress"]


def test_normalize_namespace_defaults_and_cluster_scope() -> None:
    doc = _np("x", {"podSelector": {}})
    del doc["metadata"]["namespace"]
    assert normalize(doc)["metadata"]["namespace"] == "default"
    gnp = {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
           "metadata": {"name": "g", "namespace": "oops"}, "spec": {}}
    assert "namespace" not in normalize(gnp)["metadata"]


def test_normalize_calico_defaults() -> None:
    server = {
        "apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
        "metadata": {"name": "default.allow", "namespace": "shop",
                     "labels": {"projectcalico.org/tier": "default"}, "uid": "u"},
        "spec": {"tier": "default", "order": 500.0, "selector": "", "types": ["Egress"],
                 "egress": [{"action": "Allow", "protocol": "TCP", "source": {},
                             "destination": {"ports": ["443", "8000:8010"]}}],
                 "doNotTrack": False},
    }
    written = {
        "apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
        "metadata": {"name": "allow", "namespace": "shop"},
        "spec": {"order": 500, "egress": [{"action": "Allow", "protocol": "TCP",
                                           "destination": {"ports": [443, "8000:8010"]}}]},
    }
    assert normalize(server) == normalize(written)
    assert normalize(written)["spec"]["types"] == ["Egress"]  # Calico: egress rules only
    assert normalize(written)["spec"]["tier"] == "default"
    tier = {"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": "t"},
            "spec": {"order": 100}}
    assert normalize(tier)["spec"] == {"order": 100, "defaultAction": "Deny"}
    staged = {"apiVersion": "projectcalico.org/v3", "kind": "StagedNetworkPolicy",
              "metadata": {"name": "s", "namespace": "shop"}, "spec": {"selector": "all()"}}
    assert normalize(staged)["spec"]["stagedAction"] == "Set"


def test_normalize_keeps_tier_prefixed_names_outside_the_default_tier() -> None:
    doc = {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
           "metadata": {"name": "default.x"}, "spec": {"tier": "security"}}
    assert normalize(doc)["metadata"]["name"] == "default.x"


# ---------------------------------------------------------------------------------------------
# Structural diff


def test_structural_diff_of_the_fixture_folders() -> None:
    diff = diff_policies(load_manifests([OLD]), load_manifests([NEW]))
    assert [a.id for a in diff.added] == [
        "networking.k8s.io/NetworkPolicy shop/allow-db-from-frontend"]
    assert [r.id for r in diff.removed] == ["networking.k8s.io/NetworkPolicy shop/allow-db"]
    assert [c.id for c in diff.changed] == [
        "networking.k8s.io/NetworkPolicy shop/allow-frontend",
        "networking.k8s.io/NetworkPolicy shop/allow-web",
    ]
    # default-deny is written differently (key order, policyTypes order, ingress: []).
    assert diff.unchanged == (ObjectKey("networking.k8s.io", "NetworkPolicy", "shop",
                                        "default-deny"),)
    web = diff.changed[1]
    assert web.unified.startswith(
        "--- a/networking.k8s.io/NetworkPolicy shop/allow-web\n"
        "+++ b/networking.k8s.io/NetworkPolicy shop/allow-web\n@@ ")
    assert "\n-    - port: 8080\n+    - port: http\n" in web.unified
    assert "\n-  egress:\n" in web.unified
    assert diff.has_changes
    assert diff.touched_namespaces() == {"shop"}
    assert isinstance(diff.added[0], Added)
    assert isinstance(diff.removed[0], Removed)
    assert isinstance(web, Changed)
    with pytest.raises(dataclasses.FrozenInstanceError):
        web.unified = ""  # type: ignore[misc]


def test_identical_sides_and_versions_of_one_group() -> None:
    docs = load_manifests([OLD])
    assert not diff_policies(docs, copy.deepcopy(docs)).has_changes
    # Objects are matched by API group, not version.
    other = copy.deepcopy(docs)
    for d in other:
        d["apiVersion"] = "networking.k8s.io/v2"
    diff = diff_policies(docs, other)
    assert not diff.added
    assert not diff.removed
    assert len(diff.changed) == 4


def test_duplicates_are_noted() -> None:
    doc = _np("a", {"podSelector": {}})
    diff = diff_policies([doc, doc], [])
    assert diff.notes == ("OLD: networking.k8s.io/NetworkPolicy shop/a appears more than once; "
                          "the last one counts",)


def test_overlay_replaces_and_adds_but_never_removes() -> None:
    base = [_np("a", {"podSelector": {}}), _np("b", {"podSelector": {}})]
    top = [_np("b", {"podSelector": {"matchLabels": {"app": "x"}}}), _np("c", {"podSelector": {}})]
    merged = overlay(base, top)
    assert [d["metadata"]["name"] for d in merged] == ["a", "b", "c"]
    assert merged[1]["spec"]["podSelector"] == {"matchLabels": {"app": "x"}}
    diff = diff_policies(base, merged)
    assert not diff.removed
    assert [a.key.name for a in diff.added] == ["c"]


# ---------------------------------------------------------------------------------------------
# Semantic diff


def test_semantic_diff_flows_and_connections(inventory: Inventory) -> None:
    flows = read_flow_files([FLOWS]).flows
    sem = semantic_diff(load_manifests([OLD]), load_manifests([NEW]), inventory, flows)
    assert sem.enforcement == "kubernetes"
    assert sem.workloads_total == sem.workloads_checked == 3
    assert not sem.capped
    # The named port "http" resolves to web's container port 8080.
    assert sem.probes == (("TCP", 5432), ("TCP", 8080))
    changes = {(r.source, r.destination, r.transport, r.port, r.allowed_after)
               for r in sem.reach_changes}
    assert changes == {
        ("shop/Deployment/frontend", "shop/StatefulSet/db", "TCP", 5432, True),
        ("shop/Deployment/web", "shop/StatefulSet/db", "TCP", 5432, False),
    }
    assert sem.flows_checked == 4
    assert [(f.client, f.server, f.port, f.flows, f.allowed_before, f.allowed_after)
            for f in sem.flow_changes] == [
        ("shop/Deployment/frontend", "shop/StatefulSet/db", 5432, 1, False, True),
        ("shop/Deployment/web", "shop/StatefulSet/db", 5432, 2, True, False),
    ]
    denied = sem.flow_changes[1]
    assert denied.before == "allowed"
    assert denied.after.startswith("denied at egress: isolated for egress by shop/allow-web")
    assert sem.has_changes


def test_semantic_diff_follows_the_enforcement(inventory: Inventory) -> None:
    old = load_manifests([OLD])
    new = load_manifests([NEW, CALICO_DIR])
    k8s = semantic_diff(old, new, inventory, enforcement="kubernetes")
    assert {(r.source, r.allowed_after) for r in k8s.reach_changes} == {
        ("shop/Deployment/frontend", True), ("shop/Deployment/web", False)}
    assert "NEW: 4 Calico object(s) not evaluated under kubernetes enforcement " \
           "(see --enforcement calico)" in k8s.notes
    # Under Calico the security tier's guardrail denies everything into db but web, so the
    # frontend -> db opening does not happen; Calico's UDP/53 rule adds a probe port.
    calico = semantic_diff(old, new, inventory, enforcement="calico")
    assert {(r.source, r.destination, r.port, r.allowed_after)
            for r in calico.reach_changes} == {
        ("shop/Deployment/web", "shop/StatefulSet/db", 5432, False)}
    assert ("UDP", 53) in calico.probes


def test_cidr_representatives_inside_outside_and_past_excepts() -> None:
    from ipaddress import ip_network

    from segmenter.analysis.diff.semantic import cidr_representatives

    reps = dict((what, address) for address, what in cidr_representatives(
        [ip_network("10.0.0.0/8"), ip_network("10.0.0.0/24"), ip_network("0.0.0.0/0"),
         ip_network("2001:db8::/32")]))
    # Inside 10.0.0.0/8 but outside its except 10.0.0.0/24.
    assert reps["inside 10.0.0.0/8"] == "10.0.1.0"
    assert reps["inside 10.0.0.0/24"] == "10.0.0.1"
    assert reps["just outside 10.0.0.0/8"] == "9.255.255.255"
    assert reps["inside 0.0.0.0/0"] == "0.0.0.1"
    assert "just outside 0.0.0.0/0" not in reps  # nothing is
    assert reps["inside 2001:db8::/32"] == "2001:db8::1"
    assert reps["just outside 2001:db8::/32"] == "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"


def test_semantic_diff_caps_workloads_and_focuses_changed_namespaces() -> None:
    def pod(ns: str, name: str, ip: str) -> Pod:
        return Pod(ns, f"{name}-0", Labels.of({"app": name}), (ip,),
                   WorkloadRef(ns, "StatefulSet", name))

    inventory = Inventory(pods=(pod("a", "one", "10.1.0.1"), pod("a", "two", "10.1.0.2"),
                                pod("b", "three", "10.1.0.3"), pod("b", "four", "10.1.0.4")))
    deny_b = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "deny", "namespace": "b"},
              "spec": {"podSelector": {}, "ingress": [
                  {"from": [{"podSelector": {"matchLabels": {"app": "nobody"}}}],
                   "ports": [{"port": 80}]}]}}
    sem = semantic_diff([], [deny_b], inventory, max_workloads=2, focus_namespaces={"b"})
    assert sem.capped
    assert (sem.workloads_checked, sem.workloads_total) == (2, 4)
    assert "connections checked between 2 of 4 workloads (capped; changed namespaces first)" \
        in sem.notes
    # Only b's two workloads were probed: each denies the other on TCP/80 now, and so does
    # the internet (IPv4 and IPv6): b's ingress is isolated.
    internet = ("external:8.8.8.8 (the internet)", "external:2001:4860:4860::8888 (the internet)")
    assert {(r.source, r.destination) for r in sem.reach_changes} == {
        ("b/StatefulSet/four", "b/StatefulSet/three"),
        ("b/StatefulSet/three", "b/StatefulSet/four"),
        *((source, f"b/StatefulSet/{name}") for source in internet
          for name in ("three", "four"))}


@pytest.mark.parametrize("enforcement", ["kubernetes", "calico"])
def test_pair_pruning_changes_nothing(inventory: Inventory, enforcement: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from segmenter.analysis.diff.semantic import _affected
    from segmenter.analysis.verify import EndpointFinder

    old = load_manifests([OLD, CALICO_DIR])
    new = load_manifests([NEW, CALICO_DIR])
    endpoints = [EndpointFinder.of_pod(p) for p in inventory.pods]
    assert _affected(old, new, endpoints, {}, enforcement) is not None  # pruning is on
    pruned = semantic_diff(old, new, inventory, enforcement=enforcement)
    monkeypatch.setattr(segmenter.analysis.diff.semantic, "_affected", lambda *a, **k: None)
    full = semantic_diff(old, new, inventory, enforcement=enforcement)
    assert pruned == full
    assert pruned.reach_changes


def test_pair_pruning_is_off_when_tiers_or_sets_change(inventory: Inventory) -> None:
    from segmenter.analysis.diff.semantic import _affected
    from segmenter.analysis.verify import EndpointFinder

    endpoints = [EndpointFinder.of_pod(p) for p in inventory.pods]
    calico = load_manifests([CALICO_DIR])
    assert _affected(calico, calico[1:], endpoints, {}, "calico") is None  # a Tier removed
    # Only the policy changed: db is selected for ingress, nothing for egress.
    egress, ingress = _affected(calico, [d for d in calico if d["kind"] != "GlobalNetworkPolicy"],
                                endpoints, {}, "calico") or (set(), set())
    assert (egress, {inventory.pods[i].name for i in ingress}) == (set(), {"db-0"})


def test_probe_ports_reads_every_rule_form() -> None:
    inventory = Inventory(pods=(Pod("shop", "web-0", Labels(), ("10.0.0.1",),
                                    WorkloadRef("shop", "Pod", "web-0"),
                                    ports=(ContainerPort(8080, TCP, "http"),
                                           ContainerPort(9090, UDP, "http"))),))
    docs = [
        _np("k", {"podSelector": {}, "ingress": [{"ports": [
            {"port": 80}, {"port": 30000, "endPort": 30010, "protocol": "UDP"},
            {"port": "http", "protocol": "TCP"}, {"protocol": "SCTP"}]}]}),
        {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
         "metadata": {"name": "c"},
         "spec": {"ingress": [
             {"action": "Allow", "protocol": 17, "destination": {"ports": ["5000:5002", 53]}},
             {"action": "Allow", "protocol": "ICMP"},
             {"action": "Deny", "protocol": "TCP", "destination": {"notPorts": ["22"]}},
             {"action": "Allow", "destination": {"ports": ["http"]}}]}},
    ]
    assert probe_ports(docs, inventory, [(TCP, 443)]) == [
        (Transport.ICMP, None), (TCP, 22), (TCP, 80), (TCP, 443), (TCP, 8080),
        (UDP, 53), (UDP, 5000), (UDP, 5002), (UDP, 9090), (UDP, 30000), (UDP, 30010)]


# ---------------------------------------------------------------------------------------------
# Renderers


def test_text_and_json_renderers(inventory: Inventory) -> None:
    old, new = load_manifests([OLD]), load_manifests([NEW])
    structural = diff_policies(old, new)
    sem = semantic_diff(old, new, inventory, read_flow_files([FLOWS]).flows)
    text = to_text(structural, sem, old_label="old", new_label="new")
    assert "\033[" not in text
    lines = text.splitlines()
    assert lines[0] == "policies old -> new: 1 added, 1 removed, 2 changed, 1 unchanged"
    assert "+ added    networking.k8s.io/NetworkPolicy shop/allow-db-from-frontend" in lines
    assert "  + newly allowed  shop/Deployment/frontend -> shop/StatefulSet/db: TCP/5432" in lines
    assert "  - newly denied   shop/Deployment/web -> shop/StatefulSet/db: TCP/5432" in lines
    assert "observed flows: 3 of 4 change verdict" in lines
    coloured = to_text(structural, sem, colour=True)
    assert "\033[32m+ added" in coloured
    assert "\033[31m- removed" in coloured

    rendered = to_json(structural, sem, old_label="old", new_label="new")
    assert rendered == to_json(diff_policies(old, new), semantic_diff(
        old, new, inventory, read_flow_files([FLOWS]).flows), old_label="old", new_label="new")
    data = json.loads(rendered)
    assert json.dumps(data, sort_keys=True, indent=1, ensure_ascii=False) + "\n" == rendered
    assert data["changes"] is True
    assert data["structural"]["added"] == [{
        "id": "networking.k8s.io/NetworkPolicy shop/allow-db-from-frontend",
        "group": "networking.k8s.io", "kind": "NetworkPolicy", "namespace": "shop",
        "name": "allow-db-from-frontend"}]
    assert data["structural"]["changed"][1]["unified"] == structural.changed[1].unified
    assert data["semantic"]["connection_changes"][0] == {
        "source": "shop/Deployment/frontend", "destination": "shop/StatefulSet/db",
        "transport": "TCP", "port": 5432, "allowed_before": False, "allowed_after": True,
        "before": sem.reach_changes[0].before, "after": "allowed"}
    assert json.loads(to_json(diff_policies(old, old)))["changes"] is False


# ---------------------------------------------------------------------------------------------
# The command


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def _run(argv: list[str]) -> int:
    return main(argv)


def test_cluster_keeps_its_place_among_the_sides() -> None:
    assert _parse(["diff", "a", "b"]).sides == ["a", "b"]
    assert _parse(["diff", "--cluster", "b"]).sides == [CLUSTER, "b"]
    assert _parse(["diff", "a", "--cluster"]).sides == ["a", CLUSTER]
    assert _parse(["diff", "--format", "json", "--cluster", "b"]).sides == [CLUSTER, "b"]


def test_exit_codes_like_git_diff(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["diff", OLD, OLD]) == 0
    assert "0 added, 0 removed, 0 changed, 4 unchanged" in capsys.readouterr().out
    assert _run(["diff", OLD, NEW, "--format", "json"]) == 1
    assert json.loads(capsys.readouterr().out)["changes"] is True
    assert _run(["diff", OLD, NEW, "--inventory", INVENTORY, "--flows", FLOWS,
                 "--enforcement", "kubernetes"]) == 1
    out = capsys.readouterr().out
    assert "\033[" not in out  # not a terminal
    assert "observed flows: 3 of 4 change verdict" in out
    assert _run(["diff", OLD, NEW, "--color", "always"]) == 1
    assert "\033[" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["diff", OLD], "diff needs two sides"),
    (["diff", "--cluster", "--cluster"], "only one side can be --cluster"),
    (["diff", OLD, NEW, "--flows", FLOWS], "--flows needs --inventory"),
    (["diff", OLD, "/nonexistent/policies"], "no such file or directory"),
])
def test_user_errors(argv: list[str], message: str,
                     capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("segmenter: error: ") and message in err and err.count("\n") == 1


@pytest.fixture
def fake_cluster(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The live side, stubbed: OLD's objects as the server returns them (uid etc. added)."""
    served = []
    for doc in load_manifests([OLD]):
        live = copy.deepcopy(doc)
        live["metadata"].update(uid="u-" + doc["metadata"]["name"], resourceVersion="7")
        served.append(live)
    calls: list[dict[str, Any]] = []

    def fake(kinds: Any, **kwargs: Any) -> LivePolicies:
        calls.append(kwargs)
        return LivePolicies(manifests=copy.deepcopy(served), host="https://cluster.test",
                            notes=("the cluster does not serve projectcalico.org/v3",))

    monkeypatch.setattr(segmenter.cluster.policies, "read_live_policies", fake)
    return calls


def test_cluster_side(fake_cluster: list[dict[str, Any]],
                      capsys: pytest.CaptureFixture[str]) -> None:
    # The cluster holds exactly OLD: no difference.
    assert _run(["diff", "--cluster", OLD, "--context", "prod", "--enforcement",
                 "kubernetes"]) == 0
    # the groups of the enforcement the diff judges under must be served (here: kubernetes)
    assert fake_cluster == [{"context": "prod", "kubeconfig": None,
                             "required_groups": {"networking.k8s.io": "kubernetes enforcement"}}]
    out = capsys.readouterr().out
    assert out.startswith("policies cluster https://cluster.test (context prod) -> ")
    assert "note: the cluster does not serve projectcalico.org/v3" in out
    # NEW applied over the cluster: allow-db stays (apply does not delete), so not "removed".
    assert _run(["diff", "--cluster", NEW, "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["structural"]["removed"] == []
    assert [a["name"] for a in data["structural"]["added"]] == ["allow-db-from-frontend"]
    assert data["new"].endswith("applied over the cluster")
    # Without the overlay (or with the cluster as NEW) it is a plain comparison.
    assert _run(["diff", "--cluster", NEW, "--no-overlay", "--format", "json"]) == 1
    assert len(json.loads(capsys.readouterr().out)["structural"]["removed"]) == 1
    assert _run(["diff", NEW, "--cluster", "--format", "json"]) == 1
    assert [r["name"] for r in json.loads(capsys.readouterr().out)["structural"]["added"]] == [
        "allow-db"]


def test_cluster_side_leaves_out_kinds_it_cannot_read(
        fake_cluster: list[dict[str, Any]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "with-namespace"
    folder.mkdir()
    for doc in load_manifests([OLD]):
        (folder / f"{doc['metadata']['name']}.json").write_text(json.dumps(doc))
    (folder / "ns.json").write_text(json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}))
    assert _run(["diff", "--cluster", str(folder)]) == 0
    assert ("1 object(s) of kinds the cluster side does not read left out of the comparison"
            in capsys.readouterr().out)
