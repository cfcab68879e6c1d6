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

from benchmarks.planned_cluster import add_arguments, planned_cluster
from segmenter.analysis.isolation import check_from_graph


def main() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cluster = planned_cluster(parser.parse_args())
    graph, inventory, result, target, docs, namespaces, endpoints = (
        cluster.graph, cluster.inventory, cluster.result, cluster.target, cluster.docs,
        cluster.namespaces, cluster.endpoints)
    engine = target.evaluator(docs.manifests, namespaces)
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
