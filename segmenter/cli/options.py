"""Options several commands share, declared once."""

from __future__ import annotations

import argparse
import textwrap

from segmenter.analysis.findings import DEFAULT_FAIL_ON, Severity
from segmenter.targets import TARGETS, target_names

AUTO = "auto"


def owned_kinds_text() -> str:
    """The targets whose objects tell their enforcement, as people call them (the registry's
    titles, the first target's NetworkPolicy aside: every target enforces it)."""
    return ", ".join(t.title for t in list(TARGETS.values())[1:])


ENFORCEMENT_HELP = (
    "whose enforcement judges the policies: default, the target the documents are written for "
    f"({owned_kinds_text()} objects); Kubernetes NetworkPolicies alone need it "
    "named{cluster}; an override that disagrees with the documents is an error")


def paragraphs(text: str, width: int = 92) -> str:
    """A command's description, each blank-line separated paragraph filled to ``width`` (for
    ``RawDescriptionHelpFormatter``, which keeps the paragraphs apart)."""
    return "\n\n".join(textwrap.fill(" ".join(p.split()), width, break_on_hyphens=False)
                       for p in text.strip().split("\n\n"))


def cluster(parser: argparse.ArgumentParser, when: str = "") -> None:
    """``--context`` and ``--kubeconfig``; ``when`` says with which option they apply."""
    suffix = f" (with {when})" if when else ""
    parser.add_argument("--context", help=f"kubeconfig context{suffix}")
    parser.add_argument("--kubeconfig", help=f"kubeconfig file{suffix}")


def enforcement(parser: argparse.ArgumentParser, *, detects_cluster: bool = False) -> None:
    """``--enforcement TARGET``: whose enforcement judges the policies (the registry's names).
    Omitted (or ``auto``): from the documents, or for Kubernetes NetworkPolicies alone from the
    cluster they were read from (:func:`segmenter.analysis.enforcement.resolve_enforcement`)."""
    where = " or detected from the cluster with --cluster" if detects_cluster else ""
    parser.add_argument("--enforcement", choices=[*target_names(), AUTO], default=None,
                        metavar="{" + ",".join(target_names()) + "}",
                        help=ENFORCEMENT_HELP.format(cluster=where))


def named_enforcement(args: argparse.Namespace) -> str | None:
    """The enforcement the user named, None when left to the documents."""
    value = getattr(args, "enforcement", None)
    return None if value in (None, AUTO) else str(value)


def fail_on(parser: argparse.ArgumentParser) -> None:
    """``--fail-on SEVERITY``: the least severe finding that makes the command exit 1."""
    parser.add_argument(
        "--fail-on", type=Severity, choices=list(Severity), default=DEFAULT_FAIL_ON,
        metavar="{" + ",".join(s.value for s in Severity) + "}",
        help="exit 1 when a finding is this severe or worse (default: %(default)s: an observed "
             "flow denied, a restricted workload not isolated or reachable beyond the plan)")


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
