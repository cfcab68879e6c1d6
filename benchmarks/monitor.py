"""Benchmark ``segmenter monitor``: records judged a second on one core, memory against the
number of edges, and the time from a record appended to a followed file to its alert.

The cluster is ``segmenter.synthetic.synthetic_cluster`` (1,000 workloads of two pods in 50
namespaces, 3,000 planned edges, PCI stores by annotation), planned and compiled to Kubernetes
NetworkPolicies by the pipeline's own stages. The stream: 95 % of records on planned edges
(random pods of the two workloads, random client ports), 5 % between random pods (unplanned:
drift, policy-denied, unplanned-restricted alerts), as flow-file records.

Rates are per second of CPU time of this process (``time.process_time``): records judged on
one core, whatever else the machine runs (wall-clock rates are printed beside them).

Baselines measured in the same run:

* judging: the per-flow evaluation alone, record by record, as ``segmenter verify`` does it
  (``parse_record`` then ``FlowChecker.evaluate``: no judgement cache, no alerts) on a sample;
* memory: the monitor's retained memory after N records and after 5N records of the same
  edges (should be equal: bounded by the edges), and after N records over twice the edges;
* latency: the follower's poll interval (0.2 s), the floor of append-to-alert.

    .venv/bin/python benchmarks/monitor.py [--records N] [--seed S]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from capture.sources.flowfile import FLOWS as FLOWS_FORMAT
from segmenter import pipeline
from segmenter.analysis.verify import FlowChecker
from segmenter.cluster.cache import inventory_to_dict
from segmenter.fileio import atomic_write_json
from segmenter.flowfile import parse_record
from segmenter.graph.io import save_graph
from segmenter.model import Transport
from segmenter.monitor import Monitor, MonitorOptions, run_monitor
from segmenter.monitor.records import Chunk
from segmenter.planner import plan_to_dict
from segmenter.synthetic import T0, synthetic_cluster, synthetic_plan
from segmenter.targets import get_target

HEADER = ('{"format":"segmenter-flows","generator":"bench","sources":["bench"],'
          '"stats":{"dns":0,"flows":0,"packets":0,"skipped":{}},"version":1}\n')


def build(folder: Path, workloads: int, edges: int, seed: int) -> dict[str, Any]:
    """Inventory, graph, plan and Kubernetes policies of a synthetic cluster, on disk."""
    builder = synthetic_cluster(workloads, 50, edges, seed=seed)
    inventory = builder.inventory()
    graph = builder.graph
    plan = synthetic_plan(graph)
    policy_set = pipeline.compile_policies(graph, plan, inventory)
    target = "kubernetes"
    outputs = pipeline.emit(policy_set, [get_target(target)])
    pipeline.write_outputs(outputs, {target: str(folder / target)})
    save_graph(graph, folder / "graph.json")
    atomic_write_json(folder / "plan.json", plan_to_dict(plan))
    atomic_write_json(folder / "inventory.json", inventory_to_dict(inventory))
    pods: dict[str, list[str]] = {}
    for pod in inventory.pods:
        pods.setdefault(pod.owner.id, []).append(pod.ips[0])
    planned = [(u, v, p["port"]) for u, v, d in graph.edges(data=True) for p in d["ports"]
               if u in pods and v in pods]
    return {"pods": pods, "planned": planned, "inventory": inventory, "folder": folder}


def stream(world: dict[str, Any], count: int, rng: random.Random,
           unplanned: float = 0.05, pool: int = 500) -> list[dict[str, Any]]:
    """``count`` records: planned edges, and ``unplanned`` of them from a fixed pool of
    ``pool`` unplanned pod pairs (what lateral movement or a misconfigured client repeats)."""
    pods, planned = world["pods"], world["planned"]
    owners = sorted(pods)
    fixed = random.Random(1234)
    odd = [(fixed.choice(pods[fixed.choice(owners)]), fixed.choice(pods[fixed.choice(owners)]),
            fixed.choice((22, 8080, 5432))) for _ in range(pool)]
    out = []
    for i in range(count):
        if rng.random() < unplanned:
            client, server, port = odd[rng.randrange(pool)]
        else:
            u, v, port = planned[rng.randrange(len(planned))]
            client, server = rng.choice(pods[u]), rng.choice(pods[v])
        t = T0 + i * 0.001
        out.append({"record": "flow", "proto": "TCP", "client": client,
                    "client_port": 30000 + rng.randrange(30000), "server": server,
                    "server_port": port, "first_seen": t, "last_seen": t + 0.5,
                    "packets_to_server": 5, "bytes_to_server": 500, "packets_to_client": 5,
                    "bytes_to_client": 900, "direction": "handshake", "handshake": True,
                    "resets": 0, "tls": rng.random() < 0.5, "sni": None, "outer": None})
    return out


def monitor_for(world: dict[str, Any], source: Path, **kw: Any) -> Monitor:
    folder = world["folder"]
    return Monitor(MonitorOptions(
        sources=(str(source),), plan=str(folder / "plan.json"),
        policies=(str(folder / "kubernetes"),), inventory=(str(folder / "inventory.json"),),
        alerts=str(folder / "alerts.jsonl"), **kw))


def judge_rate(monitor: Monitor, records: list[dict[str, Any]]) -> tuple[float, float]:
    """(records per CPU second, records per wall-clock second)."""
    chunk = Chunk("bench", "bench", FLOWS_FORMAT, records)
    lines: list[str] = []
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    monitor._chunk(chunk, lines, Counter())
    return (len(records) / (time.process_time() - cpu),
            len(records) / (time.perf_counter() - wall))


def baseline_rate(world: dict[str, Any], records: list[dict[str, Any]]) -> float:
    from segmenter.evaluate import load_manifests

    checker = FlowChecker.for_manifests(world["inventory"],
                                        load_manifests([str(world["folder"] / "kubernetes")]))
    start = time.process_time()
    for rec in records:
        flow = parse_record(rec)
        checker.evaluate(flow.client, flow.server, flow.server_port,  # type: ignore[union-attr]
                         Transport.TCP, flow.first_seen)  # type: ignore[union-attr]
    return len(records) / (time.process_time() - start)


def retained(world: dict[str, Any], source: Path, batches: list[list[dict[str, Any]]]
             ) -> list[int]:
    """The monitor's retained memory (bytes allocated and still held) after each batch."""
    monitor = monitor_for(world, source)
    chunk_format = FLOWS_FORMAT
    out = []
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for batch in batches:
        monitor._chunk(Chunk("bench", "bench", chunk_format, batch), [], Counter())
        gc.collect()
        out.append(tracemalloc.get_traced_memory()[0] - base)
    tracemalloc.stop()
    monitor.close()
    return out


def latency(world: dict[str, Any], folder: Path, samples: int) -> list[float]:
    """Append-to-alert times of ``samples`` unplanned records, one at a time."""
    source = folder / "live.jsonl"
    source.write_text(HEADER)
    seen: dict[int, float] = {}
    monitor = Monitor(MonitorOptions(
        sources=(str(source),), plan=str(world["folder"] / "plan.json"),
        policies=(str(world["folder"] / "kubernetes"),),
        inventory=(str(world["folder"] / "inventory.json"),),
        alerts=str(folder / "live-alerts.jsonl")),
        on_alert=lambda doc: seen.setdefault(int(doc["source"]["port"]), time.monotonic()))
    stop = threading.Event()
    thread = threading.Thread(target=monitor.run, args=(stop,))
    thread.start()
    owners = sorted(world["pods"])
    times = []
    try:
        for i in range(samples):
            client = world["pods"][owners[i]][0]
            server = world["pods"][owners[-1 - i]][0]
            rec = (f'{{"bytes_to_client":1,"bytes_to_server":1,"client":"{client}",'
                   f'"client_port":{50000 + i},"direction":"handshake","first_seen":{T0 + i},'
                   f'"handshake":true,"last_seen":{T0 + i + 1},"outer":null,'
                   f'"packets_to_client":1,"packets_to_server":1,"proto":"TCP",'
                   f'"record":"flow","resets":0,"server":"{server}","server_port":2222,'
                   f'"sni":null,"tls":false}}\n')
            appended = time.monotonic()
            with source.open("a") as f:
                f.write(rec)
            deadline = appended + 5
            while 50000 + i not in seen and time.monotonic() < deadline:
                time.sleep(0.001)
            times.append(seen.get(50000 + i, float("inf")) - appended)
            time.sleep(rng_jitter(i))
    finally:
        stop.set()
        thread.join(10)
    return times


def rng_jitter(i: int) -> float:
    """Appends at varying phases of the follower's poll cycle."""
    return 0.05 + (i * 37 % 100) / 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--baseline-sample", type=int, default=5_000)
    parser.add_argument("--latency-samples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        world = build(folder, 1000, 3000, args.seed)
        print(f"setup: {len(world['planned'])} planned edges, "
              f"{sum(len(v) for v in world['pods'].values())} pods "
              f"({time.perf_counter() - t:.1f} s)")
        records = stream(world, args.records, rng)
        source = folder / "stream.jsonl"
        source.write_text(HEADER)

        monitor = monitor_for(world, source)
        cold, _ = judge_rate(monitor, records)  # every connection judged for the first time
        again = stream(world, args.records, random.Random(args.seed + 1))
        rate, wall = judge_rate(monitor, again)  # steady state: the connections are known
        monitor.close()
        base = baseline_rate(world, records[: args.baseline_sample])
        print(f"judging {args.records:,} records already read, one core: steady "
              f"{rate:,.0f} records/CPU-s ({wall:,.0f}/s wall clock), first pass {cold:,.0f}/CPU-s "
              f"(every connection judged for the first time); baseline, the per-flow "
              f"evaluation alone: {base:,.0f}/CPU-s -> {rate / base:.0f}x steady, "
              f"{cold / base:.1f}x first pass")
        print(f"  target 200,000/s on one core: {'met' if rate >= 200_000 else 'NOT met'} "
              f"({rate / 200_000:.2f}x)")

        sample = records[:200_000]
        source.write_text(HEADER + "".join(_line(r) for r in sample))
        t = time.process_time()
        result = run_monitor(MonitorOptions(
            sources=(str(source),), plan=str(folder / "plan.json"),
            policies=(str(folder / "kubernetes"),),
            inventory=(str(folder / "inventory.json"),),
            alerts=str(folder / "once-alerts.jsonl"), once=True))
        elapsed = time.process_time() - t
        print(f"end to end (--once on a {len(sample):,}-line flow file: startup, reading, "
              f"JSON, judging, {result.alert_count:,} alerts): {len(sample) / elapsed:,.0f} "
              f"records/CPU-s ({elapsed:.2f} CPU-s)")

        n = 100_000
        same = [stream(world, n, random.Random(s)) for s in range(5)]
        grown = retained(world, source, same)
        print(f"memory retained over the same {len(world['planned'])} edges: after {n:,} "
              f"records {grown[0] / 1e6:.1f} MB, after {5 * n:,} records "
              f"{grown[-1] / 1e6:.1f} MB -> {grown[-1] / max(grown[0], 1):.2f}x for 5x the "
              "records")
        (folder / "wide").mkdir()
        wider = build(folder / "wide", 2000, 6000, args.seed)
        double = retained(wider, source, [stream(wider, n, random.Random(9))])
        print(f"  the same {n:,} records over {len(wider['planned'])} edges: "
              f"{double[0] / 1e6:.1f} MB -> {double[0] / max(grown[0], 1):.2f}x for 2x the edges")

        times = latency(world, folder, args.latency_samples)
        finite = [x for x in times if x != float("inf")]
        print(f"append-to-alert latency over {len(times)} records: median "
              f"{statistics.median(finite) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms "
              f"(poll interval 200 ms: max {max(times) / 0.2:.1f}x of it; bound 1 s: "
              f"{'met' if max(times) < 1.0 else 'NOT met'})")
    return 0


def _line(rec: dict[str, Any]) -> str:
    import json

    return json.dumps(rec, sort_keys=True, separators=(",", ":")) + "\n"


if __name__ == "__main__":
    sys.exit(main())
