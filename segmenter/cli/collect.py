"""``segmenter collect``: the finished flow files of every capture agent, into one folder."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from segmenter.cli import options
from segmenter.cli.common import EXIT_ERROR, EXIT_OK
from segmenter.cluster.collect import (
    DEFAULT_NAMESPACE,
    DEFAULT_SELECTOR,
    PORT_NAME,
    AgentReport,
    collect,
)


def cmd_collect(args: argparse.Namespace) -> int:
    def show(report: AgentReport) -> None:
        if report.error is None:
            print(f"segmenter collect: {report.line()}")

    result = collect(args.output, namespace=args.namespace, selector=args.selector,
                     port=args.port, context=args.context, kubeconfig=args.kubeconfig,
                     request_timeout=args.timeout, progress=show)
    failed = result.failed
    level = "warning" if args.best_effort else "error"
    for report in failed:
        print(f"segmenter: {level}: cannot collect from {report.line()}", file=sys.stderr)
    reached = len(result.agents) - len(failed)
    print(f"segmenter collect: {result.fetched} new files from {reached} of"
          f" {len(result.agents)} agents into {result.out_dir}")
    if not failed:
        return EXIT_OK
    if args.best_effort and reached:
        return EXIT_OK
    return EXIT_ERROR


def register(sub: Any) -> None:
    p = sub.add_parser(
        "collect", help="gather the finished flow files of every capture agent",
        description="List the capture agent pods and fetch each one's finished flow files "
                    "through the API server's pod proxy into DIR/<node>/ (files already there "
                    "are not fetched again). Needs list on pods and get on pods/proxy in the "
                    "agents' namespace (docs/rbac-collect.yaml). An agent that cannot be "
                    "reached is an error naming it (exit 2; the other agents' files are still "
                    "written), or with --best-effort a warning; no agent at all is exit 2. "
                    "`segmenter ingest DIR` / `run DIR` read the folder.")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="folder for the files (one subfolder per node)")
    p.add_argument("-n", "--namespace", default=DEFAULT_NAMESPACE,
                   help="the agents' namespace (default %(default)s)")
    p.add_argument("-l", "--selector", default=DEFAULT_SELECTOR,
                   help="label selector of the agent pods (default %(default)s)")
    p.add_argument("--port", type=int, default=None,
                   help=f"the agents' --serve port (default: their container port named "
                        f"{PORT_NAME!r})")
    p.add_argument("--best-effort", action="store_true",
                   help="agents that cannot be reached are warnings: exit 0 when at least "
                        "one agent was collected from")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="per request to the API server (default %(default)s)")
    options.cluster(p)
    p.set_defaults(func=cmd_collect)


__all__ = ["register"]
