"""Which graph node is behind ``ip:port`` at time ``ts`` for a flow endpoint.

``Resolver`` follows Service DNAT, NodePorts, the API server endpoints, hostNetwork pods, node
addresses, NodeLocal DNSCache and pod IP reuse over time, and tells apart the addresses that are
no peer (``segmenter.graph.addresses``; see ``docs/graph-format.md``).
"""

from __future__ import annotations

import bisect
import ipaddress
import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Final

from segmenter.cluster.dns import DNS_PORT, NODE_LOCAL_DNS_PREFIX, dns_service, find_dns_workload
from segmenter.cluster.services import ServiceBackend, ServiceBackends, resolve_target_port
from segmenter.graph.addresses import address_class, link_local_service
from segmenter.model import (
    APISERVER_ID,
    Inventory,
    NodeId,
    Pod,
    Resolution,
    Service,
    ServicePort,
    Transport,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where a flow endpoint lands: a graph node id and the port as the server pod sees it.

    ``how`` says which rule matched; for the DNAT kinds (``service``, ``nodeport``,
    ``nodelocal-dns``) the address was rewritten on the way. ``special`` (loopback, link-local,
    multicast, broadcast) is no graph node: callers leave such flows out.
    """

    node_id: str
    port: int | None
    via_service: str | None = None
    how: Resolution = Resolution.EXTERNAL


class _TimedPods:
    """Pods that held one IP at different times (IP reuse), sorted by start time."""

    __slots__ = ("ends", "starts", "targets")

    def __init__(self, entries: list[tuple[float, float, str]]):
        entries.sort()
        self.starts = [e[0] for e in entries]
        self.ends = [e[1] for e in entries]
        self.targets = [e[2] for e in entries]

    def at(self, ts: float) -> str:
        starts, ends = self.starts, self.ends
        i = bisect.bisect_right(starts, ts) - 1
        # The latest-started pod whose interval contains ts.
        j = i
        while j >= 0:
            if ends[j] >= ts:
                return self.targets[j]
            j -= 1
        # None contains ts: the nearest in time (before: since its end; after: until its start).
        best, best_gap = 0, math.inf
        if i >= 0:
            k = max(range(i + 1), key=lambda n: ends[n])
            best, best_gap = k, ts - ends[k]
        if i + 1 < len(starts) and starts[i + 1] - ts < best_gap:
            best = i + 1
        return self.targets[best]


class Resolver:
    """Maps (ip, port, transport, time) of a flow endpoint to a graph node.

    All indexes are built once here; :meth:`resolve` is a few dict lookups, with results cached
    per (ip, port, transport) unless the IP was reused by several workloads over time.
    """

    def __init__(self, inventory: Inventory):
        self.inventory = inventory
        pod_index: dict[str, list[Pod]] = defaultdict(list)
        for pod in inventory.pods:
            for ip in pod.ips:
                pod_index[ip].append(pod)
        backends = ServiceBackends(inventory, pod_index)

        # Node addresses: cluster nodes, and hostNetwork pods (their IP is their node's).
        self._node_ip: dict[str, str] = {}
        for pod in inventory.pods:
            if pod.host_network:
                for ip in pod.ips:
                    self._node_ip[ip] = NodeId.of_node(pod.node or ip)
        for node in inventory.nodes:
            for ip in node.addresses:
                self._node_ip[ip] = NodeId.of_node(node.name)

        # Pod IPs (not hostNetwork): one workload, or several over time.
        self._pod_ip: dict[str, Resolved | _TimedPods] = {}
        for ip, holders in pod_index.items():
            pods = [p for p in holders if not p.host_network]
            if not pods:
                continue
            owners = {p.owner.id for p in pods}
            if len(owners) == 1:
                self._pod_ip[ip] = Resolved(owners.pop(), None, None, Resolution.POD)
            else:
                self._pod_ip[ip] = _TimedPods(
                    [
                        (
                            -math.inf if p.start is None else p.start,
                            math.inf if p.end is None else p.end,
                            p.owner.id,
                        )
                        for p in pods
                    ]
                )

        # The API server: the default/kubernetes Service and its EndpointSlice.
        self._apiserver_addrs: set[str] = set()
        self._apiserver_slice_ports: list[ServicePort] = []
        for es in inventory.endpoint_slices:
            if es.namespace == "default" and es.service == "kubernetes":
                for ep in es.endpoints:
                    self._apiserver_addrs.update(ep.addresses)
                self._apiserver_slice_ports.extend(es.ports)
        self._apiserver_ports = {sp.port for sp in self._apiserver_slice_ports}

        # Service addresses: (ip, transport, port) -> Resolved, plus a port-less fallback for
        # ClusterIPs; NodePorts: (transport, nodePort) -> Resolved.
        self._vip: dict[tuple[str, Transport, int], Resolved] = {}
        self._cluster_ip: dict[str, Resolved] = {}
        self._node_port: dict[tuple[Transport, int], Resolved] = {}
        self._backend_of: dict[tuple[str, str], ServiceBackend | None] = {}
        for svc in inventory.services:
            name = f"{svc.namespace}/{svc.name}"
            if svc.type == "ExternalName":
                continue
            if (svc.namespace, svc.name) == ("default", "kubernetes"):
                self._add_apiserver_service(svc, name)
                continue
            backend = backends.backend_of(svc)
            self._backend_of[(svc.namespace, svc.name)] = backend
            if backend is None:
                if svc.cluster_ips or svc.external_ips or svc.load_balancer_ips:
                    # A flow to its ClusterIP is refused by segmenter.graph.ranges.
                    # check_inventory; one to an external or load-balancer IP stays external.
                    logger.info(
                        "Service %s has no backend in the inventory (no EndpointSlice and no pod "
                        "matching its selector)",
                        name,
                    )
                for ip in svc.cluster_ips:
                    self._cluster_ip[ip] = Resolved(NodeId.of_external(ip), None, name,
                                                    Resolution.EXTERNAL)
                continue
            how = Resolution.SERVICE
            for sp in svc.ports:
                tport = resolve_target_port(sp, backend, service=name)
                res = Resolved(backend.target, tport, name, how)
                for ip in (*svc.cluster_ips, *svc.external_ips, *svc.load_balancer_ips):
                    self._vip.setdefault((ip, sp.protocol, sp.port), res)
                if sp.node_port is not None:
                    self._node_port.setdefault(
                        (sp.protocol, sp.node_port),
                        Resolved(backend.target, tport, name, Resolution.NODEPORT),
                    )
            for ip in svc.cluster_ips:
                self._cluster_ip.setdefault(ip, Resolved(backend.target, None, name, how))

        # Cluster DNS, for NodeLocal DNSCache link-local addresses.
        self._dns: dict[Transport, Resolved] = {}
        dns_ref = find_dns_workload(inventory, self._backend_of)
        # The workload that serves cluster DNS (segmenter.cluster.dns), or None.
        self.dns_workload = dns_ref
        if dns_ref is not None:
            dns_svc = dns_service(inventory)
            for transport in (Transport.UDP, Transport.TCP):
                port = DNS_PORT
                if dns_svc is not None:
                    for sp in dns_svc.ports:
                        if sp.port == DNS_PORT and sp.protocol == transport:
                            port = resolve_target_port(
                                sp,
                                self._backend_of.get((dns_svc.namespace, dns_svc.name)),
                                service=f"{dns_svc.namespace}/{dns_svc.name}",
                            )
                self._dns[transport] = Resolved(dns_ref.id, port, None, Resolution.NODELOCAL_DNS)

        self._cache: dict[tuple[str, int | None, Transport], Resolved | _TimedPods] = {}
        self._pod_results: dict[tuple[str, int | None], Resolved] = {}

    def _add_apiserver_service(self, svc: Service, name: str) -> None:
        for sp in svc.ports:
            # The real port: from the default/kubernetes EndpointSlice (e.g. 6443), else the
            # Service's numeric targetPort, else its port.
            port: int
            if len(self._apiserver_ports) == 1:
                port = next(iter(self._apiserver_ports))
            elif self._apiserver_ports:
                named = [p for p in self._apiserver_slice_ports if p.name == sp.name]
                port = named[0].port if named else min(self._apiserver_ports)
            elif isinstance(sp.target_port, int):
                port = sp.target_port
            else:
                port = sp.port
            res = Resolved(APISERVER_ID, port, name, Resolution.SERVICE)
            for ip in svc.cluster_ips:
                self._vip.setdefault((ip, sp.protocol, sp.port), res)
        for ip in svc.cluster_ips:
            self._cluster_ip.setdefault(ip, Resolved(APISERVER_ID, None, name, Resolution.SERVICE))

    def resolve(self, ip: str, port: int | None, transport: Transport, ts: float) -> Resolved:
        """The graph node behind ``ip:port`` at time ``ts`` and the port its pod sees.

        Pass ``port=None`` for a flow's client side (its ephemeral port means nothing).
        """
        key = (ip, port, transport)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._classify(ip, port, transport)
            if len(self._cache) > 2_000_000:
                self._cache.clear()
            self._cache[key] = hit
        if type(hit) is Resolved:
            return hit
        assert isinstance(hit, _TimedPods)
        target = hit.at(ts)
        result = self._pod_results.get((target, port))
        if result is None:
            result = Resolved(target, port, None, Resolution.POD)
            self._pod_results[(target, port)] = result
        return result

    def depends_on_time(self, ip: str, port: int | None, transport: Transport) -> bool:
        """Whether what ``ip:port`` resolves to depends on the time (an IP several workloads
        held over time)."""
        hit = self._cache.get((ip, port, transport))
        if hit is None:
            hit = self._classify(ip, port, transport)
        return type(hit) is not Resolved

    def _classify(self, ip: str, port: int | None, transport: Transport) -> Resolved | _TimedPods:
        if ":" in ip:  # IPv6: the inventory holds compressed forms
            try:
                canonical = str(ipaddress.ip_address(ip))
            except ValueError:
                return Resolved(NodeId.of_external(ip), port, None, Resolution.EXTERNAL)
            if canonical != ip:
                return self._classify(canonical, port, transport)
        if port == DNS_PORT and ip.startswith(NODE_LOCAL_DNS_PREFIX) and transport in self._dns:
            return self._dns[transport]
        if port is not None:
            res = self._vip.get((ip, transport, port))
            if res is not None:
                return res
        res = self._cluster_ip.get(ip)
        if res is not None:  # a ClusterIP on a port the Service does not define
            return (
                Resolved(res.node_id, port, res.via_service, res.how) if port is not None else res
            )
        if ip in self._apiserver_addrs and (
            # An endpoint address that is also a node's (kind, kubeadm): the API server only on
            # its own port; other ports of that address (kubelet, NodePorts) are the node.
            ip not in self._node_ip
            or (port is not None and (not self._apiserver_ports or port in self._apiserver_ports))
        ):
            return Resolved(APISERVER_ID, port, None, Resolution.APISERVER)
        pod = self._pod_ip.get(ip)
        if pod is not None:
            if isinstance(pod, Resolved):
                return pod if port is None else Resolved(pod.node_id, port, None, Resolution.POD)
            return pod
        node = self._node_ip.get(ip)
        if node is not None:
            if port is not None:
                res = self._node_port.get((transport, port))
                if res is not None:
                    return res
            return Resolved(node, port, None, Resolution.NODE)
        if link_local_service(ip, port) is not None:
            return Resolved(NodeId.of_external(ip), port, None, Resolution.LINK_LOCAL_SERVICE)
        if address_class(ip) is not None:
            # Loopback, link-local, multicast, broadcast: no graph node (segmenter.graph.
            # addresses); the node id is only what the address would have been.
            return Resolved(NodeId.of_external(ip), port, None, Resolution.SPECIAL)
        return Resolved(NodeId.of_external(ip), port, None, Resolution.EXTERNAL)

    def apiserver_addresses(self) -> tuple[str, ...]:
        return tuple(sorted(self._apiserver_addrs))

    def node_addresses(self) -> dict[str, tuple[str, ...]]:
        """``node:<name>`` -> its addresses (node objects and hostNetwork pod IPs)."""
        out: dict[str, set[str]] = defaultdict(set)
        for ip, node_id in self._node_ip.items():
            out[node_id].add(ip)
        return {k: tuple(sorted(v)) for k, v in out.items()}


def is_private(ip: str) -> bool:
    """RFC 1918, IPv6 ULA (fc00::/7), CGNAT (100.64.0.0/10) or link-local."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in _PRIVATE_NETS if net.version == addr.version)


_PRIVATE_NETS: Final = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
    )
)

