"""Ingest throughput: our ``capture.ingest`` vs scapy's readers, on a generated capture.

Generates classic pcaps (Ethernet, IPv4) of ``--packets`` packets quickly (raw records written
with ``struct``, not scapy per packet):

* ``short``: short connections, as a cluster's services make them -- about 78,000 TCP
  connections of about 13 packets for 1M packets (SYN / SYN-ACK / ACK, a TLS ClientHello with
  SNI or a plain request, two to four exchanges, FIN / FIN / ACK), and a DNS query and response
  over UDP before one connection in ten. The headline: our ingest against a header-only scapy
  ``RawPcapReader`` loop over the same whole file, back to back, ``--repeat`` times (the ratio
  of each pair, and their median: the machine may be shared), and the memory a flow costs the
  fold (traced allocations of folding half of the capture and all of it: the difference per
  flow), with and without the C extension;
* ``mixed``: many concurrent TCP connections of varying length (mean ~40 packets), some
  resets, DNS, some other UDP;
* ``long``: a few hundred long-lived connections (the fast path's best case).

For ``mixed`` and ``long`` it then measures, in the same run:

* ``capture.ingest.fold`` on the whole capture (our fast reader + the full fold),
* ``capture.ingest.ingest`` with and without the optional C loop (``capture._fastloop``),
* the same with ``fast=False`` (scapy's ``RawPcapReader`` + our decoder) on a prefix,
* a plain ``RawPcapReader`` loop that does nothing with the packets, on a prefix,
* scapy's ``PcapReader`` (full dissection into scapy layers) on a prefix,
* ``tshark -T fields`` extracting the fields a flow needs, on the same prefix (where tshark is
  installed; it is not a dependency),
* for the mixed capture, the same packets written as pcapng: our ingest of it, and scapy's
  ``RawPcapNgReader`` plain loop on a prefix,

and prints packets/s and ratios, plus peak memory (max RSS of a fresh subprocess that ingests
the capture) for 1M packets and, with ``--five-million``, 5M packets.

    .venv/bin/python benchmarks/ingest_pcap.py                 # 1M packets, every mix
    .venv/bin/python benchmarks/ingest_pcap.py --mix short     # the headline only
    .venv/bin/python benchmarks/ingest_pcap.py --five-million  # also 5M for the memory check
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ETH_HEADER = b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02" + b"\x08\x00"
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
_IP = struct.Struct(">BBHHHBBH4s4s")
_TCP = struct.Struct(">HHIIBBHHH")
_UDP = struct.Struct(">HHHH")
_REC = struct.Struct("<IIII")


def _ip(src: bytes, dst: bytes, proto: int, payload_len: int) -> bytes:
    return _IP.pack(0x45, 0, 20 + payload_len, 0, 0x4000, 64, proto, 0, src, dst)


def _tcp(src: bytes, dst: bytes, sport: int, dport: int, *, seq: int, flags: int,
         payload: bytes = b"") -> bytes:
    tcp = _TCP.pack(sport, dport, seq & 0xFFFFFFFF, 1, 0x50, flags, 65535, 0, 0)
    return ETH_HEADER + _ip(src, dst, 6, 20 + len(payload)) + tcp + payload


def _udp(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    udp = _UDP.pack(sport, dport, 8 + len(payload), 0)
    return ETH_HEADER + _ip(src, dst, 17, 8 + len(payload)) + udp + payload


def _client_hello(sni: str) -> bytes:
    name = sni.encode()
    sni_ext = struct.pack(">HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    body += struct.pack(">H", len(sni_ext)) + sni_ext
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs


def _dns_pair(client: bytes, server: bytes, port: int, name: str, addr: bytes) -> list[bytes]:
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    question = qname + b"\x00\x01\x00\x01"
    query = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + question
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + addr
    response = struct.pack(">HHHHHH", 0x1234, 0x8180, 1, 1, 0, 0) + question + answer
    return [_udp(client, server, port, 53, query), _udp(server, client, 53, port, response)]


def _tcp_flow(rnd: random.Random, k: int) -> list[bytes]:
    client = bytes([10, 1 + (k >> 16) % 8, (k >> 8) & 255, k & 255])
    server = bytes([10, 96, 0, 1 + rnd.randrange(60)])
    cport = 32768 + k % 28000
    sport = rnd.choice((443, 443, 443, 80, 5432, 6379, 8080, 9092))
    cs, ss = rnd.randrange(1 << 32), rnd.randrange(1 << 32)
    pkts = [
        _tcp(client, server, cport, sport, seq=cs, flags=SYN),
        _tcp(server, client, sport, cport, seq=ss, flags=SYN | ACK),
        _tcp(client, server, cport, sport, seq=cs + 1, flags=ACK),
    ]
    first = (_client_hello(f"svc-{k % 997}.example.com") if sport == 443
             else b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    pkts.append(_tcp(client, server, cport, sport, seq=cs + 1, flags=PSH | ACK, payload=first))
    exchanges = min(int(rnd.expovariate(1 / 20)) + 1, 400)  # mean ~20 request/response pairs
    big = bytes(1448)
    for _ in range(exchanges):
        size = rnd.choice((200, 1448))
        pkts.append(_tcp(server, client, sport, cport, seq=ss, flags=ACK, payload=big[:size]))
        pkts.append(_tcp(client, server, cport, sport, seq=cs, flags=ACK))
    if rnd.random() < 0.05:
        pkts.append(_tcp(server, client, sport, cport, seq=ss, flags=RST | ACK))
    else:
        pkts.append(_tcp(client, server, cport, sport, seq=cs, flags=FIN | ACK))
        pkts.append(_tcp(server, client, sport, cport, seq=ss, flags=FIN | ACK))
        pkts.append(_tcp(client, server, cport, sport, seq=cs, flags=ACK))
    return pkts


def _short_flow(rnd: random.Random, k: int) -> list[bytes]:
    """A short connection (about 13 packets), after a DNS lookup one time in ten."""
    if rnd.random() < 0.1:
        client = bytes([10, 1, (k >> 8) & 255, k & 255])
        return _dns_pair(client, b"\x0a\x60\x00\x0a", 32768 + k % 28000,
                         f"svc-{k % 997}.ns.svc.cluster.local", bytes([10, 96, 1, k % 250]))
    client = bytes([10, 1 + (k >> 16) % 8, (k >> 8) & 255, k & 255])
    server = bytes([10, 96, 0, 1 + rnd.randrange(60)])
    cport = 32768 + k % 28000
    sport = rnd.choice((443, 443, 80, 5432, 6379, 8080))
    cs, ss = rnd.randrange(1 << 32), rnd.randrange(1 << 32)
    pkts = [
        _tcp(client, server, cport, sport, seq=cs, flags=SYN),
        _tcp(server, client, sport, cport, seq=ss, flags=SYN | ACK),
        _tcp(client, server, cport, sport, seq=cs + 1, flags=ACK),
    ]
    first = (_client_hello(f"svc-{k % 997}.example.com") if sport == 443
             else b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    pkts.append(_tcp(client, server, cport, sport, seq=cs + 1, flags=PSH | ACK, payload=first))
    for _ in range(rnd.randrange(2, 5)):
        pkts.append(_tcp(server, client, sport, cport, seq=ss, flags=ACK, payload=bytes(300)))
        pkts.append(_tcp(client, server, cport, sport, seq=cs, flags=ACK))
    pkts.append(_tcp(client, server, cport, sport, seq=cs, flags=FIN | ACK))
    pkts.append(_tcp(server, client, sport, cport, seq=ss, flags=FIN | ACK))
    pkts.append(_tcp(client, server, cport, sport, seq=cs, flags=ACK))
    return pkts


def _long_flow(rnd: random.Random, k: int) -> list[bytes]:
    """A long-lived connection (bulk transfer / connection pool): thousands of packets."""
    client = bytes([10, 3, (k >> 8) & 255, k & 255])
    server = bytes([10, 96, 2, 1 + k % 50])
    cport, sport = 32768 + k % 28000, 5432
    pkts = [
        _tcp(client, server, cport, sport, seq=1, flags=SYN),
        _tcp(server, client, sport, cport, seq=1, flags=SYN | ACK),
        _tcp(client, server, cport, sport, seq=2, flags=ACK),
    ]
    big = bytes(1448)
    for _ in range(rnd.randrange(500, 4000)):
        pkts.append(_tcp(server, client, sport, cport, seq=2, flags=ACK, payload=big))
        pkts.append(_tcp(client, server, cport, sport, seq=2, flags=ACK))
    return pkts


def _flow(rnd: random.Random, k: int) -> list[bytes]:
    r = rnd.random()
    if r < 0.10:
        client = bytes([10, 1, (k >> 8) & 255, k & 255])
        return _dns_pair(client, b"\x0a\x60\x00\x0a", 32768 + k % 28000,
                         f"svc-{k % 997}.ns.svc.cluster.local", bytes([10, 96, 1, k % 250]))
    if r < 0.13:
        client = bytes([10, 2, (k >> 8) & 255, k & 255])
        return [_udp(client, b"\x0a\x60\x00\x0b", 40000 + k % 20000, 8125, bytes(60))
                for _ in range(rnd.randrange(1, 20))]
    return _tcp_flow(rnd, k)


def generate(path: str, packets: int, *, seed: int = 1, concurrent: int = 2000,
             mix: str = "mixed") -> int:
    """Write a classic pcap of ``packets`` packets; returns the number of flows started.

    ``short``: short connections (about 13 packets) and DNS lookups;
    ``mixed``: many short and medium connections (mean ~40 packets), DNS, some UDP;
    ``long``: a few hundred long-lived connections (the fast path's best case).
    """
    rnd = random.Random(seed)
    make = {"short": _short_flow, "mixed": _flow, "long": _long_flow}[mix]
    if mix == "long":
        concurrent = min(concurrent, 200)
    active: list[list[bytes]] = []
    positions: list[int] = []
    started = 0
    t_us = 1_700_000_000 * 1_000_000
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        out: list[bytes] = []
        written = 0
        slot = 0
        while written < packets:
            if len(active) < concurrent:
                active.append(make(rnd, started))
                positions.append(0)
                started += 1
                continue
            slot = (slot + 1 + rnd.randrange(7)) % len(active)
            pkt = active[slot][positions[slot]]
            positions[slot] += 1
            if positions[slot] == len(active[slot]):
                active[slot] = make(rnd, started)
                positions[slot] = 0
                started += 1
            t_us += rnd.randrange(1, 20)
            out.append(_REC.pack(t_us // 1_000_000, t_us % 1_000_000, len(pkt), len(pkt)) + pkt)
            written += 1
            if len(out) >= 65536:
                f.write(b"".join(out))
                out.clear()
        f.write(b"".join(out))
    return started


def to_pcapng(src: str, dst: str, packets: int | None = None) -> None:
    """The same packets as a pcapng (one Ethernet interface, nanosecond time stamps), the way
    dumpcap / Wireshark write them: Enhanced Packet Blocks without options."""

    def block(btype: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        total = 12 + len(body)
        return struct.pack("<II", btype, total) + body + struct.pack("<I", total)

    with open(src, "rb") as f, open(dst, "wb") as out:
        f.read(24)
        out.write(block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
        tsresol = struct.pack("<HH", 9, 1) + bytes([9, 0, 0, 0]) + struct.pack("<HH", 0, 0)
        out.write(block(1, struct.pack("<HHI", 1, 0, 262144) + tsresol))
        blocks: list[bytes] = []
        n = 0
        while packets is None or n < packets:
            head = f.read(16)
            if len(head) < 16:
                break
            sec, usec, caplen, wirelen = _REC.unpack(head)
            ts = sec * 1_000_000_000 + usec * 1000
            blocks.append(block(6, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, caplen,
                                               wirelen) + f.read(caplen)))
            n += 1
            if len(blocks) >= 65536:
                out.write(b"".join(blocks))
                blocks.clear()
        out.write(b"".join(blocks))


def measure_pcapng(path: str, prefix_packets: int, repeat: int) -> None:
    """Our ingest of the same capture written as pcapng, next to scapy's RawPcapNgReader."""
    from scapy.utils import RawPcapNgReader

    import capture.pcapfast
    from capture.ingest import ingest

    ng = path + ".pcapng"
    to_pcapng(path, ng)
    try:
        best = float("inf")
        stats = None
        for _ in range(repeat):
            t0 = time.perf_counter()
            stats = ingest([ng], os.devnull)
            best = min(best, time.perf_counter() - t0)
        assert stats is not None
        built = capture.pcapfast._fastloop is not None
        ours = _rate("capture.ingest.ingest of the same packets as pcapng"
                     + (" [C]" if built else " [no C ext]"), stats.packets, best)
        small = ng + ".prefix"
        to_pcapng(path, small, prefix_packets)
        t0 = time.perf_counter()
        n = 0
        with RawPcapNgReader(small) as reader:
            for _pkt, _meta in reader:
                n += 1
        raw = _rate("scapy RawPcapNgReader loop (no decoding), prefix", n,
                    time.perf_counter() - t0)
        os.unlink(small)
        print(f"  pcapng: ours / plain RawPcapNgReader loop = {ours / raw:8.2f}x")
    finally:
        os.unlink(ng)


def _rate(label: str, packets: int, seconds: float) -> float:
    rate = packets / seconds
    print(f"  {label:<52} {packets:>9,} packets in {seconds:7.3f} s = {rate:>12,.0f} packets/s")
    return rate


def _prefix(src: str, dst: str, packets: int) -> None:
    """Copy the first ``packets`` records of a classic little-endian pcap."""
    with open(src, "rb") as f, open(dst, "wb") as out:
        out.write(f.read(24))
        for _ in range(packets):
            head = f.read(16)
            if len(head) < 16:
                break
            caplen = struct.unpack("<IIII", head)[2]
            out.write(head + f.read(caplen))


def measure_headline(path: str, repeat: int) -> None:
    """Our ingest and a header-only RawPcapReader loop over the same whole file, back to back,
    ``repeat`` times; then the bytes per flow of the fold."""
    from scapy.utils import RawPcapReader

    import capture.pcapfast
    from capture.ingest import ingest

    built = capture.pcapfast._fastloop is not None
    ratios = []
    stats = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        stats = ingest([path], os.devnull)
        ours = stats.packets / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        n = 0
        with RawPcapReader(path) as reader:
            for _pkt, _meta in reader:
                n += 1
        raw = n / (time.perf_counter() - t0)
        ratios.append(ours / raw)
        print(f"  ingest {ours:>12,.0f} packets/s{' [C]' if built else ' [no C ext]'},"
              f" RawPcapReader loop {raw:>10,.0f} packets/s: {ours / raw:6.2f}x")
    assert stats is not None
    tcp = stats.flows - stats.dns  # (one DNS answer per UDP lookup flow here)
    print(f"  capture: {stats.packets:,} packets, {stats.flows:,} flows (about {tcp:,} TCP"
          f" connections of {(stats.packets - 2 * stats.dns) / max(tcp, 1):.1f} packets),"
          f" {stats.dns:,} DNS answers")
    print(f"  ours / plain RawPcapReader loop, same run: median {statistics.median(ratios):.2f}x"
          f" (min {min(ratios):.2f}x, max {max(ratios):.2f}x over {repeat} pairs)")
    print("bytes per flow in the fold (traced allocations: half the capture, then all of it):")
    with tempfile.TemporaryDirectory() as tmp:
        half = os.path.join(tmp, "half.pcap")
        _prefix(path, half, stats.packets // 2)
        for label, ext in (("C extension (native flows)", capture.pcapfast._fastloop),
                           ("pure Python (FlowState objects)", None)):
            if label.startswith("C") and not built:
                continue
            saved = capture.pcapfast._fastloop
            capture.pcapfast._fastloop = ext
            try:
                (m1, f1), (m2, f2) = _traced_fold(half), _traced_fold(path)
            finally:
                capture.pcapfast._fastloop = saved
            print(f"  {label:<34} {(m2 - m1) / max(f2 - f1, 1):8,.0f} bytes per flow"
                  f" ({m2 / 2**20:,.1f} MiB for {f2:,} flows)")


def _traced_fold(path: str) -> tuple[int, int]:
    """(bytes allocated and still held after folding ``path`` into a table, flows)."""
    from capture.readers import open_capture, read_capture
    from capture.table import FlowTable

    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        table = FlowTable()
        read_capture(open_capture(path), table)
        used = tracemalloc.get_traced_memory()[0]
        flows = table.flow_count()
    finally:
        tracemalloc.stop()
        gc.enable()
    del table
    return used, flows


def measure(path: str, prefix_packets: int, repeat: int) -> float:
    """Print our throughput and scapy's on the same capture; return ours (packets/s)."""
    import scapy.layers.inet
    import scapy.layers.l2  # noqa: F401
    from scapy.utils import PcapReader, RawPcapReader

    import capture.pcapfast
    from capture.ingest import fold, ingest

    fold_best = ingest_best = float("inf")
    stats = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        _header, _records, stats = fold([path])
        fold_best = min(fold_best, time.perf_counter() - t0)
        t0 = time.perf_counter()
        ingest([path], os.devnull)
        ingest_best = min(ingest_best, time.perf_counter() - t0)
    assert stats is not None
    print(f"capture: {stats.packets:,} packets, {stats.flows:,} flows"
          f" ({stats.packets / max(stats.flows, 1):.0f} packets per flow),"
          f" {stats.dns:,} DNS answers, skipped {stats.skipped}; best of {repeat}")
    built = capture.pcapfast._fastloop is not None
    ours = _rate("capture.ingest.ingest (read, fold, write flow file)"
                 + (" [C loop]" if built else " [no C ext]"), stats.packets, ingest_best)
    _rate("capture.ingest.fold (to records, each flow as objects)", stats.packets, fold_best)
    pure = None
    if built:
        # The same run without the optional C extension (capture/_fastloop.c).
        saved = capture.pcapfast._fastloop
        capture.pcapfast._fastloop = None
        try:
            pure_best = float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter()
                ingest([path], os.devnull)
                pure_best = min(pure_best, time.perf_counter() - t0)
        finally:
            capture.pcapfast._fastloop = saved
        pure = _rate("capture.ingest.ingest, pure Python (C extension disabled)", stats.packets,
                     pure_best)

    with tempfile.TemporaryDirectory() as tmp:
        small = os.path.join(tmp, "prefix.pcap")
        _prefix(path, small, prefix_packets)

        t0 = time.perf_counter()
        _h, _r, pstats = fold([small], fast=False)
        ours_scapy = _rate("capture.ingest with scapy RawPcapReader, prefix", pstats.packets,
                           time.perf_counter() - t0)

        t0 = time.perf_counter()
        n = 0
        with RawPcapReader(small) as reader:
            for _pkt, _meta in reader:
                n += 1
        raw = _rate("scapy RawPcapReader loop (no decoding), prefix", n,
                    time.perf_counter() - t0)

        t0 = time.perf_counter()
        n = 0
        with PcapReader(small) as reader:
            for _packet in reader:
                n += 1
        dissect = _rate("scapy PcapReader (layer dissection), prefix", n,
                        time.perf_counter() - t0)

        tshark = shutil.which("tshark")
        shark = None
        if tshark is not None:
            # tshark's field extraction of what a flow needs, on the same prefix.
            fields = ["frame.time_epoch", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
                      "ip.proto", "tcp.srcport", "tcp.dstport", "tcp.flags", "udp.srcport",
                      "udp.dstport", "ip.len", "tls.handshake.extensions_server_name",
                      "dns.a"]
            cmd = [tshark, "-n", "-r", small, "-T", "fields"]
            for name in fields:
                cmd += ["-e", name]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            shark = _rate("tshark -T fields (flow fields), prefix", n, time.perf_counter() - t0)
        else:
            print("  (tshark not installed: no tshark comparison)")

    print("ratios (same run):")
    print(f"  ours / scapy PcapReader dissection   = {ours / dissect:8.1f}x")
    print(f"  ours / plain RawPcapReader loop      = {ours / raw:8.2f}x")
    print(f"  ours / ours-with-RawPcapReader       = {ours / ours_scapy:8.2f}x")
    if shark is not None:
        print(f"  ours / tshark field extraction       = {ours / shark:8.1f}x")
    if pure is not None:
        print(f"  with C extension / pure Python       = {ours / pure:8.2f}x")
    else:
        print("  (C extension capture._fastloop not built: pure Python only)")
    return ours


def peak_rss(path: str) -> int:
    """Peak resident memory (KiB) of a fresh interpreter that ingests ``path`` to a flow file.

    Read from /proc/self/status VmHWM, which starts afresh at exec (``ru_maxrss`` would carry
    the forking parent's size over); falls back to ``ru_maxrss`` elsewhere.
    """
    code = (
        "import os, sys, resource\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "def hwm():\n"
        "    try:\n"
        "        for line in open('/proc/self/status'):\n"
        "            if line.startswith('VmHWM:'):\n"
        "                return int(line.split()[1])\n"
        "    except OSError:\n"
        "        pass\n"
        "    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "from capture.ingest import ingest\n"
        "import scapy.utils\n"
        "base = hwm()\n"
        "s = ingest([sys.argv[1]], os.devnull)\n"
        "print(base, hwm(), s.packets, s.flows)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, path], check=True, capture_output=True,
                         text=True).stdout.split()
    base, peak, packets, flows = (int(x) for x in out)
    per_flow = (peak - base) * 1024 / max(flows, 1)
    print(f"  {packets:>9,} packets, {flows:>7,} flows ({os.path.getsize(path) >> 20:>5} MiB file):"
          f" peak RSS {peak / 1024:6.1f} MiB (interpreter + imports {base / 1024:5.1f} MiB;"
          f" ~{per_flow:,.0f} bytes per flow above that)")
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--mix", choices=("short", "mixed", "long", "all"), default="all",
                        help="traffic mix (default: all, one after the other)")
    parser.add_argument("--prefix", type=int, default=20_000,
                        help="packets for the (slow) scapy comparisons")
    parser.add_argument("--repeat", type=int, default=3,
                        help="best of N for our ingest; pairs of runs for the headline")
    parser.add_argument("--five-million", action="store_true",
                        help="also generate 5M packets and report peak memory for it")
    parser.add_argument("--keep", metavar="DIR", help="write the captures here and keep them")
    args = parser.parse_args()
    workdir = args.keep or tempfile.mkdtemp(prefix="ingest-bench-")
    os.makedirs(workdir, exist_ok=True)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    mixes = ("short", "mixed", "long") if args.mix == "all" else (args.mix,)
    try:
        for mix in mixes:
            path = os.path.join(workdir, f"bench-{mix}-{args.packets}.pcap")
            t0 = time.perf_counter()
            if not os.path.exists(path):
                generate(path, args.packets, mix=mix)
            print(f"\n== {mix} traffic: {path} ({os.path.getsize(path) >> 20} MiB,"
                  f" ready in {time.perf_counter() - t0:.1f} s)")
            if mix == "short":
                measure_headline(path, args.repeat)
                continue
            measure(path, args.prefix, args.repeat)
            if mix == "mixed":
                measure_pcapng(path, args.prefix, args.repeat)
        if args.mix not in ("all", "mixed"):
            return
        print("\npeak memory (separate processes, mixed traffic):")
        path = os.path.join(workdir, f"bench-mixed-{args.packets}.pcap")
        if not os.path.exists(path):
            generate(path, args.packets)
        peak_rss(path)
        if args.five_million:
            big = os.path.join(workdir, "bench-mixed-5000000.pcap")
            if not os.path.exists(big):
                generate(big, 5_000_000)
            peak_rss(big)
    finally:
        if not args.keep:
            for name in os.listdir(workdir):
                os.unlink(os.path.join(workdir, name))
            os.rmdir(workdir)


if __name__ == "__main__":
    main()
