"""deploy/monitor: the manifests are valid Kubernetes 1.30 objects (kubernetes-validate,
strict), the RBAC is read-only and covers every target's policy kinds from the registry, the
Deployment's arguments are the CLI's, and the Fluent Bit configuration ships the alert file
the monitor writes, parsing its JSON and its time stamps.

Fluent Bit itself is not installable here (no Debian package in bookworm, and no other
registry): the configuration is checked for structure; ``fluent-bit --dry-run`` runs when a
``fluent-bit`` binary is on the PATH.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from segmenter.cli import build_parser
from segmenter.cluster.live import RESOURCES
from segmenter.cluster.watch import rfc3339
from segmenter.targets import all_kinds

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "monitor"
MANIFESTS = ("namespace.yaml", "rbac.yaml", "storage.yaml", "deployment.yaml")
READ_VERBS = {"get", "list", "watch"}


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def _by_kind(kind: str) -> dict[str, Any]:
    (doc,) = [d for name in MANIFESTS for d in _docs(name) if d["kind"] == kind]
    return doc


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifests_validate_against_kubernetes_1_30(name: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for doc in _docs(name):
        kubernetes_validate.validate(doc, "1.30.0", strict=True)


def test_rbac_reads_what_the_monitor_reads_and_writes_nothing() -> None:
    role = _by_kind("ClusterRole")
    granted: set[tuple[str, str]] = set()
    for rule in role["rules"]:
        assert set(rule["verbs"]) == READ_VERBS, rule
        granted.update((g, r) for g in rule["apiGroups"] for r in rule["resources"])
    assert not {r for _g, r in granted} & {"secrets", "configmaps", "*"}
    # The live inventory's resources, and every kind of every registered target.
    needed = {(r.group, r.plural) for r in RESOURCES} | {("", "endpoints")}
    needed |= {(k.group, k.plural) for k in all_kinds()}
    assert needed <= granted, sorted(needed - granted)
    assert granted <= needed, sorted(granted - needed)  # nothing more
    binding = _by_kind("ClusterRoleBinding")
    account = _by_kind("ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": account["metadata"]["namespace"]}]


def test_the_deployment_runs_the_monitor_as_the_cli_reads_it() -> None:
    deployment = _by_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == _by_kind("ServiceAccount")["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    monitor = next(c for c in pod["containers"] if c["name"] == "monitor")
    args = build_parser().parse_args(monitor["args"])
    assert args.cluster and args.state and args.alerts and args.metrics_port == 9108
    security = monitor["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m for m in monitor["volumeMounts"]}
    assert args.plan.startswith("/etc/segmenter/plan/")
    assert mounts["/etc/segmenter/plan"]["readOnly"] is True
    assert mounts["/var/lib/segmenter-flows"]["readOnly"] is True
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["spec"]["replicas"] == 1


def test_fluent_bit_ships_the_alert_file_as_json() -> None:
    config = yaml.safe_load((DEPLOY / "fluent-bit.yaml").read_text())
    monitor = next(c for c in _by_kind("Deployment")["spec"]["template"]["spec"]["containers"]
                   if c["name"] == "monitor")
    alerts = build_parser().parse_args(monitor["args"]).alerts
    (tail,) = config["pipeline"]["inputs"]
    assert tail["name"] == "tail" and tail["path"] == alerts
    assert Path(tail["db"]).parent == Path(alerts).parent  # on the persistent volume
    (parser,) = [p for p in config["parsers"] if p["name"] == tail["parser"]]
    assert parser["format"] == "json" and parser["time_key"] == "@timestamp"
    # Fluent Bit's %L is the fraction of a second: the monitor's @timestamp reads with it.
    stamp = rfc3339(1795715500.25)
    parsed = datetime.strptime(stamp, parser["time_format"].replace("%L", "%f"))
    assert parsed.replace(tzinfo=UTC).timestamp() == 1795715500.25
    (output,) = config["pipeline"]["outputs"]
    assert output["match"] == tail["tag"]
    sidecar = next(c for c in _by_kind("Deployment")["spec"]["template"]["spec"]["containers"]
                   if c["name"] == "fluent-bit")
    assert sidecar["args"][-1].endswith("/fluent-bit.yaml")
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert kustomization["configMapGenerator"][0]["files"] == ["fluent-bit.yaml"]
    assert set(kustomization["resources"]) == set(MANIFESTS)


def test_fluent_bit_dry_run() -> None:
    binary = shutil.which("fluent-bit") or shutil.which("/opt/fluent-bit/bin/fluent-bit")
    if binary is None:
        pytest.skip("fluent-bit is not installed (no package in this machine's registries)")
    done = subprocess.run([binary, "--dry-run", "-c", str(DEPLOY / "fluent-bit.yaml")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
