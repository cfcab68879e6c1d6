"""Probes for evaluating what policies allow beyond what was observed: a representative pod
per workload, and the (protocol, port) pairs worth probing (every port a rule of either policy
set names, resolved named ports, and the observed ones)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Final

from segmenter.evaluate.calico import port_number
from segmenter.k8s import api_group
from segmenter.model import ContainerPort, Inventory, Pod, Transport, WorkloadRef
from segmenter.targets import K8S_GROUP

# The usual ways into a workload, probed besides the ports rules name and the ports observed:
# SSH, HTTPS, an admin or proxy port.
CANARY_PORTS: Final[tuple[tuple[str, int], ...]] = (("TCP", 22), ("TCP", 443), ("TCP", 8080))

# "The internet": a public IPv4 and IPv6 address no cluster owns (Google Public DNS). Never
# contacted: only evaluated, standing for any address outside the cluster that no flow showed.
INTERNET_ADDRESSES: Final = ("8.8.8.8", "2001:4860:4860::8888")

_PROTOCOL_NUMBERS: Final = {1: Transport.ICMP, 6: Transport.TCP, 17: Transport.UDP,
                            58: Transport.ICMPV6, 132: Transport.SCTP}


def _transport_of(value: Any, default: Transport | None) -> Transport | None:
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return _PROTOCOL_NUMBERS.get(value)
    try:
        return Transport.parse(str(value))
    except ValueError:
        return None


def _named(name: str, transport: Transport | None, ports: Iterable[ContainerPort]
           ) -> set[tuple[Transport, int | None]]:
    return {(cp.protocol, cp.port) for cp in ports
            if cp.name == name and (transport is None or cp.protocol == transport)}


def probe_ports(manifests: Iterable[Mapping[str, Any]], inventory: Inventory,
                extra: Iterable[tuple[Transport, int | None]] = ()
                ) -> list[tuple[Transport, int | None]]:
    """Every (protocol, destination port) that the rules of ``manifests`` mention, plus
    ``extra``: named ports resolved through the inventory's container ports, both ends of a
    range, ``None`` for ICMP. Sorted."""
    container_ports = [cp for pod in inventory.pods for cp in pod.ports]
    found: set[tuple[Transport, int | None]] = set(extra)
    for doc in manifests:
        spec = doc.get("spec")
        if not isinstance(spec, Mapping):
            continue
        k8s_shaped = ("podSelector" in spec or api_group(doc) == K8S_GROUP
                      or doc.get("kind") == "StagedKubernetesNetworkPolicy")
        for direction in ("ingress", "egress"):
            rules = spec.get(direction)
            if not isinstance(rules, list):
                continue
            for rule in rules:
                if not isinstance(rule, Mapping):
                    continue
                if k8s_shaped:
                    for port in _list(rule.get("ports")):
                        if not isinstance(port, Mapping):
                            continue
                        transport = _transport_of(port.get("protocol"), Transport.TCP)
                        if transport is None:
                            continue
                        value = port.get("port")
                        if isinstance(value, int):
                            found.add((transport, value))
                            end = port.get("endPort")
                            if isinstance(end, int):
                                found.add((transport, end))
                        elif isinstance(value, str):
                            found |= _named(value, transport, container_ports)
                    continue
                transport = _transport_of(rule.get("protocol"), None)
                if transport in (Transport.ICMP, Transport.ICMPV6):
                    found.add((transport, None))
                destination = rule.get("destination")
                if not isinstance(destination, Mapping):
                    continue
                for key in ("ports", "notPorts"):
                    for raw in _list(destination.get(key)):
                        value = port_number(raw)
                        if isinstance(value, int):
                            if transport is not None:
                                found.add((transport, value))
                        elif isinstance(value, str) and ":" in value:
                            first, _, last = value.partition(":")
                            if transport is not None and first.isdigit() and last.isdigit():
                                found.update({(transport, int(first)), (transport, int(last))})
                        elif isinstance(value, str):
                            found |= _named(value, transport, container_ports)
    return sorted(found, key=probe_key)


def _list(value: Any) -> list[Any]:
    """A list field of a manifest of a kind nothing validated (any value may be there)."""
    return value if isinstance(value, list) else []


def probe_key(probe: tuple[Transport | str, int | None]) -> tuple[str, int]:
    return (str(probe[0]), -1 if probe[1] is None else probe[1])


def representative_pods(inventory: Inventory) -> dict[WorkloadRef, Pod]:
    """One pod per workload (pod-network pods only): a running one, else the latest."""
    by_owner: dict[WorkloadRef, list[Pod]] = defaultdict(list)
    for pod in inventory.pods:
        if not pod.host_network and pod.ips:
            by_owner[pod.owner].append(pod)
    return {owner: min(pods, key=lambda p: (p.end is not None, -(p.start or 0.0), p.name))
            for owner, pods in sorted(by_owner.items())}
