"""The ``segmenter`` command: thin commands over :mod:`segmenter.pipeline`; nothing imports it.

Every stage is a subcommand that reads and writes files, so stages compose in shell, CI and
notebooks; ``segmenter run`` chains them. User errors print one line and exit 2; a gate that
finds what it checks for (findings at or above ``--fail-on``, a difference) exits 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from segmenter.cli import checks, collect, deploy, monitor, stages, verify
from segmenter.cli.common import EXIT_ERROR
from segmenter.errors import SegmenterError

COMMAND_GROUPS = (stages, verify, checks, deploy, collect, monitor)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segmenter",
        description="Plan Kubernetes micro-segmentation from observed traffic: zones around "
                    "sensitive data stores, compiled to each target's policies (Kubernetes "
                    "NetworkPolicy, Calico v3, ...).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="print the version and the commit it was built from, and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


class _Version(argparse.Action):
    """``--version``: looked up only when asked (it may run git)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        from segmenter.version import build_info

        print(f"segmenter {build_info().describe()}")
        parser.exit()


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"segmenter: {record.levelname.lower()}: {record.getMessage()}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    given = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(given)
    args.command_line = ("segmenter", *given)  # as typed: the report states it
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    for name in ("segmenter", "capture"):
        log = logging.getLogger(name)
        log.handlers[:] = [handler]
        log.setLevel(logging.INFO if args.verbose else logging.WARNING)
        log.propagate = False
    try:
        return int(args.func(args))
    except SegmenterError as exc:
        print(f"segmenter: error: {exc.one_line()}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("segmenter: interrupted", file=sys.stderr)
        return 130


__all__ = ["build_parser", "main"]
