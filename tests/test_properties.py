"""Invariants on random graphs (Hypothesis): the compiler allows exactly the plan.

- every observed flow between policed workloads is allowed, under Kubernetes, Calico, Cilium
  and ClusterNetworkPolicy enforcement, by the emitted YAML read back through the evaluator
  (Cilium's zone guardrails, deny rules that override every allow, included);
- no pair of workloads that never talked is allowed (least privilege; in particular nothing
  unobserved reaches into or out of a restricted zone);
- the zones of every class partition the graph;
- the same input gives byte-identical YAML.
"""

from __future__ import annotations

from itertools import product

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segmenter.config import Config, SensitiveDecl
from segmenter.evaluate import EvalEndpoint, PolicyEngine
from segmenter.model import Labels, Transport
from segmenter.planner import ZONES, plan
from segmenter.policy.dns import detect_dns
from segmenter.policy.lower import lower
from segmenter.render import to_yaml
from segmenter.targets import TARGETS, get_target
from tests.scenarios import ClusterBuilder, with_dns

PORTS = [("TCP", 80), ("TCP", 5432), ("UDP", 514), ("TCP", 8443), ("SCTP", 3868)]


@st.composite
def graphs(draw: st.DrawFn) -> tuple[ClusterBuilder, Config]:
    b = ClusterBuilder()
    with_dns(b)
    namespaces = draw(st.lists(st.sampled_from(["alpha", "beta", "gamma"]), min_size=1,
                               max_size=3, unique=True))
    names = []
    count = draw(st.integers(2, 7))
    for i in range(count):
        ns = draw(st.sampled_from(namespaces))
        # Workloads share `part-of`, and some share `app`: selectors must tell them apart.
        labels = {"app.kubernetes.io/part-of": "shop", "app": f"svc{i // 2}",
                  "component": f"c{i}"}
        kind = draw(st.sampled_from(["Deployment", "StatefulSet"]))
        names.append(b.workload(ns, f"w{i}", labels, kind=kind))
    # Some external peers are known by a DNS name (Cilium allows those by name, toFQDNs).
    externals = [b.external(f"203.0.113.{i + 1}",
                            draw(st.sampled_from([None, f"api{i}.example.com"])))
                 for i in range(draw(st.integers(0, 2)))]
    edges = draw(st.lists(st.tuples(st.sampled_from(names + externals), st.sampled_from(names),
                                    st.sampled_from(PORTS)), max_size=12))
    for client, server, (proto, port) in edges:
        if client != server:
            b.flow(client, server, port, proto)
    outbound = draw(st.lists(st.tuples(st.sampled_from(names), st.sampled_from(externals or [""]),
                                       st.sampled_from(PORTS)), max_size=3))
    for client, server, (proto, port) in outbound:
        if server:
            b.flow(client, server, port, proto)
    sensitive = draw(st.lists(st.sampled_from(names), max_size=2, unique=True))
    decls = tuple(
        SensitiveDecl(draw(st.sampled_from(["pci", "phi"])),
                      Labels.of({"component": b.graph.nodes[n]["labels"]["component"]}),
                      b.graph.nodes[n]["namespace"], source=f"test {n}")
        for n in sensitive)
    return b, Config(sensitive=decls)


def _compile(b: ClusterBuilder, config: Config) -> dict[str, list[dict[str, object]]]:
    graph, inventory = b.graph, b.inventory()
    result = plan(graph, config, dns_nodes=["kube-system/Deployment/coredns"])
    policy_set = lower(graph, result, inventory, dns=detect_dns(graph, inventory))
    out = {}
    for name in TARGETS:
        output = get_target(name).dialect().emit(policy_set)
        out[name] = [m for _, ms in sorted(output.files.items()) for m in ms]
    return out


SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(graphs())
def test_exactly_the_observed_flows_are_allowed(case: tuple[ClusterBuilder, Config]) -> None:
    b, config = case
    manifests = _compile(b, config)
    inventory = b.inventory()
    namespaces = {ns.name: ns.labels for ns in inventory.namespaces}
    pods = {p.owner.id: p for p in inventory.pods}
    observed = {(u, v, p["protocol"], p["port"])
                for u, v, d in b.graph.edges(data=True) for p in d["ports"]}

    def endpoint(node: str) -> EvalEndpoint:
        if node in pods:
            pod = pods[node]
            return EvalEndpoint(ip=pod.ips[0], namespace=pod.namespace, labels=pod.labels,
                                node=pod.node, ports=pod.ports, name=node)
        return EvalEndpoint(ip=node.split(":", 1)[1], name=node,
                            dns_names=tuple(b.graph.nodes[node].get("dns_names") or ()))

    policed = [n for n in pods if not n.startswith("kube-system/")]
    externals = [n for n in b.graph.nodes if n.startswith("external:")]
    for enforcement in ("kubernetes", "calico", "cilium", "clusternetworkpolicy"):
        engine = PolicyEngine.from_manifests(manifests[enforcement], namespaces=namespaces,
                                             enforcement=enforcement)
        for client, server in product(policed + externals, policed + externals):
            if client == server or (client in externals and server in externals):
                continue
            for proto, port in PORTS:
                verdict = engine.check(endpoint(client), endpoint(server),
                                       Transport.parse(proto), port)
                expected = (client, server, proto, port) in observed
                assert verdict.allowed == expected, (enforcement, client, server, proto, port,
                                                     verdict)
        dns = endpoint("kube-system/Deployment/coredns")
        for client in policed:
            for proto in (Transport.UDP, Transport.TCP):
                assert engine.check(endpoint(client), dns, proto, 53).allowed


@SETTINGS
@given(graphs())
def test_zones_partition_and_output_is_deterministic(case: tuple[ClusterBuilder, Config]) -> None:
    b, config = case
    result = plan(b.graph, config)
    for scope in result.classes:
        members = [m.node for zone in ZONES for m in scope.members(zone)]
        assert sorted(members) == sorted(b.graph.nodes)
    first = {k: to_yaml(v) for k, v in _compile(b, config).items()}
    second = {k: to_yaml(v) for k, v in _compile(b, config).items()}
    assert first == second
    for text in first.values():
        assert "pod-template-hash" not in text
        assert list(yaml.safe_load_all(text))
