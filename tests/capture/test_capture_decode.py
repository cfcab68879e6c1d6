"""Link types, IP versions, extension headers, overlays, fragments and truncation."""

from __future__ import annotations

import random
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
    IPv6ExtHdrSegmentRouting,
    fragment6,
)
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
from scapy.layers.sctp import SCTP, SCTPChunkInit
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet

from capture.decode import Decoded, decode
from capture.errors import CaptureError

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


def _skipped_only(path: Path) -> str:
    """What the error says of a capture none of whose packets is a connection (ingest fails
    closed rather than write a flow file of nothing): counts and skip reasons."""
    with pytest.raises(CaptureError) as err:
        records([path])
    prefix = f"{path}: none of the "
    message = str(err.value)
    assert message.startswith(prefix) and message.endswith(": nothing to make flows of")
    return message[len(prefix):-len(": nothing to make flows of")]


def test_unsupported_linktype_and_non_ip_are_skipped(tmp_path: Path) -> None:
    frames = [bytes(Ether(src=MAC_A, dst=MAC_B) / ARP()), ether(tcp(CLIENT, SERVER, 1, 2, "S"))]
    eth = write_pcap(tmp_path / "arp.pcap", timed(frames), 1)
    header, flows, _ = records([eth])
    assert header["stats"]["skipped"] == {"non-ip": 1}
    assert header["stats"]["packets"] == 2
    assert len(flows) == 1
    wifi = write_pcap(tmp_path / "wifi.pcap", timed([b"\x08\x00" + bytes(30)]), 105)
    assert _skipped_only(wifi) == (
        "1 packet read is a connection (skipped unsupported-linktype: 1)")


def test_unsupported_ip_protocol_is_skipped(tmp_path: Path) -> None:
    esp = IP(src=CLIENT, dst=SERVER, proto=50) / bytes(40)
    igmp = IP(src=CLIENT, dst="224.0.0.22", proto=2) / bytes(8)
    pptp = IP(src=CLIENT, dst=SERVER, proto=47) / (b"\x30\x81\x88\x0b" + bytes(12))  # GRE v1
    path = write_pcap(tmp_path / "p.pcap", timed([ether(esp), ether(igmp), ether(pptp)]))
    assert _skipped_only(path) == (
        "3 packets read is a connection (skipped unsupported-protocol: 3)")


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


def _datagrams(count: int, size: int = 4000) -> list[list[Packet]]:
    """The fragments of ``count`` UDP datagrams, 5 fragments each (scapy's fragment())."""
    return [fragment(IP(src=CLIENT, dst=SERVER, id=100 + k) / UDP(sport=40000 + k, dport=5000)
                     / bytes(size), fragsize=1000) for k in range(count)]


@pytest.mark.parametrize("order", ["reversed", "last-first-middle", "interleaved", "shuffled"])
@pytest.mark.parametrize("fast", [True, False], ids=["own-reader", "scapy-reader"])
def test_fragments_count_in_any_order(tmp_path: Path, order: str, fast: bool) -> None:
    """Fragments that come before their datagram's first one wait for it; those after its last
    one still find it. Every fragment counts, to its own flow."""
    datagrams = _datagrams(10)
    assert {len(d) for d in datagrams} == {5}
    if order == "reversed":  # as a reassembling middlebox or a bonded link may deliver them
        frames = [f for d in datagrams for f in reversed(d)]
    elif order == "last-first-middle":
        frames = [f for d in datagrams for f in (d[-1], d[0], *d[1:-1])]
    elif order == "interleaved":
        frames = [d[i] for i in (4, 2, 0, 3, 1) for d in datagrams]
    else:
        frames = [f for d in datagrams for f in d]
        random.Random(4).shuffle(frames)
    path = write_pcap(tmp_path / "frag.pcap", timed([ether(f) for f in frames]))
    header, flows, _ = records([path], fast=fast)
    assert header["stats"]["packets"] == 50
    assert header["stats"]["skipped"] == {}
    assert sorted((f["client_port"], f["packets_to_server"], f["bytes_to_server"])
                  for f in flows) == [(40000 + k, 5, sum(len(bytes(f)) for f in d))
                                      for k, d in enumerate(datagrams)]


def test_fragments_whose_first_never_comes_are_unmatched(tmp_path: Path) -> None:
    datagrams = _datagrams(3)
    frames = [*datagrams[0], *datagrams[1][1:], *datagrams[2][2:]]  # no first fragment of two
    path = write_pcap(tmp_path / "frag.pcap", timed([ether(f) for f in frames]))
    header, flows, _ = records([path])
    assert header["stats"]["skipped"] == {"fragment-unmatched": 4 + 3}
    assert [f["packets_to_server"] for f in flows] == [5]
    assert header["stats"]["packets"] == 5 + 4 + 3


def test_fragments_waiting_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At most MAX_PENDING_FRAGMENTS wait; the oldest datagram's are given up first (and
    counted as unmatched)."""
    import capture.table

    monkeypatch.setattr(capture.table, "MAX_PENDING_FRAGMENTS", 6)
    d0, d1 = _datagrams(2)
    # d0's four later fragments wait, then d1's: the seventh to wait pushes out d0's.
    frames = [*d0[1:], *d1[1:], d0[0], d1[0]]
    path = write_pcap(tmp_path / "frag.pcap", timed([ether(f) for f in frames]))
    header, flows, _ = records([path])
    assert header["stats"]["skipped"] == {"fragment-unmatched": 4}
    assert sorted((f["client_port"], f["packets_to_server"]) for f in flows) == [
        (40000, 1), (40001, 5)]


def test_fragments_of_a_datagram_are_matched_for_the_reassembly_time(tmp_path: Path) -> None:
    """RFC 8200 section 4.5: a fragment more than 60 s after its datagram's first one is not
    that datagram's (the IP identification may have come round again)."""
    frags = _datagrams(1)[0]
    frames = [(T0, ether(frags[0])), (T0 + 1, ether(frags[1])), (T0 + 61, ether(frags[2]))]
    header, flows, _ = records([write_pcap(tmp_path / "late.pcap", frames)])
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
    assert _skipped_only(path) == (f"{len(pkts)} packets read is a connection"
                                   f" (skipped truncated: {len(pkts)})")


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


# -- loopback headers holding an Ethernet type -------------------------------------------------


@pytest.mark.parametrize(
    ("linktype", "header", "v6"),
    [
        (0, struct.pack("<I", 0x0800), False),  # written in the (little-endian) host's order
        (0, struct.pack(">I", 0x0800), False),  # by a big-endian host
        (0, struct.pack("<I", 0x86DD), True),
        (0, struct.pack(">I", 0x86DD), True),
        (108, struct.pack(">I", 0x0800), False),
        (108, struct.pack(">I", 0x86DD), True),
        (0, struct.pack("<I", 2 << 16), False),  # IRIX: the family in the upper half
    ],
    ids=["null-le-ipv4", "null-be-ipv4", "null-le-ipv6", "null-be-ipv6", "loop-ipv4",
         "loop-ipv6", "null-irix"],
)
@pytest.mark.parametrize("fast", [True, False], ids=["own-reader", "scapy-reader"])
def test_null_header_with_an_ethernet_type(tmp_path: Path, linktype: int, header: bytes,
                                           v6: bool, fast: bool) -> None:
    """Some BSD / macOS captures put an Ethernet type, not an address family, in the 4-byte
    NULL / LOOP header (Wireshark's packet-null.c reads both)."""
    pkts = (handshake_flow("fd00::1", "fd00::2", 40000, 443, v6=True) if v6
            else handshake_flow())
    path = write_pcap(tmp_path / "null.pcap", timed([header + bytes(p) for p in pkts]), linktype)
    header_, flows, _ = records([path], fast=fast)
    assert header_["stats"]["skipped"] == {}
    (flow,) = flows
    assert (flow["server_port"], flow["handshake"], flow["packets_to_server"]) == (443, True, 5)


def test_null_header_with_another_value_is_not_ip(tmp_path: Path) -> None:
    frames = [struct.pack("<I", 0x0806) + bytes(28), struct.pack("<I", 7) + bytes(40)]  # ARP
    assert _skipped_only(write_pcap(tmp_path / "n.pcap", timed(frames), 0)) == (
        "2 packets read is a connection (skipped non-ip: 2)")


# -- IPv6 routing headers: the server is the final destination ---------------------------------

FINAL = "fd00::99"
HOPS = ["fd00::a1", "fd00::a2"]


def _rpl_header(nh: int, segments: list[str], left: int, dst: str, cmpr: int) -> bytes:
    """An RFC 6554 source routing header (type 3): addresses with their first ``cmpr`` bytes
    (those they share with the destination address) left out, padded to 8 bytes."""
    import ipaddress

    assert all(ipaddress.IPv6Address(a).packed[:cmpr] == ipaddress.IPv6Address(dst).packed[:cmpr]
               for a in segments)
    body = b"".join(ipaddress.IPv6Address(a).packed[cmpr:] for a in segments)
    pad = -(len(body) + 8) % 8
    body += bytes(pad)
    hdr_len = (8 + len(body)) // 8 - 1
    return bytes([nh, hdr_len, 3, left, cmpr << 4 | cmpr, pad << 4, 0, 0]) + body


def _routed(kind: str, src: str, sport: int, flags: str, payload: bytes = b"") -> Packet:
    """A client -> server packet on its way to FINAL through HOPS (first hop as destination)."""
    segment = TCP(sport=sport, dport=443, flags=flags, seq=1000) / payload
    if kind == "type0":
        return (IPv6(src=src, dst=HOPS[0])
                / IPv6ExtHdrRouting(type=0, segleft=2, addresses=[HOPS[1], FINAL]) / segment)
    if kind == "type2":  # Mobile IPv6: the care-of address, then the home address
        return (IPv6(src=src, dst=HOPS[0])
                / IPv6ExtHdrRouting(type=2, segleft=1, addresses=[FINAL]) / segment)
    if kind == "type3":
        rpl = _rpl_header(6, [HOPS[1], FINAL], 2, HOPS[0], cmpr=8)
        return IPv6(src=src, dst=HOPS[0], nh=43) / rpl / segment
    if kind == "type4":  # segment routing: the segment list in reverse, the final one first
        return (IPv6(src=src, dst=HOPS[0])
                / IPv6ExtHdrSegmentRouting(segleft=2, lastentry=2,
                                           addresses=[FINAL, HOPS[1], HOPS[0]]) / segment)
    assert kind == "arrived"  # segments left 0: the destination address is the final one
    return (IPv6(src=src, dst=FINAL)
            / IPv6ExtHdrRouting(type=0, segleft=0, addresses=[HOPS[0], HOPS[1]]) / segment)


@pytest.mark.parametrize("kind", ["type0", "type2", "type3", "type4", "arrived"])
@pytest.mark.parametrize("fast", [True, False], ids=["own-reader", "scapy-reader"])
def test_ipv6_routing_header_final_destination_is_the_server(tmp_path: Path, kind: str,
                                                            fast: bool) -> None:
    """RFC 8200 section 4.4: with segments left, the destination address is the next hop; the
    conversation is with the final destination, which answers directly."""
    client = "fd00::1"
    pkts = [
        _routed(kind, client, 40000, "S"),
        IPv6(src=FINAL, dst=client) / TCP(sport=443, dport=40000, flags="SA", seq=5000),
        _routed(kind, client, 40000, "A"),
        _routed(kind, client, 40000, "PA", b"hello"),
        IPv6(src=FINAL, dst=client) / TCP(sport=443, dport=40000, flags="PA", seq=5001) / b"hi",
    ]
    path = write_pcap(tmp_path / "rh.pcap", timed([ether(p) for p in pkts]))
    _header, flows, _ = records([path], fast=fast)
    assert [(f["client"], f["server"], f["server_port"], f["handshake"],
             f["packets_to_server"], f["packets_to_client"]) for f in flows] == [
        (client, FINAL, 443, True, 3, 2)]


# -- GRE and ERSPAN ---------------------------------------------------------------------------

OUTER_A, OUTER_B = "192.168.50.1", "192.168.50.2"


def _erspan_ii(frame: bytes) -> bytes:
    """ERSPAN type II header (draft-foschiano-erspan-03 section 4.2): version 1, VLAN 0, COS 0,
    encapsulation 0, T 0, session 7; reserved, index 0."""
    return struct.pack(">HHI", 0x1000, 7, 0) + frame


def _erspan_iii(frame: bytes, *, ip_only: bool = False, optional: bool = False) -> bytes:
    """ERSPAN type III header (section 4.3): version 2, session 7, time stamp, SGT, then
    P / frame type (0 Ethernet, 2 IP) / hardware id, and D / Gra / O; the 8-byte
    platform-specific subheader when O is set."""
    frame_type = 2 if ip_only else 0
    head = struct.pack(">HHIHBB", 0x2000, 7, 123456, 0, frame_type << 2, 1 if optional else 0)
    return head + (bytes(8) if optional else b"") + frame


def _gre(proto: int, payload: bytes, *, key: bool = False, seq: bool = False,
         checksum: bool = False) -> bytes:
    """A GRE header (RFC 2784 / RFC 2890): C, K, S flags and their 4-byte fields."""
    flags = (0x80 if checksum else 0) | (0x20 if key else 0) | (0x10 if seq else 0)
    fields = (b"\x00\x00\x00\x00" if checksum else b"") + (b"\x00\x00\x30\x39" if key else b"")
    fields += b"\x00\x00\x00\x01" if seq else b""
    return struct.pack(">BBH", flags, 0, proto) + fields + payload


GRE_CASES: dict[str, Callable[[Packet], bytes]] = {
    "ipv4": lambda p: _gre(0x0800, bytes(p)),
    "ipv4-key-seq-checksum": lambda p: _gre(0x0800, bytes(p), key=True, seq=True, checksum=True),
    "teb-ethernet": lambda p: _gre(0x6558, bytes(Ether(src=MAC_A, dst=MAC_B) / p), key=True),
    "erspan-i": lambda p: _gre(0x88BE, bytes(Ether(src=MAC_A, dst=MAC_B) / p)),
    "erspan-ii": lambda p: _gre(0x88BE, _erspan_ii(bytes(Ether(src=MAC_A, dst=MAC_B)
                                                         / Dot1Q(vlan=9) / p)), seq=True),
    "erspan-iii": lambda p: _gre(0x22EB, _erspan_iii(bytes(Ether(src=MAC_A, dst=MAC_B) / p)),
                                 seq=True),
    "erspan-iii-ip-optional": lambda p: _gre(0x22EB, _erspan_iii(bytes(p), ip_only=True,
                                                                 optional=True), seq=True),
}


@pytest.mark.parametrize("case", sorted(GRE_CASES))
@pytest.mark.parametrize("outer_v6", [False, True], ids=["over-ipv4", "over-ipv6"])
@pytest.mark.parametrize("fast", [True, False], ids=["own-reader", "scapy-reader"])
def test_gre_and_erspan_are_decapsulated(tmp_path: Path, case: str, outer_v6: bool,
                                         fast: bool) -> None:
    """Port mirroring (ERSPAN) and GRE tunnels: the inner conversation is the flow, the outer
    hosts its ``outer`` addresses, as for VXLAN."""
    outer_a, outer_b = ("fd00:50::1", "fd00:50::2") if outer_v6 else (OUTER_A, OUTER_B)
    frames = []
    for p in handshake_flow():
        inner = GRE_CASES[case](p)
        outer_ip = (IPv6(src=outer_a, dst=outer_b, nh=47) if outer_v6
                    else IP(src=outer_a, dst=outer_b, proto=47))
        frames.append(ether(outer_ip / inner))
    path = write_pcap(tmp_path / "gre.pcap", timed(frames))
    header, flows, _ = records([path], fast=fast)
    assert header["stats"]["skipped"] == {}
    (flow,) = flows
    _check_inner(flow, sorted([outer_a, outer_b]))
    assert flow["bytes_to_server"] + flow["bytes_to_client"] == sum(
        len(bytes(p)) for p in handshake_flow())


def test_gre_with_an_inner_ipv6_packet(tmp_path: Path) -> None:
    pkts = handshake_flow("fd00::1", "fd00::2", 40000, 443, v6=True)
    frames = [ether(IP(src=OUTER_A, dst=OUTER_B, proto=47) / _gre(0x86DD, bytes(p)))
              for p in pkts]
    flow = only_flow([write_pcap(tmp_path / "gre6.pcap", timed(frames))])
    assert (flow["client"], flow["server"], flow["outer"]) == ("fd00::1", "fd00::2",
                                                               [OUTER_A, OUTER_B])


def test_gre_agrees_with_scapys_own_erspan_layers() -> None:
    """The hand-built headers above against scapy's ERSPAN layers, as a second reading."""
    from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III
    from scapy.layers.l2 import GRE

    inner = Ether(src=MAC_A, dst=MAC_B) / tcp(CLIENT, SERVER, 40000, 443, "S")
    for layer in (GRE(seqnum_present=1, proto=0x88BE) / ERSPAN_II(session_id=7) / inner,
                  GRE(seqnum_present=1, proto=0x22EB) / ERSPAN_III(session_id=7) / inner):
        frame = ether(IP(src=OUTER_A, dst=OUTER_B) / layer)
        d = decode(1, frame, len(frame))
        assert isinstance(d, Decoded), layer.summary()
        assert (d.sport, d.dport, d.outer) == (40000, 443, (bytes([192, 168, 50, 1]),
                                                             bytes([192, 168, 50, 2])))


@pytest.mark.parametrize(
    "gre",
    [b"\x00\x00\x88\x0b" + bytes(20),  # PPP (PPTP's) is not decoded
     b"\x40\x00\x08\x00" + bytes(24),  # RFC 1701 source routing
     b"\x10\x00\x88\xbe\x00\x00\x00\x01" + b"\x30\x00" + bytes(30),  # ERSPAN II, version 3
     b"\x00\x00"],  # cut short
)
def test_gre_not_decoded_is_skipped(gre: bytes) -> None:
    frame = ether(IP(src=OUTER_A, dst=OUTER_B, proto=47) / gre)
    assert decode(1, frame, len(frame)) in ("unsupported-protocol", "truncated")


# -- Linux NFLOG -------------------------------------------------------------------------------


def _nflog(packet: bytes, *, order: str = "<", family: int = 2) -> bytes:
    """An NFLOG frame (https://www.tcpdump.org/linktypes/LINKTYPE_NFLOG.html): family, version
    0, resource id (big-endian); TLVs of length (with its 4-byte header) and type in the
    capturing host's byte order, padded to 4 bytes: NFULA_PACKET_HDR (1), NFULA_PREFIX (10),
    NFULA_PAYLOAD (9), NFULA_TIMESTAMP (3) after it."""

    def tlv(ttype: int, value: bytes) -> bytes:
        body = struct.pack(order + "HH", 4 + len(value), ttype) + value
        return body + bytes(-len(body) % 4)

    return (bytes([family, 0]) + struct.pack(">H", 7) + tlv(1, b"\x08\x00\x03\x00")
            + tlv(10, b"drop-log\x00") + tlv(9, packet) + tlv(3, bytes(16)))


@pytest.mark.parametrize("order", ["<", ">"], ids=["little-endian", "big-endian"])
@pytest.mark.parametrize("fast", [True, False], ids=["own-reader", "scapy-reader"])
def test_nflog(tmp_path: Path, order: str, fast: bool) -> None:
    v4 = [_nflog(bytes(p), order=order) for p in handshake_flow()]
    v6 = [_nflog(bytes(p), order=order, family=10)
          for p in handshake_flow("fd00::1", "fd00::2", 41000, 8443, v6=True)]
    path = write_pcap(tmp_path / "nflog.pcap", timed(v4 + v6), 239)
    header, flows, _ = records([path], fast=fast)
    assert header["stats"]["skipped"] == {}
    assert [(f["client"], f["server_port"], f["handshake"], f["packets_to_server"])
            for f in flows] == [(CLIENT, 443, True, 5), ("fd00::1", 8443, True, 5)]
    assert flows[0]["bytes_to_server"] + flows[0]["bytes_to_client"] == sum(
        len(bytes(p)) for p in handshake_flow())


def test_nflog_without_a_payload_or_garbage() -> None:
    no_payload = bytes([2, 0, 0, 7]) + struct.pack("<HH", 8, 1) + b"\x08\x00\x03\x00"
    for frame in (no_payload, bytes([2, 0, 0, 7]), bytes(40), bytes([2, 0, 0, 7]) + b"\xff" * 8):
        assert isinstance(decode(239, frame, len(frame)), str)
    whole = _nflog(bytes(tcp(CLIENT, SERVER, 1, 2, "S")))
    for cut in range(len(whole)):
        assert isinstance(decode(239, whole[:cut], len(whole)), (Decoded, str))
