"""The pipeline's commands: ingest, inventory (and its watch), summarize, graph, plan, compile,
draw, run, and the live capture agent."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from segmenter import pipeline
from segmenter.cli import options
from segmenter.cli.common import EXIT_DENIED, EXIT_OK
from segmenter.errors import InputError
from segmenter.fileio import (
    atomic_write_json,
    atomic_write_text,
    check_output_file,
    check_output_folder,
    dump_json_rows,
)


def cmd_ingest(args: argparse.Namespace) -> int:
    result = pipeline.ingest(args.captures, args.output, progress=sys.stderr.isatty())
    # With -o -, standard output is the flow file and nothing else.
    print(f"wrote {args.output}: {result.line()}",
          file=sys.stderr if args.output == "-" else sys.stdout)
    return EXIT_OK


def cmd_inventory(args: argparse.Namespace) -> int:
    from segmenter.cluster.cache import inventory_to_dict

    if args.watch:
        return cmd_watch(args)
    check_output_file(args.output)
    if args.live:
        inventory = pipeline.live_inventory(context=args.context, kubeconfig=args.kubeconfig)
    else:
        inventory = pipeline.read_inventory(args.dumps)
    atomic_write_text(args.output, dump_json_rows(inventory_to_dict(inventory)))
    print(f"wrote {args.output}: {len(inventory.namespaces)} namespaces, "
          f"{len(inventory.workloads)} workloads, {len(inventory.pods)} pods, "
          f"{len(inventory.services)} services")
    return EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    """``inventory --live --watch`` / ``inventory-watch``: record pod IPs over a window."""
    from segmenter.cluster.watch import DEFAULT_MIN_INTERVAL, summary, watch_inventory

    if getattr(args, "dumps", None):
        raise InputError("--watch reads the live cluster; do not give dump files")
    if not getattr(args, "live", False):
        raise InputError("--watch needs --live")
    if getattr(args, "duration", None) is None:
        raise InputError("--watch needs --duration (e.g. --duration 15m)")
    result = watch_inventory(
        args.output, duration=float(args.duration), context=args.context,
        kubeconfig=args.kubeconfig,
        min_interval=float(getattr(args, "min_interval", DEFAULT_MIN_INTERVAL)))
    print(summary(result))
    return EXIT_OK


def cmd_graph(args: argparse.Namespace) -> int:
    from segmenter.graph.io import graph_to_gexf, graph_to_graphml, save_graph
    from segmenter.graph.stats import format_stats, graph_stats

    if args.output:
        check_output_file(args.output)
    inventory = pipeline.read_inventory(args.inventory) if args.inventory else None
    networks = pipeline.read_config(args.config).cluster if args.config else None
    if args.summaries:
        if inventory is None:
            raise InputError("--summaries needs --inventory (a summary holds resolved edges, "
                             "not the records an inventory could be built from)")
        graph = pipeline.graph_from_summaries(args.summaries, inventory, networks,
                                              engine=args.engine)
    else:
        graph = pipeline.make_graph(pipeline.open_traffic(args.flows), inventory, networks)
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


def cmd_summarize(args: argparse.Namespace) -> int:
    check_output_file(args.output)
    inventory = pipeline.read_inventory(args.inventory)
    rows, flows = pipeline.summarize(args.flows, inventory, args.output, node=args.node,
                                     window=args.window)
    print(f"wrote {args.output}: {flows} flows in {rows} edge rows of {args.window} s windows")
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    from segmenter.graph.io import load_graph
    from segmenter.planner import plan, plan_to_dict, summary_lines
    from segmenter.policy.dns import dns_pods

    check_output_file(args.output)
    config = pipeline.read_config(args.config, args.sensitive)
    graph = load_graph(args.graph)
    dns_nodes = None
    if args.inventory:
        # A graph written before it marked cluster DNS: the inventory says which workload.
        inventory = pipeline.read_inventory(args.inventory)
        dns_nodes = sorted({p.owner.id for p in dns_pods(inventory)} & set(graph))
    result = plan(graph, config, dns_nodes=dns_nodes)
    atomic_write_json(args.output, plan_to_dict(result))
    print(f"wrote {args.output}")
    print("\n".join(summary_lines(result)))
    return EXIT_OK


def cmd_compile(args: argparse.Namespace) -> int:
    from segmenter.graph.io import load_graph
    from segmenter.planner import load_plan

    inventory = pipeline.read_inventory(args.inventory)
    configuration = pipeline.read_config(args.config) if args.config else None
    chosen, how = pipeline.choose_targets(args.dialect or (), inventory,
                                          live=args.detect_from_cluster, context=args.context,
                                          kubeconfig=args.kubeconfig)
    out_dirs = {t.name: str(Path(args.output) / t.name) if len(chosen) > 1 else args.output
                for t in chosen}
    for folder in out_dirs.values():
        check_output_folder(folder)
    graph = load_graph(args.graph)
    result = load_plan(args.plan, graph=graph)
    writers = pipeline.writer_options(configuration, options.target_flags(args))
    policy_set = pipeline.compile_policies(graph, result, inventory,
                                           configuration.compile if configuration else None)
    outputs = pipeline.emit(policy_set, chosen, best_effort=args.best_effort, staged=args.staged,
                            options=writers)
    notes = [*how, *policy_set.notes, *pipeline.write_outputs(outputs, out_dirs)]
    for target in chosen:
        print(f"wrote {out_dirs[target.name]}")
    for note in sorted(set(notes)):
        print(f"note: {note}")
    return EXIT_OK


def cmd_draw(args: argparse.Namespace) -> int:
    from segmenter.graph.io import load_graph
    from segmenter.planner import load_plan
    from segmenter.views.viz.draw import save_zone_map

    check_output_file(args.output)
    graph = load_graph(args.graph)
    save_zone_map(graph, load_plan(args.plan, graph=graph), args.output)
    print(f"wrote {args.output}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from segmenter.graph.stats import record_lines
    from segmenter.planner import summary_lines
    from segmenter.views.viz.draw import save_zone_map

    def draw(graph: Any, plan: Any, path: Path, title: str) -> None:
        save_zone_map(graph, plan, path, title=title)

    check_output_folder(args.output)
    result = pipeline.run(args.captures, args.inventory, args.output, config=args.config,
                          sensitive=args.sensitive, best_effort=args.best_effort,
                          staged=args.staged, progress=sys.stderr.isatty(), force=args.force,
                          draw=draw, dialects=args.dialect or (),
                          detect_live=args.detect_from_cluster, context=args.context,
                          kubeconfig=args.kubeconfig, options=options.target_flags(args))
    out = Path(args.output)
    print(f"segmenter run: {result.ingest.line()}")
    print(f"graph: {result.graph.number_of_nodes()} nodes, {result.graph.number_of_edges()} "
          f"edges -> {out / 'graph.json'}, {out / 'graph.png'}")
    for line in record_lines(result.graph.graph.get("identity"),
                             result.graph.graph.get("blocked") or []):
        print(line)
    print("\n".join(summary_lines(result.plan)))
    for name, count in result.files.items():
        print(f"{name}: {count} policy files in {result.out_dirs[name]}")
    for note in sorted(set(result.notes)):
        print(f"note: {note}")
    failed = False
    for name, verdicts in result.verdicts.items():
        print(f"verify ({name} enforcement): {verdicts.flows - verdicts.denied_flows}/"
              f"{verdicts.flows} observed flows allowed"
              + (f" ({result.not_replayed} not replayed: not let through by the policies in "
                 "force, or unresolved)" if result.not_replayed else ""))
        for r in verdicts.denied:
            failed = True
            print(f"  DENIED {r.client} -> {r.server} {r.transport}/{r.port} ({r.flows} "
                  f"flow{'s' if r.flows != 1 else ''})")
    return EXIT_DENIED if failed else EXIT_OK


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


def _duration(text: str) -> float:
    from segmenter.cluster.watch import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _watch_window(parser: argparse.ArgumentParser, *, required: bool) -> None:
    from segmenter.cluster.watch import DEFAULT_MIN_INTERVAL

    parser.add_argument("--duration", type=_duration, required=required,
                        help="length of the capture window (600, 90s, 15m, 2h)"
                             + ("" if required else "; with --watch"))
    parser.add_argument("--min-interval", type=float, default=DEFAULT_MIN_INTERVAL,
                        metavar="SECONDS",
                        help="at most one change snapshot per interval "
                             f"(default {DEFAULT_MIN_INTERVAL:g})")


def register(sub: Any) -> None:
    p = sub.add_parser("ingest", help="fold captures, flow files and flow logs into a flow file")
    p.add_argument("captures", nargs="+", metavar="CAPTURE",
                   help="pcap/pcapng captures, flow files, flow logs (found by content)")
    p.add_argument("-o", "--output", required=True, help="flow file to write (flows.jsonl)")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("inventory", help="read Kubernetes metadata (dump or live cluster)")
    p.add_argument("dumps", nargs="*", metavar="DUMP",
                   help="kubectl get ... -A -o json|yaml output")
    p.add_argument("--live", action="store_true", help="read the cluster through its API")
    options.cluster(p, "--live")
    p.add_argument("-o", "--output", required=True,
                   help="inventory JSON to write (with --watch: a folder of snapshots)")
    p.add_argument("--watch", action="store_true",
                   help="with --live: follow pod changes for --duration and write snapshots and "
                        "events.jsonl into the -o directory")
    _watch_window(p, required=False)
    p.set_defaults(func=cmd_inventory)

    p = sub.add_parser(
        "inventory-watch", help="record pod IP assignments and deletions during a capture window",
        description="List the cluster, then follow its pods for --duration and write "
                    "timestamped inventory snapshots (inventory-<RFC 3339>.json) and "
                    "events.jsonl into OUTDIR. Give the snapshots to --inventory "
                    "(OUTDIR/inventory-*.json) so that a reused pod IP resolves to the pod that "
                    "held it at the time of each flow.")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="directory to write")
    _watch_window(p, required=True)
    options.cluster(p)
    p.set_defaults(func=cmd_watch, live=True, watch=True, dumps=[], live_log=True)

    p = sub.add_parser("summarize", help="one capture node's flows as a graph summary per time "
                       "window (Parquet), to merge with other nodes' (docs/scale.md)")
    p.add_argument("--flows", nargs="+", required=True, help="the node's flow files")
    p.add_argument("--inventory", nargs="+", required=True,
                   help="kubectl dumps or the inventory file (ends are resolved here)")
    p.add_argument("--node", required=True, help="the capture node's name (a column of the rows)")
    p.add_argument("--window", type=int, default=3600,
                   help="seconds of a window, the same on every node (default 3600)")
    p.add_argument("-o", "--output", required=True, help="summary file (.parquet)")
    p.set_defaults(func=cmd_summarize)

    p = sub.add_parser("graph", help="resolve flows to workloads and build the graph")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--flows", nargs="+")
    source.add_argument("--summaries", nargs="+", metavar="PARQUET",
                        help="graph summaries of capture nodes (segmenter summarize), instead "
                             "of flow files; needs --inventory")
    p.add_argument("--engine", choices=pipeline.ENGINES, default="auto",
                   help="what adds --summaries up: DuckDB (embedded) or this process; auto: "
                        "DuckDB from 64 MiB of summaries when installed")
    p.add_argument("--inventory", nargs="+",
                   help="kubectl dumps or the inventory file; without it, the inventory is "
                        "built from the flow records, which must all carry identities")
    p.add_argument("--config", help="segmenter.yaml (the cluster's Service and pod ranges)")
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
    options.sensitive(p)
    p.add_argument("-o", "--output", required=True, help="plan.json")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("compile", help="emit each target's policy YAML from a plan")
    p.add_argument("--graph", required=True)
    p.add_argument("--plan", required=True)
    p.add_argument("--inventory", nargs="+", required=True)
    p.add_argument("--config", help="segmenter.yaml (compile options)")
    options.targets(p)
    p.add_argument("-o", "--output", required=True,
                   help="folder; with several targets, one subfolder each")
    options.compile_modes(p)
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("draw", help="PNG/SVG of the graph coloured by zone")
    p.add_argument("--graph", required=True)
    p.add_argument("--plan", required=True)
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_draw)

    p = sub.add_parser(
        "run", help="every stage, from traffic to policies and a picture",
        description="Every stage, from traffic to policies and a picture, then the self-check "
                    "of every observed flow under each target's enforcement. What it writes "
                    "is recorded in OUTDIR/.segmenter-run.json (paths and SHA-256): a file "
                    "where run writes (flows.jsonl, graph.json, plan.json, graph.png, one "
                    "folder per target) that it did not write, or that changed since, is "
                    "refused, naming it, unless --force; other files are left alone. Exit "
                    "status: 0 every observed flow allowed under every target, 1 a flow "
                    "denied, 2 bad input.")
    p.add_argument("captures", nargs="+", metavar="CAPTURE",
                   help="pcap/pcapng captures, flow files, flow logs (found by content)")
    p.add_argument("--inventory", nargs="+", metavar="DUMP",
                   help="kubectl dumps or the inventory file; without it, the inventory is "
                        "built from the flow records (Hubble, Calico, GKE flow logs), which "
                        "must all carry identities")
    options.sensitive(p)
    p.add_argument("--config", help="segmenter.yaml")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    p.add_argument("--force", action="store_true",
                   help="replace files in OUTDIR that run did not write (they are lost)")
    options.targets(p)
    options.compile_modes(p)
    p.set_defaults(func=cmd_run)

    from capture.cli import add_capture_arguments

    p = sub.add_parser("capture", help="live capture agent: sniff an interface into flow files "
                       "(no payload kept)")
    add_capture_arguments(p)
    p.set_defaults(func=cmd_capture, live_log=True)


__all__ = ["register"]
