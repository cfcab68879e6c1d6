"""Policies that say what is meant: declared flows, internet entry points, DNS only where used,
scoped external blocks; the golden output of the `meant` scenario under every target, and its
validation against each target's schema.

The inventories and graphs are built here with the project's ClusterBuilder; segmenter.yaml
files are written by the tests (the documented format, README "segmenter.yaml").
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from segmenter.cli import main
from segmenter.config import (
    ClusterNetworks,
    CompileOptions,
    Config,
    DeclaredFlowDecl,
    DnsEgress,
    EntryPointDecl,
    EntryPointMode,
    ExternalBlock,
    FlowEnd,
    WorkloadMatch,
    load_config,
)
from segmenter.errors import PlanError
from segmenter.evaluate import EvalEndpoint, PolicyEngine, is_warning, validate_manifest
from segmenter.graph.declared import DECLARED, strip_declared
from segmenter.model import ContainerPort, Labels, Node, Pod, Service, Transport, WorkloadRef
from segmenter.planner import load_plan, plan, plan_to_dict, summary_lines
from segmenter.policy.dns import detect_dns, resolving_workloads
from segmenter.policy.entry import find_entry_points, internal_ranges
from segmenter.policy.ir import CidrPeer, CidrRole, PolicySet
from segmenter.policy.lower import lower
from segmenter.render import to_yaml
from segmenter.targets import TARGETS, get_target
from tests.conftest import CORPORA
from tests.scenarios import ClusterBuilder, meant, two_tier, with_dns

GOLDEN = Path(__file__).parent / "golden" / "meant"
DNS_NODE = "kube-system/Deployment/coredns"


def compile_meant(config: Config | None = None) -> tuple[ClusterBuilder, PolicySet]:
    b, default = meant()
    config = config or default
    result = plan(b.graph, config, dns_nodes=[DNS_NODE])
    inventory = b.inventory()
    return b, lower(b.graph, result, inventory, dns=detect_dns(b.graph, inventory),
                    options=config.compile)


def emitted(target: str, policy_set: PolicySet, **options: bool) -> list[dict[str, Any]]:
    output = get_target(target).dialect(**options).emit(policy_set)
    return [d for _, ms in sorted(output.files.items()) for d in yaml.safe_load_all(to_yaml(ms))]


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "segmenter.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------------------------------------
# Golden output and schemas


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_golden(target: str, update_golden: bool) -> None:
    _, policy_set = compile_meant()
    output = get_target(target).dialect().emit(policy_set)
    text = "---\n".join(f"# {rel}\n" + to_yaml(ms) for rel, ms in sorted(output.files.items()))
    expected = GOLDEN / f"{target}.yaml"
    if update_golden:
        expected.parent.mkdir(parents=True, exist_ok=True)
        expected.write_text(text, encoding="utf-8")
    assert expected.exists(), f"run pytest --update-golden to create {expected}"
    assert text == expected.read_text(encoding="utf-8")


def test_kubernetes_output_validates_against_the_api_schema() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    _, policy_set = compile_meant()
    for doc in emitted("kubernetes", policy_set):
        kubernetes_validate.validate(doc, "1.30.0", strict=True)


def test_cilium_output_validates_against_the_crd() -> None:
    from tests.test_cilium import schema_problems

    _, policy_set = compile_meant()
    for doc in emitted("cilium", policy_set):
        assert schema_problems(doc) == [], doc["metadata"]["name"]


def test_clusternetworkpolicy_output_validates_against_the_crds() -> None:
    from tests.test_clusternetworkpolicy_schema import document_errors, load_crd

    _, policy_set = compile_meant()
    for options, channel in (({}, "standard"), ({"domain_names": True}, "experimental")):
        crd = load_crd(channel)
        docs = [d for d in emitted("clusternetworkpolicy", policy_set, **options)
                if d["kind"] == "ClusterNetworkPolicy"]
        assert docs
        assert [e for d in docs for e in document_errors(d, crd)] == []


def test_calico_output_validates() -> None:
    _, policy_set = compile_meant()
    docs = emitted("calico", policy_set)
    for doc in docs:
        assert [p for p in validate_manifest(doc) if not is_warning(p)] == [], doc
    crds_dir = CORPORA / "crds" / "calico"
    if not crds_dir.is_dir():
        pytest.skip(f"{crds_dir} is absent (team corpus)")
    from tests.test_calico_schema import document_errors, load_crds

    crds = load_crds(crds_dir)
    # test_calico_schema owns reviewing the CRDs' CEL rules; this checks the structure.
    errors = [e for d in docs for e in document_errors(d, crds)
              if "CEL rule not reviewed" not in e]
    assert errors == []


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_the_meant_scenario_allows_exactly_the_plan(target: str) -> None:
    """Observed + declared + DNS where used + the internet into entry points; nothing else,
    under each target's enforcement (a stranger on the internet, a pod through an internet
    rule, DNS from a workload that never resolved a name are all denied)."""
    b, policy_set = compile_meant()
    manifests = emitted(target, policy_set)
    inventory = b.inventory()
    engine = PolicyEngine.from_manifests(
        manifests, namespaces={ns.name: ns.labels for ns in inventory.namespaces},
        enforcement=target)
    pods = {p.owner.id: p for p in inventory.pods}

    def ep(node: str) -> EvalEndpoint:
        if node in pods:
            pod = pods[node]
            return EvalEndpoint(ip=pod.ips[0], namespace=pod.namespace, labels=pod.labels,
                                name=node)
        attrs = b.graph.nodes.get(node, {})
        address = (attrs.get("addresses") or [node.split(":", 1)[1]])[0]
        return EvalEndpoint(ip=address, name=node, dns_names=tuple(attrs.get("dns_names") or ()))

    def allowed(client: str, server: str, port: int, proto: str = "TCP") -> bool:
        return engine.check(ep(client), ep(server), Transport.parse(proto), port).allowed

    web, ingress = "shop/Deployment/web", "ingress-nginx/Deployment/ingress-nginx-controller"
    partner_api, db = "shop/Deployment/partner-api", "payments/StatefulSet/db"
    settlement, api = "payments/CronJob/settlement", "payments/Deployment/api"
    stranger, stranger6, partner2 = ("external:198.51.100.99", "external:2001:db8::99",
                                     "external:203.0.113.99")
    # Internet entry points: any outside address, on the ports the clients seen used only.
    for client in (stranger, stranger6):
        assert allowed(client, ingress, 443) and allowed(client, web, 8080)
        assert not allowed(client, ingress, 80) and not allowed(client, partner_api, 8443)
    # A declared override restricts the internet to its block.
    assert allowed(partner2, partner_api, 8443)
    # No pod reaches an entry point through its internet rule (the cluster's ranges are out).
    assert not allowed(DNS_NODE, web, 8080) and not allowed(DNS_NODE, ingress, 443)
    # Declared flows are allowed, and nothing more on their ends.
    assert allowed(settlement, db, 5432) and not allowed(settlement, db, 5433)
    assert allowed(api, "external:192.0.2.200", 443)
    assert not allowed(api, "external:192.0.2.1", 443)  # outside the declared /25
    assert not allowed(web, db, 5432)
    # DNS only where used: the store never resolved a name.
    for client, expected in ((web, True), (api, True), (db, False), (settlement, False)):
        assert allowed(client, DNS_NODE, 53, "UDP") is expected, client


# ---------------------------------------------------------------------------------------------
# Declared flows


def test_declared_flows_join_the_graph_and_the_plan_apart() -> None:
    b, config = meant()
    result = plan(b.graph, config, dns_nodes=[DNS_NODE])
    entry = b.graph.edges["payments/CronJob/settlement", "payments/StatefulSet/db"]
    assert entry[DECLARED] is True
    assert entry["ports"][0][DECLARED] == "monthly settlement run (1st of the month)"
    assert entry["ports"][0]["flows"] == 0
    block = b.graph.nodes["external:192.0.2.128/25"]
    assert block["cidrs"] == ["192.0.2.128/25"] and block[DECLARED]
    [scope] = result.classes
    crossing = next(c for c in scope.crossings if c.client == "payments/CronJob/settlement")
    assert crossing.declared and crossing.flows == 0
    # The declared settlement run makes the settlement job connected-to the store.
    connected = {m.node: m.reason for m in scope.members("connected")}
    assert "declared: monthly settlement" in connected["payments/CronJob/settlement"]
    data = plan_to_dict(result)
    assert [(f["client"], f["reason"]) for f in data["declared_flows"]] == [
        ("payments/CronJob/settlement", "monthly settlement run (1st of the month)"),
        ("payments/Deployment/api", "failover acquirer, used when the gateway is down")]
    assert any(c.get("declared") for c in data["classes"]["pci"]["crossings"])
    lines = summary_lines(result)
    assert any(line.startswith("declared flows") for line in lines)
    assert any("approved by payments security lead" in line for line in lines)


def test_declared_flows_round_trip_through_plan_json(tmp_path: Path) -> None:
    b, config = meant()
    result = plan(b.graph, config, dns_nodes=[DNS_NODE])
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan_to_dict(result)))
    again = load_plan(str(path))
    assert again.declared == result.declared
    assert again.classes[0].crossings == result.classes[0].crossings


def test_compiling_from_files_puts_the_declared_flows_back() -> None:
    """compile reads graph.json (the observed graph) and plan.json: lowering applies the plan's
    declarations to the graph, so the policies are the same."""
    b, config = meant()
    result = plan(b.graph, config, dns_nodes=[DNS_NODE])
    inventory = b.inventory()
    first = lower(b.graph, result, inventory, options=config.compile)
    strip_declared(b.graph)
    assert not any(DECLARED in p for _, _, d in b.graph.edges(data=True) for p in d["ports"])
    again = lower(b.graph, result, inventory, options=config.compile)
    assert again == first


def test_replanning_replaces_earlier_declarations() -> None:
    b, config = meant()
    plan(b.graph, config, dns_nodes=[DNS_NODE])
    plan(b.graph, dataclasses.replace(config, declared_flows=()), dns_nodes=[DNS_NODE])
    assert "external:192.0.2.128/25" not in b.graph
    assert not b.graph.has_edge("payments/CronJob/settlement", "payments/StatefulSet/db")
    assert b.graph.has_edge("payments/Deployment/api", "payments/StatefulSet/db")


def test_a_declared_flow_also_observed_keeps_its_counts() -> None:
    b, config = meant()
    decl = DeclaredFlowDecl(FlowEnd(WorkloadMatch(workload="payments/Deployment/api")),
                            FlowEnd(WorkloadMatch(workload="payments/StatefulSet/db")),
                            Transport.TCP, (5432,), "also declared", "yes", "lead", "t")
    plan(b.graph, dataclasses.replace(config, declared_flows=(decl,)), dns_nodes=[DNS_NODE])
    [entry] = b.graph.edges["payments/Deployment/api", "payments/StatefulSet/db"]["ports"]
    assert entry["flows"] == 3 and entry[DECLARED] == "also declared"
    strip_declared(b.graph)
    [entry] = b.graph.edges["payments/Deployment/api", "payments/StatefulSet/db"]["ports"]
    assert entry["flows"] == 3 and DECLARED not in entry


def test_provenance_says_declared_with_the_reason() -> None:
    _, policy_set = compile_meant()
    docs = emitted("kubernetes", policy_set)
    db = next(d for d in docs if d["metadata"]["name"] == "allow-db")
    evidence = db["metadata"]["annotations"]["segmenter.io/evidence"]
    assert ("0 flows; declared: monthly settlement run (1st of the month) (from "
            "payments/CronJob/settlement)") in evidence
    assert db["metadata"]["annotations"]["segmenter.io/description"].startswith(
        "Observed and declared traffic")
    calico = emitted("calico", policy_set)
    reasons = [r["metadata"]["annotations"]["segmenter.io/reason"]
               for d in calico if d["kind"] == "NetworkPolicy"
               for r in d["spec"].get("egress", []) if "metadata" in r]
    assert any(r.startswith("declared: failover acquirer") for r in reasons)


def test_a_declared_flow_into_a_restricted_zone_needs_a_justification() -> None:
    b, config = meant()
    unjustified = dataclasses.replace(config.declared_flows[0], justification="")
    with pytest.raises(PlanError, match=r"declared_flows\[0\].*needs `justification`"):
        plan(b.graph, dataclasses.replace(config, declared_flows=(unjustified,)))
    unapproved = dataclasses.replace(config.declared_flows[0], approved_by="")
    with pytest.raises(PlanError, match="needs `approved_by`"):
        plan(b.graph, dataclasses.replace(config, declared_flows=(unapproved,)))
    # Out of the zone as well: the store calling out.
    out = DeclaredFlowDecl(FlowEnd(WorkloadMatch(workload="payments/StatefulSet/db")),
                           FlowEnd(cidr="198.51.100.0/24"), Transport.TCP, (5432,), "backup",
                           source="x.yaml declared_flows[3]")
    with pytest.raises(PlanError, match=r"declared_flows\[3\]"):
        plan(b.graph, dataclasses.replace(config, declared_flows=(out,)))


def test_a_declared_end_that_matches_nothing_is_refused() -> None:
    b, config = meant()
    ghost = DeclaredFlowDecl(FlowEnd(WorkloadMatch(namespace="shop",
                                                   selector=Labels.of({"app": "ghost"}))),
                             FlowEnd(WorkloadMatch(workload="shop/Deployment/web")),
                             Transport.TCP, (80,), "why", source="s.yaml declared_flows[7]")
    with pytest.raises(PlanError, match=r"declared_flows\[7\]\.from.*matches no workload"):
        plan(b.graph, dataclasses.replace(config, declared_flows=(ghost,)))


def test_a_declared_block_inside_the_cluster_is_refused() -> None:
    b, config = meant()
    inside = DeclaredFlowDecl(FlowEnd(WorkloadMatch(workload="shop/Deployment/web")),
                              FlowEnd(cidr="10.244.0.0/28"), Transport.TCP, (80,), "why")
    result = plan(b.graph, dataclasses.replace(config, declared_flows=(inside,)))
    with pytest.raises(PlanError, match="inside the cluster's range"):
        lower(b.graph, result, b.inventory(), options=config.compile)


def test_cli_refuses_an_unjustified_flow_into_the_store(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    sample = Path(__file__).resolve().parents[1] / "sample"
    config = write_config(tmp_path, """\
        version: 1
        sensitive:
          - {class: pci, namespace: payments, selector: {app: card-vault}}
        declared_flows:
          - from: {namespace: shop, selector: {app: checkout}}
            to: {namespace: payments, selector: {app: card-vault}}
            port: 5432
            reason: quarterly reconciliation
        """)
    code = main(["run", str(sample / "shop.pcapng"), "--inventory",
                 str(sample / "shop-inventory.json"), "--config", config, "-o",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "segmenter.yaml (declared_flows[0])" in err and "justification" in err
    assert not (tmp_path / "out" / "kubernetes").exists()


# ---------------------------------------------------------------------------------------------
# Internet entry points


def test_entry_points_from_services_controllers_and_declarations() -> None:
    b, config = meant()
    result = plan(b.graph, config)
    found, notes = find_entry_points(b.graph, result, b.inventory(), config.compile)
    assert {n: e.reason for n, e in found.items()} == {
        "ingress-nginx/Deployment/ingress-nginx-controller": "the ingress-nginx controller",
        "shop/Deployment/web": "behind Service shop/web (LoadBalancer)",
        "shop/Deployment/partner-api": "declared in test.yaml entry_points[0]: partner "
                                       "callbacks"}
    assert found["shop/Deployment/partner-api"].cidrs == ("203.0.113.0/24",)
    assert notes == []
    declared_only = dataclasses.replace(config.compile, entry_point_mode=EntryPointMode.DECLARED)
    found, _ = find_entry_points(b.graph, result, b.inventory(), declared_only)
    assert set(found) == {"shop/Deployment/partner-api"}


def _controller_case(labels: dict[str, str], image: str = "registry.example/app:1") -> bool:
    b = ClusterBuilder()
    node = b.workload("edge", "proxy", labels, kind="DaemonSet")
    b.pods = [dataclasses.replace(p, images=(image,)) for p in b.pods]
    found, _ = find_entry_points(b.graph, plan(b.graph, Config()), b.inventory(),
                                 CompileOptions())
    return node in found


@pytest.mark.parametrize(("labels", "image", "expected"), [
    ({"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"},
     "registry.example/app:1", True),
    # ingress-nginx's admission Jobs share the name label, not the component.
    ({"app.kubernetes.io/name": "ingress-nginx",
      "app.kubernetes.io/component": "admission-webhook"}, "registry.example/app:1", False),
    ({"app.kubernetes.io/name": "traefik"}, "docker.io/traefik:v3.1", True),
    ({"run": "haproxy-ingress"}, "haproxytech/kubernetes-ingress:1.10.6", True),
    ({"app.kubernetes.io/managed-by": "envoy-gateway", "app.kubernetes.io/component": "proxy",
      "app.kubernetes.io/name": "envoy"}, "docker.io/envoyproxy/envoy:distroless-v1.31", True),
    ({"istio": "ingressgateway", "app": "istio-ingressgateway"}, "docker.io/istio/proxyv2:1.22",
     True),
    ({"istio": "egressgateway"}, "docker.io/istio/proxyv2:1.22", False),
    ({"app": "web"}, "registry.k8s.io/ingress-nginx/controller:v1.5.2@sha256:ab", True),
    ({"app": "web"}, "registry.example/ingress-nginx-lookalike:1", False),
])
def test_ingress_and_gateway_controllers_are_recognised(labels: dict[str, str], image: str,
                                                        expected: bool) -> None:
    assert _controller_case(labels, image) is expected


def test_a_restricted_workload_is_never_widened_automatically() -> None:
    b, config = meant()
    b.services.append(Service("payments", "db-public", "LoadBalancer", ("10.96.1.20",),
                              selector=Labels.of({"app": "db"})))
    result = plan(b.graph, config)
    found, notes = find_entry_points(b.graph, result, b.inventory(), config.compile)
    assert "payments/StatefulSet/db" not in found
    assert any("restricted pci zone" in n and "PCI DSS 1.4.4" in n for n in notes)
    declared = EntryPointDecl(WorkloadMatch(workload="payments/StatefulSet/db"), "why",
                              source="y.yaml entry_points[2]")
    options = dataclasses.replace(config.compile, entry_points=(declared,))
    with pytest.raises(PlanError, match=r"entry_points\[2\].*needs `justification`"):
        find_entry_points(b.graph, result, b.inventory(), options)
    approved = dataclasses.replace(declared, justification="PSP", approved_by="lead")
    found, _ = find_entry_points(b.graph, result, b.inventory(),
                                 dataclasses.replace(options, entry_points=(approved,)))
    assert "payments/StatefulSet/db" in found


def test_a_declared_entry_point_that_matches_nothing_is_refused() -> None:
    b, config = meant()
    ghost = EntryPointDecl(WorkloadMatch(namespace="shop", selector=Labels.of({"app": "x"})),
                           "why", source="z.yaml entry_points[1]")
    with pytest.raises(PlanError, match=r"entry_points\[1\].*matches no policed workload"):
        find_entry_points(b.graph, plan(b.graph, config), b.inventory(),
                          dataclasses.replace(config.compile, entry_points=(ghost,)))


def test_internet_peers_leave_out_the_cluster_and_say_why() -> None:
    _, policy_set = compile_meant()
    web = next(p for p in policy_set.policies if p.name == "allow-web")
    internet = [r.peers[0] for r in web.ingress or ()
                if isinstance(r.peers[0], CidrPeer) and r.peers[0].role is CidrRole.INTERNET]
    assert [(p.cidr, p.excepts) for p in internet] == [
        ("0.0.0.0/0", ("10.96.0.0/23", "10.244.0.0/27")), ("::/0", ())]
    assert web.entry_point.startswith("behind Service shop/web (LoadBalancer); allowed from the "
                                      "internet")
    assert any("internet entry points exclude the cluster's ranges" in n
               for n in policy_set.notes)
    cilium = emitted("cilium", policy_set)
    cnp = next(d for d in cilium if d["metadata"]["name"] == "allow-web")
    sets = [r["fromCIDRSet"] for r in cnp["spec"]["ingress"] if "fromCIDRSet" in r]
    # Never the `world` entity: it also takes in cluster addresses no endpoint holds.
    assert {"cidr": "0.0.0.0/0", "except": ["10.96.0.0/23", "10.244.0.0/27"]} in sets[0]
    assert not any("fromEntities" in r for r in cnp["spec"]["ingress"])
    assert cnp["metadata"]["annotations"]["segmenter.io/entry-point"] == web.entry_point
    calico = emitted("calico", policy_set)
    np = next(d for d in calico if d["metadata"]["name"] == "allow-web")
    sources = [r["source"] for r in np["spec"]["ingress"] if "nets" in r.get("source", {})]
    assert {"nets": ["0.0.0.0/0"], "notNets": ["10.96.0.0/23", "10.244.0.0/27"]} in sources


def test_an_outside_client_beyond_the_declared_blocks_keeps_its_address() -> None:
    b, config = meant()
    stray = b.external("198.51.100.50")
    b.flow(stray, "shop/Deployment/partner-api", 8443)
    result = plan(b.graph, config)
    policy_set = lower(b.graph, result, b.inventory(), options=config.compile)
    partner = next(p for p in policy_set.policies if p.name == "allow-partner-api")
    cidrs = {r.peers[0].cidr for r in partner.ingress or () if isinstance(r.peers[0], CidrPeer)}
    assert cidrs == {"203.0.113.0/24", "198.51.100.50/32"}
    assert any("from outside its declared blocks" in n for n in policy_set.notes)


def test_cluster_ranges_from_config_nodes_pods_and_services() -> None:
    b = ClusterBuilder()
    with_dns(b)
    b.workload("shop", "web", {"app": "web"}, replicas=3)
    inventory = dataclasses.replace(b.inventory(), nodes=(
        Node("n1", ("172.18.0.2",), pod_cidrs=("10.244.0.0/24",)),
        Node("n2", ("172.18.0.3", "2001:db8:1::3"))))
    ranges = internal_ranges(inventory)
    assert ranges.cidrs == ("10.96.0.10/32", "10.244.0.0/24", "172.18.0.2/31",
                            "2001:db8:1::3/128")
    assert any("Nodes' podCIDRs" in line for line in ranges.basis)
    exact = internal_ranges(inventory, ClusterNetworks(pod_cidrs=("10.244.0.0/16",),
                                                      service_cidrs=("10.96.0.0/12",)))
    assert exact.cidrs == ("10.96.0.0/12", "10.244.0.0/16", "172.18.0.2/31",
                           "2001:db8:1::3/128")
    # Pod IPs outside every podCIDR: the smallest CIDR covering them.
    stray = Pod("shop", "x", Labels(), ("10.250.3.9", "10.250.3.200"),
                WorkloadRef("shop", "Deployment", "x"))
    wider = internal_ranges(dataclasses.replace(inventory, pods=(*inventory.pods, stray)))
    assert "10.250.3.0/24" in wider.cidrs


# ---------------------------------------------------------------------------------------------
# DNS only where used, external blocks per workload or peer name


def test_resolving_workloads_include_node_local_dns_and_declared_lookups() -> None:
    b = ClusterBuilder()
    dns = with_dns(b)
    local = b.workload("shop", "local", {"app": "local"})
    cloud = b.workload("shop", "cloud", {"app": "cloud"})
    quiet = b.workload("shop", "quiet", {"app": "quiet"})
    b.flow(local, dns, 53, "UDP")
    b.graph.edges[local, dns]["ports"][0]["via_addresses"] = ["169.254.20.10"]
    resolver = b.external("169.254.169.254")
    b.flow(cloud, resolver, 53, "UDP")
    assert resolving_workloads(b.graph, b.inventory()) == {local, cloud}
    declared = DeclaredFlowDecl(FlowEnd(WorkloadMatch(workload=quiet)),
                                FlowEnd(WorkloadMatch(workload=dns)), Transport.UDP, (53,),
                                "resolves names once a month")
    plan(b.graph, Config(declared_flows=(declared,)))
    assert quiet in resolving_workloads(b.graph, b.inventory())


def test_dns_egress_all_keeps_the_old_behaviour() -> None:
    b = two_tier()
    inventory = b.inventory()
    for mode, expected in ((DnsEgress.USED, False), (DnsEgress.ALL, True)):
        result = plan(b.graph, Config())
        policy_set = lower(b.graph, result, inventory, options=CompileOptions(dns_egress=mode))
        db = next(p for p in policy_set.policies if p.name == "allow-db")
        has_dns = any(p.port == 53 for r in db.egress or () for p in r.ports)
        assert has_dns is expected
        note = any("no DNS egress for" in n for n in policy_set.notes)
        assert note is not expected


def _gateway_case(*blocks: ExternalBlock) -> dict[str, set[str]]:
    """Egress CIDRs per policy of two workloads reaching three gateway addresses."""
    b = ClusterBuilder()
    a = b.workload("pay", "a", {"app": "a"})
    c = b.workload("shop", "c", {"app": "c"})
    named = b.external("203.0.113.10", "api.gateway.example")
    other = b.external("203.0.113.20")
    for client in (a, c):
        b.flow(client, named, 443)
        b.flow(client, other, 443)
    policy_set = lower(b.graph, plan(b.graph, Config()), b.inventory(),
                       options=CompileOptions(external_cidrs=blocks))
    return {p.name: {peer.cidr for r in p.egress or () for peer in r.peers
                     if isinstance(peer, CidrPeer)} for p in policy_set.policies
            if p.name != "default-deny"}


def test_external_blocks_scoped_to_a_workload_a_namespace_or_a_peer_name() -> None:
    every = ExternalBlock("203.0.113.0/24", name="gw")
    assert _gateway_case(every) == {"allow-a": {"203.0.113.0/24"}, "allow-c": {"203.0.113.0/24"}}
    one = ExternalBlock("203.0.113.0/24", name="gw", workload="pay/Deployment/a")
    assert _gateway_case(one) == {"allow-a": {"203.0.113.0/24"},
                                  "allow-c": {"203.0.113.10/32", "203.0.113.20/32"}}
    space = ExternalBlock("203.0.113.0/24", name="gw", namespace="shop")
    assert _gateway_case(space)["allow-c"] == {"203.0.113.0/24"}
    named = ExternalBlock("203.0.113.0/24", name="gw", peer_name="*.gateway.example")
    assert _gateway_case(named) == {"allow-a": {"203.0.113.0/24", "203.0.113.20/32"},
                                    "allow-c": {"203.0.113.0/24", "203.0.113.20/32"}}


# ---------------------------------------------------------------------------------------------
# segmenter.yaml


def test_config_reads_every_new_section(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, """\
        version: 1
        cluster: {pod_cidrs: [10.244.0.0/16], service_cidrs: [10.96.0.0/12]}
        declared_flows:
          - from: {workload: payments/CronJob/settlement}
            to: {cidr: 198.51.100.0/24}
            ports: [443, 8443]
            reason: monthly upload
          - from: {namespace: shop, selector: {app: web}}
            to: {namespace: kube-system, selector: {k8s-app: kube-dns}}
            protocol: UDP
            port: 53
            reason: resolves names at start-up only
            justification: n/a
            approved_by: platform team
        entry_points:
          - {namespace: shop, selector: {app: web}, reason: storefront, cidrs: [192.0.2.0/24]}
        compile:
          dns_egress: all
          entry_points: declared
          targets: {calico: {domains: true}}
          external_cidrs:
            - {cidr: 203.0.113.0/24, namespace: payments, peer_name: "*.gw.example"}
        """))
    first, second = config.declared_flows
    assert first.client.workloads == WorkloadMatch(workload="payments/CronJob/settlement")
    assert first.server.cidr == "198.51.100.0/24" and first.ports == (443, 8443)
    assert first.source == "segmenter.yaml declared_flows[0]"
    assert second.protocol is Transport.UDP and second.approved_by == "platform team"
    options = config.compile
    assert options.cluster == config.cluster
    assert (options.cluster.pod_cidrs, options.cluster.service_cidrs) == (
        ("10.244.0.0/16",), ("10.96.0.0/12",))
    assert options.entry_points[0].cidrs == ("192.0.2.0/24",)
    assert options.dns_egress is DnsEgress.ALL
    assert options.entry_point_mode is EntryPointMode.DECLARED
    assert options.targets == {"calico": {"domains": True}}
    assert options.external_cidrs[0].peer_name == "*.gw.example"
    assert options.path == config.path


@pytest.mark.parametrize(("text", "record", "message"), [
    ("declared_flows:\n  - {from: {namespace: a}, to: {cidr: 1.2.3.0/24}, port: 1}",
     "declared_flows[0]", "`reason` is required"),
    ("declared_flows:\n  - {from: {namespace: a}, to: {cidr: 1.2.3.0/24}, reason: x}",
     "declared_flows[0]", "`port` is required"),
    ("declared_flows:\n  - {from: {cidr: 1.2.3.0/24}, to: {cidr: 5.6.7.0/24}, port: 1, "
     "reason: x}", "declared_flows[0]", "a workload at one end"),
    ("declared_flows:\n  - {from: {workload: web}, to: {cidr: 1.2.3.0/24}, port: 1, reason: x}",
     "declared_flows[0].from", "namespace/Kind/name"),
    ("declared_flows:\n  - {from: {namespace: a}, to: {cidr: 1.2.3.4/24}, port: 1, reason: x}",
     "declared_flows[0].to", "invalid CIDR"),
    ("declared_flows:\n  - {from: {namespace: a}, to: {cidr: 1.2.3.0/24}, port: 70000, "
     "reason: x}", "declared_flows[0]", "1-65535"),
    ("entry_points:\n  - {namespace: shop, reason: x, cidrs: [nope]}", "entry_points[0].cidrs",
     "invalid CIDR"),
    ("entry_points:\n  - {reason: x}", "entry_points[0]", "name the workloads"),
    ("cluster: {pod_cidr: [10.0.0.0/8]}", "cluster", "unknown key"),
    ("compile: {dns_egress: some}", "compile.dns_egress", "not one of used, all"),
    ("compile: {entry_points: none}", "compile.entry_points", "not one of auto, declared"),
    ("compile:\n  external_cidrs: [{cidr: 1.2.3.0/24, workload: a/Deployment/b, namespace: c}]",
     "compile.external_cidrs[0]", "not in namespace c"),
    ("compile:\n  external_cidrs: [{cidr: 1.2.3.0/24, peer_name: 'a b'}]",
     "compile.external_cidrs[0]", "must be a DNS name"),
])
def test_config_errors_name_the_entry(tmp_path: Path, text: str, record: str,
                                      message: str) -> None:
    path = write_config(tmp_path, "version: 1\n" + text + "\n")
    with pytest.raises(PlanError) as info:
        load_config(path)
    assert info.value.record == record and info.value.path == path
    assert message in info.value.message


def test_sample_declares_the_storefront_as_an_entry_point() -> None:
    sample = Path(__file__).resolve().parents[1] / "sample" / "segmenter.yaml"
    [entry] = load_config(str(sample)).compile.entry_points
    assert entry.workloads == WorkloadMatch(namespace="shop", selector=Labels.of(
        {"app": "frontend"}))


def test_container_ports_do_not_change_what_an_entry_point_allows() -> None:
    """The internet gets the ports clients were seen using, not every port a pod declares."""
    b, config = meant()
    b.pods = [dataclasses.replace(p, ports=(ContainerPort(8080), ContainerPort(9090)))
              if p.owner.name == "web" else p for p in b.pods]
    policy_set = lower(b.graph, plan(b.graph, config), b.inventory(), options=config.compile)
    web = next(p for p in policy_set.policies if p.name == "allow-web")
    ports = {port.port for r in web.ingress or () for port in r.ports}
    assert ports == {8080}


def test_the_report_shows_declared_flows_apart(tmp_path: Path) -> None:
    from segmenter.notebook import write_policies
    from segmenter.views.report.build import build_report
    from segmenter.views.report.document import render_markdown

    b, config = meant()
    result = plan(b.graph, config, dns_nodes=[DNS_NODE])
    inventory = b.inventory()
    folders = write_policies(lower(b.graph, result, inventory, options=config.compile),
                             tmp_path, ["calico"])
    strip_declared(b.graph)  # as graph.json holds it: the report puts them back from the plan
    report = build_report(b.graph, result, [str(folders["calico"])], inventory=inventory)
    text = render_markdown(report)
    assert "## Declared flows (not observed)" in text
    section = text.split("## Declared flows (not observed)", 1)[1].split("\n## ", 1)[0]
    assert "monthly settlement run (1st of the month)" in section
    assert "payments security lead" in section and "test.yaml declared_flows[0]" in section
    assert "DENIED" not in section
    register = text.split("## Allowed-flow register", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in register.splitlines() if "settlement" in line
               and "db" in line)
    assert "| declared |" in row and "*declared*: monthly settlement" in row
    assert "PCI DSS 1.2.5: settlement reads" in row and "payments security lead" in row
    # Nothing is said about the encryption of a flow never seen.
    encryption = text.split("## Encryption in transit", 1)[1].split("\n## ", 1)[0]
    assert "settlement" not in encryption
    assert not [f for f in report.findings if "declared flow" in f.message]


def test_the_readme_example_is_a_valid_config(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### segmenter.yaml: what is meant", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = load_config(write_config(tmp_path, example))
    assert config.declared_flows[0].justification
    assert config.compile.entry_points[0].cidrs == ("203.0.113.0/24",)
    assert config.compile.external_cidrs[0].workload == "shop/Deployment/frontend"
    assert set(config.compile.targets) == {"calico", "clusternetworkpolicy"}
