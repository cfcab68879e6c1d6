"""Capture files: formats, several inputs, damage and bad input, determinism, the CLI."""

from __future__ import annotations

import gzip
import logging
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from capture_pcapbuild import (
    CLIENT,
    MAC_A,
    MAC_B,
    SERVER,
    T0,
    client_hello,
    ether,
    handshake_flow,
    only_flow,
    pcapng_bytes,
    records,
    tcp,
    timed,
    udp,
    write_pcap,
    write_pcapng_scapy,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinuxV2, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN

from capture.cli import main
from capture.errors import CaptureError
from capture.ingest import ingest

REPO = Path(__file__).resolve().parents[2]


def _frames() -> list[bytes]:
    return [ether(p) for p in handshake_flow(request=client_hello("shop.example"))]


def _kitchen_sink(tmp_path: Path) -> Path:
    """One capture with a bit of everything, for reader-equivalence and determinism checks."""
    frames: list[tuple[float, bytes]] = []
    t = T0
    for k in range(40):
        pkts = handshake_flow(f"10.0.{k}.1", SERVER, 40000 + k, (443, 80, 5432)[k % 3],
                              request=client_hello(f"s{k}.example") if k % 3 == 0 else b"GET /")
        for p in pkts:
            t += 0.01
            framed = ether(p)
            if k % 5 == 1:
                framed = bytes(Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=7) / p)
            frames.append((t, framed))
        frames.append((t + 0.5, ether(udp("10.96.0.10", f"10.0.{k}.1", 53, 50000 + k, bytes(
            DNS(id=k, qr=1, qd=DNSQR(qname=f"n{k}.svc."),
                an=[DNSRR(rrname=f"n{k}.svc.", type="A", rdata=f"10.1.0.{k}")]))))))
    for k in range(3):  # long IPv6 conversations: the IPv6 fast path
        c, s, cp = f"fd00::{k + 1}", "fd00::ff", 41000 + k
        seq_frames = handshake_flow(c, s, cp, 8080, v6=True, close=False)
        seq_frames += [tcp(s if i % 2 else c, c if i % 2 else s, 8080 if i % 2 else cp,
                           cp if i % 2 else 8080, "A", b"z" * (i % 300), v6=True)
                       for i in range(40)]
        for p in seq_frames:
            t += 0.01
            frames.append((t, ether(p)))
    for p in fragment(IP(src=CLIENT, dst=SERVER, id=9) / UDP(sport=1, dport=2) / bytes(3000),
                      fragsize=1000):
        t += 0.01
        frames.append((t, ether(p)))
    frames.append((t + 1, ether(IP(src="192.168.1.1", dst="192.168.1.2") / UDP(dport=4789)
                                / VXLAN(vni=3) / Ether() / IP(src=CLIENT, dst=SERVER)
                                / UDP(sport=7, dport=8))))
    frames.append((t + 2, ether(IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=9, dport=10))))
    frames.append((t + 400, ether(udp(CLIENT, SERVER, 1, 2, b"after idle"))))
    frames.append((t + 401, ether(tcp(CLIENT, SERVER, 40000, 443, "A"))))
    return write_pcap(tmp_path / "sink.pcap", frames)


# -- formats -----------------------------------------------------------------------------------


@pytest.mark.parametrize("endianness", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_byte_orders_and_precisions(tmp_path: Path, endianness: str, nano: bool) -> None:
    frames = [(T0 + 0.123456 + i, f) for i, f in enumerate(_frames())]
    path = write_pcap(tmp_path / "c.pcap", frames, endianness=endianness, nano=nano)
    assert path.read_bytes()[:4] == {
        ("<", False): b"\xd4\xc3\xb2\xa1", (">", False): b"\xa1\xb2\xc3\xd4",
        ("<", True): b"\x4d\x3c\xb2\xa1", (">", True): b"\xa1\xb2\x3c\x4d"}[(endianness, nano)]
    for fast in (True, False):
        flow = only_flow([path], fast=fast)
        assert (flow["sni"], flow["handshake"], flow["packets_to_server"]) == (
            "shop.example", True, 5)
        assert flow["first_seen"] == pytest.approx(T0 + 0.123456, abs=1e-6)


def test_nanosecond_time_stamps_are_kept(tmp_path: Path) -> None:
    raw = tmp_path / "ns.pcap"
    frame = ether(tcp(CLIENT, SERVER, 40000, 80, "S"))
    with open(raw, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1))
        f.write(struct.pack("<IIII", 1_700_000_000, 123_456_789, len(frame), len(frame)) + frame)
    flow = only_flow([raw])
    assert flow["first_seen"] == 1_700_000_000_123_456_789 / 1e9


def test_pcapng_several_interfaces_with_their_own_link_types(tmp_path: Path) -> None:
    eth = [ether(p) for p in handshake_flow(sport=443)]
    sll2 = [bytes(CookedLinuxV2(proto=0x0800, lladdrtype=1, lladdrlen=6) / p)
            for p in handshake_flow(sport=5432)]
    raw = [bytes(p) for p in handshake_flow(sport=6379)]
    frames = ([(T0 + i, f, 1, "eth0") for i, f in enumerate(eth)]
              + [(T0 + 10 + i, f, 276, "any") for i, f in enumerate(sll2)]
              + [(T0 + 20 + i, f, 101, "tun0") for i, f in enumerate(raw)])
    path = write_pcapng_scapy(tmp_path / "multi.pcapng", frames)
    header, flows, _ = records([path])
    assert [f["server_port"] for f in flows] == [443, 5432, 6379]
    assert all(f["handshake"] for f in flows)
    assert header["stats"]["packets"] == 24


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcapng_nanosecond_and_binary_time_resolution(tmp_path: Path, endian: str) -> None:
    syn = ether(tcp(CLIENT, SERVER, 40000, 80, "S"))
    synack_raw = bytes(tcp(SERVER, CLIENT, 80, 40000, "SA"))
    data = pcapng_bytes(
        [(1, 9), (101, 0x80 | 20)],  # 10^-9 s; 2^-20 s
        [(0, 1_700_000_000_123_456_789, syn), (1, (1_700_000_001 << 20) + (1 << 19), synack_raw)],
        endian=endian,
    )
    path = tmp_path / "ns.pcapng"
    path.write_bytes(data)
    flow = only_flow([path])
    assert flow["first_seen"] == 1_700_000_000_123_456_789 / 1e9
    assert flow["last_seen"] == 1_700_000_001.5
    assert flow["handshake"] is True


def test_pcapng_sections_joined_with_cat(tmp_path: Path) -> None:
    # Each section numbers its interfaces from 0 again, here with another link type.
    first = pcapng_bytes([(1, 6)], [(0, int(T0) * 10**6, ether(tcp(CLIENT, SERVER, 1, 80, "S")))])
    second = pcapng_bytes([(101, 6)], [(0, int(T0 + 1) * 10**6,
                                        bytes(tcp(CLIENT, SERVER, 2, 443, "S")))], endian=">")
    path = tmp_path / "joined.pcapng"
    path.write_bytes(first + second)
    header, flows, _ = records([path])
    assert [f["server_port"] for f in flows] == [80, 443]
    assert header["stats"]["skipped"] == {}


def test_paths_may_be_a_single_name_or_path_objects(tmp_path: Path) -> None:
    path = write_pcap(tmp_path / "c.pcap", timed(_frames()))
    out = tmp_path / "o.jsonl"
    assert ingest(str(path), str(out)).flows == 1
    assert ingest([path], out).flows == 1  # type: ignore[list-item, arg-type]
    assert out.is_file()


def test_gzip_compressed_capture(tmp_path: Path) -> None:
    plain = write_pcap(tmp_path / "c.pcap", timed(_frames()))
    gz = tmp_path / "c.pcap.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert records([gz])[1] == records([plain])[1]


def test_own_reader_and_scapy_reader_agree(tmp_path: Path) -> None:
    path = _kitchen_sink(tmp_path)
    fast = records([path], fast=True)
    slow = records([path], fast=False)
    assert fast == slow
    header, flows, dns = fast
    assert len(dns) == 40
    assert header["stats"]["packets"] == sum(
        f["packets_to_server"] + f["packets_to_client"] for f in flows) + sum(
        header["stats"]["skipped"].values())
    assert any(f["outer"] for f in flows)


def test_fast_paths_of_every_reader_agree_with_the_reference(tmp_path: Path) -> None:
    """Our pcap and pcapng readers, also of a gzip-compressed pcap, each with its fast path,
    against scapy's pcap reader with the general decoder only."""
    from scapy.utils import RawPcapReader

    path = _kitchen_sink(tmp_path)
    reference = records([path], fast=False)
    with RawPcapReader(str(path)) as reader:
        frames = [(meta.sec + meta.usec / 1e6, data, 1, "eth0") for data, meta in reader]
    ng = write_pcapng_scapy(tmp_path / "sink.pcapng", frames)
    gz = tmp_path / "sink.pcap.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert records([path]) == reference
    assert records([gz])[1:] == reference[1:]
    ng_header, ng_flows, ng_dns = records([ng])
    _ref_header, ref_flows, ref_dns = records([ng], fast=False)
    assert (ng_flows, ng_dns) == (ref_flows, ref_dns)
    # Same flows as from the pcap, up to the float time stamps scapy's pcapng writer rounds.
    assert len(ng_flows) == len(reference[1])
    assert ng_header["stats"] == reference[0]["stats"]


def test_sort_keys_of_flows_match_those_of_their_records(tmp_path: Path) -> None:
    from capture.flowfile import sort_key
    from capture.readers import open_capture, read_capture
    from capture.table import FlowTable

    table = FlowTable()
    read_capture(open_capture(str(_kitchen_sink(tmp_path))), table)
    for key, flow in table.flow_items():
        assert key == sort_key(table.flow_record(flow))
    for key, item in table.dns_items():
        assert key == sort_key(table.dns_record(item))


def test_flow_lines_are_the_dumps_of_their_records(tmp_path: Path) -> None:
    from capture.flowfile import dumps
    from capture.readers import open_capture, read_capture
    from capture.table import FlowTable

    table = FlowTable()
    read_capture(open_capture(str(_kitchen_sink(tmp_path))), table)
    flows = list(table.flows())
    assert any(fl.outer for fl in flows) and any(fl.sni for fl in flows)
    for fl in flows:
        assert table.flow_line(fl) == dumps(table.flow_record(fl))
    for item in table.dns.items():
        assert table.dns_line(item) == dumps(table.dns_record(item))


@settings(max_examples=300, deadline=None)
@given(
    v6=st.booleans(),
    ports=st.one_of(st.none(), st.tuples(st.integers(0, 65535), st.integers(0, 65535))),
    client_is_a=st.booleans(),
    counts=st.lists(st.integers(0, 1 << 70), min_size=4, max_size=4),
    first=st.integers(0, 1 << 62),
    span=st.integers(0, 1 << 40),
    flags=st.lists(st.booleans(), min_size=3, max_size=3),
    resets=st.integers(0, 1000),
    sni=st.one_of(st.none(), st.text()),
    outer=st.one_of(st.none(), st.sets(st.binary(min_size=4, max_size=4), max_size=3)),
    direction=st.sampled_from(["handshake", "first-packet", "port-heuristic"]),
    proto=st.sampled_from([1, 6, 17, 58, 132]),
)
def test_flow_line_matches_the_encoder_for_any_flow_state(  # noqa: PLR0917
    v6: bool, ports: tuple[int, int] | None, client_is_a: bool, counts: list[int], first: int,
    span: int, flags: list[bool], resets: int, sni: str | None, outer: set[bytes] | None,
    direction: str, proto: int,
) -> None:
    from capture.decode import Decoded
    from capture.flowfile import dumps
    from capture.table import FlowState, FlowTable

    alen = 16 if v6 else 4
    port_bytes = b"" if ports is None else ports[0].to_bytes(2, "big") + ports[1].to_bytes(
        2, "big")
    src, dst = bytes(range(1, alen + 1)), bytes(range(100, 100 + alen))
    d = Decoded(proto, src, dst, port_bytes, 40, 0, 0, 0, 0, None, ())
    fl = FlowState(d, first)
    fl.last = first + span
    fl.client_is_a = client_is_a
    fl.a.packets, fl.a.bytes, fl.b.packets, fl.b.bytes = counts
    fl.syn, fl.synack, fl.tls = flags
    fl.resets = resets
    fl.sni = sni
    fl.outer = outer
    fl.direction = direction
    table = FlowTable()
    assert table.flow_line(fl) == dumps(table.flow_record(fl))


def test_same_capture_gives_byte_identical_flow_files(tmp_path: Path) -> None:
    path = _kitchen_sink(tmp_path)
    outs = []
    for n, fast in enumerate((True, True, False)):
        out = tmp_path / f"flows{n}.jsonl"
        ingest([str(path)], str(out), fast=fast)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]
    lines = outs[0].decode().splitlines()
    assert lines[0].startswith('{"format":"segmenter-flows"')
    assert len(lines) > 40


# -- several captures ------------------------------------------------------------------------


def test_several_captures_in_any_order(tmp_path: Path) -> None:
    frames = timed(_frames())
    a = write_pcap(tmp_path / "rot-0001.pcap", frames[:4])  # a rotated capture: one connection
    b = write_pcap(tmp_path / "rot-0002.pcap", frames[4:])
    c = write_pcap(tmp_path / "other.pcap", timed([ether(p) for p in handshake_flow(
        "10.0.9.9", SERVER, 41000, 80)], start=T0 - 50))
    out1, out2 = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    s1 = ingest([str(a), str(b), str(c)], str(out1))
    ingest([str(c), str(b), str(a), str(b)], str(out2))  # naming a file twice reads it once
    assert out1.read_bytes() == out2.read_bytes()
    assert s1.sources == ("other.pcap", "rot-0001.pcap", "rot-0002.pcap")
    assert s1.flows == 2
    _header, flows, _ = records([a, b])
    assert len(flows) == 1
    assert (flows[0]["packets_to_server"], flows[0]["packets_to_client"]) == (5, 3)


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"hello, this is not a capture at all\n" * 10, "not a pcap or pcapng capture"),
        (b"\x00" * 100, "not a pcap or pcapng capture"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "truncated pcap file header"),
        (b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\xff\xff\xff\xff" + bytes(20), "byte-order mark"),
        (b"%PDF-1.4\n", "not a pcap or pcapng capture"),
        (b"\x1f\x8b\x08\x00garbage", "cannot be decompressed"),
    ],
    ids=["empty", "text", "zeros", "short-header", "bad-pcapng", "pdf", "bad-gzip"],
)
def test_not_a_capture_raises_naming_the_file(tmp_path: Path, content: bytes,
                                              message: str) -> None:
    bad = tmp_path / "shop.pcap"
    bad.write_bytes(content)
    good = write_pcap(tmp_path / "good.pcap", timed(_frames()))
    out = tmp_path / "flows.jsonl"
    out.write_text("previous\n")
    with pytest.raises(CaptureError) as err:
        ingest([str(good), str(bad)], str(out))
    assert str(err.value).startswith(f"{bad}: ")
    assert message in str(err.value)
    assert err.value.path == str(bad)
    assert "\n" not in str(err.value)
    assert out.read_text() == "previous\n"  # nothing written


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="no such file"):
        ingest([str(tmp_path / "missing.pcap")], str(tmp_path / "o.jsonl"))
    # A folder stands for the files in it (capture/sources/folders.py): none is an error.
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaptureError, match="a folder with no files in it"):
        ingest([str(tmp_path / "empty")], str(tmp_path / "o.jsonl"))
    with pytest.raises(CaptureError, match="no capture files"):
        ingest([], str(tmp_path / "o.jsonl"))


def test_capture_error_one_line_format() -> None:
    err = CaptureError("truncated record header", path="shop.pcap", record=1234)
    assert str(err) == "shop.pcap (packet 1234): truncated record header"
    assert (err.message, err.path, err.record) == ("truncated record header", "shop.pcap", 1234)
    assert str(CaptureError("boom")) == "boom"


def _two_flows(tmp_path: Path) -> tuple[Path, int]:
    """A pcap whose first connection is complete before the second starts; 16 packets."""
    first = [ether(p) for p in handshake_flow(sport=443)]
    second = [ether(p) for p in handshake_flow(sport=80)]
    path = write_pcap(tmp_path / "damaged.pcap", timed(first + second))
    return path, len(first)


@pytest.mark.parametrize("fast", [True, False], ids=["own-reader", "scapy-reader"])
@pytest.mark.parametrize(
    ("cut", "message"),
    [(-10, "truncated record: the file ends"), (-60, "truncated record"),
     (None, "truncated record header")],
)
def test_truncated_capture_gives_partial_flows_and_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fast: bool, cut: int | None, message: str
) -> None:
    path, _ = _two_flows(tmp_path)
    data = path.read_bytes()
    # Cut inside the last record, or 7 bytes into the last record's header.
    last = len(data) - (16 + len(ether(handshake_flow(sport=80)[-1])))
    path.write_bytes(data[: last + 7] if cut is None else data[:cut])
    with caplog.at_level(logging.WARNING, logger="capture"):
        header, flows, _ = records([path], fast=fast)
    assert header["stats"]["packets"] == 15
    assert [f["server_port"] for f in flows] == [443, 80]
    warnings = [r.getMessage() for r in caplog.records if r.name == "capture"]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{path} (packet 16): {message}")
    assert not [r for r in caplog.records if r.name.startswith("scapy")]


@pytest.mark.parametrize("fast", [True, False], ids=["own-reader", "scapy-reader"])
def test_absurd_record_length(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                              fast: bool) -> None:
    path, n_first = _two_flows(tmp_path)
    data = bytearray(path.read_bytes())
    off = 24
    for _ in range(n_first):  # find the record header of the first packet of connection 2
        off += 16 + struct.unpack_from("<I", data, off + 8)[0]
    struct.pack_into("<I", data, off + 8, 0x7FFFFFF0)
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="capture"):
        header, flows, _ = records([path], fast=fast)
    assert header["stats"]["packets"] == n_first
    assert [f["server_port"] for f in flows] == [443]
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "capture"]
    assert warning.startswith(f"{path} (packet {n_first + 1}): absurd record length")


def test_damaged_pcapng(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    frames = [(0, int(T0) * 10**6 + i, ether(p)) for i, p in enumerate(handshake_flow())]
    data = pcapng_bytes([(1, 6)], frames)
    path = tmp_path / "d.pcapng"
    path.write_bytes(data[:-30])
    with caplog.at_level(logging.WARNING, logger="capture"):
        header, flows, _ = records([path])
    assert header["stats"]["packets"] == 7
    assert len(flows) == 1
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "capture"]
    assert warning.startswith(f"{path} (packet 8): ")
    # An absurd block length is reported, not read.
    blob = bytearray(data)
    offsets = [0]
    while offsets[-1] < len(data):
        offsets.append(offsets[-1] + struct.unpack_from("<I", data, offsets[-1] + 4)[0])
    second_epb = offsets[3]  # section header, interface, first packet, second packet
    struct.pack_into("<I", blob, second_epb + 4, 0x7FFFFFF0)
    path.write_bytes(bytes(blob))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="capture"):
        header, flows, _ = records([path])
    assert header["stats"]["packets"] == 1
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "capture"]
    assert "absurd block length" in warning


def test_clean_pcapng_with_trailing_statistics_block_has_no_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = pcapng_bytes([(1, 6)], [(0, int(T0) * 10**6, ether(tcp(CLIENT, SERVER, 1, 2, "S")))])
    isb = struct.pack("<IIIII", 5, 24, 0, 0, 0) + struct.pack("<I", 24)
    path = tmp_path / "isb.pcapng"
    path.write_bytes(data + isb)
    with caplog.at_level(logging.WARNING, logger="capture"):
        records([path])
    assert not [r for r in caplog.records if r.name == "capture"]


def test_unwritable_output(tmp_path: Path) -> None:
    path = write_pcap(tmp_path / "c.pcap", timed(_frames()))
    with pytest.raises(CaptureError, match="cannot write"):
        ingest([str(path)], str(tmp_path / "no-such-dir" / "flows.jsonl"))


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = write_pcap(tmp_path / "c.pcap", timed(_frames()))
    out = tmp_path / "out" / "flows.jsonl"
    out.parent.mkdir()
    ingest([str(path)], str(out))
    ingest([str(path)], str(out))
    assert os.listdir(out.parent) == ["flows.jsonl"]


# -- CLI -------------------------------------------------------------------------------------


def test_cli_ingest_and_merge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_pcap(tmp_path / "a.pcap", timed(_frames()))
    b = write_pcap(tmp_path / "b.pcap", timed([ether(p) for p in handshake_flow(sport=80)],
                                              start=T0 + 100))
    assert main(["ingest", str(a), "-o", str(tmp_path / "a.jsonl")]) == 0
    assert main(["ingest", str(b), "-o", str(tmp_path / "b.jsonl")]) == 0
    assert main(["merge", str(tmp_path / "b.jsonl"), str(tmp_path / "a.jsonl"),
                 "-o", str(tmp_path / "m.jsonl")]) == 0
    assert main(["ingest", str(a), str(b), "-o", str(tmp_path / "ab.jsonl")]) == 0
    merged = (tmp_path / "m.jsonl").read_text().splitlines()
    together = (tmp_path / "ab.jsonl").read_text().splitlines()
    assert merged[1:] == together[1:]  # the two connections do not interact
    err = capsys.readouterr().err
    assert err == ""  # quiet when standard error is not a terminal


def test_cli_error_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("not a capture")
    assert main(["ingest", str(bad), "-o", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert str(bad) in err
    assert "Traceback" not in err
    assert main(["merge", str(bad), "-o", str(tmp_path / "o.jsonl")]) == 2


def test_cli_warning_for_damage_keeps_exit_0(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = _two_flows(tmp_path)
    path.write_bytes(path.read_bytes()[:-5])
    assert main(["ingest", str(path), "-o", str(tmp_path / "o.jsonl")]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"warning: {path} (packet 16): truncated record")


def test_python_dash_m_capture(tmp_path: Path) -> None:
    a = write_pcap(tmp_path / "a.pcap", timed(_frames()))
    ok = subprocess.run([sys.executable, "-m", "capture", "ingest", str(a)], cwd=REPO,
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0
    assert ok.stdout.splitlines()[0].startswith('{"format":"segmenter-flows"')
    (tmp_path / "empty").mkdir()
    bad = subprocess.run([sys.executable, "-m", "capture", "ingest", str(tmp_path / "empty")],
                         cwd=REPO,
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 2
    assert bad.stderr == (f"error: {tmp_path / 'empty'}: a folder with no files in it (hidden"
                          " files are left out)\n")


def test_progress_only_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    import capture.ingest as ingest_module

    path = write_pcap(tmp_path / "c.pcap", timed(_frames()))
    ingest([str(path)], str(tmp_path / "o.jsonl"), progress=True)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(ingest_module, "_isatty", lambda _stream: True)
    ingest([str(path)], str(tmp_path / "o.jsonl"), progress=True)
    err = capsys.readouterr().err
    assert re.search(r"\rc\.pcap: 8 packets, 0 MiB \(100%\), [0-9,]+ flows, [0-9,]+ packets/s",
                     err), err
    assert err.endswith("\r\x1b[K")  # the line is cleared at the end
    ingest([str(path)], str(tmp_path / "o.jsonl"), progress=False)
    assert capsys.readouterr().err == ""


def test_capture_is_standalone(tmp_path: Path) -> None:
    """capture/ imports nothing from segmenter/ nor heavy plotting / graph / cluster packages,
    also when scapy's readers are in use (the reference path, of a gzip-compressed capture)."""
    ng = tmp_path / "c.pcapng.gz"
    ng.write_bytes(gzip.compress(pcapng_bytes([(1, 6)], [(0, int(T0) * 10**6, _frames()[0])])))
    probe = (
        "import sys, os\n"
        "import capture.cli, capture.ingest, capture.flowfile\n"
        f"capture.ingest.ingest([{str(ng)!r}], os.devnull, fast=False)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "             ('segmenter', 'matplotlib', 'networkx', 'kubernetes', 'yaml'))\n"
        "print(bad, 'scapy.utils' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[] True"
    for source in (REPO / "capture").rglob("*.py"):
        text = source.read_text()
        assert "import segmenter" not in text, source
        assert "from segmenter" not in text, source


def test_final_line_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Packets read, skipped with their reasons, flows written: on a terminal only."""
    path = write_pcap(tmp_path / "c.pcap", timed([*_frames(), b"\x00" * 20]))
    out = tmp_path / "o.jsonl"
    assert main(["ingest", str(path), "-o", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["ingest", str(path), "-o", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert re.fullmatch(r"9 packets read from 1 input\(s\), 1 skipped \([a-z-]+ 1\), \d+ flows"
                        r" and \d+ DNS answers written\n", err), err
