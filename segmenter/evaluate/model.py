"""Public value types of the policy engine, and the small shared helpers its modules use.

An :class:`EvalEndpoint` is one end of a connection; :meth:`PolicyEngine.check` answers with a
:class:`Verdict` holding one :class:`Decision` per direction (egress at the source, ingress at the
destination). Both must allow for the connection to be allowed (policy-semantics.md §1.2, §1.9).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from segmenter.model import Action, ContainerPort, Direction, Labels, Transport

__all__ = [
    "Action",
    "Decision",
    "Direction",
    "EvalEndpoint",
    "IPAddress",
    "IPNetwork",
    "PortRange",
    "Verdict",
    "parse_ip",
    "parse_net",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class EvalEndpoint:
    """One end of a connection.

    ``namespace`` is ``None`` for anything that is not a pod: an external address, a node, the
    API server. A ``host_network`` pod is not a pod for policy either (the common CNI behaviour,
    policy-semantics.md §1.7): it is treated as traffic of its node. ``ports`` are the declared
    container ports, used to resolve named ports on a destination pod. ``service_account``
    ``None`` means the namespace's ``default`` account (every pod runs as one).

    Cilium enforcement reads two more facts about endpoints that are not pods: ``dns_names``,
    the DNS names the address is known by (what Cilium's DNS proxy would have seen a pod look
    up, matched by ``toFQDNs``), and ``kube_apiserver``, set for an API server endpoint (the
    ``kube-apiserver`` identity, policy-semantics.md §4.5). A non-pod endpoint with ``node`` set
    is that node (or a hostNetwork pod on it).
    """

    ip: str
    namespace: str | None = None
    labels: Labels = field(default_factory=Labels)
    host_network: bool = False
    node: str | None = None
    ports: tuple[ContainerPort, ...] = ()
    service_account: str | None = None
    name: str = ""
    dns_names: tuple[str, ...] = ()
    kube_apiserver: bool = False

    @property
    def is_pod(self) -> bool:
        """A pod-network pod: the only kind of endpoint policies select or apply to."""
        return self.namespace is not None and not self.host_network

    def describe(self) -> str:
        return self.name or (f"{self.namespace}/{self.ip}" if self.namespace else self.ip)


@dataclass(frozen=True)
class Decision:
    """One direction's decision.

    ``policy`` names the deciding policy (``"networking.k8s.io/NetworkPolicy payments/vault"``,
    ``"GlobalNetworkPolicy compliance.pci-guard"``); ``None`` when the endpoint is not isolated,
    not a pod, or allowed by its Calico profile. ``rule`` is ``"ingress[2]"`` style, ``None`` for
    an end-of-tier or not-isolated decision. ``reason`` is one short human sentence.
    """

    allowed: bool
    policy: str | None
    rule: str | None
    reason: str
    # Rules that matched on the way without deciding (Calico Pass and Log), as
    # ``"<policy> <rule>"``: what a rule-hygiene review counts as used besides the decider.
    matched: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """Both sides of a connection: allowed only when egress and ingress both allow."""

    allowed: bool
    egress: Decision
    ingress: Decision

    def summary(self) -> str:
        """One line: ``allowed`` / ``denied by <side>: <reason>``."""
        if self.allowed:
            return "allowed"
        side = self.egress if not self.egress.allowed else self.ingress
        which = "egress" if side is self.egress else "ingress"
        by = f" ({side.policy}{' ' + side.rule if side.rule else ''})" if side.policy else ""
        return f"denied at {which}: {side.reason}{by}"


@dataclass(frozen=True)
class PortRange:
    """An inclusive port range, or a named port (``name`` set, resolved per destination pod)."""

    first: int = 0
    last: int = 0
    name: str | None = None

    def contains(self, port: int | None, proto: Transport, dst_ports: tuple[ContainerPort, ...]
                 ) -> bool:
        if port is None:
            return False
        if self.name is None:
            return self.first <= port <= self.last
        return any(cp.name == self.name and cp.protocol == proto and cp.port == port
                   for cp in dst_ports)

    def __str__(self) -> str:
        if self.name is not None:
            return self.name
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


def parse_ip(value: str) -> IPAddress | None:
    """An IP address, or ``None`` when ``value`` is not one (a hostname, empty)."""
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def parse_net(value: object) -> IPNetwork:
    """A CIDR (host bits allowed, as Calico and Kubernetes normalise them) or a bare address.

    Raises:
        ValueError: when ``value`` is neither.
    """
    return ipaddress.ip_network(str(value).strip(), strict=False)
