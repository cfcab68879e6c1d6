"""The communication graph (docs/graph-format.md): building, saving, loading, exporting."""

from __future__ import annotations

import copy
import csv
import json
import logging
import re
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
import yaml

from segmenter.cluster.dump import load_inventory
from segmenter.errors import InputError
from segmenter.graph.build import build_graph
from segmenter.graph.io import graph_to_gexf, graph_to_graphml, load_graph, save_graph
from segmenter.graph.stats import format_stats, graph_stats
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
            "sources": ["capture"],  # flows without sources (version 1) come from captures
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
        "images": ["example.org/main:1.0"],
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
            '{"nodes": [{"id": "node:a", "kind": "node"}], "edges": [{"source": "node:a", '
            '"target": "b"}], "directed": true}',
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


def test_stats_window_and_learning(graph: nx.DiGraph) -> None:
    stats = graph_stats(graph)
    assert stats["external_named_sets"] == 0
    assert stats["window"] == {"start": T0 + 10, "end": T0 + 301, "seconds": 291.0}
    assert stats["learning"] == {
        "bucket_seconds": 3600.0,
        "new_edges_per_hour": [11],
        "new_edges_last_hour": 11,
        "last_new_edge": T0 + 300,
        "quiet_seconds": 1.0,
    }
    assert graph_stats(nx.DiGraph())["learning"] is None


def test_format_stats_text(graph: nx.DiGraph) -> None:
    text = format_stats(graph_stats(graph, top=3))
    assert text == (
        "nodes: 15 (apiserver 1, external 3, node 1, workload 10); 4 workloads not seen in "
        "traffic\n"
        "edges: 11 (1 self-loop), 11 (protocol, port) entries\n"
        "flows: 13 (ICMP 1, TCP 10, UDP 2), 39 packets, 2.6 kB\n"
        "capture window: 2023-11-14 22:13:30Z to 2023-11-14 22:18:21Z (4 min 51 s)\n"
        "new edges per hour (an edge is a client, server, protocol and port, counted when first "
        "seen):\n"
        "  hour   1 (22:13-22:18Z): 11\n"
        "last new edge: 2023-11-14 22:18:20Z, 1 s before the end of the window\n"
        "learning: the window is shorter than an hour; 11 edges learned, the last 1 s before "
        "its end. Capture over a full business cycle (a day, with its batch jobs) before "
        "trusting the graph as complete.\n"
        "top talkers by bytes:\n"
        "  shop/Deployment/web                1.6 kB        8 flows     5 peers\n"
        "  shop/Deployment/api                1.2 kB        6 flows     4 peers\n"
        "  kube-system/Deployment/coredns      400 B        2 flows     2 peers\n"
    )
    empty = format_stats(graph_stats(nx.DiGraph()))
    assert empty == (
        "nodes: 0\nedges: 0 (0 self-loops), 0 (protocol, port) entries\nflows: 0, 0 packets, 0 B\n"
    )


def test_learning_over_hours(inventory: Inventory) -> None:
    hour = 3600.0
    flows = [
        flow(TCP, "10.244.1.10", "10.244.2.30", 50051, 0),  # web -> api
        flow(TCP, "10.244.2.30", "10.244.1.20", 5432, 60),  # api -> db
        flow(TCP, "10.244.1.10", "10.244.2.30", 9100, hour + 5),  # web -> api metrics
        flow(TCP, "10.244.1.10", "10.244.2.30", 50051, 2 * hour + 100),  # known edge again
        flow(TCP, "10.244.2.30", "10.244.1.20", 5432, 3 * hour),  # known edge again
    ]
    stats = graph_stats(build_graph(flows, inventory))
    learning = stats["learning"]
    assert learning["new_edges_per_hour"] == [2, 1, 0, 0]
    assert learning["new_edges_last_hour"] == 0
    assert learning["quiet_seconds"] == 3 * hour + 1 - (hour + 5)
    text = format_stats(stats)
    assert "  hour   2 (23:13-00:13Z): 1\n" in text
    assert (
        "learning: no new edge in the last 1 h 59 min of the window; the window looks long "
        "enough for the traffic it saw." in text
    )
    # a new edge in the last hour: still learning
    late = flow(TCP, "10.244.2.99", "10.244.1.20", 5432, 3 * hour - 10)
    text = format_stats(graph_stats(build_graph([*flows, late], inventory)))
    assert "learning: still learning: 1 new edge (25%) in the last hour of the window" in text


# --------------------------------------------------------------------------------------------
# External named sets: the addresses of one DNS name as one node

API_POD, WEB_POD, DEBUG_POD = "10.244.2.30", "10.244.1.10", "10.244.2.99"
STRIPE = ("52.1.2.0", "52.1.2.1", "52.1.2.2", "52.1.2.3")


def answer(client: str, name: str, *ips: str, at: float = 0.0) -> DnsAnswer:
    return DnsAnswer(client, "10.96.0.10", name, ips, (), T0 + at)


def test_addresses_of_one_dns_name_are_one_node(inventory: Inventory) -> None:
    dns = [
        answer(API_POD, "api.stripe.com.", *STRIPE[:2]),
        answer(API_POD, "API.Stripe.com", *STRIPE[2:]),  # names compare case-insensitively
    ]
    flows = [
        flow(TCP, API_POD, "52.1.2.1", 443, 10, tls=True),
        flow(TCP, API_POD, "52.1.2.3", 443, 20, tls=True),
        flow(TCP, API_POD, "52.1.2.9", 443, 30),  # not in any answer: stays an address
    ]
    g = build_graph(flows, inventory, dns)
    node = "external:name:api.stripe.com"
    assert g.nodes[node] == {
        "kind": "external",
        "label": "api.stripe.com",
        "addresses": list(STRIPE),
        "addresses_seen": ["52.1.2.1", "52.1.2.3"],
        "cidrs": ["52.1.2.0/30"],
        "dns_names": ["api.stripe.com"],
        "private": False,
        "aggregation": "dns-name api.stripe.com: 4 addresses from DNS answers in the capture, "
        "filling 52.1.2.0/30",
        "observed": True,
    }
    assert ports_of(g)[(API, node)] == [("TCP", 443)]
    assert g.edges[API, node]["flows"] == 2
    assert g.nodes["external:52.1.2.9"]["dns_names"] == []
    assert graph_stats(g)["external_named_sets"] == 1
    assert "external named sets: 1 (addresses grouped by DNS name)" in format_stats(graph_stats(g))
    # off: one node per address, as before
    plain = build_graph(flows, inventory, dns, named_sets=False)
    assert {n for n in plain if n.startswith("external:")} == {
        "external:52.1.2.1",
        "external:52.1.2.3",
        "external:52.1.2.9",
    }


def test_private_and_public_addresses_are_never_one_set(inventory: Inventory) -> None:
    dns = [
        answer(API_POD, "mixed.example", "10.9.0.1", "198.51.100.30"),
        answer(API_POD, "db.corp.example", "10.20.0.5", "10.20.0.9", "10.20.1.7"),
    ]
    flows = [
        flow(TCP, API_POD, "10.9.0.1", 443, 1),
        flow(TCP, API_POD, "198.51.100.30", 443, 2),
        flow(TCP, API_POD, "10.20.0.9", 5432, 3),
    ]
    g = build_graph(flows, inventory, dns)
    assert g.nodes["external:10.9.0.1"]["private"] is True
    assert g.nodes["external:198.51.100.30"]["private"] is False
    assert g.nodes["external:198.51.100.30"]["dns_names"] == ["mixed.example"]
    private_set = g.nodes["external:name:db.corp.example"]
    assert private_set["private"] is True
    assert private_set["cidrs"] == ["10.20.0.5/32", "10.20.0.9/32", "10.20.1.7/32"]
    assert private_set["aggregation"] == (
        "dns-name db.corp.example: 3 addresses from DNS answers in the capture"
    )


def test_shared_addresses_follow_the_name_each_client_resolved(inventory: Inventory) -> None:
    dns = [
        answer(WEB_POD, "a.cdn.example", "203.0.113.50", "203.0.113.51"),
        answer(API_POD, "b.cdn.example", "203.0.113.51", "203.0.113.52", at=5),
        answer(API_POD, "a.cdn.example", "203.0.113.50", "203.0.113.51", at=50),
    ]
    flows = [
        flow(TCP, WEB_POD, "203.0.113.51", 443, 10),  # web asked a.cdn.example
        flow(TCP, API_POD, "203.0.113.51", 443, 10),  # api asked b.cdn.example just before
        flow(TCP, API_POD, "203.0.113.51", 8443, 60),  # then a.cdn.example
        flow(TCP, DEBUG_POD, "203.0.113.51", 443, 10),  # asked nothing: two names, ambiguous
        flow(TCP, DEBUG_POD, "203.0.113.50", 443, 10),  # asked nothing, but one name only
    ]
    g = build_graph(flows, inventory, dns)
    a, b = "external:name:a.cdn.example", "external:name:b.cdn.example"
    assert ports_of(g)[(WEB, a)] == [("TCP", 443)]
    assert ports_of(g)[(API, b)] == [("TCP", 443)]
    assert ports_of(g)[(API, a)] == [("TCP", 8443)]
    assert ports_of(g)[(DEBUG, "external:203.0.113.51")] == [("TCP", 443)]
    assert ports_of(g)[(DEBUG, a)] == [("TCP", 443)]
    assert g.nodes["external:203.0.113.51"]["dns_names"] == ["a.cdn.example", "b.cdn.example"]
    assert g.nodes[b]["addresses"] == ["203.0.113.51", "203.0.113.52"]
    assert g.nodes[a]["addresses_seen"] == ["203.0.113.50", "203.0.113.51"]


def test_named_sets_survive_save_load_and_exports(tmp_path: Path, inventory: Inventory) -> None:
    dns = [
        answer(API_POD, "api.stripe.com", *STRIPE),
        answer(API_POD, "v6.example", "2001:db8::1", "2001:db8::2", "2001:db8::3"),
    ]
    flows = [
        flow(TCP, API_POD, "52.1.2.2", 443, 1),
        flow(TCP, API_POD, "2001:db8:0:0::2", 443, 2),  # non-canonical IPv6 text
    ]
    g = build_graph(flows, inventory, dns)
    v6 = g.nodes["external:name:v6.example"]
    assert v6["cidrs"] == ["2001:db8::1/128", "2001:db8::2/127"]
    assert v6["aggregation"] == (
        "dns-name v6.example: 3 addresses from DNS answers in the capture, in 2 address blocks"
    )
    assert v6["addresses_seen"] == ["2001:db8::2"]
    path = tmp_path / "g.json"
    save_graph(g, path)
    back = load_graph(path)
    assert dict(back.nodes(data=True)) == dict(g.nodes(data=True))
    graph_to_graphml(g, tmp_path / "g.graphml")
    flat = nx.read_graphml(tmp_path / "g.graphml")
    assert json.loads(flat.nodes["external:name:api.stripe.com"]["addresses"]) == list(STRIPE)


# --------------------------------------------------------------------------------------------
# One workload identity over time: a rollout, CronJob runs, a reused pod IP


def _pod_item(
    name: str, ip: str, owner: dict[str, str], labels: dict[str, str], created: str
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "shop" if owner["kind"] == "ReplicaSet" else "jobs",
            "uid": f"uid-{name}",
            "labels": labels,
            "creationTimestamp": created,
            "ownerReferences": [{**owner, "controller": True}],
        },
        "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def test_rollout_and_cronjob_runs_keep_one_node(tmp_path: Path) -> None:
    dump = json.loads((FIXTURES / "cluster-dump.json").read_text())["items"]
    web_v2 = {"app": "web", "tier": "frontend", "pod-template-hash": "7f6b8c4d2"}
    extra = [
        # the new ReplicaSet's pod (the ReplicaSet is not in the dump) after the rollout
        _pod_item(
            "web-7f6b8c4d2-zz9x1",
            "10.244.2.77",
            {"kind": "ReplicaSet", "name": "web-7f6b8c4d2"},
            web_v2,
            "2023-11-14T22:15:00Z",
        ),
        # a third CronJob run whose Job is not in the dump
        _pod_item(
            "report-28333342-q1w2e",
            "10.244.2.78",
            {"kind": "Job", "name": "report-28333342"},
            {"app": "report"},
            "2023-11-14T22:20:00Z",
        ),
    ]
    path = tmp_path / "dump.json"
    path.write_text(json.dumps({"kind": "List", "apiVersion": "v1", "items": dump + extra}))
    inv = load_inventory([str(path)])
    flows = [
        flow(TCP, "10.244.1.50", "10.244.2.30", 50051, 50),  # old web pod, before its deletion
        flow(TCP, "10.244.2.77", "10.244.2.30", 50051, 500),  # new web pod
        flow(TCP, "10.244.1.40", "10.244.2.20", 5432, 30),  # report run 1
        flow(TCP, "10.244.1.50", "10.244.2.20", 5432, 300),  # run 2, on the old web pod's IP
        flow(TCP, "10.244.2.78", "10.244.2.20", 5432, 600),  # run 3
    ]
    g = build_graph(flows, inv)
    assert ports_of(g) == {(WEB, API): [("TCP", 50051)], (REPORT, DB): [("TCP", 5432)]}
    assert g.edges[WEB, API]["flows"] == 2
    assert g.edges[REPORT, DB]["flows"] == 3
    assert g.nodes[WEB]["pod_count"] == 4
    assert g.nodes[WEB]["labels"] == {"app": "web", "tier": "frontend"}  # the version differs
    assert not any("ReplicaSet" in n or "/Job/report" in n for n in g.nodes)


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


def _corpus_dump(app: str, pattern: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The app's objects plus pods, ClusterIPs, a node and cluster DNS, as a kubectl dump."""
    folder = CORPORA / app
    docs: list[dict[str, Any]] = []
    for path in sorted(folder.glob(pattern)):
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


def _edge_ports(graph: Any) -> set[tuple[str, str, str, int]]:
    """(source, destination, protocol, port) of every port of every edge."""
    return {(src, dst, entry["protocol"], entry["port"])
            for src, dst, attrs in graph.edges(data=True) for entry in attrs["ports"]}


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
    items, info = _corpus_dump(app, APPS[app])
    dump = tmp_path / f"{app}.yaml"
    dump.write_text(yaml.safe_dump_all(items))
    inventory = load_inventory([str(dump)])
    expected, flows = _expected_and_flows(app, info)
    assert len(expected) >= 10
    graph = build_graph(flows, inventory)
    assert _edge_ports(graph) == expected
    workloads = {n for n, a in graph.nodes(data=True) if a["kind"] == "workload"}
    assert workloads == {f"{info['ns'][n]}/{info['kind'][n]}/{n}" for n in info["kind"]}
    assert all(graph.nodes[n]["observed"] for n in workloads)


# Apps whose callgraph.csv has the short form: caller, callee, port (the Service port), protocol.
SIMPLE_APPS = {
    "yelb": "upstream/yelb-k8s-loadbalancer.yaml",
    "deathstarbench/hotel-reservation": "kubernetes/*/*.yaml",
}


def _simple_expected_and_flows(
    app: str, items: list[dict[str, Any]], info: dict[str, Any]
) -> tuple[set[tuple[str, str, str, int]], list[Flow], list[str]]:
    """Expected edges and flows for a short-form call graph; also the rows that were skipped."""

    def wl(name: str) -> str:
        return f"{info['ns'][name]}/{info['kind'][name]}/{name}"

    services = {d["metadata"]["name"]: d for d in items if d.get("kind") == "Service"}
    # "* (all Go services)": the workloads built from the application's own image
    own_image = {
        d["metadata"]["name"]
        for d in items
        if d.get("kind") == "Deployment"
        and any(
            "hotel-reservation" in c.get("image", "")
            for c in d["spec"]["template"]["spec"]["containers"]
        )
    }
    expected: set[tuple[str, str, str, int]] = set()
    flows: list[Flow] = []
    skipped: list[str] = []
    with (CORPORA / app / "callgraph.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    for i, row in enumerate(rows):
        caller, callee = row["caller"], row["callee"]
        transport = Transport.parse(row["protocol"].split("/")[0])
        svc_port = int(row["port"])
        if callee not in info["kind"]:
            skipped.append(f"{caller}->{callee}")  # absent from the manifests
            continue
        (entry,) = [
            p
            for p in services[callee]["spec"]["ports"]
            if p["port"] == svc_port and p.get("protocol", "TCP") == transport.value
        ]
        pod_port = int(entry.get("targetPort", svc_port))
        if caller.startswith("client"):
            client_ip = "198.51.100.99"
            server = info["lb"].get(callee) or info["vip"][callee]
            flows.append(flow(transport, client_ip, server, svc_port, i))
            expected.add((f"external:{client_ip}", wl(callee), transport.value, pod_port))
            continue
        callers = sorted(own_image) if caller.startswith("*") else [caller]
        for name in callers:
            if name not in info["pods"]:
                skipped.append(f"{name}->{callee}")
                continue
            flows.append(flow(transport, info["pods"][name][0], info["vip"][callee], svc_port, i))
            flows.append(
                flow(transport, info["pods"][name][1], info["pods"][callee][1], pod_port, i)
            )
            expected.add((wl(name), wl(callee), transport.value, pod_port))
    return expected, flows, skipped


@pytest.mark.parametrize("app", sorted(SIMPLE_APPS))
def test_real_application_call_graph_short_form(
    tmp_path: Path, app: str, caplog: pytest.LogCaptureFixture
) -> None:
    if not (CORPORA / app / "callgraph.csv").is_file():
        pytest.skip(
            f"corpus {app} not found at {CORPORA / app} (the shared folder beside the repo)"
        )
    items, info = _corpus_dump(app, SIMPLE_APPS[app])
    dump = tmp_path / "dump.yaml"
    dump.write_text(yaml.safe_dump_all(items))
    with caplog.at_level(logging.WARNING, logger="segmenter.cluster.dump"):
        inventory = load_inventory([str(dump)])
    expected, flows, skipped = _simple_expected_and_flows(app, items, info)
    graph = build_graph(flows, inventory)
    actual = _edge_ports(graph)
    assert actual == expected
    workloads = {n for n, a in graph.nodes(data=True) if a["kind"] == "workload"}
    assert workloads == {f"{info['ns'][n]}/{info['kind'][n]}/{n}" for n in info["kind"]}
    if app == "yelb":
        assert len(expected) == 4
        assert not skipped
        assert ("external:198.51.100.99", "default/Deployment/yelb-ui", "TCP", 80) in actual
    else:
        # the code calls review and attractions, which the kubernetes/ manifests lack
        assert sorted(skipped) == [
            "attractions->mongodb-attractions",
            "frontend->attractions",
            "frontend->review",
            "review->memcached-review",
            "review->mongodb-review",
        ]
        assert len(expected) == 17 + 2 * 8  # the call graph's edges plus consul and jaeger
        assert ("default/Deployment/geo", "default/Deployment/jaeger", "UDP", 6831) in actual
        # the PersistentVolumes and claims are skipped, with one warning per kind
        messages = [r.getMessage() for r in caplog.records]
        assert "skipped 6 object(s) of kind PersistentVolume (not used by segmenter)" in messages
        assert (
            "skipped 6 object(s) of kind PersistentVolumeClaim (not used by segmenter)" in messages
        )
        unobserved = {n for n in workloads if not graph.nodes[n]["observed"]}
        assert unobserved == {"kube-system/Deployment/coredns"}  # no DNS flows made up here


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
