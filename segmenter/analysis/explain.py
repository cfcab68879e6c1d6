"""One connection as people type it: the two ends and the port of ``verify --explain``.

An end is any of, checked in this order:

- an IP address (v4 or v6): the pod that held it, else the node or the API server with that
  address, else an address outside the cluster;
- ``node:NAME`` or ``apiserver`` (graph node ids);
- ``namespace/Kind/name``: a workload (``Kind`` in any letter case, as kubectl accepts
  ``deployment/web``);
- ``namespace/name``: the workload of that name in the namespace, whatever its kind, else the
  pod of that name (``shop/frontend-7d9c-x2x1``). Two workloads of that name (a Deployment and a
  StatefulSet) are ambiguous: the error lists both.

A name that matches nothing is an error with the closest names ("did you mean"). A port is
``5432/TCP``, ``TCP/5432`` or ``5432`` (TCP), 1-65535; ICMP and ICMPv6 take no port or an ICMP
type (0-255).
"""

from __future__ import annotations

import difflib
import ipaddress
from dataclasses import dataclass
from typing import Final

from segmenter.analysis.verify import EndpointFinder
from segmenter.errors import InputError
from segmenter.evaluate import EvalEndpoint
from segmenter.model import APISERVER_ID, Inventory, NodeId, NodeKind, Pod, Transport, WorkloadRef

RECORD: Final = "--explain"
_PORT_TRANSPORTS: Final = (Transport.TCP, Transport.UDP, Transport.SCTP)
_ICMP: Final = (Transport.ICMP, Transport.ICMPV6)
_FORMS: Final = "namespace/name, namespace/Kind/name, a pod namespace/pod-name, or an IP address"


@dataclass(frozen=True)
class End:
    """One end of the connection explained: what it resolved to, and its endpoint."""

    text: str
    resolved: str
    endpoint: EvalEndpoint


def parse_port(text: str) -> tuple[Transport, int | None]:
    """``5432/TCP``, ``udp/53``, ``5432`` (TCP), ``ICMP``, ``8/ICMP`` (an ICMP type).

    >>> parse_port("53/udp")
    (<Transport.UDP: 'UDP'>, 53)

    Raises:
        InputError: an unknown protocol, a port outside 1-65535, or no port for TCP/UDP/SCTP.
    """
    parts = [p.strip() for p in text.split("/")]
    if len(parts) > 2 or not all(parts):
        raise InputError(f"bad port {text!r}: expected PORT/PROTOCOL, e.g. 5432/TCP",
                         record=RECORD)
    numbers = [p for p in parts if p.isdigit()]
    names = [p for p in parts if not p.isdigit()]
    if len(numbers) > 1 or len(names) > 1:
        raise InputError(f"bad port {text!r}: expected PORT/PROTOCOL, e.g. 5432/TCP",
                         record=RECORD)
    try:
        transport = Transport.parse(names[0]) if names else Transport.TCP
    except ValueError:
        known = ", ".join(t.value for t in Transport)
        raise InputError(f"unknown protocol {names[0]!r} in {text!r} (known: {known})",
                         record=RECORD) from None
    number = int(numbers[0]) if numbers else None
    if transport in _ICMP:
        if number is not None and not 0 <= number <= 255:
            raise InputError(f"ICMP type {number} in {text!r} is outside 0-255", record=RECORD)
        return transport, number
    if number is None:
        raise InputError(f"no port in {text!r}: {transport} needs one, e.g. 5432/{transport}",
                         record=RECORD)
    if not 1 <= number <= 65535:
        raise InputError(f"port {number} in {text!r} is outside 1-65535", record=RECORD)
    return transport, number


class Names:
    """Resolves what people type to evaluator endpoints, from an inventory."""

    def __init__(self, inventory: Inventory, finder: EndpointFinder | None = None):
        self.inventory = inventory
        self.finder = finder or EndpointFinder(inventory)
        refs = {w.ref for w in inventory.workloads} | {p.owner for p in inventory.pods}
        self.workloads = sorted(refs)
        self.pods = {(p.namespace, p.name): p for p in inventory.pods}

    def resolve(self, text: str) -> End:
        """The endpoint ``text`` names.

        Raises:
            InputError: nothing of that name (with the closest names), or an ambiguous name
                (with the candidates).
        """
        text = text.strip()
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            address = None
        if address is not None:
            return self._address(str(address))
        if text == APISERVER_ID:
            return self._apiserver(text)
        try:
            parsed = NodeId.parse(text)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.kind is NodeKind.NODE:
            return self._node(text, parsed.node_name or "")
        parts = text.split("/")
        if len(parts) == 3 and all(parts):
            return self._workload(text, WorkloadRef(*parts))
        if len(parts) == 2 and all(parts):
            return self._short(text, parts[0], parts[1])
        raise InputError(f"cannot read {text!r} as one end of a connection: give {_FORMS}",
                         record=RECORD)

    # --- each form

    def _pod_end(self, text: str, resolved: str, pod: Pod) -> End:
        if not pod.ips:
            raise InputError(f"{resolved} has no pod with an IP address in the inventory",
                             record=RECORD)
        return End(text, resolved, self.finder.of_pod(pod))

    def _owner_end(self, text: str, ref: WorkloadRef) -> End:
        pods = [p for p in self.finder.by_owner.get(ref, []) if p.ips]
        if not pods:
            raise InputError(f"workload {ref.id} has no pod with an IP address in the inventory",
                             record=RECORD)
        pod = min(pods, key=lambda p: (p.end is not None, -(p.start or 0.0), p.name))
        return End(text, ref.id, self.finder.of_pod(pod))

    def _workload(self, text: str, ref: WorkloadRef) -> End:
        exact = [r for r in self.workloads if r == ref]
        if not exact:
            exact = [r for r in self.workloads
                     if (r.namespace, r.name) == (ref.namespace, ref.name)
                     and r.kind.lower() == ref.kind.lower()]
        if not exact:
            raise self._unknown(text, f"no workload {text} in the inventory",
                                [r.id for r in self.workloads])
        return self._owner_end(text, exact[0])

    def _short(self, text: str, namespace: str, name: str) -> End:
        matches = [r for r in self.workloads if (r.namespace, r.name) == (namespace, name)]
        if len(matches) > 1:
            raise InputError(f"{text} is ambiguous: {' and '.join(r.id for r in matches)}; "
                             "give namespace/Kind/name", record=RECORD)
        if matches:
            return self._owner_end(text, matches[0])
        pod = self.pods.get((namespace, name))
        if pod is not None:
            return self._pod_end(text, f"{pod.owner.id} (pod {pod.name})", pod)
        known = [f"{r.namespace}/{r.name}" for r in self.workloads]
        known += [f"{ns}/{pod_name}" for ns, pod_name in self.pods]
        raise self._unknown(text, f"no workload or pod named {name!r} in namespace "
                                  f"{namespace!r}", known)

    def _address(self, ip: str) -> End:
        pod = self.finder.pod_at(ip, float("inf"))
        if pod is not None and not pod.host_network:
            return self._pod_end(ip, f"{pod.owner.id} (pod {pod.name})", pod)
        node = self.finder.node_of_ip.get(ip)
        if node is not None or (pod is not None and pod.host_network):
            name = node if node is not None else (pod.node if pod is not None else None)
            return End(ip, f"node {name}", EvalEndpoint(ip=ip, node=name, name=f"node:{name}"))
        if ip in self.finder.apiserver:
            return End(ip, "the API server", EvalEndpoint(ip=ip, name=APISERVER_ID,
                                                          kube_apiserver=True))
        return End(ip, f"{ip} (outside the cluster)", EvalEndpoint(
            ip=ip, name=ip, dns_names=self.finder.dns_names.get(ip, ())))

    def _node(self, text: str, name: str) -> End:
        node = next((n for n in self.inventory.nodes if n.name == name), None)
        if node is None:
            raise self._unknown(text, f"no node {name!r} in the inventory",
                                [NodeId.of_node(n.name) for n in self.inventory.nodes])
        if not node.addresses:
            raise InputError(f"node {name} has no address in the inventory", record=RECORD)
        return End(text, f"node {name}", EvalEndpoint(ip=node.addresses[0], node=name,
                                                      name=text))

    def _apiserver(self, text: str) -> End:
        if not self.finder.apiserver:
            raise InputError("the inventory has no API server address (the default/kubernetes "
                             "EndpointSlice): give its IP address", record=RECORD)
        address = self.finder.apiserver[0]
        return End(text, f"the API server ({address})",
                   EvalEndpoint(ip=address, name=APISERVER_ID, kube_apiserver=True))

    @staticmethod
    def _unknown(text: str, message: str, known: list[str]) -> InputError:
        close = difflib.get_close_matches(text, sorted(set(known)), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else f" (give {_FORMS})"
        return InputError(message + hint, record=RECORD)


__all__ = ["End", "Names", "parse_port"]
