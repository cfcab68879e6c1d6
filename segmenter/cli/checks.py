"""The checks a pipeline or a cron job gates on: verify (and --explain), diff, report; and
reading the policies in force (live-policies)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, Final

from segmenter import pipeline
from segmenter.analysis.diff.semantic import DEFAULT_MAX_WORKLOADS
from segmenter.analysis.policies import PolicyDocs
from segmenter.cli import options
from segmenter.cli.common import EXIT_DENIED, EXIT_OK
from segmenter.errors import InputError
from segmenter.model import Flow, Inventory, NodeId, NodeKind, Transport
from segmenter.targets import Target, get_target

CLUSTER: Final = "<cluster>"  # the --cluster side of a diff


def _rejected(docs: PolicyDocs) -> None:
    for problem in docs.rejected:  # a warning: held back if bad input stops the command later
        logging.getLogger("segmenter.cli").warning("rejected %s", problem)


def _parse_port(text: str) -> tuple[Transport, int | None]:
    number, _, proto = text.partition("/")
    if not number.isdigit():
        number, proto = proto, number
    try:
        return Transport.parse(proto or "TCP"), int(number) if number else None
    except ValueError as exc:
        raise InputError(f"bad port {text!r}: expected PORT[/PROTOCOL], e.g. 5432/TCP",
                         record="--explain") from exc


def cmd_verify(args: argparse.Namespace) -> int:
    from segmenter.analysis.verify import EndpointFinder, over_permissiveness
    from segmenter.planner import load_plan

    inventory = pipeline.read_inventory(args.inventory)
    docs = pipeline.policies_to_judge(args.policies or (), cluster=args.cluster,
                                      context=args.context, kubeconfig=args.kubeconfig)
    _rejected(docs)
    target = get_target(args.enforcement)
    if args.explain:
        return _explain(args, inventory, docs, target, EndpointFinder(inventory))
    if not args.flows:
        raise InputError("give --flows FLOWS (or --explain SRC DST PORT)")
    results = pipeline.verify(pipeline.read_traffic(args.flows), inventory, docs, target)
    zone_of: dict[str, str] = {}
    if args.plan:
        result = load_plan(args.plan)
        for scope in result.classes:
            for zone, members in scope.zones:
                for m in members:
                    zone_of.setdefault(m.node, f"{scope.data_class}:{zone}")
    rank = {"restricted": 0, "connected": 1}

    def order(r: Any) -> tuple[int, str, str]:
        zones = [zone_of.get(r.client, ""), zone_of.get(r.server, "")]
        best = min((rank.get(z.split(":")[-1], 9) for z in zones), default=9)
        return (best, r.client, r.server)

    denied = sorted((r for r in results if not r.allowed), key=order)
    groups, capped = over_permissiveness(inventory, docs.manifests, results,
                                         enforcement=target.name, zone_of=zone_of,
                                         max_workloads=args.max_workloads)
    if args.format == "json":
        import json

        print(json.dumps({
            "enforcement": target.name,
            "flows": len(results),
            "denied": [{"client": r.client, "server": r.server,
                        "protocol": str(r.flow.transport), "port": r.port,
                        "client_zone": zone_of.get(r.client), "server_zone": zone_of.get(r.server),
                        "egress": vars(r.verdict.egress), "ingress": vars(r.verdict.ingress)}
                       for r in denied],
            "over_permissiveness": [vars(g) | {"extra": list(g.extra)} for g in groups],
            "capped": capped,
        }, indent=1, sort_keys=True))
        return EXIT_DENIED if denied else EXIT_OK
    for r in denied:
        side = r.verdict.egress if not r.verdict.egress.allowed else r.verdict.ingress
        where = " / ".join(z for z in (zone_of.get(r.client), zone_of.get(r.server)) if z)
        print(f"DENIED {r.client} -> {r.server} {r.flow.transport}/{r.port}"
              f"{f' [{where}]' if where else ''}: {side.policy or '-'} {side.rule or ''} "
              f"({side.reason})")
    print(f"{len(results) - len(denied)} of {len(results)} observed flows allowed under "
          f"{target.name} enforcement; {len(denied)} denied")
    if groups:
        print("over-permissiveness (workload pairs x ports allowed vs observed, by server "
              f"{'zone' if zone_of else 'namespace'}"
              f"{'; capped at ' + str(args.max_workloads) + ' workloads' if capped else ''}):")
        for g in groups:
            ratio = f"{g.allowed / g.observed:.1f}x" if g.observed else "-"
            print(f"  {g.group:<28} allowed {g.allowed:>6}  observed {g.observed:>6}  {ratio}")
            for extra in g.extra[:3]:
                print(f"    allowed, never observed: {extra}")
    return EXIT_DENIED if denied else EXIT_OK


def _explain(args: argparse.Namespace, inventory: Inventory, docs: PolicyDocs, target: Target,
             finder: Any) -> int:
    from segmenter.evaluate import EvalEndpoint

    src_text, dst_text, port_text = args.explain
    transport, port = _parse_port(port_text)

    def endpoint(text: str) -> Any:
        try:
            parsed = NodeId.parse(text)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.kind is NodeKind.WORKLOAD:
            found = finder.endpoints("", text, float("inf"))
            if not found or found[0].namespace is None:
                raise InputError(f"no pod of workload {text} in the inventory",
                                 record="--explain")
            return found[0]
        pod = finder.pod_at(text, float("inf"))
        return finder.of_pod(pod) if pod is not None else EvalEndpoint(ip=text, name=text)

    src, dst = endpoint(src_text), endpoint(dst_text)
    engine = target.evaluator(docs.manifests, {ns.name: ns.labels for ns in inventory.namespaces})
    verdict = engine.check(src, dst, transport, port)
    print(f"{src.name or src.ip} -> {dst.name or dst.ip} {transport}/{port} under {target.name} "
          f"enforcement: {'ALLOWED' if verdict.allowed else 'DENIED'}")
    for label, decision in (("egress ", verdict.egress), ("ingress", verdict.ingress)):
        print(f"  {label} {'allow' if decision.allowed else 'deny '}  "
              f"{decision.policy or '-'} {decision.rule or ''}: {decision.reason}")
    return EXIT_OK if verdict.allowed else EXIT_DENIED


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
        return pipeline.policies_to_judge(cluster=True, context=args.context,
                                          kubeconfig=args.kubeconfig)
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
    structural, semantic = pipeline.diff(old, new, inventory=inventory, flows=flows,
                                         target=get_target(args.enforcement),
                                         max_workloads=args.max_workloads)
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
    from segmenter.views.report.build import build_report, report_file, write_report

    check_output_folder(args.output, owned=report_file)  # before the long part
    graph = load_graph(args.graph)
    plan = load_plan(args.plan, graph=graph)
    inventory = pipeline.read_inventory(args.inventory) if args.inventory else None
    flows = pipeline.read_traffic(args.flows).flows if args.flows else None
    sources: dict[str, list[str]] = {"graph": [args.graph], "plan": [args.plan],
                                     "policies": list(args.policies)}
    if args.flows:
        sources["flows"] = list(args.flows)
    if args.inventory:
        sources["inventory"] = list(args.inventory)
    enforcement = None if args.enforcement == options.AUTO else args.enforcement
    report = build_report(graph, plan, list(args.policies), flows=flows, inventory=inventory,
                          enforcement=enforcement, title=args.title or "",
                          generated_at=args.generated_at, sources=sources)
    written = write_report(report, args.output)
    print(f"wrote {written['report.md']} and {written['report.html']}")
    for finding in sorted(set(report.findings)):
        print(f"finding: {finding}")
    return EXIT_OK


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
    p = sub.add_parser("verify", help="replay observed flows against policies (a CI gate; on "
                       "fresh captures against the policies in force: drift detection)")
    p.add_argument("--policies", nargs="+", help="YAML files or folders")
    p.add_argument("--cluster", action="store_true", help="the policies in force in the cluster")
    options.cluster(p, "--cluster")
    p.add_argument("--flows", nargs="+")
    p.add_argument("--inventory", nargs="+", required=True)
    p.add_argument("--plan", help="plan.json: order and group findings by zone")
    options.enforcement(p, default="kubernetes")
    p.add_argument("--explain", nargs=3, metavar=("SRC", "DST", "PORT"),
                   help="one connection: SRC/DST as ns/Kind/name or an IP, PORT as 5432/TCP")
    options.output_format(p)
    options.max_workloads(p, default=200, help_text="cap for the over-permissiveness probe")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "diff", help="compare two policy sets: objects and connections that change",
        description="Structural and semantic diff of two policy sets (folders/files of YAML, or "
                    "--cluster for the policies in force). Exit status: 0 no difference, "
                    "1 differences, 2 error.")
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
    options.enforcement(p, default="kubernetes")
    options.max_workloads(p, default=DEFAULT_MAX_WORKLOADS,
                          help_text="cap on workloads probed pairwise (default %(default)s)")
    options.output_format(p)
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                   help="colour in text output (auto: only on a terminal)")
    p.set_defaults(func=cmd_diff, sides=[])

    p = sub.add_parser(
        "report", help="compliance evidence report (Markdown and self-contained HTML)",
        description="Scope statement, data-flow diagram, allowed-flow register, encryption "
                    "in transit, default deny, segmentation test evidence and the PCI DSS / "
                    "HIPAA mapping, from a graph, a plan and compiled policies.")
    p.add_argument("--graph", required=True, help="graph.json")
    p.add_argument("--plan", required=True, help="plan.json")
    p.add_argument("--policies", nargs="+", required=True, metavar="DIR",
                   help="compiled policy folders or files (one target)")
    p.add_argument("--flows", nargs="+", help="flow files: replay every observed flow")
    p.add_argument("--inventory", nargs="+", metavar="DUMP",
                   help="kubectl dump or inventory JSON: real pods and namespace labels")
    options.enforcement(p, default=options.AUTO,
                        help_text="default: the target the policies are written for")
    p.add_argument("--title", help="report title")
    p.add_argument("--generated-at", metavar="TEXT",
                   help="a date to print in the report (none by default: output is "
                        "deterministic)")
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
