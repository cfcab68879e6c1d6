"""Benchmark: the full pod-to-pod connectivity map of 1,000 pods, from the project's evaluator
and from network-config-analyzer (``nca --connectivity``), compared and timed in the same run.

Run: ``.venv/bin/python benchmarks/connectivity_nca.py [--workloads 500] [--nca PATH]``

nca pins its dependencies exactly, so it is installed in a venv of its own
(``python3 -m venv /tmp/nca-venv && /tmp/nca-venv/bin/pip install network-config-analyzer``;
``--nca``, ``$SEGMENTER_NCA``, ``nca`` on the PATH or that venv). The cluster is
``segmenter.synthetic.synthetic_cluster`` (``--workloads`` Deployments of two pods, plus cluster
DNS; three calls per workload on the usual service ports); its policies are what segmenter
compiles for it (Kubernetes NetworkPolicy: default deny, DNS, the observed calls). Both tools
read the same pods, namespaces and policies; the maps are compared pair by pair (every ordered
pair of distinct pods: the protocols and destination ports allowed). nca's time is its
process's wall time (its own start-up included, about a second: printed separately from a run
on an empty cluster); the evaluator's is ``connectivity_map``'s, engine construction included.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segmenter import pipeline
from segmenter.analysis.connectivity import connectivity_map, format_connections
from segmenter.analysis.policies import from_policy_set
from segmenter.config import Config
from segmenter.synthetic import synthetic_cluster
from segmenter.targets import get_target
from tests.nca import find_nca, run_connectivity, write_inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=500)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--nca", help="the nca executable")
    args = parser.parse_args()
    nca = args.nca or find_nca()
    if nca is None:
        raise SystemExit("nca not found: python3 -m venv /tmp/nca-venv && "
                         "/tmp/nca-venv/bin/pip install network-config-analyzer")
    builder = synthetic_cluster(args.workloads, max(2, args.workloads // 25),
                                args.workloads * 3, seed=args.seed)
    inventory = builder.inventory()
    plan = pipeline.make_plan(builder.graph, Config())
    docs = from_policy_set(pipeline.compile_policies(builder.graph, plan, inventory),
                           get_target("kubernetes"))
    print(f"cluster: {len(inventory.pods):,} pods, {len(inventory.workloads):,} workloads, "
          f"{len(inventory.namespaces)} namespaces, {len(docs.manifests):,} NetworkPolicies")

    started = time.perf_counter()
    ours = connectivity_map(inventory, docs.manifests)
    ours_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        paths = write_inputs(Path(folder), inventory, docs.manifests)
        theirs, nca_s = run_connectivity(nca, paths)
    pairs = len(inventory.pods) * (len(inventory.pods) - 1)
    differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
    print(f"segmenter evaluator: {ours_s:8.2f} s   {len(ours):,} of {pairs:,} pod pairs connected")
    print(f"nca --connectivity:  {nca_s:8.2f} s   {len(theirs):,} pod pairs connected")
    print(f"maps equal: {not differ} ({len(differ):,} pairs differ); "
          f"speed-up {nca_s / ours_s:.1f}x")
    for pair in differ[:10]:
        print(f"  {pair[0]} -> {pair[1]}: segmenter "
              f"{format_connections(ours.get(pair, {})) or 'none'}, nca "
              f"{format_connections(theirs.get(pair, {})) or 'none'}")
    if differ:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
