"""Options several commands share, declared once."""

from __future__ import annotations

import argparse

from segmenter.targets import target_names

AUTO = "auto"


def cluster(parser: argparse.ArgumentParser, when: str = "") -> None:
    """``--context`` and ``--kubeconfig``; ``when`` says with which option they apply."""
    suffix = f" (with {when})" if when else ""
    parser.add_argument("--context", help=f"kubeconfig context{suffix}")
    parser.add_argument("--kubeconfig", help=f"kubeconfig file{suffix}")


def enforcement(parser: argparse.ArgumentParser, *, default: str, help_text: str = "") -> None:
    """``--enforcement TARGET``: whose enforcement judges the policies (the registry's names;
    ``auto`` where the default is to detect it)."""
    choices = [*target_names(), *([AUTO] if default == AUTO else [])]
    parser.add_argument("--enforcement", choices=choices, default=default,
                        help=help_text or f"default: {default}")


def targets(parser: argparse.ArgumentParser) -> None:
    """``--dialect TARGET`` (repeatable): which targets to write; default every one."""
    parser.add_argument("--dialect", action="append", choices=list(target_names()),
                        help="target to write (repeatable; default: every target: "
                             f"{', '.join(target_names())})")


def sensitive(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sensitive", action="append", default=[],
                        metavar="CLASS=NAMESPACE/LABEL=VALUE",
                        help="declare sensitive pods, e.g. pci=payments/app=card-vault")


def compile_modes(parser: argparse.ArgumentParser) -> None:
    """``--best-effort`` and ``--staged``."""
    parser.add_argument("--best-effort", action="store_true",
                        help="emit what the dialect can express and list what was dropped")
    parser.add_argument("--staged", action="store_true",
                        help="Calico staged policies (audit only)")


def output_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["text", "json"], default="text")


def max_workloads(parser: argparse.ArgumentParser, *, default: int, help_text: str) -> None:
    parser.add_argument("--max-workloads", type=int, default=default, help=help_text)
