"""The isolation check of ``verify --plan`` / ``report`` at scale.

A synthetic cluster (``segmenter.synthetic.synthetic_cluster``: Deployments of two pods, one in
500 a PCI store, random calls between them) is planned and compiled to the target's policies,
then every restricted and connected workload is probed against every other workload, the
nodes, the API server and the internet, both directions
(:func:`segmenter.analysis.isolation.check_from_graph`). The same-run baseline is one pass of
the engine over every observed edge (what replaying the flows costs); the ratio is printed::

    .venv/bin/python benchmarks/isolation.py [--workloads 2000] [--namespaces 50]
        [--edges 10000] [--enforcement kubernetes]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segmenter.analysis.isolation import check_from_graph
from segmenter.analysis.policies import from_policy_set
from segmenter.analysis.reachability import eval_endpoints
from segmenter.config import Config
from segmenter.planner import plan
from segmenter.policy.dns import detect_dns
from segmenter.policy.lower import lower
from segmenter.synthetic import synthetic_cluster
from segmenter.targets import get_target, target_names


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workloads", type=int, default=2000)
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--edges", type=int, default=10_000)
    parser.add_argument("--enforcement", choices=target_names(), default=target_names()[0])
    args = parser.parse_args()
    cluster = synthetic_cluster(args.workloads, args.namespaces, args.edges)
    graph, inventory = cluster.graph, cluster.inventory()
    result = plan(graph, Config(), dns_nodes=["kube-system/Deployment/coredns"])
    target = get_target(args.enforcement)
    docs = from_policy_set(lower(graph, result, inventory, dns=detect_dns(graph, inventory)),
                           target)
    namespaces = {ns.name: ns.labels for ns in inventory.namespaces}
    engine = target.evaluator(docs.manifests, namespaces)
    endpoints = eval_endpoints(graph, inventory)
    t0 = time.process_time()
    checked = 0
    for client, server, data in graph.edges(data=True):
        for p in data.get("ports", []):
            engine.check(endpoints[client], endpoints[server], p["protocol"], p.get("port"))
            checked += 1
    baseline = time.process_time() - t0
    engine = target.evaluator(docs.manifests, namespaces)  # cold caches, as a fresh run
    t0 = time.process_time()
    check = check_from_graph(graph, result, engine, endpoints=endpoints,
                             manifests=docs.manifests, inventory=inventory)
    elapsed = time.process_time() - t0
    probes = sum(w.probes for w in check.workloads)
    print(f"{graph.number_of_nodes()} nodes, {len(docs.manifests)} {target.name} objects; "
          f"{len(check.workloads)} in-scope workloads x {check.peers} peers x "
          f"{len(check.ports)} ports x 2 directions = {probes} probes")
    print(f"baseline: {checked} observed edges replayed in {baseline:.2f} s")
    print(f"isolation check: {elapsed:.2f} s ({probes / elapsed:,.0f} probes/s; "
          f"{elapsed / baseline if baseline else float('inf'):.1f}x the replay; CPU time); "
          f"{len(check.findings())} findings")


if __name__ == "__main__":
    main()
