"""The communication graph (docs/graph-format.md): building, saving, loading, exporting."""

from __future__ import annotations

import copy
import csv
import json
import re
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
import yaml

from segmenter.errors import InputError
from segmenter.graph import (
    build_graph,
    graph_stats,
    graph_to_gexf,
    graph_to_graphml,
    load_graph,
    save_graph,
)
from segmenter.inventory import load_inventory
from segmenter.model import DnsAnswer, Flow, Inventory, Transport

FIXTURES = Path(__file__).parent / "fixtures" / "inventory"
CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
T0 = 1_700_000_000.0
TCP, UDP, ICMP = Transport.TCP, Transport.UDP, Transport.ICMP

WEB = "shop/Deployment/web"
API = "shop/Deployment/api"
DB = "shop/StatefulSet/db"
DEBUG = "shop/Pod/debug"
DNS = "kube-system/Deployment/coredns"
REPORT = "jobs/CronJob/report"


def flow(
    transport: Transport,
    client: str,
    server: str,
    server_port: int | None,
    at: float = 0.0,
    *,
    tls: bool = False,
    size: int = 100,
) -> Flow:
    return Flow(
        transport=transport,
        client=client,
        server=server,
        client_port=None if server_port is None else 40000,
        server_port=server_port,
        first_seen=T0 + at,
        last_seen=T0 + at + 1,
        packets_to_server=2,
        bytes_to_server=size,
        packets_to_client=1,
        bytes_to_client=size,
        tls=tls,
    )


FLOWS = (
    flow(TCP, "10.244.1.10", "10.96.0.101", 9090, 10),  # web -> api via its Service
    flow(TCP, "10.244.2.10", "10.244.2.30", 50051, 20),  # web -> api, pod to pod
    flow(TCP, "10.244.1.50", "10.244.2.30", 50051, 50),  # the old web pod's IP at T0+50
    flow(TCP, "10.244.2.30", "10.244.1.20", 5432, 30, tls=True),  # api -> db (headless)
    flow(UDP, "10.244.2.30", "10.96.0.10", 53, 31),  # api -> kube-dns
    flow(UDP, "10.244.1.10", "169.254.20.10", 53, 32),  # web -> NodeLocal DNSCache
    flow(TCP, "10.244.1.10", "10.96.0.1", 443, 33),  # web -> kubernetes.default
    flow(TCP, "10.244.2.30", "93.184.215.14", 443, 34, tls=True),  # api -> internet
    flow(TCP, "198.51.100.200", "203.0.113.10", 80, 35),  # internet -> LB
    flow(TCP, "10.0.0.12", "10.244.2.10", 8080, 36),  # kubelet probe
    flow(TCP, "10.244.1.10", "10.96.0.100", 80, 37),  # web -> its own Service
    flow(ICMP, "10.244.2.99", "8.8.8.8", None, 38),  # debug pings
    flow(TCP, "10.244.1.50", "10.244.2.20", 5432, 300),  # the same IP, now the report job
)
DNS_ANSWERS = (
    DnsAnswer("10.244.2.30", "10.96.0.10", "www.example.com", ("93.184.215.14",), (), T0 + 30),
    DnsAnswer("10.244.2.30", "10.96.0.10", "example.com", ("93.184.215.14",), (), T0 + 30),
)


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return load_inventory([str(FIXTURES / "cluster-dump.json")])


@pytest.fixture(scope="module")
def graph(inventory: Inventory) -> nx.DiGraph:
    return build_graph(FLOWS, inventory, DNS_ANSWERS)


def ports_of(graph: nx.DiGraph) -> dict[tuple[str, str], list[tuple[str, int | None]]]:
    return {
        (src, dst): [(p["protocol"], p["port"]) for p in attrs["ports"]]
        for src, dst, attrs in graph.edges(data=True)
    }


def test_nodes_are_exactly_the_inventory_workloads_plus_what_flows_reach(
    graph: nx.DiGraph, inventory: Inventory
) -> None:
    workloads = {w.ref.id for w in inventory.workloads}
    assert set(graph.nodes) == workloads | {
        "node:node-b",
        "apiserver",
        "external:93.184.215.14",
        "external:198.51.100.200",
        "external:8.8.8.8",
    }
    unobserved = {n for n, a in graph.nodes(data=True) if not a["observed"]}
    assert unobserved == {
        "jobs/Job/migrate",
        "kube-system/DaemonSet/node-exporter",
        "kube-system/DaemonSet/node-local-dns",
        "kube-system/Pod/kube-apiserver-node-a",
    }


def test_edges_and_ports_are_exact(graph: nx.DiGraph) -> None:
    assert ports_of(graph) == {
        (WEB, API): [("TCP", 50051)],
        (API, DB): [("TCP", 5432)],
        (API, DNS): [("UDP", 53)],
        (WEB, DNS): [("UDP", 53)],
        (WEB, "apiserver"): [("TCP", 6443)],
        (API, "external:93.184.215.14"): [("TCP", 443)],
        ("external:198.51.100.200", WEB): [("TCP", 8080)],
        ("node:node-b", WEB): [("TCP", 8080)],
        (WEB, WEB): [("TCP", 8080)],  # a workload calling itself is kept
        (DEBUG, "external:8.8.8.8"): [("ICMP", None)],
        (REPORT, DB): [("TCP", 5432)],
    }


def test_port_entries_aggregate_flows(graph: nx.DiGraph) -> None:
    edge = graph.edges[WEB, API]
    assert edge["ports"] == [
        {
            "protocol": "TCP",
            "port": 50051,
            "flows": 3,
            "packets": 9,
            "bytes": 600,
            "first_seen": T0 + 10,
            "last_seen": T0 + 51,
            "tls": False,
            "via_service": "shop/api",
            "via_addresses": ["10.96.0.101"],
        }
    ]
    assert (edge["flows"], edge["packets"], edge["bytes"]) == (3, 9, 600)
    assert (edge["first_seen"], edge["last_seen"]) == (T0 + 10, T0 + 51)
    assert graph.edges[API, DB]["ports"][0]["tls"] is True
    assert graph.edges[API, DB]["ports"][0]["via_service"] is None
    nodelocal = graph.edges[WEB, DNS]["ports"][0]
    assert (nodelocal["via_service"], nodelocal["via_addresses"]) == (None, ["169.254.20.10"])
    api_dns = graph.edges[API, DNS]["ports"][0]
    assert api_dns["via_service"] == "kube-system/kube-dns"
    apiserver = graph.edges[WEB, "apiserver"]["ports"][0]
    assert apiserver["via_service"] == "default/kubernetes"
    lb = graph.edges["external:198.51.100.200", WEB]["ports"][0]
    assert (lb["via_service"], lb["via_addresses"]) == ("shop/web", ["203.0.113.10"])


def test_node_attributes(graph: nx.DiGraph) -> None:
    web = graph.nodes[WEB]
    assert web == {
        "kind": "workload",
        "label": "web",
        "namespace": "shop",
        "name": "web",
        "workload_kind": "Deployment",
        "labels": {"app": "web", "app.kubernetes.io/version": "1.4.2", "tier": "frontend"},
        "annotations": {"deployment.kubernetes.io/revision": "3", "prometheus.io/scrape": "true"},
        "host_network": False,
        "pod_count": 3,
        "observed": True,
    }
    assert graph.nodes[DB]["annotations"] == {"segmenter.io/data-class": "pci"}
    assert graph.nodes[DB]["labels"] == {"app": "db"}  # per-pod keys are not shared labels
    assert graph.nodes["kube-system/DaemonSet/node-local-dns"]["host_network"] is True
    assert graph.nodes["node:node-b"] == {
        "kind": "node",
        "label": "node-b",
        "addresses": ["10.0.0.12"],
        "observed": True,
    }
    assert graph.nodes["apiserver"] == {
        "kind": "apiserver",
        "label": "apiserver",
        "addresses": ["10.0.0.5"],
        "observed": True,
    }
    assert graph.nodes["external:93.184.215.14"] == {
        "kind": "external",
        "label": "example.com",
        "addresses": ["93.184.215.14"],
        "dns_names": ["example.com", "www.example.com"],
        "private": False,
        "observed": True,
    }
    assert graph.nodes["external:8.8.8.8"]["dns_names"] == []
    assert graph.nodes["external:8.8.8.8"]["label"] == "8.8.8.8"


def test_private_externals(inventory: Inventory) -> None:
    g = build_graph([flow(TCP, "10.244.2.30", "192.168.50.5", 5432)], inventory)
    assert g.nodes["external:192.168.50.5"]["private"] is True


def test_graph_without_flows_has_every_workload_unobserved(inventory: Inventory) -> None:
    g = build_graph([], inventory)
    assert g.number_of_edges() == 0
    assert set(g.nodes) == {w.ref.id for w in inventory.workloads}
    assert not any(a["observed"] for _, a in g.nodes(data=True))


def test_save_load_round_trip_is_byte_identical(tmp_path: Path, graph: nx.DiGraph) -> None:
    first = tmp_path / "graph.json"
    save_graph(graph, first)
    loaded = load_graph(first)
    assert sorted(loaded.nodes(data=True)) == sorted(graph.nodes(data=True))
    assert sorted(loaded.edges(data=True)) == sorted(graph.edges(data=True))
    second = tmp_path / "again.json"
    save_graph(loaded, second)
    assert first.read_bytes() == second.read_bytes()
    # the same input in another order gives the same bytes
    shuffled = build_graph(
        tuple(reversed(FLOWS)),
        load_inventory([str(FIXTURES / "cluster-dump.json")]),
        tuple(reversed(DNS_ANSWERS)),
    )
    third = tmp_path / "shuffled.json"
    save_graph(shuffled, third)
    assert third.read_bytes() == first.read_bytes()
    data = json.loads(first.read_text())
    assert data["graph"] == {"format": "segmenter-graph", "version": 1}
    assert [n["id"] for n in data["nodes"]] == sorted(n["id"] for n in data["nodes"])
    assert first.read_text().startswith('{\n "directed": true,')


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{nope", "malformed JSON"),
        ("[]", 'not a node-link graph (no "nodes" list)'),
        ('{"nodes": [], "links": [], "directed": true}', 'no "edges" list'),
        ('{"nodes": [], "edges": [], "directed": false}', "expected a directed"),
        (
            '{"nodes": [], "edges": [], "directed": true, "graph": {"version": 7}}',
            "graph version 7 is newer",
        ),
        ('{"nodes": [{"id": "a"}], "edges": [], "directed": true}', "kind must be one of"),
        (
            '{"nodes": [{"id": "a", "kind": "node"}], "edges": [{"source": "a", "target": "b"}],'
            ' "directed": true}',
            "edge whose source or target is not a node",
        ),
    ],
)
def test_load_rejects_bad_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "graph.json"
    path.write_text(content)
    with pytest.raises(InputError) as info:
        load_graph(path)
    assert message in str(info.value)
    assert str(info.value).startswith(str(path))
    with pytest.raises(InputError, match="no such file"):
        load_graph(tmp_path / "missing.json")


def test_stats(graph: nx.DiGraph) -> None:
    stats = graph_stats(graph, top=3)
    assert stats["nodes_by_kind"] == {"apiserver": 1, "external": 3, "node": 1, "workload": 10}
    assert stats["nodes"] == 15
    assert stats["edges"] == 11
    assert stats["self_loops"] == 1
    assert stats["unobserved_workloads"] == 4
    assert stats["flows"] == len(FLOWS)
    assert stats["flows_by_protocol"] == {"ICMP": 1, "TCP": 10, "UDP": 2}
    assert stats["bytes"] == 200 * len(FLOWS)
    # DB and DNS tie on bytes and flows: the id decides
    assert [t["node"] for t in stats["top_talkers"]] == [WEB, API, DNS]
    assert stats["top_talkers"][0] == {"node": WEB, "bytes": 1600, "flows": 8, "peers": 5}


def test_graphml_and_gexf_exports(tmp_path: Path, graph: nx.DiGraph) -> None:
    graphml = tmp_path / "g.graphml"
    graph_to_graphml(graph, graphml)
    back = nx.read_graphml(graphml)
    assert set(back.nodes) == set(graph.nodes)
    assert json.loads(back.edges[WEB, API]["ports"])[0]["port"] == 50051
    assert json.loads(back.nodes[WEB]["labels"]) == graph.nodes[WEB]["labels"]
    gexf = tmp_path / "g.gexf"
    graph_to_gexf(graph, gexf)
    again = tmp_path / "again.gexf"
    graph_to_gexf(graph, again)
    assert gexf.read_bytes() == again.read_bytes()
    assert "lastmodifieddate" not in gexf.read_text()
    assert set(nx.read_gexf(gexf).nodes) == set(graph.nodes)


# --------------------------------------------------------------------------------------------
# A real application: its manifests, pods with made-up IPs, and traffic that follows its
# published call graph. The graph must have exactly the call graph's edges, by workload and
# pod port.

APPS = {
    "bank-of-anthos": "upstream/kubernetes-manifests/*.yaml",
    "sock-shop": "upstream/complete-demo.yaml",
}


def _corpus_dump(app: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The app's objects plus pods, ClusterIPs, a node and cluster DNS, as a kubectl dump."""
    folder = CORPORA / app
    docs: list[dict[str, Any]] = []
    for path in sorted(folder.glob(APPS[app])):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict))
    coredns = yaml.safe_load(
        """
        - apiVersion: apps/v1
          kind: Deployment
          metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
          spec:
            selector: {matchLabels: {k8s-app: kube-dns}}
            template:
              metadata: {labels: {k8s-app: kube-dns}}
              spec:
                containers:
                - name: coredns
                  ports:
                  - {containerPort: 53, name: dns, protocol: UDP}
                  - {containerPort: 53, name: dns-tcp, protocol: TCP}
        - apiVersion: v1
          kind: Service
          metadata: {name: kube-dns, namespace: kube-system}
          spec:
            selector: {k8s-app: kube-dns}
            ports:
            - {name: dns, port: 53, protocol: UDP, targetPort: 53}
            - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}
        - apiVersion: v1
          kind: Node
          metadata: {name: worker-1}
          status: {addresses: [{type: InternalIP, address: 10.0.0.11}]}
        """
    )
    docs.extend(coredns)
    info: dict[str, Any] = {"pods": {}, "vip": {}, "lb": {}, "kind": {}, "ns": {}}
    items: list[dict[str, Any]] = []
    next_ip = iter(f"10.244.{i // 200}.{i % 200 + 2}" for i in range(10_000))
    next_vip = iter(f"10.96.{i // 200}.{i % 200 + 10}" for i in range(10_000))
    for original in docs:
        doc = copy.deepcopy(original)
        kind = doc.get("kind")
        meta = doc.setdefault("metadata", {})
        ns = meta.setdefault("namespace", "default")
        name = meta["name"]
        if kind == "Service":
            vip = next(next_vip)
            doc["spec"]["clusterIP"] = vip
            info["vip"][name] = vip
            if doc["spec"].get("type") == "LoadBalancer":
                lb = f"203.0.113.{len(info['lb']) + 10}"
                doc["status"] = {"loadBalancer": {"ingress": [{"ip": lb}]}}
                info["lb"][name] = lb
        if kind in ("Deployment", "StatefulSet"):
            info["kind"][name] = kind
            info["ns"][name] = ns
            template = doc["spec"]["template"]
            pod_ips = []
            for i in range(2):
                labels = dict(template["metadata"].get("labels") or {})
                if kind == "Deployment":
                    owner = {"kind": "ReplicaSet", "name": f"{name}-6d4cf56db6"}
                    labels["pod-template-hash"] = "6d4cf56db6"
                    pod_name = f"{name}-6d4cf56db6-{i}x7z"
                else:
                    owner = {"kind": "StatefulSet", "name": name}
                    labels["statefulset.kubernetes.io/pod-name"] = pod_name = f"{name}-{i}"
                ip = next(next_ip)
                pod_ips.append(ip)
                items.append(
                    {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {
                            "name": pod_name,
                            "namespace": ns,
                            "labels": labels,
                            "ownerReferences": [{**owner, "controller": True}],
                            "creationTimestamp": "2023-11-14T22:00:00Z",
                        },
                        "spec": {**template["spec"], "nodeName": "worker-1"},
                        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
                    }
                )
            info["pods"][name] = pod_ips
        items.append(doc)
    return items, info


def _expected_and_flows(
    app: str, info: dict[str, Any]
) -> tuple[set[tuple[str, str, str, int]], list[Flow]]:
    def wl(name: str) -> str:
        return f"{info['ns'][name]}/{info['kind'][name]}/{name}"

    expected: set[tuple[str, str, str, int]] = set()
    flows: list[Flow] = []
    with (CORPORA / app / "callgraph.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    app_workloads = [n for n in info["kind"] if n != "coredns"]
    for i, row in enumerate(rows):
        caller, callee = row["caller"], row["callee"]
        transport = Transport.parse(row["protocol"].split("/")[0])
        svc_port = (
            int(row["callee_service_port"].split()[0])
            if row["callee_service_port"].split()[0].isdigit()
            else None
        )
        pod_port = int(row["callee_pod_port"]) if row["callee_pod_port"].isdigit() else None
        if callee == "*" or svc_port is None or pod_port is None:
            continue  # "any port to every pod" (a scraper not in the manifests)
        target = "coredns" if callee == "kube-dns" else callee
        service = callee
        if caller == "client(external)":
            client_ip = "198.51.100.99"
            nodeport = re.search(r"NodePort (\d+)", row["callee_service_port"])
            if nodeport:
                server, port = "10.0.0.11", int(nodeport.group(1))
            elif service in info["lb"]:
                server, port = info["lb"][service], svc_port
            else:
                server, port = info["vip"][service], svc_port
            flows.append(flow(transport, client_ip, server, port, i))
            expected.add((f"external:{client_ip}", wl(target), transport.value, pod_port))
            continue
        callers = app_workloads if caller == "*" else [caller]
        for name in callers:
            if name not in info["pods"]:
                continue
            # through the Service, and straight to a pod of the callee
            flows.append(flow(transport, info["pods"][name][0], info["vip"][service], svc_port, i))
            flows.append(
                flow(transport, info["pods"][name][1], info["pods"][target][1], pod_port, i)
            )
            expected.add((wl(name), wl(target), transport.value, pod_port))
    return expected, flows


@pytest.mark.parametrize("app", sorted(APPS))
def test_real_application_call_graph(tmp_path: Path, app: str) -> None:
    if not (CORPORA / app / "callgraph.csv").is_file():
        pytest.skip(
            f"corpus {app} not found at {CORPORA / app} (the shared folder beside the repo)"
        )
    items, info = _corpus_dump(app)
    dump = tmp_path / f"{app}.yaml"
    dump.write_text(yaml.safe_dump_all(items))
    inventory = load_inventory([str(dump)])
    expected, flows = _expected_and_flows(app, info)
    assert len(expected) >= 10
    graph = build_graph(flows, inventory)
    actual = {
        (src, dst, entry["protocol"], entry["port"])
        for src, dst, attrs in graph.edges(data=True)
        for entry in attrs["ports"]
    }
    assert actual == expected
    workloads = {n for n, a in graph.nodes(data=True) if a["kind"] == "workload"}
    assert workloads == {f"{info['ns'][n]}/{info['kind'][n]}/{n}" for n in info["kind"]}
    assert all(graph.nodes[n]["observed"] for n in workloads)


def test_benchmark_script_runs(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "graph_build.py"
    out = subprocess.run(
        [sys.executable, str(script), "--flows", "3000", "--pods", "600", "--naive-sample", "20"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert "speed-up of the indexed resolver over the naive scan" in out
