"""The agent on a made-up Kubernetes node: every pod interface, real traffic, each packet once.

A "node" network namespace holds what a CNI makes on a real node: two "pods" (namespaces) on a
bridge, as flannel or the bridge plugin wire them (``vethA``, ``vethB`` on ``br0``), and pods
routed through their own veth without a bridge, as Calico wires them (``caliC`` ...: the node
side has an address, the pod's default route points at it, the node forwards). The agents run
in the node namespace as ``ip netns exec NODE python -m capture capture ...`` and stop on
SIGTERM:

* ``--iface any`` sees a packet from pod A to the routed pod C three times (in on ``vethA``, in
  on ``br0``, out on ``caliC``) and from A to B twice (``vethA``, ``vethB``). Its flows must be
  those sent, each once, with the packet and byte counts that an agent on pod A's veth alone
  counts; the extra sightings are counted as ``other-interface``. A third agent on ``any`` with
  ``--filter udp`` keeps only UDP.
* ``--iface 'cali*'`` started before any such interface exists follows the ones made after it
  (picked up from netlink), drops the one deleted with its pod, picks up the next, and never
  sees traffic on an interface that does not match.

Needs root and ``ip netns`` (skipped otherwise, with the reason); the namespaces are named
``segnode-<pid>-...`` and deleted at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from capture.flowfile import merge_flow_files, read_flow_file

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
NETNS_DIR = Path("/var/run/netns")
PREFIX = f"segnode-{os.getpid()}-"

SERVER = r'''
import socket, sys, threading
ip = sys.argv[1]
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((ip, 8080)); t.listen(8)
def tcp():
    while True:
        c, _ = t.accept()
        data = b""
        while len(data) < 3000:
            chunk = c.recv(4096)
            if not chunk:
                break
            data += chunk
        c.sendall(b"r" * 5000)
        c.close()
threading.Thread(target=tcp, daemon=True).start()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((ip, 9999))
def udp():
    while True:
        data, peer = u.recvfrom(4096)
        u.sendto(data, peer)
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
'''

CLIENT = r'''
import json, socket, sys
ports = []
for server in sys.argv[1:]:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
    u.sendto(b"ping", (server, 9999)); assert u.recv(100) == b"ping"
    ports.append(["UDP", u.getsockname()[1], server, 9999]); u.close()
    c = socket.create_connection((server, 8080), timeout=5)
    ports.append(["TCP", c.getsockname()[1], server, 8080])
    c.sendall(b"q" * 3000)
    got = b""
    while chunk := c.recv(4096):
        got += chunk
    assert len(got) == 5000, len(got)
    c.close()
print(json.dumps(ports), flush=True)
'''


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def _check(*argv: str) -> None:
    proc = _run(*argv)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.returncode}")


def _remove_stale() -> None:
    """Namespaces left by an earlier run of these tests that died (its pid is gone)."""
    if not NETNS_DIR.is_dir():
        return
    for entry in NETNS_DIR.iterdir():
        parts = entry.name.split("-")
        if len(parts) >= 3 and parts[0] == "segnode" and parts[1].isdigit() \
                and parts[1] != str(os.getpid()) and not Path(f"/proc/{parts[1]}").exists():
            _run("ip", "netns", "del", entry.name)


class Node:
    """A node namespace and its pod namespaces; everything is deleted on ``close``."""

    def __init__(self) -> None:
        self.made: list[str] = []
        self.node = self.namespace("node")
        _check("ip", "netns", "exec", self.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")

    def namespace(self, name: str) -> str:
        ns = PREFIX + name
        proc = _run("ip", "netns", "add", ns)
        if proc.returncode != 0:
            pytest.skip(f"cannot create a network namespace: {proc.stderr.strip()}")
        self.made.append(ns)
        # No IPv6: keeps router solicitations and MLD reports out of the capture.
        _run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
             "net.ipv6.conf.default.disable_ipv6=1")
        _check("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def bridge(self, name: str, address: str) -> None:
        _check("ip", "-n", self.node, "link", "add", name, "type", "bridge")
        _check("ip", "-n", self.node, "addr", "add", address, "dev", name)
        _check("ip", "-n", self.node, "link", "set", name, "up")

    def pod(self, name: str, veth: str, address: str, gateway: str, *,
            bridge: str | None = None, node_address: str | None = None) -> str:
        """A pod namespace whose eth0 is paired with ``veth`` in the node: on ``bridge``, or
        routed (``node_address`` on the veth, the pod's default route through it)."""
        ns = self.namespace(name)
        _check("ip", "-n", self.node, "link", "add", veth, "type", "veth", "peer", "name",
               "eth0", "netns", ns)
        if bridge is not None:
            _check("ip", "-n", self.node, "link", "set", veth, "master", bridge)
        if node_address is not None:
            _check("ip", "-n", self.node, "addr", "add", node_address, "dev", veth)
        _check("ip", "-n", self.node, "link", "set", veth, "up")
        _check("ip", "-n", ns, "addr", "add", address, "dev", "eth0")
        _check("ip", "-n", ns, "link", "set", "eth0", "up")
        _check("ip", "-n", ns, "route", "add", "default", "via", gateway)
        return ns

    def delete(self, ns: str) -> None:
        _run("ip", "netns", "del", ns)  # its veth pair goes with it
        self.made.remove(ns)

    def close(self) -> None:
        for ns in reversed(self.made):
            _run("ip", "netns", "del", ns)


@contextlib.contextmanager
def _node() -> Iterator[Node]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces (ip netns)")
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command (iproute2) to create network namespaces")
    _remove_stale()
    node = Node()
    try:
        yield node
    finally:
        node.close()


class Proc:
    """A process whose standard error is read by a thread (no select on a buffered stream)."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.err: list[str] = []
        self.out: list[str] = []
        self.changed = threading.Condition()
        for stream, lines in ((self.proc.stderr, self.err), (self.proc.stdout, self.out)):
            threading.Thread(target=self._pump, args=(stream, lines), daemon=True).start()

    def _pump(self, stream: Any, lines: list[str]) -> None:
        for line in stream:
            with self.changed:
                lines.append(line)
                self.changed.notify_all()

    def wait_for(self, text: str, timeout: float = 20, *, stdout: bool = False) -> str:
        lines = self.out if stdout else self.err
        deadline = time.monotonic() + timeout
        with self.changed:
            while not any(text in line for line in lines):
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.changed.wait(0.2)):
                    raise AssertionError(f"no {text!r} within {timeout}s (exit"
                                         f" {self.proc.poll()}): {''.join(lines)}")
                self.changed.wait(min(left, 0.2))
        return "".join(lines)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        time.sleep(0.1)
        assert self.proc.returncode == 0, "".join(self.err)
        return "".join(self.err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _agent(ns: str, out: Path, host: str, *args: str) -> Proc:
    return Proc(["ip", "netns", "exec", ns, sys.executable, "-m", "capture", "capture", "-o",
                 str(out), "--host", host, "--flush-interval", "1", *args])


def _in(ns: str, code: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, "-c", code, *args]


def _flows(out: Path, tmp: Path) -> tuple[dict[tuple[Any, ...], dict[str, Any]], dict[str, Any]]:
    """(flows by (proto, client, client port, server, server port), merged header): each key
    must be there once."""
    files = sorted(str(p) for p in out.glob("*.jsonl"))
    assert files, f"no flow files in {out}"
    merged = merge_flow_files(files, str(tmp / f"{out.name}-merged.jsonl"))
    flows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for f in merged.flows:
        key = (f["proto"], f["client"], f["client_port"], f["server"], f["server_port"])
        assert key not in flows, f"{key} twice"
        flows[key] = f
    return flows, merged.header


COUNTS = ("packets_to_server", "packets_to_client", "bytes_to_server", "bytes_to_client")


def test_any_counts_every_packet_once_on_a_node(tmp_path: Path) -> None:
    procs: list[Proc] = []
    with _node() as node:
        node.bridge("br0", "10.88.0.1/24")
        pod_a = node.pod("a", "vethA", "10.88.0.2/24", "10.88.0.1", bridge="br0")
        pod_b = node.pod("b", "vethB", "10.88.0.3/24", "10.88.0.1", bridge="br0")
        pod_c = node.pod("c", "caliC", "10.88.1.2/24", "10.88.1.1", node_address="10.88.1.1/24")
        try:
            every = _agent(node.node, tmp_path / "any", "node-any", "--iface", "any")
            one = _agent(node.node, tmp_path / "vetha", "node-vetha", "--iface", "vethA")
            udp = _agent(node.node, tmp_path / "udp", "node-udp", "--iface", "any",
                         "--filter", "udp")
            procs += [every, one, udp]
            for agent in (every, one):
                agent.wait_for("capturing on")
            try:
                udp.wait_for("capturing on")
            except AssertionError as exc:
                if "libpcap" not in str(exc):
                    raise
                procs.remove(udp)
                udp = None  # type: ignore[assignment]
            for ns, ip in ((pod_b, "10.88.0.3"), (pod_c, "10.88.1.2")):
                server = Proc(_in(ns, SERVER, ip))
                procs.append(server)
                server.wait_for("ready", stdout=True)
            client = subprocess.run(_in(pod_a, CLIENT, "10.88.0.3", "10.88.1.2"),
                                    capture_output=True, text=True, timeout=30, check=False)
            assert client.returncode == 0, client.stderr
            sent = {tuple([proto, "10.88.0.2", port, server, sport])
                    for proto, port, server, sport in json.loads(client.stdout)}
            time.sleep(0.3)
            log_any = every.stop()
            one.stop()
            if udp is not None:
                udp.stop()
        finally:
            for proc in procs:
                proc.kill()
    assert "capturing on any" in log_any
    flows, header = _flows(tmp_path / "any", tmp_path)
    single, _ = _flows(tmp_path / "vetha", tmp_path)
    # Exactly the conversations that were had, once each, client and server the right way.
    assert {k for k in flows if k[0] in ("TCP", "UDP")} == sent
    assert {k for k in single if k[0] in ("TCP", "UDP")} == sent
    for key in sent:
        # Every packet once: what pod A's veth alone saw, not twice or three times that.
        assert {c: flows[key][c] for c in COUNTS} == {c: single[key][c] for c in COUNTS}, key
        if key[0] == "UDP":
            assert (flows[key]["packets_to_server"], flows[key]["packets_to_client"]) == (1, 1)
        else:
            assert flows[key]["direction"] == "handshake", flows[key]
    # The other sightings were read and counted as such: two (A -> B) or three (A -> C) per
    # packet, so more of them than of packets folded.
    folded = sum(f["packets_to_server"] + f["packets_to_client"] for f in flows.values())
    assert header["stats"]["skipped"]["other-interface"] >= folded - 4  # ARP is not IP
    assert header["sources"] == ["node-any:any"]
    if (tmp_path / "udp").exists():
        only_udp, _ = _flows(tmp_path / "udp", tmp_path)
        assert {k for k in only_udp} == {k for k in sent if k[0] == "UDP"}
        for key in only_udp:
            assert {c: only_udp[key][c] for c in COUNTS} == {c: single[key][c] for c in COUNTS}


def test_patterns_follow_interfaces_as_pods_come_and_go(tmp_path: Path) -> None:
    out = tmp_path / "flows"
    procs: list[Proc] = []
    with _node() as node:
        try:
            agent = _agent(node.node, out, "node-cali", "--iface", "cali*")
            procs.append(agent)
            agent.wait_for("no interface matches cali* yet")
            agent.wait_for("capturing on cali*")
            # Pods made after the agent started; and one whose veth does not match.
            pod_d = node.pod("d", "caliD", "10.89.1.2/24", "10.89.1.1",
                             node_address="10.89.1.1/24")
            pod_e = node.pod("e", "caliE", "10.89.2.2/24", "10.89.2.1",
                             node_address="10.89.2.1/24")
            pod_x = node.pod("x", "vethX", "10.89.9.2/24", "10.89.9.1",
                             node_address="10.89.9.1/24")
            agent.wait_for("following caliD")
            agent.wait_for("following caliE")
            server_e = Proc(_in(pod_e, SERVER, "10.89.2.2"))
            procs.append(server_e)
            server_e.wait_for("ready", stdout=True)
            sent: set[tuple[Any, ...]] = set()
            for pod, client_ip, target in ((pod_d, "10.89.1.2", "10.89.2.2"),
                                           (pod_x, "10.89.9.2", "10.89.2.2")):
                run = subprocess.run(_in(pod, CLIENT, target), capture_output=True, text=True,
                                     timeout=30, check=False)
                assert run.returncode == 0, run.stderr
                sent |= {(proto, client_ip, port, server, sport)
                         for proto, port, server, sport in json.loads(run.stdout)}
            # Pod E goes away with its veth; pod F comes.
            server_e.kill()
            procs.remove(server_e)
            node.delete(pod_e)
            agent.wait_for("dropped caliE")
            pod_f = node.pod("f", "caliF", "10.89.3.2/24", "10.89.3.1",
                             node_address="10.89.3.1/24")
            agent.wait_for("following caliF")
            server_f = Proc(_in(pod_f, SERVER, "10.89.3.2"))
            procs.append(server_f)
            server_f.wait_for("ready", stdout=True)
            run = subprocess.run(_in(pod_d, CLIENT, "10.89.3.2"), capture_output=True,
                                 text=True, timeout=30, check=False)
            assert run.returncode == 0, run.stderr
            sent |= {(proto, "10.89.1.2", port, server, sport)
                     for proto, port, server, sport in json.loads(run.stdout)}
            time.sleep(0.3)
            log = agent.stop()
        finally:
            for proc in procs:
                proc.kill()
    assert "following caliF" in log and "dropped caliE" in log
    assert "vethX" not in log
    flows, header = _flows(out, tmp_path)
    seen = {k for k in flows if k[0] in ("TCP", "UDP")}
    # D -> E and D -> F, each once (seen on two cali veths each); X -> E through both vethX
    # (not followed) and caliE: its packets are seen once there.
    assert seen == sent
    for key in seen:
        f = flows[key]
        if key[0] == "UDP":
            assert (f["packets_to_server"], f["packets_to_client"]) == (1, 1), f
        else:
            assert f["direction"] == "handshake" and f["packets_to_server"] >= 3, f
    assert header["stats"]["skipped"].get("other-interface", 0) > 0
    final = read_flow_file(str(sorted(out.glob("*.jsonl"))[-1]))
    assert final.header["agent"]["iface"] == "cali*"
