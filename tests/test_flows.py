"""Reading flow files (docs/flow-format.md)."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from segmenter.errors import InputError
from segmenter.flowfile import Traffic, read_flow_file, read_flow_files
from segmenter.model import DnsAnswer, Flow, Transport

HEADER = {
    "format": "segmenter-flows",
    "generator": "segmenter-capture 0.1.0",
    "sources": ["shop.pcapng"],
    "stats": {"flows": 3, "packets": 40, "skipped": {"non-ip": 2}},
    "version": 1,
}


def flow_record(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "bytes_to_client": 900,
        "bytes_to_server": 300,
        "client": "10.244.1.10",
        "client_port": 40000,
        "direction": "handshake",
        "first_seen": 1700000000.5,
        "handshake": True,
        "last_seen": 1700000001.25,
        "outer": None,
        "packets_to_client": 4,
        "packets_to_server": 5,
        "proto": "TCP",
        "record": "flow",
        "resets": 0,
        "server": "10.96.0.100",
        "server_port": 80,
        "sni": None,
        "tls": False,
    }
    record.update(overrides)
    return record


DNS = {
    "answers": ["93.184.215.14"],
    "client": "10.244.1.10",
    "cnames": ["Edge.Example.NET."],
    "name": "www.example.com",
    "record": "dns",
    "server": "10.96.0.10",
    "ts": 1700000000.25,
}


def write(path: Path, *records: Any, header: Any = HEADER) -> str:
    lines = [header, *records] if header is not None else list(records)
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in lines))
    return str(path)


def test_reads_header_flows_and_dns(tmp_path: Path) -> None:
    path = write(
        tmp_path / "flows.jsonl",
        DNS,
        flow_record(),
        flow_record(
            proto="ICMP",
            client_port=None,
            server_port=None,
            server="8.8.8.8",
            direction="first-packet",
            handshake=False,
        ),
        flow_record(
            proto="UDP",
            client="fd00::0a",
            server="FD00:0:0:0:0:0:0:35",
            server_port=53,
            direction="port-heuristic",
            handshake=False,
            tls=False,
        ),
        flow_record(tls=True, sni="api.example.com", outer=["192.168.0.1", "192.168.0.2"]),
    )
    result = read_flow_file(path)
    assert isinstance(result, Traffic)
    assert result.header == HEADER
    assert result.dns == (
        DnsAnswer(
            client="10.244.1.10",
            server="10.96.0.10",
            name="www.example.com",
            answers=("93.184.215.14",),
            cnames=("edge.example.net",),
            ts=1700000000.25,
        ),
    )
    first = result.flows[0]
    assert first == Flow(
        transport=Transport.TCP,
        client="10.244.1.10",
        server="10.96.0.100",
        client_port=40000,
        server_port=80,
        first_seen=1700000000.5,
        last_seen=1700000001.25,
        packets_to_server=5,
        bytes_to_server=300,
        packets_to_client=4,
        bytes_to_client=900,
        direction="handshake",
        handshake=True,
        resets=0,
        tls=False,
        sni=None,
    )
    assert (first.packets, first.bytes) == (9, 1200)
    icmp = result.flows[1]
    assert (icmp.transport, icmp.client_port, icmp.server_port) == (Transport.ICMP, None, None)
    udp = result.flows[2]
    assert (udp.client, udp.server) == ("fd00::a", "fd00::35")  # canonical IPv6 text
    assert result.flows[3].sni == "api.example.com"


def test_gzip(tmp_path: Path) -> None:
    plain = write(tmp_path / "flows.jsonl", flow_record())
    packed = tmp_path / "flows.jsonl.gz"
    packed.write_bytes(gzip.compress(Path(plain).read_bytes()))
    assert read_flow_file(packed).flows == read_flow_file(plain).flows


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("{not json", "malformed JSON"),
        ([1, 2], "expected a JSON object, got a list"),
        (flow_record(proto="GRE"), '"proto" must be one of'),
        (flow_record(server_port=None), '"server_port" is required for TCP'),
        (flow_record(server_port=70000), '"server_port" must be a port number'),
        (flow_record(bytes_to_server=-1), '"bytes_to_server" must be a non-negative integer'),
        (flow_record(packets_to_client=True), '"packets_to_client" must be a non-negative'),
        (flow_record(last_seen=1.0), '"last_seen" is before "first_seen"'),
        (flow_record(first_seen="yesterday"), '"first_seen" must be a number'),
        (flow_record(client="10.0.0.256"), "\"client\": '10.0.0.256' is not an IP address"),
        (flow_record(server=None), '"server" is null, but "server_endpoint" does not name'),
        (flow_record(direction="guess"), '"direction" must be one of'),
        (flow_record(tls="yes"), '"tls" must be true or false'),
        (flow_record(sni=5), '"sni" must be a string or null'),
        (flow_record(outer="10.0.0.1"), '"outer" must be a list'),
        ({**DNS, "answers": ["nope"]}, "is not an IP address"),
        ({**DNS, "name": ""}, '"name" must be a non-empty string'),
        ({"proto": "TCP"}, '"record" must be "flow" or "dns"'),
    ],
)
def test_bad_record_names_the_line(tmp_path: Path, record: Any, message: str) -> None:
    path = tmp_path / "flows.jsonl"
    write(path, flow_record(), flow_record())
    line = record if isinstance(record, str) else json.dumps(record)
    with path.open("a") as handle:
        handle.write(line + "\n")
    with pytest.raises(InputError) as info:
        read_flow_file(path)
    err = info.value
    assert (err.path, err.record) == (str(path), "line 4")
    assert message in err.message
    assert "\n" not in str(err)
    assert str(err).startswith(f"{path} (line 4): ")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ({**HEADER, "format": "pcap"}, "not a flow file: \"format\" is 'pcap'"),
        ({**HEADER, "version": 3}, "flow file version 3 is newer than this reader"),
        ({**HEADER, "version": "1"}, '"version" must be an integer'),
        ({**HEADER, "version": 0}, "unknown flow file version 0"),
        ({**HEADER, "sources": "a.pcap"}, '"sources" must be a list of strings'),
        ({**HEADER, "interfaces": {"a.pcapng": "eth0"}}, '"interfaces" must be an object'),
        ({**HEADER, "interfaces": ["eth0"]}, '"interfaces" must be an object'),
        (flow_record(), "line 1 must be the header"),
    ],
)
def test_bad_header(tmp_path: Path, header: Any, message: str) -> None:
    path = write(tmp_path / "flows.jsonl", flow_record(), header=header)
    with pytest.raises(InputError) as info:
        read_flow_file(path)
    assert info.value.record == "line 1"
    assert message in info.value.message


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(InputError, match="empty file"):
        read_flow_file(empty)
    with pytest.raises(InputError, match="no such file"):
        read_flow_file(tmp_path / "missing.jsonl")
    with pytest.raises(InputError, match="no flow file given"):
        read_flow_files([])


def test_unknown_record_types_are_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "f.jsonl", flow_record(), {"record": "tls-cert", "x": 1})
    with caplog.at_level(logging.WARNING, logger="segmenter.flowfile"):
        result = read_flow_file(path)
    assert len(result.flows) == 1
    assert any("tls-cert" in r.getMessage() for r in caplog.records)


def test_several_files_merge_sorted(tmp_path: Path) -> None:
    late = flow_record(first_seen=1700000100.0, last_seen=1700000101.0)
    early = flow_record(first_seen=1699999000.0, last_seen=1699999001.0, client="10.244.2.10")
    a = write(tmp_path / "a.jsonl", late, DNS)
    b = write(
        tmp_path / "b.jsonl",
        early,
        header={
            **HEADER,
            "sources": ["node-b.pcapng"],
            "interfaces": {"node-b.pcapng": ["cali1", "eth0"]},
            "stats": {"flows": 1, "packets": 9, "skipped": {"non-ip": 1}},
        },
    )
    merged = read_flow_files([a, b])
    assert [f.first_seen for f in merged.flows] == [1699999000.0, 1700000100.0]
    assert len(merged.dns) == 1
    assert merged.header == {
        "format": "segmenter-flows",
        "generator": "segmenter-capture 0.1.0",
        "sources": ["node-b.pcapng", "shop.pcapng"],
        "interfaces": {"node-b.pcapng": ["cali1", "eth0"]},
        "stats": {"flows": 4, "packets": 49, "skipped": {"non-ip": 3}},
        "version": 1,
    }
    assert merged.paths == (a, b)
    assert read_flow_files([a]) == read_flow_file(a)
