"""End to end: `segmenter run` on the bundled sample, and bad input at the command line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from itertools import product
from pathlib import Path

import pytest
import yaml

from segmenter.cli import main
from segmenter.cluster.dump import load_inventory
from segmenter.evaluate import EvalEndpoint, PolicyEngine, load_manifests
from segmenter.flowfile import read_flow_files
from segmenter.model import Transport
from segmenter.targets import target_names
from tests.conftest import REPO

SAMPLE = REPO / "sample"
RUN_ARGS = [str(SAMPLE / "shop.pcapng"), "--inventory", str(SAMPLE / "shop-inventory.json"),
            "--config", str(SAMPLE / "segmenter.yaml")]
PANS = (b"4111 1111 1111 1111", b"4111111111111111")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "out"
    assert main(["run", *RUN_ARGS, "-o", str(out)]) == 0
    return out


def test_run_writes_every_output(run_dir: Path) -> None:
    for name in ("flows.jsonl", "graph.json", "plan.json", "graph.png",
                 *(f"{target}/kustomization.yaml" for target in target_names())):
        assert (run_dir / name).is_file(), name
    plan = json.loads((run_dir / "plan.json").read_text())
    restricted = [m["node"] for m in plan["classes"]["pci"]["zones"]["restricted"]]
    assert restricted == ["payments/StatefulSet/card-vault"]


def test_two_runs_are_byte_identical(run_dir: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert main(["run", *RUN_ARGS, "-o", str(again)]) == 0
    first = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*") if p.is_file())
    second = sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert first == second
    for rel in first:
        assert (run_dir / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_no_output_contains_the_planted_card_number(run_dir: Path) -> None:
    assert any(pan in (SAMPLE / "shop.pcapng").read_bytes() for pan in PANS), \
        "the sample should carry the planted test PAN in its payload"
    for path in run_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(pan in data for pan in PANS), path


def test_every_networkpolicy_is_a_valid_kubernetes_object(run_dir: Path) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    docs = [d for p in sorted((run_dir / "kubernetes").rglob("*.yaml"))
            if p.name != "kustomization.yaml" for d in yaml.safe_load_all(p.read_text())]
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomization_builds_with_kubectl(run_dir: Path) -> None:
    for dialect in target_names():
        result = subprocess.run(["kubectl", "kustomize", str(run_dir / dialect)],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        built = list(yaml.safe_load_all(result.stdout))
        files = [p for p in (run_dir / dialect).rglob("*.yaml") if p.name != "kustomization.yaml"]
        assert len(built) == sum(len(list(yaml.safe_load_all(p.read_text()))) for p in files)


@pytest.mark.parametrize("enforcement", target_names())
def test_only_observed_pairs_reach_the_restricted_zone(run_dir: Path, enforcement: str) -> None:
    """Every (workload, port) pair into or out of card-vault is allowed iff it was observed.
    The vault made no DNS query in the capture, so it gets no DNS egress either (DNS is an
    exfiltration path)."""
    inventory = load_inventory([str(SAMPLE / "shop-inventory.json")])
    graph = json.loads((run_dir / "graph.json").read_text())
    manifests = load_manifests([str(run_dir / enforcement)])
    engine = PolicyEngine.from_manifests(
        manifests, namespaces={ns.name: ns.labels for ns in inventory.namespaces},
        enforcement=enforcement)
    vault = "payments/StatefulSet/card-vault"
    observed = {(e["source"], e["target"], p["protocol"], p["port"])
                for e in graph["edges"] for p in e["ports"]}
    one_pod = {}
    for pod in inventory.pods:
        if not pod.host_network and pod.ips:
            one_pod.setdefault(pod.owner.id, pod)
    ports = sorted({(p["protocol"], p["port"]) for e in graph["edges"] for p in e["ports"]
                    if p["port"] is not None})

    def endpoint(owner: str) -> EvalEndpoint:
        pod = one_pod[owner]
        return EvalEndpoint(ip=pod.ips[0], namespace=pod.namespace, labels=pod.labels,
                            node=pod.node, ports=pod.ports, name=owner)
    checked = 0
    for other, (protocol, port) in product(sorted(one_pod), ports):
        if other == vault:
            continue
        for client, server in ((other, vault), (vault, other)):
            verdict = engine.check(endpoint(client), endpoint(server),
                                   Transport.parse(protocol), port)
            expected = (client, server, protocol, port) in observed
            assert verdict.allowed == expected, (client, server, protocol, port, verdict)
            checked += 1
    assert checked > 100


def test_every_observed_flow_is_allowed(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for enforcement in target_names():
        code = main(["verify", "--policies", str(run_dir / enforcement), "--flows",
                     str(run_dir / "flows.jsonl"), "--inventory",
                     str(SAMPLE / "shop-inventory.json"), "--enforcement", enforcement])
        assert code == 0, capsys.readouterr().out
    flows = read_flow_files([str(run_dir / "flows.jsonl")]).flows
    assert len(flows) > 40


def test_verify_exits_1_when_an_observed_flow_is_denied(run_dir: Path, tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(run_dir / "kubernetes", policies)
    (policies / "payments" / "allow-card-vault.yaml").unlink()
    code = main(["verify", "--policies", str(policies), "--flows", str(run_dir / "flows.jsonl"),
                 "--inventory", str(SAMPLE / "shop-inventory.json"), "--enforcement",
                 "kubernetes"])
    assert code == 1


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "segmenter.cli", *args], capture_output=True,
                          text=True, check=False, cwd=REPO)


def _assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_missing_capture(tmp_path: Path) -> None:
    result = _cli("run", str(tmp_path / "nope.pcap"), *RUN_ARGS[1:], "-o", str(tmp_path / "o"))
    _assert_one_line_error(result, "nope.pcap")


def test_garbage_capture(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"this is not a capture at all" * 10)
    result = _cli("ingest", str(bad), "-o", str(tmp_path / "flows.jsonl"))
    _assert_one_line_error(result, "bad.pcap")
    assert not (tmp_path / "flows.jsonl").exists()


def test_truncated_capture_keeps_flows_before_the_damage(tmp_path: Path) -> None:
    data = (SAMPLE / "shop.pcapng").read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(data[: len(data) // 2 + 7])
    result = _cli("ingest", str(cut), "-o", str(tmp_path / "flows.jsonl"))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "cut.pcapng" in result.stderr  # a warning names the file and packet
    assert len((tmp_path / "flows.jsonl").read_text().splitlines()) > 5


def test_malformed_dump_keeps_previous_output(tmp_path: Path, run_dir: Path) -> None:
    out = tmp_path / "o"
    shutil.copytree(run_dir, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    dump = tmp_path / "dump.json"
    dump.write_text('{"kind": "List", "items": [{"kind": "Pod", "metadata": ')
    result = _cli("run", *RUN_ARGS[:1], "--inventory", str(dump), "-o", str(out))
    _assert_one_line_error(result, "dump.json")
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert before == after


def test_sensitive_selector_matching_nothing(tmp_path: Path) -> None:
    result = _cli("run", *RUN_ARGS[:3], "--sensitive", "pci=payments/app=nothing-here", "-o",
                  str(tmp_path / "o"))
    _assert_one_line_error(result, "matches no pod", "pci=payments/app=nothing-here")


def test_service_port_becomes_target_port(run_dir: Path) -> None:
    """checkout reached payments-api through its Service (443 -> targetPort 8443): case 10."""
    doc = yaml.safe_load((run_dir / "kubernetes/payments/allow-payments-api.yaml").read_text())
    ports = {p["port"] for r in doc["spec"]["ingress"] for p in r["ports"]}
    assert ports == {8443}
    egress = {(p["protocol"], p["port"]) for r in doc["spec"]["egress"] for p in r["ports"]}
    assert ("TCP", 6443) in egress  # the API server, post-DNAT
    assert ("TCP", 443) in egress  # the payment gateway


def test_every_emitted_object_passes_validation(run_dir: Path) -> None:
    """Calico has no offline schema validator here: the evaluator's validator checks required
    fields and value forms (selectors parse, ports carry a protocol, tier-qualified names...)."""
    from segmenter.evaluate import is_warning, validate_manifest

    docs = load_manifests([str(run_dir / "kubernetes"), str(run_dir / "calico")])
    kinds = {d["kind"] for d in docs}
    assert {"NetworkPolicy", "GlobalNetworkPolicy", "GlobalNetworkSet", "Tier"} <= kinds
    for doc in docs:
        problems = [p for p in validate_manifest(doc) if not is_warning(p)]
        assert problems == [], (doc["kind"], doc["metadata"]["name"], problems)


def test_verify_explain_names_policy_and_rule(run_dir: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    inventory = str(SAMPLE / "shop-inventory.json")
    code = main(["verify", "--policies", str(run_dir / "calico"), "--inventory", inventory,
                 "--enforcement", "calico", "--explain", "shop/Deployment/catalog",
                 "payments/StatefulSet/card-vault", "5432/TCP"])
    out = capsys.readouterr().out
    assert code == 1
    assert "DENIED" in out
    assert "segmenter-compliance.pci-payments-card-vault" in out
    code = main(["verify", "--policies", str(run_dir / "kubernetes"), "--inventory", inventory,
                 "--enforcement", "kubernetes", "--explain", "payments/Deployment/payments-api",
                 "payments/StatefulSet/card-vault", "5432"])
    assert code == 0
    assert "allow-card-vault ingress[0]" in capsys.readouterr().out


def test_verify_json_and_over_permissiveness(run_dir: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["verify", "--policies", str(run_dir / "kubernetes"), "--flows",
                 str(run_dir / "flows.jsonl"), "--inventory", str(SAMPLE / "shop-inventory.json"),
                 "--plan", str(run_dir / "plan.json"), "--format", "json",
                 "--enforcement", "kubernetes"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["denied"] == []
    groups = {g["group"]: g for g in report["over_permissiveness"]}
    # Least privilege: everything allowed between workloads was observed.
    assert all(g["allowed"] == g["observed"] for g in groups.values())
    assert "pci:restricted" in groups


def test_verify_reports_policies_the_api_server_would_reject(
        run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n"
                   "  name: broken\n  namespace: shop\nspec:\n  podSelector: {}\n"
                   "  policyTypes: [Ingress, Sideways]\n")
    code = main(["verify", "--policies", str(run_dir / "kubernetes"), str(bad), "--flows",
                 str(run_dir / "flows.jsonl"), "--inventory", str(SAMPLE / "shop-inventory.json"),
                 "--enforcement", "kubernetes"])
    captured = capsys.readouterr()
    err = captured.err
    # The broken policy is not evaluated as if it were valid: a medium finding, below the
    # default --fail-on high.
    assert code == 0
    assert "[medium] invalid-policy" in captured.out
    assert "bad.yaml (document 1)" in err
    assert "policyTypes" in err


def test_a_closed_pipe_ends_quietly_with_the_sigpipe_status() -> None:
    """``segmenter ingest -o - | head -c 1``: no traceback, no error line, status 128 + 13."""
    ingest = subprocess.Popen([sys.executable, "-c", "import sys; from segmenter.cli import main;"
                               " sys.exit(main(sys.argv[1:]))", "ingest",
                               str(SAMPLE / "shop.pcapng"), "-o", "-"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert ingest.stdout is not None and ingest.stderr is not None
    assert ingest.stdout.read(1) == b"{"
    ingest.stdout.close()  # the reader goes away after one byte
    err = ingest.stderr.read()
    assert ingest.wait(timeout=60) == 141
    assert err == b"", err
