"""The evidence report's segmentation test at scale.

A synthetic cluster (``segmenter.synthetic.synthetic_cluster``) is planned and compiled to the
target's policies; every restricted workload is then probed in and out, over TCP and UDP, on
the isolation check's ports plus every observed port and the well-known set, against every peer
outside the restricted zones (:func:`segmenter.analysis.segmentation.segmentation_test`), under
the policies and with none (the report's picture needs both). The same-run baseline is the
isolation check of ``verify --plan`` on the same graph (which probes the restricted and
connected workloads on fewer ports); the ratio is printed::

    .venv/bin/python benchmarks/segmentation.py [--workloads 2000] [--namespaces 50]
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
from segmenter.analysis.segmentation import segmentation_test


def main() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cluster = planned_cluster(parser.parse_args())
    graph, inventory, result, target, docs, namespaces, endpoints = (
        cluster.graph, cluster.inventory, cluster.result, cluster.target, cluster.docs,
        cluster.namespaces, cluster.endpoints)

    t0 = time.process_time()
    check = check_from_graph(graph, result, target.evaluator(docs.manifests, namespaces),
                             endpoints=endpoints, manifests=docs.manifests, inventory=inventory)
    baseline = time.process_time() - t0
    isolation_probes = sum(w.probes for w in check.workloads)
    timings = []
    tests = []
    for manifests in (docs.manifests, ()):  # the policies, then none: the picture's two sides
        engine = target.evaluator(list(manifests), namespaces)  # cold caches, as a fresh run
        t0 = time.process_time()
        tests.append(segmentation_test(graph, result, engine, endpoints=endpoints,
                                       manifests=docs.manifests, inventory=inventory))
        timings.append(time.process_time() - t0)
    after, today = tests
    print(f"{graph.number_of_nodes()} nodes, {len(docs.manifests)} {target.name} objects; "
          f"{len(after.members)} restricted workloads x {len(after.peers)} peers x "
          f"{len(after.ports)} ports x 2 directions = {after.probes} probes a side")
    print(f"baseline: isolation check, {isolation_probes} probes in {baseline:.2f} s")
    for name, elapsed, test in (("with the policies", timings[0], after),
                                ("with none (today)", timings[1], today)):
        print(f"segmentation test {name}: {elapsed:.2f} s ({test.probes / elapsed:,.0f} "
              f"probes/s; {elapsed / baseline if baseline else float('inf'):.1f}x the "
              f"isolation check; CPU time); {len(test.findings())} findings")


if __name__ == "__main__":
    main()
