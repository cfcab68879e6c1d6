"""Zeek conn.log as a traffic source (capture/sources/zeek.py).

Real logs, read in place: ``shared/corpora/flows/zeek`` (Elastic's JSON test input, Zeek's TSV
btest baselines for Teredo tunnels and renamed columns) and ``shared/corpora/pcaps/zeek``
(Zeek's baselines beside the captures they were made from). Zeek's btest masks time stamps
(``XXXXXXXXXX.XXXXXX``) and some baselines are column-cut (no ``proto``, no ``#fields``); the
tests write a copy with times and, for the cut ones, the ``tcp`` their ``history`` shows, into
``tmp_path``. Generated logs come from ``flowlog_render`` (Zeek's ASCII writer layout).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from capture_pcapbuild import records
from flowlog_render import Conn, write, zeek_json, zeek_row, zeek_tsv

from capture.errors import CaptureError
from capture.sources import SOURCES, detect

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "corpora"
FLOWS = SHARED / "flows" / "zeek"
PCAPS = SHARED / "pcaps" / "zeek"
needs_flows = pytest.mark.skipif(not (FLOWS / "test-conn.log").is_file(),
                                 reason=f"Zeek log corpus not found at {FLOWS}")
needs_pcaps = pytest.mark.skipif(not (PCAPS / "baselines").is_dir(),
                                 reason=f"Zeek capture corpus not found at {PCAPS}")
MASK = "XXXXXXXXXX.XXXXXX"
T0 = 1_600_000_000.0

# Zeek's baselines and the captures they were made from (testing/btest in zeek/zeek).
BASELINES = {
    "core.tunnels.analyzer-confirmation": "tunnels/vxlan-encapsulated-http.pcap",
    "core.tunnels.geneve-47101": "tunnels/geneve-47101.pcap",
    "scripts.base.protocols.postgresql.greenhouse-app": "postgresql/greenhouse-app.pcap",
    "scripts.base.protocols.redis.django-cloud": "redis/django-cloud.pcapng",
    "scripts.base.protocols.postgresql.http-on-port-5432": "postgresql/http-on-port-5432.pcap",
    "scripts.base.protocols.postgresql.mysql-on-port-5432": "postgresql/mysql-on-port-5432.pcap",
    "scripts.base.protocols.postgresql.psql-aws-ssl-require":
        "postgresql/psql-aws-ssl-require.pcap",
}


def _key(f: dict[str, Any]) -> tuple[Any, ...]:
    return f["client"], f["client_port"], f["server"], f["server_port"], f["proto"]


def _unmasked(source: Path, tmp_path: Path) -> Path:
    """A copy of a btest baseline with real-looking times (and, when column-cut, the header
    and ``proto`` column of a whole log)."""
    lines = [ln for ln in source.read_text().splitlines() if not ln.startswith("### ")]
    if not any(ln.startswith("#fields") for ln in lines):
        names, *rows = lines
        columns = names.split("\t")
        extra = [c for c in ("ts", "proto") if c not in columns]
        values = {"ts": f"{T0:.6f}", "proto": "tcp"}  # the cut baselines are TCP services
        lines = ["#separator \\x09", "#path\tconn", "#fields\t" + "\t".join(columns + extra),
                 *(row + "".join("\t" + values[c] for c in extra) for row in rows)]
    out = []
    for n, line in enumerate(lines):
        out.append(line.replace(MASK, f"{T0 + n:.6f}"))
    return write(tmp_path / f"{source.parent.name}.conn.log", "\n".join(out) + "\n")


def _zeek(paths: list[Path]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    header, flows, _dns = records(paths)
    return header, flows


# -- real logs ---------------------------------------------------------------------------------

@needs_flows
def test_elastic_json_conn_log() -> None:
    path = FLOWS / "test-conn.log"
    assert detect(str(path))[1].name == "zeek"
    header, flows = _zeek([path])
    assert len(flows) == 18 and header["stats"]["skipped"] == {}
    by_port = {(f["client_port"], f["server_port"]): f for f in flows}
    # "^hCcdafA": Zeek flipped the ends (it saw the SYN-ACK first); the record is already
    # flipped and the responder's SYN-ACK ("h") names the client, as a capture would.
    flipped = by_port[(60810, 443)]
    assert (flipped["client"], flipped["direction"], flipped["handshake"]) == (
        "10.156.0.2", "handshake", False)
    assert (flipped["packets_to_server"], flipped["packets_to_client"]) == (1, 4)
    # A record whose ts is an ISO-8601 string.
    iso = by_port[(46408, 80)]
    assert iso["first_seen"] == 1623272113.160328 and iso["direction"] == "reported"
    icmp = next(f for f in flows if f["proto"] == "ICMP")
    assert (icmp["client_port"], icmp["server_port"]) == (None, None)
    assert all(f["sources"] == ["zeek"] and "verdict" not in f for f in flows)


@needs_flows
def test_teredo_tunnels(tmp_path: Path) -> None:
    """Inner IPv6 connections name their Teredo UDP connection in tunnel_parents: that one is
    not a record (as a capture's VXLAN underlay is not) and its hosts are the ``outer``."""
    log = _unmasked(FLOWS / "baselines/core.tunnels.teredo/conn.log", tmp_path)
    header, flows = _zeek([log])
    assert header["stats"]["skipped"] == {"tunnel": 3}
    assert len(flows) == 21 - 3
    http = next(f for f in flows if f["server_port"] == 80 and ":" in f["client"])
    assert _key(http) == ("2001:0:4137:9e50:8000:f12a:b9c8:2815", 1286,
                          "2001:4860:0:2001::68", 80, "TCP")
    assert http["outer"] == ["192.168.2.16", "83.170.1.38"]
    icmp6 = [f for f in flows if f["proto"] == "ICMPv6"]
    assert len(icmp6) == 3
    two_parents = next(f for f in icmp6 if f["server"] == "2001:4860:0:2001::68")
    assert two_parents["outer"] == ["192.168.2.16", "65.55.158.80", "83.170.1.38"]
    assert not any(f["server_port"] == 3544 for f in flows)


@needs_flows
def test_renamed_columns(tmp_path: Path) -> None:
    """Log::field_name_map renamed id.orig_h ... to src src_port dst dst_port."""
    log = _unmasked(FLOWS / "baselines/scripts.base.frameworks.logging.field-name-map/conn.log",
                    tmp_path)
    assert detect(str(log))[1].name == "zeek"
    _h, flows = _zeek([log])
    assert len(flows) == 34
    assert ("141.142.220.118", 35642, "208.80.152.2", 80, "TCP") in {_key(f) for f in flows}
    renamed_back = tmp_path / "named.log"
    renamed_back.write_text(log.read_text().replace(
        "#fields\tts\tuid\tsrc\tsrc_port\tdst\tdst_port",
        "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p"))
    assert _zeek([renamed_back])[1] == flows


@needs_flows
def test_only_this_source_claims_the_corpus(tmp_path: Path) -> None:
    for path in (FLOWS / "test-conn.log",
                 _unmasked(FLOWS / "baselines/core.tunnels.teredo/conn.log", tmp_path)):
        head = path.read_bytes()[:65536]
        assert [s.name for s in SOURCES if s.sniff(head)] == ["zeek"], path


@needs_pcaps
@pytest.mark.parametrize("baseline", sorted(BASELINES))
def test_conn_log_and_capture_agree(tmp_path: Path, baseline: str) -> None:
    """The capture ingested and Zeek's conn.log of it ingested agree on every connection's
    client, server, port and counts. Known differences, asserted as such:

    * direction labels: where the capture has no handshake (django-cloud starts mid-stream),
      the capture says ``port-heuristic`` and Zeek's record ``reported`` (Zeek takes the
      first packet's sender); both name the same client here. A baseline cut without its
      ``history`` column is ``reported`` throughout;
    * overlay tunnels: both make the inner flow the record with the underlay hosts as
      ``outer`` -- the capture by decapsulating, the conn.log by dropping the tunnel's own
      connection (skipped as ``tunnel``).
    """
    folder = PCAPS / "baselines" / baseline
    conn = next(folder / n for n in ("conn.log", "conn.cut") if (folder / n).is_file())
    _h, from_pcap = _zeek([PCAPS / BASELINES[baseline]])
    header, from_zeek = _zeek([_unmasked(conn, tmp_path)])
    assert {_key(f) for f in from_zeek} == {_key(f) for f in from_pcap}
    pcap_by_key = {_key(f): f for f in from_pcap}
    text = conn.read_text()
    for f in from_zeek:
        p = pcap_by_key[_key(f)]
        if "orig_pkts" in text:
            assert (f["packets_to_server"], f["bytes_to_server"], f["packets_to_client"],
                    f["bytes_to_client"]) == (p["packets_to_server"], p["bytes_to_server"],
                                              p["packets_to_client"], p["bytes_to_client"])
        assert f["outer"] == p["outer"]
        if p["direction"] == "handshake":
            # (psql-aws-ssl-require's baseline is cut without the history column.)
            assert f["direction"] == ("handshake" if "history" in text else "reported")
        else:
            assert (p["direction"], f["direction"]) == ("port-heuristic", "reported")
    tunnels = "tunnels" in BASELINES[baseline]
    assert header["stats"]["skipped"] == ({"tunnel": 1} if tunnels else {})


# -- generated logs ----------------------------------------------------------------------------

DB = Conn("TCP", "10.0.0.5", 41000, "10.0.9.9", 5432)
DNS = Conn("UDP", "10.0.0.5", 53535, "10.0.0.10", 53, start=1_700_000_100)


def test_tsv_and_json_read_the_same(tmp_path: Path) -> None:
    rows = [zeek_row(DB, "C1"), zeek_row(DNS, "C2")]
    _h, tsv = _zeek([write(tmp_path / "conn.log", zeek_tsv(rows))])
    _h, js = _zeek([write(tmp_path / "conn.json", zeek_json(rows))])
    assert tsv == js
    db = next(f for f in tsv if f["proto"] == "TCP")
    assert (db["direction"], db["handshake"], db["tls"]) == ("handshake", True, False)
    assert (db["first_seen"], db["last_seen"]) == (DB.start + 0.25, DB.start + 1.75)
    assert next(f for f in tsv if f["proto"] == "UDP")["direction"] == "reported"


def test_json_with_nested_id_and_underscored_names(tmp_path: Path) -> None:
    row = zeek_row(DB, "C1")
    nested = {k: v for k, v in row.items() if not k.startswith("id.")}
    nested["id"] = {"orig_h": DB.client, "orig_p": DB.cport, "resp_h": DB.server,
                    "resp_p": DB.sport}
    underscored = {k.replace(".", "_"): v for k, v in row.items()}
    _h, flows = _zeek([write(tmp_path / "a.json", json.dumps(nested) + "\n"),
                       write(tmp_path / "b.json", json.dumps(underscored) + "\n")])
    assert [_key(f) for f in flows] == [(DB.client, DB.cport, DB.server, DB.sport, "TCP")] * 2


@pytest.mark.parametrize(("history", "proto", "direction", "handshake", "resets"), [
    ("ShADadFf", "tcp", "handshake", True, 0),
    ("S", "tcp", "handshake", False, 0),
    ("^hADadfF", "tcp", "handshake", False, 0),  # flipped: the responder's SYN-ACK was first
    ("^dA", "tcp", "port-heuristic", False, 0),  # flipped on ports alone
    ("DdAR", "tcp", "reported", False, 1),
    ("ShADadRr", "tcp", "handshake", True, 2),
    ("^d", "udp", "port-heuristic", False, 0),
    ("Dd", "udp", "reported", False, 0),
])
def test_history_decides_the_direction_basis(tmp_path: Path, *, history: str, proto: str,
                                             direction: str, handshake: bool,
                                             resets: int) -> None:
    row = {**zeek_row(DB, "C1"), "history": history, "proto": proto}
    _h, (flow,) = _zeek([write(tmp_path / "conn.json", json.dumps(row) + "\n")])
    assert (flow["client"], flow["direction"], flow["handshake"], flow["resets"]) == (
        DB.client, direction, handshake, resets)


def test_service_ssl_is_tls_and_unset_counts_are_zero(tmp_path: Path) -> None:
    row = {**zeek_row(DB, "C1"), "service": "postgresql,ssl", "orig_pkts": None,
           "orig_ip_bytes": None, "duration": None}
    _h, (flow,) = _zeek([write(tmp_path / "conn.log", zeek_tsv([row]))])
    assert (flow["tls"], flow["sni"], flow["packets_to_server"], flow["bytes_to_server"]) == (
        True, None, 0, 0)
    assert flow["last_seen"] == flow["first_seen"]


def test_other_separator_and_empty_sets(tmp_path: Path) -> None:
    text = zeek_tsv([zeek_row(DB, "C1")]).replace("\t", "|").replace(
        "#separator \\x09", "#separator \\x7c")
    assert "|(empty)" in text
    _h, flows = _zeek([write(tmp_path / "conn.log", text)])
    assert [_key(f) for f in flows] == [(DB.client, DB.cport, DB.server, DB.sport, "TCP")]


def test_unknown_transport_is_skipped(tmp_path: Path) -> None:
    rows = [zeek_row(DB, "C1"), {**zeek_row(DNS, "C2"), "proto": "unknown_transport"}]
    header, flows = _zeek([write(tmp_path / "conn.json", zeek_json(rows))])
    assert header["stats"]["skipped"] == {"unsupported-protocol": 1} and len(flows) == 1


def test_other_zeek_logs_are_not_conn_logs(tmp_path: Path) -> None:
    dns_tsv = zeek_tsv([zeek_row(DNS, "C2")]).replace("#path\tconn", "#path\tdns")
    dns_json = json.dumps({"ts": 1.5, "uid": "C2", "id.orig_h": "10.0.0.5", "id.orig_p": 5353,
                           "id.resp_h": "10.0.0.10", "id.resp_p": 53, "proto": "udp",
                           "trans_id": 7, "query": "example.com"}) + "\n"
    for name, text in (("dns.log", dns_tsv), ("dns.json", dns_json)):
        with pytest.raises(CaptureError, match="formats read"):
            records([write(tmp_path / name, text)])


@pytest.mark.parametrize(("mangle", "expected"), [
    (lambda t: t.replace("10.0.9.9", "10.0.9.999"), "(line 10): id.resp_h '10.0.9.999'"),
    (lambda t: t.replace("\t5432\t", "\t99999\t"), "(line 10): id.resp_p '99999'"),
    (lambda t: t.replace("\ttcp\t", "\tgre\t"), "(line 10): proto 'gre' is none of"),
    (lambda t: t.replace("\t1.500000\t", "\tlong\t", 2).replace("\tlong\t", "\t1.5\t", 1),
     "(line 10): duration 'long'"),
    (lambda t: t.replace("\tShADadFf\t", "\tShADadFf\textra\t"), "(line 10): 22 columns"),
    (lambda t: t.replace(f"{DB.start + 0.25:.6f}", "2023-11-14T22:13:20"),
     "(line 10): ts '2023-11-14T22:13:20' is neither epoch seconds nor an ISO-8601 time with "
     "a zone"),
    (lambda t: t.replace("\tid.resp_p\t", "\tresp_port\t"), "(line 7): #fields lacks "
                                                             "id.resp_p"),
])
def test_bad_lines_name_the_file_and_line(tmp_path: Path, mangle: Any, expected: str) -> None:
    text = mangle(zeek_tsv([zeek_row(DNS, "C0"), zeek_row(DB, "C1")]))
    path = write(tmp_path / "conn.log", text)
    with pytest.raises(CaptureError) as err:
        records([path])
    assert str(err.value).startswith(f"{path} ") and expected in str(err.value)


def test_a_log_without_connections_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "conn.log", zeek_tsv([]))
    with pytest.raises(CaptureError, match=r"no connections in the conn\.log"):
        records([path])
    header_only = "\n".join(zeek_tsv([]).splitlines()[:7]) + "\n"  # up to #fields
    assert header_only.splitlines()[-1].startswith("#fields")
    with pytest.raises(CaptureError, match="no connections"):
        records([write(tmp_path / "fields.log", header_only)])

