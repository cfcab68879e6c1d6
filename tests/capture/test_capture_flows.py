"""Folding: client / server direction, counts, record boundaries, DNS answers, TLS SNI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from capture_pcapbuild import (
    CLIENT,
    SERVER,
    T0,
    client_hello,
    ether,
    handshake_flow,
    only_flow,
    records,
    tcp,
    timed,
    udp,
    write_pcap,
)
from scapy.layers.dns import DNS, DNSQR, DNSRR, dns_compress
from scapy.layers.inet import UDP
from scapy.packet import Packet

from capture.dns import parse_response
from capture.tls import probe_client_hello


def _pcap(tmp_path: Path, pkts: list[Packet], name: str = "c.pcap", step: float = 0.001) -> Path:
    return write_pcap(tmp_path / name, timed([ether(p) for p in pkts], step=step))


def _ends(flow: dict[str, Any]) -> tuple[str, int | None, str, int | None, str]:
    return (flow["client"], flow["client_port"], flow["server"], flow["server_port"],
            flow["direction"])


# -- direction ---------------------------------------------------------------------------------


def test_syn_sender_is_the_client(tmp_path: Path) -> None:
    flow = only_flow([_pcap(tmp_path, handshake_flow(sport=5432))])
    assert _ends(flow) == (CLIENT, 40000, SERVER, 5432, "handshake")
    assert flow["handshake"] is True
    assert (flow["packets_to_server"], flow["packets_to_client"]) == (5, 3)
    pkts = handshake_flow(sport=5432)
    assert flow["bytes_to_server"] == sum(len(bytes(p)) for p in pkts if p.src == CLIENT)
    assert flow["bytes_to_client"] == sum(len(bytes(p)) for p in pkts if p.src == SERVER)


def test_syn_ack_receiver_is_the_client(tmp_path: Path) -> None:
    # The capture started after the SYN: the server's SYN-ACK comes first.
    flow = only_flow([_pcap(tmp_path, handshake_flow(sport=5432)[1:])])
    assert _ends(flow) == (CLIENT, 40000, SERVER, 5432, "handshake")
    assert flow["handshake"] is False  # SYN-ACK alone is not the whole handshake


def test_unanswered_syn(tmp_path: Path) -> None:
    flow = only_flow([_pcap(tmp_path, [tcp(CLIENT, SERVER, 40000, 6379, "S")] * 3)])
    assert _ends(flow) == (CLIENT, 40000, SERVER, 6379, "handshake")
    assert (flow["handshake"], flow["packets_to_server"], flow["packets_to_client"]) == (
        False, 3, 0)


@pytest.mark.parametrize(
    ("first_sender_port", "other_port", "server_port"),
    [
        (5432, 41000, 5432),  # the server speaks first; the well-known port is the server's
        (41000, 5432, 5432),
        (50051, 51164, 50051),  # both above 49152: the lower port
        (8080, 3306, 3306),  # both below 49152: ties go to the lower port
    ],
)
def test_port_heuristic_without_handshake(
    tmp_path: Path, first_sender_port: int, other_port: int, server_port: int
) -> None:
    pkts = [
        tcp(SERVER, CLIENT, first_sender_port, other_port, "PA", b"x"),
        tcp(CLIENT, SERVER, other_port, first_sender_port, "A"),
    ]
    flow = only_flow([_pcap(tmp_path, pkts)])
    assert flow["direction"] == "port-heuristic"
    assert flow["server_port"] == server_port
    assert flow["server"] == (SERVER if server_port == first_sender_port else CLIENT)


def test_port_heuristic_equal_ports_first_sender_is_client(tmp_path: Path) -> None:
    pkts = [tcp(SERVER, CLIENT, 7000, 7000, "A"), tcp(CLIENT, SERVER, 7000, 7000, "A")]
    flow = only_flow([_pcap(tmp_path, pkts)])
    assert (flow["client"], flow["direction"]) == (SERVER, "port-heuristic")


def test_udp_first_packet_sender_is_client(tmp_path: Path) -> None:
    pkts = [udp(CLIENT, SERVER, 40000, 8125, b"metric"), udp(SERVER, CLIENT, 8125, 40000, b"ok")]
    flow = only_flow([_pcap(tmp_path, pkts)])
    assert _ends(flow) == (CLIENT, 40000, SERVER, 8125, "first-packet")


def test_udp_reply_first_is_flipped(tmp_path: Path) -> None:
    # The query was not captured: a packet from port 53 to an ephemeral port is a reply.
    pkts = [udp(SERVER, CLIENT, 53, 40000, b"x"), udp(CLIENT, SERVER, 40000, 53, b"y")]
    flow = only_flow([_pcap(tmp_path, pkts)])
    assert _ends(flow) == (CLIENT, 40000, SERVER, 53, "port-heuristic")


def test_udp_between_low_ports_is_not_flipped(tmp_path: Path) -> None:
    flow = only_flow([_pcap(tmp_path, [udp(SERVER, CLIENT, 123, 123, b"ntp")])])
    assert _ends(flow) == (SERVER, 123, CLIENT, 123, "first-packet")
    flow = only_flow([_pcap(tmp_path, [udp(SERVER, CLIENT, 53, 5000, b"x")], "b.pcap")])
    assert flow["direction"] == "first-packet"  # 5000 is not ephemeral


# -- record boundaries -------------------------------------------------------------------------


def test_reopened_connection_starts_a_new_record(tmp_path: Path) -> None:
    # FIN both ways, then a new SYN (a new initial sequence number) on the same 5-tuple.
    pkts = handshake_flow() + handshake_flow(isn=777_000)
    _h, flows, _ = records([_pcap(tmp_path, pkts)])
    assert len(flows) == 2
    assert [f["packets_to_server"] for f in flows] == [5, 5]
    assert flows[0]["last_seen"] < flows[1]["first_seen"]


def test_reset_then_syn_starts_a_new_record(tmp_path: Path) -> None:
    pkts = [
        tcp(CLIENT, SERVER, 40000, 80, "S", seq=1000),
        tcp(SERVER, CLIENT, 80, 40000, "RA"),  # refused
        tcp(CLIENT, SERVER, 40000, 80, "S", seq=2000),  # a new connection: a new ISN
        tcp(SERVER, CLIENT, 80, 40000, "SA"),
    ]
    _h, flows, _ = records([_pcap(tmp_path, pkts)])
    assert [(f["resets"], f["handshake"]) for f in flows] == [(1, False), (0, True)]


@pytest.mark.parametrize("fast", [True, False], ids=["own-reader", "scapy-reader"])
def test_syn_retried_with_its_sequence_number_after_a_reset_is_one_record(
    tmp_path: Path, fast: bool
) -> None:
    """The same connection attempt sent again (the same initial sequence number, RFC 9293
    3.8.1) after a reset -- a middlebox's, or one that crossed the retransmission -- is the
    same flow, however often: not one record per try."""
    pkts = [
        tcp(CLIENT, SERVER, 40000, 80, "S", seq=1000),
        tcp(SERVER, CLIENT, 80, 40000, "RA"),
        tcp(CLIENT, SERVER, 40000, 80, "S", seq=1000),
        tcp(SERVER, CLIENT, 80, 40000, "RA"),
        *handshake_flow(sport=80, isn=1000),
    ]
    (flow,) = records([_pcap(tmp_path, pkts)], fast=fast)[1]
    assert (flow["resets"], flow["handshake"], flow["direction"]) == (2, True, "handshake")
    assert (flow["packets_to_server"], flow["packets_to_client"]) == (2 + 5, 2 + 3)
    # A SYN with the same number from the other end is not that attempt: a new record.
    pkts += [tcp(SERVER, CLIENT, 80, 40000, "S", seq=1000)]
    assert len(records([_pcap(tmp_path, pkts, "b.pcap")], fast=fast)[1]) == 2


def test_syn_retransmission_stays_one_record(tmp_path: Path) -> None:
    pkts = [*[tcp(CLIENT, SERVER, 40000, 80, "S")] * 3, *handshake_flow(sport=80)[1:]]
    flow = only_flow([_pcap(tmp_path, pkts)])
    assert flow["packets_to_server"] == 3 + 4


def test_packets_after_fin_stay_in_the_record(tmp_path: Path) -> None:
    pkts = [*handshake_flow(), tcp(SERVER, CLIENT, 443, 40000, "A")]
    flow = only_flow([_pcap(tmp_path, pkts)])
    assert flow["packets_to_client"] == 4


@pytest.mark.parametrize(("gap", "expected"), [(300.0, 1), (300.001, 2), (3600.0, 2)])
def test_idle_flow_starts_a_new_record(tmp_path: Path, gap: float, expected: int) -> None:
    pkts = [udp(CLIENT, SERVER, 40000, 8125, b"a"), udp(CLIENT, SERVER, 40000, 8125, b"b")]
    frames = [(T0, ether(pkts[0])), (T0 + gap, ether(pkts[1]))]
    for fast in (True, False):
        _h, flows, _ = records([write_pcap(tmp_path / "idle.pcap", frames)], fast=fast)
        assert len(flows) == expected


def test_idle_tcp_keeps_its_direction_knowledge_per_record(tmp_path: Path) -> None:
    first = handshake_flow(close=False)
    later = [tcp(SERVER, CLIENT, 443, 40000, "PA", b"late")]
    frames = [*timed([ether(p) for p in first]), (T0 + 1000, ether(later[0]))]
    _h, flows, _ = records([write_pcap(tmp_path / "idle.pcap", frames)])
    assert [f["direction"] for f in flows] == ["handshake", "port-heuristic"]
    assert flows[1]["client"] == CLIENT  # the lower port (443) is the server's


def test_out_of_order_time_stamps(tmp_path: Path) -> None:
    pkts = [udp(CLIENT, SERVER, 40000, 9000, b"a")] * 3
    frames = [(T0 + 5, ether(pkts[0])), (T0 + 1, ether(pkts[1])), (T0 + 9, ether(pkts[2]))]
    for fast in (True, False):
        flow = only_flow([write_pcap(tmp_path / "ooo.pcap", frames)], fast=fast)
        assert (flow["first_seen"], flow["last_seen"], flow["packets_to_server"]) == (
            T0 + 1, T0 + 9, 3)


# -- DNS ---------------------------------------------------------------------------------------


def _dns_exchange(client: str, server: str, port: int = 53, *, compress: bool = False,
                  tcp_transport: bool = False) -> list[Packet]:
    query = DNS(id=7, rd=1, qd=DNSQR(qname="Api.Shop.Example.com.", qtype="A"))
    answer = DNS(
        id=7, qr=1, rd=1, ra=1,
        qd=DNSQR(qname="Api.Shop.Example.com.", qtype="A"),
        an=[
            DNSRR(rrname="api.shop.example.com.", type="CNAME", rdata="edge.cdn.example.net."),
            DNSRR(rrname="edge.cdn.example.net.", type="CNAME", rdata="e1.cdn.example.net."),
            DNSRR(rrname="e1.cdn.example.net.", type="A", rdata="93.184.216.34"),
            DNSRR(rrname="e1.cdn.example.net.", type="A", rdata="93.184.216.10"),
            DNSRR(rrname="e1.cdn.example.net.", type="AAAA", rdata="2606:2800:220:1::1"),
            DNSRR(rrname="unrelated.example.org.", type="A", rdata="198.51.100.1"),
        ],
    )
    if compress:
        answer = dns_compress(answer)
    if tcp_transport:
        q, a = bytes(query), bytes(answer)
        return [
            tcp(client, server, 40000, port, "S"),
            tcp(server, client, port, 40000, "SA"),
            tcp(client, server, 40000, port, "PA", len(q).to_bytes(2, "big") + q),
            tcp(server, client, port, 40000, "PA", len(a).to_bytes(2, "big") + a),
        ]
    return [udp(client, server, 40000, port, bytes(query)),
            udp(server, client, port, 40000, bytes(answer))]


EXPECTED_DNS = {
    "record": "dns",
    "client": CLIENT,
    "server": "10.96.0.10",
    "name": "api.shop.example.com",
    "answers": ["2606:2800:220:1::1", "93.184.216.10", "93.184.216.34"],
    "cnames": ["edge.cdn.example.net", "e1.cdn.example.net"],
}


@pytest.mark.parametrize(
    ("port", "compress", "tcp_transport"),
    [(53, False, False), (53, True, False), (5353, False, False), (53, True, True)],
    ids=["udp", "udp-compressed", "udp-5353", "tcp"],
)
def test_dns_answers(tmp_path: Path, port: int, compress: bool, tcp_transport: bool) -> None:
    pkts = _dns_exchange(CLIENT, "10.96.0.10", port, compress=compress,
                         tcp_transport=tcp_transport)
    header, flows, dns = records([_pcap(tmp_path, pkts)])
    assert len(dns) == 1
    assert {k: v for k, v in dns[0].items() if k != "ts"} == EXPECTED_DNS
    assert dns[0]["ts"] == pytest.approx(T0 + 0.001 * (len(pkts) - 1))
    assert header["stats"]["dns"] == 1
    assert flows[0]["server_port"] == port


def test_dns_repeated_answers_are_kept_once_with_the_first_time(tmp_path: Path) -> None:
    pkts = _dns_exchange(CLIENT, "10.96.0.10") * 3
    _h, _f, dns = records([_pcap(tmp_path, pkts)])
    assert len(dns) == 1
    assert dns[0]["ts"] == pytest.approx(T0 + 0.001)


def test_dns_without_answers_and_mdns_give_no_record(tmp_path: Path) -> None:
    nxdomain = DNS(id=1, qr=1, rcode=3, qd=DNSQR(qname="nope.example.com."))
    root = DNS(id=3, qr=1, qd=DNSQR(qname=".", qtype="NS"),
               an=[DNSRR(rrname=".", type="CNAME", rdata="x.example.")])
    mdns = DNS(id=0, qr=1, aa=1, qd=DNSQR(qname="printer.local."),
               an=[DNSRR(rrname="printer.local.", type="A", rdata="192.168.0.9")])
    pkts = [
        udp("10.96.0.10", CLIENT, 53, 40000, bytes(nxdomain)),
        udp("192.168.0.9", "224.0.0.251", 5353, 5353, bytes(mdns)),
        udp("10.96.0.10", CLIENT, 53, 40000, bytes(root)),
    ]
    _h, flows, dns = records([_pcap(tmp_path, pkts)])
    assert dns == []
    assert len(flows) == 2


@pytest.mark.parametrize(
    "message",
    [b"", bytes(12), b"\x00\x01\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\xc0\x0c",
     b"\x00\x01\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x03www\xc0\x0c\x00\x01\x00\x01",
     b"\x00\x01\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x3fwww\x00\x00\x01\x00\x01"],
    ids=["empty", "zeros", "pointer-loop", "pointer-to-itself", "label-past-end"],
)
def test_dns_parser_rejects_malformed(message: bytes) -> None:
    assert parse_response(message) is None


def test_dns_parser_fuzz() -> None:
    msg = bytes(dns_compress(DNS(_dns_exchange(CLIENT, SERVER)[1][UDP].load)))
    assert parse_response(msg) is not None
    for cut in range(len(msg)):
        parse_response(msg[:cut])
    for i in range(len(msg)):
        for value in (0x00, 0xC0, 0xFF, 0x3F):
            parse_response(msg[:i] + bytes([value]) + msg[i + 1 :])


# -- TLS ---------------------------------------------------------------------------------------


def test_tls_client_hello_sni(tmp_path: Path) -> None:
    flow = only_flow([_pcap(tmp_path, handshake_flow(request=client_hello("Pay.Example.COM")))])
    assert (flow["tls"], flow["sni"]) == (True, "pay.example.com")


def test_tls_client_hello_without_sni(tmp_path: Path) -> None:
    flow = only_flow([_pcap(tmp_path, handshake_flow(request=client_hello(None)))])
    assert (flow["tls"], flow["sni"]) == (True, None)


def test_plain_tcp_is_not_tls(tmp_path: Path) -> None:
    flow = only_flow([_pcap(tmp_path, handshake_flow(request=b"\x16\x03\x01 not tls"))])
    assert (flow["tls"], flow["sni"]) == (False, None)


def test_tls_client_hello_split_over_segments(tmp_path: Path) -> None:
    hello = client_hello("split.example.com", pad=2500)  # the SNI comes after 2.5 kB
    c, s = 1000, 5000
    pkts = [
        tcp(CLIENT, SERVER, 40000, 443, "S", seq=c),
        tcp(SERVER, CLIENT, 443, 40000, "SA", seq=s),
        tcp(CLIENT, SERVER, 40000, 443, "A", seq=c + 1),
        tcp(CLIENT, SERVER, 40000, 443, "A", hello[:1400], seq=c + 1),
        tcp(CLIENT, SERVER, 40000, 443, "A", hello[:1400], seq=c + 1),  # a retransmission
        tcp(SERVER, CLIENT, 443, 40000, "A", seq=s + 1),
        tcp(CLIENT, SERVER, 40000, 443, "A", hello[1400:2800], seq=c + 1401),
        tcp(CLIENT, SERVER, 40000, 443, "PA", hello[2800:], seq=c + 2801),
    ]
    flow = only_flow([_pcap(tmp_path, pkts)])
    assert (flow["tls"], flow["sni"]) == (True, "split.example.com")


def test_tls_after_a_starttls_style_preamble(tmp_path: Path) -> None:
    ssl_request = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"  # PostgreSQL SSLRequest
    c, s = 1000, 5000
    pkts = [
        tcp(CLIENT, SERVER, 40000, 5432, "S", seq=c),
        tcp(SERVER, CLIENT, 5432, 40000, "SA", seq=s),
        tcp(CLIENT, SERVER, 40000, 5432, "PA", ssl_request, seq=c + 1),
        tcp(SERVER, CLIENT, 5432, 40000, "PA", b"S", seq=s + 1),
        tcp(CLIENT, SERVER, 40000, 5432, "PA", client_hello("db.internal"), seq=c + 9),
    ]
    flow = only_flow([_pcap(tmp_path, pkts)])
    assert (flow["tls"], flow["sni"]) == (True, "db.internal")


def test_no_tls_search_after_real_data(tmp_path: Path) -> None:
    pkts = handshake_flow(request=b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 60, close=False)
    pkts.append(tcp(CLIENT, SERVER, 40000, 443, "PA", client_hello("late.example"), seq=9999))
    flow = only_flow([_pcap(tmp_path, pkts)])
    assert flow["tls"] is False


def test_client_hello_parser_edge_cases() -> None:
    hello = client_hello("a.example")
    assert probe_client_hello(hello).sni == "a.example"
    for cut in range(len(hello)):
        probe = probe_client_hello(hello[:cut])
        assert probe.sni in (None, "a.example")
    bad = client_hello("bad name\x00.example")
    assert probe_client_hello(bad).sni is None
    for i in range(len(hello)):
        for value in (0x00, 0xFF):
            probe_client_hello(hello[:i] + bytes([value]) + hello[i + 1 :])


def test_no_payload_bytes_are_written(tmp_path: Path) -> None:
    secret = b"SECRET-CARD-NUMBER-4111111111111111"
    pkts = handshake_flow(request=secret, response=secret)
    pkts += _dns_exchange(CLIENT, "10.96.0.10")
    out = tmp_path / "flows.jsonl"
    from capture.ingest import ingest

    ingest([str(_pcap(tmp_path, pkts))], str(out))
    text = out.read_text()
    assert "SECRET" not in text
    assert "4111" not in text


# PROXY protocol headers (HAProxy's proxy-protocol.txt): a v1 text line, and v2 binary headers
# built from its layout -- signature, version 2 / command PROXY (0x21), TCP over IPv4 (0x11),
# the length of the addresses (12 bytes) and of any TLVs after them.
PROXY_V1 = b"PROXY TCP4 192.0.2.77 10.0.0.2 51234 443\r\n"
PROXY_V2 = (b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"
            + bytes([192, 0, 2, 77, 10, 0, 0, 2]) + (51234).to_bytes(2, "big")
            + (443).to_bytes(2, "big"))
_TLVS = bytes([0xEA]) + (290).to_bytes(2, "big") + bytes(290)  # a 290-byte TLV (as AWS adds)
PROXY_V2_TLVS = PROXY_V2[:14] + (12 + len(_TLVS)).to_bytes(2, "big") + PROXY_V2[16:] + _TLVS


@pytest.mark.parametrize(
    "segments",
    [
        [PROXY_V1 + client_hello("behind.example")],
        [PROXY_V2 + client_hello("behind.example")],
        [PROXY_V2_TLVS + client_hello("behind.example")],
        [PROXY_V1, client_hello("behind.example")],
        [PROXY_V2_TLVS, client_hello("behind.example")],  # a header longer than a preamble
        [PROXY_V1 + client_hello("behind.example", pad=2000)[:1000],
         client_hello("behind.example", pad=2000)[1000:]],  # the hello split after it
    ],
    ids=["v1", "v2", "v2-tlvs", "v1-alone", "v2-tlvs-alone", "v1-split-hello"],
)
def test_tls_after_a_proxy_protocol_header(tmp_path: Path, segments: list[bytes]) -> None:
    c = 1000
    pkts = [tcp(CLIENT, SERVER, 40000, 443, "S", seq=c),
            tcp(SERVER, CLIENT, 443, 40000, "SA", seq=5000),
            tcp(CLIENT, SERVER, 40000, 443, "A", seq=c + 1)]
    c += 1
    for segment in segments:
        pkts.append(tcp(CLIENT, SERVER, 40000, 443, "PA", segment, seq=c))
        c += len(segment)
    path = _pcap(tmp_path, pkts)
    for fast in (True, False):
        flow = only_flow([path], fast=fast)
        assert (flow["tls"], flow["sni"]) == (True, "behind.example")
    out = tmp_path / "flows.jsonl"
    from capture.ingest import ingest

    ingest([str(path)], str(out))
    assert "192.0.2.77" not in out.read_text()  # the proxied client's address is not kept


def test_a_proxy_header_alone_is_not_tls(tmp_path: Path) -> None:
    pkts = handshake_flow(request=PROXY_V1 + b"GET / HTTP/1.1\r\n\r\n")
    flow = only_flow([_pcap(tmp_path, pkts)])
    assert (flow["tls"], flow["sni"]) == (False, None)


@pytest.mark.parametrize(
    ("name", "sni"),
    [("10.1.2.3", None), ("10.1.2.3.", None), ("0x7f.0.0.1", None), ("3232235777", None),
     ("192.168.0.0x1", None), ("shop.example", "shop.example"), ("a1.example.", "a1.example"),
     ("1.2.3.4.nip.io", "1.2.3.4.nip.io"), ("0xdead.example", "0xdead.example")],
)
def test_an_ip_address_is_not_an_sni(tmp_path: Path, name: str, sni: str | None) -> None:
    """RFC 6066 section 3: "Literal IPv4 and IPv6 addresses are not permitted in HostName"."""
    assert probe_client_hello(client_hello(name)).sni == sni
    for fast in (True, False):
        flow = only_flow([_pcap(tmp_path, handshake_flow(request=client_hello(name)))],
                         fast=fast)
        assert (flow["tls"], flow["sni"]) == (True, sni)


def _dns_answer_for(qname: bytes) -> bytes:
    """A DNS response for the raw wire-format name ``qname`` with one A record (RFC 1035)."""
    header = b"\x00\x07\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00"
    question = qname + b"\x00\x01\x00\x01"
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([10, 1, 2, 3])
    return header + question + answer


@pytest.mark.parametrize(
    ("qname", "name"),
    [
        (b"\x06Svc\x00\x01X\x03svc\x00", "svc\\000\\001x.svc"),
        (b"\x04bad\n\x07example\x00", "bad\\010.example"),
        (b"\x03a b\x03a.b\x04x\\y;\x00", "a\\032b.a\\.b.x\\\\y\\;"),
        (b"\x04caf\xc3\x07example\x00", "caf\\195.example"),
        (b"\x03\x7f\"(\x00", "\\127\\\"\\("),
        (b"\x05Web-1\x04shop\x00", "web-1.shop"),
    ],
)
def test_dns_names_are_printable(tmp_path: Path, qname: bytes, name: str) -> None:
    """Label bytes that are not printable ASCII are written as dig writes them (\\DDD), and a
    dot or backslash inside a label is escaped: no control character reaches the flow file."""
    assert parse_response(_dns_answer_for(qname)) is not None
    pkts = [udp("10.96.0.10", CLIENT, 53, 40000, _dns_answer_for(qname))]
    (dns,) = records([_pcap(tmp_path, pkts)])[2]
    assert dns["name"] == name
    assert dns["name"].isprintable() and dns["name"].isascii()
    assert dns["answers"] == ["10.1.2.3"]
