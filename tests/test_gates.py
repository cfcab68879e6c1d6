"""The gates a security team wires into CI and cron (issue 12): ``verify``, ``verify --explain``,
``diff`` and ``report`` must never say "all clear" when the cardholder-data store is open.

Every test starts from the issue's reproduction on the bundled sample: the outputs of
``segmenter.pipeline.run`` (what ``make demo`` writes), then the policies damaged or left out
the way the issue describes, and checks the gate FAILING on them and passing on the real
segmentation. The live cluster is the loopback API server of ``tests/fake_apiserver.py``.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from segmenter.analysis.findings import Finding, FindingKind, Severity, exit_status
from segmenter.cli import main
from segmenter.targets import target_names
from tests.conftest import REPO
from tests.fake_apiserver import FakeApiServer, kubeconfig

SAMPLE = REPO / "sample"
INVENTORY = str(SAMPLE / "shop-inventory.json")
VAULT = "payments/StatefulSet/card-vault"
LIVE = Path(__file__).parent / "fixtures" / "policies" / "live"


def _verify(demo: Path, *policies: str | Path, plan: bool = True, extra: tuple[str, ...] = ()
            ) -> list[str]:
    argv = ["verify", "--policies", *map(str, policies), "--flows", str(demo / "flows.jsonl"),
            "--inventory", INVENTORY, *extra]
    return [*argv, "--plan", str(demo / "plan.json")] if plan else argv


def _one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("segmenter: error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _copy(demo: Path, target: str, tmp_path: Path) -> Path:
    folder = tmp_path / target
    shutil.copytree(demo / target, folder)
    return folder


def _edit(path: Path, change: Any) -> None:
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc))


# ---------------------------------------------------------------------------------------------
# 1. Enforcement from the documents


def test_calico_policies_are_judged_under_calico_enforcement(
        demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Reproduction: Calico policies were judged under Kubernetes enforcement (the default), so
    payments-api -> 8.8.8.8 UDP/53 was ALLOWED ("not isolated for egress")."""
    assert main(_verify(demo, demo / "calico")) == 0
    out = capsys.readouterr().out
    assert "under calico enforcement (the documents are Calico projectcalico.org/v3" in out
    assert "61 of 61 observed flows allowed under calico enforcement" in out
    code = main(["verify", "--policies", str(demo / "calico"), "--inventory", INVENTORY,
                 "--explain", "payments/Deployment/payments-api", "8.8.8.8", "53/UDP"])
    out = capsys.readouterr().out
    assert code == 1
    assert "under calico enforcement" in out and "DENIED" in out
    assert "NetworkPolicy payments/default-deny" in out


@pytest.mark.parametrize("target", [t for t in target_names() if t != "kubernetes"])
def test_every_target_folder_names_its_enforcement(demo: Path, target: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_verify(demo, demo / target)) == 0
    assert f"under {target} enforcement (the documents are" in capsys.readouterr().out


def test_networkpolicies_alone_need_the_enforcement_named(
        demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_verify(demo, demo / "kubernetes")) == 2
    _one_line_error(capsys, "kubernetes: holds only Kubernetes NetworkPolicies",
                    "--enforcement", "--cluster")
    assert main(_verify(demo, demo / "kubernetes", extra=("--enforcement", "kubernetes"))) == 0
    assert "(named with --enforcement)" in capsys.readouterr().out
    # Named, the same NetworkPolicies are judged under another dataplane's enforcement.
    assert main(_verify(demo, demo / "kubernetes", extra=("--enforcement", "cilium"))) == 0
    assert "under cilium enforcement (named with --enforcement)" in capsys.readouterr().out


def test_an_enforcement_at_odds_with_the_documents_is_an_error_naming_both(
        demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_verify(demo, demo / "calico", extra=("--enforcement", "kubernetes"))) == 2
    _one_line_error(capsys, "--enforcement kubernetes conflicts with the documents",
                    "holds calico objects", "use --enforcement calico")
    assert main(_verify(demo, demo / "calico", extra=("--enforcement", "calico"))) == 0


def test_two_targets_objects_are_ambiguous(demo: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_verify(demo, demo / "calico", demo / "cilium")) == 2
    _one_line_error(capsys, "holds objects of 2 targets", "calico (", "cilium (",
                    "no cluster enforces both")


@pytest.mark.parametrize(("documents", "message"), [
    ([], "holds no policy document"),
    ([{"apiVersion": "projectcalico.org/v3", "kind": "Tier",
       "metadata": {"name": "security"}, "spec": {"order": 100}}],
     "holds no policy in force (only 1 Tier)"),
    ([{"apiVersion": "projectcalico.org/v3", "kind": "StagedNetworkPolicy",
       "metadata": {"name": "s", "namespace": "payments"},
       "spec": {"selector": "all()", "types": ["Ingress"], "stagedAction": "Set"}}],
     "holds no policy in force (only 1 StagedNetworkPolicy)"),
    ([{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
       "metadata": {"name": "broken", "namespace": "payments"},
       "spec": {"podSelector": {}, "policyTypes": ["Sideways"]}}],
     "holds no valid policy: all 1 document(s) are rejected"),
], ids=["empty", "tier-only", "staged-only", "all-invalid"])
def test_sets_without_a_policy_in_force_are_refused(
        demo: Path, tmp_path: Path, documents: list[dict[str, Any]], message: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Reproduction: `verify --policies EMPTY_FOLDER ... --plan` said "61 of 61 allowed"."""
    folder = tmp_path / "policies"
    folder.mkdir()
    for i, doc in enumerate(documents):
        (folder / f"{i}.yaml").write_text(yaml.safe_dump(doc))
    for command in (_verify(demo, folder, extra=("--enforcement", "kubernetes")),
                    ["report", "--graph", str(demo / "graph.json"), "--plan",
                     str(demo / "plan.json"), "--policies", str(folder), "--enforcement",
                     "kubernetes", "-o", str(tmp_path / "report")]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("segmenter: error: ") and message in err[-1], err
    assert not (tmp_path / "report").exists()


def test_objects_the_enforcement_does_not_evaluate_are_refused(
        demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A set mixed in a way no cluster enforces: an AdminNetworkPolicy (v1alpha1, replaced by
    ClusterNetworkPolicy) beside the ClusterNetworkPolicy folder is never evaluated."""
    folder = _copy(demo, "clusternetworkpolicy", tmp_path)
    (folder / "anp.yaml").write_text(yaml.safe_dump({
        "apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
        "metadata": {"name": "old"},
        "spec": {"priority": 10, "subject": {"namespaces": {}}, "ingress": []}}))
    assert main(_verify(demo, folder)) == 2
    _one_line_error(capsys, "AdminNetworkPolicy", "no cluster enforces this set as written")


def test_diff_judges_both_sides_under_the_documents_enforcement(
        demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flows = ["--inventory", INVENTORY, "--flows", str(demo / "flows.jsonl")]
    assert main(["diff", str(demo / "calico"), str(demo / "calico"), *flows]) == 0
    assert "note: connections judged under calico enforcement (the documents are" in \
        capsys.readouterr().out
    assert main(["diff", str(demo / "kubernetes"), str(demo / "kubernetes"), *flows]) == 2
    _one_line_error(capsys, "holds only Kubernetes NetworkPolicies")
    assert main(["diff", str(demo / "calico"), str(demo / "cilium"), *flows]) == 2
    _one_line_error(capsys, "holds calico objects", "holds cilium objects",
                    "no cluster enforces both")
    empty = tmp_path / "empty"
    empty.mkdir()
    # One side may be empty (no policies yet); not both.
    assert main(["diff", str(empty), str(demo / "calico"), *flows]) == 1
    capsys.readouterr()
    assert main(["diff", str(empty), str(empty)]) == 2
    _one_line_error(capsys, "every side is empty")


class _Cluster(FakeApiServer):
    """Serves the NetworkPolicies of ``tests/fixtures/policies/live`` and, for each group in
    ``served``, a discovery document (and 404 on its lists: no object of it)."""

    FIXTURES = LIVE

    def __init__(self, served: tuple[str, ...], *, policies: bool = True) -> None:
        super().__init__()
        self.served = served
        self.policies = policies

    def route(self, path: str, query: dict[str, list[str]]) -> tuple[int, str]:
        if path == "/apis/networking.k8s.io/v1/networkpolicies":
            if not self.policies:
                return 200, json.dumps({"kind": "NetworkPolicyList", "apiVersion":
                                        "networking.k8s.io/v1", "metadata": {}, "items": []})
            return self.paged("networkpolicies-page-1", "networkpolicies-page-2", query)
        for group in self.served:
            if path.startswith(f"/apis/{group}/"):
                version = path.split("/")[3]
                if path.count("/") == 3:
                    return 200, json.dumps({"kind": "APIResourceList", "apiVersion": "v1",
                                            "groupVersion": f"{group}/{version}",
                                            "resources": []})
        return 404, self.read("status-404")


@pytest.fixture
def cluster_args(tmp_path: Path) -> Iterator[Any]:
    servers: list[_Cluster] = []

    def start(served: tuple[str, ...], *, policies: bool = True) -> list[str]:
        server = _Cluster(served, policies=policies).__enter__()
        servers.append(server)
        fixtures = LIVE.parent
        return ["verify", "--cluster", "--kubeconfig", kubeconfig(tmp_path, server.url),
                "--flows", str(fixtures / "flows.jsonl"), "--inventory",
                str(fixtures / "inventory.json")]

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.mark.parametrize(("served", "expected"), [
    (("projectcalico.org",), "calico enforcement (detected from the cluster: it serves "
                             "projectcalico.org)"),
    (("cilium.io",), "cilium enforcement (detected from the cluster: it serves cilium.io)"),
    ((), "kubernetes enforcement (detected from the cluster: it serves none of"),
])
def test_cluster_enforcement_is_detected_from_the_api_groups_it_serves(
        cluster_args: Any, served: tuple[str, ...], expected: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(cluster_args(served)) == 1  # the fixture's k8s/old denies frontend -> db
    assert expected in capsys.readouterr().out


def test_cluster_serving_two_targets_apis_or_no_policy_is_an_error(
        cluster_args: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(cluster_args(("projectcalico.org", "cilium.io"))) == 2
    _one_line_error(capsys, "serves the policy APIs of 2 targets (calico, cilium)",
                    "--enforcement")
    assert main([*cluster_args(("projectcalico.org", "cilium.io")), "--enforcement",
                 "calico"]) == 1
    capsys.readouterr()
    assert main(cluster_args((), policies=False)) == 2
    _one_line_error(capsys, "holds no policy document")


# ---------------------------------------------------------------------------------------------
# 2. Isolation is checked, not only replayed flows


def test_restricted_store_without_policy_fails_verify_and_report(
        demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Reproduction: with only the shop namespace's policies the card vault has no policy at
    all; verify said exit 0 without mentioning the restricted zone, report listed failures and
    exited 0 too."""
    shop_only = demo / "kubernetes" / "shop"
    named = ("--enforcement", "kubernetes")
    assert main(_verify(demo, shop_only, extra=named)) == 1
    out = capsys.readouterr().out
    assert "61 of 61 observed flows allowed" in out  # replaying flows alone sees nothing
    assert f"pci restricted         {VAULT}: NOT ISOLATED for ingress and egress" in out
    assert f"[critical] unisolated: {VAULT} (pci restricted) is not isolated for ingress " \
           "and egress" in out
    # Without a plan, the gate says what it did not check.
    assert main(_verify(demo, shop_only, plan=False, extra=named)) == 0
    assert "isolation not checked: give --plan" in capsys.readouterr().out
    report = ["report", "--graph", str(demo / "graph.json"), "--plan", str(demo / "plan.json"),
              "--flows", str(demo / "flows.jsonl"), "--inventory", INVENTORY, *named]
    assert main([*report, "--policies", str(shop_only), "-o", str(tmp_path / "bad")]) == 1
    out = capsys.readouterr().out
    assert f"finding: [critical] unisolated: {VAULT}" in out
    assert (tmp_path / "bad" / "report.md").is_file()  # the evidence is written all the same
    md = (tmp_path / "bad" / "report.md").read_text()
    assert "## Isolation of the in-scope workloads" in md
    # The real segmentation passes both gates; --fail-on medium fails on what the evidence
    # lacks (a capture still learning, no register, no CNI in the inventory), low also on the
    # plaintext flows.
    assert main(_verify(demo, demo / "kubernetes", extra=named)) == 0
    out = capsys.readouterr().out
    assert f"{VAULT}: isolated for ingress and egress; only planned connections allowed" in out
    assert "findings: none" in out
    good = [*report, "--policies", str(demo / "kubernetes"), "-o", str(tmp_path / "good")]
    assert main(good) == 0
    assert re.search(r"findings: \d+, 0 at or above --fail-on high", capsys.readouterr().out)
    assert main([*good, "--fail-on", "medium"]) == 1
    assert main([*good, "--fail-on", "low"]) == 1


@pytest.mark.parametrize("target", target_names())
def test_every_targets_segmentation_passes_the_isolation_check(
        demo: Path, target: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_verify(demo, demo / target, extra=("--enforcement", target,
                                                   "--format", "json"))) == 0
    result = json.loads(capsys.readouterr().out)
    workloads = {w["node"]: w for w in result["isolation"]["workloads"]}
    assert set(workloads) == {VAULT, "payments/Deployment/payments-api",
                              "payments/CronJob/settlement"}
    for w in workloads.values():
        assert w["checked"] and w["unisolated"] == [] and w["beyond_plan"] == [], w
    # Every target allows the same planned connections: the vault's two clients on 5432 (it
    # resolves no names, so no DNS egress), and each client's vault, DNS and other peers.
    assert {n: w["planned_allowed"] for n, w in workloads.items()} == {
        VAULT: 2, "payments/CronJob/settlement": 4, "payments/Deployment/payments-api": 6}
    assert result["findings"] == [] and result["failed"] is False


def test_a_rule_opening_the_vault_beyond_the_plan_fails(
        demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Isolated, but open beyond the plan: allow-card-vault also lets in the internet on 5432
    and the vault out to the whole internet on 443."""
    folder = _copy(demo, "kubernetes", tmp_path)

    def widen(doc: dict[str, Any]) -> None:
        doc["spec"]["ingress"].append({"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                                       "ports": [{"protocol": "TCP", "port": 5432}]})
        doc["spec"].setdefault("egress", []).append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                                      "ports": [{"protocol": "TCP", "port": 443}]})

    _edit(folder / "payments" / "allow-card-vault.yaml", widen)
    assert main(_verify(demo, folder, extra=("--enforcement", "kubernetes"))) == 1
    out = capsys.readouterr().out
    assert f"[high] over-permissive: {VAULT} (pci restricted) is reachable beyond the plan" in out
    assert "from the internet (8.8.8.8) TCP/5432" in out
    assert f"[high] over-permissive: {VAULT} (pci restricted) reaches out beyond the plan" in out
    assert "to the internet (8.8.8.8) TCP/443" in out
    assert "allowed by networking.k8s.io/NetworkPolicy payments/allow-card-vault" in out


def test_the_vaults_own_policy_must_hold_alone(
        demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """allow-card-vault also admits the frontend, which only the frontend's own egress policy
    stops: a change on the shop side would open the vault, so the vault's control fails."""
    folder = _copy(demo, "kubernetes", tmp_path)

    def admit_frontend(doc: dict[str, Any]) -> None:
        doc["spec"]["ingress"].append({
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name":
                                                            "shop"}},
                      "podSelector": {"matchLabels": {"app": "frontend"}}}],
            "ports": [{"protocol": "TCP", "port": 5432}]})

    _edit(folder / "payments" / "allow-card-vault.yaml", admit_frontend)
    assert main(_verify(demo, folder, extra=("--enforcement", "kubernetes"))) == 1
    out = capsys.readouterr().out
    assert "61 of 61 observed flows allowed" in out
    assert f"[high] over-permissive: {VAULT} (pci restricted) admits by its own policies " \
           "beyond the plan (1 probe(s); 1 of them stopped only by the peers' own policies" in out
    assert "from shop/Deployment/frontend TCP/5432" in out


def test_a_connected_workload_beyond_the_plan_is_medium(
        demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _copy(demo, "kubernetes", tmp_path)

    def open_ssh(doc: dict[str, Any]) -> None:
        doc["spec"]["ingress"].append({"ports": [{"protocol": "TCP", "port": 22}]})

    _edit(folder / "payments" / "allow-payments-api.yaml", open_ssh)
    argv = _verify(demo, folder, extra=("--enforcement", "kubernetes"))
    assert main(argv) == 0  # below the default --fail-on high
    out = capsys.readouterr().out
    assert "[medium] over-permissive: payments/Deployment/payments-api (pci connected) is " \
           "reachable beyond the plan" in out
    assert "findings: 1, 0 at or above --fail-on high" in out
    assert main([*argv, "--fail-on", "medium"]) == 1


def test_calico_profile_allows_what_no_policy_selects(
        demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Under Calico, an endpoint no policy selects is allowed by its namespace's profile: the
    guardrail and the vault's policies left out, the vault is open."""
    folder = _copy(demo, "calico", tmp_path)
    shutil.rmtree(folder / "10-guardrails")
    (folder / "20-payments" / "default-deny.yaml").unlink()
    (folder / "20-payments" / "allow-card-vault.yaml").unlink()
    assert main(_verify(demo, folder)) == 1
    out = capsys.readouterr().out
    assert f"[critical] unisolated: {VAULT} (pci restricted) is not isolated for ingress and " \
           "egress (ingress: no policy applies: allowed by profile kns.payments" in out


def test_a_restricted_workload_missing_from_the_inventory_is_not_checked(
        demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dump = json.loads(Path(INVENTORY).read_text())
    vault_pods = [i for i in dump["items"]
                  if i["kind"] == "Pod" and i["metadata"]["name"].startswith("card-vault")]
    dump["items"] = [i for i in dump["items"] if i not in vault_pods]
    partial = tmp_path / "inventory.json"
    partial.write_text(json.dumps(dump))
    # Traffic to an address no pod of the inventory held is refused (the inventory must explain
    # the traffic): leave the vault's flows out too, as an inventory taken after it moved would.
    vault_ips = {a["ip"] for p in vault_pods for a in p["status"].get("podIPs", [])}
    flows = tmp_path / "flows.jsonl"
    flows.write_text("".join(
        line for line in (demo / "flows.jsonl").read_text().splitlines(keepends=True)
        if not vault_ips & set(json.loads(line).get(k) for k in ("client", "server"))))
    argv = _verify(demo, demo / "calico")
    argv[argv.index(INVENTORY)] = str(partial)
    argv[argv.index(str(demo / "flows.jsonl"))] = str(flows)
    assert main(argv) == 1
    assert f"[high] unchecked: {VAULT} (pci restricted) cannot be checked: no pod of it in " \
           "the inventory" in capsys.readouterr().out


def test_severities_and_exit_status() -> None:
    restricted = Finding.of(FindingKind.UNISOLATED, VAULT, "open", "restricted")
    connected = Finding.of(FindingKind.OVER_PERMISSIVE, "x", "wide", "connected")
    assert restricted.severity is Severity.CRITICAL and connected.severity is Severity.MEDIUM
    assert Finding.of(FindingKind.DENIED_FLOW, "f", "denied").severity is Severity.HIGH
    assert Finding.of(FindingKind.PLAINTEXT, "p", "clear").severity is Severity.LOW
    assert exit_status([]) == 0
    assert exit_status([connected]) == 0
    assert exit_status([connected], Severity.MEDIUM) == 1
    assert exit_status([restricted], Severity.CRITICAL) == 1


# ---------------------------------------------------------------------------------------------
# 5. Names as people type them


def _explain(demo: Path, src: str, dst: str, port: str) -> list[str]:
    return ["verify", "--policies", str(demo / "kubernetes"), "--enforcement", "kubernetes",
            "--inventory", INVENTORY, "--explain", src, dst, port]


def test_explain_reads_kubectl_style_names(demo: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Reproduction: `--explain shop/frontend payments/card-vault 5432/TCP` answered "source
    is not a pod ... ALLOWED"; the Kind form gave DENIED."""
    for src, dst in (("shop/frontend", "payments/card-vault"),
                     ("shop/deployment/frontend", "payments/StatefulSet/card-vault"),
                     ("shop/frontend-lqsfgjlvcj-97mqk", "payments/card-vault-0"),
                     ("10.244.1.11", "10.244.1.60")):
        assert main(_explain(demo, src, dst, "5432/TCP")) == 1, (src, dst)
        out = capsys.readouterr().out
        assert "-> payments/StatefulSet/card-vault" in out and "DENIED" in out, out
        assert out.startswith("shop/Deployment/frontend"), out
    assert main(_explain(demo, "payments/payments-api", "payments/card-vault", "5432")) == 0
    assert "ALLOWED" in capsys.readouterr().out


@pytest.mark.parametrize(("src", "port", "needles"), [
    ("shop/frontnd", "5432/TCP", ("no workload or pod named 'frontnd'",
                                  "did you mean shop/frontend?")),
    ("shop/Deployment/frontnd", "5432/TCP", ("no workload shop/Deployment/frontnd",
                                             "did you mean shop/Deployment/frontend")),
    ("frontend", "5432/TCP", ("cannot read 'frontend'", "namespace/name")),
    ("shop/frontend", "99999/TCP", ("port 99999", "outside 1-65535")),
    ("shop/frontend", "0/TCP", ("port 0", "outside 1-65535")),
    ("shop/frontend", "5432/FOO", ("unknown protocol 'FOO'",)),
    ("shop/frontend", "TCP", ("no port in 'TCP'",)),
])
def test_explain_rejects_what_it_cannot_read_in_one_line(
        demo: Path, src: str, port: str, needles: tuple[str, ...],
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_explain(demo, src, "payments/card-vault", port)) == 2
    _one_line_error(capsys, "--explain", *needles)


def test_ambiguous_short_names_list_the_candidates() -> None:
    from segmenter.analysis.explain import Names
    from segmenter.errors import InputError
    from segmenter.model import Inventory, Labels, Pod, WorkloadRef

    def pod(kind: str, name: str, ip: str) -> Pod:
        return Pod("shop", f"{name}-{kind.lower()}-0", Labels.of({"app": name}), (ip,),
                   WorkloadRef("shop", kind, name))

    names = Names(Inventory(pods=(pod("Deployment", "web", "10.0.0.1"),
                                  pod("StatefulSet", "web", "10.0.0.2"))))
    with pytest.raises(InputError, match="shop/web is ambiguous: shop/Deployment/web and "
                                         "shop/StatefulSet/web; give namespace/Kind/name"):
        names.resolve("shop/web")
    assert names.resolve("shop/StatefulSet/web").endpoint.ip == "10.0.0.2"
    assert names.resolve("10.0.0.1").resolved == "shop/Deployment/web (pod web-deployment-0)"
    assert names.resolve("203.0.113.9").resolved == "203.0.113.9 (outside the cluster)"


def test_parse_port_forms() -> None:
    from segmenter.analysis.explain import parse_port
    from segmenter.model import Transport

    assert parse_port("5432/TCP") == parse_port("tcp/5432") == parse_port("5432") == (
        Transport.TCP, 5432)
    assert parse_port("53/udp") == (Transport.UDP, 53)
    assert parse_port("65535/SCTP") == (Transport.SCTP, 65535)
    assert parse_port("ICMP") == (Transport.ICMP, None)
    assert parse_port("8/icmp") == (Transport.ICMP, 8)


# ---------------------------------------------------------------------------------------------
# 6. The semantic diff covers every kind of peer


def _widened(demo: Path, tmp_path: Path, cidr: str) -> tuple[Path, Path]:
    old, new = tmp_path / "old", tmp_path / "new"
    shutil.copytree(demo / "kubernetes", old)
    shutil.copytree(demo / "kubernetes", new)

    def widen(doc: dict[str, Any]) -> None:
        for rule in doc["spec"]["egress"]:
            for peer in rule.get("to", []):
                if peer.get("ipBlock", {}).get("cidr") == "203.0.113.10/32":
                    peer["ipBlock"]["cidr"] = cidr

    _edit(new / "payments" / "allow-settlement.yaml", widen)
    return old, new


def test_diff_shows_a_widened_egress_ipblock(demo: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Reproduction: an egress ipBlock widened from 203.0.113.10/32 to 0.0.0.0/0; the semantic
    part reported no newly reachable external destination, only the YAML hunk showed it."""
    old, new = _widened(demo, tmp_path, "0.0.0.0/0")
    semantic = ["--inventory", INVENTORY, "--flows", str(demo / "flows.jsonl"),
                "--enforcement", "kubernetes", "--format", "json"]
    assert main(["diff", str(old), str(new), *semantic]) == 1
    data = json.loads(capsys.readouterr().out)["semantic"]
    opened = {(c["source"], c["destination"], c["port"]) for c in data["connection_changes"]
              if c["allowed_after"] and not c["allowed_before"]}
    settlement = "payments/CronJob/settlement"
    for destination in ("external:8.8.8.8 (the internet)",
                        "external:203.0.113.9 (just outside 203.0.113.10/32)",
                        "external:198.51.100.20 (observed)", "apiserver (172.18.0.1)",
                        "node:worker-1 (172.18.0.2)"):
        assert (settlement, destination, 443) in opened, (destination, sorted(opened))
    # IPv4 only: the IPv6 internet stays out of reach.
    assert not any("2001:4860:4860::8888" in d for _, d, _ in opened)
    assert data["flow_changes"] == []  # no observed flow changes verdict: only probes show it
    # The same policies: no change, exit 0.
    assert main(["diff", str(old), str(old), *semantic]) == 0
    assert json.loads(capsys.readouterr().out)["semantic"]["connection_changes"] == []


def test_diff_covers_ipv6_and_the_ingress_direction(demo: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    old, new = _widened(demo, tmp_path, "::/0")

    def open_vault(doc: dict[str, Any]) -> None:
        doc["spec"]["ingress"].append({"from": [{"ipBlock": {"cidr": "198.51.100.0/24"}}],
                                       "ports": [{"protocol": "TCP", "port": 5432}]})

    _edit(new / "payments" / "allow-card-vault.yaml", open_vault)
    assert main(["diff", str(old), str(new), "--inventory", INVENTORY, "--enforcement",
                 "kubernetes"]) == 1
    out = capsys.readouterr().out
    assert "+ newly allowed  payments/CronJob/settlement -> external:2001:4860:4860::8888 " \
           "(the internet): TCP/443" in out
    assert f"+ newly allowed  external:198.51.100.1 (inside 198.51.100.0/24) -> {VAULT}: " \
           "TCP/5432" in out
    assert f"external:198.51.100.255 -> {VAULT}" not in out  # outside it, still denied


# ---------------------------------------------------------------------------------------------
# 9. One target per evidence


def test_report_refuses_several_targets_folders(demo: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Reproduction: `make demo` passed both targets' folders to one `report --policies`, so
    the evidence evaluated the union of two policy sets never deployed together."""
    argv = ["report", "--graph", str(demo / "graph.json"), "--plan", str(demo / "plan.json"),
            "--flows", str(demo / "flows.jsonl"), "--inventory", INVENTORY]
    assert main([*argv, "--policies", str(demo / "kubernetes"), str(demo / "calico"),
                 "-o", str(tmp_path / "both")]) == 2
    _one_line_error(capsys, "report evaluates one target's policies at a time",
                    "kubernetes is kubernetes", "calico is calico")
    assert not (tmp_path / "both").exists()
    for target in target_names():
        out = tmp_path / "report" / target
        assert main([*argv, "--policies", str(demo / target), "--enforcement", target,
                     "-o", str(out)]) == 0
        assert f"under **{target}** enforcement" in (out / "report.md").read_text()
        capsys.readouterr()


def test_make_demo_writes_one_report_per_target() -> None:
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "from segmenter.targets import target_names" in makefile  # never a list of names
    assert "$$($(TARGETS_CMD))" in recipe
    assert "--policies output/$$target --enforcement $$target" in recipe
    assert "-o output/report/$$target" in recipe
    readme = (REPO / "README.md").read_text()
    assert "`output/report/<target>/`" in readme


@pytest.mark.parametrize(("command", "needles"), [
    ("verify", ("Exit status: 0 nothing at or above --fail-on; 1 findings at or above",
                "2 bad input", "--explain: 0 allowed, 1 denied")),
    ("report", ("Exit status: 0 nothing at or above --fail-on; 1 findings at or above",
                "2 bad input")),
    ("diff", ("0 no difference, 1 differences, 2 bad input",)),
    ("run", ("0 every observed flow allowed", "2 bad input", "--force")),
])
def test_every_gate_documents_its_exit_status_in_its_help(
        command: str, needles: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main([command, "--help"])
    assert stopped.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for needle in needles:
        assert needle in text, (command, needle)


@pytest.mark.parametrize("target", target_names())
def test_one_sided_decisions_equal_the_sides_of_a_check(demo: Path, target: str) -> None:
    """The isolation check reads the workload's own side with PolicyEngine.decide: it must be
    exactly that side of PolicyEngine.check, for every peer and port of the sample."""
    from segmenter.analysis.isolation import COMMON_PORTS, inventory_peers
    from segmenter.analysis.policies import from_paths
    from segmenter.analysis.verify import EndpointFinder
    from segmenter.cluster.dump import load_inventory
    from segmenter.model import Transport
    from segmenter.targets import get_target

    inventory = load_inventory([INVENTORY])
    engine = get_target(target).evaluator(from_paths([demo / target]).manifests,
                                          {ns.name: ns.labels for ns in inventory.namespaces})
    finder = EndpointFinder(inventory)
    peers = inventory_peers(inventory, finder, {"external:203.0.113.10": "203.0.113.10"})
    vault = next(p.endpoint for p in peers if p.id == VAULT)
    ports = [*COMMON_PORTS, (Transport.TCP, 5432), (Transport.ICMP, None)]
    checked = 0
    for peer in peers:
        for transport, port in ports:
            for src, dst in ((peer.endpoint, vault), (vault, peer.endpoint)):
                verdict = engine.check(src, dst, transport, port)
                assert engine.decide("ingress", src, dst, transport, port) == verdict.ingress
                assert engine.decide("egress", src, dst, transport, port) == verdict.egress
                checked += 1
    assert checked > 200
