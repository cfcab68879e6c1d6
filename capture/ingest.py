"""Traffic files -> one flow file: the entry point the ``segmenter`` CLI and ``python -m capture``
use.

``ingest(paths, out)`` checks every input first (its format is found by content among
``capture.sources.SOURCES``; a file of no format read raises ``CaptureError`` naming it, before
anything is written), then reads the captures one after the other -- ordered by their first
packet's time stamp, then name, so the argument order does not matter -- as one stream folded
into one flow table, then the record sources (flow files, flow logs), and writes the flow file
atomically. An input may be a pipe, a FIFO or ``/dev/stdin`` as well as a file, compressed or
not (``capture.stream``). A capture that is damaged part-way contributes the packets before the
damage, and a warning naming the file and packet number goes to the ``capture`` logger; an input
with nothing in it, among others, is a warning too. Fail closed: inputs that give no packet and
no record at all are a ``CaptureError`` (not an empty flow file), and so is an output that is one
of the inputs (the flow file would replace it).
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
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
    records: int = 0  # records read from flow files and flow logs (before folding)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


def read_counts(packets: int, records: int) -> str:
    """``N packets``, ``M records`` or ``N packets and M records``: what an ingest read."""
    parts = [f"{n} {unit}{'' if n == 1 else 's'}"
             for n, unit in ((packets, "packet"), (records, "record")) if n]
    return " and ".join(parts) or "0 packets"


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
    if out is not None:
        out = os.fspath(out)
    paths = _as_list(paths)
    refuse_output_inside(paths, out)
    _refuse_to_overwrite_an_input(paths, out)
    with _no_gc():
        sink, stats = _read(paths, progress=progress, fast=fast)
        # Records are turned into text one at a time: at no time are all of them held as
        # dictionaries.
        write_lines(out, itertools.chain(
            [dumps(stats.header)],
            ordered_lines(_flow_items(sink), _line_of(sink, sink.table.flow_line)),
            ordered_lines(_dns_items(sink), _line_of(sink, sink.table.dns_line)),
        ))
    return IngestStats(
        stats.packets, stats.skipped, stats.flows, stats.dns, stats.sources, stats.warnings,
        out, stats.header, stats.records,
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


def _as_list(paths: Sequence[str] | str | os.PathLike[str]) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        return [os.fspath(paths)]  # one file named on its own
    return [os.fspath(p) for p in paths]


def _refuse_to_overwrite_an_input(paths: Sequence[str], out: str | None) -> None:
    """``CaptureError`` when ``out`` is one of the inputs: the flow file would replace it."""
    if out is None or out == "-" or not os.path.exists(out):
        return
    for path in paths:
        try:
            same = os.path.samefile(path, out)
        except OSError:
            continue  # a missing input: detect() says so
        if same:
            raise CaptureError(f"is also the output file ({out}): the flow file would replace"
                               " it; name another output", path=path)


def _read(
    paths: Sequence[str] | str, *, progress: bool, fast: bool
) -> tuple[Sink, IngestStats]:
    paths = _as_list(paths)
    if not paths:
        raise CaptureError("no capture files given")
    # Scapy's readers log their own warnings on damaged files (also while a reader starts):
    # ours say it once, on every path.
    with _quiet_scapy():
        sink, inputs, empty = _read_inputs(paths, progress=progress, fast=fast)
    table = sink.table
    flows = table.flow_count() + sum(1 for r in sink.records if r.get("record") == "flow")
    dns = len(table.dns) + sum(1 for r in sink.records if r.get("record") == "dns")
    skipped = dict(sorted((Counter(table.skipped) + sink.skipped).items()))
    if not flows and not dns:
        # Fail closed: a flow file of nothing would read as "no traffic at all".
        raise CaptureError(_nothing_read(inputs, empty, sink, skipped)
                           + ": nothing to make flows of",
                           path=inputs[0][0].path if len(inputs) == 1 else None)
    for path in empty:
        warning = str(CaptureError("no packets or records in it (an empty file)", path=path))
        sink.warnings.append(warning)
        log.warning("%s", warning)
    sources = tuple(sorted({os.path.basename(o.path) for o, _ in inputs}))
    header = make_header(sources, sink.packets, skipped, flows, dns,
                         version=file_version(sink.records))
    return sink, IngestStats(sink.packets, skipped, flows, dns, sources, tuple(sink.warnings),
                             None, header, sink.input_records)


def _nothing_read(inputs: Sequence[tuple[Opened, SourceFormat]], empty: Sequence[str],
                  sink: Sink, skipped: Mapping[str, int]) -> str:
    """Why inputs gave no connection, for the error that says so."""
    if sink.packets or sink.input_records:
        counts = [f"{n} {unit}{'s' if n != 1 else ''}"
                  for n, unit in ((sink.packets, "packet"), (sink.input_records, "record")) if n]
        what = " and ".join(counts)
        reasons = ", ".join(f"{reason}: {n}" for reason, n in skipped.items())
        return f"none of the {what} read is a connection" + (f" (skipped {reasons})" if reasons
                                                        else "")
    if len(inputs) == 1:
        unit, kind = ("packet", "capture") if inputs[0][1].packets else ("record", "file")
        why = f"an empty {kind}" if empty else f"damaged before its first {unit}"
        return f"no {unit}s in it ({why})"
    names = ", ".join(o.path for o, _s in inputs)
    return f"no packets or records in any of the {len(inputs)} inputs ({names})"


def _read_inputs(
    paths: Sequence[str], *, progress: bool, fast: bool
) -> tuple[Sink, list[tuple[Opened, SourceFormat]], list[str]]:
    """The sink of the inputs, the inputs in the order read, and those that held nothing
    (without a damage warning)."""
    inputs: list[tuple[Opened, SourceFormat]] = []
    seen: set[str] = set()
    for path in expand_inputs(paths):  # a folder: the files in it
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
    empty: list[str] = []
    for opened, source in inputs:
        tick = show.for_file(opened, sink.table) if show is not None else None
        warnings_before = len(sink.warnings)
        read_before = sink.packets + sink.input_records
        source.read(opened, sink, ReadOptions(fast=fast, progress=tick))
        for warning in sink.warnings[warnings_before:]:
            log.warning("%s", warning)
        if sink.packets + sink.input_records == read_before and len(sink.warnings) == (
                warnings_before):
            empty.append(opened.path)
    # IP fragments still waiting for their datagram's first fragment never get it.
    sink.table.expire_fragments()
    if show is not None:
        show.done()
    return sink, inputs, empty


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
            if done and info.compression is None:  # (compressed: how much was decompressed)
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
