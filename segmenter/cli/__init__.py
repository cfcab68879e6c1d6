"""The ``segmenter`` command: thin commands over :mod:`segmenter.pipeline`; nothing imports it.

Every stage is a subcommand that reads and writes files, so stages compose in shell, CI and
notebooks; ``segmenter run`` chains them. User errors print one line and exit 2; a gate that
finds what it checks for (findings at or above ``--fail-on``, a difference) exits 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from segmenter.cli import checks, collect, deploy, monitor, stages, verify
from segmenter.cli.common import EXIT_ERROR
from segmenter.errors import SegmenterError

COMMAND_GROUPS = (stages, verify, checks, deploy, collect, monitor)
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as the shell reports a command the signal ended


class _Parser(argparse.ArgumentParser):
    """Bad arguments are bad input like any other: one line on stderr, exit 2 (the usage is one
    ``-h`` away). Subcommand parsers are of the same class."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("segmenter").strip()
        where = f"{command}: " if command else ""
        self.exit(EXIT_ERROR, f"segmenter: error: {where}{message} (see {self.prog} -h)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="segmenter",
        description="Plan Kubernetes micro-segmentation from observed traffic: zones around "
                    "sensitive data stores, compiled to each target's policies (Kubernetes "
                    "NetworkPolicy, Calico v3, ...).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"segmenter: {record.levelname.lower()}: {record.getMessage()}"


class _HeldWarnings(logging.Handler):
    """Holds warnings until the command ends: they are shown when it went on, and dropped when
    it stops on bad input, whose error must be the last and only line on stderr. Progress
    (info, with -v) goes out at once."""

    def __init__(self, out: logging.Handler):
        super().__init__()
        self.out = out
        self.held: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.held.append(record)
        else:
            self.out.handle(record)

    def show(self) -> None:
        for record in self.held:
            self.out.handle(record)
        self.held.clear()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: logging.Handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    held = _HeldWarnings(handler)
    # Long-running commands (the capture agent, watches) report as they go.
    live = getattr(args, "live_log", False) or getattr(args, "watch", False)
    for name in ("segmenter", "capture"):
        log = logging.getLogger(name)
        log.handlers[:] = [handler if live else held]
        log.setLevel(logging.INFO if args.verbose else logging.WARNING)
        log.propagate = False
    try:
        code = int(args.func(args))
    except SegmenterError as exc:
        held.held.clear()
        print(f"segmenter: error: {exc.one_line()}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        held.show()
        print("segmenter: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of standard output went away (``segmenter ingest -o - | head``): end as
        # a command killed by SIGPIPE does, without a message, and without Python's own
        # complaint when it flushes stdout at exit (docs.python.org, "Note on SIGPIPE").
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except BaseException:
        held.show()  # a bug: everything that led to it
        raise
    held.show()
    return code


__all__ = ["build_parser", "main"]
