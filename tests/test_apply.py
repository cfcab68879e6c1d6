"""``segmenter apply`` / ``rollback``: command construction, backup and rollback logic.

There is no Kubernetes API server on the development machine and none can be installed, so
nothing here talks to a cluster: the plans are checked as argv lists, runs go through a fake
runner with canned answers, and one end-to-end run puts a fake ``kubectl`` script first on
``PATH`` that records its argv and prints recorded output
(``tests/fixtures/policies/kubectl/``). Whether real kubectl / calicoctl accept every command
is therefore not verified here.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from segmenter.apply import (
    ApplyError,
    Completed,
    Step,
    detect_calico_via,
    plan_apply,
    plan_rollback,
    read_source,
    run_apply,
    run_rollback,
    strip_server_fields,
)
from segmenter.cli import main
from segmenter.errors import InputError
from segmenter.targets import CALICO_KINDS

FIXTURES = Path(__file__).parent / "fixtures" / "policies"
K8S_OLD = FIXTURES / "k8s" / "old"  # has a kustomization.yaml
K8S_NEW = FIXTURES / "k8s" / "new"  # has none
CALICO_DIR = FIXTURES / "calico"
STAGED = FIXTURES / "staged"
CANNED = FIXTURES / "kubectl"
NOW = datetime(2026, 11, 30, 14, 5, 9, tzinfo=UTC)


def _argvs(steps: list[Step], phase: str | None = None) -> list[list[str]]:
    return [list(s.argv) for s in steps if phase is None or s.phase == phase]


# ---------------------------------------------------------------------------------------------
# Plans


def test_plan_for_a_kustomized_kubernetes_folder() -> None:
    steps = plan_apply(K8S_OLD, context="prod", kubeconfig="/etc/kube.conf")
    g = ["kubectl", "--kubeconfig", "/etc/kube.conf", "--context", "prod"]
    assert [(s.phase, list(s.argv)) for s in steps] == [
        ("backup", [*g, "get", "networkpolicies.networking.k8s.io", "-n", "shop", "-o", "yaml"]),
        ("diff", [*g, "diff", "-k", str(K8S_OLD)]),
        ("dry-run", [*g, "apply", "--dry-run=server", "-k", str(K8S_OLD)]),
        ("apply", [*g, "apply", "-k", str(K8S_OLD)]),
    ]
    assert steps[1].ok_codes == {0, 1}  # kubectl diff: 1 means "differences"
    assert steps[2].ok_codes == {0}


def test_plan_without_kustomization_applies_the_folder_recursively() -> None:
    steps = plan_apply(K8S_NEW)
    assert _argvs(steps, "apply") == [["kubectl", "apply", "-f", str(K8S_NEW), "-R"]]
    assert _argvs(steps, "diff") == [["kubectl", "diff", "-f", str(K8S_NEW), "-R"]]


def test_plan_for_calico_through_kubectl() -> None:
    steps = plan_apply(CALICO_DIR, calico_via="kubectl")
    assert _argvs(steps, "backup") == [
        ["kubectl", "get", "tiers.projectcalico.org", "-o", "yaml"],
        ["kubectl", "get", "globalnetworksets.projectcalico.org", "-o", "yaml"],
        ["kubectl", "get", "globalnetworkpolicies.projectcalico.org", "-o", "yaml"],
        # always fully qualified: a bare "networkpolicies" would be the Kubernetes kind
        ["kubectl", "get", "networkpolicies.projectcalico.org", "-n", "shop", "-o", "yaml"],
    ]
    assert _argvs(steps, "apply") == [["kubectl", "apply", "-k", str(CALICO_DIR)]]


def test_plan_for_calico_through_calicoctl() -> None:
    steps = plan_apply(CALICO_DIR, context="prod", kubeconfig="/k", calico_via="calicoctl")
    env = (("DATASTORE_TYPE", "kubernetes"), ("KUBECONFIG", "/k"))
    assert all(s.env == env for s in steps)
    assert _argvs(steps, "backup") == [
        ["calicoctl", "--context", "prod", "get", "tier", "-o", "yaml"],
        ["calicoctl", "--context", "prod", "get", "globalNetworkSet", "-o", "yaml"],
        ["calicoctl", "--context", "prod", "get", "globalNetworkPolicy", "-o", "yaml"],
        ["calicoctl", "--context", "prod", "get", "networkPolicy", "-n", "shop", "-o", "yaml"],
    ]
    assert _argvs(steps, "diff") == []  # calicoctl has no diff
    files = ["00-tier-security.yaml", "05-globalnetworksets.yaml",
             "10-guardrails/pci-guard.yaml", "20-shop/allow-dns.yaml"]
    assert _argvs(steps, "dry-run") == [
        ["calicoctl", "validate", "-f", str(CALICO_DIR / f)] for f in files]
    # One file at a time, in name order (the tier before the policies in it).
    assert _argvs(steps, "apply") == [
        ["calicoctl", "--context", "prod", "apply", "-f", str(CALICO_DIR / f)] for f in files]
    assert steps[-1].command_line().startswith("DATASTORE_TYPE=kubernetes KUBECONFIG=/k ")


def test_plan_staged_takes_staged_policies_and_their_tiers_only() -> None:
    steps = plan_apply(STAGED, calico_via="kubectl", staged=True)
    assert _argvs(steps, "backup") == [
        ["kubectl", "get", "tiers.projectcalico.org", "-o", "yaml"],
        ["kubectl", "get", "stagedglobalnetworkpolicies.projectcalico.org", "-o", "yaml"],
        ["kubectl", "get", "stagednetworkpolicies.projectcalico.org", "-n", "shop", "-o",
         "yaml"],
    ]
    targets = ["-f", str(STAGED / "00-tier-security.yaml"),
               "-f", str(STAGED / "10-staged-guard.yaml"),
               "-f", str(STAGED / "20-staged-allow-db.yaml")]  # not 30-enforcing.yaml
    assert _argvs(steps, "apply") == [["kubectl", "apply", *targets]]
    assert _argvs(steps, "dry-run") == [["kubectl", "apply", "--dry-run=server", *targets]]


def test_plan_staged_refuses_a_folder_without_staged_policies() -> None:
    with pytest.raises(InputError, match="no staged policies"):
        plan_apply(K8S_OLD, staged=True)


def test_plan_refuses_files_that_cannot_be_split(tmp_path: Path) -> None:
    mixed = (STAGED / "10-staged-guard.yaml").read_text() + "---\n" + (
        STAGED / "30-enforcing.yaml").read_text()
    (tmp_path / "mixed.yaml").write_text(mixed)
    with pytest.raises(InputError, match="mixes staged policies with enforcing objects"):
        plan_apply(tmp_path, staged=True)
    with pytest.raises(InputError, match="mixes Calico and Kubernetes objects"):
        plan_apply(tmp_path, calico_via="calicoctl")
    # Through kubectl the same file is fine.
    assert _argvs(plan_apply(tmp_path), "apply") == [["kubectl", "apply", "-f", str(tmp_path),
                                                      "-R"]]


def test_read_source_applies_the_kustomization_namespace(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text((K8S_OLD / "shop" / "allow-db.yaml").read_text())
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [p.yaml]\nnamespace: payments\nnamePrefix: x-\n")
    src = read_source(tmp_path)
    assert [str(o.key) for o in src.objects] == [
        "networking.k8s.io/NetworkPolicy payments/allow-db"]
    assert src.notes == ("kustomization.yaml uses namePrefix: not modelled in the backup scope "
                         "(kubectl -k applies them)",)
    with pytest.raises(InputError, match="no such file"):
        read_source(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no manifests found"):
        read_source(empty)


# ---------------------------------------------------------------------------------------------
# A fake runner


class FakeRunner:
    """Answers by the first matching rule: (predicate on argv, Completed)."""

    def __init__(self, rules: list[tuple[Callable[[tuple[str, ...]], bool], Completed]]):
        self.rules = rules
        self.calls: list[Step] = []

    def __call__(self, step: Step) -> Completed:
        self.calls.append(step)
        for match, answer in self.rules:
            if match(step.argv):
                return answer
        return Completed(0, "")


def _has(*words: str) -> Callable[[tuple[str, ...]], bool]:
    return lambda argv: all(w in argv for w in words)


def _k8s_runner(**overrides: Completed) -> FakeRunner:
    rules = [
        (_has("get", "networkpolicies.networking.k8s.io"),
         Completed(0, (CANNED / "get-networkpolicies-shop.yaml").read_text())),
        (_has("diff"), Completed(1, "diff -u -N /tmp/LIVE/networking.k8s.io.v1.NetworkPolicy."
                                    "shop.allow-web /tmp/MERGED/...\n-      port: 8000\n"
                                    "+      port: 8080\n")),
    ]
    for phase, answer in overrides.items():
        word = {"dry_run": "--dry-run=server", "diff": "diff"}[phase]
        rules.insert(0, (_has(word), answer))
    return FakeRunner(rules)


def test_detect_calico_via() -> None:
    served = Completed(0, (CANNED / "api-resources-calico.txt").read_text())
    kinds = [k for k in CALICO_KINDS if k.kind in ("Tier", "GlobalNetworkPolicy")]
    runner = FakeRunner([(_has("api-resources"), served)])
    assert detect_calico_via(kinds, runner, context="prod") == "kubectl"
    assert _argvs(runner.calls) == [["kubectl", "--context", "prod", "api-resources",
                                     "--api-group=projectcalico.org", "-o", "name"]]
    staged = [k for k in CALICO_KINDS if k.staged]
    assert detect_calico_via(staged, runner) == "calicoctl"  # staged kinds not served
    nothing = FakeRunner([(_has("api-resources"), Completed(0, ""))])
    assert detect_calico_via(kinds, nothing) == "calicoctl"
    assert detect_calico_via([], nothing) == "kubectl"
    broken = FakeRunner([(_has("api-resources"), Completed(
        1, "", "error: You must be logged in to the server (Unauthorized)\n"))])
    with pytest.raises(ApplyError) as info:
        detect_calico_via(kinds, broken)
    assert str(info.value) == (
        "step 'detect the Calico API (kubectl api-resources)' failed: kubectl exited 1: "
        "error: You must be logged in to the server (Unauthorized)")


def test_failure_line_skips_client_go_log_noise(tmp_path: Path) -> None:
    # As kubectl prints it when the cluster is unreachable.
    klog = ('E1126 18:02:43.437144   27656 memcache.go:265] "Unhandled Error" err="couldn\'t '
            'get current server API group list: dial tcp 127.0.0.1:8080: connect: connection '
            'refused"\n')
    refused = ("The connection to the server localhost:8080 was refused - did you specify the "
               "right host or port?")
    runner = FakeRunner([(_has("api-resources"), Completed(1, "", klog * 5 + refused + "\n"))])
    with pytest.raises(ApplyError) as info:
        detect_calico_via(CALICO_KINDS, runner)
    assert str(info.value).endswith(f"kubectl exited 1: {refused}")
    runner = _k8s_runner(diff=Completed(
        2, "", klog + 'error: unable to recognize "dir": connection refused\n' + klog))
    with pytest.raises(ApplyError, match=r'exited 2: error: unable to recognize "dir": '
                                         r"connection refused; backup in"):
        run_apply(K8S_OLD, runner=runner, backup_dir=tmp_path, now=NOW)


def test_run_apply_backs_up_then_diffs_dry_runs_and_applies(tmp_path: Path) -> None:
    runner = _k8s_runner()
    lines: list[str] = []
    result = run_apply(K8S_OLD, runner=runner, backup_dir=tmp_path / "backups", now=NOW,
                       context="prod", echo=lines.append)
    assert [s.phase for s in runner.calls] == ["backup", "diff", "dry-run", "apply"]
    assert result.backup == tmp_path / "backups" / "20261130T140509Z"
    assert "+      port: 8080" in result.diff
    assert [str(k) for k in result.existing] == [
        "networking.k8s.io/NetworkPolicy shop/allow-web",
        "networking.k8s.io/NetworkPolicy shop/default-deny"]
    assert [str(k) for k in result.created] == [
        "networking.k8s.io/NetworkPolicy shop/allow-db",
        "networking.k8s.io/NetworkPolicy shop/allow-frontend"]
    assert lines[0] == ("$ kubectl --context prod get networkpolicies.networking.k8s.io -n shop "
                        "-o yaml")

    manifest = json.loads((result.backup / "manifest.json").read_text())
    assert manifest["format"] == "segmenter-apply-backup"
    assert manifest["status"] == "applied"
    assert manifest["created"] == "2026-11-30T14:05:09Z"
    assert manifest["context"] == "prod"
    assert manifest["calico_via"] == "kubectl"
    assert manifest["source"] == str(K8S_OLD.resolve())
    assert manifest["saved"] == [{
        "file": "saved/01-networkpolicies.networking.k8s.io-shop.yaml",
        "restore": "restore/01-networkpolicies.networking.k8s.io-shop.yaml",
        "resource": "networkpolicies.networking.k8s.io",
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "namespace": "shop",
        "tool": "kubectl",
        "objects": ["networking.k8s.io/NetworkPolicy shop/allow-web",
                    "networking.k8s.io/NetworkPolicy shop/default-deny"],
        "overwritten": ["networking.k8s.io/NetworkPolicy shop/allow-web",
                        "networking.k8s.io/NetworkPolicy shop/default-deny"],
    }]
    assert [c["name"] for c in manifest["created_by_apply"]] == ["allow-db", "allow-frontend"]
    assert manifest["created_by_apply"][0] == {
        "group": "networking.k8s.io", "kind": "NetworkPolicy", "namespace": "shop",
        "name": "allow-db", "id": "networking.k8s.io/NetworkPolicy shop/allow-db",
        "apiVersion": "networking.k8s.io/v1", "resource": "networkpolicies.networking.k8s.io",
        "tool": "kubectl", "namespaced": True}
    # The raw answer is kept as is; the restore file is ready to re-apply.
    saved = result.backup / "saved" / "01-networkpolicies.networking.k8s.io-shop.yaml"
    assert saved.read_text() == (CANNED / "get-networkpolicies-shop.yaml").read_text()
    restore = list(yaml.safe_load_all(
        (result.backup / "restore" / "01-networkpolicies.networking.k8s.io-shop.yaml")
        .read_text()))
    assert [d["metadata"] for d in restore] == [
        {"annotations": {"owner": "team-shop"}, "name": "allow-web", "namespace": "shop"},
        {"name": "default-deny", "namespace": "shop"}]
    assert restore[0]["spec"]["ingress"][0]["ports"] == [{"port": 8000, "protocol": "TCP"}]
    # No temporary files left behind by the atomic writes.
    assert not [p for p in result.backup.rglob(".*")]


def test_backup_folders_never_collide(tmp_path: Path) -> None:
    first = run_apply(K8S_OLD, runner=_k8s_runner(), backup_dir=tmp_path, now=NOW)
    second = run_apply(K8S_OLD, runner=_k8s_runner(), backup_dir=tmp_path, now=NOW)
    assert (first.backup, second.backup) == (tmp_path / "20261130T140509Z",
                                             tmp_path / "20261130T140509Z-2")


def test_a_failing_step_stops_the_run(tmp_path: Path) -> None:
    runner = _k8s_runner(dry_run=Completed(
        1, "", 'The NetworkPolicy "allow-web" is invalid: spec.ingress[0].ports[0].port: '
               "Invalid value: 70000\nsecond line\n"))
    with pytest.raises(ApplyError) as info:
        run_apply(K8S_OLD, runner=runner, backup_dir=tmp_path, now=NOW)
    message = str(info.value)
    assert message == (
        "step 'server dry run (kubectl apply --dry-run=server)' failed: kubectl exited 1: "
        'The NetworkPolicy "allow-web" is invalid: spec.ingress[0].ports[0].port: Invalid '
        f"value: 70000; backup in {tmp_path / '20261130T140509Z'}")
    assert [s.phase for s in runner.calls] == ["backup", "diff", "dry-run"]  # no apply
    manifest = json.loads((tmp_path / "20261130T140509Z" / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert manifest["failed_step"] == "server dry run (kubectl apply --dry-run=server)"


def test_a_failing_apply_points_at_the_rollback(tmp_path: Path) -> None:
    runner = _k8s_runner()
    runner.rules.insert(0, (lambda argv: argv[-3:] == ("apply", "-k", str(K8S_OLD)),
                            Completed(1, "", "error: timed out\n")))
    with pytest.raises(ApplyError, match=r"roll back with: segmenter rollback .*20261130T"):
        run_apply(K8S_OLD, runner=runner, backup_dir=tmp_path, now=NOW)


def test_kubectl_diff_errors_are_failures(tmp_path: Path) -> None:
    runner = _k8s_runner(diff=Completed(2, "", "error: diff failed\n"))
    with pytest.raises(ApplyError, match=r"^step 'diff \(kubectl diff\)' failed: kubectl "
                                         r"exited 2: error: diff failed; backup in "):
        run_apply(K8S_OLD, runner=runner, backup_dir=tmp_path, now=NOW)


def test_backup_failure_writes_nothing(tmp_path: Path) -> None:
    runner = FakeRunner([(_has("get"), Completed(1, "", "error: forbidden\n"))])
    with pytest.raises(ApplyError, match=r"^step 'backup of networkpolicies.networking.k8s.io "
                                         r"in shop \(kubectl get\)' failed"):
        run_apply(K8S_OLD, runner=runner, backup_dir=tmp_path / "b", now=NOW)
    assert not (tmp_path / "b").exists()


def test_dry_run_writes_no_backup_and_applies_nothing(tmp_path: Path) -> None:
    runner = _k8s_runner()
    result = run_apply(K8S_OLD, runner=runner, backup_dir=tmp_path / "b", dry_run=True)
    assert [s.phase for s in runner.calls] == ["diff", "dry-run"]
    assert result.backup is None
    assert not (tmp_path / "b").exists()


def test_run_apply_detects_calicoctl_and_backs_up_through_it(tmp_path: Path) -> None:
    runner = FakeRunner([
        (_has("api-resources"), Completed(0, "")),  # Calico API not served
        (_has("get", "tier"), Completed(0, (CANNED / "calicoctl-get-tier.yaml").read_text())),
    ])
    result = run_apply(CALICO_DIR, runner=runner, backup_dir=tmp_path, now=NOW)
    assert result.calico_via == "calicoctl"
    assert [s.phase for s in runner.calls] == (
        ["detect"] + ["backup"] * 4 + ["dry-run"] * 4 + ["apply"] * 4)
    manifest = json.loads((tmp_path / "20261130T140509Z" / "manifest.json").read_text())
    tier_entry = manifest["saved"][0]
    assert tier_entry["tool"] == "calicoctl"
    assert tier_entry["objects"] == ["projectcalico.org/Tier default"]
    assert tier_entry["overwritten"] == []
    assert tier_entry["restore"] is None
    assert [c["id"] for c in manifest["created_by_apply"]] == [
        "projectcalico.org/GlobalNetworkPolicy security.pci-guard",
        "projectcalico.org/GlobalNetworkSet payment-gateway",
        "projectcalico.org/NetworkPolicy shop/allow-dns",
        "projectcalico.org/Tier security"]

    # Rollback: policies, then network sets, then the tier (a tier in use cannot be deleted).
    steps = plan_rollback(tmp_path / "20261130T140509Z")
    assert [s.phase for s in steps] == ["delete"] * 4
    assert _argvs(steps) == [
        ["calicoctl", "delete", "networkPolicy", "allow-dns", "-n", "shop", "--skip-not-exists"],
        ["calicoctl", "delete", "globalNetworkPolicy", "security.pci-guard",
         "--skip-not-exists"],
        ["calicoctl", "delete", "globalNetworkSet", "payment-gateway", "--skip-not-exists"],
        ["calicoctl", "delete", "tier", "security", "--skip-not-exists"],
    ]
    assert plan_rollback(tmp_path / "20261130T140509Z", dry_run=True) == []


def test_rollback_plan_restores_and_deletes(tmp_path: Path) -> None:
    result = run_apply(K8S_OLD, runner=_k8s_runner(), backup_dir=tmp_path, now=NOW,
                       context="prod", kubeconfig="/k")
    assert result.backup is not None
    steps = plan_rollback(result.backup)
    g = ["kubectl", "--kubeconfig", "/k", "--context", "prod"]  # the ones apply used
    restore = result.backup / "restore" / "01-networkpolicies.networking.k8s.io-shop.yaml"
    assert [(s.phase, list(s.argv)) for s in steps] == [
        ("restore", [*g, "apply", "-f", str(restore)]),
        ("delete", [*g, "delete", "networkpolicies.networking.k8s.io", "allow-db",
                    "allow-frontend", "-n", "shop", "--ignore-not-found"]),
    ]
    dry = plan_rollback(result.backup, context="staging", dry_run=True)
    assert _argvs(dry) == [
        ["kubectl", "--kubeconfig", "/k", "--context", "staging", "apply", "--dry-run=server",
         "-f", str(restore)],
        ["kubectl", "--kubeconfig", "/k", "--context", "staging", "delete",
         "networkpolicies.networking.k8s.io", "allow-db", "allow-frontend", "-n", "shop",
         "--ignore-not-found", "--dry-run=server"],
    ]
    runner = FakeRunner([(_has("delete"), Completed(1, "", "error: the server is gone\n"))])
    with pytest.raises(ApplyError, match=r"^step 'delete created networkpolicies"):
        run_rollback(result.backup, runner=runner)
    assert [s.phase for s in runner.calls] == ["restore", "delete"]


def test_rollback_needs_a_backup(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a segmenter backup"):
        plan_rollback(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "something-else"}')
    with pytest.raises(InputError, match="not a segmenter-apply-backup manifest"):
        plan_rollback(tmp_path)


def test_strip_server_fields() -> None:
    doc = yaml.safe_load((CANNED / "get-networkpolicies-shop.yaml").read_text())["items"][1]
    doc["status"] = {}
    assert strip_server_fields(doc) == {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny", "namespace": "shop"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}


# ---------------------------------------------------------------------------------------------
# End to end through subprocess, with a fake kubectl on PATH

FAKE_KUBECTL = """#!{python}
import json, os, pathlib, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(["kubectl", *args]) + "\\n")
canned = pathlib.Path(os.environ["FAKE_CANNED"])
while args and args[0] in ("--context", "--kubeconfig"):
    args = args[2:]
verb = args[0]
if verb == "get":
    if args[1] == "networkpolicies.networking.k8s.io":
        sys.stdout.write((canned / "get-networkpolicies-shop.yaml").read_text())
    else:
        sys.stdout.write("apiVersion: v1\\nitems: []\\nkind: List\\n")
elif verb == "diff":
    print("-      port: 8000")
    print("+      port: 8080")
    sys.exit(1)
elif verb == "api-resources":
    pass
elif verb == "apply":
    if "--dry-run=server" in args:
        print("networkpolicy.networking.k8s.io/allow-web configured (server dry run)")
    else:
        print("networkpolicy.networking.k8s.io/allow-web configured")
elif verb == "delete":
    print("networkpolicy.networking.k8s.io \\"allow-db\\" deleted")
else:
    print("unexpected", args, file=sys.stderr)
    sys.exit(3)
"""


def _cli(argv: list[str]) -> int:
    return main(argv)


def test_apply_and_rollback_commands_with_a_fake_kubectl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(FAKE_KUBECTL.replace("{python}", sys.executable))
    kubectl.chmod(0o755)
    log = tmp_path / "argv.jsonl"
    monkeypatch.setenv("PATH", str(bin_dir))  # only the fake: no real kubectl, no calicoctl
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("FAKE_CANNED", str(CANNED))
    backups = tmp_path / "backups"

    assert _cli(["apply", str(K8S_OLD), "--context", "prod", "--backup-dir", str(backups)]) == 0
    out = capsys.readouterr().out
    assert "+      port: 8080" in out
    assert "networkpolicy.networking.k8s.io/allow-web configured" in out
    (backup,) = backups.iterdir()
    assert out.rstrip().endswith(f"undo with: segmenter rollback {backup}")
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls == [
        ["kubectl", "--context", "prod", "get", "networkpolicies.networking.k8s.io", "-n",
         "shop", "-o", "yaml"],
        ["kubectl", "--context", "prod", "diff", "-k", str(K8S_OLD)],
        ["kubectl", "--context", "prod", "apply", "--dry-run=server", "-k", str(K8S_OLD)],
        ["kubectl", "--context", "prod", "apply", "-k", str(K8S_OLD)],
    ]
    assert json.loads((backup / "manifest.json").read_text())["status"] == "applied"

    log.unlink()
    assert _cli(["rollback", str(backup)]) == 0
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls == [
        ["kubectl", "--context", "prod", "apply", "-f",
         str(backup / "restore" / "01-networkpolicies.networking.k8s.io-shop.yaml")],
        ["kubectl", "--context", "prod", "delete", "networkpolicies.networking.k8s.io",
         "allow-db", "allow-frontend", "-n", "shop", "--ignore-not-found"],
    ]
    assert f"restored {backup} (2 steps)" in capsys.readouterr().out

    # calicoctl is not on PATH: the first calicoctl step fails with one line.
    assert _cli(["apply", str(CALICO_DIR), "--calico-via", "calicoctl", "--backup-dir",
                 str(backups)]) == 2
    assert capsys.readouterr().err == (
        "segmenter: error: step 'backup of tiers.projectcalico.org (calicoctl get)': "
        "calicoctl not found on PATH\n")
