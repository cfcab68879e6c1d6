"""Benchmark: resolve 1,000,000 flows against 50,000 pods (with IP reuse) and build the graph.

Run: ``.venv/bin/python benchmarks/graph_build.py [--flows N] [--pods N] [--seed N]``

The synthetic cluster has 5,000 Deployments of 10 pods over a 24-hour window. Pods come and go,
and the pod CIDR is smaller than the number of pods, so most addresses are held by two pods of
different workloads at different times. Each workload has a Service (ClusterIP, named or numeric
targetPort). Flows go pod -> ClusterIP (45 %), pod -> pod IP (45 %), pod -> the internet (5 %)
and node -> pod (5 %), each at a time when the client pod held its address.

It prints the time to index the inventory, to resolve and aggregate every flow (both ends), the
peak memory (tracemalloc over the build; RSS of the process), and the speed-up over a naive
resolver (linear scan over pods and services per lookup) timed on a sample in the same run and
extrapolated.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import time
import tracemalloc

from segmenter.graph.build import build_graph
from segmenter.graph.resolve import Resolver
from segmenter.model import (
    Inventory,
    Pod,
)
from segmenter.synthetic import day_of_flows, pod_timeline


def naive_resolve(inventory: Inventory, ip: str, port: int | None, ts: float) -> str:
    """The obvious implementation: scan services, then pods, then nodes, for every lookup."""
    for svc in inventory.services:
        if ip in svc.cluster_ips:
            backend = [
                p
                for p in inventory.pods
                if p.namespace == svc.namespace and p.labels.matches(svc.selector)
            ]
            return backend[0].owner.id if backend else f"external:{ip}"
    best: Pod | None = None
    for pod in inventory.pods:
        if ip in pod.ips and (pod.start or 0) <= ts <= (pod.end or float("inf")):
            best = pod
    if best is not None:
        return best.owner.id
    for node in inventory.nodes:
        if ip in node.addresses:
            return f"node:{node.name}"
    return f"external:{ip}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=1_000_000)
    parser.add_argument("--pods", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--naive-sample", type=int, default=300)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    t = time.perf_counter()
    inventory, pods = pod_timeline(args.pods, rng)
    reused = len(pods) - len({p.ips[0] for p in pods})
    flows = day_of_flows(args.flows, pods, inventory.services, inventory.nodes, rng)
    print(
        f"setup: {len(pods):,} pods ({reused:,} on a reused address), "
        f"{len(inventory.workloads):,} workloads, {len(inventory.services):,} services, "
        f"{len(flows):,} flows  [{time.perf_counter() - t:.1f} s to generate]"
    )

    gc.collect()
    tracemalloc.start()
    t = time.perf_counter()
    resolver = Resolver(inventory)
    t_index = time.perf_counter() - t
    _, index_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    t = time.perf_counter()
    resolve = resolver.resolve
    for f in flows:
        resolve(f.client, None, f.transport, f.first_seen)
        resolve(f.server, f.server_port, f.transport, f.first_seen)
    t_resolve = time.perf_counter() - t

    gc.collect()
    tracemalloc.start()
    t = time.perf_counter()
    graph = build_graph(flows, inventory, resolver=Resolver(inventory))
    t_build = time.perf_counter() - t
    _, build_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # tracemalloc slows allocation-heavy code: time the build again without it.
    gc.collect()
    t = time.perf_counter()
    build_graph(flows, inventory, resolver=Resolver(inventory))
    t_build_plain = time.perf_counter() - t

    sample = rng.sample(flows, min(args.naive_sample, len(flows)))
    t = time.perf_counter()
    for f in sample:
        naive_resolve(inventory, f.client, None, f.first_seen)
        naive_resolve(inventory, f.server, f.server_port, f.first_seen)
    naive_per_flow = (time.perf_counter() - t) / len(sample)
    naive_total = naive_per_flow * len(flows)

    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = len(flows)
    print(
        f"index the inventory (Resolver):   {t_index:8.2f} s   peak {index_peak / 2**20:7.1f} MiB"
    )
    print(
        f"resolve both ends of {n:,} flows: {t_resolve:8.2f} s   "
        f"({2 * n / t_resolve / 1e6:.2f} M resolutions/s)"
    )
    print(
        f"build_graph (index+resolve+aggregate): {t_build_plain:8.2f} s   "
        f"peak {build_peak / 2**20:7.1f} MiB traced ({t_build:.2f} s under tracemalloc)"
    )
    print(f"graph: {graph.number_of_nodes():,} nodes, {graph.number_of_edges():,} edges")
    print(f"process peak RSS: {rss_mib:,.0f} MiB (includes the {n:,} flows in memory)")
    print(
        f"naive linear scan: {naive_per_flow * 1e3:.2f} ms/flow on {len(sample)} flows -> "
        f"{naive_total:,.0f} s extrapolated for {n:,}"
    )
    print(f"speed-up of the indexed resolver over the naive scan: {naive_total / t_resolve:,.0f}x")


if __name__ == "__main__":
    main()
