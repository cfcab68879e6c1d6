"""The C plain-hit loop (``capture._fastloop``) against the pure-Python loop of ``read_classic``.

The flow file written with the extension must be byte for byte the one written without it
(``capture.pcapfast._fastloop = None``), on generated classic pcaps that exercise every branch
around the plain hit -- both byte orders, micro / nanosecond stamps, every link layout of the
fast path, IPv4 / IPv6, options, fragments, jumbograms, flags, DNS / TLS / overlay ports (slow
flows), reopened 5-tuples, idle gaps, time going backwards, cut records, truncated files and
reads of a few bytes at a time -- and on the classic pcaps of the public corpus.
"""

from __future__ import annotations

import json
import random
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from capture_pcapbuild import client_hello

import capture.pcapfast
import capture.readers
from capture.ingest import ingest

pytest.importorskip(
    "capture._fastloop",
    reason="C extension capture._fastloop not built (optional: needs a C compiler at install)",
)

CORPUS = (Path(__file__).resolve().parents[2] / "../shared/corpora/pcaps").resolve()
CLASSIC_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
                  b"\xa1\xb2\x3c\x4d"}

LINKTYPES = {"ether": 1, "sll": 113, "sll2": 276, "raw": 101, "raw12": 12, "ipv4": 228,
             "null": 0, "loop": 108}

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def _ipv4(rnd: random.Random, src: bytes, dst: bytes, proto: int, l4: bytes) -> bytes:
    r = rnd.random()
    opts = b"\x01\x01\x01\x00" if r < 0.03 else b""
    frag = 0x2000 if r > 0.98 else (0x0010 if r > 0.97 else 0x4000)
    ihl = 0x45 + len(opts) // 4
    total = 20 + len(opts) + len(l4)
    return struct.pack(">BBHHHBBH4s4s", ihl, 0, total, 1, frag, 64, proto, 0, src, dst) + opts + l4


def _ipv6(rnd: random.Random, src: bytes, dst: bytes, proto: int, l4: bytes) -> bytes:
    r = rnd.random()
    plen = 0 if r < 0.02 else len(l4)  # jumbogram-like: payload length 0
    nh = 0 if r > 0.98 else proto  # hop-by-hop header announced: not the fast path
    return struct.pack(">IHBB16s16s", 0x60000000, plen, nh, 64, src, dst) + l4


def _tcp(sport: int, dport: int, flags: int, payload: bytes, seq: int = 1) -> bytes:
    return struct.pack(">HHIIBBHHH", sport, dport, seq, 1, 0x50, flags, 65535, 0, 0) + payload


def _udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def _link(kind: str, v6: bool, endian: str, rnd: random.Random) -> bytes:
    etype = b"\x86\xdd" if v6 else b"\x08\x00"
    if rnd.random() < 0.02:
        etype = b"\x81\x00"  # a VLAN tag or anything else: the general decoder
    if kind == "ether":
        return b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02" + etype
    if kind == "sll":
        return b"\x00\x00\x00\x01\x00\x06\x02\x00\x00\x00\x00\x01\x00\x00" + etype
    if kind == "sll2":
        return etype + b"\x00\x00\x00\x00\x00\x02\x00\x01\x00\x06\x02\x00\x00\x00\x00\x01\x00\x00"
    if kind == "null":
        return struct.pack(endian + "I", 30 if v6 else 2)
    if kind == "loop":
        return struct.pack(">I", 30 if v6 else 2)
    return b""


def _flows(rnd: random.Random, v6: bool) -> list[tuple[int, bytes, bytes, int, int]]:
    out = []
    for i in range(12):
        if v6:
            a = bytes([0xFD] + [0] * 14 + [1 + i])
            b = bytes([0xFD] + [0] * 14 + [100 + i % 3])
        else:
            a, b = bytes([10, 0, 0, 1 + i]), bytes([10, 0, 1, 1 + i % 3])
        proto = rnd.choice((6, 6, 6, 17))
        sport = 40000 + rnd.randrange(4)
        dport = rnd.choice((80, 443, 5432, 53, 4789, 8125) if proto == 17 else (80, 443, 5432))
        out.append((proto, a, b, sport, dport))
    return out


def make_pcap(path: Path, *, seed: int, kind: str, endian: str, nano: bool, packets: int = 1500,
              v6_share: float = 0.4, truncate: bool = False, absurd: bool = False) -> Path:
    rnd = random.Random(seed)
    v6_ok = kind not in ("ipv4",)
    flows = _flows(rnd, False) + (_flows(rnd, True) if v6_ok else [])
    unit = 1_000_000_000 if nano else 1_000_000
    t = 1_700_000_000 * unit
    recs = []
    prev: tuple[bool, tuple[int, bytes, bytes, int, int]] | None = None
    for i in range(packets):
        g = rnd.random()
        if g < 0.01 and prev is not None:
            # The same flow again: exactly the idle limit, one tick less or more; same time;
            # one tick back.
            use_v6, flow = prev
            t += rnd.choice((300 * unit - 1, 300 * unit, 300 * unit + 1, 0, -1))
        else:
            use_v6 = v6_ok and rnd.random() < v6_share
            flow = rnd.choice(flows[12:] if use_v6 else flows[:12])
            if g < 0.013:
                t += 400 * unit  # idle for more than 300 s
            elif g < 0.02:
                t -= rnd.choice((1, 50_000, 2_000_000)) * (unit // 1_000_000)  # backwards
            else:
                t += rnd.randrange(1, 30_000) * (unit // 1_000_000)
        prev = use_v6, flow
        proto, a, b, sport, dport = flow
        src, dst, sp, dp = (a, b, sport, dport) if rnd.random() < 0.6 else (b, a, dport, sport)
        r = rnd.random()
        if proto == 6:
            flags = (SYN if r < 0.04 else SYN | ACK if r < 0.06 else FIN | ACK if r < 0.08
                     else RST if r < 0.09 else PSH | ACK if r < 0.3 else ACK)
            payload = b""
            if flags & PSH:
                payload = client_hello(f"s{i % 5}.example") if 443 in (sp, dp) else bytes(
                    rnd.randrange(1, 300))
            # SYNs of two sequence numbers: a SYN on a closed flow is then its attempt retried
            # (the same number from the same end) or a new connection.
            l4 = _tcp(sp, dp, flags, payload, seq=rnd.choice((1, 2)) if flags & SYN else 1)
        else:
            if 53 in (sp, dp):
                payload = (struct.pack(">HHHHHH", 7, 0x8180 if sp == 53 else 0x0100, 1, 0, 0, 0)
                           + b"\x01a\x00\x00\x01\x00\x01")
            else:
                payload = bytes(rnd.randrange(0, 80))
            l4 = _udp(sp, dp, payload)
        ip = (_ipv6 if use_v6 else _ipv4)(rnd, src, dst, proto, l4)
        frame = _link(kind, use_v6, endian, rnd) + ip
        caplen = len(frame)
        if rnd.random() < 0.03:
            caplen = rnd.randrange(1, len(frame))  # snapped short
        recs.append(struct.pack(endian + "IIII", t // unit, t % unit, caplen, len(frame))
                    + frame[:caplen])
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    head = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 262144, LINKTYPES[kind])
    body = b"".join(recs)
    if absurd:
        cut = len(b"".join(recs[: packets // 2]))
        body = body[:cut] + struct.pack(endian + "IIII", t // unit, 0, 1 << 20, 60) + bytes(60)
    elif truncate:
        body = body[: len(body) - 7]
    path.write_bytes(head + body)
    return path


class _Trickle:
    """A raw file that hands out at most ``size`` bytes per readinto()."""

    def __init__(self, f: Any, size: int) -> None:
        self.f = f
        self.size = size

    def readinto(self, buffer: memoryview) -> int | None:
        return self.f.readinto(buffer[: self.size])


def _ingest_both(path: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, bytes]:
    fast_ext = capture.pcapfast._fastloop
    assert fast_ext is not None
    out: list[bytes] = []
    stats: list[Any] = []
    for name, ext in (("c", fast_ext), ("py", None)):
        monkeypatch.setattr(capture.pcapfast, "_fastloop", ext)
        dst = tmp / f"{path.name}.{name}.flows"
        s = ingest([str(path)], str(dst))
        out.append(dst.read_bytes())
        stats.append((s.packets, s.flows, s.dns, s.skipped))
    monkeypatch.setattr(capture.pcapfast, "_fastloop", fast_ext)
    assert stats[0] == stats[1]
    return out[0], out[1]


def _uses_extension(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the packets the extension counted (to check the tests reach it)."""
    real = capture.pcapfast._fastloop
    assert real is not None
    hits = [0]

    class Counting:
        def __init__(self, *args: Any) -> None:
            run = real.Loop(*args).run

            def counted(buf: bytearray, off: int, blen: int, n: int) -> tuple[int, int]:
                off, m = run(buf, off, blen, n)
                hits[0] += m - n
                return off, m

            self.run = counted

    class Module:
        Loop = Counting
        Flows = real.Flows

    monkeypatch.setattr(capture.pcapfast, "_fastloop", Module)
    return hits


CASES = [
    (kind, endian, nano)
    for kind in LINKTYPES
    for endian, nano in (("<", False), (">", True), ("<", True), (">", False))
]


@pytest.mark.parametrize(("kind", "endian", "nano"), CASES)
def test_same_flow_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, endian: str,
                        nano: bool) -> None:
    seed = zlib.crc32(f"{kind}{endian}{nano}".encode())
    real = capture.pcapfast._fastloop
    path = make_pcap(tmp_path / "t.pcap", seed=seed, kind=kind, endian=endian, nano=nano)
    with_c, without = _ingest_both(path, tmp_path, monkeypatch)
    assert with_c == without
    hits = _uses_extension(monkeypatch)
    ingest([str(path)], str(tmp_path / "count.flows"))
    assert hits[0] > 80  # the plain hits really went through the C loop
    if kind in ("ether", "sll", "sll2", "raw", "raw12"):  # the layouts with an IPv6 fast path
        path = make_pcap(tmp_path / "t6.pcap", seed=seed, kind=kind, endian=endian, nano=nano,
                         v6_share=1.0)
        monkeypatch.setattr(capture.pcapfast, "_fastloop", real)
        with_c, without = _ingest_both(path, tmp_path, monkeypatch)
        assert with_c == without
        hits = _uses_extension(monkeypatch)
        ingest([str(path)], str(tmp_path / "count6.flows"))
        assert hits[0] > 80


@pytest.mark.parametrize("kind", ["ether", "sll2", "raw"])
@pytest.mark.parametrize(("truncate", "absurd"), [(True, False), (False, True)])
def test_damaged_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str,
                       truncate: bool, absurd: bool) -> None:
    path = make_pcap(tmp_path / "d.pcap", seed=7, kind=kind, endian="<", nano=False,
                     truncate=truncate, absurd=absurd)
    with_c, without = _ingest_both(path, tmp_path, monkeypatch)
    assert with_c == without


@pytest.mark.parametrize("size", [1, 7, 16, 61, 97, 1000])
def test_tiny_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    """Records split across refills at every position: the buffer edges of the C loop."""
    real: Callable[..., tuple[int, str | None]] = capture.readers.read_classic

    def trickle(f: Any, *args: Any, **kwargs: Any) -> tuple[int, str | None]:
        return real(_Trickle(f, size), *args, **kwargs)

    monkeypatch.setattr(capture.readers, "read_classic", trickle)
    for kind, endian in (("ether", "<"), ("sll", ">"), ("raw", "<")):
        path = make_pcap(tmp_path / f"s-{kind}.pcap", seed=size, kind=kind, endian=endian,
                         nano=False, packets=400, truncate=True)
        with_c, without = _ingest_both(path, tmp_path, monkeypatch)
        assert with_c == without
    # And the same as reading in one go.
    monkeypatch.setattr(capture.readers, "read_classic", real)
    whole, _ = _ingest_both(path, tmp_path, monkeypatch)
    assert whole == with_c


def test_long_lived_flows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mostly plain hits: long runs in C, with big counters."""
    path = make_pcap(tmp_path / "l.pcap", seed=3, kind="ether", endian="<", nano=True,
                     packets=20000, v6_share=0.5)
    with_c, without = _ingest_both(path, tmp_path, monkeypatch)
    assert with_c == without


def _corpus_pcaps() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    out = []
    for p in sorted(CORPUS.rglob("*")):
        if p.is_file():
            with p.open("rb") as f:
                if f.read(4) in CLASSIC_MAGICS:
                    out.append(p)
    return out


@pytest.mark.skipif(not _corpus_pcaps(), reason=f"no classic pcaps in {CORPUS}")
def test_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for path in _corpus_pcaps():
        with_c, without = _ingest_both(path, tmp_path, monkeypatch)
        assert with_c == without, path


# -- Flows that start in C ---------------------------------------------------------------------
#
# The C loop starts plain TCP / UDP flows in its own table and hands them to Python as FlowState
# objects when Python needs them (table.native) or when the capture ends. These captures are
# many short sessions that go through every branch of that: handshakes, ClientHellos whole,
# split over segments (Python reassembles), after a plaintext preamble, with odd names, not
# quite hellos, plaintext both ways, FIN / RST, a new SYN on a closed 5-tuple, idle gaps, time
# going backwards, and packets of the same flows the C loop does not parse (VLAN tag, IP
# options, fragments, short snaplen) so that Python takes flows over mid-way.


def _payloads(rnd: random.Random, k: int) -> list[tuple[bool, bytes]]:
    """(from the client, payload) of one session after its handshake."""
    r = rnd.random()
    hello = client_hello(rnd.choice([f"S{k}.Example.com.", f"s{k}.example", "bad name!", "...",
                                     None, "x" * 300, f"10.0.{k % 250}.1", "0x7f.1"]),
                         pad=rnd.choice((0, 0, 40, 600)))
    proxy = rnd.choice((PROXY_V1, PROXY_V2, PROXY_V2_LONG, PROXY_V1[:20], PROXY_V2[:14]))
    if r < 0.2:
        out = [(True, hello)]
    elif r < 0.25:  # behind a PROXY protocol header (or a cut one), with the hello or alone
        out = [(True, proxy + hello)] if rnd.random() < 0.6 else [(True, proxy), (True, hello)]
    elif r < 0.35:  # split over two or three segments
        cut = sorted(rnd.sample(range(1, len(hello)), 2))
        out = [(True, hello[: cut[0]]), (True, hello[cut[0] : cut[1]]), (True, hello[cut[1] :])]
        if rnd.random() < 0.5:
            out = [(True, hello[: cut[0]]), (True, hello[cut[0] :])]
    elif r < 0.45:  # a STARTTLS-style preamble first
        out = [(True, b"\x00\x00\x00\x08\x04\xd2\x16\x2f"), (False, b"S"), (True, hello)]
    elif r < 0.55:  # looks like a hello, is not one (or is cut short)
        junk = b"\x16\x03\x01" + bytes(rnd.randrange(0, 60))
        out = [(True, junk[: rnd.randrange(1, len(junk) + 1)])]
    elif r < 0.65:  # random bytes after a hello record header
        body = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 120)))
        out = [(True, b"\x16\x03\x03" + struct.pack(">H", len(body) + 4) + b"\x01" + body)]
    else:  # plaintext: short requests, short or long answers
        out = [(True, b"GET / HTTP/1.1\r\n\r\n")]
    for _ in range(rnd.randrange(0, 8)):
        out.append((rnd.random() < 0.4, bytes(rnd.choice((1, 100, 257, 1400)))))
    return out


# PROXY protocol headers (HAProxy's proxy-protocol.txt): version 1 text, version 2 binary (with
# a TLV making it longer than a preamble).
PROXY_V1 = b"PROXY TCP4 192.0.2.7 10.2.0.1 51000 443\r\n"
PROXY_V2 = b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c" + bytes(12)
PROXY_V2_LONG = b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x01\x3b" + bytes(12) + b"\xea\x01\x2c" + bytes(300)


def _session(rnd: random.Random, k: int, v6: bool) -> list[tuple[bytes, bytes, int, int, int,
                                                                  bytes, int]]:
    """(src, dst, sport, dport, flags, payload, seq) of one TCP session."""
    if v6:
        client = bytes([0xFD] + [0] * 13 + [k >> 8 & 255, k & 255])
        server = bytes([0xFD] + [0] * 14 + [1 + k % 5])
    else:
        client, server = bytes([10, 1, k >> 8 & 255, k & 255]), bytes([10, 2, 0, 1 + k % 5])
    cport = 40000 + k % 9  # few ports: 5-tuples come back (reopened after close, or idle)
    sport = rnd.choice((443, 5432, 8080, 80, 53))
    c = (client, server, cport, sport)
    s = (server, client, sport, cport)
    isn = rnd.randrange(1 << 32)  # this connection's initial sequence number
    pkts: list[tuple[bytes, bytes, int, int, int, bytes, int]] = []
    if rnd.random() < 0.1:  # refused, then retried: the same attempt again, or a new one
        pkts += [(*c, SYN, b"", isn), (*s, RST | ACK, b"", 0)]
        if rnd.random() < 0.5:
            isn = rnd.randrange(1 << 32)
    if rnd.random() < 0.9:
        pkts += [(*c, SYN, b"", isn), (*s, SYN | ACK, b"", 1), (*c, ACK, b"", 1)]
    for from_client, payload in _payloads(rnd, k):
        pkts.append((*(c if from_client else s), PSH | ACK, payload, 1))
        if rnd.random() < 0.5:
            pkts.append((*(s if from_client else c), ACK, b"", 1))
    end = rnd.random()
    if end < 0.1:
        pkts.append((*s, RST | ACK, b"", 1))
    elif end < 0.8:
        pkts += [(*c, FIN | ACK, b"", 1), (*s, FIN | ACK, b"", 1), (*c, ACK, b"", 1)]
    return pkts


def make_sessions(path: Path, *, seed: int, sessions: int = 300, endian: str = "<",
                  t0: int = 1_700_000_000) -> Path:
    rnd = random.Random(seed)
    streams = [_session(rnd, k, v6=rnd.random() < 0.3) for k in range(sessions)]
    for k in range(sessions // 10):  # UDP: replies first, both ways, DNS
        a, b = bytes([10, 3, 0, k]), bytes([10, 4, 0, 1])
        sp, dp = rnd.choice(((123, 40000 + k), (40000 + k, 8125), (5000, 5000), (53, 33000 + k)))
        streams.append([((a, b, sp, dp, 0, bytes(rnd.randrange(30)), 0)) if rnd.random() < 0.6
                        else (b, a, dp, sp, 0, bytes(10), 0) for _ in range(rnd.randrange(1, 6))])
    t = t0 * 1_000_000
    recs = []
    live = [0] * len(streams)
    order = [i for i, s in enumerate(streams) for _ in s]
    rnd.shuffle(order)
    for i in order:  # each stream in its own order, interleaved with the others
        src, dst, sp, dp, flags, payload, seq = streams[i][live[i]]
        live[i] += 1
        g = rnd.random()
        t += (400_000_000 if g < 0.001 else -rnd.randrange(1, 3000) if g < 0.008
              else rnd.randrange(1, 2000))
        proto = 17 if flags == 0 else 6
        l4 = _udp(sp, dp, payload) if proto == 17 else _tcp(sp, dp, flags, payload, seq)
        ip = (_ipv6 if len(src) == 16 else _ipv4)(rnd, src, dst, proto, l4)
        frame = _link("ether", len(src) == 16, endian, rnd) + ip
        caplen = len(frame) if rnd.random() > 0.01 else rnd.randrange(20, len(frame) + 1)
        recs.append(struct.pack(endian + "IIII", t // 1_000_000, t % 1_000_000, caplen,
                                len(frame)) + frame[:caplen])
    head = struct.pack(endian + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    path.write_bytes(head + b"".join(recs))
    return path


def _state(table: Any) -> list[tuple[Any, ...]]:
    """Every slot of every flow (halves as their counts), in a stable order."""
    from capture.table import FlowState

    out = []
    for fl in table.flows():
        row = []
        for name in FlowState.__slots__:
            value = getattr(fl, name)
            if name in ("a", "b"):
                value = (value.packets, value.bytes, value.is_a)
            elif isinstance(value, set):
                value = sorted(value)
            row.append((name, value))
        out.append(tuple(row))
    return sorted(out, key=repr)


def _tables_both(paths: list[Path], monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    from capture.readers import open_capture, read_capture
    from capture.table import FlowTable

    real = capture.pcapfast._fastloop
    tables = []
    for ext in (real, None):
        monkeypatch.setattr(capture.pcapfast, "_fastloop", ext)
        table = FlowTable()
        for path in paths:
            read_capture(open_capture(str(path)), table)
        assert (table.native is not None) == (ext is not None)
        table.settle()
        tables.append(table)
    monkeypatch.setattr(capture.pcapfast, "_fastloop", real)
    return tables[0], tables[1]


@pytest.mark.parametrize("seed", range(6))
def test_flows_started_in_c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    path = make_sessions(tmp_path / "s.pcap", seed=seed, endian="<>"[seed % 2])
    with_c, without = _ingest_both(path, tmp_path, monkeypatch)
    assert with_c == without
    c_table, py_table = _tables_both([path], monkeypatch)
    assert _state(c_table) == _state(py_table)
    flows = [json.loads(line) for line in with_c.decode().splitlines()[1:]]
    assert sum(1 for f in flows if f.get("sni")) > 10  # the C hello parser found names
    assert sum(1 for f in flows if f.get("tls") and not f.get("sni")) > 3
    hits = _uses_extension(monkeypatch)
    stats = ingest([str(path)], str(tmp_path / "count.flows"))
    assert hits[0] > stats.packets * 0.35  # not: DNS ports, split hellos, non-plain records


def test_flows_carry_over_between_captures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    """Two captures read into one table: the second meets the first's flows as Python's."""
    one = make_sessions(tmp_path / "1.pcap", seed=11)
    two = make_sessions(tmp_path / "2.pcap", seed=11, t0=1_700_000_000 + 2)  # same 5-tuples
    c_table, py_table = _tables_both([one, two], monkeypatch)
    assert _state(c_table) == _state(py_table)


def test_hello_parser_against_capture_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    """Random bytes behind a hello header, one per flow: what C and capture.tls find agree."""
    rnd = random.Random(5)
    recs = []
    t = 1_700_000_000 * 1_000_000
    for k in range(3000):
        body = bytearray(rnd.randrange(256) for _ in range(rnd.randrange(0, 90)))
        if rnd.random() < 0.5:
            body[38:40] = b"\x00\x00"  # cipher suites length: reach the extensions
        hello = client_hello(rnd.choice(("a.b", "A.B.", None)), pad=rnd.randrange(3))
        payload = (b"\x16\x03" + bytes([rnd.randrange(5)]) + struct.pack(">H", len(body) + 4)
                   + b"\x01" + bytes(body)) if rnd.random() < 0.7 else hello[: rnd.randrange(
                       6, len(hello) + 1)]
        frame = _link("ether", False, "<", rnd) + _ipv4(
            rnd, bytes([10, 5, k >> 8, k & 255]), b"\x0a\x06\x00\x01", 6,
            _tcp(40000, 443, PSH | ACK, payload))
        t += 10
        recs.append(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(frame), len(frame))
                    + frame)
    path = tmp_path / "h.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1) + b"".join(recs))
    with_c, without = _ingest_both(path, tmp_path, monkeypatch)
    assert with_c == without
    c_table, py_table = _tables_both([path], monkeypatch)
    assert _state(c_table) == _state(py_table)
