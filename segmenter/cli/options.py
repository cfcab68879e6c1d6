"""Options several commands share, declared once."""

from __future__ import annotations

import argparse

from segmenter.targets import TARGETS, target_names

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
    """``--dialect TARGET`` (repeatable) or ``--dialect auto``: which targets to write (default
    every one); ``--detect-from-cluster`` with the cluster options; each target's writer
    options as ``--<target>-<option>`` flags (from the registry)."""
    parser.add_argument("--dialect", action="append", choices=[*target_names(), AUTO],
                        help="target to write (repeatable; default: every target: "
                             f"{', '.join(target_names())}); auto: the targets the cluster "
                             "enforces, from the policy engines in the inventory")
    parser.add_argument("--detect-from-cluster", action="store_true",
                        help="with --dialect auto: also ask the cluster (--context, "
                             "--kubeconfig) which policy API groups it serves")
    cluster(parser, "--detect-from-cluster")
    for target in TARGETS.values():
        for option in target.options:
            parser.add_argument(option.flag(target.name), action="store_true", default=None,
                                dest=option.dest(target.name),
                                help=f"{target.name}: {option.help} (also segmenter.yaml "
                                     f"compile.targets.{target.name}.{option.name})")


def target_flags(args: argparse.Namespace) -> dict[str, dict[str, bool]]:
    """The writer options set on the command line, by target name."""
    out: dict[str, dict[str, bool]] = {}
    for target in TARGETS.values():
        for option in target.options:
            value = getattr(args, option.dest(target.name), None)
            if value is not None:
                out.setdefault(target.name, {})[option.name] = bool(value)
    return out


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
