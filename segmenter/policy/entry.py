"""Internet entry points, and the cluster's own address ranges that internet rules leave out.

The clients a capture sees reaching a public service are a sample of the internet: allowing only
their addresses blocks every customer who was not captured. An *internet entry point* is
allowed from the internet instead, on the ports its outside clients were seen using:

- a workload behind a Service of type ``LoadBalancer`` or ``NodePort``, or with
  ``spec.externalIPs`` (reachable from outside the cluster by design);
- a recognised ingress or gateway controller (:data:`CONTROLLERS`, from its labels or image);
- one declared under ``entry_points`` in segmenter.yaml, optionally restricted to ``cidrs``.

"The internet" is ``0.0.0.0/0`` and ``::/0`` minus the cluster's pod, Service and node ranges
(:func:`internal_ranges`): without those exceptions a CNI that matches pod IPs with CIDRs
(Calico, policy-semantics.md §3.5) would also open the workload to every pod of the cluster. A
restricted workload is never widened automatically (PCI DSS 1.4.4: stores of cardholder data are
not directly reachable from untrusted networks); declaring it needs a justification and an
approver.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import networkx as nx

from segmenter.config import ClusterNetworks, CompileOptions, EntryPointMode
from segmenter.errors import PlanError
from segmenter.model import Inventory, Labels, Pod
from segmenter.planner import Plan, Zone

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ALL_V4: Final = ipaddress.ip_network("0.0.0.0/0")
ALL_V6: Final = ipaddress.ip_network("::/0")
# Service types reachable from outside the cluster (Kubernetes Service API).
_EXPOSED_TYPES: Final = frozenset({"LoadBalancer", "NodePort"})


@dataclass(frozen=True)
class InternalRanges:
    """The cluster's pod, Service and node ranges (covering CIDRs), and how they were found."""

    cidrs: tuple[str, ...]
    basis: tuple[str, ...]

    def networks(self) -> list[Network]:
        return [ipaddress.ip_network(c) for c in self.cidrs]

    def within(self, block: Network) -> tuple[str, ...]:
        """The ranges strictly inside ``block`` (what an ``except`` of it must hold)."""
        return tuple(str(n) for n in self.networks()
                     if n.version == block.version and n != block
                     and n.subnet_of(block))  # type: ignore[arg-type]

    def holding(self, block: Network) -> str | None:
        """The range that holds all of ``block`` (an address block inside the cluster)."""
        for net in self.networks():
            if net.version == block.version and block.subnet_of(net):  # type: ignore[arg-type]
                return str(net)
        return None


def internal_ranges(inventory: Inventory, declared: ClusterNetworks | None = None
                   ) -> InternalRanges:
    """The ranges the internet rules leave out.

    Pods: ``cluster.pod_cidrs``, else the Nodes' ``podCIDRs``, else the smallest CIDR covering
    every pod IP of each family. Services: ``cluster.service_cidrs``, else the smallest CIDR
    covering every ClusterIP of each family. Nodes: each node address (and each hostNetwork pod
    IP, a node address too). A covering CIDR may be wider than the real range, which only
    narrows what the internet may reach; ``cluster:`` in segmenter.yaml makes it exact.
    """
    declared = declared or ClusterNetworks()
    nets: list[Network] = []
    basis: list[str] = []
    if declared.pod_cidrs:
        nets += [ipaddress.ip_network(c) for c in declared.pod_cidrs]
        basis.append("pod ranges from segmenter.yaml cluster.pod_cidrs")
    else:
        node_cidrs = sorted({c for n in inventory.nodes for c in n.pod_cidrs})
        parsed = [n for n in (_net(c) for c in node_cidrs) if n is not None]
        if parsed:
            nets += parsed
            basis.append("pod ranges from the Nodes' podCIDRs")
        pod_ips = sorted({ip for p in inventory.pods if not p.host_network for ip in p.ips})
        outside = [ip for ip in pod_ips if not any(_in(ip, n) for n in parsed)]
        if outside:
            covers = _covering(outside)
            nets += covers
            basis.append("pod range(s) " + ", ".join(map(str, covers)) + " covering the pod "
                         "IPs of the inventory (set cluster.pod_cidrs for the exact range)")
    if declared.service_cidrs:
        nets += [ipaddress.ip_network(c) for c in declared.service_cidrs]
        basis.append("Service ranges from segmenter.yaml cluster.service_cidrs")
    else:
        cluster_ips = sorted({ip for s in inventory.services for ip in s.cluster_ips
                              if _net(ip) is not None})
        if cluster_ips:
            covers = _covering(cluster_ips)
            nets += covers
            basis.append("Service range(s) " + ", ".join(map(str, covers)) + " covering the "
                         "ClusterIPs of the inventory (set cluster.service_cidrs for the exact "
                         "range)")
    node_ips = sorted({a for n in inventory.nodes for a in n.addresses}
                      | {ip for p in inventory.pods if p.host_network for ip in p.ips})
    hosts = [n for n in (_net(a) for a in node_ips) if n is not None]
    if hosts:
        nets += hosts
        basis.append(f"{len(hosts)} node address(es)")
    merged: list[Network] = []
    for version in (4, 6):
        family = [n for n in nets if n.version == version]
        merged += list(ipaddress.collapse_addresses(family))  # type: ignore[type-var]
    return InternalRanges(tuple(str(n) for n in merged), tuple(basis))


def _net(text: str) -> Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _in(ip: str, net: Network) -> bool:
    addr = ipaddress.ip_address(ip)
    return addr.version == net.version and addr in net


def _covering(addresses: Iterable[str]) -> list[Network]:
    """The smallest CIDR holding every address, per family.

    >>> [str(n) for n in _covering(["10.244.1.2", "10.244.1.70"])]
    ['10.244.1.0/25']
    """
    out: list[Network] = []
    parsed = [ipaddress.ip_address(a) for a in addresses]
    for version in (4, 6):
        ips = sorted(ip for ip in parsed if ip.version == version)
        if not ips:
            continue
        low, high = int(ips[0]), int(ips[-1])
        bits = ips[0].max_prefixlen
        prefix = bits - (low ^ high).bit_length()
        out.append(ipaddress.ip_network(f"{ips[0]}/{prefix}", strict=False))
    return out


# ----------------------------------------------------------------------------------------------
# Ingress and gateway controllers


@dataclass(frozen=True)
class Controller:
    """A way to recognise the proxy pods of an ingress or gateway controller."""

    name: str
    labels: tuple[tuple[str, str], ...] = ()  # every pair must be on the pod template
    image: str = ""  # an image repository path the pods run (registry and tag ignored)
    source: str = ""

    def matches(self, labels: Labels, images: Iterable[str]) -> bool:
        if self.labels and all(labels.get(k) == v for k, v in self.labels):
            return True
        return bool(self.image) and any(_repository(i).endswith(self.image) for i in images)


def _repository(image: str) -> str:
    """``registry.k8s.io/ingress-nginx/controller:v1.5.2@sha256:...`` ->
    ``registry.k8s.io/ingress-nginx/controller``."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name[: name.rindex(":")]
    return name


# The labels and images each upstream's own manifests give the pods that receive client traffic
# (checked in the stored upstream repositories, paths below). Controllers without a proxy of
# their own (the Envoy Gateway control plane, Istio's istiod) are not entry points.
CONTROLLERS: Final = (
    Controller("ingress-nginx", (("app.kubernetes.io/name", "ingress-nginx"),
                                 ("app.kubernetes.io/component", "controller")),
               "ingress-nginx/controller",
               "kubernetes/ingress-nginx deploy/static/provider/cloud/deploy.yaml "
               "(the admission Jobs share the name label, component admission-webhook)"),
    Controller("Traefik", (("app.kubernetes.io/name", "traefik"),), "traefik",
               "traefik/traefik-helm-chart traefik/templates/_helpers.tpl (traefik.labelselector)"),
    Controller("HAProxy Kubernetes Ingress", (), "haproxytech/kubernetes-ingress",
               "haproxytech/kubernetes-ingress deploy/haproxy-ingress.yaml (label run: "
               "haproxy-ingress, too generic to rely on)"),
    Controller("HAProxy Ingress", (), "jcmoraisjr/haproxy-ingress",
               "jcmoraisjr/haproxy-ingress images"),
    Controller("Envoy Gateway proxy", (("app.kubernetes.io/managed-by", "envoy-gateway"),
                                       ("app.kubernetes.io/component", "proxy")), "",
               "envoyproxy/gateway internal/infrastructure/kubernetes/proxy/testdata/"
               "deployments/default.yaml"),
    Controller("Istio ingress gateway", (("istio", "ingressgateway"),), "",
               "istio/istio manifests/charts/gateway/templates/_helpers.tpl "
               "(gateway.selectorLabels; the egress gateway is istio: egressgateway)"),
)


@dataclass(frozen=True)
class EntryPoint:
    """A policed workload the internet may reach: ``cidrs`` (a declared override) or, when
    empty, the internet minus the cluster's ranges."""

    node: str
    reason: str
    cidrs: tuple[str, ...] = ()
    declared: bool = False


def find_entry_points(graph: nx.DiGraph, plan: Plan, inventory: Inventory,
                      options: CompileOptions) -> tuple[dict[str, EntryPoint], list[str]]:
    """The internet entry points among the policed workloads, and notes on what was left out.

    Raises:
        PlanError: a declared entry point that matches no policed workload, or that is
            restricted and lacks a justification or an approver.
    """
    policed = set(plan.policed)
    restricted = {m.node: scope.data_class for scope in plan.classes
                  for m in scope.members(Zone.RESTRICTED)}
    found: dict[str, EntryPoint] = {}
    notes: list[str] = []
    for decl in options.entry_points:
        hits = sorted(n for n in policed if decl.workloads.matches(
            n, graph.nodes[n].get("namespace"), Labels.of(graph.nodes[n].get("labels") or {})))
        record = decl.source.split(" ", 1)[-1] if decl.source else "entry_points"
        if not hits:
            raise PlanError(f"{decl.workloads.describe()} matches no policed workload",
                            path=options.path, record=record)
        for node in hits:
            if node in restricted and not (decl.justification and decl.approved_by):
                raise PlanError(
                    f"{node} is in the restricted {restricted[node]} zone: an internet entry "
                    "point into it needs `justification` and `approved_by` (PCI DSS 1.4.4), or "
                    "it is refused", path=options.path, record=record)
            found[node] = EntryPoint(node, f"declared in {decl.source}: {decl.reason}",
                                     decl.cidrs, True)
    if options.entry_point_mode is EntryPointMode.AUTO:
        for node, why in sorted(_detected(inventory).items()):
            if node not in policed or node in found:
                continue
            if node in restricted:
                notes.append(f"{node} is {why}, but it is in the restricted {restricted[node]} "
                             "zone: only the clients seen are allowed (PCI DSS 1.4.4); declare it "
                             "under entry_points with a justification to allow the internet")
                continue
            found[node] = EntryPoint(node, why)
    return found, notes


def _detected(inventory: Inventory) -> dict[str, str]:
    """Workload id -> why it is an entry point, from Services and controller recognition."""
    out: dict[str, list[str]] = {}
    pods_by_ns: dict[str, list[Pod]] = {}
    for pod in inventory.pods:
        pods_by_ns.setdefault(pod.namespace, []).append(pod)
    for svc in sorted(inventory.services, key=lambda s: (s.namespace, s.name)):
        kinds = [svc.type] if svc.type in _EXPOSED_TYPES else []
        if svc.external_ips:
            kinds.append("externalIPs")
        if not kinds or not svc.selector:
            continue
        owners = {p.owner.id for p in pods_by_ns.get(svc.namespace, [])
                  if p.labels.matches(svc.selector)}
        for owner in owners:
            out.setdefault(owner, []).append(
                f"behind Service {svc.namespace}/{svc.name} ({', '.join(kinds)})")
    images: dict[str, set[str]] = {}
    pairs: dict[str, set[tuple[str, str]]] = {}
    for pod in inventory.pods:
        images.setdefault(pod.owner.id, set()).update(pod.images)
        pairs.setdefault(pod.owner.id, set()).update(pod.labels.items)
    for workload in inventory.workloads:
        pairs.setdefault(workload.ref.id, set()).update(workload.template_labels.items)
    for wid in sorted(pairs):
        labels = Labels(tuple(sorted(pairs[wid])))
        for controller in CONTROLLERS:
            if controller.matches(labels, images.get(wid, ())):
                out.setdefault(wid, []).append(f"the {controller.name} controller")
                break
    return {wid: "; ".join(sorted(set(why))) for wid, why in out.items()}


__all__ = [
    "CONTROLLERS",
    "Controller",
    "EntryPoint",
    "InternalRanges",
    "find_entry_points",
    "internal_ranges",
]
