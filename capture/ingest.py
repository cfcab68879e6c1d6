"""Captures -> one flow file: the entry point the ``segmenter`` CLI and ``python -m capture`` use.

``ingest(paths, out)`` checks every input first (a file that is not a capture at all raises
``CaptureError`` naming it, before anything is written), then reads the captures one after the
other -- ordered by their first packet's time stamp, then name, so the argument order does not
matter -- as one stream folded into one flow table, and writes the flow file atomically. A
capture that is damaged part-way contributes the packets before the damage, and a warning naming
the file and packet number goes to the ``capture`` logger.
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

from capture.errors import CaptureError
from capture.flowfile import dumps, in_file_order, make_header, ordered_lines, write_lines
from capture.flows import FlowTable
from capture.readers import CaptureInfo, first_timestamp, open_capture, read_capture

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
    """Read the captures ``paths`` and write their flow file to ``out``.

    ``out`` None or ``"-"`` writes to standard output. ``progress`` shows a progress line on
    standard error when it is a terminal (never otherwise). ``fast=False`` reads every capture
    with scapy's readers and decodes every packet with the general decoder: the same output,
    several times slower (the reference the fast paths are tested against). Raises
    ``CaptureError`` for an input that is missing or not a capture, or an unwritable ``out``;
    a capture damaged part-way is a warning (``warnings``, and the ``capture`` logger).
    """
    with _no_gc():
        table, stats = _read(paths, progress=progress, fast=fast)
        if out is not None:
            out = os.fspath(out)
        # Records are turned into text one at a time: at no time are all of them held as
        # dictionaries.
        write_lines(out, itertools.chain(
            [dumps(stats.header)],
            ordered_lines(table.flow_items(), table.flow_line),
            ordered_lines(table.dns_items(), table.dns_line),
        ))
    return IngestStats(
        stats.packets, stats.skipped, stats.flows, stats.dns, stats.sources, stats.warnings,
        out, stats.header,
    )


def fold(
    paths: Sequence[str], *, progress: bool = False, fast: bool = True
) -> tuple[dict[str, Any], list[dict[str, Any]], IngestStats]:
    """Read the captures into (flow file header, records, stats) without writing anything;
    the records in the order of the flow file."""
    with _no_gc():
        table, stats = _read(paths, progress=progress, fast=fast)
        records = [
            *map(table.flow_record, in_file_order(table.flow_items(), table.flow_line)),
            *map(table.dns_record, in_file_order(table.dns_items(), table.dns_line)),
        ]
    return stats.header, records, stats


def _read(
    paths: Sequence[str], *, progress: bool, fast: bool
) -> tuple[FlowTable, IngestStats]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]  # one capture named on its own
    if not paths:
        raise CaptureError("no capture files given")
    infos: list[CaptureInfo] = []
    seen: set[str] = set()
    for name in paths:
        path = os.fspath(name)
        info = open_capture(path)
        real = os.path.realpath(path)
        if real not in seen:  # the same file named twice is read once
            seen.add(real)
            infos.append(info)
    if len(infos) > 1:
        order = {info.path: first_timestamp(info) for info in infos}
        infos.sort(key=lambda i: (order[i.path] is None, order[i.path] or 0,
                                  os.path.basename(i.path), i.path))
    table = FlowTable()
    packets = 0
    warnings: list[str] = []
    show = _Progress(sys.stderr) if progress and _isatty(sys.stderr) else None
    with _quiet_scapy():
        for info in infos:
            tick = show.for_file(info, table) if show is not None else None
            n, damage = read_capture(info, table, fast=fast, progress=tick)
            packets += n
            if damage is not None:
                warning = str(CaptureError(damage, path=info.path, record=n + 1))
                warnings.append(warning)
                log.warning("%s; using the %d packets before it", warning, n)
    if show is not None:
        show.done()
    flows = table.flow_count()
    dns = len(table.dns)
    sources = tuple(sorted({os.path.basename(info.path) for info in infos}))
    skipped = dict(sorted(table.skipped.items()))
    header = make_header(sources, packets, skipped, flows, dns)
    return table, IngestStats(packets, skipped, flows, dns, sources, tuple(warnings), None,
                              header)


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

    def for_file(self, info: CaptureInfo, table: FlowTable) -> Any:
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
