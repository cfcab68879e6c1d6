"""Native flows (``capture._fastloop``: the Flows store, its parsers and its writer) against the
Python code they stand in for.

The flow file of an ingest must be byte for byte the same three ways: with the C loop (flows
kept in C through the writing), with the pure-Python fast loop (``capture.pcapfast._fastloop``
set to None, as where no compiler was found) and with scapy's readers and the general decoder
(``fast=False``, the reference); and every flow's internal state must be the same with and
without the extension. The captures are built here, record by record, from packet sequences
Hypothesis draws over a few endpoints (so that 5-tuples meet again): TCP handshakes, SYNs
retried or on a closed 5-tuple, FIN / RST, ClientHellos whole, split over segments or behind a
PROXY header, DNS responses over UDP and TCP (A, AAAA, CNAME chains, multicast, malformed),
plain UDP both ways, IPv4 and IPv6, fragments in and out of order, VLAN tags and IP options
(records the C loop leaves to Python mid-flow), snapped records, time going backwards and idle
gaps, classic pcaps of several link types, byte orders and time resolutions, rotated into
several files, pcapng with two link types, and the capture's own flow file read with it (every
flow key then ties between the C store and a record source).

Formats: classic pcap as libpcap's pcap-savefile(5) lays it out, pcapng as
draft-ietf-opsawg-pcapng (``capture_pcapbuild.pcapng_bytes``); IPv4 RFC 791, IPv6 RFC 8200,
TCP RFC 9293, UDP RFC 768, DNS RFC 1035, TLS ClientHello RFC 8446 section 4.1.2 with the
server_name extension of RFC 6066.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import ipaddress
import random
import struct
import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from capture_pcapbuild import client_hello, pcapng_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import capture.pcapfast
from capture.dns import parse_response
from capture.errors import CaptureError
from capture.flowfile import ordered_lines
from capture.ingest import ingest
from capture.readers import open_capture, read_capture
from capture.table import NS, FlowState, FlowTable, address_text

fastloop = pytest.importorskip(
    "capture._fastloop",
    reason="C extension capture._fastloop not built (optional: needs a C compiler at install)",
)

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
LINKTYPES = {"ether": 1, "raw": 101, "sll2": 276}


@contextlib.contextmanager
def _extension(ext: Any) -> Iterator[None]:
    """capture.pcapfast with ``ext`` as its C extension (None: the pure-Python loop)."""
    saved = capture.pcapfast._fastloop
    capture.pcapfast._fastloop = ext
    try:
        yield
    finally:
        capture.pcapfast._fastloop = saved


# -- building packets --------------------------------------------------------------------------

ADDRS = {
    4: [bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), bytes([10, 0, 0, 3]), bytes([224, 0, 0, 251])],
    16: [bytes([0xFD] + [0] * 14 + [1]), bytes([0xFD] + [0] * 14 + [2]),
         bytes([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 10, 0, 0, 9]),  # IPv4-mapped
         bytes([0xFF, 0x02] + [0] * 13 + [0xFB])],
}
PORTS = (53, 443, 80, 5353, 40000, 40001, 33000, 123, 4789)


def _name(labels: list[bytes]) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


NAMES = [[b"svc", b"ns", b"svc", b"cluster", b"local"], [b"Shop", b"Example"],
         [b"a.b", b"c\"d"], [b"x\x00y", b"z"], [b"alias", b"example"]]


def dns_message(rnd: random.Random, *, response: bool = True) -> bytes:
    """A DNS message (RFC 1035 section 4.1): a question and A / AAAA / CNAME answers, some
    owners compressed to the question's name, some classes not IN."""
    qname = rnd.choice(NAMES)
    answers = b""
    count = rnd.randrange(0, 4) if response else 0
    for _ in range(count):
        owner = b"\xc0\x0c" if rnd.random() < 0.6 else _name(rnd.choice(NAMES))
        rtype, rdata = rnd.choice([(1, bytes([10, 96, 0, rnd.randrange(4)])),
                                   (28, bytes([0xFD] + [0] * 14 + [rnd.randrange(3)])),
                                   (5, _name(rnd.choice(NAMES))), (5, b"\xc0\x0c"),
                                   (16, b"\x03txt")])
        rclass = 1 if rnd.random() < 0.9 else 3
        answers += owner + struct.pack(">HHIH", rtype, rclass, 30, len(rdata)) + rdata
    flags = (0x8180 if response else 0x0100) | (0x0800 if rnd.random() < 0.05 else 0)
    head = struct.pack(">HHHHHH", rnd.randrange(1 << 16), flags, 1, count, 0, 0)
    msg = head + _name(qname) + b"\x00\x01\x00\x01" + answers
    if rnd.random() < 0.1:
        msg = msg[: rnd.randrange(len(msg) + 1)]  # cut short
    return msg


PROXY_V1 = b"PROXY TCP4 192.0.2.7 10.2.0.1 51000 443\r\n"


def _tcp(sport: int, dport: int, seq: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, 1, 0x50, flags, 65535, 0,
                       0) + payload


def _udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def _ipv4(src: bytes, dst: bytes, proto: int, payload: bytes, *, ident: int = 1,
          frag: int = 0x4000, options: bytes = b"") -> bytes:
    return struct.pack(">BBHHHBBH4s4s", 0x45 + len(options) // 4, 0, 20 + len(options)
                       + len(payload), ident, frag, 64, proto, 0, src, dst) + options + payload


def _ipv6(src: bytes, dst: bytes, proto: int, payload: bytes) -> bytes:
    return struct.pack(">IHBB16s16s", 0x60000000, len(payload), proto, 64, src, dst) + payload


def _link(kind: str, v6: bool, vlan: bool) -> bytes:
    etype = b"\x86\xdd" if v6 else b"\x08\x00"
    if kind == "ether":
        tag = b"\x81\x00\x00\x07" if vlan else b""
        return b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02" + tag + etype
    if kind == "sll2":
        return etype + b"\x00\x00\x00\x00\x00\x02\x00\x01\x00\x06\x02\x00\x00\x00\x00\x01\x00\x00"
    return b""


Conversation = tuple[int, int, int, int, int, int]  # alen, proto, a, b, port a, port b
Event = tuple[int, bool, str, int, str]  # conversation, from A, content, time step, framing

CONVERSATIONS = st.tuples(st.sampled_from([4, 16]), st.sampled_from([6, 6, 17]),
                          st.integers(0, 3), st.integers(0, 3), st.sampled_from(PORTS),
                          st.sampled_from(PORTS))
CONTENTS = ["syn", "syn-again", "syn-new", "synack", "ack", "hello", "hello-1", "hello-2",
            "proxy-hello", "short", "long", "fin", "rst", "dns", "query"]
# Mostly small steps forward; sometimes none, back, or past the idle time-out (300 s).
STEPS_US = [1, 37, 5000, 1, 37, 5000, 0, -1, -3000, 300_000_000, 300_000_001, 400_000_000]
FRAMINGS = ["plain"] * 12 + ["vlan", "options", "fragments", "fragments-reversed", "snapped"]
EVENTS = st.tuples(st.integers(0, 7), st.booleans(), st.sampled_from(CONTENTS),
                   st.sampled_from(STEPS_US), st.sampled_from(FRAMINGS))

# Sessions: (protocol, server port (None: drawn), packets as (from the client, content)).
_OPEN = [(True, "syn"), (False, "synack"), (True, "ack")]
_CLOSE = [(True, "fin"), (False, "fin"), (True, "ack")]
SCRIPTS: dict[str, tuple[int, int | None, list[tuple[bool, str]]]] = {
    "tls": (6, 443, [*_OPEN, (True, "hello"), (False, "long"), (True, "ack"), *_CLOSE]),
    "tls-split": (6, 443, [*_OPEN, (True, "hello-1"), (False, "ack"), (True, "hello-2"),
                           (False, "long"), *_CLOSE]),
    "tls-proxy": (6, 443, [*_OPEN, (True, "proxy-hello"), (False, "short"), (False, "rst")]),
    "preamble": (6, 5432, [*_OPEN, (True, "short"), (False, "short"), (True, "hello"),
                           *_CLOSE]),
    "plain": (6, None, [*_OPEN, (True, "short"), (False, "long"), (True, "ack"),
                        (False, "rst")]),
    "retried": (6, 80, [(True, "syn"), (True, "syn-again"), (False, "rst"), (True, "syn-again"),
                        (False, "synack"), (True, "ack"), (True, "short"), *_CLOSE]),
    "reopened": (6, None, [*_OPEN, *_CLOSE, (True, "syn-new"), (False, "synack"),
                           (True, "short"), (False, "rst"), (True, "syn-new")]),
    "midstream": (6, None, [(False, "long"), (True, "ack"), (False, "long"), (True, "fin")]),
    "dns": (17, 53, [(True, "query"), (False, "dns"), (True, "query"), (False, "dns")]),
    "mdns": (17, 5353, [(False, "dns"), (True, "query")]),
    "dns-tcp": (6, 53, [*_OPEN, (True, "query"), (False, "dns"), *_CLOSE]),
    "udp": (17, None, [(True, "short"), (False, "short"), (True, "long")]),
    "reply-first": (17, 123, [(False, "short"), (True, "short")]),
}
SESSIONS = st.tuples(st.sampled_from(sorted(SCRIPTS)), st.sampled_from([4, 4, 16]),
                     st.integers(0, 3), st.integers(0, 3), st.sampled_from(PORTS))


@st.composite
def traffic(draw: st.DrawFn) -> tuple[list[Conversation], list[Event]]:
    """Sessions interleaved (each in its own order), with stray packets among them."""
    conversations: list[Conversation] = []
    queues: list[list[tuple[bool, str]]] = []
    for name, alen, client, server, cport in draw(st.lists(SESSIONS, min_size=1, max_size=8)):
        proto, sport, script = SCRIPTS[name]
        conversations.append((alen, proto, client, server, cport,
                              draw(st.sampled_from(PORTS)) if sport is None else sport))
        queues.append(list(script))
    events: list[Event] = []
    while any(queues):
        live = [n for n, q in enumerate(queues) if q]
        n = live[draw(st.integers(0, len(live) - 1))]
        from_client, content = queues[n].pop(0)
        events.append((n, from_client, content, draw(st.sampled_from(STEPS_US)),
                       draw(st.sampled_from(FRAMINGS))))
    for stray in draw(st.lists(EVENTS, max_size=8)):
        events.insert(draw(st.integers(0, len(events))), stray)
    return conversations, events


def frames_of(conversations: list[Conversation], events: list[Event], kind: str,
              seed: int) -> list[tuple[int, bytes, int]]:
    """(time in us, frame, wire length) of each event."""
    rnd = random.Random(seed)
    hello = client_hello(rnd.choice(["Shop.Example.", "svc.example", "10.0.0.1", None]),
                         pad=rnd.choice((0, 40)))
    cut = rnd.randrange(1, len(hello))
    t = 1_700_000_000 * 1_000_000
    out = []
    for conv_n, from_a, content, step, framing in events:
        alen, proto, a, b, pa, pb = conversations[conv_n % len(conversations)]
        src, dst = ADDRS[alen][a], ADDRS[alen][b]
        sport, dport = pa, pb
        if not from_a:
            src, dst, sport, dport = dst, src, dport, sport
        isn = 1000 + conv_n
        t += step
        if proto == 6:
            flags, seq, payload = ACK, isn + 1, b""
            if content in ("syn", "syn-again", "syn-new"):
                flags, seq = SYN, isn + (7 if content == "syn-new" else 0)
            elif content in ("synack", "fin", "rst"):
                flags = {"synack": SYN | ACK, "fin": FIN | ACK, "rst": RST | ACK}[content]
            elif content != "ack":
                flags = PSH | ACK
                payload = {
                    "hello": hello, "hello-1": hello[:cut], "hello-2": hello[cut:],
                    "proxy-hello": PROXY_V1 + hello, "short": b"GET / HTTP/1.1\r\n\r\n",
                    "long": bytes(300),
                }.get(content, b"")
                if content == "hello-2":
                    seq = isn + 1 + cut
                if content in ("dns", "query"):
                    msg = dns_message(rnd, response=content == "dns")
                    payload = struct.pack(">H", len(msg)) + msg  # DNS over TCP (RFC 1035 4.2.2)
            l4 = _tcp(sport, dport, seq, flags, payload)
        else:
            payload = {"dns": dns_message(rnd), "query": dns_message(rnd, response=False),
                       "long": bytes(300), "ack": b""}.get(content, b"datagram")
            l4 = _udp(sport, dport, payload)
        if alen == 16:
            ips = [_ipv6(src, dst, proto, l4)]
        elif framing.startswith("fragments") and len(l4) > 16:
            ident = rnd.randrange(1 << 16)
            split = 8 * rnd.randrange(1, len(l4) // 8)
            ips = [_ipv4(src, dst, proto, l4[:split], ident=ident, frag=0x2000),
                   _ipv4(src, dst, proto, l4[split:], ident=ident, frag=split // 8)]
            if framing == "fragments-reversed":
                ips.reverse()
        else:
            ips = [_ipv4(src, dst, proto, l4, options=b"\x01\x01\x01\x00" if framing == "options"
                         else b"")]
        for ip in ips:
            frame = _link(kind, alen == 16, framing == "vlan") + ip
            wire = len(frame)
            if framing == "snapped":
                frame = frame[: max(1, len(frame) - rnd.randrange(1, 60))]
            out.append((t, frame, wire))
    return out


def write_captures(tmp: Path, frames: list[tuple[int, bytes, int]], *, kind: str, endian: str,
                   nano: bool, files: int) -> list[Path]:
    """Classic pcaps of ``frames``, cut into ``files`` consecutive parts (a rotated capture)."""
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    head = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 262144, LINKTYPES[kind])
    size = max(1, -(-len(frames) // files))
    paths = []
    for i in range(0, len(frames), size):
        recs = []
        for t_us, frame, wire in frames[i : i + size]:
            frac = t_us % 1_000_000 * (1000 if nano else 1)
            recs.append(struct.pack(endian + "IIII", t_us // 1_000_000, frac, len(frame), wire)
                        + frame)
        path = tmp / f"part{i}.pcap"
        path.write_bytes(head + b"".join(recs))
        paths.append(path)
    return paths


# -- the three paths ---------------------------------------------------------------------------

def outcome(paths: list[Path], out: Path, *, mode: str) -> tuple[str, bytes | str]:
    """("ok", flow file) or ("error", message) of ingesting ``paths`` one of three ways."""
    ext = fastloop if mode == "c" else None
    with _extension(ext):
        try:
            ingest([str(p) for p in paths], str(out), fast=mode != "scapy")
        except CaptureError as exc:
            return "error", str(exc)
    return "ok", out.read_bytes()


def state(table: FlowTable) -> list[str]:
    """Every slot of every flow (halves as their counts), sorted: the table's whole state."""
    rows = []
    for fl in table.flows():
        row = []
        for name in FlowState.__slots__:
            value = getattr(fl, name)
            if name in ("a", "b"):
                value = (value.packets, value.bytes, value.is_a)
            elif isinstance(value, set):
                value = sorted(value)
            row.append((name, value))
        rows.append(repr(row))
    return sorted(rows)


def tables(paths: list[Path]) -> tuple[FlowTable, FlowTable]:
    out = []
    for ext in (fastloop, None):
        with _extension(ext):
            table = FlowTable()
            for path in paths:
                read_capture(open_capture(str(path)), table)
            out.append(table)
    return out[0], out[1]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    drawn=st.one_of(traffic(), st.tuples(st.lists(CONVERSATIONS, min_size=1, max_size=5),
                                         st.lists(EVENTS, min_size=1, max_size=60))),
    kind=st.sampled_from(sorted(LINKTYPES)),
    endian=st.sampled_from("<>"),
    nano=st.booleans(),
    files=st.integers(1, 3),
    with_flow_file=st.booleans(),
    seed=st.integers(0, 1 << 16),
)
def test_three_paths_write_the_same_flow_file(  # noqa: PLR0917
    drawn: tuple[list[Conversation], list[Event]], kind: str, endian: str, nano: bool,
    files: int, with_flow_file: bool, seed: int,
) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        frames = frames_of(*drawn, kind, seed)
        paths = write_captures(tmp, frames, kind=kind, endian=endian, nano=nano, files=files)
        if with_flow_file:  # the capture's own flows again, from a record source
            first = outcome(paths, tmp / "own.jsonl", mode="c")
            if first[0] == "ok":
                paths.append(tmp / "own.jsonl")
        results = {mode: outcome(paths, tmp / f"{mode}.jsonl", mode=mode)
                   for mode in ("c", "python", "scapy")}
        assert results["c"] == results["python"] == results["scapy"]
        captures = [p for p in paths if p.suffix == ".pcap"]
        c_table, py_table = tables(captures)
        assert state(c_table) == state(py_table)


@settings(max_examples=60, deadline=None)
@given(
    drawn=traffic(),
    interfaces=st.lists(st.sampled_from([1, 101, 276]), min_size=1, max_size=3),
    choices=st.lists(st.integers(0, 2), min_size=200, max_size=200),
    seed=st.integers(0, 1 << 16),
)
def test_pcapng_of_several_link_types(
    drawn: tuple[list[Conversation], list[Event]], interfaces: list[int], choices: list[int],
    seed: int,
) -> None:
    """Interfaces of several link types in one pcapng: a C loop per link type, one store."""
    names = {v: k for k, v in LINKTYPES.items()}
    conversations, events = drawn
    packets = []
    for n, event in enumerate(events):
        ifid = choices[n % len(choices)] % len(interfaces)
        t_us, frame, _wire = frames_of(conversations, [event], names[interfaces[ifid]],
                                       seed + n)[0]
        packets.append((ifid, (t_us + n * 10) * 1000, frame))
    with tempfile.TemporaryDirectory() as tmp_name:
        path = Path(tmp_name) / "multi.pcapng"
        path.write_bytes(pcapng_bytes([(linktype, 9) for linktype in interfaces], packets))
        results = {mode: outcome([path], Path(tmp_name) / f"{mode}.jsonl", mode=mode)
                   for mode in ("c", "python", "scapy")}
    assert results["c"] == results["python"] == results["scapy"]


# -- damaged captures --------------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(
    drawn=traffic(),
    kind=st.sampled_from(sorted(LINKTYPES)),
    endian=st.sampled_from("<>"),
    damage=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1,
                    max_size=12),
    cut=st.one_of(st.none(), st.integers(25, 1 << 20)),
    junk=st.one_of(st.none(), st.tuples(st.integers(24, 1 << 20), st.binary(max_size=64))),
    seed=st.integers(0, 1 << 16),
)
def test_damaged_captures_fold_the_same_without_a_crash(  # noqa: PLR0917
    drawn: tuple[list[Conversation], list[Event]], kind: str, endian: str,
    damage: list[tuple[int, int]], cut: int | None, junk: tuple[int, bytes] | None, seed: int,
) -> None:
    """Bytes overwritten (record headers and lengths included), inserted, the file cut: the C
    loop reads only what it checked is there, and gives what the Python loop gives."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        frames = frames_of(*drawn, kind, seed)
        path = write_captures(tmp, frames, kind=kind, endian=endian, nano=False, files=1)[0]
        data = bytearray(path.read_bytes())
        for pos, value in damage:
            data[24 + pos % max(1, len(data) - 24)] = value  # the file header stays readable
        if junk is not None:
            pos = 24 + junk[0] % max(1, len(data) - 24)
            data[pos:pos] = junk[1]
        if cut is not None:
            del data[max(24, cut % (len(data) + 1)):]
        path.write_bytes(bytes(data))
        with_c = outcome([path], tmp / "c.jsonl", mode="c")
        without = outcome([path], tmp / "py.jsonl", mode="python")
    assert with_c == without


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=600),
    off=st.integers(-5, 700),
    blen=st.integers(-5, 700),
    little=st.booleans(),
    link=st.sampled_from([(14, 12, b"\x08\x00", b"\x86\xdd"), (0, 0, b"", b""),
                          (20, 0, b"\x08\x00", None), (4, 0, b"\x00\x00\x00\x02", None)]),
)
def test_the_c_loop_takes_any_bytes(data: bytes, off: int, blen: int, little: bool,
                                     link: tuple[int, int, bytes, bytes | None]) -> None:
    """Arbitrary bytes and offsets straight into Loop.run: a result within the buffer, or
    ValueError for offsets outside it; never a read past its end."""
    table = FlowTable()
    flows = fastloop.Flows(table.tcp, table.udp, table.dns, table._names, address_text,
                           capture.pcapfast._C_MODEL)
    size, eoff, v4, v6 = link
    loop = fastloop.Loop(flows, little, False, size, eoff, v4, v6)
    buf = bytearray(data)
    try:
        end, n = loop.run(buf, off, blen, 0)
    except ValueError:
        assert off < 0 or blen < 0 or blen > len(buf)
        return
    assert off <= end <= max(off, blen) and n >= 0
    flows.flush(table.done)
    assert table.flow_count() >= 0


# -- the parsers and the writer's pieces -------------------------------------------------------

def _dns_messages() -> st.SearchStrategy[bytes]:
    built = st.integers(0, 1 << 30).map(lambda seed: dns_message(random.Random(seed)))
    mutated = st.tuples(built, st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)),
                                        max_size=4)).map(_mutate)
    return st.one_of(built, mutated, st.binary(max_size=120))


def _mutate(item: tuple[bytes, list[tuple[int, int]]]) -> bytes:
    msg = bytearray(item[0])
    for pos, value in item[1]:
        if msg:
            msg[pos % len(msg)] = value
    return bytes(msg)


@settings(max_examples=1500, deadline=None)
@given(msg=_dns_messages())
def test_dns_parser_matches_capture_dns(msg: bytes) -> None:
    assert fastloop.parse_dns(msg, address_text) == parse_response(msg)


def test_dns_parser_on_names_that_need_escapes() -> None:
    """Labels with dots, quotes, NUL bytes and upper case, pointer loops, long chains."""
    labels = [b"A.b", b"q\"uote", b"nul\x00", b"(x);\\", b"\x7f\xff"]
    loop = b"\xc0\x0c"
    for n in range(len(labels)):
        qname = _name(labels[: n + 1])
        chain = b""
        owner = b"\xc0\x0c"
        for k in range(40):  # a CNAME chain longer than capture.dns follows
            target = _name([b"c%d" % k, b"example"])
            chain += owner + struct.pack(">HHIH", 5, 1, 30, len(target)) + target
            owner = target
        a = owner + struct.pack(">HHIH", 1, 1, 30, 4) + bytes([10, 0, 0, n])
        msg = struct.pack(">HHHHHH", 1, 0x8180, 1, 42, 0, 0) + qname + b"\x00\x01\x00\x01" \
            + chain + a + loop + struct.pack(">HHIH", 1, 1, 30, 4) + bytes(4)
        assert fastloop.parse_dns(msg, address_text) == parse_response(msg)
    pointer_loop = struct.pack(">HHHHHH", 1, 0x8180, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01"
    assert fastloop.parse_dns(pointer_loop, address_text) is None is parse_response(pointer_loop)


@settings(max_examples=2000, deadline=None)
@given(ns=st.one_of(st.integers(-(1 << 63), (1 << 63) - 1),
                    st.integers(0, (1 << 33) * 1_000_000).map(lambda us: us * 1000),
                    st.integers(0, 200_000)))
def test_seconds_are_python_division_and_repr(ns: int) -> None:
    """The C writer's first_seen / last_seen: ns / NS, correctly rounded, and its repr."""
    assert fastloop.seconds(ns) == ns / NS
    assert fastloop.seconds_text(ns) == repr(ns / NS)


class _Presorted:
    """capture.flowfile.SortedLines over a sorted list, handing out runs of at most ``run``."""

    def __init__(self, items: list[tuple[tuple[Any, ...], str]], run: int) -> None:
        self.items = sorted(items)
        self.pos = 0
        self.run = run

    def count(self, bound: tuple[Any, ...] | None, inclusive: bool) -> int:
        keys = [key for key, _line in self.items]
        if bound is None:
            return len(keys) - self.pos
        find = bisect.bisect_right if inclusive else bisect.bisect_left
        return find(keys, bound, self.pos) - self.pos

    def lines(self, n: int) -> tuple[str, int]:
        n = min(n, self.run, len(self.items) - self.pos)
        chunk = self.items[self.pos : self.pos + n]
        self.pos += n
        return "\n".join(line for _key, line in chunk), n


KEYS = st.tuples(st.just(0), st.sampled_from([0.5, 1.0, 1.5]), st.sampled_from(["TCP", "UDP"]),
                 st.sampled_from(["10.0.0.1", "10.0.0.10", "fd00::1"]), st.integers(-1, 2),
                 st.sampled_from(["10.0.0.2"]), st.integers(-1, 1))


@settings(max_examples=400, deadline=None)
@given(
    held=st.lists(st.tuples(KEYS, st.text(alphabet="abc", max_size=3)), max_size=12),
    native=st.lists(st.tuples(KEYS, st.text(alphabet="abc", max_size=3)), max_size=12),
    run=st.integers(1, 5),
)
def test_presorted_lines_merge_as_one_sort(
    held: list[tuple[tuple[Any, ...], str]], native: list[tuple[tuple[Any, ...], str]],
    run: int,
) -> None:
    """The C store's lines merged with the Python-held ones: the order of one sort of all of
    them, ties (the same key on both sides) by the lines' text."""
    def line(item: tuple[tuple[Any, ...], str]) -> str:
        return repr(item)

    # The store sorts its own by key, then line (what Flows.sort does).
    native_items = [(key, line((key, text))) for key, text in native]
    native_items.sort()
    merged = "\n".join(ordered_lines(((key, (key, text)) for key, text in held), line,
                                     _Presorted(native_items, run)))
    alone = "\n".join(ordered_lines(((key, (key, text)) for key, text in held + native), line))
    assert merged == alone


# -- the store ---------------------------------------------------------------------------------

def _short_connections(path: Path, count: int, *, start: int = 0) -> Path:
    """``count`` TCP connections (SYN, SYN-ACK, ACK) from distinct clients, one after the
    other, as a classic Ethernet pcap."""
    recs = []
    t = 1_700_000_000 * 1_000_000
    eth = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
    server = bytes([10, 96, 0, 1])
    for k in range(start, start + count):
        client = bytes([10, 1 + (k >> 16), (k >> 8) & 255, k & 255])
        for src, dst, sport, dport, flags in ((client, server, 40000, 443, SYN),
                                              (server, client, 443, 40000, SYN | ACK),
                                              (client, server, 40000, 443, ACK)):
            frame = eth + _ipv4(src, dst, 6, _tcp(sport, dport, 1, flags, b""))
            t += 3
            recs.append(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(frame),
                                    len(frame)) + frame)
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1) + b"".join(recs))
    return path


def test_flows_stay_native_through_writing(tmp_path: Path) -> None:
    """A capture of plain connections: every flow is the store's until the flow file is
    written, and none of them becomes Python objects on the way."""
    from capture.ingest import _read

    path = _short_connections(tmp_path / "s.pcap", 3000)
    sink, stats = _read([str(path)], progress=False, fast=True)
    table = sink.table
    assert table.native is not None and len(table.native) == stats.flows == 3000
    assert not table.tcp and not table.done  # nothing was materialized
    settle = table.settle

    def refuse() -> None:
        raise AssertionError("the writing made Python objects of the native flows")

    table.settle = refuse  # type: ignore[method-assign]
    out = tmp_path / "flows.jsonl"
    ingest([str(path)], str(out))
    table.settle = settle  # type: ignore[method-assign]
    with _extension(None):
        ingest([str(path)], str(tmp_path / "py.jsonl"))
    assert out.read_bytes() == (tmp_path / "py.jsonl").read_bytes()


def test_bytes_per_flow_in_the_fold(tmp_path: Path) -> None:
    """What a flow costs the fold (memory traced while reading, the store's included), as the
    difference between two captures: at most 200 bytes (the Python objects cost about 1 KB)."""
    def traced(count: int) -> tuple[int, int]:
        path = _short_connections(tmp_path / f"{count}.pcap", count)
        gc.collect()
        tracemalloc.start()
        try:
            table = FlowTable()
            read_capture(open_capture(str(path)), table)
            used = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert table.flow_count() == count
        return used, count

    small, big = traced(20_000), traced(60_000)
    per_flow = (big[0] - small[0]) / (big[1] - small[1])
    assert 100 < per_flow <= 200, per_flow


def test_flush_gives_the_python_state(tmp_path: Path) -> None:
    """settle() (every native flow made Python objects) leaves the table as the Python loop
    left it, and the store empty; a second capture then folds into those objects."""
    path = _short_connections(tmp_path / "a.pcap", 500)
    more = _short_connections(tmp_path / "b.pcap", 500, start=250)  # half of them again
    c_table, py_table = tables([path])
    assert state(c_table) == state(py_table)
    assert c_table.native is not None and len(c_table.native) == 0
    for table, ext in ((c_table, fastloop), (py_table, None)):
        with _extension(ext):
            read_capture(open_capture(str(more)), table)
    assert state(c_table) == state(py_table)


def test_mapped_and_plain_ipv6_texts_come_from_python(tmp_path: Path) -> None:
    """IPv6 addresses are written by capture.table.address_text (the ipaddress module's
    compressed form, whatever it is in this Python), IPv4-mapped ones included."""
    events = [(0, True, "syn", 1, "plain"), (0, False, "synack", 1, "plain"),
              (1, True, "dns", 1, "plain")]
    frames = frames_of([(16, 6, 2, 0, 40000, 443), (16, 17, 0, 2, 53, 33000)], events, "ether",
                       1)
    path = write_captures(tmp_path, frames, kind="ether", endian="<", nano=False, files=1)[0]
    assert outcome([path], tmp_path / "c.jsonl", mode="c") == outcome(
        [path], tmp_path / "py.jsonl", mode="python")
    text = (tmp_path / "c.jsonl").read_text()
    assert ipaddress.IPv6Address(ADDRS[16][2]).compressed in text


def test_flows_that_start_together_sort_as_python_sorts(tmp_path: Path) -> None:
    """Flows with the same first_seen: ordered by protocol name, client address *text*
    ("10.0.0.10" before "10.0.0.9"; IPv4 and IPv6 texts together), client port, server text,
    server port, then by the line itself (the same 5-tuple twice: a reset connection opened
    again in the same microsecond)."""
    rnd = random.Random(4)
    eth4 = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
    eth6 = eth4[:12] + b"\x86\xdd"
    clients = [bytes([10, 0, 0, 9]), bytes([10, 0, 0, 10]), bytes([9, 255, 0, 1]),
               bytes([0xFD] + [0] * 14 + [1]), bytes([0x20, 0x01, 0x0D, 0xB8] + [0] * 12)]
    servers = [bytes([10, 96, 0, 1]), bytes([10, 96, 0, 10]), bytes([0xFD] + [0] * 14 + [0xAA])]
    recs = []
    for burst in range(6):
        t = (1_700_000_000 + burst) * 1_000_000
        for _ in range(60):
            client = rnd.choice(clients)
            server = rnd.choice([s for s in servers if len(s) == len(client)])
            cport, sport = rnd.choice((40000, 40001, 9, 65535)), rnd.choice((443, 80, 53))
            ip = _ipv6 if len(client) == 16 else _ipv4
            eth = eth6 if len(client) == 16 else eth4
            payload = bytes(rnd.randrange(3) * 100)
            if rnd.random() < 0.5:
                segments = [(SYN, 7), (RST | ACK, 7), (SYN, 8)] if rnd.random() < 0.3 else [
                    (SYN, 7), (PSH | ACK, 8)]
                frames = [eth + ip(client, server, 6, _tcp(cport, sport, seq, flags, payload))
                          for flags, seq in segments]
            else:
                frames = [eth + ip(client, server, 17, _udp(cport, sport, payload))]
            for frame in frames:  # all at the same time stamp
                recs.append(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(frame),
                                        len(frame)) + frame)
    path = tmp_path / "bursts.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1) + b"".join(recs))
    with_c = outcome([path], tmp_path / "c.jsonl", mode="c")
    assert with_c == outcome([path], tmp_path / "py.jsonl", mode="python")
    assert with_c == outcome([path], tmp_path / "scapy.jsonl", mode="scapy")
    assert with_c[0] == "ok" and isinstance(with_c[1], bytes)
    assert with_c[1].count(b'"client":"10.0.0.10"') > 10
