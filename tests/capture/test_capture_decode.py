"""Link types, IP versions, extension headers, overlays, fragments and truncation."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from capture_pcapbuild import (
    CLIENT,
    MAC_A,
    MAC_B,
    SERVER,
    T0,
    ether,
    handshake_flow,
    only_flow,
    records,
    tcp,
    timed,
    udp,
    write_pcap,
)
from scapy.contrib.geneve import GENEVE
from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    fragment6,
)
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
from scapy.layers.sctp import SCTP, SCTPChunkInit
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet

from capture.decode import Decoded, decode

EXPECTED_V4 = {
    "proto": "TCP",
    "client": CLIENT,
    "server": SERVER,
    "client_port": 40000,
    "server_port": 443,
    "packets_to_server": 5,
    "packets_to_client": 3,
    "direction": "handshake",
    "handshake": True,
    "outer": None,
}

Framer = Callable[[Packet], bytes]

LINK_FRAMERS: dict[str, tuple[int, Framer]] = {
    "ethernet": (1, lambda p: bytes(Ether(src=MAC_A, dst=MAC_B) / p)),
    "ethernet-802.1q": (1, lambda p: bytes(Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=5) / p)),
    "ethernet-qinq": (
        1, lambda p: bytes(Ether(src=MAC_A, dst=MAC_B) / Dot1AD(vlan=100) / Dot1Q(vlan=5) / p)),
    "ethernet-qinq-8100-8100": (
        1, lambda p: bytes(Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=300) / Dot1Q(vlan=50) / p)),
    "linux-sll": (113, lambda p: bytes(CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6,
                                                   src=b"\x02" * 6 + b"\0\0", proto=0x0800) / p)),
    "linux-sll2": (276, lambda p: bytes(CookedLinuxV2(proto=0x0800, ifindex=3, lladdrtype=1,
                                                      lladdrlen=6, src=b"\x02" * 8) / p)),
    "raw-101": (101, bytes),
    "raw-12": (12, bytes),
    "raw-14": (14, bytes),
    "ipv4-228": (228, bytes),
    "null-little-endian": (0, lambda p: struct.pack("<I", 2) + bytes(p)),
    "null-big-endian": (0, lambda p: struct.pack(">I", 2) + bytes(p)),
    "loop-108": (108, lambda p: struct.pack(">I", 2) + bytes(p)),
}


@pytest.mark.parametrize("name", sorted(LINK_FRAMERS))
@pytest.mark.parametrize("fast", [True, False], ids=["own-reader", "scapy-reader"])
def test_link_types_ipv4(tmp_path: Path, name: str, fast: bool) -> None:
    linktype, framer = LINK_FRAMERS[name]
    frames = [framer(p) for p in handshake_flow()]
    path = write_pcap(tmp_path / f"{name}.pcap", timed(frames), linktype)
    flow = only_flow([path], fast=fast)
    assert {k: flow[k] for k in EXPECTED_V4} == EXPECTED_V4
    # Bytes are IP total lengths, whatever the link header.
    ip_bytes = [len(bytes(p)) for p in handshake_flow()]
    assert flow["bytes_to_server"] + flow["bytes_to_client"] == sum(ip_bytes)


@pytest.mark.parametrize(
    ("linktype", "framer"),
    [
        (229, bytes),
        (101, bytes),
        (1, lambda p: bytes(Ether(src=MAC_A, dst=MAC_B) / p)),
        (276, lambda p: bytes(CookedLinuxV2(proto=0x86DD, lladdrtype=1, lladdrlen=6) / p)),
        (0, lambda p: struct.pack("<I", 30) + bytes(p)),  # AF_INET6 on macOS
        (0, lambda p: struct.pack("<I", 24) + bytes(p)),  # AF_INET6 on NetBSD / OpenBSD
        (108, lambda p: struct.pack(">I", 28) + bytes(p)),  # AF_INET6 on FreeBSD
    ],
    ids=["ipv6-229", "raw-101", "ethernet", "sll2", "null-macos", "null-bsd", "loop-freebsd"],
)
def test_link_types_ipv6(tmp_path: Path, linktype: int, framer: Framer) -> None:
    pkts = handshake_flow("fd00::1", "fd00::2", 40000, 5432, v6=True,
                          request=b"x" * 300, response=b"y" * 1000)
    path = write_pcap(tmp_path / "v6.pcap", timed([framer(p) for p in pkts]), linktype)
    flow = only_flow([path])
    assert flow == only_flow([path], fast=False)
    assert (flow["client"], flow["client_port"], flow["server"], flow["server_port"]) == (
        "fd00::1", 40000, "fd00::2", 5432)
    assert flow["bytes_to_server"] + flow["bytes_to_client"] == sum(len(bytes(p)) for p in pkts)


def test_unsupported_linktype_and_non_ip_are_skipped(tmp_path: Path) -> None:
    frames = [bytes(Ether(src=MAC_A, dst=MAC_B) / ARP()), ether(tcp(CLIENT, SERVER, 1, 2, "S"))]
    eth = write_pcap(tmp_path / "arp.pcap", timed(frames), 1)
    header, flows, _ = records([eth])
    assert header["stats"]["skipped"] == {"non-ip": 1}
    assert header["stats"]["packets"] == 2
    assert len(flows) == 1
    wifi = write_pcap(tmp_path / "wifi.pcap", timed([b"\x08\x00" + bytes(30)]), 105)
    header, flows, _ = records([wifi])
    assert header["stats"]["skipped"] == {"unsupported-linktype": 1}
    assert flows == []


def test_unsupported_ip_protocol_is_skipped(tmp_path: Path) -> None:
    gre = IP(src=CLIENT, dst=SERVER, proto=47) / (b"\x00\x00\x08\x00" + bytes(IP()))
    igmp = IP(src=CLIENT, dst="224.0.0.22", proto=2) / bytes(8)
    path = write_pcap(tmp_path / "p.pcap", timed([ether(gre), ether(igmp)]))
    header, flows, _ = records([path])
    assert header["stats"]["skipped"] == {"unsupported-protocol": 2}
    assert flows == []


def test_ipv6_extension_headers_are_skipped(tmp_path: Path) -> None:
    def v6(src: str, dst: str, sport: int, dport: int, flags: str) -> Packet:
        return (IPv6(src=src, dst=dst) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
                / IPv6ExtHdrRouting(addresses=[]) / IPv6ExtHdrDestOpt()
                / TCP(sport=sport, dport=dport, flags=flags))

    pkts = [v6("fd00::1", "fd00::2", 40000, 80, "S"), v6("fd00::2", "fd00::1", 80, 40000, "SA")]
    path = write_pcap(tmp_path / "ext.pcap", timed([ether(p) for p in pkts]))
    flow = only_flow([path])
    assert (flow["client_port"], flow["server_port"], flow["handshake"]) == (40000, 80, True)
    assert flow["bytes_to_server"] == len(bytes(pkts[0]))


def test_ipv4_fragments_count_to_the_flow_of_the_first(tmp_path: Path) -> None:
    datagram = IP(src=CLIENT, dst=SERVER, id=4242) / UDP(sport=40000, dport=5000) / bytes(3000)
    frags = fragment(datagram, fragsize=1000)
    assert len(frags) == 4
    path = write_pcap(tmp_path / "frag.pcap", timed([ether(f) for f in frags]))
    header, flows, _ = records([path])
    assert header["stats"]["skipped"] == {}
    (flow,) = flows
    assert (flow["client_port"], flow["server_port"]) == (40000, 5000)
    assert flow["packets_to_server"] == 4
    assert flow["bytes_to_server"] == sum(len(bytes(f)) for f in frags)


def test_ipv4_fragments_before_their_first_are_skipped(tmp_path: Path) -> None:
    datagram = IP(src=CLIENT, dst=SERVER, id=7) / UDP(sport=40000, dport=5000) / bytes(2500)
    frags = fragment(datagram, fragsize=1000)
    order = [frags[2], frags[0], frags[1]]  # the last fragment arrives first: no flow to match
    path = write_pcap(tmp_path / "frag.pcap", timed([ether(f) for f in order]))
    header, flows, _ = records([path])
    assert header["stats"]["skipped"] == {"fragment-unmatched": 1}
    assert flows[0]["packets_to_server"] == 2


def test_ipv6_fragments(tmp_path: Path) -> None:
    datagram = (IPv6(src="fd00::1", dst="fd00::2") / IPv6ExtHdrFragment(id=99)
                / UDP(sport=40000, dport=5000) / bytes(3000))
    frags = fragment6(datagram, 1280)
    path = write_pcap(tmp_path / "frag6.pcap", timed([ether(f) for f in frags]))
    header, flows, _ = records([path])
    assert header["stats"]["skipped"] == {}
    (flow,) = flows
    assert (flow["client_port"], flow["server_port"]) == (40000, 5000)
    assert flow["packets_to_server"] == len(frags) == 3
    assert flow["bytes_to_server"] == sum(len(bytes(f)) for f in frags)


@pytest.mark.parametrize("fast", [True, False], ids=["own-reader", "scapy-reader"])
def test_short_snaplen_uses_ip_total_length(tmp_path: Path, fast: bool) -> None:
    pkts = handshake_flow(request=bytes(1000), response=bytes(1400))
    frames = timed([ether(p) for p in pkts])
    path = write_pcap(tmp_path / "snap.pcap", frames, snaplen=14 + 20 + 20)
    flow = only_flow([path], fast=fast)
    assert flow["bytes_to_server"] + flow["bytes_to_client"] == sum(len(bytes(p)) for p in pkts)
    assert (flow["client_port"], flow["server_port"], flow["handshake"]) == (40000, 443, True)


def test_snaplen_with_ports_but_no_flags(tmp_path: Path) -> None:
    pkts = handshake_flow(cport=40000, sport=443)
    path = write_pcap(tmp_path / "snap.pcap", timed([ether(p) for p in pkts]), snaplen=14 + 24)
    flow = only_flow([path])
    # Ports are captured, TCP flags are not: the start cannot be told apart.
    assert (flow["client_port"], flow["server_port"]) == (40000, 443)
    assert flow["direction"] == "port-heuristic"
    assert flow["bytes_to_server"] + flow["bytes_to_client"] == sum(len(bytes(p)) for p in pkts)


def test_snaplen_without_ports_is_skipped(tmp_path: Path) -> None:
    pkts = handshake_flow()
    path = write_pcap(tmp_path / "snap.pcap", timed([ether(p) for p in pkts]), snaplen=14 + 20)
    header, flows, _ = records([path])
    assert flows == []
    assert header["stats"]["skipped"] == {"truncated": len(pkts)}


def _check_inner(flow: dict[str, object], outer: list[str]) -> None:
    assert (flow["client"], flow["client_port"], flow["server"], flow["server_port"]) == (
        CLIENT, 40000, SERVER, 443)
    assert flow["direction"] == "handshake"
    assert flow["outer"] == outer


@pytest.mark.parametrize("port", [4789, 8472])
def test_vxlan_is_decapsulated(tmp_path: Path, port: int) -> None:
    inner = handshake_flow()
    frames = []
    for i, p in enumerate(inner):
        a, b = ("192.168.1.10", "192.168.1.20") if i % 2 == 0 else ("192.168.1.20", "192.168.1.10")
        frames.append(ether(IP(src=a, dst=b) / UDP(sport=50000 + i, dport=port)
                            / VXLAN(vni=1) / Ether(src=MAC_A, dst=MAC_B) / p))
    path = write_pcap(tmp_path / "vxlan.pcap", timed(frames))
    flow = only_flow([path])  # the underlay UDP flows are not reported
    _check_inner(flow, ["192.168.1.10", "192.168.1.20"])
    assert flow["bytes_to_server"] + flow["bytes_to_client"] == sum(len(bytes(p)) for p in inner)


def test_geneve_is_decapsulated(tmp_path: Path) -> None:
    frames = [ether(IP(src="192.168.1.10", dst="192.168.1.20") / UDP(sport=50000, dport=6081)
                    / GENEVE(proto=0x6558, vni=9) / Ether(src=MAC_A, dst=MAC_B) / p)
              for p in handshake_flow()]
    flow = only_flow([write_pcap(tmp_path / "geneve.pcap", timed(frames))])
    _check_inner(flow, ["192.168.1.10", "192.168.1.20"])


def test_ip_in_ip_and_ipv6_in_ipv4_are_decapsulated(tmp_path: Path) -> None:
    v4 = [ether(IP(src="172.16.0.1", dst="172.16.0.2", proto=4) / p) for p in handshake_flow()]
    flow = only_flow([write_pcap(tmp_path / "ipip.pcap", timed(v4))])
    _check_inner(flow, ["172.16.0.1", "172.16.0.2"])
    v6 = [ether(IP(src="172.16.0.1", dst="172.16.0.2", proto=41) / p)
          for p in handshake_flow("fd00::1", "fd00::2", 40000, 443, v6=True)]
    flow6 = only_flow([write_pcap(tmp_path / "6in4.pcap", timed(v6))])
    assert (flow6["client"], flow6["server"], flow6["outer"]) == (
        "fd00::1", "fd00::2", ["172.16.0.1", "172.16.0.2"])


def test_vxlan_lookalike_on_port_4789_stays_udp(tmp_path: Path) -> None:
    # Not a VXLAN header (flag I not set): an ordinary UDP flow to port 4789.
    frames = [ether(udp(CLIENT, SERVER, 40000, 4789, bytes(16)))]
    flow = only_flow([write_pcap(tmp_path / "u.pcap", timed(frames))])
    assert (flow["proto"], flow["server_port"], flow["outer"]) == ("UDP", 4789, None)


def test_sctp(tmp_path: Path) -> None:
    pkts = [IP(src=CLIENT, dst=SERVER) / SCTP(sport=40000, dport=38412) / SCTPChunkInit(),
            IP(src=SERVER, dst=CLIENT) / SCTP(sport=38412, dport=40000)]
    flow = only_flow([write_pcap(tmp_path / "sctp.pcap", timed([ether(p) for p in pkts]))])
    assert (flow["proto"], flow["client"], flow["client_port"], flow["server_port"]) == (
        "SCTP", CLIENT, 40000, 38412)
    assert flow["direction"] == "first-packet"


def test_icmp_and_icmpv6_echo(tmp_path: Path) -> None:
    from scapy.layers.inet import ICMP

    pkts = [
        IP(src=CLIENT, dst=SERVER) / ICMP(type=8),
        IP(src=SERVER, dst=CLIENT) / ICMP(type=0),
        IPv6(src="fd00::1", dst="fd00::2") / ICMPv6EchoRequest(),
        IPv6(src="fd00::2", dst="fd00::1") / ICMPv6EchoReply(),
    ]
    _h, flows, _ = records([write_pcap(tmp_path / "icmp.pcap", timed([ether(p) for p in pkts]))])
    by_proto = {f["proto"]: f for f in flows}
    assert by_proto["ICMP"]["client"] == CLIENT
    assert by_proto["ICMP"]["client_port"] is None
    assert by_proto["ICMP"]["server_port"] is None
    assert by_proto["ICMPv6"]["client"] == "fd00::1"
    assert (by_proto["ICMP"]["packets_to_server"], by_proto["ICMP"]["packets_to_client"]) == (1, 1)


def test_icmp_echo_reply_first_is_flipped(tmp_path: Path) -> None:
    from scapy.layers.inet import ICMP

    pkts = [IP(src=SERVER, dst=CLIENT) / ICMP(type=0)]  # the request was not captured
    flow = only_flow([write_pcap(tmp_path / "icmp.pcap", timed([ether(p) for p in pkts]))])
    assert (flow["client"], flow["server"], flow["direction"]) == (CLIENT, SERVER,
                                                                   "port-heuristic")


def test_tso_zero_total_length_uses_wire_length() -> None:
    pkt = bytearray(bytes(IP(src=CLIENT, dst=SERVER) / TCP(sport=1, dport=2) / bytes(100)))
    pkt[2:4] = b"\x00\x00"  # a GSO segment captured on the sending host
    d = decode(101, bytes(pkt), len(pkt))
    assert not isinstance(d, str)
    assert d.iplen == len(pkt)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x45", bytes(20), b"\x4f" + bytes(19), b"\x60" + bytes(10), b"\x45\x00\x00\x10" +
     bytes(16), bytes(Ether(src=MAC_A, dst=MAC_B, type=0x8100))],
)
def test_decode_never_raises_on_garbage(data: bytes) -> None:
    for linktype in (0, 1, 101, 113, 276, 229):
        assert isinstance(decode(linktype, data, len(data)), str)


def test_decode_fuzz_prefixes() -> None:
    """Every prefix of real frames, and single-byte corruptions, decode without an exception."""
    frames = [
        ether(tcp(CLIENT, SERVER, 1, 2, "S")),
        ether(IP(src="192.168.1.10", dst="192.168.1.20") / UDP(sport=1, dport=4789) / VXLAN()
              / Ether() / IPv6() / IPv6ExtHdrFragment() / UDP()),
        ether(IP(proto=4) / IP(proto=41) / IPv6() / IPv6ExtHdrHopByHop() / TCP()),
        ether(IP() / UDP(dport=6081) / GENEVE(proto=0x6558) / Ether() / Dot1Q() / IP() / TCP()),
    ]
    for frame in frames:
        assert isinstance(decode(1, frame, len(frame)), Decoded)
        for cut in range(len(frame) + 1):
            assert isinstance(decode(1, frame[:cut], len(frame)), (Decoded, str))
        for i in range(len(frame)):
            for value in (0x00, 0xFF, 0x45, 0x60):
                mutated = frame[:i] + bytes([value]) + frame[i + 1 :]
                assert isinstance(decode(1, mutated, len(mutated)), (Decoded, str))


def test_time_stamps(tmp_path: Path) -> None:
    frames = [(T0 + 0.25, ether(tcp(CLIENT, SERVER, 40000, 80, "S"))),
              (T0 + 1.5, ether(tcp(SERVER, CLIENT, 80, 40000, "SA")))]
    flow = only_flow([write_pcap(tmp_path / "t.pcap", frames)])
    assert (flow["first_seen"], flow["last_seen"]) == (T0 + 0.25, T0 + 1.5)
