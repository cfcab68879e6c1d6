"""The policy IR: one dialect-neutral description of what the plan allows and denies.

Dialects (``segmenter.dialects``) read only this module's types. Anything a dialect cannot spell
is reported by name, never dropped (see ``segmenter.dialects.base``).

``None`` vs ``()`` is semantic on ``Policy.ingress`` / ``Policy.egress``: ``None`` leaves the
direction unrestricted, ``()`` isolates it with nothing allowed.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field

from segmenter.model import Action, Direction, Labels, Transport


class CidrRole(enum.StrEnum):
    """What an address block stands for; dialects may render the roles differently."""

    EXTERNAL = "external"
    NODE = "node"
    APISERVER = "apiserver"
    DNS = "dns"
    # The internet: the block (0.0.0.0/0, ::/0, or a declared override) minus ``excepts``, the
    # cluster's pod, Service and node ranges. The excepts are part of the meaning: without them
    # a CNI that matches pod IPs with CIDRs (Calico, policy-semantics.md §3.5) would open the
    # workload to every in-cluster peer. A dialect writes the block and its excepts, never a
    # wider "outside the cluster" shorthand that would also match unused cluster addresses.
    INTERNET = "internet"


@dataclass(frozen=True, order=True)
class Selector:
    """An equality label selector over pods; empty selects every pod in scope."""

    labels: Labels = Labels()  # noqa: RUF009 (frozen, hence a safe shared default)


@dataclass(frozen=True, order=True)
class PodPeer:
    """Pods matching ``pods`` in the namespace ``namespace`` (always explicit)."""

    namespace: str
    pods: Selector

    def __hash__(self) -> int:  # cached, see Labels.__hash__
        cached: int | None = self.__dict__.get("_hash")
        if cached is None:
            cached = hash((self.namespace, self.pods.labels))
            object.__setattr__(self, "_hash", cached)
        return cached


@dataclass(frozen=True, order=True)
class CidrPeer:
    """An address block outside the pod network (external host, node, API server)."""

    cidr: str
    role: CidrRole = CidrRole.EXTERNAL
    excepts: tuple[str, ...] = ()
    # A stable, DNS-1123 name for the block (from the DNS name when one was seen).
    name: str = ""
    # The DNS names the traffic showed for these addresses (answers the clients received), for
    # dialects that can allow by name (Cilium toFQDNs, ClusterNetworkPolicy domainNames).
    dns_names: tuple[str, ...] = ()


Peer = PodPeer | CidrPeer


@dataclass(frozen=True, order=True)
class Port:
    transport: Transport
    port: int | None = None  # None: every port of the transport
    end_port: int | None = None


@dataclass(frozen=True)
class Evidence:
    """Why a rule exists: the observed flows behind it and the requirements it serves."""

    flows: int = 0
    first_seen: float | None = None
    last_seen: float | None = None
    reason: str = ""
    requirements: tuple[str, ...] = ()
    # The traffic sources that saw those flows (graph port entries' ``sources``: ``capture``,
    # ``hubble``, ...), and whether a sampled one did: then ``flows`` is an estimate.
    sources: tuple[str, ...] = ()
    sampled: bool = False


@dataclass(frozen=True)
class Rule:
    """Matches when the peer part AND the port part match. ``peers=()`` matches any peer."""

    action: Action
    peers: tuple[Peer, ...] = ()
    ports: tuple[Port, ...] = ()  # () = every port and protocol
    evidence: Evidence = Evidence()


@dataclass(frozen=True)
class Policy:
    """A policy selecting pods.

    Namespaced when ``namespace`` is set (``target`` selects pods in it); cluster-scoped when
    ``namespace`` is None (``members`` lists the selected pods by namespace and selector).
    """

    name: str
    namespace: str | None
    target: Selector = Selector()
    members: tuple[PodPeer, ...] = ()
    ingress: tuple[Rule, ...] | None = None
    egress: tuple[Rule, ...] | None = None
    tier: str | None = None  # None: the dialect's default place
    order: float | None = None
    description: str = ""
    zone: str = ""
    requirements: tuple[str, ...] = ()
    # Labels that chose the target, and why (selector provenance).
    selector_note: str = ""
    # Why the internet may reach the target (an internet entry point), "" when it may not.
    entry_point: str = ""

    @property
    def directions(self) -> tuple[Direction, ...]:
        out = []
        if self.ingress is not None:
            out.append(Direction.INGRESS)
        if self.egress is not None:
            out.append(Direction.EGRESS)
        return tuple(out)

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace or "", self.name)


@dataclass(frozen=True)
class DnsTarget:
    """Where pods resolve names: the DNS pods and/or node-local or cloud resolver addresses."""

    peers: tuple[Peer, ...]
    ports: tuple[Port, ...]
    description: str


def host_cidr(address: str) -> str:
    """The /32 or /128 block of one address.

    >>> host_cidr("2001:db8::1")
    '2001:db8::1/128'
    """
    ip = ipaddress.ip_address(address)
    return f"{ip}/{ip.max_prefixlen}"


@dataclass(frozen=True)
class Tier:
    name: str
    order: float
    description: str = ""


@dataclass(frozen=True)
class PolicySet:
    """Everything to emit. ``policies`` carry the plan's allowed set exactly;
    ``guardrails`` are tiered zone boundaries (defence in depth) for dialects with tiers."""

    policies: tuple[Policy, ...]
    guardrails: tuple[Policy, ...] = ()
    tiers: tuple[Tier, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "policies", tuple(sorted(self.policies, key=lambda p: p.key)))
        object.__setattr__(self, "guardrails", tuple(sorted(self.guardrails, key=lambda p: p.key)))
        object.__setattr__(self, "tiers",
                           tuple(sorted(self.tiers, key=lambda t: (t.order, t.name))))
