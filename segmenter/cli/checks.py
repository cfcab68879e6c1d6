"""The checks a pipeline or a cron job gates on besides ``verify`` (``segmenter.cli.verify``):
diff, report; and reading the policies in force (live-policies)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import Any, Final

from segmenter import pipeline
from segmenter.analysis.diff.semantic import DEFAULT_MAX_WORKLOADS
from segmenter.analysis.enforcement import check_one_target, check_some_side
from segmenter.analysis.findings import exit_status, failing
from segmenter.analysis.policies import PolicyDocs
from segmenter.cli import options
from segmenter.cli.common import EXIT_DENIED, EXIT_OK
from segmenter.errors import InputError
from segmenter.model import Flow
from segmenter.targets import get_target

CLUSTER: Final = "<cluster>"  # the --cluster side of a diff

DIFF_DESCRIPTION = """\
Structural and semantic diff of two policy sets (folders/files of YAML, or --cluster for the
policies in force). With --inventory, the connections that change verdict: between every pair
of workloads, and between every workload and the nodes, the API server and external addresses
(the ones the flows show, addresses inside and just outside every CIDR either side names, and
the internet, IPv4 and IPv6), both directions; with --flows, the observed flows that change
verdict. Both sides are judged under the enforcement their documents are written for
(Kubernetes NetworkPolicies alone need --enforcement, or --cluster); one side may be empty.

Exit status (like diff(1)): 0 no difference, 1 differences, 2 bad input."""

REPORT_DESCRIPTION = """\
Provenance (version and commit, UTC time, command line, SHA-256 of every input and output),
scope statement and scope advice, data-flow diagram, coverage and learning, allowed-flow
register with the justifications of segmenter.yaml, encryption in transit, default deny,
isolation of the in-scope workloads, segmentation test (TCP and UDP, in and out), the policy
engine and who may change the policies, the PCI DSS / HIPAA mapping, and the policy text, from
a graph, a plan and one target's compiled policies (several targets' folders together are
refused) or the policies in force (--cluster). Markdown, self-contained HTML and, with --pdf,
PDF. The policies are judged under the enforcement their documents are written for;
Kubernetes NetworkPolicies alone need --enforcement (or --cluster).

Findings and their severities: unisolated (restricted: critical, connected: medium),
over-permissive (high / medium), unchecked (high / medium), denied-flow (high), segmentation
(high), not-enforced (high), no-default-deny (medium), invalid-policy (medium), unjustified
(medium), still-learning (medium), enforcement-unverified (medium), plaintext (low),
processor-candidate (low), node-path (low).

Exit status: 0 nothing at or above --fail-on; 1 findings at or above --fail-on (default high);
2 bad input. The report is written in every case but bad input."""


class _Sides(argparse.Action):
    """Collects OLD/NEW positionals and ``--cluster`` in command-line order."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        sides = list(getattr(namespace, self.dest, None) or [])
        if option_string is not None:
            sides.append(CLUSTER)
        else:
            sides.extend(values or [])
        setattr(namespace, self.dest, sides)


def _side(spec: str, args: argparse.Namespace) -> PolicyDocs:
    if spec == CLUSTER:
        named = options.named_enforcement(args)
        return pipeline.policies_to_judge(cluster=True, context=args.context,
                                          kubeconfig=args.kubeconfig,
                                          target=get_target(named) if named else None)
    if not os.path.exists(spec):
        raise InputError("no such file or directory", path=spec)
    docs = pipeline.policies_to_judge([spec])
    return dataclasses.replace(docs, label=spec)


def _policy_only(docs: PolicyDocs, notes: list[str]) -> PolicyDocs:
    from segmenter.targets import kind_of

    kept = tuple(d for d in docs.manifests if kind_of(d) is not None)
    if len(kept) < len(docs.manifests):
        notes.append(f"{docs.label}: {len(docs.manifests) - len(kept)} object(s) of kinds the "
                     "cluster side does not read left out of the comparison")
    return dataclasses.replace(docs, manifests=kept)


def cmd_diff(args: argparse.Namespace) -> int:
    from segmenter.analysis.diff.structural import overlay
    from segmenter.analysis.diff.text import to_json, to_text

    sides: list[str] = list(args.sides or [])
    if len(sides) != 2:
        raise InputError("diff needs two sides: OLD NEW (either may be --cluster)")
    if sides == [CLUSTER, CLUSTER]:
        raise InputError("only one side can be --cluster")
    if args.flows and not args.inventory:
        raise InputError("--flows needs --inventory to resolve flow addresses to workloads")
    old, new = _side(sides[0], args), _side(sides[1], args)
    notes: list[str] = [*old.notes, *new.notes]
    notes.extend(f"{side.label}: left out (invalid): {r}" for side in (old, new)
                 for r in side.rejected)
    if CLUSTER in sides:
        if sides[0] == CLUSTER:
            new = _policy_only(new, notes)
        else:
            old = _policy_only(old, notes)
    if sides[0] == CLUSTER and not args.no_overlay:
        new = dataclasses.replace(new, manifests=tuple(overlay(old.manifests, new.manifests)),
                                  label=f"{new.label} applied over the cluster")
    inventory = pipeline.read_inventory(args.inventory) if args.inventory else None
    flows: Sequence[Flow] = pipeline.read_traffic(args.flows).flows if args.flows else ()
    target = None
    if inventory is not None:
        # The semantic diff judges both sides under one enforcement: the sides' documents', the
        # one named, or the cluster's; one side may be empty (no policies yet).
        enforcement = pipeline.enforcement_for([old, new], options.named_enforcement(args),
                                               sides=True)
        notes.append(f"connections judged under {enforcement.name} enforcement "
                     f"({enforcement.why})")
        target = enforcement.target
    else:
        check_some_side([old, new])
    structural, semantic = pipeline.diff(old, new, inventory=inventory, flows=flows,
                                         target=target, max_workloads=args.max_workloads)
    structural = dataclasses.replace(structural, notes=(*notes, *structural.notes))
    if args.format == "json":
        sys.stdout.write(to_json(structural, semantic, old_label=old.label,
                                 new_label=new.label))
    else:
        colour = args.color == "always" or (
            args.color == "auto" and sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
        sys.stdout.write(to_text(structural, semantic, colour=colour, old_label=old.label,
                                 new_label=new.label))
    changed = structural.has_changes or bool(semantic and semantic.has_changes)
    return EXIT_DENIED if changed else EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from segmenter.fileio import check_output_folder
    from segmenter.graph.io import load_graph
    from segmenter.planner import load_plan
    from segmenter.views.report.appendix import policies_text
    from segmenter.views.report.build import build_report, report_file, write_report
    from segmenter.views.report.provenance import provenance, text_input

    if args.policies and args.cluster:
        raise InputError("give --policies or --cluster, not both")
    if not args.policies and not args.cluster:
        raise InputError("give --policies DIR (one target's folder) or --cluster")
    if args.pdf is not None:
        from segmenter.views.report.pdf import INSTALL_HINT, PdfError, available_renderer

        if available_renderer(args.pdf) is None:  # before the work, not after it
            wanted = "a PDF renderer" if args.pdf == "auto" else args.pdf
            raise PdfError(f"--pdf needs {wanted}: {INSTALL_HINT}")
    check_output_folder(args.output, owned=report_file)  # before the long part
    graph = load_graph(args.graph)
    plan = load_plan(args.plan, graph=graph)
    config = pipeline.read_config(args.config) if args.config else None
    inventory = pipeline.read_inventory(args.inventory) if args.inventory else None
    traffic, parts = pipeline.read_traffic_files(args.flows) if args.flows else (None, [])
    sources: dict[str, list[str]] = {"graph": [args.graph], "plan": [args.plan]}
    for role, given in (("policies", args.policies), ("flows", args.flows),
                        ("inventory", args.inventory), ("config", [args.config] if args.config
                                                         else None)):
        if given:
            sources[role] = list(given)
    named = options.named_enforcement(args)
    extra = []
    cluster = None
    policies: Any
    if args.cluster:
        policies = pipeline.policies_to_judge(cluster=True, context=args.context,
                                              kubeconfig=args.kubeconfig,
                                              target=get_target(named) if named else None)
        cluster = pipeline.cluster_facts(context=args.context, kubeconfig=args.kubeconfig)
        # The policies in force are digested as the appendix prints them.
        extra.append(text_input("policies", policies.label, policies_text(policies.manifests)))
    else:
        # One target's evidence: the folders run writes are alternatives, never deployed
        # together.
        check_one_target([pipeline.policies_to_judge([p]) for p in args.policies], "report")
        policies = list(args.policies)
    prov = provenance(command=getattr(args, "command_line", ()), inputs=sources,
                      generated_at=args.generated_at, extra=extra)
    report = build_report(graph, plan, policies,
                          flows=traffic.flows if traffic else None,
                          dns=traffic.dns if traffic else (), inventory=inventory,
                          enforcement=named, title=args.title or "", provenance_of=prov,
                          traffic_files=parts, config=config, cluster=cluster)
    written = write_report(report, args.output, pdf=args.pdf)
    reports = ", ".join(str(path) for name, path in sorted(written.items())
                        if name.startswith("report."))
    print(f"wrote {reports} and {written['SHA256SUMS']} ({report.enforcement} enforcement)")
    above = failing(report.findings, args.fail_on)
    for finding in sorted(set(report.findings)):
        print(f"finding: {finding.line()}")
    print(f"findings: {len(set(report.findings))}, {len(above)} at or above --fail-on "
          f"{args.fail_on}")
    return exit_status(report.findings, args.fail_on)


def cmd_live_policies(args: argparse.Namespace) -> int:
    from segmenter.analysis.diff.normalize import normalize
    from segmenter.cluster.policies import read_live_policies
    from segmenter.fileio import atomic_write_text
    from segmenter.render import sorted_yaml
    from segmenter.targets import all_kinds

    kinds = get_target("kubernetes").kinds if args.no_calico else all_kinds()
    result = read_live_policies(kinds, context=args.context, kubeconfig=args.kubeconfig)
    manifests = result.manifests if args.raw else [normalize(m) for m in result.manifests]
    atomic_write_text(args.output, sorted_yaml(manifests))
    for note in result.notes:
        print(f"note: {note}")
    print(f"wrote {args.output}: {len(manifests)} policy objects from {result.host}")
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser(
        "diff", help="compare two policy sets: objects and connections that change",
        description=options.paragraphs(DIFF_DESCRIPTION),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sides", nargs="*", action=_Sides, metavar="OLD NEW",
                   help="YAML files or folders; put --cluster in the place of one of them")
    p.add_argument("--cluster", dest="sides", nargs=0, action=_Sides,
                   help="the live cluster's policies as this side (in OLD/NEW order)")
    options.cluster(p, "--cluster")
    p.add_argument("--no-overlay", action="store_true",
                   help="with --cluster as OLD: compare NEW alone, not NEW applied over the "
                        "cluster")
    p.add_argument("--flows", action="append", default=[], metavar="FLOWS",
                   help="flow file(s) to replay against both sides (repeatable)")
    p.add_argument("--inventory", action="append", default=[], metavar="DUMP",
                   help="inventory dump(s) for the semantic diff (repeatable)")
    options.enforcement(p, detects_cluster=True)
    options.max_workloads(p, default=DEFAULT_MAX_WORKLOADS,
                          help_text="cap on workloads probed pairwise (default %(default)s)")
    options.output_format(p)
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                   help="colour in text output (auto: only on a terminal)")
    p.set_defaults(func=cmd_diff, sides=[])

    p = sub.add_parser(
        "report", help="compliance evidence report (Markdown and self-contained HTML); exit 1 "
                       "on findings",
        description=options.paragraphs(REPORT_DESCRIPTION),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--graph", required=True, help="graph.json")
    p.add_argument("--plan", required=True, help="plan.json")
    p.add_argument("--policies", nargs="+", metavar="DIR",
                   help="compiled policy folders or files (one target)")
    p.add_argument("--cluster", action="store_true",
                   help="the policies in force in the cluster, with its policy API groups and "
                        "who may change the policies (read-only: docs/rbac-report.yaml)")
    options.cluster(p, "--cluster")
    p.add_argument("--flows", nargs="+", help="flow files: replay every observed flow and say "
                                              "what each covers")
    p.add_argument("--inventory", nargs="+", metavar="DUMP",
                   help="kubectl dump or inventory JSON: real pods, namespace labels, the CNI")
    p.add_argument("--config", metavar="FILE",
                   help="segmenter.yaml: its justifications register fills the allowed-flow "
                        "register")
    options.enforcement(p, detects_cluster=True)
    options.fail_on(p)
    p.add_argument("--title", help="report title")
    p.add_argument("--generated-at", metavar="TIME",
                   help="the generation time to state, ISO 8601 (2026-01-31 or "
                        "2026-01-31T09:30:00Z), for reproducible output (default: now, or "
                        "$SOURCE_DATE_EPOCH)")
    p.add_argument("--pdf", nargs="?", const="auto", choices=["auto", "chromium", "weasyprint"],
                   help="also write report.pdf (auto: headless Chromium, else WeasyPrint; "
                        "exit 2 when neither is installed)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "live-policies", help="save the policies in force in the cluster as YAML",
        description="Read every target's policy objects (NetworkPolicies, Calico "
                    "projectcalico.org/v3 ...) from the cluster and write them as one "
                    "multi-document YAML file, with the fields the server adds removed "
                    "(unless --raw).")
    p.add_argument("-o", "--output", required=True, help="YAML file to write")
    options.cluster(p)
    p.add_argument("--raw", action="store_true",
                   help="keep server fields (uid, resourceVersion, managedFields, status...)")
    p.add_argument("--no-calico", action="store_true", help="read Kubernetes policies only")
    p.set_defaults(func=cmd_live_policies)


__all__ = ["CLUSTER", "register"]
