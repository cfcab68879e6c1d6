"""``segmenter monitor`` end to end on the bundled sample: the flows ``make demo`` plans, then
streams with injected unplanned flows (see tests/monitor_helpers.py for the addresses).

Every stream is written by the test itself in the flow-file format (docs/flow-format.md).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from segmenter.analysis.verify import FlowChecker
from segmenter.cli import main
from segmenter.cluster.dump import load_inventory
from segmenter.evaluate import load_manifests
from segmenter.model import Transport
from segmenter.monitor import Monitor, MonitorOptions, run_monitor
from segmenter.monitor.state import StateDir
from tests.fake_apiserver import FakeApiServer, kubeconfig
from tests.monitor_helpers import (
    CATALOG,
    EXPECTED,
    HEADER,
    INJECTED,
    INTO_RESTRICTED,
    INVENTORY,
    LATERAL,
    RECOMMENDATIONS,
    SAMPLE,
    T0,
    Demo,
    line,
    make_demo,
    options,
    read_alerts,
    record,
    summary_of,
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    return make_demo(tmp_path_factory.mktemp("demo"))


def _stream(path: Path, demo: Demo, extra: list[dict[str, Any]]) -> Path:
    """The sample's own flows, then ``extra``."""
    text = demo.flows.read_text()
    path.write_text(text + "".join(line(r) for r in extra))
    return path


def _cli(demo: Demo, sources: list[str], *extra: str) -> int:
    return main(["monitor", *sources, "--policies", demo.policies(), "--enforcement",
                 "kubernetes", "--inventory", INVENTORY, "--plan", demo.plan, "--once", *extra])


@pytest.mark.parametrize("target", ["kubernetes", "calico", "cilium", "clusternetworkpolicy"])
def test_the_planned_traffic_gives_no_alert_under_every_target(demo: Demo, target: str,
                                                               tmp_path: Path) -> None:
    alerts = tmp_path / "alerts.jsonl"
    result = run_monitor(options(demo, [str(demo.flows)], policies=(demo.policies(target),),
                                 enforcement=target, alerts=str(alerts), once=True))
    assert result.flows == 61
    assert result.alert_count == 0
    assert alerts.read_text() == ""


def test_injected_unplanned_flows_give_exactly_the_expected_alerts(demo: Demo,
                                                                   tmp_path: Path) -> None:
    stream = _stream(tmp_path / "flows.jsonl", demo, list(INJECTED))
    alerts = tmp_path / "alerts.jsonl"
    result = run_monitor(options(demo, [str(stream)], alerts=str(alerts), once=True))
    found = read_alerts(alerts)
    assert sorted(summary_of(a) for a in found) == sorted(EXPECTED)
    assert result.alert_count == len(EXPECTED)
    assert all(a["count"] == 1 and not a["summary"] for a in found)
    by_kind = {(a["kind"], a["client"]["workload"]): a for a in found}
    plaintext = by_kind[("plaintext-restricted", "shop/Deployment/checkout")]
    # The checkout reached the store through its Service: the wire port and the pod's port.
    assert plaintext["destination"] == {"ip": "10.96.52.60", "port": 5432}
    assert plaintext["zones"] == {"pci": {"client": "general", "server": "restricted"}}
    assert plaintext["tls"] is False
    exfil = by_kind[("new-external", "payments/StatefulSet/card-vault")]
    assert exfil["verdict"]["side"] == "egress"
    assert exfil["verdict"]["policy"] == "networking.k8s.io/NetworkPolicy payments/allow-card-vault"
    assert exfil["rule"]["name"] == exfil["verdict"]["policy"]
    assert exfil["server"]["zone"] == "external"


def test_alert_schema_is_stable_and_ecs_named(demo: Demo, tmp_path: Path) -> None:
    stream = _stream(tmp_path / "flows.jsonl", demo, [INTO_RESTRICTED])
    alerts = tmp_path / "alerts.jsonl"
    run_monitor(options(demo, [str(stream)], alerts=str(alerts), once=True))
    text = alerts.read_text().splitlines()[0]
    alert = json.loads(text)
    assert text == json.dumps(alert, sort_keys=True, separators=(",", ":"))  # sorted, compact
    assert sorted(alert) == [
        "@timestamp", "client", "count", "destination", "ecs", "event", "first_seen", "kind",
        "last_seen", "network", "observed_verdict", "planned", "port", "protocol", "rule",
        "server", "severity", "source", "sources", "summary", "tls", "verdict", "zones"]
    assert alert["@timestamp"] == "2026-11-26T17:51:40.000Z"
    assert alert["event"] == {
        "action": "unplanned-restricted", "category": ["network"],
        "dataset": "segmenter.monitor", "end": "2026-11-26T17:51:41.000Z", "kind": "alert",
        "reason": alert["event"]["reason"], "severity": 73,
        "start": "2026-11-26T17:51:40.000Z", "type": ["connection", "denied"]}
    assert alert["source"] == {"ip": "10.244.1.10", "port": 40000}
    assert alert["destination"] == {"ip": "10.244.1.60", "port": 5432}
    assert alert["network"] == {"iana_number": "6", "transport": "tcp", "type": "ipv4"}
    assert alert["client"] == {"address": "10.244.1.10", "domain": None, "ip": "10.244.1.10",
                               "port": 40000, "workload": "shop/Deployment/frontend",
                               "zone": "general"}
    assert (alert["kind"], alert["severity"], alert["protocol"], alert["port"]) == (
        "unplanned-restricted", "high", "TCP", 5432)
    assert sorted(alert["verdict"]) == ["allowed", "egress", "enforcement", "ingress",
                                        "policy", "reason", "rule", "side"]


def test_no_payload_and_no_card_number_reaches_an_alert(demo: Demo, tmp_path: Path) -> None:
    # The bundled capture carries the planted test card number in plaintext (sample/README).
    capture = (SAMPLE / "shop.pcapng").read_bytes()
    assert b"4111 1111 1111 1111" in capture
    stream = _stream(tmp_path / "flows.jsonl", demo, list(INJECTED))
    alerts = tmp_path / "alerts.jsonl"
    # The capture itself is a source too: its flows go through the judge as any others.
    run_monitor(options(demo, [str(SAMPLE / "shop.pcapng"), str(stream)],
                        policies=(demo.policies("calico"),), alerts=str(alerts), once=True,
                        window=1.0))
    text = alerts.read_text()
    assert text
    digits = re.sub(r"[^0-9]", "", text)
    assert "4111111111111111" not in digits
    assert "4111" not in text
    assert "INSERT" not in text and "tok_" not in text


def test_once_exit_status_0_1_2(demo: Demo, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(demo, [str(demo.flows)], "--alerts", str(tmp_path / "a0")) == 0
    # The gate fails on one unplanned flow into the card vault.
    stream = _stream(tmp_path / "one.jsonl", demo, [INTO_RESTRICTED])
    assert _cli(demo, [str(stream)], "--alerts", str(tmp_path / "a1")) == 1
    assert {a["kind"] for a in read_alerts(tmp_path / "a1")} == {"unplanned-restricted",
                                                                  "policy-denied"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(demo.flows.read_text() + '{"record":"flow","proto":"TCP"\n')
    assert _cli(demo, [str(bad)], "--alerts", str(tmp_path / "a2")) == 2
    err = capsys.readouterr().err
    assert f"{bad} (line 79): not JSON" in err  # header, 61 flows, 16 DNS answers
    assert _cli(demo, [str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: no such file" in capsys.readouterr().err


def test_deduplication_per_edge_and_kind_within_the_window(demo: Demo, tmp_path: Path) -> None:
    repeats = [record("10.244.1.10", "10.244.1.60", 5432, t=T0 + i, client_port=41000 + i,
                      tls=True) for i in range(5)]
    later = record("10.244.1.10", "10.244.1.60", 5432, t=T0 + 100, tls=True)
    stream = _stream(tmp_path / "flows.jsonl", demo, [*repeats, later])
    alerts = tmp_path / "alerts.jsonl"
    run_monitor(options(demo, [str(stream)], alerts=str(alerts), once=True, window=60.0))
    found = [(a["kind"], a["count"], a["summary"], a["first_seen"]) for a in
             read_alerts(alerts) if a["kind"] == "unplanned-restricted"]
    assert found == [
        ("unplanned-restricted", 1, False, T0),  # at once
        ("unplanned-restricted", 5, True, T0),  # the window's summary, when it closed
        ("unplanned-restricted", 1, False, T0 + 100),  # a new window
    ]


def test_a_restart_in_the_middle_loses_and_repeats_nothing(demo: Demo, tmp_path: Path) -> None:
    records = [*INJECTED, *(record("10.244.1.10", "10.244.1.60", 5432, t=T0 + 40 + i,
                                   client_port=42000 + i, tls=True) for i in range(3))]
    whole = _stream(tmp_path / "whole.jsonl", demo, records)
    run_monitor(options(demo, [str(whole)], alerts=str(tmp_path / "whole-alerts"),
                        state=str(tmp_path / "whole-state"), once=True))
    expected = (tmp_path / "whole-alerts").read_text()
    assert expected.count("\n") == len(EXPECTED)

    # The same stream arriving in two parts, the monitor stopped in between.
    grown = tmp_path / "grown.jsonl"
    _stream(grown, demo, records[:2])
    out, state = tmp_path / "alerts", str(tmp_path / "state")
    run_monitor(options(demo, [str(grown)], alerts=str(out), state=state, once=True))
    first = out.read_text()
    with grown.open("a") as f:
        f.writelines(line(r) for r in records[2:])
    run_monitor(options(demo, [str(grown)], alerts=str(out), state=state, once=True))
    assert out.read_text() == expected.replace(str(whole), str(grown))
    assert out.read_text().startswith(first)

    # A crash between writing alerts and the checkpoint: the restart cuts the alert file back
    # to the checkpoint and judges the records after it again.
    crashed = tmp_path / "crashed.jsonl"
    _stream(crashed, demo, records[:2])
    out2, state2 = tmp_path / "alerts2", str(tmp_path / "state2")
    run_monitor(options(demo, [str(crashed)], alerts=str(out2), state=state2, once=True))
    with crashed.open("a") as f:
        f.writelines(line(r) for r in records[2:])
    saves = {"n": 0}
    original = StateDir.save

    def crash(self: StateDir, data: dict[str, Any]) -> None:
        saves["n"] += 1
        raise KeyboardInterrupt  # the process dies after the alerts were written

    StateDir.save = crash  # type: ignore[method-assign]
    try:
        with pytest.raises(KeyboardInterrupt):
            run_monitor(options(demo, [str(crashed)], alerts=str(out2), state=state2,
                                once=True))
    finally:
        StateDir.save = original  # type: ignore[method-assign]
    assert saves["n"] == 1
    assert out2.read_text().count("\n") > first.count("\n")  # written, not checkpointed
    run_monitor(options(demo, [str(crashed)], alerts=str(out2), state=state2, once=True))
    assert out2.read_text() == expected.replace(str(whole), str(crashed))


def test_a_second_monitor_cannot_share_the_state_folder(demo: Demo, tmp_path: Path) -> None:
    held = StateDir(str(tmp_path / "state"))
    try:
        assert _cli(demo, [str(demo.flows)], "--state", str(tmp_path / "state")) == 2
    finally:
        held.close()


def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


def test_an_appended_record_gives_its_alert_within_one_second(demo: Demo,
                                                               tmp_path: Path) -> None:
    stream = _stream(tmp_path / "flows.jsonl", demo, [])
    seen: list[tuple[float, dict[str, Any]]] = []
    monitor = Monitor(options(demo, [str(stream)], alerts=str(tmp_path / "alerts"),
                              poll_interval=0.05),
                      on_alert=lambda doc: seen.append((time.monotonic(), doc)))
    stop = threading.Event()
    thread = threading.Thread(target=monitor.run, args=(stop,))
    thread.start()
    try:
        _wait(lambda: monitor.result.flows == 61)
        appended = time.monotonic()
        with stream.open("a") as f:
            f.write(line(INTO_RESTRICTED))
        _wait(lambda: bool(seen))
    finally:
        stop.set()
        thread.join(10)
    latency = seen[0][0] - appended
    assert seen[0][1]["kind"] == "unplanned-restricted"
    assert latency < 1.0, latency


def test_agent_snapshot_and_numbered_file_judge_a_flow_once(demo: Demo, tmp_path: Path) -> None:
    """The capture agent writes a flow still active into its snapshot (replaced each flush),
    then, once ended, into a numbered file (docs/capture-agent.md): one connection."""
    folder = tmp_path / "agent"
    folder.mkdir()
    header = {**HEADER, "sources": ["node-1:cni0"], "agent": {"kind": "snapshot"}}
    active = folder / "flows-node-1-active.jsonl"
    active.write_text(line(header) + line(INTO_RESTRICTED))
    alerts = tmp_path / "alerts"
    state = str(tmp_path / "state")
    run_monitor(options(demo, [str(folder)], alerts=str(alerts), state=state, once=True))
    assert [a["kind"] for a in read_alerts(alerts)] == ["unplanned-restricted",
                                                         "policy-denied"]
    # The next flush: the snapshot is replaced (still active), then the flow ends.
    active.unlink()
    active.write_text(line(header) + line(INTO_RESTRICTED))
    run_monitor(options(demo, [str(folder)], alerts=str(alerts), state=state, once=True))
    active.unlink()
    numbered = {**HEADER, "sources": ["node-1:cni0"], "agent": {"kind": "periodic"}}
    (folder / "flows-node-1-000001.jsonl").write_text(line(numbered) + line(INTO_RESTRICTED))
    run_monitor(options(demo, [str(folder)], alerts=str(alerts), state=state, once=True))
    saved = json.loads((tmp_path / "state" / "checkpoint.json").read_text())
    assert saved["snapshot_keys"] == []
    assert [g["count"] for g in saved["windows"]] == [1, 1]  # one sighting of each kind
    assert len(read_alerts(alerts)) == 2


def test_standard_input_is_followed(demo: Demo, tmp_path: Path) -> None:
    import io

    data = (demo.flows.read_text() + line(LATERAL)).encode()
    alerts = tmp_path / "alerts"
    monitor = Monitor(options(demo, ["-"], alerts=str(alerts), once=True),
                      stdin=io.BytesIO(data))
    result = monitor.run()
    assert result.flows == 62
    assert sorted(a["kind"] for a in read_alerts(alerts)) == ["drift", "policy-denied"]


def test_learning_proposes_a_policy_folder_and_its_diff_never_applied(demo: Demo,
                                                                      tmp_path: Path) -> None:
    in_force = demo.policies()
    before = sorted((p.name, p.read_bytes()) for p in Path(in_force).rglob("*.yaml"))
    stream = _stream(tmp_path / "flows.jsonl", demo, list(INJECTED))
    review = tmp_path / "review"
    result = run_monitor(options(demo, [str(stream)], alerts=str(tmp_path / "alerts"),
                                 once=True, review_dir=str(review)))
    assert len(result.proposals) == 1
    proposal = Path(result.proposals[0])
    drift = json.loads((proposal / "drift.json").read_text())
    assert drift["applied"] is False
    assert [(e["client"], e["server"], e["port"]) for e in drift["edges"]] == [
        (CATALOG, RECOMMENDATIONS, 8081)]  # restricted edges are never learned
    diff = (proposal / "diff.txt").read_text()
    assert "changed" in diff and "shop/allow-catalog" in diff
    # The proposal allows the learned flow; the policies in force still deny it.
    inventory = load_inventory([INVENTORY])
    proposed = FlowChecker.for_manifests(
        inventory, load_manifests([str(proposal / "kubernetes")]))
    current = FlowChecker.for_manifests(inventory, load_manifests([in_force]))
    args = ("10.244.1.20", "10.96.41.25", 8081, Transport.TCP, T0)
    assert proposed.evaluate(*args).verdict.allowed
    assert not current.evaluate(*args).verdict.allowed
    after = sorted((p.name, p.read_bytes()) for p in Path(in_force).rglob("*.yaml"))
    assert after == before


def test_rule_hygiene_lists_the_rules_that_judged_no_flow(demo: Demo, tmp_path: Path) -> None:
    # Only the frontend's traffic: every other workload's allow rules judge nothing.
    flows = [json.loads(x) for x in demo.flows.read_text().splitlines()[1:]]
    frontend = [r for r in flows if r.get("record") == "dns" or r.get("client") in
                ("10.244.1.10", "10.244.1.11")]
    stream = tmp_path / "flows.jsonl"
    stream.write_text(line(HEADER) + "".join(line(r) for r in frontend))
    review = tmp_path / "review"
    result = run_monitor(options(demo, [str(stream)], alerts=str(tmp_path / "alerts"),
                                 once=True, review_dir=str(review), policies=(
                                     demo.policies("calico"),)))
    report = json.loads(Path(result.hygiene[0]).read_text())
    assert report["enforcement"] == "calico"
    assert report["window"]["seconds"] > 0 and report["window"]["start"].startswith("2026-")
    unused = {(u["policy"], u["rule"]) for u in report["unused_rules"]}
    idle = report["policies_that_judged_no_flow"]
    assert "NetworkPolicy shop/allow-frontend" not in idle
    # Its egress rules judged the frontend's flows but for egress[0], DNS over TCP, which the
    # sample never used; its ingress rules (the internet over IPv4 and IPv6, the node), whose
    # clients were left out, judged none.
    frontend_unused = {r for p, r in unused if p == "NetworkPolicy shop/allow-frontend"}
    assert frontend_unused == {"ingress[0]", "ingress[1]", "ingress[2]", "egress[0]"}
    assert {"NetworkPolicy payments/allow-card-vault", "NetworkPolicy payments/allow-settlement",
            "GlobalNetworkPolicy segmenter-compliance.pci-payments-card-vault"} <= set(idle)
    assert ("NetworkPolicy payments/allow-card-vault", "ingress[0]") in unused
    assert report["rules_in_force"] > len(unused)

    # All the sample's traffic: the compliance tier's Pass rules for the planned peers of the
    # card vault match on the way to the application policies, and count as used.
    result = run_monitor(options(demo, [str(demo.flows)], alerts=str(tmp_path / "alerts2"),
                                 once=True, review_dir=str(tmp_path / "review2"), policies=(
                                     demo.policies("calico"),)))
    report = json.loads(Path(result.hygiene[0]).read_text())
    guard = "GlobalNetworkPolicy segmenter-compliance.pci-payments-card-vault"
    assert guard not in report["policies_that_judged_no_flow"]
    unused_guard = {u["rule"] for u in report["unused_rules"] if u["policy"] == guard}
    assert "ingress[0]" not in unused_guard
    # Only the default denies decided nothing: no unplanned flow reached them.
    assert report["policies_that_judged_no_flow"] == ["NetworkPolicy payments/default-deny",
                                                      "NetworkPolicy shop/default-deny"]


def test_metrics_are_served(demo: Demo, tmp_path: Path) -> None:
    import urllib.request

    stream = _stream(tmp_path / "flows.jsonl", demo, [INTO_RESTRICTED])
    monitor = Monitor(options(demo, [str(stream)], alerts=str(tmp_path / "alerts"),
                              metrics_port=0, poll_interval=0.05))
    stop = threading.Event()
    thread = threading.Thread(target=monitor.run, args=(stop,))
    thread.start()
    try:
        _wait(lambda: monitor.result.flows == 62)
        assert monitor.metrics is not None
        port = monitor.metrics.port
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    finally:
        stop.set()
        thread.join(10)
    body = text.decode()
    assert f'segmenter_monitor_records_read_total{{source="{stream}"}} 78.0' in body
    assert "segmenter_monitor_flows_evaluated_total 62.0" in body
    assert ('segmenter_monitor_alerts_total{kind="unplanned-restricted",zone="restricted"} 1.0'
            in body)
    assert f'segmenter_monitor_lag_bytes{{source="{stream}"}} 0.0' in body
    assert "segmenter_monitor_lag_seconds" in body


def test_options_need_policies_and_a_plan(demo: Demo, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", str(demo.flows), "--inventory", INVENTORY, "--plan", demo.plan,
                 "--once"]) == 2
    assert "give --policies DIR... or --cluster" in capsys.readouterr().err
    assert main(["monitor", str(demo.flows), "--policies", demo.policies(), "--inventory",
                 INVENTORY, "--plan", str(tmp_path / "nope.json"), "--once"]) == 2
    assert "nope.json: no such file" in capsys.readouterr().err
    # Kubernetes NetworkPolicies alone: which dataplane judges them must be said (fail closed).
    assert main(["monitor", str(demo.flows), "--policies", demo.policies(), "--inventory",
                 INVENTORY, "--plan", demo.plan, "--once"]) == 2
    assert "name the enforcement with --enforcement" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["monitor", str(demo.flows), "--enforcement", "nftables", "--plan", demo.plan])


def test_monitor_options_default_to_the_graph_beside_the_plan(demo: Demo) -> None:
    opts = MonitorOptions(sources=(str(demo.flows),), plan=demo.plan)
    assert opts.graph is None
    assert (Path(demo.plan).parent / "graph.json").is_file()


class _PolicyServer(FakeApiServer):
    """Serves NetworkPolicies from memory (a list the test changes); every other API group
    is not served (404), as on a cluster with no other policy CRDs."""

    FIXTURES = Path(__file__).parent / "fixtures" / "policies" / "live"

    def __init__(self, items: list[dict[str, Any]]) -> None:
        super().__init__()
        self.items = items
        self.version = 1

    def route(self, path: str, query: dict[str, list[str]]) -> tuple[int, str]:
        if path == "/apis/networking.k8s.io/v1/networkpolicies":
            return 200, json.dumps({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicyList",
                "metadata": {"resourceVersion": str(self.version)},
                "items": [{k: v for k, v in d.items() if k not in ("apiVersion", "kind")}
                          for d in self.items]})
        return 404, self.read("status-404")


def _allow_lateral() -> list[dict[str, Any]]:
    """Policies allowing catalog -> recommendations on 8081 (both sides)."""
    peer = {"podSelector": {"matchLabels": {"app": "recommendations"}}}
    return [
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "allow-catalog-to-recommendations", "namespace": "shop"},
         "spec": {"podSelector": {"matchLabels": {"app": "catalog"}}, "policyTypes": ["Egress"],
                  "egress": [{"to": [peer], "ports": [{"protocol": "TCP", "port": 8081}]}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "allow-recommendations-from-catalog", "namespace": "shop"},
         "spec": {"podSelector": {"matchLabels": {"app": "recommendations"}},
                  "policyTypes": ["Ingress"],
                  "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "catalog"}}}],
                               "ports": [{"protocol": "TCP", "port": 8081}]}]}},
    ]


def test_a_policy_change_on_the_watched_cluster_changes_verdicts(demo: Demo,
                                                                 tmp_path: Path) -> None:
    """Through the real kubernetes client against a loopback API server: the monitor reads
    the cluster's policies again every --refresh and judges with the new ones from then on."""
    items = [dict(d) for d in load_manifests([demo.policies()])]
    stream = _stream(tmp_path / "flows.jsonl", demo, [LATERAL])
    seen: list[dict[str, Any]] = []
    with _PolicyServer(items) as server:
        monitor = Monitor(
            options(demo, [str(stream)], policies=(), cluster=True,
                    kubeconfig=kubeconfig(tmp_path, server.url), alerts=str(tmp_path / "a"),
                    refresh=0.1, poll_interval=0.05, window=1.0),
            on_alert=seen.append)
        stop = threading.Event()
        thread = threading.Thread(target=monitor.run, args=(stop,))
        thread.start()
        try:
            _wait(lambda: monitor.result.flows == 62)
            assert sorted(a["kind"] for a in seen) == ["drift", "policy-denied"]
            assert seen[0]["verdict"]["allowed"] is False
            reloads = monitor.policies.reloads
            server.items.extend(_allow_lateral())
            server.version += 1
            _wait(lambda: monitor.policies.reloads > reloads)
            with stream.open("a") as f:  # the same lateral flow, a window later
                f.write(line({**LATERAL, "first_seen": LATERAL["first_seen"] + 10,
                              "last_seen": LATERAL["last_seen"] + 10}))
            _wait(lambda: monitor.result.flows == 63)
        finally:
            stop.set()
            thread.join(10)
    after = seen[2:]
    assert [a["kind"] for a in after] == ["drift"]  # still not planned, but no longer denied
    assert after[0]["verdict"]["allowed"] is True
    assert after[0]["verdict"]["ingress"]["policy"] == (
        "networking.k8s.io/NetworkPolicy shop/allow-recommendations-from-catalog")
    assert after[0]["severity"] == "medium"
    assert any(path == "/apis/networking.k8s.io/v1/networkpolicies"
               for path, _q, _auth in server.requests)
