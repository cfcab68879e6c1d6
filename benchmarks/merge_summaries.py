"""Benchmark: merge 100 simulated capture nodes' daily graph summaries (Parquet) into the graph.

Run: ``.venv/bin/python benchmarks/merge_summaries.py [--nodes 100] [--flows-per-node N]
[--pods N] [--window S] [--seed N]`` (needs ``segmenter[scale]``: pyarrow and duckdb).

A cluster of ``--pods`` pods with IP reuse over a day (``segmenter.synthetic.pod_timeline``);
each node sees its own ``--flows-per-node`` flows of that day (``day_of_flows``) and folds them
into its summary per ``--window`` seconds, written as Parquet (``segmenter summarize`` does the
same from flow files). The summaries are then added up three ways, timed in the same run:

- a plain read of every file's edge table with pyarrow (the baseline: what any merge must do),
- the in-process merge (``graph --summaries --engine python``),
- DuckDB, embedded, on one thread (``--engine duckdb``),

and each merge's graph is built and checked equal to the other's. It prints the times, the peak
memory of each step (tracemalloc: Python allocations; DuckDB's own are outside it, so the
process's peak RSS is printed too), and the ratios to the baseline.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from segmenter.graph.build import graph_from_summary
from segmenter.graph.fold import GraphFold
from segmenter.graph.io import graph_to_dict
from segmenter.graph.resolve import Resolver
from segmenter.graph.summaries import COLUMNS, duckdb_summary, merge_summaries, write_summary
from segmenter.synthetic import day_of_flows, pod_timeline


def measured(what: Any) -> tuple[Any, float, float]:
    """(result, seconds, peak MiB traced): timed without tracemalloc (which slows allocation
    several times), then run again under it for the peak."""
    gc.collect()
    t = time.perf_counter()
    result = what()
    seconds = time.perf_counter() - t
    del result
    gc.collect()
    tracemalloc.start()
    result = what()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, seconds, peak / 2**20


def main() -> None:
    import pyarrow.parquet as pq

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--flows-per-node", type=int, default=10_000)
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=3600)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    inventory, pods = pod_timeline(args.pods, rng)

    with tempfile.TemporaryDirectory() as folder:
        paths: list[str] = []
        t = time.perf_counter()
        resolver = Resolver(inventory)  # every node indexes the same inventory
        fold_seconds = 0.0
        for node in range(args.nodes):
            flows = day_of_flows(args.flows_per_node, pods, inventory.services,
                                 inventory.nodes, rng)
            started = time.perf_counter()
            fold = GraphFold(inventory, resolver=resolver, window=args.window)
            fold.add(flows)
            fold_seconds += time.perf_counter() - started
            path = Path(folder) / f"node-{node:03d}.parquet"
            write_summary(path, fold.summary, (), node=f"node-{node:03d}")
            paths.append(str(path))
        setup = time.perf_counter() - t
        size = sum(Path(p).stat().st_size for p in paths)
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
        total = args.nodes * args.flows_per_node
        print(f"setup: {len(pods):,} pods, {len(inventory.workloads):,} workloads; "
              f"{args.nodes} nodes x {args.flows_per_node:,} flows = {total:,} flows folded "
              f"in {fold_seconds:.1f} s (each node indexing the inventory too) into "
              f"{rows:,} edge rows of {args.window} s windows, {size / 2**20:.1f} MiB of "
              f"Parquet  [{setup:.1f} s in all]")

        def plain_read() -> int:
            n = 0
            for p in paths:
                n += pq.read_table(p, columns=list(COLUMNS)).num_rows
            return n

        _, base_s, base_mib = measured(plain_read)
        print(f"baseline read: {base_s:.2f} s", flush=True)
        (py_summary, _), py_s, py_mib = measured(lambda: merge_summaries(paths, windows=False))
        (dk_summary, _), dk_s, dk_mib = measured(lambda: duckdb_summary(paths, threads=1))
        py_graph, pyg_s, _ = measured(lambda: graph_from_summary(py_summary, inventory))
        dk_graph, dkg_s, _ = measured(lambda: graph_from_summary(dk_summary, inventory))
        same = graph_to_dict(py_graph) == graph_to_dict(dk_graph)

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'step':44} {'seconds':>8} {'x base':>7} {'peak MiB':>9}")
    print(f"{'baseline: plain pyarrow read of every file':44} {base_s:8.2f} {1:7.2f} "
          f"{base_mib:9.1f}")
    print(f"{'merge in process (--engine python)':44} {py_s:8.2f} {py_s / base_s:7.2f} "
          f"{py_mib:9.1f}")
    print(f"{'merge by DuckDB, 1 thread (--engine duckdb)':44} {dk_s:8.2f} "
          f"{dk_s / base_s:7.2f} {dk_mib:9.1f}  (+ DuckDB's own memory)")
    print(f"graph from the merged summary: {pyg_s:.2f} s (in process), {dkg_s:.2f} s (DuckDB's)")
    print(f"graph: {py_graph.number_of_nodes():,} nodes, {py_graph.number_of_edges():,} edges; "
          f"DuckDB's graph equals the in-process graph: {same}")
    print(f"DuckDB / in-process merge time: {dk_s / py_s:.2f}; process peak RSS {rss:,.0f} MiB")
    if not same:
        raise SystemExit("the two merges gave different graphs")


if __name__ == "__main__":
    main()
