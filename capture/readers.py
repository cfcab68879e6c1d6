"""Reading captures: format details, our fast readers or scapy's streaming readers, damage.

``open_capture`` decides what an input is (classic pcap in either byte order and timestamp
precision, or pcapng; compressed or not, a file or a pipe: ``capture.stream``) and raises
``CaptureError`` for anything that is not a capture at all. ``read_capture`` then streams its
packets into a ``FlowTable``: through our own readers (``capture.pcapfast``, ``capture.pcapng``),
or -- with ``fast=False``, the reference path -- through scapy's ``RawPcapNgReader`` /
``RawPcapReader`` (never ``rdpcap``: memory stays independent of the capture's size). Both read
the same decompressed stream. A capture that is damaged part-way gives the packets before the
damage and a description of it.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from capture.errors import CaptureError
from capture.pcapfast import MAX_RECORD, read_classic, read_pcapng
from capture.pcapng import (
    BAD_START,
    BOM_BIG,
    BOM_LITTLE,
    PcapngBadStart,
    PcapngDamaged,
    describe_damage,
    interface_name,
    iter_packets,
)
from capture.stream import HEAD_BYTES, Opened, Stream, open_head
from capture.table import NS, FlowTable

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", False),
    b"\xa1\xb2\xc3\xd4": (">", False),
    b"\x4d\x3c\xb2\xa1": ("<", True),
    b"\xa1\xb2\x3c\x4d": (">", True),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
MAX_BLOCK = 16 << 20  # a pcapng block longer than this means a damaged file
# The link-type field of a classic pcap header is 32 bits: the link type in the low 16, FCS
# information (F bit, FCS length) in the high bits (draft-ietf-opsawg-pcap, "LinkType and
# additional information"; libpcap's LT_LINKTYPE() masks the same way).
LINKTYPE_MASK = 0xFFFF

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class CaptureInfo:
    """What ``open_capture`` found out about an input."""

    opened: Opened
    kind: str  # "pcap" or "pcapng"
    endian: str  # classic pcap: "<" or ">"
    nano: bool  # classic pcap: nanosecond timestamps
    linktype: int  # classic pcap: the file's link type (pcapng: per interface)

    @property
    def path(self) -> str:
        return self.opened.path

    @property
    def compression(self) -> str | None:
        return self.opened.compression


def open_capture(source: str | Opened) -> CaptureInfo:
    """Identify a capture (a path, or an input ``capture.stream.open_head`` opened);
    ``CaptureError`` naming it if it is not one."""
    opened = open_head(source) if isinstance(source, str) else source
    path = opened.path
    head = opened.head
    magic = head[:4]
    if magic in PCAP_MAGICS:
        endian, nano = PCAP_MAGICS[magic]
        if len(head) < 24:
            raise CaptureError(f"truncated pcap file header ({len(head)} of 24 bytes)",
                               path=path)
        major, _minor, _tz, _sig, _snaplen, linktype = struct.unpack(endian + "HHiIII",
                                                                     head[4:24])
        if major != 2:
            raise CaptureError(f"unsupported pcap version {major}", path=path)
        return CaptureInfo(opened, "pcap", endian, nano, linktype & LINKTYPE_MASK)
    if magic == PCAPNG_MAGIC:
        if len(head) < 12:
            raise CaptureError("truncated pcapng section header", path=path)
        if head[8:12] not in (BOM_BIG, BOM_LITTLE):
            raise CaptureError("not a capture: pcapng magic but no byte-order mark", path=path)
        return CaptureInfo(opened, "pcapng", "", False, -1)
    shown = head[:4].hex()
    raise CaptureError(f"not a pcap or pcapng capture (starts with 0x{shown})", path=path)


def read_capture(
    info: CaptureInfo, table: FlowTable, *, fast: bool = True, progress: Progress | None = None,
    interfaces: list[str] | None = None,
) -> tuple[int, str | None]:
    """Stream every packet of the capture into ``table``.

    Returns (packets read, damage): damage describes the first record that could not be read
    (its number is packets read + 1), None when the input ended cleanly. ``interfaces`` gets
    the names a pcapng capture gives its interfaces (classic pcap names none).
    """
    stream = info.opened.open()
    try:
        with stream:
            if not fast:
                n, damage = _read_scapy(info, stream, table, progress, interfaces)
            elif info.kind == "pcapng":
                n, damage = read_pcapng(stream, table=table, progress=progress,
                                        names=interfaces)
            else:
                tick = None if progress is None else lambda n, done: progress(n, done + 24)
                stream.read_up_to(24)  # the file header, read by open_capture
                n, damage = read_classic(stream, info.endian, info.nano, info.linktype,
                                         table=table, progress=tick)
    except PcapngBadStart as exc:
        raise CaptureError(f"cannot read as pcapng: {exc}", path=info.path) from exc
    except OSError as exc:
        raise CaptureError(f"cannot read: {exc.strerror or exc}", path=info.path) from exc
    if stream.error is not None:
        # The compressed data is damaged: the capture ends there, whatever the reader made of
        # the cut (a record cut short, or none).
        damage = f"damaged {info.compression} data: {stream.error}"
    return n, damage


def first_timestamp(info: CaptureInfo) -> int | None:
    """The time (ns) of the first packet, to put several captures in order; None if none.

    Found in the head of the input; a regular file whose first packet lies beyond it is read
    up to that packet (a pipe is not: it is read once, later).
    """
    head = info.opened.head
    if info.kind == "pcap":
        if len(head) < 40:
            return None
        sec, frac = struct.unpack(info.endian + "II", head[24:32])
        return int(sec) * NS + int(frac) * (1 if info.nano else 1000)
    t = _first_pcapng_time(io.BytesIO(head))
    if t is None and len(head) >= HEAD_BYTES and info.opened.seekable:
        try:
            with info.opened.open() as stream:
                t = _first_pcapng_time(stream)
        except CaptureError:
            return None
    return t


def _first_pcapng_time(f: Any) -> int | None:
    try:
        for item in iter_packets(f, MAX_RECORD):
            return cast(tuple[int, int, bytes, int], item)[0]
    except (PcapngDamaged, PcapngBadStart, OSError):
        return None
    return None


class _Damaged(Exception):
    """Raised inside a reader when the rest of the file cannot be read."""


def _read_scapy(
    info: CaptureInfo, stream: Stream, table: FlowTable, progress: Progress | None,
    interfaces: list[str] | None = None,
) -> tuple[int, str | None]:
    """Fold the packets scapy's reader gives, every one through the general decoder: the
    reference the fast paths are checked against."""
    n = 0
    add = table.add_frame
    try:
        for t, linktype, data, wirelen in _scapy_packets(info, stream, interfaces):
            add(linktype, data, t, wirelen)
            n += 1
            if progress is not None and not n & 0x3FFF:
                progress(n, 0)
    except _Damaged as exc:
        return n, str(exc)
    return n, None


def _scapy_packets(
    info: CaptureInfo, stream: Stream | None = None, interfaces: list[str] | None = None
) -> Iterator[tuple[int, int, bytes, int]]:
    """(time ns, linktype, frame bytes, wire length) for every packet, through scapy; of
    ``stream`` (else ``info.opened.open()``), which it closes. ``interfaces`` gets the names
    of the pcapng interfaces described."""
    reader = _scapy_reader(info, info.opened.open() if stream is None else stream)
    if interfaces is not None:
        reader.names = interfaces
    try:
        if info.kind == "pcap":
            mult = 1 if reader.nano else 1000
            linktype = reader.linktype & LINKTYPE_MASK
            while True:
                try:
                    data, meta = reader._read_packet(MAX_RECORD)
                except EOFError:
                    if reader.head:  # bytes were left, but not a whole record header
                        raise _Damaged(f"truncated record header ({len(reader.head[:15])} of 16"
                                       " bytes)") from None
                    return
                if meta.caplen > MAX_RECORD:
                    raise _Damaged(f"absurd record length {meta.caplen} (more than {MAX_RECORD})")
                if len(data) < meta.caplen:
                    raise _Damaged(f"truncated record: the file ends {len(data)} bytes into a"
                                   f" {meta.caplen}-byte packet")
                yield meta.sec * NS + meta.usec * mult, linktype, data, meta.wirelen
        else:
            last = 0
            while True:
                try:
                    data, meta = reader._read_packet(MAX_RECORD)
                except EOFError:
                    if reader.head:  # bytes were left, but not a whole block
                        raise _Damaged(describe_damage(reader.head, reader.endian)) from None
                    return
                if meta.tshigh is None:  # a Simple Packet Block has no time stamp
                    t = last
                else:
                    ticks = (meta.tshigh << 32) | meta.tslow
                    resol = int(meta.tsresol)
                    t = ticks * (NS // resol) if NS % resol == 0 else ticks * NS // resol
                last = t
                yield t, meta.linktype, data, meta.wirelen
    except _Damaged:
        raise
    except Exception as exc:  # scapy raises its own exception types on malformed blocks
        raise _Damaged(f"damaged record: {exc}") from exc
    finally:
        reader.close()


def _first_block_length(head: bytes) -> int:
    """The length the first block (the section header) of a pcapng declares."""
    endian = {BOM_BIG: ">", BOM_LITTLE: "<"}.get(head[8:12])
    return 0 if endian is None or len(head) < 12 else struct.unpack(endian + "I", head[4:8])[0]


class _Lookahead:
    """A file whose ``peek(n)`` gives ``n`` bytes unless the file ends first (a buffered
    file's gives what is left in its buffer, maybe fewer); ``read`` and ``close`` for scapy."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.ahead = b""

    def peek(self, n: int) -> bytes:
        if len(self.ahead) < n:
            self.ahead += self.f.read(n - len(self.ahead))
        return self.ahead[:n]

    def read(self, n: int = -1) -> bytes:
        if not self.ahead:
            return cast(bytes, self.f.read(n))
        if n < 0:
            data, self.ahead = self.ahead + cast(bytes, self.f.read()), b""
            return data
        data, self.ahead = self.ahead[:n], self.ahead[n:]
        if len(data) < n:
            data += cast(bytes, self.f.read(n - len(data)))
        return data

    def close(self) -> None:
        self.f.close()


def _scapy_reader(info: CaptureInfo, stream: Stream) -> Any:
    """A scapy raw reader of ``stream`` (closed when the reader is), with record / block start
    tracking for damage checks."""
    from scapy.error import Scapy_Exception
    from scapy.utils import RawPcapNgReader, RawPcapReader

    # Each reader notes the bytes ahead of the record / block it starts to read (_Lookahead:
    # the file's own peek() may give fewer than there are, at the end of its buffer): when
    # scapy then reports the end of the file, the file ended cleanly exactly if there were none.
    class _PcapReader(RawPcapReader):
        head = b""

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            if not isinstance(self.f, _Lookahead):
                self.f = cast(Any, _Lookahead(self.f))  # scapy only reads and closes it

        def _read_packet(self, size: int = MAX_RECORD) -> Any:
            self.head = cast(_Lookahead, self.f).peek(16)
            return super()._read_packet(size)

    class _PcapNgReader(RawPcapNgReader):
        head = b""
        names: list[str] | None = None  # the interfaces' names, when asked for

        def _read_block_idb(self, block: bytes, size: int) -> None:
            before = len(self.interfaces)
            super()._read_block_idb(block, size)
            if self.names is not None and len(self.interfaces) > before:
                name = interface_name(self.interfaces[-1][2].get("name"))
                if name is not None:
                    self.names.append(name)

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            if not isinstance(self.f, _Lookahead):
                self.f = cast(Any, _Lookahead(self.f))  # scapy only reads and closes it

        def _read_block(self, size: int = MAX_RECORD) -> Any:
            head = cast(_Lookahead, self.f).peek(12)
            self.head = head[:8]
            endian = self.endian
            if head[:4] == PCAPNG_MAGIC and len(head) >= 12:  # a section's own byte order
                endian = {BOM_BIG: ">", BOM_LITTLE: "<"}.get(head[8:12], endian)
            if len(head) >= 8:
                blen = struct.unpack(endian + "I", head[4:8])[0]
                if blen > MAX_BLOCK:
                    raise _Damaged(f"absurd block length {blen} (more than {MAX_BLOCK})")
            return super()._read_block(size)

        def _read_block_spb(self, block: bytes, size: int) -> Any:
            # Snap length 0 means "no limit" (pcapng, Interface Description Block); scapy's
            # reader takes it as a limit of 0 bytes. Ours (capture.pcapng) reads it the same.
            if self.interfaces and self.interfaces[0][1] == 0:
                linktype, _snap, options = self.interfaces[0]
                self.interfaces[0] = (linktype, 1 << 32, options)
                try:
                    return super()._read_block_spb(block, size)
                finally:
                    self.interfaces[0] = (linktype, 0, options)
            return super()._read_block_spb(block, size)

        def _read_block_shb(self) -> None:
            # A new section (e.g. pcapng files joined with cat) numbers its interfaces afresh;
            # scapy would keep the previous section's and mislabel the link types.
            self.interfaces = []
            super()._read_block_shb()

    cls = _PcapReader if info.kind == "pcap" else _PcapNgReader
    if info.kind == "pcapng" and _first_block_length(info.opened.head) > MAX_BLOCK:
        stream.close()
        raise CaptureError(f"cannot read as pcapng: {BAD_START}", path=info.path)
    try:
        return cls(stream)
    except (Scapy_Exception, EOFError, OSError, struct.error) as exc:
        stream.close()
        # scapy's reader of pcapng reads only the first section header here, and says "Not a
        # supported capture file" whatever is wrong with it; ours says which part.
        reason = BAD_START if info.kind == "pcapng" else exc
        raise CaptureError(f"cannot read as {info.kind}: {reason}", path=info.path) from exc
