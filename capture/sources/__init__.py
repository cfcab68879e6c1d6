"""Every traffic source ``ingest`` reads, registered here and nowhere else.

To add a source: write ``capture/sources/<name>.py`` with a :class:`SourceFormat` (see
:mod:`capture.sources.base`) and add it to ``SOURCES``. Formats are asked in this order, so a
format whose sniffer is more specific comes before a more general one.
"""

from __future__ import annotations

from capture.errors import CaptureError
from capture.sources.aws_vpc import AWS_VPC
from capture.sources.azure_flow import AZURE_FLOW
from capture.sources.base import Opened, ReadOptions, Sink, SourceFormat, open_head
from capture.sources.calico import CALICO
from capture.sources.flowfile import FLOWS
from capture.sources.gcp_vpc import GCP_VPC
from capture.sources.goldmane import GOLDMANE
from capture.sources.hubble import HUBBLE
from capture.sources.pcap import PCAP, PCAPNG
from capture.sources.zeek import ZEEK

# JSON formats with a distinctive shape before the generic text ones; AWS last: its sniffer
# takes any text whose first line looks like a flow-log record.
SOURCES: tuple[SourceFormat, ...] = (PCAP, PCAPNG, FLOWS, HUBBLE, CALICO, GOLDMANE, ZEEK, GCP_VPC,
                                     AZURE_FLOW, AWS_VPC)


def source_names() -> str:
    """The formats read, for messages: ``pcap, pcapng, ...``."""
    return ", ".join(s.name for s in SOURCES)


def detect(path: str) -> tuple[Opened, SourceFormat]:
    """The format of ``path``, by content; ``CaptureError`` naming it and the formats read when
    it is none of them."""
    opened = open_head(path)
    for source in SOURCES:
        if source.sniff(opened.head):
            return opened, source
    shown = opened.head[:4].hex()
    raise CaptureError(f"not a pcap or pcapng capture, nor traffic records of another format "
                       f"segmenter reads (starts with 0x{shown}; formats read: "
                       f"{source_names()})", path=path)


__all__ = ["SOURCES", "Opened", "ReadOptions", "Sink", "SourceFormat", "detect", "source_names"]
