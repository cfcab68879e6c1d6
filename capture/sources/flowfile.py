"""Flow files (``flows.jsonl``, docs/flow-format.md): the capture agent's output, or an earlier
``ingest``. Their records are connections already; they are kept as they are.

Followed by parts: the header is the first line. Whether a record's ``tls: false`` means
plaintext depends on where the record came from (its ``sources``), not on this format."""

from __future__ import annotations

import io

from capture.flowfile import FORMAT, header_interfaces, loads, read_flow_file
from capture.sources.base import Opened, ReadOptions, Sink, SourceFormat, stat_counts

# A first line that names the format is a flow file even when it is not valid JSON (an integer
# too long to parse, nesting too deep): the reader then says what is wrong with it, rather
# than "not a format read".
_FORMAT_VALUE = b'"' + FORMAT.encode() + b'"'


def _sniff(head: bytes) -> bool:
    first = head.split(b"\n", 1)[0].strip()
    if not first.startswith(b"{"):
        return False
    try:
        header = loads(first.decode("utf-8"))
    except UnicodeDecodeError:
        return False
    except ValueError:
        return b'"format"' in first and _FORMAT_VALUE in first
    return isinstance(header, dict) and header.get("format") == FORMAT


def _header(head: bytes) -> int | None:
    end = head.find(b"\n")
    return end + 1 if end >= 0 else None


def _read(opened: Opened, sink: Sink, options: ReadOptions) -> None:
    with io.BufferedReader(opened.open()) as stream:
        flow_file = read_flow_file(opened.path, stream)
    packets, skipped = stat_counts(flow_file.header)
    sink.packets += packets
    sink.skipped.update(skipped)
    for source, names in header_interfaces(flow_file.header).items():
        sink.interfaces.setdefault(source, set()).update(names)
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
