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

An input is read once, as a stream: ``read`` takes its content from ``opened.open()`` (the
whole of it, decompressed, from the first byte) and never by its path, so that pipes, FIFOs and
``/dev/stdin`` read as files do (``capture.stream``); ``first_time`` looks only at
``opened.head`` or, for a regular file (``opened.seekable``), may open it once more.

Following a growing file (``segmenter monitor``): a format whose records are whole lines says
how long the file's header is (``header``); a follower then reads each appended run of whole
lines alone, as the header followed by those lines, handed over in memory
(``capture.stream.in_memory``). A format without ``header`` (captures, one-document JSON files)
is read again whole.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from capture.stream import HEAD_BYTES, Opened, open_head
from capture.table import FlowTable

Record = dict[str, Any]
Progress = Callable[[int, int], None]


@dataclass
class Sink:
    """What the sources of one ingest put their traffic into."""

    table: FlowTable = field(default_factory=FlowTable)
    records: list[Record] = field(default_factory=list)
    packets: int = 0  # packets read by packet sources
    input_records: int = 0  # records read by record sources (before folding)
    skipped: Counter[str] = field(default_factory=Counter)  # record sources' skip reasons
    warnings: list[str] = field(default_factory=list)
    # The interfaces each capture file names (pcapng if_name), by the file's name in the header.
    interfaces: dict[str, set[str]] = field(default_factory=dict)
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
        read: ``read(opened, sink, options)`` reads the whole input (``opened.open()``) into
            the sink; damage part-way is a warning in ``sink.warnings``, not an error, where
            the format allows using what came before it.
        first_time: for packet sources, the time of the first packet (ns), so that several
            captures fold in time order, found without consuming a stream read once; None for
            record sources.
        packets: a packet source (folds into ``sink.table``) rather than a record source.
        header: for following a growing file: ``header(head)`` is the length in bytes of the
            header at the start of a file whose first bytes are ``head`` -- what must precede
            a run of whole lines appended later for that run to be read alone (0: none) -- or
            None when this file cannot be read by parts. None (the default): never by parts;
            a follower reads the whole file again.
        knows_tls: the records tell TLS from plaintext (``tls: false`` means the start of
            the payload was looked at and held no TLS ClientHello), as packet captures and
            Zeek's protocol analysis do; flow logs see no payload.
    """

    name: str
    title: str
    sniff: Callable[[bytes], bool]
    read: Callable[[Opened, Sink, ReadOptions], None]
    first_time: Callable[[Opened], int | None] | None = None
    packets: bool = False
    header: Callable[[bytes], int | None] | None = None
    knows_tls: bool = False

    def __str__(self) -> str:
        return self.name


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


__all__ = ["HEAD_BYTES", "Opened", "Progress", "ReadOptions", "Record", "Sink", "SourceFormat",
           "open_head", "stat_counts"]
