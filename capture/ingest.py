"""Traffic files -> one flow file: the entry point the ``segmenter`` CLI and ``python -m capture``
use.

``ingest(paths, out)`` checks every input first (its format is found by content among
``capture.sources.SOURCES``; a file of no format read raises ``CaptureError`` naming it, before
anything is written), then reads the captures one after the other -- ordered by their first
packet's time stamp, then name, so the argument order does not matter -- as one stream folded
into one flow table, then the record sources (flow files, flow logs), and writes the flow file
atomically. A capture that is damaged part-way contributes the packets before the damage, and a
warning naming the file and packet number goes to the ``capture`` logger.
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

from capture.errors import CaptureError
from capture.flowfile import (
    Record,
    dumps,
    file_version,
    in_file_order,
    make_header,
    ordered_lines,
    sort_key,
    write_lines,
)
from capture.sources import Opened, ReadOptions, Sink, SourceFormat, detect
from capture.sources.folders import expand_inputs, refuse_output_inside
from capture.table import FlowState, FlowTable

log = logging.getLogger("capture")


@dataclass(frozen=True)
class IngestStats:
    """What an ingest read and wrote."""

    packets: int  # packets read from all captures
    skipped: dict[str, int]  # reason -> packets not folded into any flow
    flows: int  # flow records written
    dns: int  # DNS records written
    sources: tuple[str, ...]  # base names of the captures, sorted
    warnings: tuple[str, ...] = ()  # one line per damaged capture
    out: str | None = None
    header: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


def ingest(
    paths: Sequence[str],
    out: str | None,
    *,
    progress: bool = False,
    fast: bool = True,
) -> IngestStats:
    """Read the traffic files ``paths`` (any format of ``capture.sources``) and write their flow
    file to ``out``.

    ``out`` None or ``"-"`` writes to standard output. ``progress`` shows a progress line on
    standard error when it is a terminal (never otherwise). ``fast=False`` reads every capture
    with scapy's readers and decodes every packet with the general decoder: the same output,
    several times slower (the reference the fast paths are tested against). Raises
    ``CaptureError`` for an input that is missing or of no format read, or an unwritable
    ``out``; a capture damaged part-way is a warning (``warnings``, and the ``capture`` logger).
    """
    refuse_output_inside([paths] if isinstance(paths, str) else paths, out)
    with _no_gc():
        sink, stats = _read(paths, progress=progress, fast=fast)
        if out is not None:
            out = os.fspath(out)
        # Records are turned into text one at a time: at no time are all of them held as
        # dictionaries.
        write_lines(out, itertools.chain(
            [dumps(stats.header)],
            ordered_lines(_flow_items(sink), _line_of(sink, sink.table.flow_line)),
            ordered_lines(_dns_items(sink), _line_of(sink, sink.table.dns_line)),
        ))
    return IngestStats(
        stats.packets, stats.skipped, stats.flows, stats.dns, stats.sources, stats.warnings,
        out, stats.header,
    )


def fold(
    paths: Sequence[str], *, progress: bool = False, fast: bool = True
) -> tuple[dict[str, Any], list[dict[str, Any]], IngestStats]:
    """Read the traffic files into (flow file header, records, stats) without writing anything;
    the records in the order of the flow file."""
    with _no_gc():
        sink, stats = _read(paths, progress=progress, fast=fast)
        table = sink.table
        records = [
            *(obj if isinstance(obj, dict) else table.flow_record(obj)
              for obj in in_file_order(_flow_items(sink), _line_of(sink, table.flow_line))),
            *(obj if isinstance(obj, dict) else table.dns_record(obj)
              for obj in in_file_order(_dns_items(sink), _line_of(sink, table.dns_line))),
        ]
    return stats.header, records, stats


def _record_items(sink: Sink, kind: str) -> Iterator[tuple[tuple[Any, ...], Record]]:
    return ((sort_key(r), r) for r in sink.records if r.get("record") == kind)


def _flow_items(sink: Sink) -> Iterator[tuple[tuple[Any, ...], FlowState | Record]]:
    """The flows of the table and the flow records of record sources, as (sort key, item)."""
    return itertools.chain(sink.table.flow_items(), _record_items(sink, "flow"))


def _dns_items(sink: Sink) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """The DNS answers of the table and the DNS records of record sources, as (sort key, item)."""
    return itertools.chain(sink.table.dns_items(), _record_items(sink, "dns"))


def _line_of(sink: Sink, table_line: Callable[[Any], str]) -> Callable[[Any], str]:
    """A record's line: record sources' records are dictionaries, the table's are its own."""

    def line(obj: Any) -> str:
        return dumps(obj) if isinstance(obj, dict) else table_line(obj)

    return line


def _read(
    paths: Sequence[str], *, progress: bool, fast: bool
) -> tuple[Sink, IngestStats]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]  # one file named on its own
    if not paths:
        raise CaptureError("no capture files given")
    inputs: list[tuple[Opened, SourceFormat]] = []
    seen: set[str] = set()
    for name in expand_inputs(paths):  # a folder: the files in it
        path = os.fspath(name)
        opened, source = detect(path)
        real = os.path.realpath(path)
        if real not in seen:  # the same file named twice is read once
            seen.add(real)
            inputs.append((opened, source))
    # Captures fold into one flow table in time order (a rotated capture continues its flows
    # across files), then record sources; each group by name, so argument order never matters.
    times = {o.path: s.first_time(o) if s.first_time is not None else None for o, s in inputs}
    inputs.sort(key=lambda item: (not item[1].packets, times[item[0].path] is None,
                                  times[item[0].path] or 0, os.path.basename(item[0].path),
                                  item[0].path))
    sink = Sink()
    show = _Progress(sys.stderr) if progress and _isatty(sys.stderr) else None
    with _quiet_scapy():
        for opened, source in inputs:
            tick = show.for_file(opened, sink.table) if show is not None else None
            warnings_before = len(sink.warnings)
            source.read(opened, sink, ReadOptions(fast=fast, progress=tick))
            for warning in sink.warnings[warnings_before:]:
                log.warning("%s", warning)
    if show is not None:
        show.done()
    table = sink.table
    flows = table.flow_count() + sum(1 for r in sink.records if r.get("record") == "flow")
    dns = len(table.dns) + sum(1 for r in sink.records if r.get("record") == "dns")
    sources = tuple(sorted({os.path.basename(o.path) for o, _ in inputs}))
    skipped = dict(sorted((Counter(table.skipped) + sink.skipped).items()))
    header = make_header(sources, sink.packets, skipped, flows, dns,
                         version=file_version(sink.records))
    return sink, IngestStats(sink.packets, skipped, flows, dns, sources, tuple(sink.warnings),
                             None, header)


@contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while the flow table fills.

    Every flow is three objects that stay alive until the table is written, and the collector
    rescanned them on every threshold crossing: a tenth of an ingest of short connections.
    Nothing here makes garbage cycles worth collecting early. (The planner's gcpause module
    does the same; capture/ stands alone, so it has its own.)
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _Progress:
    """A throttled one-line progress display on a terminal: the capture, packets, bytes read
    (and how much of the file that is), flows so far, packets per second."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.last = 0.0
        self.shown = False
        self.start = time.monotonic()
        self.before = 0  # packets of the captures already read

    def for_file(self, info: Opened, table: FlowTable) -> Any:
        name = os.path.basename(info.path)
        size = info.size
        before = self.before

        def tick(packets: int, done: int) -> None:
            now = time.monotonic()
            if now - self.last < 0.25:
                return
            self.last = now
            self.before = before + packets
            line = f"{name}: {packets:,} packets"
            if done and not info.gzipped:  # (of a compressed file: how much was decompressed)
                line += f", {done / (1 << 20):,.0f} MiB"
                if size:
                    line += f" ({min(100, done * 100 // size)}%)"
            rate = (before + packets) / max(now - self.start, 1e-9)
            line += f", {table.flow_estimate():,} flows, {rate:,.0f} packets/s"
            self.stream.write(f"\r{line}\x1b[K")
            self.stream.flush()
            self.shown = True

        return tick

    def done(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


class _DropScapyWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.WARNING


@contextmanager
def _quiet_scapy() -> Iterator[None]:
    """Scapy's readers log their own warnings on damaged files; ours say it once, better."""
    logger = logging.getLogger("scapy.runtime")
    flt = _DropScapyWarnings()
    logger.addFilter(flt)
    try:
        yield
    finally:
        logger.removeFilter(flt)
