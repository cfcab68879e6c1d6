"""Benchmark: a day of a large cluster's flow records through the whole pipeline on one core.

Run: ``.venv/bin/python benchmarks/end_to_end.py [--flows 10000000] [--pods 50000]
[--workloads 10000] [--baseline-fraction 0.1] [--seed N] [--keep DIR]``

A cluster of ``--pods`` pods of ``--workloads`` Deployments (a Service each) that come and go
over a day, with fewer addresses than pods so that most addresses are reused by a pod of another
workload (``segmenter.synthetic.pod_timeline``); ``--flows`` flow records of that day
(``day_of_flows``: ClusterIP, pod IP, internet, kubelet probes), written as a flow file
(docs/flow-format.md) in chunks, never all in memory. Then, timed stage by stage, what
``segmenter run`` does after ingest:

- graph: the flow file read as a stream, resolved and folded into the graph, with the distinct
  connections to replay folded in the same pass (``pipeline.graph_and_replay``),
- plan: zones around one declared PCI store,
- compile: the policy IR, emitted and written for every registered target,
- verify: every target's written policies read back and every flow replayed against them.

Each stage's wall time and peak resident memory (VmHWM, reset before the stage through
/proc/self/clear_refs) are printed next to two baselines measured in the same invocation:
a plain read of the same flow file (every line decoded by orjson, nothing kept), and the same
pipeline on a flow file of the first ``--baseline-fraction`` of the records (the scaling in
flows: a ratio near the flow ratio means linear time, near 1 for memory means memory does not
grow with the flows). The process's peak RSS over all is printed last.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from capture.flowfile import dumps, make_header
from segmenter import pipeline
from segmenter.analysis.policies import load_policies
from segmenter.analysis.replay import replay_engine
from segmenter.config import Config, SensitiveDecl
from segmenter.model import Labels
from segmenter.synthetic import day_of_flows, pod_timeline
from segmenter.targets import get_target, target_names

CHUNK = 100_000


def _peak_reset() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stage(what: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, seconds, peak RSS MiB during the stage)."""
    gc.collect()
    _peak_reset()
    t = time.perf_counter()
    result = what()
    return result, time.perf_counter() - t, _peak_mib()


def write_flow_files(inventory: Any, pods: Any, counts: tuple[int, int],
                     paths: tuple[Path, Path], rng: random.Random) -> None:
    """``counts[0]`` records in ``paths[0]``, the first ``counts[1]`` of them in ``paths[1]``."""
    flows, small = counts
    with paths[0].open("w") as big, paths[1].open("w") as little:
        big.write(dumps(make_header(["synthetic"], 0, {}, flows, 0)) + "\n")
        little.write(dumps(make_header(["synthetic"], 0, {}, small, 0)) + "\n")
        written = 0
        while written < flows:
            n = min(CHUNK, flows - written)
            chunk = day_of_flows(n, pods, inventory.services, inventory.nodes, rng)
            lines = "".join(_line(f) for f in chunk)
            big.write(lines)
            if written < small:
                little.write("".join(_line(f) for f in chunk[:small - written]))
            written += n


def _line(flow: Any) -> str:
    from segmenter.flowfile import flow_record

    return orjson.dumps(flow_record(flow), option=orjson.OPT_SORT_KEYS).decode() + "\n"


def plain_read(path: Path) -> int:
    n = 0
    loads = orjson.loads
    with path.open("rb") as handle:
        for raw in handle:
            loads(raw)
            n += 1
    return n


def pipeline_stages(path: Path, inventory: Any, config: Config, out: Path
                    ) -> dict[str, tuple[float, float, str]]:
    """Every stage's (seconds, peak MiB, what it made)."""
    found: dict[str, tuple[float, float, str]] = {}
    def done(name: str, figures: tuple[float, float, str]) -> None:
        found[name] = figures
        print(f"  [{path.name}] {name}: {figures[0]:.1f} s, peak {figures[1]:,.0f} MiB, "
              f"{figures[2]}", flush=True)

    passed, s, m = stage(lambda: pipeline.graph_and_replay(
        pipeline.open_traffic([str(path)]), inventory))
    graph = passed.graph
    done("graph", (s, m, f"{passed.flows:,} flows -> {graph.number_of_nodes():,} nodes, "
                         f"{graph.number_of_edges():,} edges"))
    result, s, m = stage(lambda: pipeline.make_plan(graph, config))
    done("plan", (s, m, f"{len(result.policed):,} workloads policed, "
                        f"{len(result.classes)} data class(es)"))
    targets = [get_target(name) for name in target_names()]
    out_dirs = {t.name: str(out / t.name) for t in targets}

    def compile_all() -> int:
        policy_set = pipeline.compile_policies(graph, result, inventory, config.compile)
        outputs = pipeline.emit(policy_set, targets, best_effort=True)
        pipeline.write_outputs(outputs, out_dirs)
        return sum(len(o.files) for o in outputs.values())

    files, s, m = stage(compile_all)
    done("compile", (s, m, f"{len(targets)} targets, {files:,} files"))

    def verify_all() -> str:
        assert passed.replay is not None
        said = []
        for target in targets:
            written = load_policies([out_dirs[target.name]], target)
            replay = passed.replay.replay(replay_engine(inventory, written.manifests,
                                                        enforcement=target.name))
            said.append(f"{target.name} {replay.flows - replay.denied_flows:,}/{replay.flows:,}")
        return "allowed: " + ", ".join(said)

    said, s, m = stage(verify_all)
    done("verify", (s, m, said))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=10_000_000)
    parser.add_argument("--pods", type=int, default=50_000)
    parser.add_argument("--workloads", type=int, default=10_000)
    parser.add_argument("--baseline-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", help="folder to write into and keep (default: a temporary one)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core

    folder = Path(args.keep or tempfile.mkdtemp(prefix="segmenter-e2e-"))
    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    inventory, pods = pod_timeline(args.pods, rng,
                                   pods_per_workload=max(1, args.pods // args.workloads))
    reused = len(pods) - len({p.ips[0] for p in pods})
    small = max(1, int(args.flows * args.baseline_fraction))
    big_path, small_path = folder / "flows.jsonl", folder / "flows-baseline.jsonl"
    write_flow_files(inventory, pods, (args.flows, small), (big_path, small_path), rng)
    size = big_path.stat().st_size
    print(f"setup: {len(pods):,} pods ({reused:,} on a reused address) of "
          f"{len(inventory.workloads):,} workloads, {len(inventory.services):,} Services; "
          f"{args.flows:,} flow records ({size / 2**20:,.0f} MiB) and a baseline file of "
          f"{small:,}  [{time.perf_counter() - t:.0f} s to generate and write]", flush=True)
    store = inventory.workloads[0].ref
    config = Config(sensitive=(SensitiveDecl("pci", Labels.of({"app": store.name}),
                                             store.namespace, reason="benchmark store"),))

    n, read_s, read_m = stage(lambda: plain_read(big_path))
    print(f"  plain read: {read_s:.1f} s, peak {read_m:,.0f} MiB", flush=True)
    assert n == args.flows + 1
    base = pipeline_stages(small_path, inventory, config, folder / "baseline-out")
    full = pipeline_stages(big_path, inventory, config, folder / "out")

    flow_ratio = args.flows / small
    print(f"\nbaseline: plain read of the flow file (orjson per line): {read_s:.1f} s, "
          f"peak {read_m:,.0f} MiB; pipeline on {small:,} flows (x{flow_ratio:g} fewer)")
    print(f"{'stage':8} {'seconds':>8} {'x read':>7} {'x small':>8} {'peak MiB':>9} "
          f"{'x small':>8}  made")
    total = 0.0
    for name, (s, m, made) in full.items():
        bs, bm, _ = base[name]
        total += s
        print(f"{name:8} {s:8.1f} {s / read_s:7.2f} {s / max(bs, 1e-9):8.2f} {m:9,.0f} "
              f"{m / bm:8.2f}  {made}")
    peak = max(m for _, m, _ in full.values())
    print(f"{'all':8} {total:8.1f} {total / read_s:7.2f} "
          f"{total / sum(s for s, _, _ in base.values()):8.2f} {peak:9,.0f}")
    print(f"goal: under 300 s and 8,192 MiB on one core -> "
          f"{'met' if total < 300 and peak < 8192 else 'NOT met'} "
          f"({total:.0f} s, {peak:,.0f} MiB)")
    if not args.keep:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
