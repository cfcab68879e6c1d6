"""The bundled sample (``sample/``): a kubectl dump and a real capture that agree with each other.

The ground truth below (who talks to whom) is written out by hand; the committed capture, a fresh
capture made by ``sample/make_sample.py`` (``netns`` test, root only) and the generator's own
scenario must all match it exactly.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SAMPLE = Path(__file__).resolve().parent.parent / "sample"
CAPTURE = SAMPLE / "shop.pcapng"
INVENTORY = SAMPLE / "shop-inventory.json"
GENERATOR = SAMPLE / "make_sample.py"
MAX_CAPTURE_BYTES = 200_000
TEST_PAN = "4111 1111 1111 1111"

# ---------------------------------------------------------------------------------------------
# Ground truth
# ---------------------------------------------------------------------------------------------

# Who owns each address seen in the capture, as the dump tells it.
OWNERS = {
    "172.18.0.1": "apiserver",  # the default/kubernetes EndpointSlice
    "172.18.0.2": "Node worker-1",
    "10.244.1.2": "Deployment kube-system/coredns",
    "10.244.1.10": "Deployment shop/frontend",
    "10.244.1.11": "Deployment shop/frontend",
    "10.244.1.20": "Deployment shop/catalog",
    "10.244.1.25": "Deployment shop/recommendations",
    "10.244.1.30": "Deployment shop/checkout",
    "10.244.1.40": "StatefulSet shop/redis-cart",
    "10.244.1.50": "Deployment payments/payments-api",
    "10.244.1.51": "Deployment payments/payments-api",
    "10.244.1.60": "StatefulSet payments/card-vault",
    "10.244.1.70": "CronJob payments/settlement",
    "10.96.0.1": "Service default/kubernetes",
    "10.96.0.10": "Service kube-system/kube-dns",
    "10.96.52.50": "Service payments/payments-api",
    "198.51.100.20": "external",  # an internet shopper
    "203.0.113.10": "external",  # the payment gateway, api.gateway.example
}

# Every TCP conversation (client, server, server port): a SYN and a SYN-ACK must be in the capture,
# and no other SYN may be.
TCP_FLOWS = {
    ("10.244.1.2", "172.18.0.1", 6443),  # coredns -> API server (endpoint of default/kubernetes)
    ("172.18.0.2", "10.244.1.10", 8080),  # kubelet probe -> frontend
    ("172.18.0.2", "10.244.1.11", 8080),  # kubelet probe -> frontend
    ("172.18.0.2", "10.244.1.50", 8443),  # kubelet probe (HTTPS) -> payments-api
    ("172.18.0.2", "10.244.1.51", 8443),  # kubelet probe (HTTPS) -> payments-api
    ("198.51.100.20", "10.244.1.10", 8080),  # shopper -> frontend
    ("198.51.100.20", "10.244.1.11", 8080),  # shopper -> frontend
    ("10.244.1.10", "10.244.1.20", 3550),  # frontend -> catalog
    ("10.244.1.11", "10.244.1.20", 3550),  # frontend -> catalog
    ("10.244.1.10", "10.244.1.40", 6379),  # frontend -> redis-cart
    ("10.244.1.11", "10.244.1.40", 6379),  # frontend -> redis-cart
    ("10.244.1.10", "10.244.1.30", 5050),  # frontend -> checkout
    ("10.244.1.11", "10.244.1.30", 5050),  # frontend -> checkout
    ("10.244.1.25", "10.244.1.20", 3550),  # recommendations -> catalog
    ("10.244.1.30", "10.244.1.40", 6379),  # checkout -> redis-cart
    ("10.244.1.30", "10.96.52.50", 443),  # checkout -> payments-api Service VIP (443 -> 8443)
    ("10.244.1.30", "10.244.1.51", 8443),  # checkout -> payments-api pod
    ("10.244.1.50", "10.244.1.60", 5432),  # payments-api -> card-vault
    ("10.244.1.51", "10.244.1.60", 5432),  # payments-api -> card-vault
    ("10.244.1.50", "203.0.113.10", 443),  # payments-api -> payment gateway (TLS)
    ("10.244.1.51", "203.0.113.10", 443),  # payments-api -> payment gateway (TLS)
    ("10.244.1.50", "10.96.0.1", 443),  # payments-api -> kubernetes Service VIP
    ("10.244.1.70", "10.244.1.60", 5432),  # settlement job -> card-vault
    ("10.244.1.70", "203.0.113.10", 443),  # settlement job -> payment gateway (TLS)
}

# Every workload that makes calls asks the cluster DNS (the kube-dns VIP) first.
DNS_SERVER = ("10.96.0.10", 53)
DNS_CLIENTS = {"10.244.1.10", "10.244.1.11", "10.244.1.25", "10.244.1.30", "10.244.1.50",
               "10.244.1.51", "10.244.1.70"}
DNS_NAMES = {
    "catalog.shop.svc.cluster.local": "10.96.41.20",
    "checkout.shop.svc.cluster.local": "10.96.41.30",
    "redis-cart.shop.svc.cluster.local": "10.244.1.40",  # headless Service: the pod
    "payments-api.payments.svc.cluster.local": "10.96.52.50",
    "card-vault.payments.svc.cluster.local": "10.96.52.60",
    "kubernetes.default.svc.cluster.local": "10.96.0.1",
    "api.gateway.example": "203.0.113.10",
}
# TLS ClientHellos that carry a server name (clients that dial an IP send none).
SNI = {
    ("10.244.1.30", "10.96.52.50", 443): "payments-api.payments.svc.cluster.local",
    ("10.244.1.50", "203.0.113.10", 443): "api.gateway.example",
    ("10.244.1.51", "203.0.113.10", 443): "api.gateway.example",
    ("10.244.1.70", "203.0.113.10", 443): "api.gateway.example",
}
# The out-of-scope part of the shop: it never talks to the payments namespace.
OUT_OF_SCOPE = {"10.244.1.20", "10.244.1.25"}
PAYMENTS = {"10.244.1.50", "10.244.1.51", "10.244.1.60", "10.244.1.70", "10.96.52.50",
            "10.96.52.60"}

KINDS = {"Pod", "Service", "EndpointSlice", "Namespace", "Node", "Deployment", "ReplicaSet",
         "StatefulSet", "DaemonSet", "Job", "CronJob"}


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_sample", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_sample"] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _sni(payload: bytes) -> tuple[bool, str | None]:
    """(is a TLS ClientHello, its server name)."""
    if len(payload) < 44 or payload[0] != 0x16 or payload[5] != 0x01:
        return False, None
    i = 9 + 2 + 32
    i += 1 + payload[i]  # session id
    i += 2 + struct.unpack_from("!H", payload, i)[0]  # cipher suites
    i += 1 + payload[i]  # compression methods
    end = i + 2 + struct.unpack_from("!H", payload, i)[0]
    i += 2
    while i + 4 <= end:
        etype, elen = struct.unpack_from("!HH", payload, i)
        i += 4
        if etype == 0:
            size = struct.unpack_from("!H", payload, i + 3)[0]
            return True, payload[i + 5:i + 5 + size].decode()
        i += elen
    return True, None


@dataclass
class CaptureSummary:
    packets: int = 0
    syns: set[tuple[str, str, int]] = field(default_factory=set)
    synacks: set[tuple[str, str, int]] = field(default_factory=set)  # as (client, server, port)
    udp: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    dns_answers: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    hellos: dict[tuple[str, str, int], set[str | None]] = field(default_factory=dict)
    addresses: set[str] = field(default_factory=set)
    ipv6: int = 0
    resets: int = 0
    pan_packets: int = 0
    times: list[float] = field(default_factory=list)


def summarize(path: Path) -> CaptureSummary:
    from scapy.layers.dns import DNS
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.utils import PcapNgReader, PcapReader

    with path.open("rb") as f:
        magic = f.read(4)
    reader_cls = PcapNgReader if magic == b"\x0a\x0d\x0d\x0a" else PcapReader
    out = CaptureSummary()
    with reader_cls(str(path)) as reader:
        for pkt in reader:
            out.packets += 1
            out.times.append(float(pkt.time))
            if pkt.haslayer(IPv6):
                out.ipv6 += 1
            if not pkt.haslayer(IP):
                continue
            ip = pkt[IP]
            out.addresses.update((ip.src, ip.dst))
            if pkt.haslayer(TCP):
                tcp = pkt[TCP]
                flags = int(tcp.flags)
                if flags & 0x12 == 0x02:
                    out.syns.add((ip.src, ip.dst, tcp.dport))
                elif flags & 0x12 == 0x12:
                    out.synacks.add((ip.dst, ip.src, tcp.sport))
                if flags & 0x04:
                    out.resets += 1
                payload = bytes(tcp.payload)
                if TEST_PAN.encode() in payload:
                    out.pan_packets += 1
                is_hello, name = _sni(payload)
                if is_hello:
                    out.hellos.setdefault((ip.src, ip.dst, tcp.dport), set()).add(name)
            elif pkt.haslayer(UDP):
                udp = pkt[UDP]
                out.udp[(ip.src, ip.dst, udp.dport)] += 1
                if pkt.haslayer(DNS) and pkt[DNS].qr == 1:
                    dns = pkt[DNS]
                    qname = dns.qd[0].qname.decode().rstrip(".")
                    out.dns_answers[(ip.dst, qname)] = [
                        str(rr.rdata) for rr in (dns.an or []) if rr.type == 1]
    return out


def check_capture(cap: CaptureSummary) -> None:
    """Everything a capture made by the generator must satisfy."""
    assert cap.syns == TCP_FLOWS, (
        f"missing: {sorted(TCP_FLOWS - cap.syns)}; unexpected: {sorted(cap.syns - TCP_FLOWS)}")
    assert cap.synacks == TCP_FLOWS, f"no SYN-ACK: {sorted(TCP_FLOWS - cap.synacks)}"
    queries = {(src, dst, port) for (src, dst, port) in cap.udp if (dst, port) == DNS_SERVER}
    assert {src for (src, _, _) in queries} == DNS_CLIENTS
    # the only other UDP is the answers, from the kube-dns VIP back to the clients
    assert all(src == DNS_SERVER[0] and dst in DNS_CLIENTS
               for (src, dst, _) in set(cap.udp) - queries)
    for (_, name), answers in cap.dns_answers.items():
        assert answers == [DNS_NAMES[name]], name
    assert {name for (_, name) in cap.dns_answers} == set(DNS_NAMES)
    tls_flows = {f for f in TCP_FLOWS if f[2] in (443, 6443, 8443)}
    assert set(cap.hellos) == tls_flows
    for flow in tls_flows:
        assert cap.hellos[flow] == {SNI.get(flow)}, flow
    assert cap.addresses <= set(OWNERS), sorted(cap.addresses - set(OWNERS))
    assert cap.ipv6 == 0
    assert cap.resets == 0, "every conversation is accepted and closes cleanly (no RST)"
    for src, dst, _ in cap.syns:
        assert not (src in OUT_OF_SCOPE and dst in PAYMENTS)
        assert not (src in PAYMENTS and dst in OUT_OF_SCOPE)
    # The planted test card number travels in plaintext to the vault (the project must not
    # copy it anywhere).
    assert cap.pan_packets >= 1
    assert max(cap.times) - min(cap.times) < 30


# ---------------------------------------------------------------------------------------------
# The dump
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inventory() -> dict[str, Any]:
    return json.loads(INVENTORY.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def items(inventory: dict[str, Any]) -> list[dict[str, Any]]:
    return inventory["items"]


def _of(items: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [i for i in items if i["kind"] == kind]


def _index(items: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(i["kind"], i["metadata"].get("namespace", ""), i["metadata"]["name"]): i
            for i in items}


def test_dump_is_a_kubectl_list_with_every_kind(inventory: dict[str, Any]) -> None:
    assert inventory["apiVersion"] == "v1"
    assert inventory["kind"] == "List"
    assert {i["kind"] for i in inventory["items"]} == KINDS
    for item in inventory["items"]:
        meta = item["metadata"]
        assert meta["uid"]
        assert meta["creationTimestamp"].endswith("Z")
        assert meta["resourceVersion"].isdigit()
        assert item["apiVersion"] in ("v1", "apps/v1", "batch/v1", "discovery.k8s.io/v1")
    uids = [i["metadata"]["uid"] for i in inventory["items"]]
    assert len(uids) == len(set(uids))


def test_dump_is_what_the_generator_writes() -> None:
    assert _load_generator().render_inventory() == INVENTORY.read_text(encoding="utf-8")


def test_generator_scenario_matches_the_ground_truth() -> None:
    flows = _load_generator().expected_flows()
    assert {(c, s, p) for proto, c, s, p in flows if proto == "TCP"} == TCP_FLOWS
    assert {c for proto, c, s, p in flows if proto == "UDP"} == DNS_CLIENTS
    assert {(s, p) for proto, c, s, p in flows if proto == "UDP"} == {DNS_SERVER}


def test_namespaces_and_node(items: list[dict[str, Any]]) -> None:
    namespaces = {n["metadata"]["name"]: n for n in _of(items, "Namespace")}
    assert {"default", "kube-system", "shop", "payments"} <= set(namespaces)
    for name, ns in namespaces.items():
        assert ns["metadata"]["labels"]["kubernetes.io/metadata.name"] == name
    assert namespaces["shop"]["metadata"]["labels"]["segmenter.io/team"] == "storefront"
    (node,) = _of(items, "Node")
    assert node["metadata"]["name"] == "worker-1"
    assert {"address": "172.18.0.2", "type": "InternalIP"} in node["status"]["addresses"]


def test_pod_ips_are_unique_and_placed(items: list[dict[str, Any]]) -> None:
    pods = _of(items, "Pod")
    own = [p for p in pods if not p["spec"].get("hostNetwork")]
    ips = [p["status"]["podIP"] for p in own]
    assert len(ips) == len(set(ips))
    for pod in pods:
        status = pod["status"]
        assert status["podIPs"] == [{"ip": status["podIP"]}]
        assert pod["spec"]["nodeName"] == "worker-1"
        assert status["hostIP"] == "172.18.0.2"
        if pod["spec"].get("hostNetwork"):
            assert status["podIP"] == status["hostIP"]
        else:
            assert status["podIP"].startswith("10.244.1.")
        for container in pod["spec"]["containers"]:
            for port in container.get("ports", []):
                assert port["name"]
                assert port["protocol"] in ("TCP", "UDP")


def _top_owner(index: dict[tuple[str, str, str], dict[str, Any]],
               obj: dict[str, Any]) -> dict[str, Any]:
    """Follow controller ownerReferences, checking each hop; return the topmost object."""
    chain = [obj]
    while refs := chain[-1]["metadata"].get("ownerReferences"):
        (ref,) = [r for r in refs if r.get("controller")]
        ns = chain[-1]["metadata"].get("namespace", "")
        owner = index.get((ref["kind"], ns, ref["name"]))
        assert owner is not None, f"dangling ownerReference {ref}"
        assert owner["metadata"]["uid"] == ref["uid"]
        assert owner["apiVersion"] == ref["apiVersion"]
        chain.append(owner)
    return chain[-1]


def test_owner_reference_chains(items: list[dict[str, Any]]) -> None:
    index = _index(items)
    chains: dict[str, list[str]] = {}
    for pod in _of(items, "Pod"):
        kinds = []
        obj = pod
        while refs := obj["metadata"].get("ownerReferences"):
            (ref,) = refs
            obj = index[(ref["kind"], pod["metadata"]["namespace"], ref["name"])]
            assert obj["metadata"]["uid"] == ref["uid"]
            kinds.append(ref["kind"])
        chains[pod["metadata"]["name"]] = kinds
        _top_owner(index, pod)
    assert {tuple(k) for k in chains.values()} == {
        ("ReplicaSet", "Deployment"), ("StatefulSet",), ("DaemonSet",), ("Job", "CronJob")}
    for rs in _of(items, "ReplicaSet"):
        _top_owner(index, rs)
    for job in _of(items, "Job"):
        assert _top_owner(index, job)["kind"] == "CronJob"


def test_controller_labels(items: list[dict[str, Any]]) -> None:
    index = _index(items)
    for pod in _of(items, "Pod"):
        labels = pod["metadata"]["labels"]
        (ref,) = pod["metadata"]["ownerReferences"]
        owner = index[(ref["kind"], pod["metadata"]["namespace"], ref["name"])]
        if ref["kind"] == "ReplicaSet":
            assert ref["name"] == f"{owner['metadata']['ownerReferences'][0]['name']}-" \
                                  f"{labels['pod-template-hash']}"
            assert owner["spec"]["selector"]["matchLabels"]["pod-template-hash"] == \
                labels["pod-template-hash"]
        elif ref["kind"] == "StatefulSet":
            assert labels["statefulset.kubernetes.io/pod-name"] == pod["metadata"]["name"]
            assert labels["controller-revision-hash"] == owner["status"]["currentRevision"]
        elif ref["kind"] == "Job":
            uid = owner["metadata"]["uid"]
            assert labels["controller-uid"] == labels["batch.kubernetes.io/controller-uid"] == uid
            assert labels["job-name"] == labels["batch.kubernetes.io/job-name"] == ref["name"]
            assert pod["status"]["phase"] == "Succeeded"
        for key, value in owner["spec"]["selector"]["matchLabels"].items():
            assert labels[key] == value
    vault = index[("Pod", "payments", "card-vault-0")]
    assert vault["metadata"]["annotations"]["segmenter.io/data-class"] == "pci"
    assert vault["spec"]["containers"][0]["image"] == "postgres:16"
    sts = index[("StatefulSet", "payments", "card-vault")]
    assert sts["spec"]["template"]["metadata"]["annotations"]["segmenter.io/data-class"] == "pci"


def _selects(selector: dict[str, str], pod: dict[str, Any]) -> bool:
    labels = pod["metadata"].get("labels", {})
    return all(labels.get(k) == v for k, v in selector.items())


def test_services_select_pods_and_slices_point_at_them(items: list[dict[str, Any]]) -> None:
    index = _index(items)
    pods = _of(items, "Pod")
    slices = _of(items, "EndpointSlice")
    assert {s["metadata"]["labels"]["kubernetes.io/service-name"] for s in slices} == {
        s["metadata"]["name"] for s in _of(items, "Service")}
    for svc in _of(items, "Service"):
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        spec = svc["spec"]
        assert spec["clusterIPs"] == [spec["clusterIP"]]
        (eps,) = [s for s in slices if s["metadata"]["namespace"] == ns
                  and s["metadata"]["labels"]["kubernetes.io/service-name"] == name]
        if "selector" not in spec:  # default/kubernetes: the API server
            assert (ns, name, spec["clusterIP"]) == ("default", "kubernetes", "10.96.0.1")
            assert spec["ports"][0]["port"] == 443
            assert spec["ports"][0]["targetPort"] == 6443
            assert eps["endpoints"][0]["addresses"] == ["172.18.0.1"]
            assert eps["ports"][0]["port"] == 6443
            continue
        selected = [p for p in pods if p["metadata"]["namespace"] == ns
                    and _selects(spec["selector"], p) and p["status"]["phase"] == "Running"]
        assert selected, f"{ns}/{name} selects no pod"
        assert {e["targetRef"]["name"] for e in eps["endpoints"]} == {
            p["metadata"]["name"] for p in selected}
        for endpoint in eps["endpoints"]:
            pod = index[("Pod", ns, endpoint["targetRef"]["name"])]
            assert endpoint["targetRef"]["uid"] == pod["metadata"]["uid"]
            assert endpoint["addresses"] == [pod["status"]["podIP"]]
            assert endpoint["nodeName"] == pod["spec"]["nodeName"]
        container_ports = selected[0]["spec"]["containers"][0]["ports"]
        for port, slice_port in zip(spec["ports"], eps["ports"], strict=True):
            target = port["targetPort"]
            if isinstance(target, str):
                target = next(c["containerPort"] for c in container_ports
                              if c["name"] == target and c["protocol"] == port["protocol"])
            assert slice_port == {"name": port["name"], "port": target,
                                  "protocol": port["protocol"]}
            assert any(c["containerPort"] == target for c in container_ports)
    headless = index[("Service", "shop", "redis-cart")]
    assert headless["spec"]["clusterIP"] == "None"
    frontend = index[("Service", "shop", "frontend")]["spec"]["ports"][0]
    assert (frontend["port"], frontend["targetPort"]) == (80, "http")
    payments = index[("Service", "payments", "payments-api")]["spec"]["ports"][0]
    assert (payments["port"], payments["targetPort"]) == (443, 8443)
    dns = index[("Service", "kube-system", "kube-dns")]["spec"]
    assert dns["clusterIP"] == "10.96.0.10"
    assert {(p["port"], p["protocol"], p["targetPort"]) for p in dns["ports"]} >= {
        (53, "UDP", "dns"), (53, "TCP", "dns-tcp")}


def _owner_of_address(items: list[dict[str, Any]], ip: str) -> str:
    index = _index(items)
    for pod in _of(items, "Pod"):
        if pod["status"]["podIP"] == ip and not pod["spec"].get("hostNetwork"):
            top = _top_owner(index, pod)
            return f"{top['kind']} {top['metadata']['namespace']}/{top['metadata']['name']}"
    for svc in _of(items, "Service"):
        if svc["spec"]["clusterIP"] == ip:
            return f"Service {svc['metadata']['namespace']}/{svc['metadata']['name']}"
    for node in _of(items, "Node"):
        if {"address": ip, "type": "InternalIP"} in node["status"]["addresses"]:
            return f"Node {node['metadata']['name']}"
    for eps in _of(items, "EndpointSlice"):
        if eps["metadata"]["name"] == "kubernetes" and any(
                ip in e["addresses"] for e in eps["endpoints"]):
            return "apiserver"
    return "external"


def test_every_captured_address_is_explained_by_the_dump(items: list[dict[str, Any]]) -> None:
    for ip, owner in OWNERS.items():
        assert _owner_of_address(items, ip) == owner, ip


def test_dump_carries_no_card_number() -> None:
    text = INVENTORY.read_text(encoding="utf-8")
    assert TEST_PAN not in text
    assert TEST_PAN.replace(" ", "") not in text


# ---------------------------------------------------------------------------------------------
# The committed capture
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def capture() -> CaptureSummary:
    return summarize(CAPTURE)


def test_capture_is_small_pcapng() -> None:
    assert CAPTURE.is_file()
    assert 0 < CAPTURE.stat().st_size < MAX_CAPTURE_BYTES
    assert CAPTURE.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"


def test_capture_has_exactly_the_expected_conversations(capture: CaptureSummary) -> None:
    check_capture(capture)


# ---------------------------------------------------------------------------------------------
# Regenerating (root, network namespaces)
# ---------------------------------------------------------------------------------------------


def _netns_available() -> str | None:
    """None when ``ip netns`` can be used, else why not."""
    if os.geteuid() != 0:
        return "needs root (ip netns)"
    probe = f"segs-probe-{os.getpid()}"
    try:
        made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True,
                              check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"ip netns unavailable: {exc}"
    if made.returncode != 0:
        return f"'ip netns add' failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False, timeout=10)
    return None


@pytest.mark.netns
def test_generator_makes_a_matching_capture(tmp_path: Path) -> None:
    reason = _netns_available()
    if reason:
        pytest.skip(reason)
    prefix = f"segs-{os.getpid()}"  # the generator's stale-namespace sweep spares live pids
    proc = subprocess.run([sys.executable, str(GENERATOR), "--out-dir", str(tmp_path),
                           "--prefix", prefix],
                          capture_output=True, text=True, check=False, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "shop.pcapng"
    assert 0 < out.stat().st_size < MAX_CAPTURE_BYTES
    assert (tmp_path / "shop-inventory.json").read_bytes() == INVENTORY.read_bytes()
    check_capture(summarize(out))
    leftovers = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                               check=False).stdout
    assert f"{prefix}-" not in leftovers
