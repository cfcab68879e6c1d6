"""AWS VPC / Transit Gateway flow logs as a traffic source (capture/sources/aws_vpc.py).

Real records: ``shared/corpora/flows/aws-vpc`` (Elastic's pipeline test inputs and AWS's own
documented examples, read in place; see its README). Generated records follow AWS's field
reference there (flow-logs.md) and are written by the tests into ``tmp_path``.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest
from capture_pcapbuild import records
from flowlog_render import AWS_V5_HEADER, Conn, aws_default_records, aws_records, write

from capture.errors import CaptureError
from capture.ingest import ingest
from capture.sources import SOURCES, detect

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpora" / "flows" / "aws-vpc"
needs_corpus = pytest.mark.skipif(
    not (CORPUS / "flow-logs.md").is_file(),
    reason=f"AWS flow-log corpus not found at {CORPUS} (the 'shared' folder beside the repo)",
)

V3_HEADER = ("version vpc-id subnet-id instance-id interface-id account-id type srcaddr dstaddr "
             "srcport dstport pkt-srcaddr pkt-dstaddr protocol bytes packets start end action "
             "tcp-flags log-status")


def _fold(tmp_path: Path, text: str, name: str = "flows.log") -> tuple[dict[str, Any],
                                                                       list[dict[str, Any]]]:
    header, flows, _dns = records([write(tmp_path / name, text)])
    return header, flows


def _error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path / "bad.log", text)
    with pytest.raises(CaptureError) as err:
        records([path])
    message = str(err.value)
    assert message.startswith(f"{path}"), message
    assert "\n" not in message
    return message


def _key(f: dict[str, Any]) -> tuple[Any, ...]:
    return f["client"], f["client_port"], f["server"], f["server_port"], f["proto"]


# -- the real corpus ---------------------------------------------------------------------------

@needs_corpus
def test_default_format_samples() -> None:
    header, flows, _dns = records([CORPUS / "test-extra-samples.log"])
    assert header["stats"]["skipped"] == {"nodata": 1, "skipdata": 1}
    assert header["version"] == 2 and header["sources"] == ["test-extra-samples.log"]
    got = {(_key(f), f.get("verdict")): (f["packets_to_server"], f["packets_to_client"])
           for f in flows}
    assert got == {
        (("2001:db8:1234:a100:8d6e:3477:df66:f105", 34892,
          "2001:db8:1234:a102:3304:8879:34cf:4071", 22, "TCP"), "forwarded"): (54, 0),
        (("78.24.182.42", 20641, "158.109.0.1", 22, "TCP"), "forwarded"): (20, 0),
        (("78.24.182.42", 49761, "158.109.0.1", 3389, "TCP"), "dropped"): (20, 0),
        # AWS's ping example: the request ACCEPTed, the reply REJECTed by a stateless network
        # ACL -- one connection, one record per verdict, the client from the earlier start.
        (("203.0.113.12", None, "172.31.16.139", None, "ICMP"), "forwarded"): (4, 0),
        (("203.0.113.12", None, "172.31.16.139", None, "ICMP"), "dropped"): (0, 4),
    }
    assert {f["direction"] for f in flows} == {"port-heuristic"}  # version 2: no tcp-flags
    assert all(f["sources"] == ["aws-vpc"] and "sampled" not in f for f in flows)


@needs_corpus
def test_header_declared_order_with_tcp_flags() -> None:
    """Each record behind its own header line; NODATA / SKIPDATA in that order too."""
    header, flows, _dns = records([CORPUS / "test-tcp-flag-sequence.log"])
    assert header["stats"]["skipped"] == {"nodata": 1, "skipdata": 1}
    (flow,) = flows
    assert _key(flow) == ("52.213.180.42", 43416, "10.0.0.62", 5001, "TCP")
    # tcp-flags 2: a SYN from the sender. No SYN-ACK in the file, so no whole handshake.
    assert (flow["direction"], flow["handshake"]) == ("handshake", False)
    assert (flow["packets_to_server"], flow["bytes_to_server"]) == (8, 568)


def _doc_block(after: str) -> list[str]:
    """The record lines of the code blocks following the heading ``after`` in AWS's examples
    page (up to the next heading)."""
    text = (CORPUS / "flow-logs-records-examples.md").read_text()
    section = text.split(after, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```\n(.*?)```", section, re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


@needs_corpus
def test_aws_tcp_flag_sequence_example(tmp_path: Path) -> None:
    """AWS's own TCP flag example: SYN (2) / SYN-ACK (18), FIN (1) in a later window, and a
    short connection whose flags are OR-ed in one window (3 = SYN + FIN, 19 = SYN-ACK + FIN);
    one line of it has a double space."""
    lines = _doc_block("## TCP flag sequence")
    assert lines[0] == V3_HEADER and len(lines) == 9
    _h, flows = _fold(tmp_path, "\n".join(lines) + "\n")
    got = {f["client_port"]: f for f in flows}
    assert sorted(got) == [43416, 43418, 43638]
    for f in flows:
        assert (f["client"], f["server"], f["server_port"]) == ("52.213.180.42", "10.0.0.62",
                                                                5001)
        assert (f["direction"], f["handshake"]) == ("handshake", True)
    # Two windows of the same connection at the same interface add up.
    assert (got[43418]["packets_to_server"], got[43418]["bytes_to_server"]) == (
        70 + 15774, 100701 + 23294588)
    assert (got[43418]["packets_to_client"], got[43418]["bytes_to_client"]) == (12 + 1219,
                                                                               632 + 63388)
    assert (got[43418]["first_seen"], got[43418]["last_seen"]) == (1566848875.0, 1566849113.0)


@needs_corpus
def test_aws_flow_direction_example(tmp_path: Path) -> None:
    """AWS's version-5 example: one connection logged as an ingress and an egress record.
    flow-direction is each record's direction at the interface, not who opened it; the
    flags (19 from S3, 3 from the instance) say the instance did."""
    lines = _doc_block("## Service name, traffic path, and flow direction")
    assert lines[0].startswith("version srcaddr dstaddr") and len(lines) == 3
    _h, flows = _fold(tmp_path, "\n".join(lines) + "\n")
    (flow,) = flows
    assert _key(flow) == ("10.0.0.71", 34210, "52.95.128.179", 80, "TCP")
    assert (flow["packets_to_server"], flow["packets_to_client"]) == (7, 14)
    assert (flow["direction"], flow["handshake"], flow["verdict"]) == ("handshake", True,
                                                                       "forwarded")


@needs_corpus
def test_formats_without_times_or_ports_are_refused(tmp_path: Path) -> None:
    """AWS's transit-gateway and NAT examples use custom formats without start / end (and,
    for the NAT one, ports and protocol): a connection cannot be dated, so they are refused
    with the missing fields named, not read with made-up times."""
    tgw = _doc_block("## Traffic through a transit gateway")
    message = _error(tmp_path, tgw[0] + "\n" + tgw[1] + "\n")
    assert "(line 1)" in message and "lacks the field(s) start, end" in message
    nat = "instance-id interface-id srcaddr dstaddr pkt-srcaddr pkt-dstaddr\n"
    message = _error(tmp_path, nat + "- eni-1 10.0.1.5 10.0.0.220 10.0.1.5 203.0.113.5\n")
    assert "srcport, dstport, protocol, start, end" in message


@needs_corpus
def test_version_5_all_fields_sample(tmp_path: Path) -> None:
    """Elastic's v5 sample (29 fields, no header) has start 164000066: 47 years before its end.
    An aggregation window is at most 10 minutes, so the record is refused, naming the line;
    with its start mended, the packet-level destination is used."""
    text = (CORPUS / "test-v5-all-fields.log").read_text()
    message = _error(tmp_path, text)
    assert "(line 1)" in message and "aggregation window" in message
    _h, flows = _fold(tmp_path, text.replace(" 164000066 ", " 1640000066 "))
    (flow,) = flows
    # dstaddr is 10.200.0.0 (the interface's); pkt-dstaddr 10.200.0.80 (the packet's).
    assert {flow["client"], flow["server"]} == {"89.160.20.156", "10.200.0.80"}
    assert (flow["server"], flow["server_port"], flow["proto"]) == ("10.200.0.80", 33004, "UDP")
    assert flow["verdict"] == "dropped"


@needs_corpus
def test_ecs_v7_and_v8_samples() -> None:
    """39 and 40 fields (v2-v5 + ECS, + reject-reason): NODATA / SKIPDATA records are skipped
    even though these synthetic ones carry addresses and counts."""
    header, flows, _dns = records([CORPUS / "test-ecs-samples.log"])
    assert header["stats"]["skipped"] == {"nodata": 4, "skipdata": 2}
    assert len(flows) == 4
    assert sorted((f["proto"], f["server_port"], f["verdict"]) for f in flows) == [
        ("TCP", 8080, "forwarded"), ("UDP", 22, "dropped"), ("UDP", 80, "dropped"),
        ("UDP", 80, "forwarded")]
    # Fail closed: a log of nothing but NODATA is no evidence of "no traffic".
    with pytest.raises(CaptureError, match=r"none of the 1 record read is a connection"
                                           r" \(skipped nodata: 1\)"):
        records([CORPUS / "test-v8-samples.log"])


@needs_corpus
def test_transit_gateway_default_format() -> None:
    header, flows, _dns = records([CORPUS / "test-tgw-samples.log"])
    assert header["stats"]["skipped"] == {"nodata": 1, "skipdata": 6}
    assert sorted(_key(f) for f in flows) == [
        ("216.160.83.56", 36721, "89.160.20.128", 8080, "UDP"),
        ("67.43.156.0", 47415, "216.160.83.56", 443, "TCP"),
        ("89.160.20.112", 42450, "81.2.69.192", 443, "TCP"),
    ]
    assert all("verdict" not in f for f in flows)  # a transit gateway has no action field


@needs_corpus
def test_cloudwatch_message_wrapper() -> None:
    path = CORPUS / "test-with-message-field.log"
    assert detect(str(path))[1].name == "aws-vpc"
    with pytest.raises(CaptureError, match=r"\(skipped nodata: 1\)"):
        records([path])


@needs_corpus
@pytest.mark.parametrize("name", ["test-extra-samples.log", "test-tcp-flag-sequence.log",
                                  "test-v5-all-fields.log", "test-ecs-samples.log",
                                  "test-v8-samples.log", "test-tgw-samples.log",
                                  "test-with-message-field.log"])
def test_only_this_source_claims_the_corpus(name: str) -> None:
    head = (CORPUS / name).read_bytes()[:65536]
    assert [s.name for s in SOURCES if s.sniff(head)] == ["aws-vpc"]


# -- generated records: folding ----------------------------------------------------------------

WEB = Conn("TCP", "10.0.1.15", 51000, "10.0.2.20", 8080)


def test_two_directions_at_two_interfaces_are_one_connection(tmp_path: Path) -> None:
    lines = aws_records(WEB)
    _h, flows = _fold(tmp_path, AWS_V5_HEADER + "\n" + "\n".join(lines) + "\n")
    (flow,) = flows
    assert _key(flow) == ("10.0.1.15", 51000, "10.0.2.20", 8080, "TCP")
    # Each interface saw all the packets: counted once, not twice.
    assert (flow["packets_to_server"], flow["bytes_to_server"]) == (5, 600)
    assert (flow["packets_to_client"], flow["bytes_to_client"]) == (4, 3000)
    assert (flow["direction"], flow["handshake"], flow["verdict"]) == ("handshake", True,
                                                                       "forwarded")


def test_fold_does_not_depend_on_record_order(tmp_path: Path) -> None:
    conns = [WEB, Conn("UDP", "10.0.1.15", 40000, "10.0.3.3", 53),
             Conn("TCP", "10.0.4.4", 50000, "10.0.2.20", 8080)]
    lines = [line for c in conns for line in aws_records(c)]
    a = ingest([str(write(tmp_path / "a.log", AWS_V5_HEADER + "\n" + "\n".join(lines)))],
               str(tmp_path / "a.jsonl"))
    b = ingest([str(write(tmp_path / "b.log", AWS_V5_HEADER + "\n" + "\n".join(lines[::-1])))],
               str(tmp_path / "b.jsonl"))
    assert a.flows == b.flows == 3
    strip = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()[1:]]
    again = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()[1:]]
    assert strip == again


def test_reports_in_different_files_fold_together(tmp_path: Path) -> None:
    """The client's interface in one file, the server's in another (one S3 object per
    interface and window): still one connection, counted once."""
    lines = aws_records(WEB)
    first = write(tmp_path / "eni-client.log", AWS_V5_HEADER + "\n" + "\n".join(lines[:2]))
    second = write(tmp_path / "eni-server.log", AWS_V5_HEADER + "\n" + "\n".join(lines[2:]))
    header, flows, _dns = records([first, second])
    (flow,) = flows
    assert (flow["packets_to_server"], flow["packets_to_client"]) == (5, 4)
    assert header["sources"] == ["eni-client.log", "eni-server.log"]


def test_windows_add_up_per_interface_and_the_busiest_interface_counts(tmp_path: Path) -> None:
    """Interface A saw two windows (3 + 4 packets), interface B one window of 6: the client
    sent at least 7 packets."""
    rows = [
        "5 1 eni-a 10.0.1.15 10.0.2.20 51000 8080 6 3 300 1700000000 1700000050 ACCEPT OK 2 "
        "10.0.1.15 10.0.2.20 egress",
        "5 1 eni-a 10.0.1.15 10.0.2.20 51000 8080 6 4 400 1700000060 1700000090 ACCEPT OK 0 "
        "10.0.1.15 10.0.2.20 egress",
        "5 1 eni-b 10.0.1.15 10.0.2.20 51000 8080 6 6 650 1700000000 1700000090 ACCEPT OK 2 "
        "10.0.1.15 10.0.2.20 ingress",
    ]
    _h, flows = _fold(tmp_path, AWS_V5_HEADER + "\n" + "\n".join(rows) + "\n")
    (flow,) = flows
    assert (flow["packets_to_server"], flow["bytes_to_server"]) == (7, 700)
    assert (flow["first_seen"], flow["last_seen"]) == (1700000000.0, 1700000090.0)


def test_packet_addresses_win_over_the_interface_addresses(tmp_path: Path) -> None:
    """On an EKS node, srcaddr / dstaddr are the node interface's primary address; the pods
    are pkt-srcaddr / pkt-dstaddr. A ``-`` there falls back to srcaddr / dstaddr."""
    rows = [
        "5 1 eni-node 192.168.1.10 192.168.2.10 51000 5432 6 3 300 1700000000 1700000010 "
        "ACCEPT OK 2 10.244.1.7 10.244.2.9 egress",
        "5 1 eni-node 192.168.2.10 192.168.1.10 5432 51000 6 3 300 1700000000 1700000010 "
        "ACCEPT OK 18 10.244.2.9 10.244.1.7 ingress",
        "5 1 eni-other 192.168.1.10 192.168.3.3 40000 53 17 1 60 1700000000 1700000010 "
        "ACCEPT OK 0 - - egress",
    ]
    _h, flows = _fold(tmp_path, AWS_V5_HEADER + "\n" + "\n".join(rows) + "\n")
    assert sorted(_key(f) for f in flows) == [
        ("10.244.1.7", 51000, "10.244.2.9", 5432, "TCP"),
        ("192.168.1.10", 40000, "192.168.3.3", 53, "UDP"),
    ]


@pytest.mark.parametrize(("flags", "client", "direction", "handshake"), [
    ((2, 18), "10.0.1.15", "handshake", True),  # SYN from the client, SYN-ACK back
    (("-", 18), "10.0.1.15", "handshake", False),  # only the SYN-ACK: its receiver opened
    ((0, 0), "10.0.1.15", "port-heuristic", False),  # ACK-only windows: 8080 < 51000 serves
    ((18, 18), "10.0.1.15", "port-heuristic", False),  # contradictory: fall back to ports
    ((4, 0), "10.0.1.15", "port-heuristic", False),  # a RST says nothing about who opened
])
def test_tcp_flags_decide_the_client(tmp_path: Path, flags: tuple[Any, Any], client: str,
                                     direction: str, handshake: bool) -> None:
    c2s, s2c = flags
    rows = [
        f"5 1 eni-a 10.0.1.15 10.0.2.20 51000 8080 6 3 300 1700000000 1700000010 ACCEPT OK "
        f"{c2s} 10.0.1.15 10.0.2.20 egress",
        f"5 1 eni-a 10.0.2.20 10.0.1.15 8080 51000 6 3 300 1700000000 1700000010 ACCEPT OK "
        f"{s2c} 10.0.2.20 10.0.1.15 ingress",
    ]
    _h, flows = _fold(tmp_path, AWS_V5_HEADER + "\n" + "\n".join(rows) + "\n")
    (flow,) = flows
    assert (flow["client"], flow["direction"], flow["handshake"]) == (client, direction,
                                                                      handshake)


def test_a_syn_ack_alone_names_a_client_on_the_higher_port(tmp_path: Path) -> None:
    """A server on an ephemeral-looking port (a SYN-ACK from port 60000 to port 443): the
    flags win over the port heuristic."""
    row = ("5 1 eni-a 10.0.9.9 10.0.1.1 60000 443 6 1 60 1700000000 1700000001 ACCEPT OK 18 "
           "10.0.9.9 10.0.1.1 egress")
    _h, flows = _fold(tmp_path, AWS_V5_HEADER + "\n" + row + "\n")
    (flow,) = flows
    assert (flow["client"], flow["client_port"], flow["server_port"]) == ("10.0.1.1", 443, 60000)
    assert (flow["packets_to_client"], flow["packets_to_server"]) == (1, 0)
    assert flow["resets"] == 0


def test_port_heuristic_without_flags(tmp_path: Path) -> None:
    """Version 2 has no flags: the lower port serves; with equal ports, the end whose records
    start first is the client."""
    rows = [
        *aws_default_records(Conn("UDP", "10.0.1.15", 40000, "10.0.3.3", 53)),
        "2 1 eni-a 10.0.5.5 10.0.6.6 123 123 17 1 76 1700000005 1700000009 ACCEPT OK",
        "2 1 eni-a 10.0.6.6 10.0.5.5 123 123 17 1 76 1700000002 1700000009 ACCEPT OK",
    ]
    _h, flows = _fold(tmp_path, "\n".join(rows) + "\n")
    assert sorted(_key(f) for f in flows) == [
        ("10.0.1.15", 40000, "10.0.3.3", 53, "UDP"),
        ("10.0.6.6", 123, "10.0.5.5", 123, "UDP"),
    ]
    assert {f["direction"] for f in flows} == {"port-heuristic"}


def test_accepted_and_rejected_directions_give_a_record_each(tmp_path: Path) -> None:
    lines = aws_records(WEB)
    lines[3] = lines[3].replace("ACCEPT", "REJECT")  # the server's interface drops replies
    _h, flows = _fold(tmp_path, AWS_V5_HEADER + "\n" + "\n".join(lines) + "\n")
    by_verdict = {f["verdict"]: f for f in flows}
    assert sorted(by_verdict) == ["dropped", "forwarded"]
    assert {_key(f) for f in flows} == {_key(by_verdict["forwarded"])}
    assert (by_verdict["dropped"]["packets_to_client"],
            by_verdict["dropped"]["packets_to_server"]) == (4, 0)
    assert by_verdict["forwarded"]["packets_to_server"] == 5


def test_nodata_and_skipdata_are_never_flows(tmp_path: Path) -> None:
    rows = [
        "2 1 eni-a - - - - - - - 1700000000 1700000060 - NODATA",
        "2 1 eni-a - - - - - - - 1700000000 1700000060 - SKIPDATA",
        # A NODATA record with traffic fields filled (as Elastic's ECS samples have): skipped.
        "2 1 eni-a 10.0.0.1 10.0.0.2 40000 80 6 5 500 1700000000 1700000060 ACCEPT NODATA",
        *aws_default_records(WEB),
    ]
    header, flows = _fold(tmp_path, "\n".join(rows) + "\n")
    assert header["stats"]["skipped"] == {"nodata": 2, "skipdata": 1}
    assert [_key(f) for f in flows] == [(WEB.client, WEB.cport, WEB.server, WEB.sport, "TCP")]


def test_other_ip_protocols_are_skipped(tmp_path: Path) -> None:
    rows = ["2 1 eni-a 10.0.0.1 10.0.0.2 0 0 47 5 500 1700000000 1700000060 ACCEPT OK",
            *aws_default_records(WEB)]
    header, flows = _fold(tmp_path, "\n".join(rows) + "\n")
    assert header["stats"]["skipped"] == {"unsupported-protocol": 1}
    assert len(flows) == 1


# -- generated records: the JSON shapes --------------------------------------------------------

def test_cloudwatch_subscription_batches_and_message_lines(tmp_path: Path) -> None:
    lines = aws_default_records(WEB)
    batch = {"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "vpc-flows",
             "logStream": "eni-client-all", "subscriptionFilters": ["all"],
             "logEvents": [{"id": "1", "timestamp": 1700000030000, "message": lines[0]}]}
    control = {"messageType": "CONTROL_MESSAGE", "logEvents": [
        {"id": "", "timestamp": 1700000000000, "message": "CWL CONTROL MESSAGE: Checking health"}]}
    text = "\n".join([json.dumps(batch), json.dumps(control), json.dumps({"message": lines[1]})])
    path = write(tmp_path / "cwl.json", text + "\n")
    assert detect(str(path))[1].name == "aws-vpc"
    _h, flows, _d = records([path])
    (flow,) = flows
    assert (flow["packets_to_server"], flow["packets_to_client"]) == (5, 4)


def test_records_as_objects_with_parquet_column_names(tmp_path: Path) -> None:
    """A Parquet file's rows as JSON objects: ``_`` for ``-`` in names, integers as numbers,
    null for ``-``."""
    names = AWS_V5_HEADER.split()
    rows = [dict(zip([n.replace("-", "_") for n in names], r.split(), strict=True))
            for r in aws_records(WEB)]
    for row in rows:
        for key in ("version", "srcport", "dstport", "protocol", "packets", "bytes", "start",
                    "end", "tcp_flags"):
            row[key] = int(row[key])
    rows[0]["pkt_srcaddr"] = None  # falls back to srcaddr
    path = write(tmp_path / "rows.json", "".join(json.dumps(r) + "\n" for r in rows))
    assert detect(str(path))[1].name == "aws-vpc"
    _h, flows, _d = records([path])
    (flow,) = flows
    assert (_key(flow), flow["handshake"]) == ((WEB.client, WEB.cport, WEB.server, WEB.sport,
                                                "TCP"), True)


def test_gzip_and_a_damaged_gzip(tmp_path: Path) -> None:
    conns = [Conn("TCP", "10.0.1.15", 30000 + n, "10.0.2.20", 8080) for n in range(3000)]
    text = AWS_V5_HEADER + "\n" + "\n".join(r for c in conns for r in aws_records(c)) + "\n"
    packed = gzip.compress(text.encode())
    whole = tmp_path / "whole.log.gz"
    whole.write_bytes(packed)
    _h, flows, _d = records([whole])
    assert len(flows) == 3000
    # Cut past the 64 KiB the format is told by: the lines before the damage are used.
    cut = tmp_path / "cut.log.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    stats = ingest([str(cut)], str(tmp_path / "out.jsonl"))
    assert 0 < stats.flows < 3000
    (warning,) = stats.warnings
    assert warning.startswith(f"{cut} (line ") and "lines before it" in warning


# -- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    (AWS_V5_HEADER + "\n" + aws_records(WEB)[0] + " extra\n", "(line 2): 19 fields, but the "
                                                              "header line names 18"),
    ("2 1 eni-a 10.0.0.1 10.0.0.300 40000 80 6 5 500 1700000000 1700000060 ACCEPT OK\n",
     "(line 1): dstaddr '10.0.0.300' is not an IP address"),
    ("2 1 eni-a 10.0.0.1 10.0.0.3 40000 99999 6 5 500 1700000000 1700000060 ACCEPT OK\n",
     "(line 1): dstport '99999' is not a number from 0 to 65535"),
    ("2 1 eni-a 10.0.0.1 10.0.0.3 40000 80 6 5 500 1700000000 1700000060 ACCEPT MAYBE\n",
     "(line 1): log-status 'MAYBE'"),
    ("2 1 eni-a 10.0.0.1 10.0.0.3 40000 80 6 5 500 1700000060 1700000000 ACCEPT OK\n",
     "(line 1): end 1700000000 is before start 1700000060"),
    ("2 1 eni-a 10.0.0.1 10.0.0.3 40000 80 6 5 500 1700000000 1700000060 ALLOW OK\n",
     "(line 1): action 'ALLOW'"),
    ("2 1 eni-a - 10.0.0.3 40000 80 6 5 500 1700000000 1700000060 ACCEPT OK\n",
     "(line 1): no srcaddr"),
    (AWS_V5_HEADER + "\n" + aws_records(WEB)[0].replace("egress", "sideways") + "\n",
     "(line 2): flow-direction 'sideways'"),
    ("version srcaddr dstaddr srcport dstport protocol start end start\n",
     "(line 1): header line names start twice"),
    ("2 1 eni-a 10.0.0.1 10.0.0.3 40000 80 6 5 500 1700000000 1700000060 ACCEPT OK x y z\n",
     "(line 1): 17 fields and no header line"),
    ('{"message": 5}\n', "(line 1): a JSON object that is neither a flow-log record"),
])
def test_bad_records_name_the_file_and_line(tmp_path: Path, text: str, expected: str) -> None:
    good = "\n".join(aws_default_records(WEB)) + "\n"
    # The bad line comes after good ones where it can (the header must stay first).
    if text.startswith(("version", AWS_V5_HEADER)):
        message = _error(tmp_path, text)
    else:
        message = _error(tmp_path, good + text)
        expected = expected.replace("(line 1)", "(line 3)")
    assert expected in message


def test_a_file_with_no_record_is_an_error(tmp_path: Path) -> None:
    message = _error(tmp_path, AWS_V5_HEADER + "\n\n")
    assert "no flow-log records" in message
    empty = tmp_path / "empty.log"
    empty.write_text("")
    with pytest.raises(CaptureError, match="empty file"):
        records([empty])


def test_same_input_same_bytes(tmp_path: Path) -> None:
    path = write(tmp_path / "f.log", AWS_V5_HEADER + "\n" + "\n".join(aws_records(WEB)) + "\n")
    ingest([str(path)], str(tmp_path / "1.jsonl"))
    ingest([str(path)], str(tmp_path / "2.jsonl"))
    assert (tmp_path / "1.jsonl").read_bytes() == (tmp_path / "2.jsonl").read_bytes()
