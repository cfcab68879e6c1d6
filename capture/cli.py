"""``python -m capture``: ``ingest CAPTURE... -o flows.jsonl``, ``merge FLOWFILE... -o out`` and
``capture --iface IFACE... [--filter BPF] -o DIR`` (the live agent, ``capture.agent``).

A ``CaptureError`` (missing file, not a capture, unreadable flow file, no such interface, no
privilege to capture) is one line on standard error and exit status 2, never a traceback.
Warnings about damaged captures go to standard error and do not change the exit status. The
agent logs its flushes to standard error and exits 0 after its final flush on SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from capture import __version__
from capture.errors import CaptureError
from capture.flowfile import merge_flow_files
from capture.ingest import ingest, read_counts

if TYPE_CHECKING:
    from capture.agent import AgentStats

EXIT_ERROR = 2


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _size(text: str) -> int:
    from capture.retention import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _age(text: str) -> float:
    from capture.retention import parse_age

    try:
        return parse_age(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (1-65535): {text!r}")
    return value


def add_capture_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the live agent (``capture``), for this CLI and ``segmenter capture``;
    ``run_capture(args)`` runs it."""
    from capture.agent import FLUSH_INTERVAL, MAX_FLOWS

    parser.add_argument("-i", "--iface", required=True, action="append", metavar="IFACE",
                        help="interface to capture on: a name (eth0), 'any' (every interface"
                             " of the node), or a pattern followed as pods come and go"
                             " ('cali*'); repeatable (docs/capture-agent.md: which per CNI)")
    parser.add_argument("-f", "--filter", default=None, metavar="BPF",
                        help="capture filter, tcpdump syntax (needs libpcap); with 'any' or"
                             " patterns it sees packets from their IP header")
    parser.add_argument("-o", "--output-dir", required=True, metavar="DIR",
                        help="directory for the flow files (created if missing)")
    parser.add_argument("--flush-interval", type=_positive, default=FLUSH_INTERVAL,
                        metavar="SECONDS",
                        help=f"seconds between flow files (default {FLUSH_INTERVAL:g})")
    parser.add_argument("--max-flows", type=_count, default=MAX_FLOWS, metavar="N",
                        help="flows tracked at once; beyond, the least recently seen is"
                             f" evicted into the next file (default {MAX_FLOWS})")
    parser.add_argument("--duration", type=_positive, default=None, metavar="SECONDS",
                        help="stop after this long (default: until SIGTERM / SIGINT)")
    parser.add_argument("--host", default=None, metavar="NAME",
                        help="agent name in file names (default: $SEGMENTER_AGENT_HOST or"
                             " the host name)")
    parser.add_argument("--no-promisc", action="store_true",
                        help="do not put the interface in promiscuous mode (one named"
                             " interface; 'any' and patterns never set it)")
    parser.add_argument("--max-bytes", type=_size, default=None, metavar="SIZE",
                        help="delete the oldest flow files beyond this total (500Mi, 2Gi;"
                             " default: no bound)")
    parser.add_argument("--max-age", type=_age, default=None, metavar="AGE",
                        help="delete flow files older than this (12h, 7d; default: none)")
    parser.add_argument("--serve", type=_port, default=None, metavar="PORT",
                        help="serve the finished flow files read-only over HTTP on this port"
                             " (for segmenter collect, through the API server's pod proxy)")
    parser.add_argument("--serve-address", default="", metavar="ADDR",
                        help="address to serve on (default: every address)")
    parser.add_argument("--serve-allow", action="append", default=[], metavar="CIDR",
                        help="only these client addresses may read the files (repeatable;"
                             " default: any)")


def run_capture(args: argparse.Namespace) -> AgentStats:
    """Run the live agent with the options of ``add_capture_arguments``."""
    from capture.agent import run_agent
    from capture.retention import Retention

    return run_agent(args.iface, args.output_dir, bpf=args.filter,
                     flush_interval=args.flush_interval, max_flows=args.max_flows,
                     duration=args.duration, host=args.host, promisc=not args.no_promisc,
                     retention=Retention(args.max_bytes, args.max_age), serve=args.serve,
                     serve_address=args.serve_address, serve_allow=args.serve_allow)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m capture",
        description="Turn packet captures (pcap / pcapng) and flow logs (Hubble, Calico, cloud"
                    " VPC, Zeek) into a segmenter flow file.",
    )
    parser.add_argument("--version", action="version",
                        version=f"segmenter-capture {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_ingest = sub.add_parser("ingest", help="read captures and flow logs, write one flow file")
    p_ingest.add_argument("captures", nargs="+", metavar="CAPTURE",
                          help="pcap or pcapng files, flow files, flow logs of a format"
                               " `capture.sources` reads, or folders of them (optionally"
                               " compressed: gzip, zstd, xz, bzip2); /dev/stdin or a FIFO for a"
                               " pipe")
    p_ingest.add_argument("-o", "--output", default="-",
                          help="flow file to write (default: standard output)")
    p_ingest.add_argument("--no-progress", action="store_true",
                          help="no progress line even on a terminal")
    p_ingest.add_argument("--scapy-reader", action="store_true",
                          help="read captures with scapy's readers and the general decoder (the"
                               " slower reference path)")
    p_merge = sub.add_parser("merge", help="merge flow files into one")
    p_merge.add_argument("flowfiles", nargs="+", metavar="FLOWFILE")
    p_merge.add_argument("-o", "--output", default="-",
                         help="flow file to write (default: standard output)")
    p_capture = sub.add_parser(
        "capture", help="live agent: capture on an interface, write flow files periodically")
    add_capture_arguments(p_capture)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    logger = logging.getLogger("capture")
    saved = (logger.level, logger.propagate)
    if args.command == "capture":  # a long-running agent: its log is its record
        handler.setFormatter(logging.Formatter("%(asctime)s capture %(levelname)s: %(message)s"))
        logger.setLevel(logging.INFO)
    else:
        handler.setFormatter(logging.Formatter("warning: %(message)s"))
        logger.setLevel(logging.WARNING)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        if args.command == "capture":
            run_capture(args)
        elif args.command == "ingest":
            stats = ingest(args.captures, args.output, progress=not args.no_progress,
                           fast=not args.scapy_reader)
            if sys.stderr.isatty():
                reasons = ", ".join(f"{k} {v}" for k, v in sorted(stats.skipped.items()))
                sys.stderr.write(
                    f"{read_counts(stats.packets, stats.records)} read from"
                    f" {len(stats.sources)} input(s), {stats.skipped_total} skipped"
                    + (f" ({reasons})" if reasons else "")
                    + f", {stats.flows} flows and {stats.dns} DNS answers written\n"
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
