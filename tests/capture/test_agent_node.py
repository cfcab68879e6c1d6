"""The agent's node-wide pieces without root: a packet seen on several interfaces counted once
(``Agent.packet_on``), ``--iface`` parsing, the retention of old flow files, the read-only file
server, a folder as an ingest input, and the receive buffer without CAP_NET_ADMIN.

Frames are built with scapy (tests/capture/capture_pcapbuild.py) and given a Linux cooked v2
header as the agent's ``any`` socket makes it (capture/links.py; the layout is
https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL2.html).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from capture_pcapbuild import T0, handshake_flow, tcp, udp
from scapy.layers.inet import IP, UDP
from scapy.packet import Packet

from capture.agent import SKIP_OTHER_INTERFACE, Agent, flow_file_name, snapshot_name
from capture.decode import LINKTYPE_LINUX_SLL2
from capture.errors import CaptureError
from capture.flowfile import merge_flow_files, read_flow_file
from capture.ingest import ingest
from capture.links import IfaceSelection, parse_ifaces, set_rcvbuf
from capture.retention import Retention, parse_age, parse_size, prune
from capture.serve import FlowFileServer
from capture.sources.folders import expand_inputs
from capture.table import NS

REPO = Path(__file__).resolve().parents[2]
HOST = "node-1"
PACKET_HOST, PACKET_OUTGOING = 0, 4
ETH_P_IP = 0x0800


def cooked(ip: Packet, ifindex: int, pkttype: int = PACKET_HOST) -> bytes:
    """The frame as the agent's SOCK_DGRAM socket hands it on: SLL2 header + IP packet."""
    header = struct.pack(">HHIHBB8s", ETH_P_IP, 0, ifindex, 1, pkttype, 6, b"\x02" * 6)
    return header + bytes(ip)


def make_agent(out: Path, **kwargs: Any) -> Agent:
    clock = [round(T0 * NS)]
    agent = Agent(str(out), host=HOST, iface="any", linktype=LINKTYPE_LINUX_SLL2,
                  clock=lambda: clock[0], **kwargs)
    agent.open()
    return agent


def counts(flows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted((f["proto"], f["client"], f["client_port"], f["server"], f["server_port"],
                   f["packets_to_server"], f["packets_to_client"], f["bytes_to_server"],
                   f["bytes_to_client"], f["direction"]) for f in flows)


# -- each packet once -------------------------------------------------------------------------


def test_a_packet_forwarded_between_interfaces_is_counted_once(tmp_path: Path) -> None:
    """Pod A (veth 5) talks to pod B (veth 7) on the node and to a remote pod (out the uplink,
    index 2): every packet is seen on two interfaces, in on one and out on the other, a few
    microseconds apart. The records equal those of pod A's veth alone."""
    local = handshake_flow("10.0.0.5", "10.0.0.7", 40000, 8080, request=b"GET", response=b"ok")
    remote = [udp("10.0.0.5", "10.9.0.3", 5353, 53, b"q"), udp("10.9.0.3", "10.0.0.5", 53, 5353,
                                                               b"a")]
    both = make_agent(tmp_path / "both")
    alone = make_agent(tmp_path / "alone")
    t = round(T0 * NS)
    for i, ip in enumerate([*local, *remote]):
        t += NS // 100
        from_a = IP(bytes(ip)).src == "10.0.0.5"
        other = 7 if ip in local else 2
        first, second = (5, other) if from_a else (other, 5)
        both.packet_on(cooked(ip, first), t, first)
        both.packet_on(cooked(ip, second, PACKET_OUTGOING), t + 3_000 + i, second)
        alone.packet_on(cooked(ip, 5), t, 5)
    both.flush(final=True)
    alone.flush(final=True)
    got = read_flow_file(both.files[-1])
    want = read_flow_file(alone.files[-1])
    assert counts(got.flows) == counts(want.flows)
    assert len(got.flows) == 2
    n = len(local) + len(remote)
    assert got.header["stats"]["packets"] == 2 * n
    assert got.header["stats"]["skipped"] == {SKIP_OTHER_INTERFACE: n}


def test_each_direction_has_its_own_interface(tmp_path: Path) -> None:
    """With eBPF redirects into the pods (Cilium's BPF host routing), a pod's veth sees only
    what the pod sends: the request only on A's veth, the reply only on B's. Both count."""
    agent = make_agent(tmp_path / "out")
    t = round(T0 * NS)
    for ip in handshake_flow("10.0.0.5", "10.0.0.7", 40000, 8080, request=b"x", response=b"y"):
        t += NS // 1000
        index = 5 if IP(bytes(ip)).src == "10.0.0.5" else 7
        agent.packet_on(cooked(ip, index), t, index)
    agent.flush(final=True)
    (flow,) = read_flow_file(agent.files[-1]).flows
    assert flow["direction"] == "handshake" and flow["client"] == "10.0.0.5"
    assert flow["packets_to_server"] >= 3 and flow["packets_to_client"] >= 2
    assert agent.table.skipped == {}


def test_ownership_moves_only_after_the_owner_is_quiet(tmp_path: Path) -> None:
    agent = make_agent(tmp_path / "out")
    ping = udp("10.0.0.5", "10.0.0.7", 6000, 9999, b"p")
    t = round(T0 * NS)
    agent.packet_on(cooked(ping, 5), t, 5)
    agent.packet_on(cooked(ping, 7), t + NS // 2, 7)  # within a second: the same packet
    agent.packet_on(cooked(ping, 7), t + 3 * NS, 7)  # the owner quiet for 3 s: a new packet
    agent.packet_on(cooked(ping, 5), t + 3 * NS + 1000, 5)  # ... seen again on 5
    agent.flush(final=True)
    (flow,) = read_flow_file(agent.files[-1]).flows
    assert flow["packets_to_server"] == 2
    assert agent.skipped == {SKIP_OTHER_INTERFACE: 2}


def test_the_ownership_table_is_bounded(tmp_path: Path) -> None:
    agent = make_agent(tmp_path / "out", max_flows=5)
    assert agent.max_owners == 20
    t = round(T0 * NS)
    for port in range(100):
        t += NS * 2  # each direction idle long before the next comes
        agent.packet_on(cooked(udp("10.0.0.5", "10.0.0.7", 7000 + port, 53, b"q"), 5), t, 5)
        assert len(agent.owners) <= agent.max_owners
    agent.clock = lambda: t + NS // 2
    agent.flush()
    assert len(agent.owners) == 1  # idle ones are forgotten at every flush


# -- --iface -----------------------------------------------------------------------------------


def test_iface_values() -> None:
    assert parse_ifaces(["any"]) == IfaceSelection(any=True)
    sel = parse_ifaces(["cali*", "lxc*", "eth0", "cali*"])
    assert (sel.names, sel.patterns) == (("eth0",), ("cali*", "lxc*"))
    assert sel.describe() == "eth0,cali*,lxc*" and sel.single is None
    assert sel.matches("cali12ab") and sel.matches("eth0") and not sel.matches("eth1")
    assert parse_ifaces("cni0").single == "cni0"
    for bad, message in ((["any", "eth0"], "give it alone"), ([""], "not an interface"),
                         (["a" * 16], "not an interface"), (["a/b"], "not an interface"),
                         ([], "no interface given")):
        with pytest.raises(CaptureError, match=message):
            parse_ifaces(bad)


def test_the_receive_buffer_without_net_admin_is_said(tmp_path: Path) -> None:
    """As root, SO_RCVBUFFORCE works; without CAP_NET_ADMIN (dropped with setpriv) the agent
    falls back to net.core.rmem_max, says so in its log and in every file header."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        buf = set_rcvbuf(s, 4 << 20)
    if os.geteuid() == 0:
        assert buf.forced and buf.granted == 4 << 20
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to run the agent without CAP_NET_ADMIN")
    limit = int(Path("/proc/sys/net/core/rmem_max").read_text())
    if limit >= 8 << 20:
        pytest.skip("net.core.rmem_max already allows the 8 MiB asked")
    out = tmp_path / "out"
    proc = subprocess.run(
        [setpriv, "--bounding-set", "-net_admin", "--inh-caps", "-net_admin", sys.executable,
         "-m", "capture", "capture", "--iface", "lo", "-o", str(out), "--duration", "0.5",
         "--host", HOST], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "without CAP_NET_ADMIN the kernel caps it at net.core.rmem_max" in proc.stderr
    assert "(no CAP_NET_ADMIN)" in proc.stderr
    header = read_flow_file(str(out / flow_file_name(HOST, 1))).header["agent"]
    assert header["net_admin"] is False and 0 < header["rcvbuf"] <= limit


# -- retention ---------------------------------------------------------------------------------


def _files(out: Path, sizes: Sequence[int], *, ages: Sequence[float] = (), now: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for i, size in enumerate(sizes, start=1):
        path = out / flow_file_name(HOST, i)
        path.write_bytes(b"x" * size)
        age = ages[i - 1] if ages else 0.0
        os.utime(path, (now - age, now - age))


def test_prune_by_age_and_size_never_the_newest(tmp_path: Path) -> None:
    now = T0
    out = tmp_path / "out"
    _files(out, [100, 100, 100, 100], ages=[9000, 8000, 10, 5], now=now)
    (out / snapshot_name(HOST)).write_bytes(b"s" * 50)
    (out / flow_file_name("other-node", 1)).write_bytes(b"o" * 1000)
    gone = prune(str(out), HOST, Retention(max_age=3600), now, snapshot_name(HOST))
    assert [(p.name, p.reason) for p in gone] == [(flow_file_name(HOST, 1), "age"),
                                                  (flow_file_name(HOST, 2), "age")]
    # 200 bytes of numbered files + 50 of snapshot > 200: the oldest goes, the newest stays.
    gone = prune(str(out), HOST, Retention(max_bytes=200), now, snapshot_name(HOST))
    assert [(p.name, p.reason) for p in gone] == [(flow_file_name(HOST, 3), "size")]
    gone = prune(str(out), HOST, Retention(max_bytes=1, max_age=1), now, snapshot_name(HOST))
    assert gone == []  # only the newest is left
    assert sorted(p.name for p in out.iterdir()) == sorted([
        flow_file_name(HOST, 4), snapshot_name(HOST), flow_file_name("other-node", 1)])
    assert prune(str(out), HOST, Retention(), now) == []


def test_the_agent_prunes_after_each_file_and_keeps_numbering(tmp_path: Path) -> None:
    out = tmp_path / "out"
    agent = make_agent(out, retention=Retention(max_bytes=1))
    for i in range(4):
        agent.packet_on(cooked(udp("10.0.0.5", "10.0.0.7", 7000 + i, 53, b"q"), 5),
                        round(T0 * NS) + i, 5)
        agent.flush(final=True)
    assert [p.name for p in sorted(out.glob("*.jsonl"))] == [flow_file_name(HOST, 4)]
    assert [p.name for p in agent.pruned] == [flow_file_name(HOST, i) for i in (1, 2, 3)]
    agent.close()
    again = make_agent(out)
    assert again.seq == 4  # a restart continues after the newest, which is always kept


def test_sizes_and_ages() -> None:
    assert parse_size("1048576") == 1 << 20
    assert parse_size("500Mi") == 500 << 20 and parse_size("1G") == 10**9
    assert parse_size("2GiB") == 2 << 30 and parse_size("1.5Ki") == 1536
    assert parse_age("90") == 90 and parse_age("15m") == 900 and parse_age("7d") == 604800
    for bad in ("", "lots", "-1", "1Q", "0"):
        with pytest.raises(ValueError, match=r"size|at least one byte"):
            parse_size(bad)
    for bad in ("", "soon", "0", "5w"):
        with pytest.raises(ValueError, match=r"duration|positive"):
            parse_age(bad)


# -- the file server ---------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[FlowFileServer, Path]]:
    out = tmp_path / "out"
    agent = make_agent(out)
    for i in range(2):
        agent.packet_on(cooked(udp("10.0.0.5", "10.0.0.7", 7000 + i, 53, b"q"), 5),
                        round(T0 * NS) + i, 5)
        agent.flush(final=True)
    agent.packet_on(cooked(tcp("10.0.0.5", "10.0.0.8", 7100, 443, "S"), 5),
                    round(T0 * NS) + 10, 5)
    agent.flush()  # the snapshot: not finished, never served
    (out / "sub").mkdir()
    (out / "sub" / flow_file_name(HOST, 9)).write_text("{}\n")
    (out / flow_file_name(HOST, 7)).symlink_to("/etc/hostname")
    (tmp_path / "secret.jsonl").write_text("secret\n")
    server = FlowFileServer(str(out), 0, host=HOST, address="127.0.0.1")
    server.start()
    try:
        yield server, out
    finally:
        server.close()
        agent.close()


def _get(server: FlowFileServer, path: str, method: str = "GET") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_serves_finished_files_only_read_only(
        served: tuple[FlowFileServer, Path]) -> None:
    server, out = served
    status, body = _get(server, "/index.json")
    assert status == 200
    listing = json.loads(body)
    assert (listing["format"], listing["version"], listing["host"]) == (
        "segmenter-agent-files", 1, HOST)
    names = [f["name"] for f in listing["files"]]
    assert names == [flow_file_name(HOST, 1), flow_file_name(HOST, 2)]
    for entry in listing["files"]:
        data = (out / entry["name"]).read_bytes()
        assert (entry["size"], entry["sha256"]) == (len(data),
                                                     hashlib.sha256(data).hexdigest())
        assert _get(server, "/" + entry["name"]) == (200, data)
    assert _get(server, "/" + names[0], "HEAD") == (200, b"")
    for path in ("/" + snapshot_name(HOST), f"/.flows-{HOST}.lock", "/../secret.jsonl",
                 "/%2e%2e/secret.jsonl", "/sub/" + flow_file_name(HOST, 9),
                 "/" + flow_file_name(HOST, 7), "/", "/files", "//etc/passwd"):
        status, _body = _get(server, path)
        assert status == 404, path
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert _get(server, "/" + names[0], method)[0] == 405
    assert (out / names[0]).exists()


def test_clients_outside_serve_allow_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    server = FlowFileServer(str(out), 0, host=HOST, address="127.0.0.1",
                            allow=[__import__("ipaddress").ip_network("10.0.0.0/8")])
    server.start()
    try:
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            _get(server, "/index.json")
        assert server.refused == {"127.0.0.1"}
        assert server.allowed("10.1.2.3") and server.allowed("::ffff:10.1.2.3")
        assert not server.allowed("192.168.0.1")
        with pytest.raises(CaptureError, match=f"cannot serve the flow files on port"
                                               f" {server.port}"):
            FlowFileServer(str(out), server.port, host=HOST, address="127.0.0.1")
    finally:
        server.close()


# -- a folder as an input ----------------------------------------------------------------------


def test_a_folder_is_the_files_in_it(tmp_path: Path) -> None:
    collected = tmp_path / "collected"
    agents = {}
    for node in ("node-b", "node-a"):
        agent = Agent(str(collected / node), host=node,
                      clock=lambda: round(T0 * NS))
        agent.open()
        frame = bytes(IP(src="10.0.0.5", dst="10.0.0.9") / UDP(sport=7000, dport=53) / b"q")
        agent.linktype = 101  # raw IP frames
        agent.packet(frame, round(T0 * NS))
        agent.flush(final=True)
        agent.close()
        agents[node] = agent
    (collected / "node-a" / ".flows-node-a.x.tmp").write_text("half a file")
    (collected / ".hidden").mkdir()
    (collected / ".hidden" / "junk").write_text("junk")
    files = expand_inputs([str(collected)])
    assert [Path(f).relative_to(collected).as_posix() for f in files] == [
        "node-a/flows-node-a-000001.jsonl", "node-b/flows-node-b-000001.jsonl"]
    stats = ingest([str(collected)], str(tmp_path / "flows.jsonl"))
    assert stats.flows == 2 and stats.sources == ("flows-node-a-000001.jsonl",
                                                  "flows-node-b-000001.jsonl")
    merged = merge_flow_files(files, str(tmp_path / "m.jsonl"))
    assert read_flow_file(str(tmp_path / "flows.jsonl")).flows == merged.flows
    (tmp_path / "empty" / ".only-hidden").mkdir(parents=True)
    with pytest.raises(CaptureError, match="empty: a folder with no files in it"):
        ingest([str(tmp_path / "empty")], str(tmp_path / "x.jsonl"))
    # The flow file is not written inside a folder it reads (a rerun would count it twice).
    with pytest.raises(CaptureError, match=r"the output .* is inside this input folder"):
        ingest([str(collected)], str(collected / "flows.jsonl"))
    assert not (collected / "flows.jsonl").exists()
    (collected / "node-a" / "notes.txt").write_text("not traffic\n")
    with pytest.raises(CaptureError, match=r"notes\.txt: not a pcap or pcapng capture"):
        ingest([str(collected)], str(tmp_path / "x.jsonl"))
    assert not (tmp_path / "x.jsonl").exists()


def test_threads_are_not_left_behind(served: tuple[FlowFileServer, Path]) -> None:
    server, _out = served
    server.close()
    assert not server.thread.is_alive()
    assert not any(t.name == "flow-file-server" and t.is_alive()
                   for t in threading.enumerate())
