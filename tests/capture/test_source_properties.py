"""Invariants of the flow-log sources (Hypothesis).

* The same TCP / UDP connections, rendered as a capture (``capture_pcapbuild``) and as each
  flow-log format (``flowlog_render``), fold to the same (client, server, protocol, server
  port) set. The connections use an ephemeral client port above the server's, as real clients
  do: the formats that cannot say who opened a connection (GCP, AWS without tcp-flags) fall
  back to the port heuristic, which is right exactly then.
* AWS reports of a connection in any order and split over any number of windows fold to the
  same records, with the connection's totals.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from capture_pcapbuild import ether, handshake_flow, records, timed, udp, write_pcap
from flowlog_render import (
    AWS_V5_HEADER,
    Conn,
    aws_default_records,
    aws_records,
    azure_vnet_records,
    gcp_entries,
    gke,
    zeek_json,
    zeek_row,
    zeek_tsv,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from capture.ingest import ingest

Key = tuple[str, str, str, int]


@st.composite
def connections(draw: st.DrawFn) -> Conn:
    v6 = draw(st.booleans())
    a, b = draw(st.integers(1, 250)), draw(st.integers(1, 250))
    client = f"fd00:1::{a:x}" if v6 else f"10.1.0.{a}"
    server = f"fd00:2::{b:x}" if v6 else f"10.2.0.{b}"
    return Conn(
        proto=draw(st.sampled_from(["TCP", "UDP"])),
        client=client,
        cport=draw(st.integers(49152, 65535)),
        server=server,
        sport=draw(st.integers(1, 49151)),
        start=1_700_000_000 + draw(st.integers(0, 3600)),
        packets_c2s=draw(st.integers(1, 50)),
        bytes_c2s=draw(st.integers(40, 90_000)),
        packets_s2c=draw(st.integers(1, 50)),
        bytes_s2c=draw(st.integers(40, 90_000)),
    )


CONNECTION_SETS = st.lists(connections(), min_size=1, max_size=5,
                           unique_by=lambda c: (c.client, c.cport, c.server, c.sport, c.proto))


def _pcap(conns: list[Conn], folder: Path) -> Path:
    frames = []
    for c in conns:
        v6 = ":" in c.client
        if c.proto == "TCP":
            frames += [ether(p) for p in handshake_flow(c.client, c.server, c.cport, c.sport,
                                                        v6=v6)]
        else:
            frames += [ether(udp(c.client, c.server, c.cport, c.sport, b"q", v6=v6)),
                       ether(udp(c.server, c.client, c.sport, c.cport, b"a", v6=v6))]
    return write_pcap(folder / "capture.pcap", timed(frames))


def _renderings(conns: list[Conn], folder: Path) -> dict[str, Path]:
    files = {
        "aws-v5": AWS_V5_HEADER + "\n" + "\n".join(r for c in conns for r in aws_records(c)),
        "aws-v2": "\n".join(r for c in conns for r in aws_default_records(c)),
        "gcp": "".join(json.dumps(e) + "\n" for c in conns for e in gcp_entries(c)),
        "azure": json.dumps({"records": azure_vnet_records(conns)}),
        "zeek-tsv": zeek_tsv(zeek_row(c, f"C{n}") for n, c in enumerate(conns)),
        "zeek-json": zeek_json(zeek_row(c, f"C{n}") for n, c in enumerate(conns)),
    }
    out = {}
    for name, text in files.items():
        out[name] = folder / f"{name}.log"
        out[name].write_text(text + ("" if text.endswith("\n") else "\n"))
    out["pcap"] = _pcap(conns, folder)
    return out


def _keys(path: Path) -> set[Key]:
    _h, flows, _d = records([path])
    return {(f["client"], f["server"], f["proto"], f["server_port"]) for f in flows}


@settings(max_examples=30, deadline=None)
@given(CONNECTION_SETS)
def test_every_format_folds_to_the_same_connections(conns: list[Conn]) -> None:
    expected = {c.key for c in conns}
    with tempfile.TemporaryDirectory() as tmp:
        got = {name: _keys(path) for name, path in _renderings(conns, Path(tmp)).items()}
    assert got == dict.fromkeys(got, expected)


@st.composite
def windowed_reports(draw: st.DrawFn) -> tuple[Conn, list[str]]:
    """One connection's AWS reports, each direction's packets split over windows at each of
    two interfaces, in any order."""
    conn = draw(connections())
    lines = []
    for eni in ("eni-client", "eni-server"):
        for src, dst, sp, dp, packets, nbytes, flags in (
            (conn.client, conn.server, conn.cport, conn.sport, conn.packets_c2s,
             conn.bytes_c2s, 2),
            (conn.server, conn.client, conn.sport, conn.cport, conn.packets_s2c,
             conn.bytes_s2c, 18),
        ):
            windows = draw(st.integers(1, min(4, packets)))
            cuts = sorted(draw(st.lists(st.integers(1, packets - 1), min_size=windows - 1,
                                        max_size=windows - 1, unique=True))
                          if packets > 1 else [])
            bounds = [0, *cuts, packets]
            for w in range(len(bounds) - 1):
                share = bounds[w + 1] - bounds[w]
                part = nbytes * bounds[w + 1] // packets - nbytes * bounds[w] // packets
                start = conn.start + 60 * w
                number = 6 if conn.proto == "TCP" else 17
                first_flags = flags if (w == 0 and conn.proto == "TCP") else 0
                lines.append(f"5 1 {eni} {src} {dst} {sp} {dp} {number} {share} {part} "
                             f"{start} {start + 59} ACCEPT OK {first_flags} {src} {dst} -")
    return conn, draw(st.permutations(lines))


@settings(max_examples=60, deadline=None)
@given(windowed_reports())
def test_aws_reports_fold_to_the_connection_in_any_order(case: tuple[Conn, list[str]]) -> None:
    conn, lines = case
    with tempfile.TemporaryDirectory() as tmp:
        a = Path(tmp) / "a.log"
        a.write_text(AWS_V5_HEADER + "\n" + "\n".join(lines) + "\n")
        b = Path(tmp) / "b.log"
        b.write_text(AWS_V5_HEADER + "\n" + "\n".join(sorted(lines)) + "\n")
        _h, flows, _d = records([a])
        _h, again, _d = records([b])
    assert flows == again
    (flow,) = flows
    got: dict[str, Any] = {k: flow[k] for k in ("client", "server", "server_port",
                                                "packets_to_server", "bytes_to_server",
                                                "packets_to_client", "bytes_to_client")}
    assert got == {"client": conn.client, "server": conn.server, "server_port": conn.sport,
                   "packets_to_server": conn.packets_c2s, "bytes_to_server": conn.bytes_c2s,
                   "packets_to_client": conn.packets_s2c, "bytes_to_client": conn.bytes_s2c}


def test_segmenter_reads_what_every_source_writes(tmp_path: Path) -> None:
    """The flow files these sources write pass the planner's own flow-file reader, version-2
    fields included (GCP's pod identities and sampling, verdicts)."""
    from segmenter.flowfile import read_flow_file
    from segmenter.model import FlowVerdict

    conns = [Conn("TCP", "10.1.0.7", 50000, "10.2.0.9", 5432),
             Conn("UDP", "fd00:1::7", 50001, "fd00:2::9", 53)]
    files = _renderings(conns, tmp_path)
    files["gcp"].write_text("".join(
        json.dumps(e) + "\n" for c in conns
        for e in gcp_entries(c, client_gke=gke("shop", "web-1", "web"), disposition="ALLOWED")))
    for name, path in files.items():
        out = tmp_path / f"{name}.jsonl"
        ingest([str(path)], str(out))
        flow_file = read_flow_file(out)
        assert {(f.client, f.server, f.transport.value, f.server_port)
                for f in flow_file.flows} == {c.key for c in conns}, name
    gcp = read_flow_file(tmp_path / "gcp.jsonl").flows
    assert all(f.sampled and f.verdict is FlowVerdict.FORWARDED for f in gcp)
    assert {f.client_endpoint.workload_kind for f in gcp if f.client_endpoint} == {"Deployment"}
