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
import random
import resource
import time

import networkx as nx

from segmenter.config import Config, SensitiveDecl
from segmenter.model import (
    ContainerPort,
    Inventory,
    Labels,
    Namespace,
    Pod,
    Service,
    ServicePort,
    Transport,
    Workload,
    WorkloadRef,
)
from segmenter.planner import plan
from segmenter.policy.dns import detect_dns
from segmenter.policy.lower import lower
from segmenter.render import to_yaml
from segmenter.targets import get_target

PORTS = (80, 443, 5432, 6379, 8080, 8443, 9090, 3306)


def synthetic(workloads: int, namespaces: int, edges: int, seed: int = 7) -> tuple[
        nx.DiGraph, Inventory]:
    rng = random.Random(seed)
    graph = nx.DiGraph()
    pods, wls = [], []
    names = [f"ns{i:03d}" for i in range(namespaces)]
    dns_ref = WorkloadRef("kube-system", "Deployment", "coredns")
    dns_labels = Labels.of({"k8s-app": "kube-dns"})
    wls.append(Workload(dns_ref, dns_labels, Labels(), dns_labels))
    pods.append(Pod("kube-system", "coredns-0", dns_labels, ("10.96.100.2",), dns_ref,
                    ports=(ContainerPort(53, Transport.UDP, "dns"),
                           ContainerPort(53, Transport.TCP, "dns-tcp"))))
    graph.add_node(dns_ref.id, kind="workload", namespace="kube-system", name="coredns",
                   workload_kind="Deployment", labels=dns_labels.as_dict(), annotations={},
                   host_network=False)
    ids = []
    for i in range(workloads):
        ns = names[i % namespaces]
        name = f"svc{i}"
        ref = WorkloadRef(ns, "Deployment", name)
        labels = {"app": name, "app.kubernetes.io/part-of": "bench", "tier": f"t{i % 3}"}
        wls.append(Workload(ref, Labels.of(labels), Labels(), Labels.of(labels)))
        for r in range(2):
            pods.append(Pod(ns, f"{name}-{r}", Labels.of({**labels, "pod-template-hash": "x"}),
                            (f"10.{(i >> 8) & 255}.{i & 255}.{r + 1}",), ref))
        annotations = {"segmenter.io/data-class": "pci"} if i % 500 == 0 else {}
        graph.add_node(ref.id, kind="workload", namespace=ns, name=name,
                       workload_kind="Deployment", labels=labels, annotations=annotations,
                       host_network=False)
        ids.append(ref.id)
    for e in range(edges):
        a, b = rng.sample(ids, 2)
        port = rng.choice(PORTS)
        entry = {"protocol": "TCP", "port": port, "flows": 1, "packets": 10, "bytes": 1000,
                 "first_seen": 1.7e9 + e, "last_seen": 1.7e9 + e + 5, "tls": False,
                 "via_service": None, "via_addresses": []}
        if graph.has_edge(a, b):
            data = graph.edges[a, b]
            if all(p["port"] != port for p in data["ports"]):
                data["ports"].append(entry)
        else:
            graph.add_edge(a, b, ports=[entry], flows=1)
    inventory = Inventory(
        namespaces=tuple(Namespace(n, Labels.of({"kubernetes.io/metadata.name": n}))
                         for n in [*names, "kube-system"]),
        workloads=tuple(wls), pods=tuple(pods),
        services=(Service("kube-system", "kube-dns", cluster_ips=("10.96.0.10",),
                          selector=dns_labels,
                          ports=(ServicePort(53, Transport.UDP, "dns"),)),))
    return graph, inventory


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workloads", type=int, default=10_000)
    parser.add_argument("--namespaces", type=int, default=200)
    parser.add_argument("--edges", type=int, default=200_000)
    args = parser.parse_args()
    t0 = time.perf_counter()
    graph, inventory = synthetic(args.workloads, args.namespaces, args.edges)
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
