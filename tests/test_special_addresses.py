"""Special addresses are classified, never "external" (issue 12, item 7).

Starts from the reproduction: a live capture on a node bridge holds IPv6 link-local and
multicast traffic (``fe80::1`` soliciting routers at ``ff02::2``); those addresses became
external peers in the graph, the policies and the segmentation test. Here a second capture,
made by the test with scapy, adds to the bundled sample what a bridge sees besides pod
traffic: an IPv6 router solicitation, a DHCP discover from ``0.0.0.0`` to ``255.255.255.255``,
an mDNS query to ``224.0.0.251`` and a loopback connection; and one link-local address a pod
really uses, the cloud metadata service ``169.254.169.254``, which is kept and named.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6ND_RS, IPv6
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from segmenter import pipeline
from segmenter.cli import main
from segmenter.graph.addresses import AddressClass, address_class, link_local_service
from segmenter.graph.stats import format_stats, graph_stats
from segmenter.planner import Zone
from tests.conftest import REPO

SAMPLE = REPO / "sample"
T0 = 1_747_407_400.0
PAYMENTS_API = "10.244.1.50"  # a payments-api pod of the sample
FRONTEND = "10.244.1.10"
SPECIAL = ("fe80::1", "ff02::2", "0.0.0.0", "255.255.255.255", "224.0.0.251", "127.0.0.1")


def _bridge_capture(path: Path) -> str:
    """What tcpdump on a node's bridge records besides the pods' conversations."""
    frames = [
        Ether(dst="33:33:00:00:00:02") / IPv6(src="fe80::1", dst="ff02::2", hlim=255)
        / ICMPv6ND_RS(),
        Ether(dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67) / BOOTP(op=1) / DHCP(options=[("message-type", "discover"),
                                                                 "end"]),
        Ether(dst="01:00:5e:00:00:fb") / IP(src=FRONTEND, dst="224.0.0.251")
        / UDP(sport=5353, dport=5353) / bytes(12),
        Ether() / IP(src="127.0.0.1", dst="127.0.0.1") / TCP(sport=41000, dport=8080, flags="S"),
        Ether() / IP(src="127.0.0.1", dst="127.0.0.1") / TCP(sport=8080, dport=41000, flags="SA"),
        # payments-api asks the instance metadata service for credentials
        Ether() / IP(src=PAYMENTS_API, dst="169.254.169.254")
        / TCP(sport=42000, dport=80, flags="S"),
        Ether() / IP(src="169.254.169.254", dst=PAYMENTS_API)
        / TCP(sport=80, dport=42000, flags="SA"),
    ]
    for i, frame in enumerate(frames):
        frame.time = T0 + i * 0.01
    wrpcap(str(path), frames)
    return str(path)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> pipeline.RunResult:
    folder = tmp_path_factory.mktemp("special")
    bridge = _bridge_capture(folder / "bridge.pcap")
    return pipeline.run([str(SAMPLE / "shop.pcapng"), bridge],
                        [str(SAMPLE / "shop-inventory.json")], folder / "out",
                        config=str(SAMPLE / "segmenter.yaml"))


def test_special_addresses_are_no_graph_node(run: pipeline.RunResult) -> None:
    nodes = set(run.graph)
    assert not [n for n in nodes if any(n.endswith(":" + a) for a in SPECIAL)]
    # four flows; the DHCP discover counts under both of its ends' classes
    assert run.graph.graph["special_addresses"] == {"flows": 4, "by_class": {
        "link-local": {"flows": 1, "addresses": ["fe80::1"]},
        "multicast": {"flows": 2, "addresses": ["224.0.0.251", "ff02::2"]},
        "broadcast": {"flows": 1, "addresses": ["255.255.255.255"]},
        "unspecified": {"flows": 1, "addresses": ["0.0.0.0"]},
        "loopback": {"flows": 1, "addresses": ["127.0.0.1"]},
    }}


def test_the_metadata_address_is_kept_and_named(run: pipeline.RunResult) -> None:
    attrs = run.graph.nodes["external:169.254.169.254"]
    assert attrs["kind"] == "external"
    assert attrs["label"] == "cloud instance metadata service (169.254.169.254)"
    assert attrs["link_local_service"] == "cloud-metadata"
    assert run.graph.has_edge("payments/Deployment/payments-api", "external:169.254.169.254")


def test_left_out_of_policies_with_a_count_in_the_summary(
    run: pipeline.RunResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = Path(run.out_dirs["kubernetes"]).parent
    written = "\n".join(p.read_text() for p in out.rglob("*.yaml"))
    for address in ("fe80::", "ff02::", "224.0.0.251", "255.255.255.255", "0.0.0.0/32",
                    "127.0.0.1"):
        assert address not in written, address
    assert "169.254.169.254/32" in written
    assert ("left out of the graph and the policies, no policy names such a peer: 4 flows "
            "(broadcast 1: 255.255.255.255; link-local 1: fe80::1; loopback 1: 127.0.0.1; "
            "multicast 2: 224.0.0.251, ff02::2; unspecified 1: 0.0.0.0)") in run.notes
    # the self-check judges the 61 flows of the sample and the metadata flow, nothing else
    assert {v.flows for v in run.verdicts.values()} == {62}
    assert all(r.allowed for v in run.verdicts.values() for r in v)
    # graph --stats says the same
    flows = str(out / "flows.jsonl")
    assert main(["graph", "--flows", flows, "--inventory", str(SAMPLE / "shop-inventory.json"),
                 "--stats"]) == 0
    assert ("left out (loopback, link-local, multicast, broadcast: no policy peer): 4 flows "
            "(broadcast 1: 255.255.255.255; link-local 1: fe80::1; loopback 1: 127.0.0.1; "
            "multicast 2: 224.0.0.251, ff02::2; unspecified 1: 0.0.0.0)"
            in capsys.readouterr().out)
    assert graph_stats(run.graph)["special_addresses"]["flows"] == 4


def test_not_in_the_segmentation_test(run: pipeline.RunResult) -> None:
    """The segmentation test probes from the plan's general and external members."""
    members = {m.node for scope in run.plan.classes for zone in (Zone.EXTERNAL, Zone.GENERAL)
               for m in scope.members(zone)}
    assert "external:169.254.169.254" in members
    assert not [n for n in members if any(n.endswith(":" + a) for a in SPECIAL)]


def test_stats_without_special_addresses_say_nothing(run: pipeline.RunResult) -> None:
    graph = run.graph.copy()
    del graph.graph["special_addresses"]
    assert "left out" not in format_stats(graph_stats(graph))


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1", AddressClass.LOOPBACK),
        ("::1", AddressClass.LOOPBACK),
        ("169.254.1.1", AddressClass.LINK_LOCAL),
        ("fe80::1", AddressClass.LINK_LOCAL),
        ("224.0.0.251", AddressClass.MULTICAST),
        ("239.255.255.250", AddressClass.MULTICAST),
        ("ff02::1:ff00:1", AddressClass.MULTICAST),
        ("255.255.255.255", AddressClass.BROADCAST),
        ("0.0.0.0", AddressClass.UNSPECIFIED),
        ("::", AddressClass.UNSPECIFIED),
        ("::ffff:127.0.0.1", AddressClass.LOOPBACK),
        ("10.244.1.10", None),
        ("203.0.113.10", None),
        ("2001:db8::1", None),
        ("fd00:ec2::254", None),  # ULA: the metadata service, named below
        ("not an address", None),
    ],
)
def test_address_classes(address: str, expected: AddressClass | None) -> None:
    assert address_class(address) is expected


@pytest.mark.parametrize(
    ("address", "port", "slug"),
    [
        ("169.254.169.254", 80, "cloud-metadata"),
        ("fd00:ec2::254", 80, "cloud-metadata"),
        ("fd00:ec2:0:0::254", 80, "cloud-metadata"),
        ("169.254.169.253", 53, "cloud-dns"),
        ("169.254.170.23", 80, "eks-pod-identity"),
        ("169.254.20.10", 53, "node-local-dns"),
        ("169.254.1.2", 53, "link-local-dns"),
        ("169.254.20.10", 8080, None),
        ("fe80::1", None, None),
        ("10.96.0.10", 53, None),
    ],
)
def test_link_local_services(address: str, port: int | None, slug: str | None) -> None:
    service = link_local_service(address, port)
    assert (service.slug if service is not None else None) == slug
