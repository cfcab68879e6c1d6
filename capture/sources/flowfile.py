"""Flow files (``flows.jsonl``, docs/flow-format.md): the capture agent's output, or an earlier
``ingest``. Their records are connections already; they are kept as they are."""

from __future__ import annotations

import json

from capture.flowfile import FORMAT, read_flow_file
from capture.sources.base import Opened, ReadOptions, Sink, SourceFormat, stat_counts


def _sniff(head: bytes) -> bool:
    first = head.split(b"\n", 1)[0].strip()
    if not first.startswith(b"{"):
        return False
    try:
        header = json.loads(first)
    except ValueError:
        return False
    return isinstance(header, dict) and header.get("format") == FORMAT


def _read(opened: Opened, sink: Sink, options: ReadOptions) -> None:
    flow_file = read_flow_file(opened.path)
    packets, skipped = stat_counts(flow_file.header)
    sink.packets += packets
    sink.skipped.update(skipped)
    for record in flow_file.records:
        sink.input_records += 1
        sink.add_record(record)


FLOWS = SourceFormat(
    name="flows",
    title="segmenter flow file",
    sniff=_sniff,
    read=_read,
)
