"""Invariants on random graphs (Hypothesis): the compiler allows exactly the plan.

The plan is: the observed flows, the declared flows (segmenter.yaml ``declared_flows``), DNS to
the cluster resolver for the workloads seen resolving names, and on internet entry points (a
LoadBalancer Service in front, or declared, optionally restricted to blocks) every address
outside the cluster on the ports its outside clients used.

- every planned flow is allowed, under Kubernetes, Calico, Cilium and ClusterNetworkPolicy
  enforcement, by the emitted YAML read back through the evaluator (Cilium's zone guardrails,
  deny rules that override every allow, included);
- nothing else is: no pair of workloads that never talked, no stranger on the internet except
  into an entry point on its ports, no pod through an internet rule (the cluster's ranges are
  excepted), no DNS for a workload that never resolved a name;
- the zones of every class partition the graph;
- the same input gives byte-identical YAML.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from itertools import product

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segmenter.config import (
    CompileOptions,
    Config,
    DeclaredFlowDecl,
    EntryPointDecl,
    FlowEnd,
    SensitiveDecl,
    WorkloadMatch,
)
from segmenter.evaluate import EvalEndpoint, PolicyEngine
from segmenter.model import Labels, Service, ServicePort, Transport
from segmenter.planner import ZONES, plan
from segmenter.policy.dns import detect_dns
from segmenter.policy.lower import lower
from segmenter.render import to_yaml
from segmenter.targets import TARGETS, get_target
from tests.scenarios import ClusterBuilder, with_dns

PORTS = [("TCP", 80), ("TCP", 5432), ("UDP", 514), ("TCP", 8443), ("SCTP", 3868)]
DNS_NODE = "kube-system/Deployment/coredns"
# Clients the capture never saw: the rest of the internet, one per family.
STRANGERS = ("198.51.100.77", "2001:db8::77")
DECLARED_BLOCK = "192.0.2.0/24"


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
    for stranger in STRANGERS:
        b.external(stranger)
    # DNS only for the workloads seen resolving names.
    for name in draw(st.lists(st.sampled_from(names), max_size=3, unique=True)):
        b.flow(name, DNS_NODE, 53, "UDP")
    sensitive = draw(st.lists(st.sampled_from(names), max_size=2, unique=True))
    decls = tuple(
        SensitiveDecl(draw(st.sampled_from(["pci", "phi"])),
                      Labels.of({"component": b.graph.nodes[n]["labels"]["component"]}),
                      b.graph.nodes[n]["namespace"], source=f"test {n}")
        for n in sensitive)
    # Internet entry points: behind a LoadBalancer Service (never widened when restricted), or
    # declared (with a justification, so restricted ones may be), optionally to one block.
    shopper = b.external("203.0.113.200")
    exposed = draw(st.lists(st.sampled_from(names), max_size=2, unique=True))
    for name in exposed:
        attrs = b.graph.nodes[name]
        b.services.append(Service(
            attrs["namespace"], f"lb-{attrs['name']}", "LoadBalancer",
            (f"10.96.9.{len(b.services)}",), selector=Labels.of(
                {"component": attrs["labels"]["component"]}),
            ports=(ServicePort(443, Transport.TCP, 80),)))
    entries = tuple(
        EntryPointDecl(WorkloadMatch(workload=name), "test storefront",
                       draw(st.sampled_from([(), ("198.51.100.0/24",)])), "approved", "tester",
                       f"test entry_points[{i}]")
        for i, name in enumerate(draw(st.lists(st.sampled_from(names), max_size=2, unique=True))))
    # Entry points have an outside client the capture saw (whose ports the internet gets).
    for name in {*exposed, *(e.workloads.workload or "" for e in entries)} - {""}:
        proto, port = draw(st.sampled_from(PORTS))
        b.flow(shopper, name, port, proto)
    ends = [FlowEnd(WorkloadMatch(workload=n)) for n in names] + [FlowEnd(cidr=DECLARED_BLOCK)]
    declared = []
    for i, (client, server, (proto, port)) in enumerate(draw(st.lists(st.tuples(
            st.sampled_from(ends), st.sampled_from(ends), st.sampled_from(PORTS)), max_size=3))):
        if client == server or (client.cidr and server.cidr):
            continue
        declared.append(DeclaredFlowDecl(client, server, Transport.parse(proto), (port,),
                                         "monthly batch", "change SEC-1", "tester",
                                         f"test declared_flows[{i}]"))
    return b, Config(sensitive=decls, declared_flows=tuple(declared),
                     compile=CompileOptions(entry_points=entries))


def _compile(b: ClusterBuilder, config: Config) -> dict[str, list[dict[str, object]]]:
    graph, inventory = b.graph, b.inventory()
    result = plan(graph, config, dns_nodes=[DNS_NODE])
    policy_set = lower(graph, result, inventory, dns=detect_dns(graph, inventory),
                       options=config.compile)
    out = {}
    for name in TARGETS:
        output = get_target(name).dialect().emit(policy_set)
        out[name] = [m for _, ms in sorted(output.files.items()) for m in ms]
    return out


SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def planned(b: ClusterBuilder, config: Config) -> set[tuple[str, str, str, int]]:
    """Observed flows, declared flows (from the config, not from what the planner put into the
    graph), and the internet into entry points on the ports their outside clients used."""
    out = {(u, v, p["protocol"], p["port"])
           for u, v, d in b.graph.edges(data=True) for p in d["ports"] if p["flows"]}
    for decl in config.declared_flows:
        client, server = (end.workloads.workload if end.workloads else f"external:{end.cidr}"
                          for end in (decl.client, decl.server))
        out |= {(str(client), str(server), decl.protocol.value, port) for port in decl.ports}
    restricted = {n for d in config.sensitive for n in b.graph.nodes
                  if b.graph.nodes[n].get("kind") == "workload"
                  and b.graph.nodes[n]["namespace"] == d.namespace
                  and Labels.of(b.graph.nodes[n]["labels"]).matches(d.selector)}
    entries: dict[str, tuple[str, ...]] = {}
    for svc in b.services:
        if svc.type == "LoadBalancer":
            for pod in b.pods:
                if (pod.namespace == svc.namespace and pod.labels.matches(svc.selector)
                        and pod.owner.id not in restricted):
                    entries[pod.owner.id] = ()
    for decl in config.compile.entry_points:
        assert decl.workloads.workload is not None
        entries[decl.workloads.workload] = decl.cidrs
    externals = [n for n in b.graph.nodes if n.startswith("external:")]
    for node, cidrs in entries.items():
        ports = {(proto, port) for client, server, proto, port in set(out)
                 if server == node and client.startswith("external:")}
        for client in externals:
            if cidrs and not _inside(_address(b, client), cidrs):
                continue
            out |= {(client, node, proto, port) for proto, port in ports}
    return out


def _address(b: ClusterBuilder, node: str) -> str:
    return str((b.graph.nodes[node].get("addresses") or [node.split(":", 1)[1]])[0])


def _inside(address: str, cidrs: tuple[str, ...]) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip.version == n.version and ip in n for n in map(ipaddress.ip_network, cidrs))


@SETTINGS
@given(graphs())
def test_exactly_the_planned_flows_are_allowed(case: tuple[ClusterBuilder, Config]) -> None:
    b, config = case
    manifests = _compile(b, config)
    inventory = b.inventory()
    namespaces = {ns.name: ns.labels for ns in inventory.namespaces}
    pods = {p.owner.id: p for p in inventory.pods}
    expected_allowed = planned(b, config)

    def endpoint(node: str) -> EvalEndpoint:
        if node in pods:
            pod = pods[node]
            return EvalEndpoint(ip=pod.ips[0], namespace=pod.namespace, labels=pod.labels,
                                node=pod.node, ports=pod.ports, name=node)
        return EvalEndpoint(ip=_address(b, node), name=node,
                            dns_names=tuple(b.graph.nodes[node].get("dns_names") or ()))

    policed = [n for n in pods if not n.startswith("kube-system/")]
    externals = [n for n in b.graph.nodes if n.startswith("external:")]
    resolving = {u for u, v in b.graph.edges if v == DNS_NODE}
    for enforcement in ("kubernetes", "calico", "cilium", "clusternetworkpolicy"):
        engine = PolicyEngine.from_manifests(manifests[enforcement], namespaces=namespaces,
                                             enforcement=enforcement)
        # The cluster DNS pods are an unpoliced client: only the server's ingress decides, so
        # an internet rule that let pods in (no except for the cluster's ranges) shows.
        for client, server in product([*policed, *externals, DNS_NODE], policed + externals):
            if client == server or (server in externals and client not in policed):
                continue
            for proto, port in PORTS:
                verdict = engine.check(endpoint(client), endpoint(server),
                                       Transport.parse(proto), port)
                expected = (client, server, proto, port) in expected_allowed
                assert verdict.allowed == expected, (enforcement, client, server, proto, port,
                                                     verdict)
        dns = endpoint(DNS_NODE)
        for client in policed:
            for proto in (Transport.UDP, Transport.TCP):
                verdict = engine.check(endpoint(client), dns, proto, 53)
                assert verdict.allowed == (client in resolving), (enforcement, client, verdict)


@SETTINGS
@given(graphs())
def test_zones_partition_and_output_is_deterministic(case: tuple[ClusterBuilder, Config]) -> None:
    b, config = case
    result = plan(b.graph, dataclasses.replace(config, compile=CompileOptions()))
    for scope in result.classes:
        members = [m.node for zone in ZONES for m in scope.members(zone)]
        assert sorted(members) == sorted(b.graph.nodes)
    first = {k: to_yaml(v) for k, v in _compile(b, config).items()}
    second = {k: to_yaml(v) for k, v in _compile(b, config).items()}
    assert first == second
    for text in first.values():
        assert "pod-template-hash" not in text
        assert list(yaml.safe_load_all(text))
