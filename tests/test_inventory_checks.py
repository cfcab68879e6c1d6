"""The inventory is checked against the traffic (issue 12, item 4).

Starts from the reproduction: the bundled sample's capture with an inventory of pods only
(``kubectl get pods -A -o json``, derived here from ``sample/shop-inventory.json``) turned the
Service ClusterIPs 10.96.0.10 (DNS) and 10.96.52.50 (payments-api) into external ``/32``
egress rules that never match after DNAT, the self-check still said 61/61, nothing said that
the dump held no Services, and the CronJob's Job became ``allow-settlement-29123456``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from segmenter import pipeline
from segmenter.cli import main
from segmenter.cluster.dump import load_inventory
from segmenter.config import ClusterNetworks, load_config
from segmenter.errors import InventoryError, PlanError, UnsupportedError
from segmenter.flowfile import Traffic
from segmenter.graph.addresses import address_class, link_local_service
from segmenter.graph.build import build_graph
from segmenter.graph.ranges import cluster_ranges, covering_block
from segmenter.model import DnsAnswer, Flow, Node, Transport
from segmenter.synthetic import ClusterBuilder, with_dns
from tests.conftest import REPO

SAMPLE = REPO / "sample"
DUMP = SAMPLE / "shop-inventory.json"
SERVICE_RANGE = ipaddress.ip_network("10.96.0.0/12")  # kubeadm's default, the sample's


@pytest.fixture(scope="module")
def flows(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("flows") / "flows.jsonl"
    pipeline.ingest([str(SAMPLE / "shop.pcapng")], str(out))
    return str(out)


def _items() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(DUMP.read_text())["items"]
    return items


def _dump(tmp_path: Path, items: list[dict[str, Any]], name: str = "dump.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    return str(path)


def _pods_only(tmp_path: Path) -> str:
    """What ``kubectl get pods -A -o json`` gives for the sample cluster."""
    return _dump(tmp_path, [i for i in _items() if i["kind"] == "Pod"], "pods.json")


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    _, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_pods_only_dump_with_service_traffic_is_exit_2_naming_what_is_missing(
    tmp_path: Path, flows: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pods = _pods_only(tmp_path)
    assert main(["graph", "--flows", flows, "--inventory", pods,
                 "-o", str(tmp_path / "graph.json")]) == 2
    line = _error(capsys)
    assert line.startswith(f"segmenter: error: {pods}: the inventory holds pods but no "
                           "Services, and the capture shows Service traffic: ")
    # the ClusterIPs the issue names, and the kubectl get that supplies what is missing
    assert "10.96.0.10:53/UDP from shop/Deployment/frontend" in line
    assert "10.96.52.50:443/TCP from shop/Deployment/checkout" in line
    assert "in the Service range 10.96.0.0/18 (the block around 5 addresses the capture's DNS " \
           "answered for Service names)" in line
    assert line.endswith("add the Services and EndpointSlices: kubectl get "
                         "services,endpointslices -A -o json")
    assert not (tmp_path / "graph.json").exists()
    # run stops at the graph: no policy folder holds a ClusterIP as an external peer
    out = tmp_path / "run"
    assert main(["run", str(SAMPLE / "shop.pcapng"), "--inventory", pods,
                 "--config", str(SAMPLE / "segmenter.yaml"), "-o", str(out)]) == 2
    assert "the inventory holds pods but no Services" in _error(capsys)
    assert not (out / "kubernetes").exists()
    # verify cannot replay the flows as the dataplane sees them either (no DNAT to follow)
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "deny.yaml").write_text(yaml.safe_dump(_policy("default-deny")))
    assert main(["verify", "--policies", str(tmp_path / "policies"), "--flows", flows,
                 "--inventory", pods, "--enforcement", "kubernetes"]) == 2
    assert "the inventory holds pods but no Services" in _error(capsys)


def test_endpointslices_without_their_services_are_named(
    tmp_path: Path, flows: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``kubectl get pods,endpointslices``: the slices name the Services that are missing."""
    dump = _dump(tmp_path, [i for i in _items() if i["kind"] in ("Pod", "EndpointSlice")])
    assert main(["graph", "--flows", flows, "--inventory", dump]) == 2
    assert (f"{dump}: the inventory holds pods and the EndpointSlices of 9 Services but no "
            "Services, and the capture shows Service traffic: ") in _error(capsys)


def test_a_dns_query_to_a_non_pod_address_is_service_traffic_without_dns_answers(
    tmp_path: Path,
) -> None:
    """Without the capture's DNS answers (a flow log), a pod's DNS query to a private address
    that is no pod or node is the kube-dns ClusterIP when the inventory has no Services."""
    b = ClusterBuilder()
    web = b.workload("shop", "web", {"app": "web"})
    inventory = b.inventory()
    (pod,) = [p for p in inventory.pods if p.owner.id == web]
    query = Flow(Transport.UDP, pod.ips[0], "10.43.0.10", 40000, 53, 1.0, 1.1)
    with pytest.raises(InventoryError) as info:
        pipeline.make_graph(Traffic({}, (query,)), inventory)
    assert "the inventory holds pods but no Services" in str(info.value)
    assert "10.43.0.10:53/UDP from shop/Deployment/web" in str(info.value)
    # a declared Service range that does not hold it says it is outside the cluster
    graph = pipeline.make_graph(Traffic({}, (query,)), inventory,
                                ClusterNetworks(service_cidrs=("10.96.0.0/12",)))
    assert "external:10.43.0.10" in graph


def test_full_sample_never_makes_a_clusterip_an_ipblock(tmp_path: Path, flows: str) -> None:
    result = pipeline.run([flows], [str(DUMP)], tmp_path / "out",
                          config=str(SAMPLE / "segmenter.yaml"))
    assert all(r.allowed for verdicts in result.verdicts.values() for r in verdicts)
    externals = [n for n, a in result.graph.nodes(data=True) if a["kind"] == "external"]
    assert externals == ["external:198.51.100.20", "external:203.0.113.10"]
    cidrs = _cidrs_in(tmp_path / "out")
    assert cidrs, "the sample's policies name external and node addresses by CIDR"
    inside = [c for c in cidrs if c.version == 4 and c.subnet_of(SERVICE_RANGE)]
    assert inside == []
    assert not [n for n in result.notes if "lies in the Service range" in n]


def _cidrs_in(folder: Path) -> set[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Every value that parses as an address block in the YAML of ``folder``, except those that
    only take addresses away (NetworkPolicy and Cilium ``except``, Calico ``notNets``: the
    internet entry points leave the cluster's ranges out that way)."""
    found = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k not in ("except", "notNets"):
                    walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str) and "/" in value:
            with contextlib.suppress(ValueError):
                found.add(ipaddress.ip_network(value, strict=False))

    for path in folder.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            walk(doc)
    return found


def _policy(name: str, egress: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": {}, "policyTypes": ["Egress"]}
    if egress is not None:
        spec["egress"] = egress
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": "shop"}, "spec": spec}


def test_verify_flags_an_ipblock_of_a_clusterip_and_replays_after_dnat(
    tmp_path: Path, flows: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the pods-only inventory made: egress to the ClusterIP 10.96.52.50/32. Replayed as
    the dataplane sees it (after DNAT, to a payments-api pod on 8443) it is denied, and the
    rule is named as one that never matches; a wide block holding the Service range is not."""
    folder = tmp_path / "policies"
    folder.mkdir()
    egress = [
        {"to": [{"ipBlock": {"cidr": "10.96.52.50/32"}}], "ports": [{"port": 443}]},
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 53, "protocol": "UDP"}]},
    ]
    (folder / "checkout.yaml").write_text(yaml.safe_dump(_policy("allow-checkout", egress)))
    code = main(["verify", "--policies", str(folder), "--flows", flows,
                 "--inventory", str(DUMP), "--enforcement", "kubernetes"])
    out = capsys.readouterr().out
    assert code == 1
    assert ("DENIED shop/Deployment/checkout -> payments/Deployment/payments-api TCP/8443"
            in out)
    notes = [line for line in out.splitlines() if line.startswith("note: ")]
    assert notes == [
        "note: networking.k8s.io/NetworkPolicy shop/allow-checkout egress[0]: 10.96.52.50/32 "
        "lies in the Service range 10.96.0.0/18 (the block around 8 Service ClusterIPs of the "
        "inventory) (it holds the ClusterIP of payments/payments-api) and never matches: "
        "traffic to a Service is DNATed to its pods before any policy sees it; allow the "
        "Service's pods instead"]


def _without(items: list[dict[str, Any]], *names: tuple[str, str]) -> list[dict[str, Any]]:
    return [i for i in items if (i["kind"], i["metadata"]["name"]) not in names]


def test_a_service_missing_from_the_inventory_is_named(
    tmp_path: Path, flows: str, capsys: pytest.CaptureFixture[str]
) -> None:
    items = [i for i in _items() if not (i["kind"] in ("Service", "EndpointSlice")
                                         and i["metadata"]["name"].startswith("payments-api"))]
    dump = _dump(tmp_path, items)
    assert main(["graph", "--flows", flows, "--inventory", dump]) == 2
    line = _error(capsys)
    assert ("1 flow reaches 1 address in the Service range 10.96.0.0/18 (the block around 7 "
            "Service ClusterIPs of the inventory and 1 address the capture's DNS answered for "
            "Service names) that no Service in the inventory has (10.96.52.50:443/TCP from "
            "shop/Deployment/checkout)") in line
    assert "kubectl get services,endpointslices -A -o json" in line
    # declared in segmenter.yaml, the range is named as declared
    config = tmp_path / "segmenter.yaml"
    config.write_text("version: 1\ncluster:\n  service_cidrs: [10.96.0.0/12]\n"
                      "  pod_cidrs: [10.244.0.0/16]\n")
    assert main(["graph", "--flows", flows, "--inventory", dump, "--config", str(config)]) == 2
    assert ("in the Service range 10.96.0.0/12 (segmenter.yaml cluster.service_cidrs)"
            in _error(capsys))


def test_a_service_without_backend_and_a_pod_missing_are_named(
    tmp_path: Path, flows: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """payments-api's pods and EndpointSlice gone, its Service kept: its ClusterIP has no
    backend, and its pod IPs (in node worker-1's podCIDR) belong to no pod."""
    items = [i for i in _items()
             if not (i["kind"] in ("Pod", "EndpointSlice")
                     and i["metadata"]["name"].startswith("payments-api"))]
    assert main(["graph", "--flows", flows, "--inventory", _dump(tmp_path, items)]) == 2
    line = _error(capsys)
    assert ("1 flow reaches the ClusterIP of Service payments/payments-api, which has no "
            "backend in the inventory (no EndpointSlice, no pod its selector matches): "
            "10.96.52.50:443/TCP from shop/Deployment/checkout; add them: kubectl get "
            "endpointslices,pods -A -o json" in line)
    assert ("15 flows reach 2 addresses in the pod range 10.244.1.0/24 (podCIDR of node "
            "worker-1) that no pod in the inventory held" in line)
    assert "segmenter inventory --live --watch, or kubectl get pods -A -o json" in line


def test_cronjob_run_collapses_to_its_cronjob_without_job_or_cronjob_objects(
    tmp_path: Path, flows: str
) -> None:
    pods = load_inventory([_pods_only(tmp_path)])
    (settlement,) = [p for p in pods.pods if p.name.startswith("settlement-")]
    assert settlement.owner.id == "payments/CronJob/settlement"
    # The whole pipeline with Services but without the Job and the CronJob: the policy is the
    # CronJob's, not the one-off Job's.
    items = _without(_items(), ("Job", "settlement-29123456"), ("CronJob", "settlement"))
    result = pipeline.run([flows], [_dump(tmp_path, items)], tmp_path / "out",
                          config=str(SAMPLE / "segmenter.yaml"))
    assert "payments/CronJob/settlement" in result.graph
    written = "\n".join(p.read_text() for p in (tmp_path / "out").rglob("*.yaml"))
    assert "name: allow-settlement\n" in written
    assert "29123456" not in written


def test_service_range_inference() -> None:
    addresses = [ipaddress.ip_address(a) for a in ("10.96.0.1", "10.96.0.10", "10.96.52.60")]
    assert covering_block(addresses) == ipaddress.ip_network("10.96.0.0/18")
    assert covering_block([ipaddress.ip_address("fd00:10:96::a")]) == ipaddress.ip_network(
        "fd00:10:96::a/128")
    b = ClusterBuilder()
    with_dns(b)
    inventory = b.inventory()
    ranges = cluster_ranges(inventory, [DnsAnswer("10.244.0.11", "10.96.0.10",
                                                  "api.shop.svc.cluster.local.",
                                                  ("10.96.200.7",))])
    assert [str(r.network) for r in ranges.services] == ["10.96.0.0/16"]
    # ClusterIPs further apart than one Service range can be: nothing is inferred
    wide = cluster_ranges(inventory, [DnsAnswer("10.244.0.11", "10.96.0.10",
                                                "x.y.svc.cluster.local", ("172.20.0.9",))])
    assert wide.services == ()
    # an ExternalName Service answers a CNAME and an outside address: not a ClusterIP
    named = cluster_ranges(inventory, [DnsAnswer("10.244.0.11", "10.96.0.10",
                                                 "db.shop.svc.cluster.local",
                                                 ("52.1.2.3",), ("db.example.com",))])
    assert [str(r.network) for r in named.services] == ["10.96.0.10/32"]


@pytest.mark.parametrize(
    ("cluster", "problem"),
    [
        ("{service_cidrs: [10.96.0.1/12]}", "invalid CIDR: 10.96.0.1/12 has host bits set"),
        ("{service_cidrs: 10.96.0.0/12}", "`service_cidrs` must be a list of CIDR blocks"),
        ("{service_cidrs: [10.96.0.0/12], pod_cidrs: [10.96.0.0/16]}",
         "Service range 10.96.0.0/12 overlaps pod range 10.96.0.0/16"),
        ("{services: [10.96.0.0/12]}", "unknown key(s) services"),
        ("[10.96.0.0/12]", "`cluster` must be a map"),
    ],
)
def test_cluster_ranges_in_config_are_validated(tmp_path: Path, cluster: str,
                                                problem: str) -> None:
    path = tmp_path / "segmenter.yaml"
    path.write_text(f"version: 1\ncluster: {cluster}\n")
    with pytest.raises(PlanError) as info:
        load_config(str(path))
    assert problem in str(info.value)
    assert str(path) in str(info.value)


def test_cluster_ranges_in_config_are_read(tmp_path: Path) -> None:
    path = tmp_path / "segmenter.yaml"
    path.write_text("version: 1\ncluster:\n  service_cidrs: [10.96.0.0/12, fd00:10:96::/108]\n"
                    "  pod_cidrs: [10.244.0.0/16]\n")
    config = load_config(str(path))
    assert config.cluster == ClusterNetworks(("10.96.0.0/12", "fd00:10:96::/108"),
                                             ("10.244.0.0/16",), "segmenter.yaml cluster")
    assert copy.deepcopy(config.cluster) == config.cluster


def test_compile_refuses_a_graph_holding_a_clusterip_as_an_external_peer() -> None:
    """A graph built before this check (or against another inventory) may still hold
    ``external:10.96.0.10``: with an inventory whose kube-dns Service has that ClusterIP, the
    compiler refuses to make it an ipBlock."""
    b = ClusterBuilder()
    with_dns(b)
    web = b.workload("shop", "web", {"app": "web"})
    b.flow(web, b.external("10.96.0.10"), 53, "UDP")
    graph, inventory = b.graph, b.inventory()
    plan = pipeline.make_plan(graph, load_config(None))
    with pytest.raises(UnsupportedError) as info:
        pipeline.compile_policies(graph, plan, inventory)
    assert ("external:10.96.0.10 is the ClusterIP of Service kube-system/kube-dns, which an "
            "ipBlock never matches: build the graph again with this inventory") in str(info.value)


_PEERS = st.sampled_from([
    "fe80::1", "ff02::2", "224.0.0.251", "255.255.255.255", "0.0.0.0", "127.0.0.1",  # special
    "169.254.169.254", "169.254.20.10",  # link-local services (on port 53 for the second)
    "10.96.0.10",  # the kube-dns ClusterIP: explained
    "10.96.7.7", "10.96.200.1",  # in the Service range, no Service
    "10.244.0.200",  # in node worker-1's podCIDR, no pod
    "203.0.113.10", "8.8.8.8", "2001:db8::1",  # outside the cluster
])


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.tuples(_PEERS, st.sampled_from([53, 80, 443]), st.booleans()),
                min_size=1, max_size=12))
def test_no_graph_holds_a_special_or_unexplained_cluster_address(
    peers: list[tuple[str, int, bool]],
) -> None:
    """Whatever the traffic, the graph either refuses it (an address in the Service or pod range
    that the inventory does not explain) or holds no node at a special address or inside those
    ranges, and counts every flow it left out for a special end."""
    b = ClusterBuilder()
    with_dns(b)
    web = b.workload("shop", "web", {"app": "web"})
    inventory = dataclasses.replace(
        b.inventory(), nodes=(Node("worker-1", ("172.18.0.2",), pod_cidrs=("10.244.0.0/24",)),))
    (pod,) = [p for p in inventory.pods if p.owner.id == web]
    flows = []
    for i, (peer, port, outbound) in enumerate(peers):
        client, server = (pod.ips[0], peer) if outbound else (peer, pod.ips[0])
        flows.append(Flow(Transport.UDP, client, server, 40000 + i, port, i, i + 0.5))
    ranges = [ipaddress.ip_network(n) for n in ("10.96.0.0/16", "10.244.0.0/24")]
    unexplained = {"10.96.7.7", "10.96.200.1", "10.244.0.200"}
    try:  # the Service range declared (one ClusterIP alone shows no range), the pod range seen
        graph = build_graph(flows, inventory,
                            networks=ClusterNetworks(service_cidrs=("10.96.0.0/16",)))
    except InventoryError:
        assert {p for p, _, _ in peers} & unexplained
        return
    assert not {p for p, _, _ in peers} & unexplained
    special = {f for f in flows if address_class(f.client) or address_class(f.server)}
    special -= {f for f in flows if link_local_service(f.server, f.server_port)
                or link_local_service(f.client, None)}
    assert graph.graph.get("special_addresses", {}).get("flows", 0) == len(special)
    for node, attrs in graph.nodes(data=True):
        for address in attrs.get("addresses") or ():
            if attrs["kind"] != "external":
                continue
            ip = ipaddress.ip_address(address)
            assert not any(ip in net for net in ranges if net.version == ip.version), node
            assert address_class(address) is None or attrs.get("link_local_service"), node
