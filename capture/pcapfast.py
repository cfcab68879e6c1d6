"""Fast paths: our own classic-pcap reader folding straight into the table, and per-frame.

Why not scapy's ``RawPcapReader`` for classic pcap: it costs a method call, two ``read()`` calls,
a ``struct.unpack`` and a namedtuple per packet before we even look at the bytes -- a plain loop
over it tops out well below what the whole ingest reaches without it (the benchmark,
benchmarks/ingest_pcap.py, measures both). The classic pcap format is trivial (24-byte file
header, then 16-byte record headers), so ``read_classic`` reads the file as a stream of large
chunks into one reused buffer (bounded memory, never the whole file) and decodes the record
header *and* the common link + IPv4 / IPv6 + TCP / UDP fields of a packet with one precompiled
``struct`` call. A packet of an already known flow that needs no inspection is counted inline;
TCP packets with flags or of flows under inspection go to ``FlowTable.tcp_known``; new flows to
``FlowTable.add_ip``; everything else (VLAN tags, IPv6 extension headers, fragments, overlays,
ICMP, SCTP, non-IP, ...) to the general decoder, ``FlowTable.add_frame``.

Where the optional C extension is built (``capture/_fastloop.c`` and its companions), it takes
over the common records: plain TCP / UDP of new and known flows, DNS answers over UDP included.
The flows it starts live in the table's native store (``table.native``, 120 bytes a flow
instead of about 900 as Python objects) and stay there through the writing of the flow file,
whose lines C makes in the file's order (``FlowTable.native_lines``); Python sees only
ClientHellos split over segments, DNS over TCP, overlays and what is not plain TCP / UDP, and
the flows of those records become Python objects. On short connections that is about 8x a
header-only scapy ``RawPcapReader`` loop over the same file (benchmarks/ingest_pcap.py).

pcapng is read by our own block reader (``capture.pcapng``) and ``read_pcapng`` turns its
packets into classic records that the same loop folds (with the extension, whole runs of
Enhanced Packet Blocks are converted in C). Both read a stream (``readinto``): a file, a pipe,
or a decompressing one (``capture.stream``), so compressed captures take the same fast path.
``frame_folder`` has the same shortcuts for one frame at a time (a pcapng packet whose time a
classic record cannot hold). With ``fast=False`` every frame comes from scapy's readers and
takes the general decoder instead: that reference path is what the tests check the fast paths
against, byte for byte.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from types import ModuleType
from typing import Any, Literal, NamedTuple, Protocol

from capture.decode import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    LINKTYPE_RAW_12,
    LINKTYPE_RAW_14,
    PROTO_NAMES,
    PROTO_TCP,
    PROTO_UDP,
    TUNNEL_PORTS,
)
from capture.pcapng import PcapngDamaged, Run, iter_packets
from capture.table import (
    DIR_FIRST,
    DIR_HANDSHAKE,
    DIR_PORTS,
    DNS_PORTS,
    EPHEMERAL,
    IDLE_NS,
    NS,
    TLS_PREAMBLE_MAX,
    TLS_PROBE_PACKETS,
    TLS_PROBE_SEGMENTS,
    WELL_KNOWN,
    FlowState,
    FlowTable,
    Half,
    address_text,
)
from capture.tls import MAX_CLIENT_HELLO

_fastloop: ModuleType | None
try:  # optional C accelerator of the common records (setup.py builds it when it can)
    from capture import _fastloop
except ImportError:  # pragma: no cover - depends on the build
    _fastloop = None

CHUNK = 4 << 20  # bytes read per refill
MAX_RECORD = 262144  # tcpdump's MAXIMUM_SNAPLEN: a longer record means a damaged file

# Two-byte fields as a struct of the other byte order reads them -> their value (and the
# identity, so that both byte orders take the same code path).
_SWAPPED_U16 = [((i & 0xFF) << 8) | (i >> 8) for i in range(65536)]
_U16 = list(range(65536))

# What the C loop needs to know of capture.table: the classes whose slots it reads and writes
# (a new flow sets every slot), the constants of its decisions and the words it writes.
_C_MODEL: dict[str, object] = {
    "flow": FlowState,
    "half": Half,
    "idle": IDLE_NS,
    "probe_packets": TLS_PROBE_PACKETS,
    "probe_segments": TLS_PROBE_SEGMENTS,
    "preamble_max": TLS_PREAMBLE_MAX,
    "max_client_hello": MAX_CLIENT_HELLO,
    "well_known": WELL_KNOWN,
    "ephemeral": EPHEMERAL,
    "dns_ports": sorted(DNS_PORTS),
    "tunnel_ports": sorted(TUNNEL_PORTS),
    "dir_handshake": DIR_HANDSHAKE,
    "dir_first": DIR_FIRST,
    "dir_ports": DIR_PORTS,
    "tcp_name": PROTO_NAMES[PROTO_TCP],
    "udp_name": PROTO_NAMES[PROTO_UDP],
}

# linktype -> (offset of its network-protocol field, that field for IPv4, for IPv6, link size)
_LINK_LAYOUT: dict[int, tuple[int, bytes, bytes | None, int]] = {
    LINKTYPE_ETHERNET: (12, b"\x08\x00", b"\x86\xdd", 14),
    LINKTYPE_LINUX_SLL: (14, b"\x08\x00", b"\x86\xdd", 16),
    LINKTYPE_LINUX_SLL2: (0, b"\x08\x00", b"\x86\xdd", 20),
    LINKTYPE_RAW: (0, b"", b"", 0),
    LINKTYPE_RAW_12: (0, b"", b"", 0),
    LINKTYPE_RAW_14: (0, b"", b"", 0),
    LINKTYPE_IPV4: (0, b"", None, 0),
    LINKTYPE_LOOP: (0, b"\x00\x00\x00\x02", None, 4),  # AF_INET6 differs per OS
}

Progress = Callable[[int, int], None]  # (packets so far, bytes so far)


class Readable(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


class _Layout(NamedTuple):
    v4: struct.Struct  # record header + link protocol field + IPv4 fields + key + TCP flags
    v4_proto: object  # the protocol field's value for IPv4
    v6: struct.Struct | None  # IPv6 fields + key + TCP flags, at the start of the packet
    v6_proto: object  # the protocol field's value for IPv6 (None: no IPv6 fast path)
    link: int  # link header size
    eoff: int  # offset of the protocol field in the link header
    v4_raw: bytes  # the protocol field for IPv4, as in the file
    v6_raw: bytes | None  # the same for IPv6 (None: no IPv6 fast path)


@functools.lru_cache(maxsize=64)
def _layout(endian: str, linktype: int, *, record: bool = True,
            null_order: Literal["little", "big"] | None = None) -> _Layout | None:
    """The precompiled structs of the fast path for ``linktype`` in a file of ``endian``;
    ``record``: the v4 struct starts with the 16-byte pcap record header."""
    order: Literal["little", "big"] = "little" if endian == "<" else "big"
    layout = _LINK_LAYOUT.get(linktype)
    if linktype == LINKTYPE_NULL:
        # The NULL header is in the byte order of the host that captured, like a pcap file.
        layout = (0, (2).to_bytes(4, null_order or order), None, 4)
    if layout is None:
        return None
    eoff, v4_bytes, v6_bytes, link = layout
    size = len(v4_bytes)
    field = {0: "0s", 2: "H", 4: "I"}[size]

    def value(raw: bytes | None) -> object:
        if raw is None:
            return None
        return raw if not raw else int.from_bytes(raw, order)

    v4 = struct.Struct(
        (f"{endian}IIII" if record else endian)  # record header: ts_sec, ts_frac, caplen, wirelen
        + f"{eoff}x{field}{link - eoff - size}x"  # link header: protocol field
        + "BxH2xHxB2x"  # IPv4: version/IHL, total length, flags/fragment offset, protocol
        + "12s"  # source, destination addresses + both ports: the flow key
        + "9xB"  # TCP flags
    )
    v6 = struct.Struct(
        f"{endian}{link}x"
        "BxxxHBx"  # IPv6: version/traffic class, payload length, next header
        "36s"  # source, destination addresses + both ports: the flow key
        "9xB"  # TCP flags
    )
    return _Layout(v4, value(v4_bytes), v6 if v6_bytes is not None else None, value(v6_bytes),
                   link, eoff, v4_bytes, v6_bytes)


def read_classic(
    f: Readable,
    endian: str,
    nano: bool,
    linktype: int,
    *,
    table: FlowTable,
    progress: Progress | None = None,
) -> tuple[int, str | None]:
    """Fold every record of a classic pcap stream (positioned after its 24-byte header).

    Returns (packets read, damage): damage is None for a clean end of file, else a description
    of the record that could not be read (record number = packets read + 1).
    """
    layout = _layout(endian, linktype)
    # The C version of the common branches of the loop (capture/_fastloop.c), when built: it
    # folds consecutive plain TCP / UDP records of new and known flows, and stops at any other
    # record (DNS over TCP, a ClientHello split over segments, anything that is not plain TCP /
    # UDP), which the Python code handles. The flows it starts live in the table's native
    # store (``table.native``) until Python needs them or the flow file is written.
    loop = _c_loop(table, layout, little=endian == "<", nano=nano)
    return _fold_classic(f, endian, nano, linktype, layout, table, progress,
                         None if loop is None else loop.run)


def _c_loop(table: FlowTable, layout: _Layout | None, *, little: bool, nano: bool) -> Any:
    """The C loop for ``layout`` over ``table`` (its store of native flows made the table's
    ``native`` on first use), or None when the extension is not built or cannot serve."""
    if (
        _fastloop is None
        or layout is None
        or type(table.tcp) is not dict
        or type(table.udp) is not dict
        or type(table.dns) is not dict
    ):
        return None
    flows = table.native
    if flows is None:
        try:
            flows = _fastloop.Flows(table.tcp, table.udp, table.dns, table._names, address_text,
                                    _C_MODEL)
        except (TypeError, ValueError, KeyError):  # a model the C loop cannot hold: Python
            return None
        table.native = flows
    elif not isinstance(flows, _fastloop.Flows):
        return None
    return _fastloop.Loop(flows, little, nano, layout.link, layout.eoff, layout.v4_raw,
                          layout.v6_raw if layout.v6 is not None else None)


def read_pcapng(
    f: Readable, *, table: FlowTable, progress: Progress | None = None,
    names: list[str] | None = None,
) -> tuple[int, str | None]:
    """Fold every packet of a pcapng stream (positioned at its start): our block reader
    (``capture.pcapng``) turns runs of packets into classic records (little-endian, ns) that
    the classic loop folds, one link type at a time.

    Returns (packets read, damage) like ``read_classic``; raises ``PcapngBadStart`` when the
    first section header is unreadable. ``names`` gets the interfaces' names.
    """
    folder = _RecordFolder(table)
    pack = struct.Struct("<IIII").pack
    out = bytearray()
    out_link = -1
    n = 0
    shown = 0
    epb_run = None if _fastloop is None else _fastloop.epb_run
    try:
        for item in iter_packets(f, MAX_RECORD, epb_run, names):
            if isinstance(item, Run):  # packets already as classic records (the C converter)
                folder.fold(out, out_link)  # the packets before it first
                out = bytearray()
                folder.fold(item.records, item.linktype, item.size)
                n += item.packets
            else:
                t, linktype, data, wirelen = item
                sec, frac = divmod(t, NS)
                if linktype != out_link or len(out) >= CHUNK or sec > 0xFFFFFFFF:
                    folder.fold(out, out_link)
                    out = bytearray()
                    out_link = linktype
                    if sec > 0xFFFFFFFF:  # past 2106: no classic record holds it
                        folder.fold_frame(linktype, data, t, wirelen)
                        n += 1
                        continue
                out += pack(sec, frac, len(data), wirelen)
                out += data
                n += 1
            if progress is not None and (n - shown >= 0x4000 or isinstance(item, Run)):
                shown = n  # (a run is up to 4 MiB: big frames do not stall the display)
                tell = getattr(f, "tell", None)
                progress(n, tell() if tell is not None else 0)
        folder.fold(out, out_link)
    except PcapngDamaged as exc:
        folder.fold(out, out_link)  # the packets before the damage
        return n, str(exc)
    return n, None


class _RecordFolder:
    """Folds buffers of classic records (little-endian, ns time stamps) into a table, through
    a C loop per link type where it can (all of them folding into the table's one store)."""

    def __init__(self, table: FlowTable) -> None:
        self.table = table
        self.loops: dict[int, Any] = {}
        self.frames: dict[int, FrameFolder] = {}

    def fold(self, records: bytearray, linktype: int, size: int | None = None) -> None:
        """Fold ``records[:size]`` (all of it by default)."""
        size = len(records) if size is None else size
        if not size:
            return
        if linktype not in self.loops:
            self.loops[linktype] = _c_loop(self.table, _layout("<", linktype), little=True,
                                           nano=True)
        loop = self.loops[linktype]
        _n, damage = _fold_classic((records, size), "<", True, linktype,
                                   _layout("<", linktype), self.table, None,
                                   None if loop is None else loop.run)
        assert damage is None  # records we wrote ourselves

    def fold_frame(self, linktype: int, data: bytes, t: int, wirelen: int) -> None:
        fold = self.frames.get(linktype)
        if fold is None:
            fold = self.frames[linktype] = frame_folder(self.table, linktype)
        fold(data, t, wirelen)


def _fold_classic(  # noqa: PLR0917 - read_classic's, handed over once
    f: Readable | tuple[bytearray, int],
    endian: str,
    nano: bool,
    linktype: int,
    layout: _Layout | None,
    table: FlowTable,
    progress: Progress | None,
    fastrun: Callable[[bytearray, int, int, int], tuple[int, int]] | None,
) -> tuple[int, str | None]:
    hdr = struct.Struct(endian + "IIII")
    hdr_unpack = hdr.unpack_from
    mult = 1 if nano else 1000
    general = table.add_frame
    add_ip = table.add_ip
    tcp_known = table.tcp_known
    tcp_get = table.tcp.get
    udp_get = table.udp.get
    idle = IDLE_NS
    ns = NS
    swapped = endian == "<"
    # Two-byte fields come out of the struct in the file's byte order; map them back.
    iplens = _SWAPPED_U16 if swapped else _U16
    frag_mask = 0xFF3F if swapped else 0x3FFF  # MF flag + fragment offset
    if layout is not None:
        fast_unpack = layout.v4.unpack_from
        fsize = layout.v4.size
        expected = layout.v4_proto
        link = layout.link
        mincap = link + 34  # IPv4 header + TCP up to the flags
        v6_unpack = layout.v6.unpack_from if layout.v6 is not None else hdr_unpack
        expected6 = layout.v6_proto
        mincap6 = link + 54 if layout.v6 is not None else 1 << 62
    else:
        link = 0
        fast_unpack = v6_unpack = hdr_unpack
        fsize = 1 << 62  # never fits: every record takes the general path
        expected = expected6 = None
        mincap = mincap6 = 1 << 62
    # One buffer, reused: the unread tail moves to the front, then readinto() fills the rest.
    if isinstance(f, tuple):  # (buffer, size): whole records in memory, folded in place
        buf, blen = f
        source = None
    else:
        buf = bytearray(CHUNK + MAX_RECORD + 64)
        blen = 0
        source = f
    view = memoryview(buf)
    off = 0
    n = 0
    consumed = 0
    damage: str | None = None
    while True:
        if off:
            rest = blen - off
            buf[:rest] = buf[off:blen]
            blen = rest
            off = 0
        got = 0 if source is None else source.readinto(view[blen:])
        eof = not got
        if got:
            blen += got
            consumed += got
        last_fast = blen - fsize
        # The hot loop: records whose fixed-size prefix lies in the buffer.
        while off <= last_fast:
            if fastrun is not None:
                off, n = fastrun(buf, off, blen, n)
                if off > last_fast:
                    break
            (sec, frac, caplen, wirelen, etype, vihl, iplen, fragword, proto, key,
             flags) = fast_unpack(buf, off)
            o = off + 16
            nxt = o + caplen
            if nxt > blen:
                break
            t = sec * ns + frac * mult
            if (
                etype == expected
                and vihl == 0x45
                and caplen >= mincap
                and not fragword & frag_mask
            ):
                iplen = iplens[iplen]
                hlen = 20
            elif etype == expected6 and caplen >= mincap6:
                vihl, iplen, proto, key, flags = v6_unpack(buf, o)
                if vihl & 0xF0 != 0x60 or not iplen:
                    proto = 0  # not IPv6, or a jumbogram: decode it
                iplen = iplens[iplen] + 40
                hlen = 40
            else:
                proto = 0
            if proto == 6:
                h = tcp_get(key)
                if h is not None and iplen >= hlen + 20:
                    fl = h.flow
                    if not (fl.slow or flags & 7):  # FIN, SYN, RST: not here
                        d = t - fl.last
                        if 0 <= d <= idle:
                            h.packets += 1
                            h.bytes += iplen
                            fl.last = t
                            off = nxt
                            n += 1
                            continue
                    ip = o + link
                    if tcp_known(h, buf, ip + hlen, min(ip + iplen, nxt), iplen, flags, t):
                        off = nxt
                        n += 1
                        continue
            elif proto == 17:
                h = udp_get(key)
                if h is not None and iplen >= hlen + 8:
                    fl = h.flow
                    if not fl.slow:
                        d = t - fl.last
                        if 0 <= d <= idle:
                            h.packets += 1
                            h.bytes += iplen
                            fl.last = t
                            off = nxt
                            n += 1
                            continue
            # Not a plain hit, but the headers are known: skip re-decoding the link layer.
            if (
                proto in (6, 17)
                and iplen >= hlen + (20 if proto == 6 else 8)
                and add_ip(buf, o + link, hlen, nxt, iplen, key, t)
            ):
                off = nxt
                n += 1
                continue
            if caplen > MAX_RECORD:
                break  # the careful loop below reports it
            general(linktype, bytes(view[o:nxt]), t, wirelen)
            off = nxt
            n += 1
        # The careful loop: records near the end of the buffer, and damage.
        while blen - off >= 16:
            sec, frac, caplen, wirelen = hdr_unpack(buf, off)
            if caplen > MAX_RECORD:
                damage = f"absurd record length {caplen} (more than {MAX_RECORD})"
                break
            nxt = off + 16 + caplen
            if nxt > blen:
                break
            general(linktype, bytes(view[off + 16 : nxt]), sec * ns + frac * mult, wirelen)
            off = nxt
            n += 1
        if damage is not None:
            break
        if progress is not None:
            progress(n, consumed)
        if eof:
            rest = blen - off
            if rest >= 16:
                caplen = hdr_unpack(buf, off)[2]
                damage = (f"truncated record: the file ends {rest - 16} bytes into a"
                          f" {caplen}-byte packet")
            elif rest:
                damage = f"truncated record header ({rest} of 16 bytes)"
            break
    view.release()
    return n, damage


FrameFolder = Callable[[bytes, int, int], None]  # (frame, time ns, wire length)


def frame_folder(table: FlowTable, linktype: int) -> FrameFolder:
    """The fast path for frames that come one at a time: the same checks and shortcuts as the
    loop of ``read_classic``, for one frame of ``linktype`` at offset 0."""
    general = table.add_frame
    # Frames are in network byte order; a NULL header in that of the capturing host, which is
    # little-endian nearly always (other NULL frames just take the general path).
    layout = _layout(">", linktype, record=False, null_order="little")
    if layout is None:
        return lambda data, t, wirelen: general(linktype, data, t, wirelen)
    v4_unpack = layout.v4.unpack_from
    expected = layout.v4_proto
    link = layout.link
    mincap = link + 34
    v6_unpack = layout.v6.unpack_from if layout.v6 is not None else v4_unpack
    expected6 = layout.v6_proto
    mincap6 = link + 54 if layout.v6 is not None else 1 << 62
    add_ip = table.add_ip
    tcp_known = table.tcp_known
    tcp_get = table.tcp.get
    udp_get = table.udp.get
    idle = IDLE_NS

    def fold(data: bytes, t: int, wirelen: int) -> None:
        caplen = len(data)
        if caplen < mincap:
            general(linktype, data, t, wirelen)
            return
        etype, vihl, iplen, fragword, proto, key, flags = v4_unpack(data)
        if etype == expected and vihl == 0x45 and not fragword & 0x3FFF:
            hlen = 20
        elif etype == expected6 and caplen >= mincap6:
            vihl, iplen, proto, key, flags = v6_unpack(data)
            if vihl & 0xF0 != 0x60 or not iplen:
                proto = 0
            iplen += 40
            hlen = 40
        else:
            proto = 0
        if proto == 6:
            h = tcp_get(key)
            if h is not None and iplen >= hlen + 20:
                fl = h.flow
                if not (fl.slow or flags & 7):
                    d = t - fl.last
                    if 0 <= d <= idle:
                        h.packets += 1
                        h.bytes += iplen
                        fl.last = t
                        return
                if tcp_known(h, data, link + hlen, min(link + iplen, caplen), iplen, flags, t):
                    return
        elif proto == 17:
            h = udp_get(key)
            if h is not None and iplen >= hlen + 8:
                fl = h.flow
                if not fl.slow:
                    d = t - fl.last
                    if 0 <= d <= idle:
                        h.packets += 1
                        h.bytes += iplen
                        fl.last = t
                        return
        if (
            proto in (6, 17)
            and iplen >= hlen + (20 if proto == 6 else 8)
            and add_ip(data, link, hlen, caplen, iplen, key, t)
        ):
            return
        general(linktype, data, t, wirelen)

    return fold
