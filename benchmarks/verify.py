"""Benchmark the policy engine: 1,000,000 flows, 1,000 policies, 10,000 pods.

The synthetic cluster has 100 namespaces of 10 workloads with 10 pods each. Every namespace gets
a default-deny policy and per-workload allow policies (1,000 NetworkPolicies in all); under
``--enforcement calico`` 100 of them are replaced by a security tier of GlobalNetworkPolicies and
network sets; under ``--enforcement cilium`` the same guards are CiliumClusterwideNetworkPolicies
with deny rules (which win over every allow) and the Kubernetes policies are read as Cilium
translates them; under ``--enforcement clusternetworkpolicy`` by 100 Admin-tier
ClusterNetworkPolicies and a Baseline default deny for the dev namespaces. Flows follow a random
call graph (each workload calls three others, some across namespaces, plus DNS and external
egress), so most are allowed and some are denied, as in a real capture.

The naive baseline (``PolicyEngine(cache=False)``: no namespace index, no selection cache, no
verdict cache; every flow scans every policy) is timed on a sample in the same run, its verdicts
are compared with the fast engine's, and the speed-up is printed::

    .venv/bin/python benchmarks/verify.py [--flows N] [--seed S]
        [--enforcement calico|cilium|clusternetworkpolicy]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segmenter.evaluate import EvalEndpoint, PolicyEngine
from segmenter.model import ContainerPort, Labels, Transport

NAMESPACES = 100
WORKLOADS_PER_NS = 10
PODS_PER_WORKLOAD = 10
CALLS_PER_WORKLOAD = 3


def build_cluster(rng: random.Random) -> tuple[dict[str, Labels], list[list[EvalEndpoint]],
                                                list[dict[str, Any]]]:
    """Namespaces, pods grouped by workload, and the call graph as (caller, callee, port)."""
    namespaces: dict[str, Labels] = {}
    workloads: list[list[EvalEndpoint]] = []
    n = 0
    for i in range(NAMESPACES):
        ns = f"ns-{i:03d}"
        namespaces[ns] = Labels.of({"team": f"team-{i % 7}", "env": "prod" if i % 3 else "dev"})
        for w in range(WORKLOADS_PER_NS):
            port = 8000 + w
            pods = []
            for _ in range(PODS_PER_WORKLOAD):
                n += 1
                pods.append(EvalEndpoint(
                    ip=f"10.{n // 65536}.{(n // 256) % 256}.{n % 256}",
                    namespace=ns,
                    labels=Labels.of({"app": f"app-{w}", "tier": f"t{w % 3}",
                                      "pod-template-hash": f"h{w}"}),
                    node=f"node-{n % 50}",
                    ports=(ContainerPort(port, Transport.TCP, "http"),),
                    name=f"{ns}/Deployment/app-{w}",
                ))
            workloads.append(pods)
    calls = []
    for caller in range(len(workloads)):
        for _ in range(CALLS_PER_WORKLOAD):
            same_ns = rng.random() < 0.8
            base = caller - caller % WORKLOADS_PER_NS
            callee = base + rng.randrange(WORKLOADS_PER_NS) if same_ns else rng.randrange(
                len(workloads))
            if callee != caller:
                calls.append({"caller": caller, "callee": callee})
    return namespaces, workloads, calls


def build_policies(workloads: list[list[EvalEndpoint]], calls: list[dict[str, Any]],
                   enforcement: str) -> list[dict[str, Any]]:
    """One default deny per namespace plus one allow policy per workload (1,000 in all)."""
    callers: dict[int, list[int]] = {}
    for c in calls:
        callers.setdefault(c["callee"], []).append(c["caller"])
    docs: list[dict[str, Any]] = []
    for i, pods in enumerate(workloads):
        ns, app = pods[0].namespace, pods[0].labels.get("app")
        if i % WORKLOADS_PER_NS == 0:
            docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                         "metadata": {"name": "default-deny", "namespace": ns},
                         "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}})
            continue
        peers = []
        for c in sorted(set(callers.get(i, ()))):
            cpod = workloads[c][0]
            peer: dict[str, Any] = {"podSelector": {"matchLabels": {"app": cpod.labels.get("app")}}}
            if cpod.namespace != ns:
                peer["namespaceSelector"] = {
                    "matchLabels": {"kubernetes.io/metadata.name": cpod.namespace}}
            peers.append(peer)
        docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                     "metadata": {"name": f"allow-{app}", "namespace": ns},
                     "spec": {"podSelector": {"matchLabels": {"app": app}},
                              "policyTypes": ["Ingress"],
                              "ingress": [{"from": peers, "ports": [{"port": "http"}]}]}})
    if enforcement == "calico":
        # Replace 100 allow policies by a security tier of GlobalNetworkPolicies.
        docs = docs[:-100]
        docs.append({"apiVersion": "projectcalico.org/v3", "kind": "Tier",
                     "metadata": {"name": "security"}, "spec": {"order": 100,
                                                                "defaultAction": "Pass"}})
        docs.append({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet",
                     "metadata": {"name": "threats", "labels": {"feed": "threat"}},
                     "spec": {"nets": ["198.51.100.0/24"]}})
        for k in range(100):
            docs.append({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
                         "metadata": {"name": f"security.guard-{k}"},
                         "spec": {"tier": "security", "order": k,
                                  "selector": f"tier == 't{k % 3}' && app == 'app-{k % 10}'",
                                  "namespaceSelector": f"team == 'team-{k % 7}'",
                                  "ingress": [
                                      {"action": "Deny", "source": {"selector":
                                                                    "feed == 'threat'"}},
                                      {"action": "Pass"}],
                                  "egress": [{"action": "Deny", "protocol": "TCP",
                                              "destination": {"ports": [23]}},
                                             {"action": "Pass"}]}})
    if enforcement == "cilium":
        # The same guards as deny rules, over the 100 remaining Kubernetes allow policies.
        docs = docs[:-100]
        for k in range(100):
            docs.append({"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy",
                         "metadata": {"name": f"guard-{k}"},
                         "spec": {"endpointSelector": {"matchLabels": {
                                      "tier": f"t{k % 3}", "app": f"app-{k % 10}",
                                      "io.cilium.k8s.namespace.labels.team": f"team-{k % 7}"}},
                                  "enableDefaultDeny": {"ingress": False, "egress": False},
                                  "ingressDeny": [{"fromCIDRSet": [{"cidr": "198.51.100.0/24"}]}],
                                  "egressDeny": [{"toPorts": [{"ports": [
                                      {"port": "23", "protocol": "TCP"}]}]}]}})
    elif enforcement == "clusternetworkpolicy":
        # The same guards as ClusterNetworkPolicies (policy-semantics.md §2), plus a Baseline
        # default deny for the dev namespaces.
        docs = docs[:-100]
        cnp = {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy"}
        for k in range(100):
            docs.append({**cnp, "metadata": {"name": f"guard-{k}"}, "spec": {
                "tier": "Admin", "priority": k,
                "subject": {"pods": {
                    "namespaceSelector": {"matchLabels": {"team": f"team-{k % 7}"}},
                    "podSelector": {"matchLabels": {"tier": f"t{k % 3}", "app": f"app-{k % 10}"}}}},
                "ingress": [{"action": "Deny", "from": [{"namespaces": {"matchLabels": {
                                 "env": "dev"}}}],
                             "protocols": [{"tcp": {"destinationPort": {"number": 22}}}]},
                            {"action": "Pass", "from": [{"namespaces": {}}]}],
                "egress": [{"action": "Deny", "to": [{"networks": ["198.51.100.0/24"]}]},
                           {"action": "Deny", "to": [{"namespaces": {}}],
                            "protocols": [{"tcp": {"destinationPort": {"number": 23}}}]},
                           {"action": "Pass", "to": [{"namespaces": {}},
                                                     {"networks": ["0.0.0.0/0"]}]}]}})
        docs.append({**cnp, "metadata": {"name": "baseline-dev"}, "spec": {
            "tier": "Baseline", "priority": 1000,
            "subject": {"namespaces": {"matchLabels": {"env": "dev"}}},
            "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}})
    return docs


def build_flows(rng: random.Random, workloads: list[list[EvalEndpoint]],
                calls: list[dict[str, Any]], count: int
                ) -> list[tuple[EvalEndpoint, EvalEndpoint, Transport, int]]:
    externals = [EvalEndpoint(ip=f"203.0.113.{i}") for i in range(1, 200)] + [
        EvalEndpoint(ip=f"198.51.100.{i}") for i in range(1, 20)]
    flows = []
    for _ in range(count):
        r = rng.random()
        if r < 0.85:
            c = calls[rng.randrange(len(calls))]
            src = rng.choice(workloads[c["caller"]])
            dst = rng.choice(workloads[c["callee"]])
            flows.append((src, dst, Transport.TCP, dst.ports[0].port))
        elif r < 0.95:  # something not in the call graph: mostly denied
            src = rng.choice(rng.choice(workloads))
            dst = rng.choice(rng.choice(workloads))
            flows.append((src, dst, Transport.TCP, rng.choice((dst.ports[0].port, 22, 5432))))
        else:
            ext = rng.choice(externals)
            pod = rng.choice(rng.choice(workloads))
            if rng.random() < 0.5:
                flows.append((ext, pod, Transport.TCP, pod.ports[0].port))
            else:
                flows.append((pod, ext, Transport.TCP, 443))
    return flows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=1_000_000)
    parser.add_argument("--naive-sample", type=int, default=2_000)
    parser.add_argument("--enforcement", choices=("kubernetes", "calico", "cilium",
                                                  "clusternetworkpolicy"),
                        default="kubernetes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    namespaces, workloads, calls = build_cluster(rng)
    docs = build_policies(workloads, calls, args.enforcement)
    flows = build_flows(rng, workloads, calls, args.flows)
    pods = sum(len(w) for w in workloads)
    policies = sum(1 for d in docs if d["kind"] in ("NetworkPolicy", "GlobalNetworkPolicy",
                                                     "CiliumClusterwideNetworkPolicy",
                                                     "ClusterNetworkPolicy"))
    print(f"generated {pods:,} pods, {policies:,} policies, {len(flows):,} flows "
          f"({args.enforcement}) in {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    engine = PolicyEngine.from_manifests(docs, namespaces=namespaces,
                                         enforcement=args.enforcement)
    build = time.perf_counter() - t0

    t0 = time.perf_counter()
    allowed = 0
    check = engine.check
    for src, dst, proto, port in flows:
        if check(src, dst, proto, port).allowed:
            allowed += 1
    fast = time.perf_counter() - t0
    print(f"engine: built in {build * 1000:.0f} ms; {len(flows):,} flows in {fast:.2f} s "
          f"({len(flows) / fast:,.0f} flows/s); {allowed:,} allowed, "
          f"{len(flows) - allowed:,} denied")

    naive = PolicyEngine.from_manifests(docs, namespaces=namespaces,
                                        enforcement=args.enforcement, cache=False)
    sample = rng.sample(flows, min(args.naive_sample, len(flows)))
    t0 = time.perf_counter()
    naive_verdicts = [naive.check(*f) for f in sample]
    naive_time = time.perf_counter() - t0
    mismatches = sum(1 for f, v in zip(sample, naive_verdicts, strict=True)
                     if engine.check(*f) != v)
    per_fast = fast / len(flows)
    per_naive = naive_time / len(sample)
    print(f"naive: {len(sample):,} sampled flows in {naive_time:.2f} s "
          f"({per_naive * 1e6:,.0f} µs/flow, ~{per_naive * len(flows):,.0f} s for all); "
          f"{mismatches} verdict mismatches")
    print(f"speed-up: {per_naive / per_fast:,.0f}x ({per_fast * 1e6:.2f} µs/flow vs "
          f"{per_naive * 1e6:,.0f} µs/flow)")
    return 1 if mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
