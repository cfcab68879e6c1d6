"""Our own pcapng block reader, for the fast ingest path.

scapy's ``RawPcapNgReader`` reads about 140k packets/s here: a method call, three ``read()``
calls, several ``struct.unpack`` calls, an options parse and a namedtuple per packet. The
pcapng format (IETF draft-ietf-opsawg-pcapng) is a stream of blocks -- type, total length,
body, total length again -- so ``iter_packets`` reads the file in large chunks and walks the
blocks in place; ``capture.pcapfast.read_pcapng`` then hands the packets to the same folding
loop as classic pcap.

It reads a file exactly as scapy's reader does -- the same packets, time stamps, link types and
wire lengths, and on a damaged file the same packets before the damage and the same
description of it (tests/capture/test_capture_pcapng.py checks both against scapy, including
every truncation of a file and random corruption). Where scapy's reader is wrong, both are
mended the same way (capture.readers subclasses scapy's reader): a Simple Packet Block on an
interface whose snap length is 0 -- "no limit", as the format says -- keeps its bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import NamedTuple, Protocol

NS = 1_000_000_000
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
BOM_BIG = b"\x1a\x2b\x3c\x4d"
BOM_LITTLE = b"\x4d\x3c\x2b\x1a"
MAX_BLOCK = 16 << 20  # a block longer than this means a damaged file (as capture.readers)
CHUNK = 4 << 20

BLOCK_SHB = 0x0A0D0D0A
BLOCK_IDB = 1
BLOCK_PB = 2  # obsolete Packet Block
BLOCK_SPB = 3
BLOCK_EPB = 6
BLOCK_DSB = 10
BLOCK_PIB = 0x80000001  # Apple's process information block

OPT_ENDOFOPT = 0
OPT_IF_NAME = 2  # pcapng IDB option if_name (draft-ietf-opsawg-pcapng, 4.2): UTF-8
OPT_IF_TSRESOL = 9
OPT_EPB_FLAGS = 2
OPT_EPB_PIB_INDEX = (0x8001, 0x8003)
MULTI_OPTIONS = (1, 2988, 2989, 19372, 19373)  # may repeat: scapy keeps a list (first used)

Packet = tuple[int, int, bytes, int]  # (time ns, linktype, frame bytes, wire length)


class Run(NamedTuple):
    """Packets of one link type as classic pcap records (16-byte header: seconds, nanoseconds,
    captured length, wire length, little-endian; then the frame) in ``records[:size]``. The
    buffer is the reader's own, refilled for the next run: use it before asking for more."""

    linktype: int
    records: bytearray
    size: int
    packets: int  # how many records


# capture._fastloop.epb_run: (buf, off, blen, little, links, mults, max_record, max_block, out,
# pos) -> (off, count, linktype, last time ns, pos).
EpbRun = Callable[[bytearray, int, int, bool, list[int], list[int], int, int, bytearray, int],
                  tuple[int, int, int, int, int]]
RUN_BYTES = CHUNK  # the records of one run: at most this, or one record of max_record


class Readable(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


class PcapngDamaged(Exception):
    """The rest of the file cannot be read: the message describes the block."""


class PcapngBadStart(Exception):
    """The first Section Header Block is not readable: not a usable pcapng file."""

    def __init__(self) -> None:
        super().__init__(BAD_START)


BAD_START = "the first section header block is damaged"


class _ShortOptions(Exception):
    """scapy's Scapy_Exception for a Section Header Block whose options are cut short."""

    MESSAGE = "PcapNg: Invalid Section Header Block  options (too short)"


def describe_damage(head: bytes, endian: str) -> str:
    """What is wrong with the block starting with ``head`` (its first 8 bytes, or fewer)."""
    if len(head) < 8:
        return f"truncated block header ({len(head)} of 8 bytes)"
    btype, blen = struct.unpack(endian + "II", head[:8])
    if blen < 12 or blen % 4:
        return f"invalid block length {blen} (block type 0x{btype:x})"
    return f"truncated or damaged block (type 0x{btype:x}, length {blen})"


class _Options:
    """scapy's ``RawPcapNgReader._read_options``: code -> value (the last one, or a list of
    all for the codes that may repeat); raises ``EOFError`` where it does."""

    @staticmethod
    def parse(endian: str, options: bytes | bytearray | memoryview) -> dict[int, object]:
        opts: dict[int, object] = {}
        head = struct.Struct(endian + "HH")
        offset = 0
        size = len(options)
        while size - offset >= 4:
            code, length = head.unpack_from(options, offset)
            value_offset = offset + 4
            if code != OPT_ENDOFOPT and value_offset + length <= size:
                value = bytes(options[value_offset : value_offset + length])
                if code in MULTI_OPTIONS:
                    existing = opts.setdefault(code, [])
                    assert isinstance(existing, list)
                    existing.append(value)
                else:
                    opts[code] = value
            if code == OPT_ENDOFOPT:
                break
            offset = value_offset + length + (-length % 4)
        return opts


def _tsresol(endian: str, options: bytes | bytearray | memoryview) -> int:
    """The ticks per second of an interface: its if_tsresol option, else 10**6."""
    value = _Options.parse(endian, options).get(OPT_IF_TSRESOL)
    if isinstance(value, bytes) and len(value) == 1:
        return int((2 if value[0] & 128 else 10) ** (value[0] & 127))
    return 1_000_000


def interface_name(value: object) -> str | None:
    """An Interface Description Block's ``if_name`` option value as text (the interface a
    capture was taken on, e.g. ``cali1234`` or ``any``), or None when absent or empty. Some
    writers count a terminating NUL in the option's length."""
    if not isinstance(value, bytes):
        return None
    name = value.split(b"\0", 1)[0].decode("utf-8", "replace").strip()
    return name or None


def _ticks_to_ns(ticks: int, resol: int) -> int:
    return ticks * (NS // resol) if NS % resol == 0 else ticks * NS // resol


def iter_packets(f: Readable, max_record: int, epb_run: EpbRun | None = None,
                 names: list[str] | None = None) -> Iterator[Packet | Run]:
    """Every packet of a pcapng stream (positioned at its start), as scapy's reader gives them
    (frames cut to ``max_record`` bytes). Raises ``PcapngBadStart`` when the first section
    header cannot be read, ``PcapngDamaged`` where the rest of the file cannot be read.

    With ``epb_run`` (the C extension's), runs of plain Enhanced Packet Blocks come as ``Run``
    items, already classic records; everything else one packet at a time. ``names`` gets the
    name of every interface described (``if_name``), in file order.
    """
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    blen = 0  # bytes in buf
    off = 0  # start of the next block in buf
    eof = False
    endian = ">"  # scapy's until the first section header says otherwise
    # Per interface (numbered afresh in each section): (linktype, snap length, ticks/s).
    interfaces: list[tuple[int, int, int]] = []
    run_buf: bytearray | None = None
    links: list[int] = []  # per interface, for epb_run: link type
    mults: list[int] = []  # and nanoseconds per tick (0: not a whole number)
    last_t = 0  # a Simple Packet Block has no time stamp: scapy's reader gives the last one
    first = True

    def fill(need: int) -> bool:
        """At least ``need`` bytes from ``off`` in buf, unless the file ends first."""
        nonlocal buf, view, blen, off, eof
        while blen - off < need and not eof:
            if off:
                rest = blen - off
                buf[:rest] = buf[off:blen]
                blen, off = rest, 0
            if len(buf) - blen < max(need - (blen - off), 65536):
                view.release()
                buf.extend(bytes(max(need, CHUNK)))
                view = memoryview(buf)
            got = f.readinto(view[blen:])
            if not got:
                eof = True
            else:
                blen += got
        return blen - off >= need

    def section_header() -> tuple[str, int]:
        """(byte order, bytes to skip) of the Section Header Block at ``off``, read as scapy's
        ``_read_block_shb`` reads it: ``EOFError`` where it gives up, ``_ShortOptions`` for
        its options-too-short error. ``endian`` is the new one once the byte-order mark is
        read, as in scapy (its damage message uses it)."""
        nonlocal endian
        if not fill(12):
            raise EOFError
        bom = bytes(buf[off + 8 : off + 12])
        if bom not in (BOM_BIG, BOM_LITTLE):
            raise EOFError
        endian = ">" if bom == BOM_BIG else "<"
        total = struct.unpack_from(endian + "I", buf, off + 4)[0]
        if total < 28:
            raise EOFError
        if not fill(14) or struct.unpack_from(endian + "H", buf, off + 12)[0] != 1:
            raise EOFError  # major version 1 only
        if not fill(24):
            raise EOFError
        if not fill(total - 4):
            raise _ShortOptions
        padded = total + (-total % 4)
        if not fill(padded) or struct.unpack_from(endian + "I", buf, off + padded - 4)[0] != total:
            raise EOFError
        return endian, padded

    while True:
        if not fill(8):
            if blen - off:
                raise PcapngDamaged(describe_damage(bytes(buf[off:blen]), endian))
            return
        head = bytes(buf[off : off + 8])
        if head[:4] == PCAPNG_MAGIC:
            # Section Header Block: its byte-order mark says how to read its length (when it
            # has none, the byte order so far: what capture.readers' check of scapy uses).
            bom = bytes(buf[off + 8 : off + 12]) if fill(12) else b""
            total = struct.unpack({BOM_BIG: ">", BOM_LITTLE: "<"}.get(bom, endian) + "I",
                                  head[4:8])[0]
            if total > MAX_BLOCK:
                if first:
                    raise PcapngBadStart
                raise PcapngDamaged(f"absurd block length {total} (more than {MAX_BLOCK})")
            try:
                endian, total = section_header()
            except (EOFError, _ShortOptions) as exc:
                if first:
                    raise PcapngBadStart from None
                if isinstance(exc, _ShortOptions):  # scapy's own exception, worded as ours
                    raise PcapngDamaged(f"damaged record: {_ShortOptions.MESSAGE}") from None
                raise PcapngDamaged(describe_damage(bytes(buf[off : off + 8]), endian)) from None
            first = False
            interfaces = []  # a new section numbers its interfaces afresh
            links, mults = [], []
            off += total
            continue
        btype, total = struct.unpack(endian + "II", head)
        if epb_run is not None and btype == BLOCK_EPB and links:
            if run_buf is None:  # one buffer, reused: fresh memory costs page faults
                run_buf = bytearray(max(RUN_BYTES, max_record + 16))
            off, count, linktype, t, size = epb_run(buf, off, blen, endian == "<", links, mults,
                                                    max_record, MAX_BLOCK, run_buf, 0)
            if count:
                last_t = t
                yield Run(linktype, run_buf, size, count)
                continue  # the block that ended the run (or the next run) from the top
        if total > MAX_BLOCK:
            raise PcapngDamaged(f"absurd block length {total} (more than {MAX_BLOCK})")
        if total < 12:
            raise PcapngDamaged(describe_damage(head, endian))
        padded = total + (-total % 4)  # scapy skips a padding the length forgot
        if not fill(padded):
            raise PcapngDamaged(describe_damage(head, endian))
        if struct.unpack_from(endian + "I", buf, off + padded - 4)[0] != total:
            raise PcapngDamaged(describe_damage(head, endian))
        body = off + 8
        body_end = off + total - 4  # scapy's block: total - 12 bytes
        try:
            if btype in (BLOCK_EPB, BLOCK_PB):  # the two with an interface and a time stamp
                if body_end - body < 20:
                    raise EOFError
                if btype == BLOCK_EPB:
                    intid, hi, lo, caplen, wirelen = struct.unpack_from(endian + "5I", buf, body)
                    opt = body + 20 + caplen + (-caplen % 4)
                    if opt < body_end:
                        _check_epb_options(endian, bytes(buf[opt:body_end]))
                else:  # the obsolete Packet Block
                    intid, _drops, hi, lo, caplen, wirelen = struct.unpack_from(
                        endian + "HH4I", buf, body)
                if intid < len(interfaces):
                    linktype, _snap, resol = interfaces[intid]
                    data_end = min(body + 20 + caplen, body_end, body + 20 + max_record)
                    last_t = _ticks_to_ns((hi << 32) | lo, resol)
                    off += padded
                    yield last_t, linktype, bytes(buf[body + 20 : data_end]), wirelen
                    continue
            elif btype == BLOCK_IDB:
                if body_end - body < 8:
                    raise EOFError
                linktype, snaplen = struct.unpack_from(endian + "HxxI", buf, body)
                options = bytes(buf[body + 8 : body_end])
                resol = _tsresol(endian, options)
                if names is not None:
                    name = interface_name(_Options.parse(endian, options).get(OPT_IF_NAME))
                    if name is not None:
                        names.append(name)
                interfaces.append((linktype, snaplen, resol))
                links.append(linktype)
                mults.append(NS // resol if NS % resol == 0 else 0)
            elif btype == BLOCK_SPB:
                if interfaces:
                    if body_end - body < 4:
                        raise EOFError
                    wirelen = struct.unpack_from(endian + "I", buf, body)[0]
                    linktype, snaplen, _resol = interfaces[0]
                    caplen = min(wirelen, snaplen) if snaplen else wirelen
                    data_end = min(body + 4 + caplen, body_end, body + 4 + max_record)
                    off += padded
                    yield last_t, linktype, bytes(buf[body + 4 : data_end]), wirelen
                    continue
            elif btype == BLOCK_DSB:
                if body_end - body < 8:
                    raise EOFError
                length = struct.unpack_from(endian + "I", buf, body + 4)[0]
                if body_end - body - 8 < length + (-length % 4):
                    raise EOFError
            elif btype == BLOCK_PIB and body_end - body < 4:
                raise EOFError  # too short for its process id
        except EOFError:
            raise PcapngDamaged(describe_damage(head, endian)) from None
        off += padded


def _check_epb_options(endian: str, options: bytes) -> None:
    """The options of an Enhanced Packet Block that make scapy's reader give up (``EOFError``):
    a process-information index or flags word that is not 4 bytes. (An index past the process
    information blocks seen is only a warning in scapy.)"""
    opts = _Options.parse(endian, options)
    for code in OPT_EPB_PIB_INDEX:
        value = opts.get(code)
        if value is not None and (not isinstance(value, bytes) or len(value) != 4):
            raise EOFError
    flags = opts.get(OPT_EPB_FLAGS)
    if flags and isinstance(flags, bytes) and len(flags) != 4:
        raise EOFError
