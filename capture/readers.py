"""Opening captures: format detection, scapy's streaming readers, damage detection.

``open_capture`` decides what a file is (classic pcap in either byte order and timestamp
precision, pcapng, or either of them gzip-compressed) and raises ``CaptureError`` for anything
that is not a capture at all. ``read_capture`` then streams its packets into a ``FlowTable``:
classic pcap and pcapng through our own readers (``capture.pcapfast``, ``capture.pcapng``),
gzip-compressed captures -- and everything with ``fast=False``, the reference path -- through
scapy's ``RawPcapNgReader`` / ``RawPcapReader`` (never ``rdpcap``: memory stays independent of
the capture's size). A file that is damaged part-way gives the packets before the damage and a
description of it.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from capture.errors import CaptureError
from capture.pcapfast import MAX_RECORD, FrameFolder, frame_folder, read_classic, read_pcapng
from capture.pcapng import BAD_START, BOM_BIG, BOM_LITTLE, PcapngBadStart, describe_damage
from capture.table import NS, FlowTable

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", False),
    b"\xa1\xb2\xc3\xd4": (">", False),
    b"\x4d\x3c\xb2\xa1": ("<", True),
    b"\xa1\xb2\x3c\x4d": (">", True),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"
MAX_BLOCK = 16 << 20  # a pcapng block longer than this means a damaged file

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class CaptureInfo:
    """What ``open_capture`` found out about a file."""

    path: str
    kind: str  # "pcap" or "pcapng"
    gzipped: bool
    endian: str  # classic pcap: "<" or ">"
    nano: bool  # classic pcap: nanosecond timestamps
    linktype: int  # classic pcap: the file's link type (pcapng: per interface)
    size: int  # bytes on disk


def open_capture(path: str) -> CaptureInfo:
    """Identify a capture file; ``CaptureError`` naming it if it is not one."""
    try:
        if os.path.isdir(path):
            raise CaptureError("is a directory, not a capture file", path=path)
        size = os.path.getsize(path)
        with open(path, "rb") as raw:
            head = raw.read(24)
            gzipped = head[:2] == GZIP_MAGIC
            if gzipped:
                raw.seek(0)
                try:
                    with gzip.GzipFile(fileobj=raw) as gz:
                        head = gz.read(24)
                except (OSError, EOFError, zlib.error) as exc:
                    raise CaptureError(f"gzip-compressed, but cannot be decompressed: {exc}",
                                       path=path) from exc
    except FileNotFoundError as exc:
        raise CaptureError("no such file", path=path) from exc
    except PermissionError as exc:
        raise CaptureError("permission denied", path=path) from exc
    except IsADirectoryError as exc:
        raise CaptureError("is a directory, not a capture file", path=path) from exc
    except OSError as exc:
        raise CaptureError(f"cannot read: {exc.strerror or exc}", path=path) from exc
    if not head:
        raise CaptureError("empty file, not a capture", path=path)
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
        # The upper 16 bits carry FCS information (pcap spec, LinkType and additional info).
        return CaptureInfo(path, "pcap", gzipped, endian, nano, linktype & 0xFFFF, size)
    if magic == PCAPNG_MAGIC:
        if len(head) < 12:
            raise CaptureError("truncated pcapng section header", path=path)
        if head[8:12] not in (b"\x1a\x2b\x3c\x4d", b"\x4d\x3c\x2b\x1a"):
            raise CaptureError("not a capture: pcapng magic but no byte-order mark", path=path)
        return CaptureInfo(path, "pcapng", gzipped, "", False, -1, size)
    shown = head[:4].hex()
    raise CaptureError(f"not a pcap or pcapng capture (starts with 0x{shown})", path=path)


def read_capture(
    info: CaptureInfo, table: FlowTable, *, fast: bool = True, progress: Progress | None = None
) -> tuple[int, str | None]:
    """Stream every packet of the capture into ``table``.

    Returns (packets read, damage): damage describes the first record that could not be read
    (its number is packets read + 1), None when the file ended cleanly.
    """
    if fast and not info.gzipped:
        try:
            with open(info.path, "rb", buffering=0) as f:
                if info.kind == "pcapng":
                    return read_pcapng(f, table=table, progress=progress)
                tick = None if progress is None else lambda n, done: progress(n, done + 24)
                f.seek(24)
                return read_classic(f, info.endian, info.nano, info.linktype, table=table,
                                    progress=tick)
        except PcapngBadStart as exc:
            raise CaptureError(f"cannot read as pcapng: {exc}", path=info.path) from exc
        except OSError as exc:
            raise CaptureError(f"cannot read: {exc.strerror or exc}", path=info.path) from exc
    return _read_scapy(info, table, progress, fast=fast)


def first_timestamp(info: CaptureInfo) -> int | None:
    """The time (ns) of the first packet, to put several captures in order; None if none."""
    if info.kind == "pcap" and not info.gzipped:
        try:
            with open(info.path, "rb") as f:
                f.seek(24)
                head = f.read(16)
        except OSError:
            return None
        if len(head) < 16:
            return None
        sec, frac = struct.unpack(info.endian + "II", head[:8])
        return int(sec) * NS + int(frac) * (1 if info.nano else 1000)
    try:
        for t, _linktype, _data, _wirelen in _scapy_packets(info):
            return t
    except (CaptureError, _Damaged):
        return None
    return None


class _Damaged(Exception):
    """Raised inside a reader when the rest of the file cannot be read."""


def _read_scapy(
    info: CaptureInfo, table: FlowTable, progress: Progress | None, *, fast: bool
) -> tuple[int, str | None]:
    """Fold the packets scapy's reader gives. ``fast``: through ``pcapfast.frame_folder``;
    else every packet through the general decoder (the reference the fast paths are checked
    against)."""
    n = 0
    folders: dict[int, FrameFolder] = {}
    add = table.add_frame
    try:
        for t, linktype, data, wirelen in _scapy_packets(info):
            if fast:
                fold = folders.get(linktype)
                if fold is None:
                    fold = folders[linktype] = frame_folder(table, linktype)
                fold(data, t, wirelen)
            else:
                add(linktype, data, t, wirelen)
            n += 1
            if progress is not None and not n & 0x3FFF:
                progress(n, 0)
    except _Damaged as exc:
        return n, str(exc)
    return n, None


def _scapy_packets(info: CaptureInfo) -> Iterator[tuple[int, int, bytes, int]]:
    """(time ns, linktype, frame bytes, wire length) for every packet, through scapy."""
    reader = _scapy_reader(info)
    try:
        if info.kind == "pcap":
            mult = 1 if reader.nano else 1000
            linktype = reader.linktype
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


def _first_block_length(info: CaptureInfo) -> int:
    """The length the first block (the section header) of a pcapng declares."""
    opener: Any = gzip.open if info.gzipped else open
    with opener(info.path, "rb") as f:
        head = f.read(12)
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


def _scapy_reader(info: CaptureInfo) -> Any:
    """A scapy raw reader for the file, with record / block start tracking for damage checks."""
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
    if info.kind == "pcapng" and _first_block_length(info) > MAX_BLOCK:
        raise CaptureError(f"cannot read as pcapng: {BAD_START}", path=info.path)
    try:
        return cls(info.path)
    except (Scapy_Exception, EOFError, OSError, struct.error) as exc:
        # scapy's reader of pcapng reads only the first section header here, and says "Not a
        # supported capture file" whatever is wrong with it; ours says which part.
        reason = BAD_START if info.kind == "pcapng" else exc
        raise CaptureError(f"cannot read as {info.kind}: {reason}", path=info.path) from exc
