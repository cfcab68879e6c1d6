"""Compiled policies, rules and the endpoint view they match against.

Both Kubernetes NetworkPolicy and Calico policy compile into :class:`CompiledPolicy` objects
held in :class:`Tier`\\ s, so one evaluation loop (Calico's tier algorithm, policy-semantics.md
§3.4) serves both enforcement modes. A Kubernetes-only cluster is the special case of one tier,
``default``, holding only Allow rules: a pod that some policy selects for a direction is isolated
(end-of-tier deny), a pod that none selects is allowed (§1.9). ClusterNetworkPolicy (§2.7) is
the same loop with two more tiers around ``default``, both ending in Pass: Admin before it,
Baseline after it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from segmenter.evaluate.model import (
    Action,
    Direction,
    EvalEndpoint,
    IPAddress,
    IPNetwork,
    PortRange,
)
from segmenter.evaluate.selector import Node
from segmenter.k8s import NAMESPACE_NAME_LABEL
from segmenter.model import ContainerPort, Transport

# Labels Calico puts on every Kubernetes workload endpoint and namespace (§3.2).
CALICO_NAMESPACE = "projectcalico.org/namespace"
CALICO_ORCHESTRATOR = "projectcalico.org/orchestrator"
CALICO_SERVICE_ACCOUNT = "projectcalico.org/serviceaccount"
CALICO_NAME = "projectcalico.org/name"
K8S_NAMESPACE_NAME = NAMESPACE_NAME_LABEL

EMPTY: Mapping[str, str] = {}


@dataclass(frozen=True, eq=False)
class NetSet:
    """A Calico NetworkSet (namespaced) or GlobalNetworkSet: labelled CIDRs that selectors see.

    ``domains`` (Calico Enterprise ``allowedEgressDomains``): the set also holds the addresses
    those names resolve to, but only for the destination selector of an egress Allow rule
    ("domain names have no effect in ingress rules, or in a rule whose action is not Allow",
    Calico Enterprise GlobalNetworkSet reference)."""

    kind: str
    name: str
    namespace: str | None
    labels: Mapping[str, str]
    nets: tuple[IPNetwork, ...]
    domains: tuple[FqdnSelector, ...] = ()

    @property
    def display(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else (
            f"{self.kind} {self.name}"
        )


@dataclass(frozen=True, eq=False)
class Identity:
    """Something a Calico selector can select: a pod or a network set holding the address."""

    labels: Mapping[str, str]
    namespace: str | None
    ns_labels: Mapping[str, str]
    service_account: str | None  # pods only
    sa_labels: Mapping[str, str]


@dataclass(eq=False)
class Subject:
    """An :class:`EvalEndpoint` resolved for matching: labels as dicts, parsed IP, network sets."""

    ep: EvalEndpoint
    is_pod: bool
    namespace: str | None  # the pod's namespace; None for anything that is not a pod
    pod_labels: Mapping[str, str]  # the pod's own labels (Kubernetes selectors)
    labels: Mapping[str, str]  # Calico's view: pod labels plus the automatic labels
    ns_labels: Mapping[str, str]
    ip: IPAddress | None
    identities: tuple[Identity, ...]  # the pod (if a pod), then network sets containing the IP
    ports: tuple[ContainerPort, ...]  # declared container ports (pods only)
    # Cilium: the names this pod's DNS lookups are visible to the DNS proxy for (rules.dns).
    fqdn_visible: tuple[FqdnSelector, ...] = ()
    # Calico Enterprise: network sets holding the address only through a domain name it is
    # known by (allowedEgressDomains); seen by egress Allow destinations only.
    domain_identities: tuple[Identity, ...] = ()


def ip_in(ip: IPAddress | None, net: IPNetwork) -> bool:
    return ip is not None and ip.version == net.version and ip in net


# --------------------------------------------------------------------------------------------
# Kubernetes rules


@dataclass(frozen=True)
class IPBlockPeer:
    """``ipBlock``: ``cidr`` minus ``except``. ``match_pods`` is the [I] choice of §1.5."""

    cidr: IPNetwork
    excepts: tuple[IPNetwork, ...]
    match_pods: bool

    def match(self, subj: Subject, policy_ns: str) -> bool:
        if subj.is_pod and not self.match_pods:
            return False
        ip = subj.ip
        return ip_in(ip, self.cidr) and not any(ip_in(ip, e) for e in self.excepts)


@dataclass(frozen=True)
class SelectorPeer:
    """``podSelector`` and/or ``namespaceSelector`` in one peer (AND); matches pods only."""

    namespace_selector: Node | None
    pod_selector: Node | None

    def match(self, subj: Subject, policy_ns: str) -> bool:
        if not subj.is_pod:
            return False
        if self.namespace_selector is None:
            if subj.namespace != policy_ns:
                return False
        elif not self.namespace_selector.match(subj.ns_labels):
            return False
        return self.pod_selector is None or self.pod_selector.match(subj.pod_labels)


K8sPeer = IPBlockPeer | SelectorPeer


@dataclass(frozen=True)
class K8sPort:
    protocol: Transport
    range: PortRange | None  # None: every port of the protocol


@dataclass(frozen=True)
class K8sRule:
    """One ``ingress[]``/``egress[]`` entry: peers ORed, ports ORed, peers AND ports.

    ``peers``/``ports`` empty means missing or ``[]``: any peer / any port and protocol (§1.4).
    """

    direction: Direction
    index: int
    namespace: str
    peers: tuple[K8sPeer, ...]
    ports: tuple[K8sPort, ...]
    action: Action = Action.ALLOW

    def matches(self, src: Subject, dst: Subject, proto: Transport, port: int | None) -> bool:
        if self.peers:
            peer = src if self.direction is Direction.INGRESS else dst
            if not any(p.match(peer, self.namespace) for p in self.peers):
                return False
        if not self.ports:
            return True
        dst_ports = dst.ports if dst.is_pod else ()
        for p in self.ports:
            if p.protocol == proto and (p.range is None or p.range.contains(port, proto,
                                                                            dst_ports)):
                return True
        return False


# --------------------------------------------------------------------------------------------
# Calico rules


@dataclass(frozen=True)
class Entity:
    """A Calico ``source``/``destination`` EntityRule, with its selector scope resolved.

    ``positive`` is true when Calico builds a positive endpoint selector for the entity
    (``rules.go``): a selector, service accounts or namespaceSelector is set, or a notSelector in
    a namespaced policy (which scopes it to the policy's namespace, trap 3.8.6).
    """

    nets: tuple[IPNetwork, ...] | None = None
    not_nets: tuple[IPNetwork, ...] = ()
    positive: bool = False
    scope_ns: str | None = None
    namespace_selector: Node | None = None
    selector: Node | None = None
    sa_names: frozenset[str] | None = None
    sa_selector: Node | None = None
    not_selector: Node | None = None
    ports: tuple[PortRange, ...] | None = None
    not_ports: tuple[PortRange, ...] = ()
    services: bool = False
    # Calico Enterprise ``domains``: the peer's address came from a DNS answer for one of them.
    domains: tuple[FqdnSelector, ...] | None = None

    def match_identity(self, ident: Identity) -> bool:
        if self.namespace_selector is not None:
            if not self.namespace_selector.match(ident.ns_labels,
                                                 namespaced=ident.namespace is not None):
                return False
        elif self.scope_ns is not None and ident.namespace != self.scope_ns:
            return False
        if self.sa_names is not None and ident.service_account not in self.sa_names:
            return False
        if self.sa_selector is not None and not self.sa_selector.match(ident.sa_labels):
            return False
        return self.selector is None or self.selector.match(ident.labels)

    def matches(self, subj: Subject, proto: Transport, port: int | None, *,
                egress_allow: bool = False) -> bool:
        """``egress_allow``: the entity is the destination of an egress Allow rule, the one
        place where domain names (rule ``domains``, network sets' ``allowedEgressDomains``)
        take effect; elsewhere a rule's ``domains`` matches nothing (fail closed)."""
        if self.services:
            return False
        ip = subj.ip
        if self.nets is not None and not any(ip_in(ip, n) for n in self.nets):
            return False
        if self.not_nets and any(ip_in(ip, n) for n in self.not_nets):
            return False
        if self.domains is not None and not (
                egress_allow and not subj.is_pod
                and any(d.match(n) for n in subj.ep.dns_names for d in self.domains)):
            return False
        identities = (*subj.identities, *subj.domain_identities) if egress_allow \
            else subj.identities
        if self.positive and not any(self.match_identity(i) for i in identities):
            return False
        if self.not_selector is not None and any(
            self.not_selector.match(i.labels) for i in subj.identities
        ):
            return False
        own_ports = subj.ports if subj.is_pod else ()
        if self.ports is not None and not any(r.contains(port, proto, own_ports)
                                              for r in self.ports):
            return False
        return not (self.not_ports and any(r.contains(port, proto, own_ports)
                                           for r in self.not_ports))


@dataclass(frozen=True)
class CalicoRule:
    """A Calico rule: every criterion must match (AND).

    ``protocol`` / ``not_protocol`` are sets of transports (an empty set, e.g. for ``UDPLite``,
    which :class:`Transport` does not model, matches no connection). For ICMP the connection's
    ``port`` is read as the ICMP type.
    """

    direction: Direction
    index: int
    action: Action
    protocol: frozenset[Transport] | None = None
    not_protocol: frozenset[Transport] | None = None
    ip_version: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    not_icmp_type: int | None = None
    not_icmp_code: int | None = None
    source: Entity = field(default_factory=Entity)
    destination: Entity = field(default_factory=Entity)

    def matches(self, src: Subject, dst: Subject, proto: Transport, port: int | None) -> bool:
        if self.protocol is not None and proto not in self.protocol:
            return False
        if self.not_protocol is not None and proto in self.not_protocol:
            return False
        if self.ip_version is not None:
            for ip in (src.ip, dst.ip):
                if ip is not None and ip.version != self.ip_version:
                    return False
        is_icmp = proto in (Transport.ICMP, Transport.ICMPV6)
        if self.icmp_type is not None and (
            not is_icmp or port != self.icmp_type or self.icmp_code is not None
        ):
            return False
        if (self.not_icmp_type is not None and is_icmp and port == self.not_icmp_type
                and self.not_icmp_code is None):
            return False
        # The source port of a connection is not known: source ports never match.
        if not self.source.matches(src, proto, None):
            return False
        egress_allow = self.direction is Direction.EGRESS and self.action is Action.ALLOW
        return self.destination.matches(dst, proto, None if is_icmp else port,
                                        egress_allow=egress_allow)


# --------------------------------------------------------------------------------------------
# Cilium rules (policy-semantics.md §4.5, §4.6, §4.9)

# Identity label keys Cilium gives every pod (pkg/k8s/apis/cilium.io constants).
CILIUM_NAMESPACE = "k8s:io.kubernetes.pod.namespace"
CILIUM_NAMESPACE_LABELS = "io.cilium.k8s.namespace.labels."
CILIUM_SERVICE_ACCOUNT = "io.cilium.k8s.policy.serviceaccount"
CILIUM_CLUSTER = "io.cilium.k8s.policy.cluster"


@dataclass(frozen=True)
class FqdnSelector:
    """A ``matchName`` or ``matchPattern`` (compiled; matched case-insensitively without the
    trailing dot)."""

    text: str
    regex: re.Pattern[str]

    def match(self, name: str) -> bool:
        return self.regex.fullmatch(name.lower().rstrip(".")) is not None


@dataclass(frozen=True)
class PeerIdentity:
    """What a Cilium rule sees of the other end: identity labels (``source:key``, plus an
    ``any:key`` copy of each), the entities it belongs to, whether it is outside the cluster
    (``world``: CIDR and FQDN selectors see only such peers under the default
    ``policy-cidr-match-mode``, §4.5)."""

    labels: Mapping[str, str]
    entities: frozenset[str]
    world: bool


def cilium_peer(peer: Subject, local: Subject) -> PeerIdentity:
    """The identity of ``peer`` as seen from the policy subject ``local`` (§4.2, §4.5).

    A pod-network pod has its identity labels (``Subject.labels`` under Cilium enforcement). A
    node, or a hostNetwork pod, is ``host`` on the subject's own node and ``remote-node``
    elsewhere. An API server endpoint is ``kube-apiserver`` plus its node identity, or plus
    ``world`` outside the cluster (identity.ReservedIdentityKubeAPIServer carries remote-node).
    Anything else is ``world``.
    """
    if peer.is_pod:
        return PeerIdentity(peer.labels, frozenset({"cluster", "all"}), False)
    ep = peer.ep
    reserved: set[str] = set()
    if ep.node is not None or ep.host_network:
        reserved.add("host" if ep.node is not None and ep.node == local.ep.node
                     else "remote-node")
    if ep.kube_apiserver:
        reserved.add("kube-apiserver")
    if not reserved & {"host", "remote-node"}:
        reserved.add("world")
    labels = {f"{source}:{name}": "" for name in reserved for source in ("reserved", "any")}
    entities = reserved | {"all"}
    if reserved & {"host", "remote-node", "kube-apiserver"}:
        entities.add("cluster")
    return PeerIdentity(labels, frozenset(entities), "world" in reserved)


@dataclass(frozen=True)
class CiliumPort:
    """One ``toPorts[].ports[]`` entry: ``range`` None is port ``"0"`` (every port)."""

    protocols: frozenset[Transport]
    range: PortRange | None


@dataclass(frozen=True)
class CiliumRule:
    """One Cilium allow or deny entry: one L3 peer kind (or none), then ``toPorts`` or
    ``icmps`` (§4.5, §4.6).

    L3 fields left ``None`` are absent. A rule with no L3 field matches every peer when it has
    ``toPorts`` or ``icmps``, and nothing otherwise (``ingress: [{}]``). ``ports`` None means no
    ``toPorts``: every port and protocol. ``dns`` holds the L7 DNS rules of the entry's
    ``toPorts`` (their lookups go through the DNS proxy, which is how ``toFQDNs`` learns
    addresses); other L7 rules count as L4 allows (§4.7). ``path`` names the entry in its
    manifest (``ingressDeny[0]``, ``specs[1].egress[2]``).
    """

    direction: Direction
    index: int
    path: str
    action: Action
    selectors: tuple[Node, ...] | None = None
    entities: frozenset[str] | None = None
    cidrs: tuple[tuple[IPNetwork, tuple[IPNetwork, ...]], ...] | None = None
    fqdns: tuple[FqdnSelector, ...] | None = None
    ports: tuple[CiliumPort, ...] | None = None
    icmps: tuple[tuple[Transport, int], ...] | None = None
    dns: tuple[FqdnSelector, ...] = ()

    def nets(self) -> list[IPNetwork]:
        """Every CIDR the rule tells apart (for the engine's IP classes)."""
        return [n for cidr, excepts in self.cidrs or () for n in (cidr, *excepts)]

    def matches(self, src: Subject, dst: Subject, proto: Transport, port: int | None) -> bool:
        local, peer = (dst, src) if self.direction is Direction.INGRESS else (src, dst)
        if not self._l3(local, peer):
            return False
        return self._l4(dst, proto, port)

    def _l3(self, local: Subject, peer: Subject) -> bool:
        if self.selectors is not None:
            labels = cilium_peer(peer, local).labels
            return any(s.match(labels) for s in self.selectors)
        if self.entities is not None:
            if "all" in self.entities:
                return True
            ident = cilium_peer(peer, local)
            return bool(self.entities & ident.entities)
        if self.cidrs is not None:
            if not cilium_peer(peer, local).world:
                return False
            ip = peer.ip
            return any(ip_in(ip, cidr) and not any(ip_in(ip, e) for e in excepts)
                       for cidr, excepts in self.cidrs)
        if self.fqdns is not None:
            if not cilium_peer(peer, local).world:
                return False
            # Only names the DNS proxy saw this pod look up are known to Cilium (§4.5).
            return any(f.match(name) and any(v.match(name) for v in local.fqdn_visible)
                       for name in peer.ep.dns_names for f in self.fqdns)
        return self.ports is not None or self.icmps is not None

    def _l4(self, dst: Subject, proto: Transport, port: int | None) -> bool:
        if self.icmps is not None:
            return any(proto is t and port == number for t, number in self.icmps)
        if self.ports is None:
            return True
        dst_ports = dst.ports if dst.is_pod else ()
        for p in self.ports:
            if proto not in p.protocols:
                continue
            if p.range is None or p.range.contains(port, proto, dst_ports):
                return True
        return False


# --------------------------------------------------------------------------------------------
# ClusterNetworkPolicy rules (policy.networking.k8s.io/v1alpha2, policy-semantics.md §2.7)


@dataclass(frozen=True)
class CnpPeer:
    """One ``from[]``/``to[]`` peer of a ClusterNetworkPolicy rule.

    ``kind`` is the field the peer sets: ``namespaces`` and ``pods`` match pod-network pods only
    (never host-networked ones, §2.4); ``networks`` matches any address in its CIDRs, pod IPs
    included. ``nodes`` and ``domainNames`` need Node objects and name resolution, which the
    engine does not have: they match nothing (only compiled in Accept rules, see
    :mod:`segmenter.evaluate.clusternetworkpolicy`).
    """

    kind: str
    namespace_selector: Node | None = None
    pod_selector: Node | None = None
    networks: tuple[IPNetwork, ...] = ()

    def match(self, other: Subject) -> bool:
        if self.kind == "networks":
            return any(ip_in(other.ip, n) for n in self.networks)
        if self.kind not in ("namespaces", "pods") or not other.is_pod:
            return False
        if self.namespace_selector is not None and not self.namespace_selector.match(
                other.ns_labels):
            return False
        return self.pod_selector is None or self.pod_selector.match(other.pod_labels)


@dataclass(frozen=True)
class CnpProtocol:
    """A ``protocols[]`` entry: ``protocol`` None is a ``destinationNamedPort`` (resolved on the
    destination pod for the connection's own protocol, §2.5)."""

    protocol: Transport | None
    range: PortRange


@dataclass(frozen=True)
class CnpRule:
    """A ClusterNetworkPolicy rule: any peer AND (no ``protocols`` or any entry) (§2.7).

    ``match_all`` is the fail-closed form of a Deny or Pass rule holding a peer with no field
    this engine knows: upstream says to treat it as "deny all" (§2.4), so it is compiled as a
    Deny that matches everything.
    """

    direction: Direction
    index: int
    action: Action
    name: str
    peers: tuple[CnpPeer, ...]
    protocols: tuple[CnpProtocol, ...] | None
    match_all: bool = False

    @property
    def networks(self) -> tuple[IPNetwork, ...]:
        return tuple(n for p in self.peers for n in p.networks)

    def matches(self, src: Subject, dst: Subject, proto: Transport, port: int | None) -> bool:
        if self.match_all:
            return True
        other = src if self.direction is Direction.INGRESS else dst
        if not any(p.match(other) for p in self.peers):
            return False
        if self.protocols is None:
            return True
        dst_ports = dst.ports if dst.is_pod else ()
        for entry in self.protocols:
            if entry.protocol is None:
                if entry.range.contains(port, proto, dst_ports):
                    return True
            elif entry.protocol == proto and entry.range.contains(port, proto, ()):
                return True
        return False


Rule = K8sRule | CalicoRule | CiliumRule | CnpRule


# --------------------------------------------------------------------------------------------
# Policies and tiers


@dataclass(eq=False)
class CompiledPolicy:
    """A policy ready to evaluate, whichever API it came from.

    ``kind`` is one of ``k8s`` (networking.k8s.io NetworkPolicy), ``np`` (Calico NetworkPolicy),
    ``gnp`` (GlobalNetworkPolicy), ``cnp`` / ``ccnp`` / ``knp`` (CiliumNetworkPolicy,
    CiliumClusterwideNetworkPolicy, a Kubernetes policy as Cilium enforces it), ``clusternp``
    (ClusterNetworkPolicy: ``namespace_selector`` and ``selector`` are its subject's selectors,
    ``order`` its priority). ``key`` is the name Calico sorts on within an order: the policy
    name, prefixed by ``<namespace>/`` for namespaced policies.
    """

    kind: str
    display: str
    namespace: str | None
    name: str
    tier: str
    order: float | None
    types: frozenset[Direction]
    ingress: tuple[Rule, ...]
    egress: tuple[Rule, ...]
    selector: Node
    namespace_selector: Node | None = None
    sa_selector: Node | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def sort_key(self) -> tuple[float, str]:
        return (math.inf if self.order is None else self.order, self.key)

    def rules(self, direction: Direction) -> tuple[Rule, ...]:
        return self.ingress if direction is Direction.INGRESS else self.egress

    def selects(self, subj: Subject) -> bool:
        """Whether the policy applies to ``subj`` (a pod-network pod), whatever the direction."""
        if not subj.is_pod:
            return False
        if self.kind == "k8s":
            return subj.namespace == self.namespace and self.selector.match(subj.pod_labels)
        if self.namespace is not None and subj.namespace != self.namespace:
            return False
        if self.namespace_selector is not None and not self.namespace_selector.match(
            subj.ns_labels, namespaced=True
        ):
            return False
        if self.sa_selector is not None:
            sa = subj.labels.get(CALICO_SERVICE_ACCOUNT)
            if not self.sa_selector.match({CALICO_NAME: sa} if sa else EMPTY):
                return False
        return self.selector.match(subj.labels)


@dataclass
class Tier:
    """A Calico tier: ``order`` (None sorts last), ``default_action`` Deny or Pass."""

    name: str
    order: float | None
    default_action: Action = Action.DENY
    policies: list[CompiledPolicy] = field(default_factory=list)

    def sort_key(self) -> tuple[float, str]:
        return (math.inf if self.order is None else self.order, self.name)


# Tiers Calico always has (§3.4). Only tiers holding a policy that selects an endpoint matter.
BUILTIN_TIERS: dict[str, tuple[float | None, Action]] = {
    "default": (1_000_000.0, Action.DENY),
    "kube-admin": (1_000.0, Action.PASS),
    "kube-baseline": (10_000_000.0, Action.PASS),
    "adminnetworkpolicy": (1_000.0, Action.PASS),
    "baselineadminnetworkpolicy": (10_000_000.0, Action.PASS),
}
