"""Packet captures: classic pcap and pcapng, compressed or not, files or pipes
(``capture.readers``, ``capture.stream``)."""

from __future__ import annotations

import os

from capture.errors import CaptureError
from capture.readers import PCAP_MAGICS, PCAPNG_MAGIC, first_timestamp, open_capture, read_capture
from capture.sources.base import Opened, ReadOptions, Sink, SourceFormat


def _read(opened: Opened, sink: Sink, options: ReadOptions) -> None:
    info = open_capture(opened)
    names: list[str] = []
    packets, damage = read_capture(info, sink.table, fast=options.fast,
                                   progress=options.progress, interfaces=names)
    sink.packets += packets
    if names:
        sink.interfaces.setdefault(os.path.basename(opened.path), set()).update(names)
    if damage is not None:
        # tshark: "The file ... appears to have been cut short in the middle of a packet".
        sink.warnings.append(str(CaptureError(damage, path=opened.path, record=packets + 1))
                             + f"; using the {packets} packets before it")


def _first_time(opened: Opened) -> int | None:
    return first_timestamp(open_capture(opened))


PCAP = SourceFormat(
    name="pcap",
    title="pcap capture",
    sniff=lambda head: head[:4] in PCAP_MAGICS,
    read=_read,
    first_time=_first_time,
    packets=True,
    knows_tls=True,
)

PCAPNG = SourceFormat(
    name="pcapng",
    title="pcapng capture",
    sniff=lambda head: head[:4] == PCAPNG_MAGIC,
    read=_read,
    first_time=_first_time,
    packets=True,
    knows_tls=True,
)
