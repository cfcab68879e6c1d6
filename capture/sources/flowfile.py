"""Flow files (``flows.jsonl``, docs/flow-format.md): the capture agent's output, or an earlier
``ingest``. Their records are connections already; they are kept as they are.

Followed by parts: the header is the first line. Whether a record's ``tls: false`` means
plaintext depends on where the record came from (its ``sources``), not on this format."""

from __future__ import annotations

import json

from capture.errors import CaptureError
from capture.flowfile import FORMAT, parse_flow_lines, read_flow_file
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


def _header(head: bytes) -> int | None:
    end = head.find(b"\n")
    return end + 1 if end >= 0 else None


def _read(opened: Opened, sink: Sink, options: ReadOptions) -> None:
    if opened.data is None:
        flow_file = read_flow_file(opened.path)
    else:
        try:
            text = opened.data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CaptureError("not a flow file (not UTF-8 text)", path=opened.path) from exc
        flow_file = parse_flow_lines(text.splitlines(), opened.path)
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
    header=_header,
)
