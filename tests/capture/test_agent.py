"""The live capture agent without root: frames through the same callback path (a fake packet
source), eviction, periodic and shutdown flushes, merging without double counting, errors, and
the deployment manifests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from capture_pcapbuild import (
    T0,
    client_hello,
    ether,
    handshake_flow,
    records,
    tcp,
    timed,
    udp,
    write_pcap,
)
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP

import capture.agent as agent_mod
from capture.agent import Agent, AgentStats, flow_file_name, run_agent, snapshot_name
from capture.cli import build_parser, main
from capture.errors import CaptureError
from capture.flowfile import merge_flow_files, read_flow_file
from capture.table import NS, FlowTable

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "capture" / "deploy"
HOST = "node-1"
CARD = b"4111 1111 1111 1111"

Frame = tuple[float, bytes]  # (time in seconds, frame)


class Clock:
    """Wall clock (ns) and monotonic clock (s) that tests move by hand."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def ns(self) -> int:
        return round(self.now * NS)

    def mono(self) -> float:
        return self.now - T0

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeSource:
    """A packet source that replays frames on the shared clock: each ``read`` returns the
    frames due within the timeout and moves the clock; once the script is over it sets
    ``stop`` (or calls ``at_end``)."""

    def __init__(self, clock: Clock, frames: Sequence[Frame], stop: threading.Event,
                 *, at_end: Any = None, drops: int = 0) -> None:
        self.linktype = 1
        self.clock = clock
        self.frames = sorted(frames, key=lambda f: f[0])
        self.stop = stop
        self.at_end = at_end
        self._drops = drops
        self.closed = False
        self.reads = 0

    def read(self, timeout: float) -> list[tuple[bytes, int]]:
        self.reads += 1
        if not self.frames:
            if self.at_end is not None:
                self.at_end()
                self.at_end = None
            else:
                self.stop.set()
            return []
        until = self.clock.now + timeout
        out: list[tuple[bytes, int]] = []
        while self.frames and self.frames[0][0] <= until:
            t, frame = self.frames.pop(0)
            out.append((frame, round(t * NS)))
        self.clock.advance(timeout)
        return out

    def drops(self) -> int:
        drops, self._drops = self._drops, 0
        return drops

    def close(self) -> None:
        self.closed = True


def make_agent(out: Path, clock: Clock, **kwargs: Any) -> Agent:
    kwargs.setdefault("host", HOST)
    kwargs.setdefault("iface", "eth0")
    agent = Agent(str(out), clock=clock.ns, monotonic=clock.mono, **kwargs)
    agent.open()
    return agent


def feed(agent: Agent, frames: Sequence[Frame]) -> None:
    for t, frame in frames:
        agent.packet(frame, round(t * NS))


def flows_in(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    return [r for p in paths for r in read_flow_file(str(p)).flows]


def dir_files(out: Path) -> list[Path]:
    return sorted(out.glob("*.jsonl"))


def merged(out: Path, tmp: Path) -> list[dict[str, Any]]:
    files = [str(p) for p in dir_files(out)]
    if not files:
        return []
    return [r for r in merge_flow_files(files, str(tmp / "merged.jsonl")).records
            if r["record"] == "flow"]


def total_packets(flows: Sequence[dict[str, Any]]) -> int:
    return sum(f["packets_to_server"] + f["packets_to_client"] for f in flows)


def conv(client: str, cport: int, server: str = "10.0.0.2", sport: int = 53) -> list[bytes]:
    """A UDP request and its answer."""
    return [ether(udp(client, server, cport, sport, b"q")),
            ether(udp(server, client, sport, cport, b"a"))]


def key(f: dict[str, Any]) -> tuple[Any, ...]:
    return (f["proto"], f["client"], f["client_port"], f["server"], f["server_port"])


# -- the callback path folds like ingest ---------------------------------------------------------


def test_frames_fold_exactly_like_ingest(tmp_path: Path) -> None:
    pkts = [
        *handshake_flow("10.0.0.1", "10.0.0.2", 40000, 443,
                        request=client_hello("api.example.com"), response=b"x" * 40),
        *handshake_flow("10.0.0.3", "10.0.0.2", 40001, 5432, request=b"Q" + CARD),
        udp("10.0.0.1", "10.0.0.9", 5000, 9999, b"hello"),
        tcp("fd00::1", "fd00::2", 41000, 80, "S", v6=True),
    ]
    frames = timed([ether(p) for p in pkts])
    _h, expected, _d = records([write_pcap(tmp_path / "c.pcap", frames)])
    clock = Clock(T0 + 1)
    agent = make_agent(tmp_path / "out", clock)
    feed(agent, frames)
    path = agent.flush(final=True)
    assert path is not None
    got = read_flow_file(path)
    assert sorted(got.flows, key=key) == sorted(expected, key=key)
    assert got.header["stats"]["packets"] == len(frames)
    assert got.header["stats"]["flows"] == len(expected)
    assert got.header["agent"]["kind"] == "final"
    assert any(f["sni"] == "api.example.com" for f in got.flows)


def test_the_bundled_sample_replayed_with_flushes_merges_to_what_ingest_gives(
        tmp_path: Path) -> None:
    """Real traffic (sample/shop.pcapng): flushed every capture second while it plays, the
    agent's files merge to exactly the records of ``capture ingest``."""
    sample = REPO / "sample" / "shop.pcapng"
    if not sample.is_file():
        pytest.skip("no sample/shop.pcapng")
    from capture.readers import _scapy_packets, open_capture

    _h, expected, expected_dns = records([sample])
    packets = list(_scapy_packets(open_capture(str(sample))))
    assert {linktype for _t, linktype, _d, _w in packets} == {1}
    clock = Clock()
    out = tmp_path / "out"
    agent = make_agent(out, clock)
    next_flush = packets[0][0] + NS
    for t, _linktype, data, _wirelen in packets:
        if t >= next_flush:
            clock.now = t / NS
            agent.flush()
            next_flush = t + NS
        agent.packet(data, t)
    agent.flush(final=True)
    assert len(agent.files) > 3
    merged_file = merge_flow_files([str(p) for p in dir_files(out)], str(tmp_path / "m.jsonl"))
    assert sorted(merged_file.flows, key=key) == sorted(expected, key=key)
    assert sorted(merged_file.dns, key=lambda d: (d["ts"], d["name"])) == sorted(
        expected_dns, key=lambda d: (d["ts"], d["name"]))
    assert merged_file.header["stats"]["packets"] == len(packets)
    for path in [*out.iterdir(), tmp_path / "m.jsonl"]:
        assert CARD not in path.read_bytes() and CARD.replace(b" ", b"") not in path.read_bytes()


# -- eviction ------------------------------------------------------------------------------------


def test_eviction_takes_the_least_recently_seen_flow_and_counts_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    clock = Clock(T0 + 10)
    agent = make_agent(out, clock, max_flows=2)
    a = conv("10.0.0.1", 41001)
    b = conv("10.0.0.1", 41002)
    c = conv("10.0.0.1", 41003)
    # A, then B, then A again: B is now the least recently seen; C's arrival evicts it.
    feed(agent, [(T0, a[0]), (T0 + 1, b[0]), (T0 + 2, a[1]), (T0 + 3, c[0])])
    assert agent.evicted == 1
    assert [f.a_port for f in agent.lru] == [41001, 41003]
    periodic = agent.flush()
    assert periodic is not None
    ff = read_flow_file(periodic)
    assert [f["client_port"] for f in ff.flows] == [41002]
    assert ff.header["agent"]["evicted"] == 1
    snap = out / snapshot_name(HOST)
    assert sorted(f["client_port"] for f in read_flow_file(str(snap)).flows) == [41001, 41003]
    # B talks again: a new record (its first part was written already), which evicts A.
    feed(agent, [(T0 + 4, b[1]), (T0 + 5, c[1])])
    assert agent.evicted == 2
    stats_final = agent.flush(final=True)
    assert stats_final is not None
    assert not snap.exists()
    flows = merged(out, tmp_path)
    assert total_packets(flows) == 6
    assert sorted(f["client_port"] for f in flows) == [41001, 41002, 41002, 41003]


def test_evicted_flows_pile_up_to_an_early_flush(tmp_path: Path) -> None:
    out = tmp_path / "out"
    clock = Clock()
    stop = threading.Event()
    frames = [(T0 + i * 0.001, conv("10.0.0.1", 2000 + i)[0]) for i in range(50)]
    agent = make_agent(out, clock, max_flows=5, flush_interval=3600)
    stats = agent.run(FakeSource(clock, frames, stop), stop_event=stop)
    assert stats.evicted == 45
    assert stats.flows == 50
    # Without waiting for the hour-long interval: files came as soon as 5 flows waited.
    assert len(stats.files) >= 9
    flows = flows_in(stats.files)
    assert sorted(f["client_port"] for f in flows) == list(range(2000, 2050))
    assert sum(read_flow_file(p).header["agent"]["evicted"] for p in stats.files) == 45


# -- periodic flushes ----------------------------------------------------------------------------


def test_periodic_flush_writes_ended_flows_and_a_snapshot_of_active_ones(tmp_path: Path) -> None:
    out = tmp_path / "out"
    clock = Clock(T0)
    agent = make_agent(out, clock, linger=10.0)
    closed = timed([ether(p) for p in handshake_flow(cport=40000, sport=8080)], start=T0)
    active = [(T0 + 0.5, conv("10.0.0.1", 5353 + 1)[0])]
    feed(agent, [*closed, *active])
    clock.advance(5)  # closed 5 s ago: still lingering
    assert agent.flush() is None
    snap = out / snapshot_name(HOST)
    assert len(read_flow_file(str(snap)).flows) == 2
    assert not list(out.glob("flows-*-0*.jsonl"))
    clock.advance(6)  # closed 11 s ago: ended
    first = agent.flush()
    assert first is not None and first.endswith(flow_file_name(HOST, 1))
    assert [f["proto"] for f in read_flow_file(first).flows] == ["TCP"]
    assert [f["proto"] for f in read_flow_file(str(snap)).flows] == ["UDP"]
    clock.advance(300)  # the UDP flow idle for more than 300 s: ended, no snapshot left
    second = agent.flush()
    assert second is not None and second.endswith(flow_file_name(HOST, 2))
    assert [f["proto"] for f in read_flow_file(second).flows] == ["UDP"]
    assert not snap.exists()
    # Nothing happened since: no empty file.
    clock.advance(60)
    assert agent.flush() is None
    assert agent.flush(final=True) is not None  # the final file is always written
    assert len(dir_files(out)) == 3


def test_run_flushes_every_interval_and_on_shutdown(tmp_path: Path) -> None:
    out = tmp_path / "out"
    clock = Clock()
    stop = threading.Event()
    frames: list[Frame] = []
    for i in range(6):  # a short TCP conversation every 10 s, and one long UDP stream
        start = T0 + i * 10
        frames += timed([ether(p) for p in handshake_flow(cport=41000 + i, sport=80)],
                        start=start)
        frames.append((start + 5, conv("10.0.0.1", 7000, sport=9000)[0]))
    agent = make_agent(out, clock, flush_interval=15, linger=2)
    stats = agent.run(FakeSource(clock, frames, stop, drops=3), stop_event=stop)
    assert isinstance(stats, AgentStats)
    assert stats.stopped_by == "stop_event"
    assert stats.kernel_drops == 3
    assert len(stats.files) >= 4  # every 15 s over ~60 s, plus the final one
    headers = [read_flow_file(p).header for p in stats.files]
    assert [h["agent"]["seq"] for h in headers] == list(range(1, len(stats.files) + 1))
    assert headers[-1]["agent"]["kind"] == "final"
    assert all(h["agent"]["kind"] == "periodic" for h in headers[:-1])
    # The long UDP flow stayed active until the end: it is in the final file only, once.
    flows = flows_in(stats.files)
    udp_flows = [f for f in flows if f["proto"] == "UDP"]
    assert len(udp_flows) == 1 and udp_flows[0]["packets_to_server"] == 6
    assert udp_flows[0] in read_flow_file(stats.files[-1]).flows
    assert sorted(f["client_port"] for f in flows if f["proto"] == "TCP") == list(
        range(41000, 41006))
    assert sum(h["stats"]["packets"] for h in headers) == stats.packets == len(frames)
    assert not (out / snapshot_name(HOST)).exists()


def test_merging_the_directory_at_any_moment_counts_each_packet_once(tmp_path: Path) -> None:
    out = tmp_path / "out"
    clock = Clock(T0)
    agent = make_agent(out, clock, max_flows=4, linger=1)
    frames: list[Frame] = []
    for i in range(12):
        frames += timed([ether(p) for p in handshake_flow(cport=42000 + i % 5, sport=443)],
                        start=T0 + i * 2, step=0.1)
        frames.append((T0 + i * 2 + 0.05, conv("10.0.0.1", 6000 + i % 3)[i % 2]))
    frames.sort(key=lambda f: f[0])
    for n, (t, frame) in enumerate(frames, 1):
        agent.packet(frame, round(t * NS))
        if n % 7 == 0:
            clock.now = t
            agent.flush()
            assert total_packets(merged(out, tmp_path)) == n
    agent.flush(final=True)
    flows = merged(out, tmp_path)
    assert total_packets(flows) == len(frames)
    header = json.loads((tmp_path / "merged.jsonl").read_text().splitlines()[0])
    assert header["stats"]["packets"] == len(frames)
    assert header["stats"]["flows"] == len(flows)


def test_a_failed_periodic_write_keeps_the_flows(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    clock = Clock(T0 + 400)
    agent = make_agent(out, clock, max_flows=2)
    feed(agent, [(T0, conv("10.0.0.1", 3000)[0])])  # idle for 400 s: ends at the flush
    real = agent_mod.write_lines
    calls = []

    def failing(path: str, lines: Any) -> None:
        calls.append(path)
        raise CaptureError("cannot write the flow file: No space left on device", path=path)

    monkeypatch.setattr(agent_mod, "write_lines", failing)
    assert agent.flush() is None
    assert calls and agent.pending
    # While writing fails, evictions do not ask for early flushes (no retry storm).
    feed(agent, [(T0 + 400 + i, conv("10.0.0.1", 3001 + i)[0]) for i in range(4)])
    assert agent.evicted == 2 and not agent.flush_needed
    monkeypatch.setattr(agent_mod, "write_lines", real)
    path = agent.flush()
    assert path is not None and path.endswith(flow_file_name(HOST, 1))
    assert [f["client_port"] for f in read_flow_file(path).flows] == [3000, 3001, 3002]
    assert read_flow_file(path).header["stats"]["packets"] == 5
    assert read_flow_file(path).header["agent"]["evicted"] == 2


# -- shutdown --------------------------------------------------------------------------------------


def test_sigterm_stops_run_agent_after_a_final_flush(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    frames = timed([ether(p) for p in handshake_flow(close=False)])
    sources: list[FakeSource] = []

    def fake_live(iface: str, *, bpf: str | None = None, promisc: bool = True) -> FakeSource:
        assert (iface, bpf, promisc) == ("eth0", "tcp", True)
        src = FakeSource(clock, frames, threading.Event(),
                         at_end=lambda: os.kill(os.getpid(), signal.SIGTERM))
        sources.append(src)
        return src

    monkeypatch.setattr(agent_mod, "LiveSource", fake_live)
    before = signal.getsignal(signal.SIGTERM)
    stats = run_agent("eth0", str(tmp_path / "out"), bpf="tcp", host=HOST, flush_interval=3600)
    assert stats.stopped_by == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored
    assert sources[0].closed
    assert len(stats.files) == 1 and stats.flows == 1
    (flow,) = read_flow_file(stats.files[0]).flows
    assert flow["packets_to_server"] + flow["packets_to_client"] == len(frames)
    assert not (tmp_path / "out" / snapshot_name(HOST)).exists()


def test_duration_and_stop_event_from_another_thread(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    class Quiet:
        linktype = 1

        def read(self, timeout: float) -> list[tuple[bytes, int]]:
            threading.Event().wait(min(timeout, 0.01))
            return []

        def drops(self) -> int:
            return 0

        def close(self) -> None:
            pass

    monkeypatch.setattr(agent_mod, "LiveSource", lambda *a, **k: Quiet())
    stats = run_agent("eth0", str(tmp_path / "a"), duration=0.05, host=HOST)
    assert stats.stopped_by == "duration" and len(stats.files) == 1
    stop = threading.Event()
    result: list[AgentStats] = []
    worker = threading.Thread(
        target=lambda: result.append(run_agent("eth0", str(tmp_path / "b"), stop_event=stop,
                                               host=HOST)))
    worker.start()
    stop.set()
    worker.join(10)
    assert result and result[0].stopped_by == "stop_event"
    assert len(result[0].files) == 1


def test_restart_continues_numbering_and_recovers_a_killed_agents_snapshot(
        tmp_path: Path) -> None:
    out = tmp_path / "out"
    clock = Clock(T0 + 20)
    first = make_agent(out, clock, linger=1)
    feed(first, timed([ether(p) for p in handshake_flow(cport=43000)]))
    feed(first, [(T0 + 19, conv("10.0.0.1", 3001)[0])])
    assert first.flush() is not None  # 000001: the closed TCP flow; snapshot: the UDP flow
    first.close()  # killed: no final flush
    assert (out / snapshot_name(HOST)).exists()
    second = make_agent(out, clock)  # renames the snapshot to 000002
    with pytest.raises(CaptureError, match="another agent"):
        make_agent(out, clock)  # the same host name twice in one directory
    second.close()
    names = sorted(p.name for p in dir_files(out))
    assert names == [flow_file_name(HOST, 1), flow_file_name(HOST, 2)]
    recovered = read_flow_file(str(out / flow_file_name(HOST, 2)))
    assert recovered.header["agent"]["kind"] == "recovered"
    assert [f["client_port"] for f in recovered.flows] == [3001]
    third = make_agent(out, clock)
    feed(third, [(T0 + 21, conv("10.0.0.1", 3002)[0])])
    path = third.flush(final=True)
    third.close()
    assert path is not None and path.endswith(flow_file_name(HOST, 3))
    assert sorted(f["client_port"] for f in merged(out, tmp_path)) == [3001, 3002, 43000]


def test_dns_answers_are_written_once_and_payload_never(tmp_path: Path) -> None:
    out = tmp_path / "out"
    clock = Clock(T0 + 1)
    agent = make_agent(out, clock)
    answer = IP(src="10.0.0.53", dst="10.0.0.1") / UDP(sport=53, dport=33000) / DNS(
        id=1, qr=1, qd=DNSQR(qname="db.example.com"),
        an=DNSRR(rrname="db.example.com", type="A", rdata="10.0.0.60"))
    query = IP(src="10.0.0.1", dst="10.0.0.53") / UDP(sport=33000, dport=53) / DNS(
        id=1, qd=DNSQR(qname="db.example.com"))
    feed(agent, [(T0, ether(query)), (T0 + 0.01, ether(answer))])
    first = agent.flush()
    feed(agent, [(T0 + 0.5, ether(query)), (T0 + 0.51, ether(answer))])
    feed(agent, timed([ether(p) for p in handshake_flow(cport=44000, sport=5432,
                                                         request=b"INSERT " + CARD,
                                                         response=CARD.replace(b" ", b""))]))
    agent.flush(final=True)
    assert first is not None
    dns = [r for p in dir_files(out) for r in read_flow_file(str(p)).dns]
    assert len(dns) == 1
    assert dns[0]["name"] == "db.example.com" and dns[0]["answers"] == ["10.0.0.60"]
    for path in out.iterdir():
        data = path.read_bytes()
        assert CARD not in data and CARD.replace(b" ", b"") not in data


# -- flows.py additions ----------------------------------------------------------------------------


def test_flow_table_remove_and_fragments() -> None:
    table = FlowTable()
    pkts = [IP(src="10.0.0.1", dst="10.0.0.2", id=7) / UDP(sport=1, dport=2) / (b"x" * 3000)]
    frags = [bytes(p) for p in pkts[0].fragment(1000)]
    assert len(frags) >= 3
    from capture.decode import LINKTYPE_RAW, decode

    d = decode(LINKTYPE_RAW, frags[0], len(frags[0]))
    assert not isinstance(d, str)
    fl = table.add(d, frags[0], 1)
    assert fl is not None and table.frags
    assert table.remove(fl) and not table.remove(fl)
    assert list(table.active()) == []
    # A later fragment still finds its flow until the fragments are dropped.
    d2 = decode(LINKTYPE_RAW, frags[1], len(frags[1]))
    assert not isinstance(d2, str)
    assert table.add(d2, frags[1], 2) is fl
    table.drop_fragments({fl})
    assert not table.frags
    d3 = decode(LINKTYPE_RAW, frags[2], len(frags[2]))
    assert not isinstance(d3, str)
    assert table.add(d3, frags[2], 3) is None
    assert table.skipped == {}  # it waits for a first fragment (that will not come)
    table.expire_fragments()
    assert table.skipped == {"fragment-unmatched": 1}
    assert not table.early
    assert table.take_done() == [] and list(table.flow_items([])) == []


# -- errors ----------------------------------------------------------------------------------------


def test_a_missing_interface_is_one_line_and_exit_2(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CaptureError, match="no such network interface: segcap-nosuch0"):
        run_agent("segcap-nosuch0", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()  # nothing created before the interface is checked
    code = main(["capture", "--iface", "segcap-nosuch0", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err == "error: no such network interface: segcap-nosuch0\n"


def test_missing_privileges_are_one_line_and_exit_2(tmp_path: Path) -> None:
    """Without CAP_NET_RAW: as root, drop it from the bounding set with setpriv."""
    argv = [sys.executable, "-m", "capture", "capture", "--iface", "lo", "-o",
            str(tmp_path / "out"), "--duration", "1"]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("root, and no setpriv to drop CAP_NET_RAW with")
        argv = [setpriv, "--bounding-set", "-net_raw", "--inh-caps", "-net_raw", *argv]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60,
                          check=False)
    if proc.returncode == 0:
        pytest.skip("this process may capture (CAP_NET_RAW without root?)")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: not permitted to capture on lo: the agent needs"
                                  " CAP_NET_RAW")


def test_an_unusable_output_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CaptureError, match="cannot create the output directory"):
        Agent(str(blocker / "out")).open()
    with pytest.raises(ValueError, match="max_flows"):
        Agent(str(tmp_path), max_flows=0)
    with pytest.raises(ValueError, match="flush_interval"):
        Agent(str(tmp_path), flush_interval=0)


def test_capture_options(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["capture", "-i", "cni0", "--filter", "tcp or udp", "-o",
                                      "/d", "--flush-interval", "5", "--max-flows", "10"])
    assert (args.iface, args.filter, args.output_dir, args.flush_interval, args.max_flows,
            args.duration, args.no_promisc) == (["cni0"], "tcp or udp", "/d", 5.0, 10, None,
                                                False)
    assert (args.max_bytes, args.max_age, args.serve, args.serve_allow) == (None, None, None,
                                                                            [])
    args = build_parser().parse_args(["capture", "-i", "cali*", "-i", "lxc*", "-o", "/d",
                                      "--max-bytes", "1Gi", "--max-age", "7d", "--serve",
                                      "9465", "--serve-allow", "10.0.0.0/8"])
    assert (args.iface, args.max_bytes, args.max_age, args.serve, args.serve_allow) == (
        ["cali*", "lxc*"], 1 << 30, 7 * 86400.0, 9465, ["10.0.0.0/8"])
    for bad in (["--max-bytes", "lots"], ["--max-age", "0"], ["--serve", "70000"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["capture", "-i", "x", "-o", "d", *bad])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["capture", "-i", "x", "-o", "d", "--flush-interval", "0"])
    assert exc.value.code == 2
    assert "must be positive" in capsys.readouterr().err


def test_capture_package_needs_none_of_the_planner() -> None:
    code = ("import sys, capture.agent, capture.cli; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'segmenter', 'networkx', 'kubernetes', 'matplotlib', 'yaml'}); print(bad)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "[]"


# -- deployment ------------------------------------------------------------------------------------


def _documents() -> list[tuple[str, dict[str, Any]]]:
    yaml = pytest.importorskip("yaml")
    docs = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def test_every_manifest_is_a_valid_kubernetes_object() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    docs = _documents()
    assert {doc["kind"] for _name, doc in docs} == {"Namespace", "ServiceAccount", "DaemonSet",
                                                     "Deployment"}
    for name, doc in docs:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
        assert doc["kind"] not in {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}, name
    # The validator does catch mistakes (strict: unknown fields too).
    bad = json.loads(json.dumps(dict(docs)["daemonset.yaml"]))
    bad["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilitys"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.30.0", strict=True)


def _agent_containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in doc["spec"]["template"]["spec"]["containers"]
            if c["image"].startswith("segmenter-capture")]


def test_the_agent_runs_with_least_privilege() -> None:
    docs = dict(_documents())
    ds = docs["daemonset.yaml"]
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["automountServiceAccountToken"] is False
    assert docs["serviceaccount.yaml"]["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == docs["serviceaccount.yaml"]["metadata"]["name"]
    assert ds["metadata"]["namespace"] == docs["namespace.yaml"]["metadata"]["name"]
    assert {v["name"] for v in pod["volumes"]} == {"flows"}
    assert "hostPath" in pod["volumes"][0]
    sidecar = docs["sidecar-example.yaml"]["spec"]["template"]["spec"]
    assert "hostNetwork" not in sidecar and len(sidecar["containers"]) == 2
    for doc in (ds, docs["sidecar-example.yaml"]):
        (agent,) = _agent_containers(doc)
        sc = agent["securityContext"]
        # NET_ADMIN is opt-in (only a receive buffer beyond net.core.rmem_max needs it).
        assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_RAW"]}
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["privileged"] is False
        assert sc["runAsNonRoot"] is False  # see the comment in daemonset.yaml
        assert set(agent["resources"]) == {"requests", "limits"}
        assert agent["args"][:2] == ["--iface", "eth0" if doc is not ds else "any"]
        mounts = {m["mountPath"] for m in agent["volumeMounts"]}
        assert "/var/lib/segmenter-capture" in mounts
        # The image's entry point is `python -m capture capture`: the args are its options.
        parsed = build_parser().parse_args(["capture", *agent["args"]])
        assert parsed.output_dir == "/var/lib/segmenter-capture"
        assert parsed.max_bytes is not None  # the node's disk (or the emptyDir) is bounded
    # The DaemonSet serves its finished files on the named port segmenter collect looks for.
    (agent,) = _agent_containers(ds)
    parsed = build_parser().parse_args(["capture", *agent["args"]])
    assert (parsed.max_bytes, parsed.max_age) == (1 << 30, 7 * 86400.0)
    assert agent["ports"] == [{"name": "flow-files", "containerPort": parsed.serve,
                               "protocol": "TCP"}]


def test_kustomization_lists_the_daemonset_resources() -> None:
    yaml = pytest.importorskip("yaml")
    kust = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert kust["kind"] == "Kustomization"
    assert kust["namespace"] == "segmenter-capture"
    assert kust["resources"] == ["namespace.yaml", "serviceaccount.yaml", "daemonset.yaml"]
    for name in kust["resources"]:
        assert (DEPLOY / name).is_file()
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "python:3.11-slim" in dockerfile and "scapy" in dockerfile
    assert 'ENTRYPOINT ["python", "-m", "capture", "capture"]' in dockerfile
