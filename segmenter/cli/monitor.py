"""``segmenter monitor``: judge traffic continuously (or once, for cron and CI) against the plan
and the policies in force; alerts as JSON Lines (docs/monitor.md)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from segmenter.cli import options
from segmenter.cli.common import EXIT_DENIED, EXIT_OK
from segmenter.cluster.watch import parse_duration
from segmenter.monitor import MonitorOptions, run_monitor
from segmenter.monitor.service import (
    DEFAULT_HYGIENE_WINDOW,
    DEFAULT_LEARN_WINDOW,
    DEFAULT_REFRESH,
    DEFAULT_WINDOW,
)


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_monitor(args: argparse.Namespace) -> int:
    monitor_options = MonitorOptions(
        sources=tuple(args.sources), plan=args.plan, graph=args.graph,
        policies=tuple(args.policies or ()), cluster=args.cluster, context=args.context,
        kubeconfig=args.kubeconfig, inventory=tuple(args.inventory or ()),
        enforcement=args.enforcement, alerts=args.alerts, once=args.once,
        metrics_port=args.metrics_port, state=args.state, window=args.window,
        review_dir=args.review_dir, learn_window=args.learn_window,
        hygiene_window=args.hygiene_window, config=args.config, refresh=args.refresh)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()  # finish the batch, checkpoint, exit

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        result = run_monitor(monitor_options, stop=stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if args.once:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(result.alerts.items())) or "none"
        print(f"segmenter monitor: {result.flows} flows judged, {result.alert_count} alerts "
              f"({kinds})", file=sys.stderr)
        return EXIT_DENIED if result.alert_count else EXIT_OK
    return EXIT_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "monitor", help="judge traffic continuously against the plan and the policies in force",
        description="Follow traffic sources (files, folders such as the capture agent's, - for "
                    "standard input; any format ingest reads) as they grow and across rotation, "
                    "judge every flow under the enforcement in force and against the plan, and "
                    "write alerts as JSON Lines (docs/monitor.md). With --once: read what "
                    "exists and exit 0 (no alert), 1 (alerts) or 2 (bad input).")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="traffic files, folders of them, or - (standard input)")
    p.add_argument("--policies", nargs="+", metavar="DIR",
                   help="the policies in force: YAML files or folders (re-read on change)")
    p.add_argument("--cluster", action="store_true",
                   help="the policies in force in the cluster (re-read every --refresh); "
                        "without --inventory, the cluster's inventory too")
    options.cluster(p, "--cluster")
    p.add_argument("--inventory", nargs="+", metavar="DUMP",
                   help="kubectl dumps or the inventory file (re-read on change)")
    p.add_argument("--plan", required=True, help="plan.json")
    p.add_argument("--graph", help="the graph the plan was made from (default: graph.json "
                                   "beside the plan)")
    p.add_argument("--enforcement", choices=list(options.target_names()),
                   help="whose enforcement judges the policies (default: the target the "
                        "policies are written for)")
    p.add_argument("--alerts", metavar="FILE",
                   help="append alerts to FILE (default: standard output)")
    p.add_argument("--once", action="store_true",
                   help="read what exists, report, exit 0 / 1 (alerts) / 2 (bad input)")
    p.add_argument("--metrics-port", type=int, metavar="N",
                   help="serve Prometheus metrics on port N (needs segmenter[monitor])")
    p.add_argument("--state", metavar="DIR",
                   help="checkpoint folder: a restart neither repeats nor loses alerts")
    p.add_argument("--window", type=_duration, default=DEFAULT_WINDOW, metavar="DURATION",
                   help="deduplication window per edge and kind (flow time; default 1h)")
    p.add_argument("--review-dir", metavar="DIR",
                   help="write learned policy proposals and rule-hygiene reports here")
    p.add_argument("--learn-window", type=_duration, default=DEFAULT_LEARN_WINDOW,
                   metavar="DURATION", help="drift window per proposal (default 24h)")
    p.add_argument("--hygiene-window", type=_duration, default=DEFAULT_HYGIENE_WINDOW,
                   metavar="DURATION", help="rule-hygiene window (default 720h: 30 days)")
    p.add_argument("--config", help="segmenter.yaml: compile options of learned proposals")
    p.add_argument("--refresh", type=_duration, default=DEFAULT_REFRESH, metavar="DURATION",
                   help="how often the cluster's policies and inventory are read again "
                        "(default 30s)")
    p.set_defaults(func=cmd_monitor)


__all__ = ["register"]
