"""The core model: Kubernetes identities and observed flows, as frozen dataclasses.

Everything here is plain data (its only project import is :mod:`segmenter.k8s`'s facts), so
every stage (inventory, graph, planner, policy IR, dialects) can share it. Plain dicts appear
only at the JSON/YAML edge.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from segmenter.k8s import VOLATILE_LABEL_KEYS


class Direction(enum.StrEnum):
    """A direction of policy: ingress (to the selected pod) or egress (from it)."""

    INGRESS = "ingress"
    EGRESS = "egress"

    @property
    def type_name(self) -> str:
        """The spelling in NetworkPolicy ``policyTypes`` / Calico ``types``: ``Ingress``."""
        return "Ingress" if self is Direction.INGRESS else "Egress"


class Action(enum.StrEnum):
    """What a policy rule does with a connection it matches."""

    ALLOW = "Allow"
    DENY = "Deny"
    PASS = "Pass"  # hand the decision to the next tier (Calico tiers)
    LOG = "Log"  # record and continue with the next rule (Calico)


class Transport(enum.StrEnum):
    """An IP transport as NetworkPolicy and Calico name it."""

    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"
    ICMP = "ICMP"
    ICMPV6 = "ICMPv6"

    @classmethod
    def parse(cls, value: str) -> Transport:
        """Read a transport name in any letter case (``tcp``, ``ICMPv6``)."""
        if value in cls._value2member_map_:
            return cls(value)
        for member in cls:
            if member.value.lower() == value.lower():
                return member
        raise ValueError(f"unknown protocol {value!r}")


@dataclass(frozen=True, order=True)
class Labels:
    """A sorted, hashable label map."""

    items: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, labels: Mapping[str, str] | None) -> Labels:
        """Build from a mapping (``None`` is empty).

        >>> Labels.of({"b": "2", "a": "1"}).items
        (('a', '1'), ('b', '2'))
        """
        return cls(tuple(sorted((str(k), str(v)) for k, v in (labels or {}).items())))

    def as_dict(self) -> dict[str, str]:
        return dict(self.items)

    def get(self, key: str) -> str | None:
        for k, v in self.items:
            if k == key:
                return v
        return None

    def matches(self, selector: Labels) -> bool:
        """True when every pair of ``selector`` is present here (equality selector)."""
        own = dict(self.items)
        return all(own.get(k) == v for k, v in selector.items)

    def stable(self) -> Labels:
        """Without the per-rollout and per-pod keys in ``VOLATILE_LABEL_KEYS``."""
        return Labels(tuple((k, v) for k, v in self.items if k not in VOLATILE_LABEL_KEYS))

    def __bool__(self) -> bool:
        return bool(self.items)

    def __hash__(self) -> int:
        # Cached: label sets key the compiler's dictionaries millions of times on large plans,
        # and a tuple of tuples rehashes every element on every call.
        cached: int | None = self.__dict__.get("_hash")
        if cached is None:
            cached = hash(self.items)
            object.__setattr__(self, "_hash", cached)
        return cached


@dataclass(frozen=True, order=True)
class WorkloadRef:
    """The top owner of a pod: Deployment, StatefulSet, DaemonSet, CronJob, Job or bare Pod."""

    namespace: str
    kind: str
    name: str

    @property
    def id(self) -> str:
        """The graph node id: ``namespace/Kind/name``."""
        return f"{self.namespace}/{self.kind}/{self.name}"

    @classmethod
    def parse(cls, node_id: str) -> WorkloadRef:
        namespace, kind, name = node_id.split("/", 2)
        return cls(namespace, kind, name)


class NodeKind(enum.StrEnum):
    """What a graph node stands for (docs/graph-format.md)."""

    WORKLOAD = "workload"
    NODE = "node"  # a cluster node (and its hostNetwork pods)
    APISERVER = "apiserver"
    EXTERNAL = "external"  # an address outside the cluster, or a DNS-named set of them


@dataclass(frozen=True)
class NodeId:
    """A graph node id, parsed once: which kind of entity it names, and which one.

    Graph node ids are strings in the graph and its files: ``namespace/Kind/name`` for a
    workload, ``node:<name>``, ``apiserver``, ``external:<address>`` and ``external:name:<dns
    name>`` for a set of external addresses named by DNS. Make them with the ``of_*``
    functions, read them with :meth:`parse`.

    >>> NodeId.parse("payments/Deployment/api").workload
    WorkloadRef(namespace='payments', kind='Deployment', name='api')
    >>> NodeId.parse("external:name:api.stripe.com").dns_name
    'api.stripe.com'
    """

    text: str
    kind: NodeKind
    workload: WorkloadRef | None = None
    node_name: str | None = None
    address: str | None = None  # an external address
    dns_name: str | None = None  # the name of an external named set

    @staticmethod
    def parse(text: str) -> NodeId:
        """Raises ValueError for text that is no node id."""
        return _parse_node_id(text)

    @staticmethod
    def of_workload(ref: WorkloadRef) -> str:
        return ref.id

    @staticmethod
    def of_node(name: str) -> str:
        return NODE_ID_PREFIX + name

    @staticmethod
    def of_external(address: str) -> str:
        return EXTERNAL_ID_PREFIX + address

    @staticmethod
    def of_named_set(dns_name: str) -> str:
        return NAMED_SET_ID_PREFIX + dns_name


APISERVER_ID: Final = "apiserver"
NODE_ID_PREFIX: Final = "node:"
EXTERNAL_ID_PREFIX: Final = "external:"
NAMED_SET_ID_PREFIX: Final = "external:name:"


@functools.lru_cache(maxsize=1 << 16)
def _parse_node_id(text: str) -> NodeId:
    if text == APISERVER_ID:
        return NodeId(text, NodeKind.APISERVER)
    if text.startswith(NODE_ID_PREFIX):
        return NodeId(text, NodeKind.NODE, node_name=text[len(NODE_ID_PREFIX):])
    if text.startswith(NAMED_SET_ID_PREFIX):
        return NodeId(text, NodeKind.EXTERNAL, dns_name=text[len(NAMED_SET_ID_PREFIX):])
    if text.startswith(EXTERNAL_ID_PREFIX):
        return NodeId(text, NodeKind.EXTERNAL, address=text[len(EXTERNAL_ID_PREFIX):])
    parts = text.split("/")
    if len(parts) == 3 and all(parts):
        return NodeId(text, NodeKind.WORKLOAD, workload=WorkloadRef(*parts))
    raise ValueError(f"not a graph node id: {text!r}")


def is_workload_id(text: str) -> bool:
    """True for a ``namespace/Kind/name`` node id."""
    try:
        return _parse_node_id(text).kind is NodeKind.WORKLOAD
    except ValueError:
        return False


class Resolution(enum.StrEnum):
    """How a flow endpoint's address was mapped to a graph node (``segmenter.graph.resolve``)."""

    POD = "pod"
    SERVICE = "service"  # a ClusterIP, externalIP or load-balancer IP, DNAT to its backend
    NODEPORT = "nodeport"
    NODELOCAL_DNS = "nodelocal-dns"  # NodeLocal DNSCache's link-local address
    APISERVER = "apiserver"
    NODE = "node"
    EXTERNAL = "external"
    # A well-known service on a link-local address, named as such (cloud metadata, a cloud or
    # node-local DNS resolver): an external node that policy reaches by ipBlock.
    LINK_LOCAL_SERVICE = "link-local-service"
    # Loopback, other link-local, multicast, broadcast or unspecified: no policy can name it
    # as a peer; flows with such an end are left out of the graph, counted.
    SPECIAL = "special"

    @property
    def dnat(self) -> bool:
        """The address was rewritten on the way (the server pod saw another one)."""
        return self in _DNAT_RESOLUTIONS


_DNAT_RESOLUTIONS: Final = frozenset({Resolution.SERVICE, Resolution.NODEPORT,
                                      Resolution.NODELOCAL_DNS})


@dataclass(frozen=True, order=True)
class ContainerPort:
    """A port a container declares (``spec.containers[].ports[]``)."""

    port: int
    protocol: Transport = Transport.TCP
    name: str | None = None


@dataclass(frozen=True)
class Pod:
    """One pod as the inventory saw it, with the interval during which it held its IPs."""

    namespace: str
    name: str
    labels: Labels
    ips: tuple[str, ...]
    owner: WorkloadRef
    node: str | None = None
    host_network: bool = False
    ports: tuple[ContainerPort, ...] = ()
    annotations: Labels = Labels()
    service_account: str | None = None
    # Epoch seconds; None means "since before the capture" / "still running".
    start: float | None = None
    end: float | None = None
    images: tuple[str, ...] = ()  # container images, for data-store suggestions


@dataclass(frozen=True, order=True)
class ServicePort:
    """One entry of ``Service.spec.ports``; ``target_port`` may be a number or a port name."""

    port: int
    protocol: Transport = Transport.TCP
    target_port: int | str | None = None
    name: str | None = None
    node_port: int | None = None


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    type: str = "ClusterIP"
    cluster_ips: tuple[str, ...] = ()
    external_ips: tuple[str, ...] = ()
    selector: Labels = Labels()
    ports: tuple[ServicePort, ...] = ()
    labels: Labels = Labels()
    # status.loadBalancer.ingress[].ip (added for inventory resolution; kept apart from
    # spec.externalIPs because cloud load balancers may SNAT or proxy).
    load_balancer_ips: tuple[str, ...] = ()


@dataclass(frozen=True, order=True)
class SliceEndpoint:
    """An address of an EndpointSlice, with the pod it points to when there is one."""

    addresses: tuple[str, ...]
    pod: str | None = None  # target pod name in the slice's namespace
    node: str | None = None


@dataclass(frozen=True)
class EndpointSlice:
    namespace: str
    name: str
    service: str | None
    endpoints: tuple[SliceEndpoint, ...] = ()
    ports: tuple[ServicePort, ...] = ()  # port = the endpoint's (post-DNAT) port


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: Labels = Labels()
    annotations: Labels = Labels()


@dataclass(frozen=True)
class Node:
    name: str
    addresses: tuple[str, ...] = ()
    labels: Labels = Labels()
    pod_cidrs: tuple[str, ...] = ()  # spec.podCIDRs: the pod addresses allocated to this node


@dataclass(frozen=True)
class Workload:
    """A controller object (or a bare pod) with what policy compilation needs to know of it."""

    ref: WorkloadRef
    labels: Labels = Labels()
    annotations: Labels = Labels()
    # Labels of the pod template (stable keys only), when the controller has one.
    template_labels: Labels = Labels()
    host_network: bool = False


@dataclass(frozen=True)
class Inventory:
    """Kubernetes metadata for one cluster, from a dump or the live API."""

    namespaces: tuple[Namespace, ...] = ()
    nodes: tuple[Node, ...] = ()
    workloads: tuple[Workload, ...] = ()
    pods: tuple[Pod, ...] = ()
    services: tuple[Service, ...] = ()
    endpoint_slices: tuple[EndpointSlice, ...] = ()
    sources: tuple[str, ...] = field(default=(), compare=False)

    def namespace(self, name: str) -> Namespace | None:
        for ns in self.namespaces:
            if ns.name == name:
                return ns
        return None

    def workload(self, ref: WorkloadRef) -> Workload | None:
        for wl in self.workloads:
            if wl.ref == ref:
                return wl
        return None

    def pods_of(self, ref: WorkloadRef) -> list[Pod]:
        return [p for p in self.pods if p.owner == ref]

    def pods_in(self, namespace: str) -> list[Pod]:
        return [p for p in self.pods if p.namespace == namespace]


class DirectionBasis(enum.StrEnum):
    """How a flow's client and server were told apart (the flow file's ``direction``)."""

    HANDSHAKE = "handshake"  # TCP SYN / SYN-ACK seen
    FIRST_PACKET = "first-packet"  # UDP/SCTP/ICMP: the sender of the first packet
    PORT_HEURISTIC = "port-heuristic"  # start not seen: the well-known / lower port serves
    REPORTED = "reported"  # the flow-log source said which end initiated


class FlowVerdict(enum.StrEnum):
    """What the dataplane did with a flow, where a flow-log source says (flow file version 2).

    Captures see only what was forwarded; flow logs also record what policy dropped, which is
    evidence of what the policies in force block, never traffic to allow.
    """

    FORWARDED = "forwarded"
    DROPPED = "dropped"
    AUDIT = "audit"  # would have been dropped; the policy is in audit mode
    ERROR = "error"


@dataclass(frozen=True)
class EndpointIdentity:
    """What a flow-log source said about one end of a flow (flow file version 2).

    Every field is optional: a source fills in what it knows. ``entity`` names a reserved
    identity that is not a pod (``world``, ``host``, ``remote-node``, ``kube-apiserver``, as
    Cilium calls them); ``names`` are DNS names the source gave the address; ``service`` is the
    ``namespace/name`` of the Service the client addressed.
    """

    namespace: str | None = None
    pod: str | None = None
    workload_kind: str | None = None
    workload_name: str | None = None
    labels: Labels = Labels()
    node: str | None = None
    entity: str | None = None
    names: tuple[str, ...] = ()
    service: str | None = None

    def __hash__(self) -> int:
        # Cached, as for Labels: the graph looks ends up per flow, by the million.
        cached: int | None = self.__dict__.get("_hash")
        if cached is None:
            cached = hash((self.namespace, self.pod, self.workload_kind, self.workload_name,
                           self.labels, self.node, self.entity, self.names, self.service))
            object.__setattr__(self, "_hash", cached)
        return cached


@dataclass(frozen=True)
class Flow:
    """One observed conversation, client -> server, read from a flow file record.

    ``client`` or ``server`` is None when a flow-log source gave no address for that end
    (Calico OSS Goldmane, aggregated Calico flow logs): its ``*_endpoint`` then names it, and
    :mod:`segmenter.graph.identity` resolves it.
    """

    transport: Transport
    client: str | None
    server: str | None
    client_port: int | None
    server_port: int | None
    first_seen: float
    last_seen: float
    packets_to_server: int = 0
    bytes_to_server: int = 0
    packets_to_client: int = 0
    bytes_to_client: int = 0
    direction: DirectionBasis = DirectionBasis.HANDSHAKE
    handshake: bool = False
    resets: int = 0
    tls: bool = False
    sni: str | None = None
    # Flow file version 2: what record sources know besides addresses.
    client_endpoint: EndpointIdentity | None = None
    server_endpoint: EndpointIdentity | None = None
    verdict: FlowVerdict | None = None  # None: seen on the wire (forwarded)
    sampled: bool = False  # counts are estimates from sampled records
    sources: tuple[str, ...] = ()  # the source formats that saw it; () for captures
    policies: tuple[str, ...] = ()  # what the source says decided it: evidence only

    @property
    def packets(self) -> int:
        return self.packets_to_server + self.packets_to_client

    @property
    def bytes(self) -> int:
        return self.bytes_to_server + self.bytes_to_client

    @property
    def forwarded(self) -> bool:
        """Traffic that went through: the traffic to allow (not evidence of a block)."""
        return self.verdict in (None, FlowVerdict.FORWARDED)


@dataclass(frozen=True)
class DnsAnswer:
    """A DNS answer seen in the capture: ``client`` asked ``name`` and got ``answers``."""

    client: str
    server: str
    name: str
    answers: tuple[str, ...]
    cnames: tuple[str, ...] = ()
    ts: float = 0.0


def sorted_unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(values)))
