"""Against real public captures (``shared/corpora/pcaps`` beside the repository, see its README).

Ground truth:

* Zeek's ``conn.log`` baselines (orig = client, resp = server, packets and IP bytes each way),
  and ``ssl`` baselines for the SNI;
* Arkime's expected sessions (source = client, packets each way);
* tshark's conversation list and packet counts (``*-derived-by-tshark.*``).

Deliberate differences, excluded from the comparison and checked as such:

* Overlay tunnels: Zeek (and tshark) also report the underlay UDP connection (VXLAN port 4789,
  Geneve port 6081) as a connection of its own. We decapsulate: only the inner flow is a record,
  and the underlay host addresses are in its ``outer`` field.
* A flow idle for more than 300 s is split into several records (the NetBIOS broadcasts in
  ``grpc-packt/Unary.pcapng``); conversation totals are compared over all records of a 5-tuple.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from capture_pcapbuild import records

CORPUS = (Path(__file__).resolve().parents[2] / "../shared/corpora/pcaps").resolve()
pytestmark = pytest.mark.skipif(
    not (CORPUS / "README.md").is_file(),
    reason=f"public capture corpus not found at {CORPUS} (the 'shared' folder beside the repo)",
)

BASELINES = {
    "core.tunnels.analyzer-confirmation": "zeek/tunnels/vxlan-encapsulated-http.pcap",
    "core.tunnels.geneve-47101": "zeek/tunnels/geneve-47101.pcap",
    "scripts.base.protocols.postgresql.greenhouse-app": "zeek/postgresql/greenhouse-app.pcap",
    "scripts.base.protocols.redis.django-cloud": "zeek/redis/django-cloud.pcapng",
    "scripts.base.protocols.postgresql.http-on-port-5432": "zeek/postgresql/http-on-port-5432.pcap",
    "scripts.base.protocols.postgresql.mysql-on-port-5432":
        "zeek/postgresql/mysql-on-port-5432.pcap",
    "scripts.base.protocols.postgresql.psql-aws-ssl-require":
        "zeek/postgresql/psql-aws-ssl-require.pcap",
}
TUNNEL_SERVICES = {"vxlan", "geneve"}
TUNNEL_PORTS = {4789, 6081}


def _zeek_log(path: Path) -> list[dict[str, str]]:
    """Rows of a Zeek TSV log: full (``#fields``) or column-cut (header line) form."""
    fields: list[str] | None = None
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif line.startswith("#") or not line.strip():
            continue
        elif fields is None:
            fields = line.split("\t")
        else:
            rows.append(dict(zip(fields, line.split("\t"), strict=True)))
    return rows


def _conn_log(name: str) -> list[dict[str, str]]:
    folder = CORPUS / "zeek/baselines" / name
    for candidate in ("conn.log", "conn.cut"):
        if (folder / candidate).is_file():
            return _zeek_log(folder / candidate)
    raise AssertionError(f"no conn baseline in {folder}")


def _ingest(rel: str, **kwargs: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    header, flows, _dns = records([CORPUS / rel], **kwargs)
    return header, flows


@pytest.mark.parametrize("baseline", sorted(BASELINES))
def test_flows_match_zeek_connections(baseline: str) -> None:
    header, flows = _ingest(BASELINES[baseline])
    ours = {(f["client"], f["client_port"], f["server"], f["server_port"], f["proto"].lower()): f
            for f in flows if f["proto"] in ("TCP", "UDP")}
    zeek = {}
    tunnels = []
    for row in _conn_log(baseline):
        proto = row.get("proto", "tcp")  # the column-cut baselines are all TCP services
        key = (row["id.orig_h"], int(row["id.orig_p"]), row["id.resp_h"], int(row["id.resp_p"]),
               proto)
        if row.get("service") in TUNNEL_SERVICES or (proto == "udp"
                                                     and key[3] in TUNNEL_PORTS):
            tunnels.append(key)
            continue
        zeek[key] = row
    assert set(ours) == set(zeek)
    for key, row in zeek.items():
        flow = ours[key]
        if "orig_pkts" in row:
            assert (flow["packets_to_server"], flow["bytes_to_server"]) == (
                int(row["orig_pkts"]), int(row["orig_ip_bytes"])), key
            assert (flow["packets_to_client"], flow["bytes_to_client"]) == (
                int(row["resp_pkts"]), int(row["resp_ip_bytes"])), key
        if row.get("tunnel_parents", "-") != "-":
            # The deliberate difference: the underlay connection is not a record of its own;
            # its hosts are the flow's "outer" addresses.
            (outer,) = tunnels
            assert flow["outer"] == sorted({outer[0], outer[2]})
    assert header["stats"]["skipped"] == {}


def test_sni_matches_zeek_ssl_log() -> None:
    rows = _zeek_log(CORPUS / "zeek/baselines/scripts.base.protocols.postgresql."
                     "psql-aws-ssl-require/ssl.cut")
    _h, flows = _ingest("zeek/postgresql/psql-aws-ssl-require.pcap")
    assert [(f["tls"], f["sni"]) for f in flows] == [(True, rows[0]["server_name"])]


def test_geneve_inner_tls_and_outer() -> None:
    _h, flows = _ingest("zeek/tunnels/geneve-47101.pcap")
    assert [(f["sni"], f["outer"], f["handshake"]) for f in flows] == [
        ("www.kernel.org", ["127.0.0.1"], True)]


def _arkime_cases() -> list[Path]:
    return sorted((CORPUS / "arkime").glob("*.test.json")) if CORPUS.is_dir() else []


@pytest.mark.parametrize("expected", _arkime_cases(), ids=lambda p: p.name)
def test_flows_match_arkime_sessions(expected: Path) -> None:
    sessions = json.loads(expected.read_text())["sessions3"]
    _h, flows = _ingest(f"arkime/{expected.name.replace('.test.json', '.pcap')}")
    want = sorted(
        (s["body"]["source"]["ip"], s["body"]["source"]["port"], s["body"]["destination"]["ip"],
         s["body"]["destination"]["port"], s["body"]["source"]["packets"],
         s["body"]["destination"]["packets"])
        for s in sessions
    )
    got = sorted((f["client"], f["client_port"], f["server"], f["server_port"],
                  f["packets_to_server"], f["packets_to_client"]) for f in flows)
    assert got == want


def _tshark_conversations() -> dict[str, dict[frozenset[tuple[str, int]], int]]:
    out: dict[str, dict[frozenset[tuple[str, int]], int]] = {}
    current = ""
    text = (CORPUS / "CONVERSATIONS-derived-by-tshark.txt").read_text()
    for line in text.splitlines():
        if line.startswith("== "):
            current = line[3:].strip()
            out[current] = {}
            continue
        m = re.match(r"\s+(\S+):(\d+) <-> (\S+):(\d+)\s+frames=(\d+)", line)
        if m:
            a, b = (m[1], int(m[2])), (m[3], int(m[4]))
            out[current][frozenset((a, b))] = int(m[5])
    return out


def _summary() -> list[dict[str, str]]:
    with open(CORPUS / "SUMMARY-derived-by-tshark.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_every_capture_matches_tshark() -> None:
    conversations = _tshark_conversations()
    summary = _summary()
    assert len(summary) >= 30
    for row in summary:
        rel = row["file"]
        header, flows = _ingest(rel)
        assert header["stats"]["packets"] == int(row["packets"]), rel
        # Conversations: TCP / UDP endpoint pairs with their frame counts.
        ours: dict[frozenset[tuple[str, int]], int] = defaultdict(int)
        for f in flows:
            if f["proto"] in ("TCP", "UDP"):
                pair = frozenset(((f["client"], f["client_port"]), (f["server"], f["server_port"])))
                ours[pair] += f["packets_to_server"] + f["packets_to_client"]
        want = {pair: frames for pair, frames in conversations[rel].items()
                if not any(port in TUNNEL_PORTS for _ip, port in pair)}
        assert dict(ours) == want, rel


def test_readers_agree_on_every_capture() -> None:
    for row in _summary():
        assert _ingest(row["file"], fast=True) == _ingest(row["file"], fast=False), row["file"]


def test_well_known_directions() -> None:
    """Spot checks where the handshake is not in the capture or the server speaks first."""
    _h, flows = _ingest("zeek/redis/django-cloud.pcapng")  # no SYN: the lower port serves
    assert [(f["server_port"], f["direction"]) for f in flows] == [(10625, "port-heuristic")]
    _h, flows = _ingest("zeek/mysql/tls-12-amazon-rds.pcap")  # server greeting, SSL request
    assert [(f["server_port"], f["tls"]) for f in flows] == [(3306, True)]
    _h, flows = _ingest("grpc-packt/Unary.pcapng")
    grpc = [f for f in flows if f["server_port"] == 50051]
    assert [(f["client"], f["direction"], f["handshake"]) for f in grpc] == [
        ("::1", "handshake", True)]
