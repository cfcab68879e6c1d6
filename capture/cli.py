"""``python -m capture``: ``ingest CAPTURE... -o flows.jsonl`` and ``merge FLOWFILE... -o out``.

A ``CaptureError`` (missing file, not a capture, unreadable flow file) is one line on standard
error and exit status 2, never a traceback. Warnings about damaged captures go to standard error
and do not change the exit status.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from capture import __version__
from capture.errors import CaptureError
from capture.flowfile import merge_flow_files
from capture.ingest import ingest

EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m capture",
        description="Turn packet captures (pcap / pcapng) into a segmenter flow file.",
    )
    parser.add_argument("--version", action="version",
                        version=f"segmenter-capture {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_ingest = sub.add_parser("ingest", help="read captures, write one flow file")
    p_ingest.add_argument("captures", nargs="+", metavar="CAPTURE",
                          help="pcap or pcapng files (optionally gzip-compressed)")
    p_ingest.add_argument("-o", "--output", default="-",
                          help="flow file to write (default: standard output)")
    p_ingest.add_argument("--no-progress", action="store_true",
                          help="no progress line even on a terminal")
    p_ingest.add_argument("--scapy-reader", action="store_true",
                          help="read classic pcap with scapy's RawPcapReader (slower)")
    p_merge = sub.add_parser("merge", help="merge flow files into one")
    p_merge.add_argument("flowfiles", nargs="+", metavar="FLOWFILE")
    p_merge.add_argument("-o", "--output", default="-",
                         help="flow file to write (default: standard output)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    logger = logging.getLogger("capture")
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    try:
        if args.command == "ingest":
            stats = ingest(args.captures, args.output, progress=not args.no_progress,
                           fast=not args.scapy_reader)
            if sys.stderr.isatty():
                skipped = f", {stats.skipped_total} packets skipped" if stats.skipped else ""
                sys.stderr.write(
                    f"{stats.packets} packets from {len(stats.sources)} capture(s):"
                    f" {stats.flows} flows, {stats.dns} DNS answers{skipped}\n"
                )
        else:
            merge_flow_files(args.flowfiles, args.output)
    except CaptureError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except BrokenPipeError:
        return 1
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
    return 0
