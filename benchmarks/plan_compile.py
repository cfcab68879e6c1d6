"""Plan and compile at scale: 10,000 workloads in 200 namespaces with 200,000 edges.

Prints the time of each stage (plan, lower to the IR, each dialect, rendering YAML), peak
memory, and, as a same-run baseline, the time to merely copy the graph (networkx's own
``DiGraph.copy``), so the figures can be compared across machines as ratios.

    .venv/bin/python benchmarks/plan_compile.py [--workloads 10000] [--namespaces 200]
        [--edges 200000]

Target (issue #5): plan + compile in both dialects under 30 s on one core.
"""

from __future__ import annotations

import argparse
import resource
import time

from segmenter.config import Config, SensitiveDecl
from segmenter.model import (
    Labels,
)
from segmenter.planner import plan
from segmenter.policy.dns import detect_dns
from segmenter.policy.lower import lower
from segmenter.render import to_yaml
from segmenter.synthetic import synthetic_cluster
from segmenter.targets import get_target


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workloads", type=int, default=10_000)
    parser.add_argument("--namespaces", type=int, default=200)
    parser.add_argument("--edges", type=int, default=200_000)
    args = parser.parse_args()
    t0 = time.perf_counter()
    cluster = synthetic_cluster(args.workloads, args.namespaces, args.edges)
    graph, inventory = cluster.graph, cluster.inventory()
    built = time.perf_counter() - t0
    print(f"synthetic graph: {graph.number_of_nodes()} nodes, {graph.number_of_edges()} edges "
          f"({built:.1f} s)")
    t0 = time.perf_counter()
    graph.copy()
    baseline = time.perf_counter() - t0
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    result = plan(graph, Config(sensitive=(
        SensitiveDecl("phi", Labels.of({"app": "svc1"}), "ns001", source="bench"),)),
        dns_nodes=["kube-system/Deployment/coredns"])
    timings["plan"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    policy_set = lower(graph, result, inventory, dns=detect_dns(graph, inventory))
    timings["lower"] = time.perf_counter() - t0
    for dialect in ("kubernetes", "calico"):
        t0 = time.perf_counter()
        output = get_target(dialect).dialect().emit(policy_set)
        timings[dialect] = time.perf_counter() - t0
        t0 = time.perf_counter()
        size = sum(len(to_yaml(ms)) for ms in output.files.values())
        timings[f"{dialect} yaml"] = time.perf_counter() - t0
        print(f"{dialect}: {len(output.files)} files, {size / 1e6:.1f} MB of YAML")
    # ru_maxrss (KiB on Linux) rather than tracemalloc, whose per-allocation hook would slow
    # every stage several times over.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    total = sum(timings.values())
    compiled = sum(v for k, v in timings.items() if not k.endswith("yaml"))
    for stage, seconds in timings.items():
        print(f"  {stage:<16} {seconds:7.2f} s  ({seconds / baseline:7.1f}x graph copy)")
    print(f"plan + compile to manifests in both dialects: {compiled:.1f} s (target < 30 s)")
    print(f"with rendering every file's YAML: {total:.1f} s; {total / baseline:.0f}x the graph "
          f"copy ({baseline:.2f} s) measured in the same run; peak RSS {peak / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
