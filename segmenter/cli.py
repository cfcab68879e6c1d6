"""The ``segmenter`` command: the composition root, wiring only.

Every stage is a subcommand that reads and writes files, so stages compose in shell, CI and
notebooks; ``segmenter run`` chains them. User errors print one line and exit 2; a verify that
finds a denied observed flow exits 1.
"""

from __future__ import annotations

import argparse
import enum
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import networkx as nx

from segmenter.errors import InputError, SegmenterError, UnsupportedError
from segmenter.fileio import atomic_write_json
from segmenter.model import Inventory

logger = logging.getLogger("segmenter")

EXIT_OK, EXIT_DENIED, EXIT_ERROR = 0, 1, 2


class DialectName(enum.StrEnum):
    KUBERNETES = "kubernetes"
    CALICO = "calico"
    CLUSTERNETWORKPOLICY = "clusternetworkpolicy"


class Enforcement(enum.StrEnum):
    KUBERNETES = "kubernetes"
    CALICO = "calico"
    CLUSTERNETWORKPOLICY = "clusternetworkpolicy"


# ---------------------------------------------------------------------------------------------
# Stage functions (also the library surface the notebooks use through ``segmenter.api``).


def stage_ingest(captures: Sequence[str], out: str, *, progress: bool) -> dict[str, Any]:
    from capture.errors import CaptureError
    from capture.ingest import ingest

    try:
        stats = ingest(list(captures), out, progress=progress)
    except CaptureError as exc:
        raise InputError(str(exc)) from exc
    except OSError as exc:
        raise InputError(f"{exc.strerror or exc}", path=getattr(exc, "filename", None)) from exc
    return stats if isinstance(stats, dict) else dict(vars(stats))


def stage_inventory(dumps: Sequence[str], *, live: bool = False, context: str | None = None,
                    kubeconfig: str | None = None) -> Inventory:
    if live:
        from segmenter.kube_live import live_inventory

        return live_inventory(context=context, kubeconfig=kubeconfig)
    from segmenter.inventory import load_inventory

    if not dumps:
        raise InputError("no inventory given: pass a kubectl dump or --live")
    return load_inventory(list(dumps))


def stage_graph(flow_files: Sequence[str], inventory: Inventory) -> nx.DiGraph:
    from segmenter.flows import read_flow_files
    from segmenter.graph import build_graph

    data = read_flow_files(list(flow_files))
    return build_graph(data.flows, inventory, dns=data.dns)


def dns_nodes(graph: nx.DiGraph, inventory: Inventory) -> list[str]:
    from segmenter.policy.dns import dns_pods

    owners = {p.owner.id for p in dns_pods(inventory)}
    return sorted(n for n in owners if n in graph)


# ---------------------------------------------------------------------------------------------
# Commands


def cmd_ingest(args: argparse.Namespace) -> int:
    stats = stage_ingest(args.captures, args.output, progress=sys.stderr.isatty())
    print(f"wrote {args.output}: {_stats_line(stats)}")
    return EXIT_OK


def _stats_line(stats: dict[str, Any]) -> str:
    skipped = stats.get("skipped") or {}
    total_skipped = sum(skipped.values()) if isinstance(skipped, dict) else skipped
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())) if isinstance(
        skipped, dict) and skipped else ""
    line = (f"{stats.get('packets', 0)} packets read, {total_skipped} skipped"
            + (f" ({reasons})" if reasons else "") + f", {stats.get('flows', 0)} flows written")
    return line


def cmd_inventory(args: argparse.Namespace) -> int:
    from segmenter.inventory import inventory_to_dict

    if getattr(args, "watch", False):
        from segmenter.watch import cmd_watch

        return cmd_watch(args)

    inventory = stage_inventory(args.dumps, live=args.live, context=args.context,
                                kubeconfig=args.kubeconfig)
    atomic_write_json(args.output, inventory_to_dict(inventory))
    print(f"wrote {args.output}: {len(inventory.namespaces)} namespaces, "
          f"{len(inventory.workloads)} workloads, {len(inventory.pods)} pods, "
          f"{len(inventory.services)} services")
    return EXIT_OK


def load_inventory_arg(paths: Sequence[str]) -> Inventory:
    """A kubectl dump, or the JSON written by ``segmenter inventory``."""
    from segmenter.inventory import inventory_from_dict, load_inventory

    if len(paths) == 1 and paths[0].endswith(".json"):
        try:
            head = Path(paths[0]).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror or exc}", path=paths[0]) from exc
        try:
            data = json.loads(head)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict) and data.get("format") == "segmenter-inventory":
            return inventory_from_dict(data)
    return load_inventory(list(paths))


def cmd_graph(args: argparse.Namespace) -> int:
    from segmenter.graph import (
        format_stats,
        graph_stats,
        graph_to_gexf,
        graph_to_graphml,
        save_graph,
    )

    inventory = load_inventory_arg(args.inventory)
    graph = stage_graph(args.flows, inventory)
    if args.output:
        if args.output.endswith(".graphml"):
            graph_to_graphml(graph, args.output)
        elif args.output.endswith(".gexf"):
            graph_to_gexf(graph, args.output)
        else:
            save_graph(graph, args.output)
        print(f"wrote {args.output}: {graph.number_of_nodes()} nodes, "
              f"{graph.number_of_edges()} edges")
    if args.stats:
        print(format_stats(graph_stats(graph)), end="")
    if args.stats_json:
        print(json.dumps(graph_stats(graph), indent=1, sort_keys=True))
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    from segmenter.config import load_config, parse_sensitive_arg
    from segmenter.graph import load_graph
    from segmenter.planner import plan, plan_to_dict, summary_lines

    config = load_config(args.config, tuple(parse_sensitive_arg(s) for s in args.sensitive))
    graph = load_graph(args.graph)
    inventory = load_inventory_arg(args.inventory) if args.inventory else Inventory()
    result = plan(graph, config, dns_nodes=dns_nodes(graph, inventory))
    atomic_write_json(args.output, plan_to_dict(result))
    print(f"wrote {args.output}")
    print("\n".join(summary_lines(result)))
    return EXIT_OK


def _load_plan(path: str) -> Any:
    from segmenter.planner import plan_from_dict

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=path) from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg}", path=path,
                         record=f"line {exc.lineno}") from exc
    return plan_from_dict(data, path=path)


def compile_outputs(graph: nx.DiGraph, result: Any, inventory: Inventory,
                    dialects: Sequence[str], out_dirs: dict[str, str], *, best_effort: bool,
                    staged: bool, options: Any = None) -> list[str]:
    """Lower once, emit every dialect, write each folder atomically; returns notes."""
    from segmenter.dialects import get_dialect
    from segmenter.policy.dns import detect_dns
    from segmenter.policy.lower import lower
    from segmenter.render import write_tree

    dns = detect_dns(graph, inventory)
    policy_set = lower(graph, result, inventory, dns=dns, options=options)
    outputs = {}
    problems: list[str] = []
    for name in dialects:
        dialect = get_dialect(name, best_effort=best_effort, staged=staged)
        try:
            outputs[name] = dialect.emit(policy_set)
        except UnsupportedError as exc:
            problems.extend(f"{name}: {r}" for r in exc.reasons)
    if problems:
        raise UnsupportedError(problems, dialect="/".join(dialects))
    notes: list[str] = list(policy_set.notes)
    if dns is None and result.policed:
        notes.append("no cluster DNS found in the inventory (kube-system/kube-dns, k8s-app="
                      "kube-dns, OpenShift DNS): the policies allow no DNS egress; add the "
                      "resolver to the inventory or allow it by hand")
    for name, output in outputs.items():
        extra = {}
        if output.dropped:
            extra["DROPPED.txt"] = "".join(f"{d}\n" for d in output.dropped)
            notes.extend(f"{name}: best effort dropped: {d}" for d in output.dropped)
        write_tree(out_dirs[name], output.files, extra=extra)
        notes.extend(f"{name}: {n}" for n in output.notes)
    return notes


def cmd_compile(args: argparse.Namespace) -> int:
    from segmenter.config import load_config
    from segmenter.graph import load_graph

    graph = load_graph(args.graph)
    result = _load_plan(args.plan)
    inventory = load_inventory_arg(args.inventory)
    dialects = [str(d) for d in (args.dialect or list(DialectName))]
    out_dirs = {d: str(Path(args.output) / d) if len(dialects) > 1 or args.output_is_parent
                else args.output for d in dialects}
    options = load_config(args.config).compile if args.config else None
    notes = compile_outputs(graph, result, inventory, dialects, out_dirs,
                            best_effort=args.best_effort, staged=args.staged, options=options)
    for d in dialects:
        print(f"wrote {out_dirs[d]}")
    for note in sorted(set(notes)):
        print(f"note: {note}")
    return EXIT_OK


def _policy_manifests(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Policies from folders/files (invalid ones reported with file and path, not evaluated) or
    from the live cluster."""
    from segmenter.evaluate import is_warning, iter_manifests, validate_manifest

    if args.cluster:
        from segmenter.kube_policies import live_policies

        return live_policies(context=args.context, kubeconfig=args.kubeconfig)
    if not args.policies:
        raise InputError("give --policies DIR... or --cluster")
    manifests = []
    for path, number, doc in iter_manifests(list(args.policies)):
        problems = [p for p in validate_manifest(doc) if not is_warning(p)]
        if problems:
            for problem in problems:
                print(f"rejected {path} (document {number}): {problem}", file=sys.stderr)
            continue
        manifests.append(doc)
    return manifests


def _parse_port(text: str) -> tuple[Any, int | None]:
    from segmenter.model import Transport

    number, _, proto = text.partition("/")
    if not number.isdigit():
        number, proto = proto, number
    try:
        return Transport.parse(proto or "TCP"), int(number) if number else None
    except ValueError as exc:
        raise InputError(f"bad port {text!r}: expected PORT[/PROTOCOL], e.g. 5432/TCP",
                         record="--explain") from exc


def cmd_verify(args: argparse.Namespace) -> int:
    from segmenter.flows import read_flow_files
    from segmenter.verify import EndpointFinder, over_permissiveness, verify_flows

    inventory = load_inventory_arg(args.inventory)
    manifests = _policy_manifests(args)
    enforcement = str(args.enforcement)
    if args.explain:
        return _explain(args, inventory, manifests, enforcement, EndpointFinder(inventory))
    if not args.flows:
        raise InputError("give --flows FLOWS (or --explain SRC DST PORT)")
    flows = read_flow_files(list(args.flows)).flows
    results = verify_flows(flows, inventory, manifests, enforcement=enforcement)
    zone_of: dict[str, str] = {}
    if args.plan:
        result = _load_plan(args.plan)
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
    groups, capped = over_permissiveness(inventory, manifests, results, enforcement=enforcement,
                                         zone_of=zone_of, max_workloads=args.max_workloads)
    if args.format == "json":
        print(json.dumps({
            "enforcement": enforcement,
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
          f"{enforcement} enforcement; {len(denied)} denied")
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


def _explain(args: argparse.Namespace, inventory: Inventory, manifests: list[dict[str, Any]],
             enforcement: str, finder: Any) -> int:
    from segmenter.evaluate import EvalEndpoint, PolicyEngine

    src_text, dst_text, port_text = args.explain
    transport, port = _parse_port(port_text)

    def endpoint(text: str) -> Any:
        if text.count("/") == 2:
            found = finder.endpoints("", text, float("inf"))
            if not found or found[0].namespace is None:
                raise InputError(f"no pod of workload {text} in the inventory",
                                 record="--explain")
            return found[0]
        pod = finder.pod_at(text, float("inf"))
        return finder.of_pod(pod) if pod is not None else EvalEndpoint(ip=text, name=text)

    src, dst = endpoint(src_text), endpoint(dst_text)
    engine = PolicyEngine.from_manifests(
        manifests, namespaces={ns.name: ns.labels for ns in inventory.namespaces},
        enforcement=enforcement)
    verdict = engine.check(src, dst, transport, port)
    print(f"{src.name or src.ip} -> {dst.name or dst.ip} {transport}/{port} under {enforcement} "
          f"enforcement: {'ALLOWED' if verdict.allowed else 'DENIED'}")
    for label, decision in (("egress ", verdict.egress), ("ingress", verdict.ingress)):
        print(f"  {label} {'allow' if decision.allowed else 'deny '}  "
              f"{decision.policy or '-'} {decision.rule or ''}: {decision.reason}")
    return EXIT_OK if verdict.allowed else EXIT_DENIED


def cmd_capture(args: argparse.Namespace) -> int:
    from capture.cli import run_capture
    from capture.errors import CaptureError

    logging.getLogger("capture").setLevel(logging.INFO)
    try:
        stats = run_capture(args)
    except CaptureError as exc:
        raise InputError(str(exc)) from exc
    skipped = sum(stats.skipped.values())
    print(f"capture on {stats.iface} stopped ({stats.stopped_by or 'done'}): {stats.packets} "
          f"packets, {skipped} skipped, {stats.flows} flows and {stats.dns} DNS answers in "
          f"{len(stats.files)} files under {stats.out_dir}; {stats.evicted} flows evicted early, "
          f"{stats.kernel_drops} dropped by the kernel")
    return EXIT_OK


def cmd_draw(args: argparse.Namespace) -> int:
    from segmenter.graph import load_graph
    from segmenter.viz import save_zone_map

    graph = load_graph(args.graph)
    result = _load_plan(args.plan)
    save_zone_map(graph, result, args.output)
    print(f"wrote {args.output}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from segmenter.config import load_config, parse_sensitive_arg
    from segmenter.evaluate import load_manifests
    from segmenter.flows import read_flow_files
    from segmenter.graph import save_graph
    from segmenter.planner import plan, plan_to_dict, summary_lines
    from segmenter.verify import verify_flows
    from segmenter.viz import save_zone_map

    out = Path(args.output)
    # Read and check every input before writing anything.
    config = load_config(args.config, tuple(parse_sensitive_arg(s) for s in args.sensitive))
    inventory = load_inventory_arg(args.inventory)
    out.mkdir(parents=True, exist_ok=True)
    flows_path = str(out / "flows.jsonl")
    stats = stage_ingest(args.captures, flows_path, progress=sys.stderr.isatty())
    flow_file = read_flow_files([flows_path])
    from segmenter.graph import build_graph

    graph = build_graph(flow_file.flows, inventory, dns=flow_file.dns)
    result = plan(graph, config, dns_nodes=dns_nodes(graph, inventory))
    dialects = [str(d) for d in DialectName]
    out_dirs = {d: str(out / d) for d in dialects}
    # Compile before writing graph/plan so a plan that cannot be expressed leaves no new files
    # beside the flow file.
    notes = compile_outputs(graph, result, inventory, dialects, out_dirs,
                            best_effort=args.best_effort, staged=args.staged,
                            options=config.compile)
    save_graph(graph, str(out / "graph.json"))
    atomic_write_json(out / "plan.json", plan_to_dict(result))
    save_zone_map(graph, result, out / "graph.png",
                  title=f"{len(flow_file.flows)} observed flows by zone")
    verdicts = {}
    for dialect in dialects:
        manifests = load_manifests([out_dirs[dialect]])
        verdicts[dialect] = verify_flows(flow_file.flows, inventory, manifests,
                                         enforcement=dialect)
    print(f"segmenter run: {_stats_line(stats)}")
    print(f"graph: {graph.number_of_nodes()} nodes, {graph.number_of_edges()} edges -> "
          f"{out / 'graph.json'}, {out / 'graph.png'}")
    print("\n".join(summary_lines(result)))
    for dialect in dialects:
        count = sum(1 for f in Path(out_dirs[dialect]).rglob("*.yaml")
                    if f.name != "kustomization.yaml")
        print(f"{dialect}: {count} policy files in {out_dirs[dialect]}")
    for note in sorted(set(notes)):
        print(f"note: {note}")
    failed = False
    for dialect, results in verdicts.items():
        denied = [r for r in results if not r.allowed]
        print(f"verify ({dialect} enforcement): {len(results) - len(denied)}/{len(results)} "
              "observed flows allowed")
        for r in denied:
            failed = True
            print(f"  DENIED {r.client} -> {r.server} {r.flow.transport}/{r.port}")
    return EXIT_DENIED if failed else EXIT_OK


# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segmenter",
        description="Plan Kubernetes micro-segmentation from observed traffic: zones around "
                    "sensitive data stores, compiled to NetworkPolicy and Calico v3.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("ingest", help="fold pcap/pcapng captures into a flow file")
    p.add_argument("captures", nargs="+", metavar="CAPTURE")
    p.add_argument("-o", "--output", required=True, help="flow file to write (flows.jsonl)")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("inventory", help="read Kubernetes metadata (dump or live cluster)")
    p.add_argument("dumps", nargs="*", metavar="DUMP",
                   help="kubectl get ... -A -o json|yaml output")
    p.add_argument("--live", action="store_true", help="read the cluster through its API")
    p.add_argument("--context", help="kubeconfig context (with --live)")
    p.add_argument("--kubeconfig", help="kubeconfig file (with --live)")
    p.add_argument("-o", "--output", required=True,
                   help="inventory JSON to write (with --watch: a folder of snapshots)")
    from segmenter import watch

    watch.add_arguments(p)
    p.set_defaults(func=cmd_inventory)

    p = sub.add_parser("graph", help="resolve flows to workloads and build the graph")
    p.add_argument("--flows", nargs="+", required=True)
    p.add_argument("--inventory", nargs="+", required=True)
    p.add_argument("-o", "--output",
                   help="graph.json (node-link); .graphml or .gexf (Gephi) by suffix")
    p.add_argument("--stats", action="store_true",
                   help="print a summary, with learning completeness (new edges per hour)")
    p.add_argument("--stats-json", action="store_true", help="the summary as JSON")
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("plan", help="zones around sensitive stores")
    p.add_argument("--graph", required=True)
    p.add_argument("--inventory", nargs="+", help="to recognise cluster DNS as infrastructure")
    p.add_argument("--config", help="segmenter.yaml")
    p.add_argument("--sensitive", action="append", default=[],
                   metavar="CLASS=NAMESPACE/LABEL=VALUE")
    p.add_argument("-o", "--output", required=True, help="plan.json")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("compile", help="emit NetworkPolicy / Calico YAML from a plan")
    p.add_argument("--graph", required=True)
    p.add_argument("--plan", required=True)
    p.add_argument("--inventory", nargs="+", required=True)
    p.add_argument("--config", help="segmenter.yaml (compile options)")
    p.add_argument("--dialect", action="append", type=DialectName,
                   choices=list(DialectName), help="default: all")
    p.add_argument("-o", "--output", required=True,
                   help="folder; with several dialects, one subfolder each")
    p.add_argument("--best-effort", action="store_true",
                   help="emit what the dialect can express and list what was dropped")
    p.add_argument("--staged", action="store_true", help="Calico staged policies (audit only)")
    p.set_defaults(func=cmd_compile, output_is_parent=False)

    p = sub.add_parser("verify", help="replay observed flows against policies (a CI gate; on "
                       "fresh captures against the policies in force: drift detection)")
    p.add_argument("--policies", nargs="+", help="YAML files or folders")
    p.add_argument("--cluster", action="store_true", help="the policies in force in the cluster")
    p.add_argument("--context", help="kubeconfig context (with --cluster)")
    p.add_argument("--kubeconfig", help="kubeconfig file (with --cluster)")
    p.add_argument("--flows", nargs="+")
    p.add_argument("--inventory", nargs="+", required=True)
    p.add_argument("--plan", help="plan.json: order and group findings by zone")
    p.add_argument("--enforcement", type=Enforcement, choices=list(Enforcement),
                   default=Enforcement.KUBERNETES)
    p.add_argument("--explain", nargs=3, metavar=("SRC", "DST", "PORT"),
                   help="one connection: SRC/DST as ns/Kind/name or an IP, PORT as 5432/TCP")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--max-workloads", type=int, default=200,
                   help="cap for the over-permissiveness probe")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("draw", help="PNG/SVG of the graph coloured by zone")
    p.add_argument("--graph", required=True)
    p.add_argument("--plan", required=True)
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_draw)

    p = sub.add_parser("run", help="every stage, from captures to policies and a picture")
    p.add_argument("captures", nargs="+", metavar="CAPTURE")
    p.add_argument("--inventory", nargs="+", required=True, metavar="DUMP")
    p.add_argument("--sensitive", action="append", default=[],
                   metavar="CLASS=NAMESPACE/LABEL=VALUE")
    p.add_argument("--config", help="segmenter.yaml")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    p.add_argument("--best-effort", action="store_true")
    p.add_argument("--staged", action="store_true")
    p.set_defaults(func=cmd_run)

    from capture.cli import add_capture_arguments

    p = sub.add_parser("capture", help="live capture agent: sniff an interface into flow files "
                       "(no payload kept)")
    add_capture_arguments(p)
    p.set_defaults(func=cmd_capture)

    from segmenter import apply, diff, kube_policies, report

    for module in (diff, apply, kube_policies, report, watch):
        module.add_parser(sub)
    return parser


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"segmenter: {record.levelname.lower()}: {record.getMessage()}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    raise SystemExit(main())
