"""Flow records of flow-log sources in the planner (flow file version 2): reading their fields,
resolving ends by identity, cross-checking identities against the inventory, an inventory built
from the records, flows that were not let through, sources and sampled counts up to the rules.

Flows are built here as ``segmenter.model.Flow`` objects or flow-file lines, with the fields
docs/flow-format.md defines and the shapes the sources write (capture/sources/calico.py,
goldmane.py, hubble.py: a Calico "net" end is ``{"entity": "world"}``, a GlobalNetworkSet only
``workload_kind`` / ``workload_name``); the inventory comes from ``ClusterBuilder``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from segmenter import pipeline
from segmenter.cli import main
from segmenter.config import Config, SensitiveDecl
from segmenter.errors import InputError, UnsupportedError
from segmenter.flowfile import read_flow_file, read_flow_files
from segmenter.graph.build import build_graph
from segmenter.graph.derive import derive_inventory
from segmenter.graph.stats import format_stats, graph_stats
from segmenter.model import EndpointIdentity, Flow, FlowVerdict, Labels, Transport
from segmenter.planner import plan
from segmenter.policy.lower import lower
from segmenter.synthetic import ClusterBuilder
from segmenter.targets import get_target

T = 1_709_294_400.0


def cluster() -> ClusterBuilder:
    b = ClusterBuilder()
    b.workload("shop", "web", {"app": "web"}, replicas=2)  # pods web-0, web-1
    b.workload("shop", "api", {"app": "api"})
    b.workload("shop", "api-gateway", {"app": "gateway"})
    b.workload("payments", "db", {"app": "db"}, kind="StatefulSet")  # pod db-0
    return b


B = cluster()
INV = B.inventory()
IP = {p.name: p.ips[0] for p in INV.pods}


def ep(**fields: Any) -> EndpointIdentity:
    labels = fields.pop("labels", None)
    return EndpointIdentity(labels=Labels.of(labels), **fields)


def flow(client: str | None, server: str | None, port: int = 8080, *,
         client_endpoint: EndpointIdentity | None = None,
         server_endpoint: EndpointIdentity | None = None, t: float = T,
         **extra: Any) -> Flow:
    return Flow(Transport.TCP, client, server, None if client is None else 50000, port, t,
                t + 1, packets_to_server=3, packets_to_client=2,
                client_endpoint=client_endpoint, server_endpoint=server_endpoint,
                sources=extra.pop("sources", ("calico",)), **extra)


def edges(graph: Any) -> set[tuple[str, str, str, int | None]]:
    return {(u, v, p["protocol"], p["port"]) for u, v, d in graph.edges(data=True)
            for p in d["ports"]}


WEB, API, DB = "shop/Deployment/web", "shop/Deployment/api", "payments/StatefulSet/db"


# -- reading ---------------------------------------------------------------------------------

def _flow_file(path: Path, *records: dict[str, Any]) -> Path:
    header = {"format": "segmenter-flows", "version": 2, "sources": ["x.log"],
              "stats": {"packets": 0, "flows": len(records),
                        "skipped": {"non-flow-event": 3, "socket-trace": 2, "nodata": 1}}}
    path.write_text("".join(json.dumps(r) + "\n" for r in (header, *records)))
    return path


def _record(**fields: Any) -> dict[str, Any]:
    base = {"record": "flow", "proto": "TCP", "client": "10.0.1.10", "client_port": None,
            "server": "10.0.2.30", "server_port": 5432, "first_seen": T, "last_seen": T + 300,
            "direction": "reported", "sources": ["calico"]}
    return {**base, **fields}


def test_flow_logs_version_2_fields_are_read(tmp_path: Path) -> None:
    path = _flow_file(
        tmp_path / "f.jsonl",
        # Goldmane: no address at either end, aggregated names.
        _record(client=None, server=None, verdict="dropped", policies=["-/shop/deny deny"],
                client_endpoint={"namespace": "shop", "pod": "web-7d9f8c6b5-*",
                                 "labels": {"app": "web"}},
                server_endpoint={"namespace": "payments", "pod": "db-*"}),
        # Calico: an address-less "net" end, a GlobalNetworkSet, a host endpoint.
        _record(server=None, server_endpoint={"entity": "world"}),
        _record(server=None, server_endpoint={"workload_kind": "GlobalNetworkSet",
                                              "workload_name": "partners"}),
        _record(server="10.0.9.1", server_endpoint={"entity": "host",
                                                    "workload_kind": "HostEndpoint",
                                                    "workload_name": "node-b-eth0"}),
        _record(sampled=True, sources=["gcp-vpc"]))
    traffic = read_flow_file(path)
    goldmane, world, netset, hep, sampled = traffic.flows
    assert (goldmane.client, goldmane.server, goldmane.client_port) == (None, None, None)
    assert goldmane.client_endpoint == ep(namespace="shop", pod="web-7d9f8c6b5-*",
                                          labels={"app": "web"})
    assert (goldmane.verdict, goldmane.forwarded) == (FlowVerdict.DROPPED, False)
    assert goldmane.policies == ("-/shop/deny deny",)
    assert world.server_endpoint == ep(entity="world")
    assert netset.server_endpoint == ep(workload_kind="GlobalNetworkSet",
                                        workload_name="partners")
    assert hep.server_endpoint is not None and hep.server_endpoint.entity == "host"
    assert sampled.sampled and sampled.sources == ("gcp-vpc",)
    merged = read_flow_files([path, path]).header["stats"]["skipped"]
    assert merged == {"non-flow-event": 6, "nodata": 2, "socket-trace": 4}


@pytest.mark.parametrize(("fields", "message"), [
    ({"server": None}, '"server" is null, but "server_endpoint" does not name the end'),
    ({"server": None, "server_endpoint": {"labels": {"app": "x"}}}, "does not name the end"),
    ({"server_port": None}, '"server_port" is required for TCP'),
    ({"client_endpoint": {"namespace": 5}}, '"client_endpoint.namespace" must be a string'),
    ({"client_endpoint": {"pod": "x", "colour": "red"}}, "unknown field(s) colour"),
    ({"policies": "allow-all"}, '"policies" must be a list of strings'),
    ({"sources": [1]}, '"sources" must be a list of strings'),
])
def test_bad_version_2_fields_name_the_line(tmp_path: Path, fields: dict[str, Any],
                                            message: str) -> None:
    good = {"client_endpoint": {"namespace": "shop", "pod": "web-0"}}
    path = _flow_file(tmp_path / "f.jsonl", _record(**good), _record(**{**good, **fields}))
    with pytest.raises(InputError) as info:
        read_flow_file(path)
    assert info.value.record == "line 3"
    assert message in info.value.message


def test_equal_endpoint_objects_are_one_and_different_ones_are_not(tmp_path: Path) -> None:
    a = {"namespace": "shop", "pod": "web-0", "labels": {"app": "web"}}
    b = {"namespace": "shop", "pod": "web-0", "labels": {"app": "web2"}}
    path = _flow_file(tmp_path / "f.jsonl", _record(client_endpoint=a),
                      _record(client_endpoint=dict(a)), _record(client_endpoint=b))
    first, second, third = read_flow_file(path).flows
    assert first.client_endpoint is second.client_endpoint
    assert third.client_endpoint == ep(namespace="shop", pod="web-0", labels={"app": "web2"})


# -- ends without an address, by identity ----------------------------------------------------

@pytest.mark.parametrize(("endpoint", "node"), [
    (ep(namespace="shop", pod="web-1"), WEB),  # a pod by name
    (ep(namespace="shop", pod="web-7d9f8c6b5-*", labels={"pod-template-hash": "7d9f8c6b5"}),
     WEB),  # a ReplicaSet's prefix no pod has any more: its Deployment
    (ep(namespace="payments", pod="db-*"), DB),  # a StatefulSet's generateName
    (ep(namespace="shop", workload_kind="Deployment", workload_name="api"), API),
    (ep(entity="host", workload_kind="HostEndpoint", workload_name="n1-eth0", node="n1"),
     "node:n1"),
    (ep(entity="kube-apiserver"), "apiserver"),
])
def test_an_end_without_address_resolves_by_its_identity(endpoint: EndpointIdentity,
                                                         node: str) -> None:
    graph = build_graph([flow(IP["web-0"], None, server_endpoint=endpoint)], INV)
    assert edges(graph) == {(WEB, node, "TCP", 8080)}
    assert graph.graph["identity"]["unresolved"]["flows"] == 0


@pytest.mark.parametrize(("endpoint", "reason"), [
    (ep(namespace="shop", pod="api-*"), "matches several workloads: shop/Deployment/api, "
                                        "shop/Deployment/api-gateway"),
    (ep(namespace="shop", pod="web-0", labels={"app": "other"}), "with its labels"),
    (ep(namespace="shop", pod="cache-*"), "no pod of the inventory is shop/cache-*"),
    (ep(namespace="shop", workload_kind="Deployment", workload_name="cache"),
     "shop/Deployment/cache is not in the inventory"),
    (ep(entity="world"), "world without an address"),
    (ep(workload_kind="GlobalNetworkSet", workload_name="partners"),
     "the inventory has no network sets"),
    (ep(entity="host", workload_kind="HostEndpoint", workload_name="n1-eth0"),
     "without an address or a node name"),
])
def test_an_end_that_matches_no_workload_or_several_is_reported_never_guessed(
        endpoint: EndpointIdentity, reason: str) -> None:
    flows = [flow(IP["web-0"], None, server_endpoint=endpoint),
             flow(IP["web-0"], IP["api-0"])]
    graph = build_graph(flows, INV)
    assert edges(graph) == {(WEB, API, "TCP", 8080)}  # the other flow is left out
    unresolved = graph.graph["identity"]["unresolved"]
    assert unresolved["flows"] == 1
    (example,) = unresolved["examples"]
    assert example["side"] == "server"
    assert reason in example["reason"]
    assert reason in format_stats(graph_stats(graph))


def test_labels_tell_apart_workloads_sharing_a_name_prefix() -> None:
    endpoint = ep(namespace="shop", pod="api-*", labels={"app": "gateway"})
    graph = build_graph([flow(IP["web-0"], None, server_endpoint=endpoint)], INV)
    assert edges(graph) == {(WEB, "shop/Deployment/api-gateway", "TCP", 8080)}


# -- cross-checking identities against the inventory -----------------------------------------

def test_identities_that_agree_with_the_inventory_are_counted_not_reported() -> None:
    flows = [flow(IP["web-0"], IP["db-0"], 5432,
                  client_endpoint=ep(namespace="shop", pod="web-0", labels={"app": "web"}),
                  server_endpoint=ep(namespace="payments", workload_kind="StatefulSet",
                                     workload_name="db"))]
    identity = build_graph(flows, INV).graph["identity"]
    assert (identity["checked_ends"], identity["disagreements"]["ends"]) == (2, 0)


def test_disagreements_are_reported_with_counts_and_examples_and_the_inventory_decides() -> None:
    wrong_namespace = ep(namespace="billing", pod="web-0")
    flows = [
        *[flow(IP["web-0"], IP["api-0"], client_endpoint=wrong_namespace, t=T + i)
          for i in range(3)],
        flow(IP["web-0"], IP["api-0"], server_endpoint=ep(entity="world")),
        flow(IP["web-0"], "10.9.9.9", server_endpoint=ep(namespace="shop", pod="cache-0")),
        flow(IP["web-0"], IP["db-0"], 5432,
             server_endpoint=ep(namespace="payments", workload_kind="Deployment",
                                workload_name="db")),
    ]
    graph = build_graph(flows, INV)
    assert (WEB, API, "TCP", 8080) in edges(graph)  # the graph follows the inventory
    disagree = graph.graph["identity"]["disagreements"]
    assert disagree["ends"] == 6
    assert disagree["by_kind"] == {"address unknown to the inventory": 1, "entity": 1,
                                   "namespace": 3, "workload": 1}
    first = disagree["examples"][0]
    assert first == {"side": "client", "address": IP["web-0"],
                     "record": "billing/web-0 (pod)", "inventory": WEB, "kind": "namespace",
                     "flows": 3, "first_seen": T}
    text = format_stats(graph_stats(graph))
    assert "6 disagree (address unknown to the inventory 1, entity 1, namespace 3, workload 1)" \
        in text
    assert f"client {IP['web-0']} at 2024-03-01 12:00:00Z: the records say billing/web-0 " \
           f"(pod), the inventory {WEB} (namespace; 3 flows)" in text


def test_a_host_network_pod_at_its_node_address_agrees_and_an_unknown_node_address_not() -> None:
    b = cluster()
    b.workload("kube-system", "proxy", {"k8s-app": "proxy"}, host_network=True)
    inventory = b.inventory()
    proxy = next(p for p in inventory.pods if p.name == "proxy-0")
    flows = [flow(proxy.ips[0], IP["api-0"],
                  client_endpoint=ep(namespace="kube-system", pod="proxy-0")),
             flow("10.0.2.1", IP["api-0"], client_endpoint=ep(entity="host", node="n1"))]
    graph = build_graph(flows, inventory)
    assert ("node:worker-1", API, "TCP", 8080) in edges(graph)
    disagree = graph.graph["identity"]["disagreements"]
    assert disagree["by_kind"] == {"node address unknown to the inventory": 1}
    assert disagree["examples"][0]["inventory"] == "external:10.0.2.1"


def test_names_and_services_from_the_records_reach_the_graph() -> None:
    flows = [flow(IP["web-0"], "52.1.2.3", 443,
                  server_endpoint=ep(entity="world", names=("api.stripe.com",))),
             flow(IP["web-0"], IP["api-0"], server_endpoint=ep(namespace="shop", pod="api-0",
                                                                service="shop/api"))]
    graph = build_graph(flows, INV)
    assert graph.nodes["external:52.1.2.3"]["dns_names"] == ["api.stripe.com"]
    assert graph.nodes["external:52.1.2.3"]["label"] == "api.stripe.com"
    assert graph.edges[WEB, API]["ports"][0]["via_service"] == "shop/api"


# -- verdicts: evidence, never edges ---------------------------------------------------------

def test_flows_not_let_through_are_evidence_never_edges_rules_or_replayed() -> None:
    flows = [flow(IP["web-0"], IP["db-0"], 5432),
             flow(IP["api-0"], IP["db-0"], 5432, verdict=FlowVerdict.DROPPED,
                  policies=("-/payments/default-deny deny",)),
             flow(IP["api-0"], IP["db-0"], 5432, verdict=FlowVerdict.DROPPED, t=T + 5,
                  sources=("hubble",), sampled=True),
             flow(IP["api-0"], IP["web-0"], 22, verdict=FlowVerdict.AUDIT),
             flow(IP["web-0"], IP["api-0"], verdict=FlowVerdict.FORWARDED)]
    graph = build_graph(flows, INV)
    assert edges(graph) == {(WEB, DB, "TCP", 5432), (WEB, API, "TCP", 8080)}
    blocked = graph.graph["blocked"]
    assert [(b["client"], b["server"], b["port"], b["verdict"], b["flows"]) for b in blocked] \
        == [(API, DB, 5432, "dropped", 2), (API, WEB, 22, "audit", 1)]
    assert blocked[0]["sources"] == ["calico", "hubble"]
    assert blocked[0]["policies"] == ["-/payments/default-deny deny"]
    assert blocked[0]["sampled"] is True
    text = format_stats(graph_stats(graph))
    assert "about 3 flows the policies in force did not let through (audit 1, dropped 2" in text
    assert f"dropped: {API} -> {DB} TCP/5432 (~2 flows; calico, hubble; by " \
           "-/payments/default-deny deny)" in text
    config = Config(sensitive=(SensitiveDecl("pci", Labels.of({"app": "db"}), "payments"),))
    result = plan(graph, config)
    policies = lower(graph, result, INV, find_dns=False)
    db = next(p for p in policies.policies if p.name == "allow-db")
    assert db.ingress is not None
    assert [peer.pods.labels for r in db.ingress for peer in r.peers] == [Labels.of({"app": "web"})]
    from segmenter.analysis.verify import verify_flows
    replayed = verify_flows(flows, INV, [])
    assert [(v.client, v.server) for v in replayed] == [(WEB, DB), (WEB, API)]


# -- sources and sampling through to the rules -----------------------------------------------

def test_rule_provenance_names_flow_log_sources_and_never_gives_sampled_counts_as_exact() -> None:
    flows = [flow(IP["web-0"], IP["db-0"], 5432, sources=("hubble",), sampled=True),
             flow(IP["web-0"], IP["db-0"], 5432, sources=())]  # a capture
    graph = build_graph(flows, INV)
    (entry,) = graph.edges[WEB, DB]["ports"]
    assert (entry["sources"], entry["sampled"]) == (["capture", "hubble"], True)
    config = Config(sensitive=(SensitiveDecl("pci", Labels.of({"app": "db"}), "payments"),))
    policy_set = lower(graph, plan(graph, config), INV, find_dns=False)
    db = next(p for p in policy_set.policies if p.name == "allow-db")
    assert db.ingress is not None
    evidence = db.ingress[0].evidence
    assert (evidence.sources, evidence.sampled, evidence.flows) == (("capture", "hubble"),
                                                                    True, 2)
    k8s = get_target("kubernetes").dialect().emit(policy_set).files["payments/allow-db.yaml"][0]
    assert "ingress[0]: ~2 flows (sampled), 2024-03-01T12:00:00Z to 2024-03-01T12:00:01Z; " \
           f"observed from {WEB} (capture, hubble)" in k8s["metadata"]["annotations"][
               "segmenter.io/evidence"]
    calico = get_target("calico").dialect().emit(policy_set)
    rules = [r for docs in calico.files.values() for d in docs
             for r in d["spec"].get("ingress", []) if d["metadata"]["name"].endswith("allow-db")]
    annotations = rules[0]["metadata"]["annotations"]
    assert annotations["segmenter.io/flows"] == "~2"
    assert annotations["segmenter.io/sources"] == "capture, hubble"


def test_capture_only_evidence_is_written_as_before() -> None:
    graph = build_graph([flow(IP["web-0"], IP["db-0"], 5432, sources=())], INV)
    config = Config(sensitive=(SensitiveDecl("pci", Labels.of({"app": "db"}), "payments"),))
    policy_set = lower(graph, plan(graph, config), INV, find_dns=False)
    k8s = get_target("kubernetes").dialect().emit(policy_set).files["payments/allow-db.yaml"][0]
    text = k8s["metadata"]["annotations"]["segmenter.io/evidence"]
    assert text == ("ingress[0]: 1 flow, 2024-03-01T12:00:00Z to 2024-03-01T12:00:01Z; "
                    f"observed from {WEB}\n")


# -- without an inventory: one built from the records ----------------------------------------

def _pod_end(namespace: str, pod: str, **fields: Any) -> EndpointIdentity:
    return ep(namespace=namespace, pod=pod, **fields)


def test_an_inventory_is_built_from_the_records_and_says_what_it_lacks() -> None:
    web = _pod_end("shop", "web-6c9d5b7f48-x2k4p", labels={"app": "web"},
                   workload_kind="Deployment", workload_name="web")
    api = _pod_end("shop", "api-5f7b8c9d6-q9z8w", labels={"app": "api", "pod-template-hash":
                                                           "5f7b8c9d6"})
    db = _pod_end("payments", "db-0", labels={"app": "db",
                                              "statefulset.kubernetes.io/pod-name": "db-0"})
    agent = _pod_end("kube-system", "agent-x7k2p", labels={"app": "agent",
                                                           "controller-revision-hash":
                                                               "agent-7b9c",
                                                           "pod-template-generation": "1"})
    legacy = _pod_end("shop", "report-6b746f74dc-9rcxx", labels={"app": "report"})
    unowned = _pod_end("shop", "debug", labels={"app": "debug"})
    bare = _pod_end("shop", "cron-7b9c6d5f8-zz2x4", workload_kind="Deployment",
                    workload_name="cron")
    flows = [flow("10.1.0.1", "10.1.0.2", client_endpoint=web, server_endpoint=api),
             flow("10.1.0.2", "10.1.0.3", 5432, client_endpoint=api, server_endpoint=db),
             flow("10.1.0.4", "10.1.0.3", 5432, client_endpoint=agent, server_endpoint=db),
             flow("10.1.0.5", "10.1.0.2", client_endpoint=legacy, server_endpoint=api),
             flow("10.1.0.6", "10.1.0.2", client_endpoint=unowned, server_endpoint=api),
             flow("10.1.0.7", "10.1.0.2", client_endpoint=bare, server_endpoint=api),
             flow("10.1.0.1", "52.1.2.3", 443, client_endpoint=web,
                  server_endpoint=ep(entity="world")),
             flow("10.0.0.10", "10.1.0.1", client_endpoint=ep(entity="host", node="n1"),
                  server_endpoint=web)]
    derived = derive_inventory(flows)
    owners = sorted(w.ref.id for w in derived.inventory.workloads)
    assert owners == ["kube-system/DaemonSet/agent", "payments/StatefulSet/db",
                      "shop/Deployment/api", "shop/Deployment/cron", "shop/Deployment/report",
                      WEB]
    assert [n.name for n in derived.inventory.nodes] == ["n1"]
    notes = "\n".join(derived.notes)
    assert "1 Deployment(s) named from their pods' names alone" in notes
    assert "shop/Deployment/report" in notes
    assert "1 workload(s) have no labels in the records" in notes and "shop/Deployment/cron" \
        in notes
    assert "1 pod name(s) with no workload in the records" in notes and "shop/debug" in notes
    graph = pipeline.make_graph(pipeline.Traffic({}, tuple(flows)), derived)
    assert edges(graph) == {
        (WEB, "shop/Deployment/api", "TCP", 8080),
        ("shop/Deployment/api", "payments/StatefulSet/db", "TCP", 5432),
        ("kube-system/DaemonSet/agent", "payments/StatefulSet/db", "TCP", 5432),
        ("shop/Deployment/report", "shop/Deployment/api", "TCP", 8080),
        ("shop/Deployment/cron", "shop/Deployment/api", "TCP", 8080),
        (WEB, "external:52.1.2.3", "TCP", 443),
        ("node:n1", WEB, "TCP", 8080),
    }
    identity = graph.graph["identity"]
    assert identity["inventory"] == "records"
    assert identity["unresolved"]["by_reason"] == {"its records name no workload": 1}
    text = format_stats(graph_stats(graph))
    assert "inventory built from the flow records (no --inventory)" in text
    # Policing the workload the records give no labels for fails closed.
    config = Config(sensitive=(SensitiveDecl("pci", Labels.of({"app": "api"}), "shop"),))
    result = plan(graph, config)
    with pytest.raises(UnsupportedError, match="shop/Deployment/cron"):
        lower(graph, result, derived.inventory, find_dns=False)


def test_a_reused_address_resolves_by_time_in_an_inventory_from_the_records() -> None:
    first = _pod_end("shop", "web-0", workload_kind="Deployment", workload_name="web")
    later = _pod_end("shop", "api-0", workload_kind="Deployment", workload_name="api")
    db = _pod_end("payments", "db-0", workload_kind="StatefulSet", workload_name="db")
    flows = [flow("10.1.0.1", "10.1.0.3", 5432, client_endpoint=first, server_endpoint=db),
             flow("10.1.0.1", "10.1.0.3", 5432, client_endpoint=later, server_endpoint=db,
                  t=T + 3600)]
    graph = pipeline.make_graph(pipeline.Traffic({}, tuple(flows)))
    assert edges(graph) == {(WEB, DB, "TCP", 5432), (API, DB, "TCP", 5432)}


def test_without_an_inventory_every_end_must_carry_an_identity() -> None:
    flows = [flow("10.1.0.1", "10.1.0.2", sources=("aws-vpc",))]
    with pytest.raises(InputError, match=r"no inventory given, and 1 of 1 flows have an end "
                                         r"their records do not identify \(sources: aws-vpc"):
        derive_inventory(flows)


def test_graph_and_run_without_inventory_from_hubble_records(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.capture.flowlog_build import API as H_API
    from tests.capture.flowlog_build import DB as H_DB
    from tests.capture.flowlog_build import WEB as H_WEB
    from tests.capture.flowlog_build import tcp_connection, write_lines

    events = [*tcp_connection(H_WEB, H_API, 40001, 8080),
              *tcp_connection(H_API, H_DB, 40002, 5432, t=1.0),
              *tcp_connection(H_WEB, H_DB, 40003, 5432, t=2.0, denied=True)]
    log = write_lines(tmp_path / "hubble.log", events)
    flows = tmp_path / "flows.jsonl"
    assert main(["ingest", str(log), "-o", str(flows)]) == 0
    assert main(["graph", "--flows", str(flows), "--stats", "-o",
                 str(tmp_path / "graph.json")]) == 0
    out = capsys.readouterr().out
    assert "inventory built from the flow records (no --inventory): 2 namespaces, " \
           "3 workloads, 3 pods" in out
    assert "dropped: shop/Deployment/web -> payments/StatefulSet/db TCP/5432 (~1 flow; " \
           "hubble; by -/payments/default-deny deny)" in out
    graph = json.loads((tmp_path / "graph.json").read_text())
    assert graph["graph"]["blocked"][0]["verdict"] == "dropped"
    code = main(["run", str(log), "--sensitive", "pci=payments/app=db", "-o",
                 str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "observed flows allowed (1 not replayed" in out
    policy = (tmp_path / "run" / "kubernetes" / "payments" / "allow-db.yaml").read_text()
    assert "~1 flow (sampled)" in policy and "(hubble)" in policy
    assert "shop/Deployment/web" not in policy  # the dropped connection is not allowed


def test_graph_without_inventory_refuses_records_without_identity(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _flow_file(tmp_path / "f.jsonl", _record(sources=["aws-vpc"]))
    assert main(["graph", "--flows", str(path), "--stats"]) == 2
    err = capsys.readouterr().err
    assert "give --inventory" in err and "\n" not in err.strip()


def test_a_notebook_study_opens_flow_logs_without_an_inventory(tmp_path: Path) -> None:
    from segmenter.notebook import Study
    from tests.capture.flowlog_build import API as H_API
    from tests.capture.flowlog_build import DB as H_DB
    from tests.capture.flowlog_build import tcp_connection, write_lines

    log = write_lines(tmp_path / "events.log", tcp_connection(H_API, H_DB, 40002, 5432))
    study = Study.open(log, sensitive=["pci=payments/app=db"], workdir=tmp_path)
    assert edges(study.graph) == {(API, DB, "TCP", 5432)}
    assert study.graph.graph["identity"]["inventory"] == "records"
    results = study.verify().results
    assert len(results) == 1 and results[0].allowed


def test_the_learning_curve_of_flows_takes_address_less_ends_and_leaves_out_drops() -> None:
    from segmenter.views.viz.learning import learning_curve

    named = ep(namespace="shop", pod="web-7d9f8c6b5-*")
    flows = [flow(None, None, client_endpoint=named, server_endpoint=named),
             flow(IP["web-0"], IP["api-0"]),
             flow(IP["web-0"], IP["db-0"], 5432, verdict=FlowVerdict.DROPPED)]
    curve = learning_curve(flows)
    assert sorted(k[:2] for k in curve.keys) == [("", ""), (IP["web-0"], IP["api-0"])]


def test_the_ingest_line_counts_records_of_flow_logs_and_packets_of_captures(
        tmp_path: Path) -> None:
    """A flow file read again is records, not "0 packets": the summary says what was read."""
    flows = tmp_path / "in.jsonl"
    flows.write_text(json.dumps({"format": "segmenter-flows", "version": 1, "sources": ["x"]})
                     + "\n" + json.dumps({
                         "record": "flow", "proto": "TCP", "client": "10.0.0.1",
                         "client_port": 40000, "server": "10.0.0.2", "server_port": 80,
                         "first_seen": 1.0, "last_seen": 2.0}) + "\n")
    result = pipeline.ingest([str(flows)], str(tmp_path / "out.jsonl"))
    assert result.line() == "1 record read, 0 skipped, 1 flows written"
    both = pipeline.IngestResult(3, {"non-ip": 1}, 2, 0, ("a", "b"), (), 5)
    assert both.line() == "3 packets and 5 records read, 1 skipped (non-ip 1), 2 flows written"
