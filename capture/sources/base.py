"""The traffic-source contract: what every input format of ``ingest`` provides.

A source format is a module in this package with one :class:`SourceFormat` value, listed once in
``capture.sources.SOURCES``. It decides by content whether a file is its own (``sniff``, given the
first bytes after decompression) and reads it into a :class:`Sink`:

* packet sources (pcap, pcapng) fold packets into ``sink.table``, the flow table that turns
  packets into connections; several captures fold into the same table, in time order, so a
  rotated capture continues its flows across files;
* record sources (flow files, flow logs) add connection records, already in the flow-file
  format (docs/flow-format.md), with ``sink.add_record``; a source that sees one connection
  several times (both ends report it, replies are logged) folds them itself.

``ingest`` writes what the sink holds as one flow file.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from capture.errors import CaptureError
from capture.table import FlowTable

HEAD_BYTES = 65536  # how much of a file (after decompression) the sniffers see
# How much a reader of text or JSON lines asks of the file at once: with the default 8 KiB,
# splitting a gigabyte into lines costs several times more (benchmarks/ingest_flowlogs.py).
READ_BUFFER = 1 << 16
GZIP_MAGIC = b"\x1f\x8b"

Record = dict[str, Any]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Opened:
    """A file about to be read: its first bytes (decompressed) and how it is stored."""

    path: str
    head: bytes
    gzipped: bool
    size: int  # bytes on disk


@dataclass
class Sink:
    """What the sources of one ingest put their traffic into."""

    table: FlowTable = field(default_factory=FlowTable)
    records: list[Record] = field(default_factory=list)
    packets: int = 0  # packets read by packet sources
    input_records: int = 0  # records read by record sources (before folding)
    skipped: Counter[str] = field(default_factory=Counter)  # record sources' skip reasons
    warnings: list[str] = field(default_factory=list)
    # A record source's state across the files of one ingest, by format name (a connection
    # whose reports are split over rotated files folds into one record).
    state: dict[str, Any] = field(default_factory=dict)

    def add_record(self, record: Record) -> None:
        self.records.append(record)


@dataclass(frozen=True)
class ReadOptions:
    """How to read: ``fast`` paths (the default) or the scapy reference path for captures, and
    an optional progress callback (packets or records so far, bytes read)."""

    fast: bool = True
    progress: Progress | None = None


@dataclass(frozen=True)
class SourceFormat:
    """One input format.

    Attributes:
        name: short name, as the flow file's ``sources`` lists and error messages say it.
        title: what a person calls it ("pcapng capture", "Hubble flow export").
        sniff: ``sniff(head)`` is true when the first bytes are this format's.
        read: ``read(opened, sink, options)`` reads the whole file into the sink; damage
            part-way is a warning in ``sink.warnings``, not an error, where the format allows
            using what came before it.
        first_time: for packet sources, the time of the first packet (ns), so that several
            captures fold in time order; None for record sources.
        packets: a packet source (folds into ``sink.table``) rather than a record source.
    """

    name: str
    title: str
    sniff: Callable[[bytes], bool]
    read: Callable[[Opened, Sink, ReadOptions], None]
    first_time: Callable[[Opened], int | None] | None = None
    packets: bool = False

    def __str__(self) -> str:
        return self.name


def open_head(path: str) -> Opened:
    """Read the first bytes of ``path`` (decompressing gzip) without reading the rest."""
    try:
        if os.path.isdir(path):
            raise CaptureError("is a directory, not a capture file", path=path)
        size = os.path.getsize(path)
        with open(path, "rb") as raw:
            head = raw.read(HEAD_BYTES)
            gzipped = head[:2] == GZIP_MAGIC
            if gzipped:
                raw.seek(0)
                try:
                    with gzip.GzipFile(fileobj=raw) as gz:
                        head = gz.read(HEAD_BYTES)
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
        raise CaptureError("empty file", path=path)
    return Opened(path, head, gzipped, size)


def stat_counts(header: Mapping[str, Any]) -> tuple[int, dict[str, int]]:
    """``stats.packets`` and ``stats.skipped`` of a flow file header (0 and {} where absent or
    malformed)."""
    stats = header.get("stats")
    if not isinstance(stats, Mapping):
        return 0, {}
    packets = stats.get("packets")
    skipped = stats.get("skipped")
    return (
        packets if isinstance(packets, int) and not isinstance(packets, bool) else 0,
        {str(k): v for k, v in skipped.items() if isinstance(v, int) and not isinstance(v, bool)}
        if isinstance(skipped, Mapping) else {},
    )
