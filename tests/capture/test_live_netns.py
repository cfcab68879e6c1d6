"""End to end with real traffic: the agent captures live in a network namespace.

Two namespaces joined by a veth pair: servers in one (TCP, UDP echo, a small DNS resolver, TLS
with a self-signed certificate made by the openssl CLI, a plaintext "database" that receives a
planted test card number), clients in the other. The agent runs there too, as
``ip netns exec ... python -m capture capture`` on the veth, and is stopped with SIGTERM. The
flows must be what was sent, and the card number must be in no file the agent wrote.

Needs root and ``ip netns`` (skipped otherwise, with the reason). Namespaces are named
``segcap-<pid>-...`` and deleted at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from capture.flowfile import merge_flow_files, read_flow_file

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
NETNS_DIR = Path("/var/run/netns")
PREFIX = f"segcap-{os.getpid()}-"
CLIENT_IP = "10.77.0.1"
SERVER_IP = "10.77.0.2"
SNI = "vault.segcap.test"
DB_NAME = "db.segcap.test"
CARD = "4111 1111 1111 1111"
AGENT = "livetest"

SERVERS = r'''
import socket, ssl, struct, sys, threading
ip, cert, key = sys.argv[1], sys.argv[2], sys.argv[3]

def tcp_server(port, handle, wrap=None):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port)); s.listen(8)
    def loop():
        while True:
            conn, _ = s.accept()
            try:
                if wrap is not None:
                    conn = wrap(conn)
                handle(conn)
            except Exception as exc:
                print("server error", port, exc, file=sys.stderr, flush=True)
            finally:
                conn.close()
    threading.Thread(target=loop, daemon=True).start()

def recv_until(conn, marker):
    data = b""
    while marker not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data

def http(conn):
    recv_until(conn, b"\r\n\r\n")
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello")

def tls(conn):
    recv_until(conn, b"\n")
    conn.sendall(b"pong\n")
    conn.unwrap()

def db(conn):
    query = recv_until(conn, b";")
    card = query.split(b"'")[1].replace(b" ", b"")
    conn.sendall(b"D" + struct.pack(">I", len(card)) + card + b"C")

tcp_server(8080, http)
tcp_server(5432, db)
if cert != "-":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    tcp_server(8443, tls, lambda c: ctx.wrap_socket(c, server_side=True))

def udp_server(port, answer):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((ip, port))
    def loop():
        while True:
            data, peer = s.recvfrom(4096)
            s.sendto(answer(data), peer)
    threading.Thread(target=loop, daemon=True).start()

ZONE = {"vault.segcap.test": ip, "db.segcap.test": ip}

def dns(query):
    qid, _flags, qd = struct.unpack(">HHH", query[:6])
    end = 12
    labels = []
    while query[end]:
        labels.append(query[end + 1:end + 1 + query[end]].decode())
        end += 1 + query[end]
    question = query[12:end + 5]
    addr = ZONE.get(".".join(labels).lower())
    if addr is None:
        return struct.pack(">HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question
    answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(addr)
    return struct.pack(">HHHHHH", qid, 0x8580, 1, 1, 0, 0) + question + answer

udp_server(9999, lambda data: data)
udp_server(53, dns)
print("ready", flush=True)
threading.Event().wait()
'''

CLIENTS = r'''
import json, socket, ssl, struct, sys
server, cafile, sni, db_name, card = sys.argv[1:6]
ports = {}

def dns_query(name):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    s.sendto(struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + qname + b"\0\1\0\1",
             (server, 53))
    reply = s.recv(4096)
    ports["dns"] = s.getsockname()[1]
    s.close()
    return socket.inet_ntoa(reply[-4:])

def tcp(port, request, key):
    c = socket.create_connection((server, port), timeout=5)
    ports[key] = c.getsockname()[1]
    c.sendall(request)
    data = b""
    while chunk := c.recv(4096):
        data += chunk
    c.close()
    return data

db_addr = dns_query(db_name)
assert db_addr == server, db_addr
assert tcp(8080, b"GET / HTTP/1.0\r\nHost: web\r\n\r\n", "http").endswith(b"hello")
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
u.sendto(b"ping", (server, 9999)); assert u.recv(100) == b"ping"
ports["udp"] = u.getsockname()[1]; u.close()
if cafile != "-":
    ctx = ssl.create_default_context(cafile=cafile)
    raw = socket.create_connection((server, 8443), timeout=5)
    ports["tls"] = raw.getsockname()[1]
    with ctx.wrap_socket(raw, server_hostname=sni) as t:
        t.sendall(b"ping\n")
        assert t.recv(100) == b"pong\n"
        t.unwrap()
    raw.close()
reply = tcp(5432, ("Q INSERT INTO cards VALUES ('" + card + "');").encode(), "db")
assert card.replace(" ", "").encode() in reply
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
        if len(parts) >= 3 and parts[0] == "segcap" and parts[1].isdigit() \
                and parts[1] != str(os.getpid()) and not Path(f"/proc/{parts[1]}").exists():
            _run("ip", "netns", "del", entry.name)


@contextlib.contextmanager
def _topology() -> Iterator[tuple[str, str]]:
    """(client namespace, server namespace), joined by veth-c <-> veth-s."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces (ip netns)")
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command (iproute2) to create network namespaces")
    _remove_stale()
    cli, srv = PREFIX + "cli", PREFIX + "srv"
    made: list[str] = []
    try:
        for ns in (cli, srv):
            proc = _run("ip", "netns", "add", ns)
            if proc.returncode != 0:
                pytest.skip(f"cannot create a network namespace: {proc.stderr.strip()}")
            made.append(ns)
            # No IPv6: keeps router solicitations and MLD reports out of the capture.
            _run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                 "net.ipv6.conf.default.disable_ipv6=1")
            _check("ip", "-n", ns, "link", "set", "lo", "up")
        _check("ip", "-n", cli, "link", "add", "veth-c", "type", "veth", "peer", "name",
               "veth-s", "netns", srv)
        _check("ip", "-n", cli, "addr", "add", f"{CLIENT_IP}/24", "dev", "veth-c")
        _check("ip", "-n", srv, "addr", "add", f"{SERVER_IP}/24", "dev", "veth-s")
        _check("ip", "-n", cli, "link", "set", "veth-c", "up")
        _check("ip", "-n", srv, "link", "set", "veth-s", "up")
        yield cli, srv
    finally:
        for ns in reversed(made):
            _run("ip", "netns", "del", ns)


def _readline(proc: subprocess.Popen[str], stream: Any, want: str, timeout: float, *,
              must: bool = True) -> str:
    """Lines of ``stream`` up to the one containing ``want`` (or all of them until the process
    ended, when not ``must``)."""
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], 0.1)
        if ready:
            line = stream.readline()
            seen += line
            if want in line:
                return seen
            if not line and proc.poll() is not None:
                break
    if not must:
        return seen
    raise AssertionError(f"no {want!r} within {timeout}s (exit {proc.poll()}): {seen}")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.communicate(timeout=10)


def _make_cert(tmp: Path) -> tuple[str, str]:
    """A throw-away self-signed certificate for the SNI name; ("-", "-") without openssl."""
    if shutil.which("openssl") is None:
        return "-", "-"
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    proc = _run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", f"/CN={SNI}",
                "-addext", f"subjectAltName=DNS:{SNI}", "-keyout", str(key), "-out", str(cert))
    if proc.returncode != 0:
        return "-", "-"
    return str(cert), str(key)


def _agent(ns: str, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "capture", "capture", "--iface",
         "veth-c", "-o", str(out), "--host", AGENT, *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _key(f: dict[str, Any]) -> tuple[Any, ...]:
    return (f["proto"], f["client"], f["client_port"], f["server"], f["server_port"])


def test_live_capture_in_a_namespace(tmp_path: Path) -> None:
    out = tmp_path / "flows"
    cert, key = _make_cert(tmp_path)
    with _topology() as (cli, srv):
        procs: list[subprocess.Popen[str]] = []
        try:
            agent = _agent(cli, out, "--flush-interval", "1")
            procs.append(agent)
            log = _readline(agent, agent.stderr, "capturing on veth-c", 20)
            servers = subprocess.Popen(
                ["ip", "netns", "exec", srv, sys.executable, "-c", SERVERS, SERVER_IP, cert,
                 key], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            procs.append(servers)
            _readline(servers, servers.stdout, "ready", 20)
            clients = subprocess.run(
                ["ip", "netns", "exec", cli, sys.executable, "-c", CLIENTS, SERVER_IP, cert,
                 SNI, DB_NAME, CARD], capture_output=True, text=True, timeout=30, check=False)
            assert clients.returncode == 0, clients.stderr
            ports = json.loads(clients.stdout)
            # Flushes every second: the snapshot of the active flows shows up while running
            # (TCP flows linger 10 s after their FINs, UDP flows idle 300 s).
            snapshot = out / f"flows-{AGENT}-active.jsonl"
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if snapshot.exists() and len(read_flow_file(str(snapshot)).flows) >= len(ports):
                    break
                time.sleep(0.1)
            active = read_flow_file(str(snapshot))
            assert active.header["agent"]["kind"] == "snapshot"
            assert len(active.flows) >= len(ports)
            agent.send_signal(signal.SIGTERM)
            _out, err = agent.communicate(timeout=20)
            log += err
            assert agent.returncode == 0, log
        finally:
            for proc in procs:
                _stop(proc)
    assert "stopped (SIGTERM)" in log
    assert not snapshot.exists()
    files = sorted(out.glob("*.jsonl"))
    assert files and all(p.name.startswith(f"flows-{AGENT}-0") for p in files)
    final = read_flow_file(str(files[-1]))
    assert final.header["agent"]["kind"] == "final"
    assert final.header["sources"] == [f"{AGENT}:veth-c"]
    merged = merge_flow_files([str(p) for p in files], str(tmp_path / "merged.jsonl"))

    flows = {_key(f): f for f in merged.flows if f["proto"] in ("TCP", "UDP")}
    expected = {
        "dns": ("UDP", 53), "http": ("TCP", 8080), "udp": ("UDP", 9999), "db": ("TCP", 5432),
    }
    if cert != "-":
        expected["tls"] = ("TCP", 8443)
    want = {(proto, CLIENT_IP, ports[name], SERVER_IP, port): name
            for name, (proto, port) in expected.items()}
    # Exactly the conversations that were had, each once, client and server the right way.
    assert sorted(flows) == sorted(want), (sorted(flows), sorted(want))
    assert len([f for f in merged.flows if f["proto"] in ("TCP", "UDP")]) == len(want)
    by_name = {name: flows[k] for k, name in want.items()}
    for name in ("http", "db", *(("tls",) if cert != "-" else ())):
        f = by_name[name]
        assert f["direction"] == "handshake" and f["handshake"] is True, f
        assert f["packets_to_server"] >= 3 and f["packets_to_client"] >= 2, f
        assert f["resets"] == 0, f
    for name in ("udp", "dns"):
        f = by_name[name]
        assert f["direction"] == "first-packet", f
        assert (f["packets_to_server"], f["packets_to_client"]) == (1, 1), f
    assert by_name["udp"]["bytes_to_server"] == 20 + 8 + 4  # IP + UDP + "ping"
    assert by_name["http"]["tls"] is False and by_name["db"]["tls"] is False
    if cert != "-":
        assert by_name["tls"]["tls"] is True
        assert by_name["tls"]["sni"] == SNI
    assert [(d["client"], d["server"], d["name"], d["answers"]) for d in merged.dns] == [
        (CLIENT_IP, SERVER_IP, DB_NAME, [SERVER_IP])]
    assert merged.header["stats"]["packets"] >= sum(
        f["packets_to_server"] + f["packets_to_client"] for f in merged.flows)

    # The planted card number (as sent, and as the server echoed it) is nowhere.
    for path in [*out.iterdir(), tmp_path / "merged.jsonl"]:
        data = path.read_bytes()
        for form in (CARD, CARD.replace(" ", "")):
            assert form.encode() not in data, path
    assert CARD not in log and CARD.replace(" ", "") not in log


def test_live_capture_with_a_filter(tmp_path: Path) -> None:
    """--filter compiles with libpcap: where it is missing the agent says so in one line."""
    out = tmp_path / "flows"
    with _topology() as (cli, srv):
        agent = _agent(cli, out, "--filter", "udp", "--duration", "20")
        try:
            log = _readline(agent, agent.stderr, "capturing on veth-c", 20, must=False)
            if "capturing on" not in log:
                _out, err = agent.communicate(timeout=10)
                log += err
                assert agent.returncode == 2, log
                assert log.count("\n") == 1 and log.startswith(
                    "error: cannot use the capture filter 'udp':"), log
                if "libpcap" in log:
                    pytest.skip("libpcap is not installed: the filter cannot be compiled here")
                pytest.fail(log)
            servers = subprocess.Popen(
                ["ip", "netns", "exec", srv, sys.executable, "-c", SERVERS, SERVER_IP, "-",
                 "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                _readline(servers, servers.stdout, "ready", 20)
                clients = subprocess.run(
                    ["ip", "netns", "exec", cli, sys.executable, "-c", CLIENTS, SERVER_IP, "-",
                     SNI, DB_NAME, CARD], capture_output=True, text=True, timeout=30,
                    check=False)
                assert clients.returncode == 0, clients.stderr
            finally:
                _stop(servers)
            time.sleep(0.3)
            agent.send_signal(signal.SIGTERM)
            _out, err = agent.communicate(timeout=20)
            assert agent.returncode == 0, log + err
        finally:
            _stop(agent)
    flows = [f for p in sorted(out.glob("*.jsonl")) for f in read_flow_file(str(p)).flows]
    assert flows and {f["proto"] for f in flows} == {"UDP"}
