"""``report --cluster``: the policies in force, the API groups the cluster serves, the policy
engine it runs and who may change the policies, read through the REAL ``kubernetes`` client
from a loopback API server (tests/fake_apiserver.py) that answers with the demo's compiled
NetworkPolicies (turned into a ``NetworkPolicyList`` here, with the fields the API server adds),
the sample inventory's DaemonSets, Deployments, ReplicaSets and pods plus a Calico agent (turned
into ``<Kind>List``s here, items without ``kind``, as the API server lists them) and the RBAC
objects of ``tests/fixtures/rbac/`` (see its README); and the who-may-change analysis on its
own."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from segmenter.analysis.rbac import CLUSTER_WIDE, Grant, aggregated_rules, policy_writers
from segmenter.cli import main
from segmenter.cluster.rbac import RbacObjects
from segmenter.evaluate import load_manifests
from segmenter.views.report.appendix import policies_text
from tests.fake_apiserver import FakeApiServer, kubeconfig

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample"
INVENTORY = str(SAMPLE / "shop-inventory.json")
RBAC = Path(__file__).parent / "fixtures" / "rbac"
NP_PATH = "/apis/networking.k8s.io/v1/networkpolicies"
RBAC_PATH = "/apis/rbac.authorization.k8s.io/v1"


def _as_served(doc: dict[str, Any], number: int) -> dict[str, Any]:
    """A compiled policy as a list item of the API server: no kind / apiVersion, and the
    metadata the server adds."""
    item = {k: v for k, v in doc.items() if k not in ("kind", "apiVersion")}
    item["metadata"] = {**doc["metadata"], "uid": f"0d7c1f52-0000-4000-8000-{number:012d}",
                        "resourceVersion": str(9000 + number), "generation": 1,
                        "creationTimestamp": "2026-11-30T12:00:00Z",
                        "managedFields": [{"manager": "kubectl", "operation": "Apply"}]}
    return item


# Workload lists the engine is recognised from: path -> (kind, apiVersion of the list).
WORKLOAD_PATHS = {"/apis/apps/v1/daemonsets": ("DaemonSet", "apps/v1"),
                  "/apis/apps/v1/deployments": ("Deployment", "apps/v1"),
                  "/apis/apps/v1/replicasets": ("ReplicaSet", "apps/v1"),
                  "/api/v1/pods": ("Pod", "v1")}


def _calico_agent() -> list[dict[str, Any]]:
    """A calico-node DaemonSet and its pod, labelled and imaged as Calico's upstream manifest
    has them (projectcalico/calico charts/calico/templates/calico-node.yaml), in the API
    server's form."""
    labels = {"k8s-app": "calico-node"}
    container = {"name": "calico-node", "image": "docker.io/calico/node:v3.29.1"}
    daemonset = {"kind": "DaemonSet", "apiVersion": "apps/v1", "metadata": {
        "name": "calico-node", "namespace": "kube-system", "uid": "5b1e0c4a-calico-ds",
        "labels": labels}, "spec": {"selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels}, "spec": {"hostNetwork": True,
                                                     "containers": [container]}}}}
    pod = {"kind": "Pod", "apiVersion": "v1", "metadata": {
        "name": "calico-node-7xk2p", "namespace": "kube-system", "uid": "5b1e0c4a-calico-pod",
        "labels": labels, "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet",
                                               "name": "calico-node",
                                               "uid": "5b1e0c4a-calico-ds",
                                               "controller": True}]},
        "spec": {"hostNetwork": True, "nodeName": "worker-1", "containers": [container]},
        "status": {"phase": "Running", "podIP": "10.0.0.11", "podIPs": [{"ip": "10.0.0.11"}]}}
    return [daemonset, pod]


class _Cluster(FakeApiServer):
    FIXTURES = RBAC

    def __init__(self, policies: list[dict[str, Any]], workloads: list[dict[str, Any]]) -> None:
        super().__init__()
        self.policies = {"kind": "NetworkPolicyList", "apiVersion": "networking.k8s.io/v1",
                         "metadata": {"resourceVersion": "9100"},
                         "items": [_as_served(d, i) for i, d in enumerate(policies)]}
        self.workloads = workloads

    def _listed(self, kind: str, api_version: str) -> str:
        items = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")}
                 for o in self.workloads if o.get("kind") == kind]
        return json.dumps({"kind": f"{kind}List", "apiVersion": api_version,
                           "metadata": {"resourceVersion": "9200"}, "items": items})

    def route(self, path: str, query: dict[str, list[str]]) -> tuple[int, str]:
        if path == NP_PATH:
            return 200, json.dumps(self.policies)
        if path in WORKLOAD_PATHS:
            return 200, self._listed(*WORKLOAD_PATHS[path])
        if path == "/apis":
            return 200, self.read("apis")
        if path == f"{RBAC_PATH}/clusterroles":
            return self.paged("clusterroles-page-1", "clusterroles-page-2", query)
        for name in ("roles", "rolebindings", "clusterrolebindings"):
            if path == f"{RBAC_PATH}/{name}":
                return 200, self.read(name)
        return 404, self.read("status-404")


def _sample_workloads() -> list[dict[str, Any]]:
    """The sample inventory's objects (it shows no policy engine)."""
    return list(json.loads(Path(INVENTORY).read_text())["items"])


@pytest.fixture
def cluster(demo: Path) -> Iterator[_Cluster]:
    with _Cluster(load_manifests([str(demo / "kubernetes")]),
                  [*_sample_workloads(), *_calico_agent()]) as server:
        yield server


def _argv(demo: Path, config: str, out: Path) -> list[str]:
    return ["report", "--graph", str(demo / "graph.json"), "--plan", str(demo / "plan.json"),
            "--cluster", "--kubeconfig", config, "--enforcement", "kubernetes",
            "--flows", str(demo / "flows.jsonl"), "--inventory", INVENTORY,
            "--config", str(SAMPLE / "segmenter.yaml"), "--generated-at", "2026-12-01",
            "-o", str(out)]


def _section(markdown: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^<a id=\"[^\"]+\"></a>\n## |\Z)",
                      markdown, re.MULTILINE | re.DOTALL)
    assert match, f"no section {title!r}"
    return match.group(1)


def test_the_report_reads_the_cluster_as_it_is(demo: Path, tmp_path: Path, cluster: _Cluster,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    config = kubeconfig(tmp_path, cluster.url)
    assert main(_argv(demo, config, out)) == 0
    printed = capsys.readouterr().out
    assert "(kubernetes enforcement)" in printed
    md = (out / "report.md").read_text()
    # The policies in force, judged as the files are: the same evidence.
    assert "All 61 observed flows are allowed under kubernetes enforcement" in md
    assert "No path into or out of the restricted zone is allowed beyond the plan." in md
    # Digested as the appendix prints them (the server's bookkeeping left out).
    served = load_manifests([str(demo / "kubernetes")])
    about = _section(md, "About this report")
    digest = hashlib.sha256(policies_text(
        [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", **_as_served(d, i)}
         for i, d in enumerate(served)]).encode()).hexdigest()
    assert f"| policies | cluster {cluster.url} | - | {digest} |" in about
    appendix = _section(md, "Appendix A: the policies evaluated")
    assert "managedFields" not in appendix and "resourceVersion" not in appendix
    assert appendix.count("```yaml") == len(served)
    # The API groups it serves, the engine it runs (not in the inventory file: read from the
    # cluster), and who may change the policies.
    state = _section(md, "The cluster as it is")
    assert (f"Recognised by the engine's agent (its labels or image) among the workloads the "
            f"cluster at `{cluster.url}` runs now.") in state
    assert ("| Calico | DaemonSet kube-system/calico-node (k8s-app=calico-node, image "
            "docker.io/calico/node:v3.29.1) | networking.k8s.io, projectcalico.org | yes |"
            ) in state
    assert "Calico evaluates its tiers in order before the Kubernetes NetworkPolicies" in state
    assert "enforcement-unverified" not in printed and "not-enforced" not in printed
    assert "API groups served by the cluster at" in state
    assert "`networking.k8s.io/v1`" in state and "rbac.authorization" not in state.split(
        "API groups served", 1)[1].split("\n", 1)[0]
    rows = [line for line in state.splitlines() if line.startswith("| ")]
    subjects = {row.split(" | ")[0].strip("| ⚠️") for row in rows[1:]}  # past the header
    assert {"Group system:masters", "Group netsec", "Group payments-ops", "User bob",
            "ServiceAccount payments/deployer", "User dora",
            "ServiceAccount kube-system/calico-kube-controllers"} <= subjects
    for absent in ("Group shop-ops", "User alice", "Group system:authenticated", "User erin"):
        assert absent not in subjects, absent
    assert "Subjects that may grant themselves these rights" in state and "`User carol`" in state
    # Each request went to the server the kubeconfig names, with its token.
    asked = {p.rstrip("/") for p, _, _ in cluster.requests}
    assert asked >= {NP_PATH, "/apis", f"{RBAC_PATH}/roles", f"{RBAC_PATH}/clusterroles",
                     *WORKLOAD_PATHS}
    assert all(auth == "Bearer test-token" for _, _, auth in cluster.requests)


def test_a_cluster_without_a_known_engine_is_unverified_whatever_the_inventory_says(
        demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The engine is the cluster's, not the inventory file's: an inventory that shows Calico
    does not make up for a cluster that runs none (and the finding gates at medium)."""
    dump = json.loads(Path(INVENTORY).read_text())
    dump["items"] += _calico_agent()
    inventory = tmp_path / "inventory-with-calico.json"
    inventory.write_text(json.dumps(dump))
    with _Cluster(load_manifests([str(demo / "kubernetes")]), _sample_workloads()) as server:
        argv = _argv(demo, kubeconfig(tmp_path, server.url), tmp_path / "r")
        argv[argv.index(INVENTORY)] = str(inventory)
        assert main(argv) == 0
        printed = capsys.readouterr().out
        assert ("finding: [medium] enforcement-unverified: nothing shows that these policies "
                "are enforced: the cluster runs no policy engine segmenter recognises") in printed
        assert main([*argv, "--fail-on", "medium"]) == 1
    state = _section((tmp_path / "r" / "report.md").read_text(), "The cluster as it is")
    assert "Not verified: the cluster runs no policy engine segmenter recognises" in state
    assert "| Calico |" not in state


def test_workloads_that_cannot_be_read_are_one_line_and_write_nothing(
        demo: Path, tmp_path: Path, cluster: _Cluster,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Never a report that says no engine was found because the pods could not be listed."""
    cluster.overrides["/api/v1/pods"] = (403, "status-403-pods")
    out = tmp_path / "r"
    assert main(_argv(demo, kubeconfig(tmp_path, cluster.url), out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"segmenter: error: forbidden: needs list on pods at {cluster.url}")
    assert not out.exists()


@pytest.mark.parametrize("case", [
    ("clusterrolebindings", 403, "forbidden: needs list on clusterrolebindings."
     "rbac.authorization.k8s.io at {url} to say who may change the policies (see "
     "docs/rbac-report.yaml)"),
    ("roles", 404, "the cluster at {url} does not serve roles.rbac.authorization.k8s.io: who "
     "may change the policies cannot be read"),
])
def test_rbac_that_cannot_be_read_is_one_line_and_writes_nothing(
        demo: Path, tmp_path: Path, cluster: _Cluster, capsys: pytest.CaptureFixture[str],
        case: tuple[str, int, str]) -> None:
    """Never an empty list of who may change the policies."""
    resource, status, says = case
    fixture = "status-403-clusterrolebindings" if status == 403 else "status-404"
    cluster.overrides[f"{RBAC_PATH}/{resource}"] = (status, fixture)
    out = tmp_path / "r"
    assert main(_argv(demo, kubeconfig(tmp_path, cluster.url), out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"segmenter: error: {says.format(url=cluster.url)}"]
    assert not out.exists()


def test_policies_or_cluster_not_both(demo: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    argv = _argv(demo, "unused", tmp_path / "r")
    assert main([*argv, "--policies", str(demo / "kubernetes")]) == 2
    assert "give --policies or --cluster, not both" in capsys.readouterr().err
    argv.remove("--cluster")
    assert main(argv) == 2
    assert "give --policies DIR (one target's folder) or --cluster" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Who may change the policies, on its own


def _objects() -> RbacObjects:
    def items(*names: str) -> tuple[dict[str, Any], ...]:
        return tuple(i for n in names for i in json.loads((RBAC / f"{n}.json").read_text())[
            "items"])

    return RbacObjects(items("roles"), items("clusterroles-page-1", "clusterroles-page-2"),
                       items("rolebindings"), items("clusterrolebindings"))


def test_aggregated_roles_hold_their_selected_roles_rules_to_a_fixed_point() -> None:
    rules = aggregated_rules(_objects().cluster_roles)
    editor = rules["netpol-editor"][0]
    assert rules["netpol-admin"] == [editor]  # its own rules are null: filled here
    assert editor in rules["ops-admin"]  # ops-admin -> netpol-admin-ops -> netpol-editor


def test_who_may_change_the_policies_in_the_restricted_namespace() -> None:
    grants = policy_writers(_objects(), ["payments"])
    by_subject: dict[str, list[Grant]] = {}
    for grant in grants:
        by_subject.setdefault(grant.subject, []).append(grant)
    masters = by_subject["Group system:masters"][0]
    assert (masters.scope, masters.verbs) == (CLUSTER_WIDE, (
        "create", "update", "patch", "delete", "deletecollection"))
    assert "tiers.projectcalico.org" in masters.resources  # "*" covers every group's kinds
    assert by_subject["Group netsec"][0].resources == ("globalnetworkpolicies.projectcalico.org",
                                                       "tiers.projectcalico.org")
    ops = by_subject["Group payments-ops"][0]
    assert (ops.scope, ops.verbs, ops.binding, ops.role) == (
        "payments", ("create", "delete"), "RoleBinding payments/ops", "Role payments/netpol-ops")
    deployer = by_subject["ServiceAccount payments/deployer"][0]
    assert deployer.role == "ClusterRole ops-admin" and "patch" in deployer.verbs
    bob = by_subject["User bob"][0]
    assert (bob.names, bob.verbs) == (("default-deny",), ("update", "delete"))  # never create
    dora = by_subject["User dora"][0]
    assert dora.verbs == ("deletecollection",)
    assert dora.resources == ("ciliumnetworkpolicies.cilium.io",)  # not the clusterwide kind
    crd = by_subject["ServiceAccount kube-system/calico-kube-controllers"][0]
    assert crd.resources == ("globalnetworkpolicies.crd.projectcalico.org",
                             "networkpolicies.crd.projectcalico.org")
    # A RoleBinding of a ClusterRole with cluster-scoped kinds only grants nothing; read-only,
    # status-only and other namespaces' bindings are not changes here.
    for absent in ("User alice", "Group system:authenticated", "User erin", "Group shop-ops"):
        assert absent not in by_subject, absent
    assert grants == sorted(grants, key=lambda g: (g.scope != CLUSTER_WIDE, g.scope, g.subject,
                                                   g.binding, g.names))
