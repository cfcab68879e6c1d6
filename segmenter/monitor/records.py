"""What the follower hands over: records read from one file in one poll, and reading a format
into records."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from capture.sources import Opened, ReadOptions, Sink, SourceFormat
from capture.sources.base import Record

logger = logging.getLogger(__name__)

STDIN = "-"


@dataclass
class Chunk:
    """Records read from one file in one poll, in file order."""

    source: str  # the SOURCE argument (a file, a folder, ``-``): the metrics' label
    path: str  # the file they came from
    format: SourceFormat
    records: list[Record]
    snapshot: bool = False  # a capture agent's snapshot of active flows (replaced each flush)
    origin: str = ""  # who wrote it: a flow file's header ``sources`` (agent and interface)


def sink_records(sink: Sink) -> list[Record]:
    """Every record a read put into ``sink``: the flow table's (captures), then the record
    sources'."""
    table = sink.table
    out: list[Record] = [table.flow_record(state) for _key, state in table.flow_items()]
    out.extend(table.dns_record(item) for _key, item in table.dns_items())
    out.extend(sink.records)
    return out


def read_format(fmt: SourceFormat, opened: Opened) -> list[Record]:
    sink = Sink()
    fmt.read(opened, sink, ReadOptions())
    for warning in sink.warnings:
        logger.warning("%s", warning)
    return sink_records(sink)


