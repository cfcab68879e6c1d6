"""The cluster's Service and pod address ranges, and the check that the inventory explains the
traffic before any address becomes an external peer.

A flow to a Service ClusterIP is DNATed to a backend pod before any policy sees it
(policy-semantics.md §1.6): an ``ipBlock`` of the ClusterIP never matches it. So an address of
the Service range must be explained by a Service of the inventory, and one of the pod range by
a pod; otherwise the inventory is missing something (a dump of pods only, Services created or
pods gone between the dump and the capture), and the graph would turn a ClusterIP or a pod IP
into an "external" peer. That is an error naming what is missing and the ``kubectl get`` that
supplies it, never a silent external ``/32``.

Where the ranges come from (:func:`cluster_ranges`):

- declared in ``segmenter.yaml`` (``cluster: {service_cidrs: [...], pod_cidrs: [...]}``);
- pod ranges: the Nodes' ``spec.podCIDRs`` (set when the control plane allocates node CIDRs:
  kubeadm, kind, k3s, GKE; not with the AWS VPC CNI, whose pods take VPC addresses);
- the Service range: the smallest block holding every ClusterIP the inventory's Services have
  and every address the capture's DNS answers give for a Service name
  (``<service>.<namespace>.svc.<cluster domain>``) that is no pod's, node's or EndpointSlice
  endpoint's. Any Service
  range holds that block, since a CIDR holding two addresses holds the smallest block around
  them; it is used only when it is no wider than kube-apiserver accepts for a Service range (20
  host bits: /12 for IPv4, /108 for IPv6; ``validateMaxCIDRRange`` in
  ``cmd/kube-apiserver/app/options/validation.go``), as several ServiceCIDRs (Kubernetes
  1.33) can be further apart.

The pod range is never inferred from pod IPs: with a CNI that hands out VPC addresses, the block
around the pods also holds the VPC's other hosts (a database outside the cluster).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from segmenter.cluster.dns import DNS_PORT
from segmenter.config import ClusterNetworks
from segmenter.errors import InventoryError
from segmenter.graph.resolve import Resolved
from segmenter.model import DnsAnswer, Flow, Inventory, Resolution

logger = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# kube-apiserver refuses a Service range of more than 20 host bits.
MAX_SERVICE_HOST_BITS: Final = 20
# <service>.<namespace>.svc.<cluster domain>: the name CoreDNS answers with a Service's ClusterIP
# (Kubernetes DNS specification, "Schema version 1.1.0", 2.3.1); a headless Service's pods come
# back instead, which the pod and node addresses exclude.
_SERVICE_NAME: Final = re.compile(r"^[^.]+\.[^.]+\.svc\.", re.IGNORECASE)
_SHOWN: Final = 4  # addresses named in a message


@dataclass(frozen=True)
class AddressRange:
    network: IPNetwork
    source: str  # where it comes from, for messages

    def __str__(self) -> str:
        return f"{self.network} ({self.source})"


@dataclass(frozen=True)
class ClusterRanges:
    """The cluster's Service and pod ranges (see the module docstring)."""

    services: tuple[AddressRange, ...] = ()
    pods: tuple[AddressRange, ...] = ()
    services_declared: bool = False

    def service_range(self, ip: str) -> AddressRange | None:
        return _find(self.services, ip)

    def pod_range(self, ip: str) -> AddressRange | None:
        return _find(self.pods, ip)


def _find(ranges: Sequence[AddressRange], ip: str) -> AddressRange | None:
    if not ranges:
        return None
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    for entry in ranges:
        if addr.version == entry.network.version and addr in entry.network:
            return entry
    return None


def covering_block(addresses: Iterable[IPAddress]) -> IPNetwork | None:
    """The smallest CIDR block holding every address (of one IP version), None for none.

    >>> covering_block([ipaddress.ip_address("10.96.0.1"), ipaddress.ip_address("10.96.52.60")])
    IPv4Network('10.96.0.0/18')
    """
    values = sorted(addresses)
    if not values:
        return None
    low, high = int(values[0]), int(values[-1])
    bits = values[0].max_prefixlen
    host_bits = (low ^ high).bit_length()
    return ipaddress.ip_network(((low >> host_bits) << host_bits, bits - host_bits))


def service_name_addresses(dns: Iterable[DnsAnswer]) -> dict[str, str]:
    """Address -> a Service name the capture's DNS answered with it (the first by name)."""
    named: dict[str, str] = {}
    for answer in sorted(dns, key=lambda a: (a.name, a.answers)):
        name = answer.name.rstrip(".").lower()
        if not _SERVICE_NAME.match(name) or answer.cnames:
            continue  # an ExternalName Service answers a CNAME to an address outside
        for raw in answer.answers:
            try:
                named.setdefault(str(ipaddress.ip_address(raw)), name)
            except ValueError:
                continue
    return named


def cluster_ranges(inventory: Inventory, dns: Iterable[DnsAnswer] = (),
                   declared: ClusterNetworks | None = None) -> ClusterRanges:
    """The Service and pod ranges: declared ones, Nodes' podCIDRs, and the block around the
    ClusterIPs that the inventory and the capture's DNS answers show."""
    declared = declared or ClusterNetworks()
    where = declared.source or "segmenter.yaml cluster"
    pods = [AddressRange(ipaddress.ip_network(c), f"{where}.pod_cidrs")
            for c in declared.pod_cidrs]
    for node in inventory.nodes:
        pods.extend(AddressRange(ipaddress.ip_network(c), f"podCIDR of node {node.name}")
                    for c in node.pod_cidrs)
    services = [AddressRange(ipaddress.ip_network(c), f"{where}.service_cidrs")
                for c in declared.service_cidrs]
    ranges = ClusterRanges((), tuple(pods))
    # Addresses that are no ClusterIP: pods', nodes', and the endpoints of EndpointSlices
    # (what a headless Service's name answers).
    known = {ip for pod in inventory.pods for ip in pod.ips}
    known.update(a for n in inventory.nodes for a in n.addresses)
    known.update(a for es in inventory.endpoint_slices for e in es.endpoints
                 for a in e.addresses)
    cluster_ips = {ip for s in inventory.services for ip in s.cluster_ips}
    from_dns = {ip for ip in service_name_addresses(dns)
                if ip not in known and ranges.pod_range(ip) is None}
    for version in (4, 6):
        addresses = [ipaddress.ip_address(ip) for ip in cluster_ips | from_dns]
        addresses = [a for a in addresses if a.version == version]
        block = covering_block(addresses)
        if block is None:
            continue
        if block.max_prefixlen - block.prefixlen > MAX_SERVICE_HOST_BITS:
            logger.warning("the ClusterIPs span %s, wider than one Service range can be: the "
                           "Service range is not inferred (declare cluster.service_cidrs in "
                           "segmenter.yaml)", block)
            continue
        sources = []
        services_seen = sum(1 for a in addresses if str(a) in cluster_ips)
        if services_seen:
            sources.append(f"{services_seen} Service ClusterIP{'s' if services_seen > 1 else ''}"
                           " of the inventory")
        dns_seen = sum(1 for a in addresses if str(a) in from_dns - cluster_ips)
        if dns_seen:
            sources.append(f"{dns_seen} address{'es' if dns_seen > 1 else ''} the capture's DNS "
                           "answered for Service names")
        services.append(AddressRange(block, "the block around " + " and ".join(sources)))
    return ClusterRanges(tuple(services), tuple(pods), bool(declared.service_cidrs))


@dataclass(frozen=True)
class AddressUse:
    """An address that no Service, pod, node or the API server explains, as the traffic used it:
    how many flows, one of them in words, and whether a workload asked it for DNS (port 53)."""

    address: str
    flows: int
    example: str
    dns_from_workload: bool = False


class UnexplainedAddresses:
    """Collects, flow by flow, the addresses that resolved ``external``: the input of
    :func:`check_inventory` (the graph build and the flow replay both feed one).

    What it keeps adds up whatever the order of the flows: per address, the flows, whether a
    workload asked it for DNS, and as the example the earliest flow (then the least text), so
    that the tallies of separate flows merge (:meth:`merge`) into the tally of all of them.
    """

    def __init__(self) -> None:
        # address -> [flows, first seen of the example, example, asked for DNS by a workload]
        self._seen: dict[str, list[Any]] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def note(self, flow: Flow, client: Resolved, server: Resolved) -> None:
        """Count the external end(s) of one resolved flow (an end a flow record names without
        an address is no address to explain)."""
        ts = flow.first_seen
        if server.how is Resolution.EXTERNAL and flow.server is not None:
            slot = self._seen.get(flow.server)
            if slot is None or ts <= slot[1]:
                port = "" if server.port is None else f":{server.port}"
                example = f"{flow.server}{port}/{flow.transport} from {client.node_id}"
                if slot is None:
                    slot = self._seen[flow.server] = [0, ts, example, False]
                elif ts < slot[1] or example < slot[2]:
                    slot[1], slot[2] = ts, example
            slot[0] += 1
            if server.port == DNS_PORT and client.how is Resolution.POD:
                slot[3] = True
        if client.how is Resolution.EXTERNAL and flow.client is not None:
            slot = self._seen.get(flow.client)
            if slot is None or ts <= slot[1]:
                port = "" if server.port is None else f":{server.port}"
                example = (f"{flow.client} as the client of {server.node_id}{port}/"
                           f"{flow.transport}")
                if slot is None:
                    slot = self._seen[flow.client] = [0, ts, example, False]
                elif ts < slot[1] or example < slot[2]:
                    slot[1], slot[2] = ts, example
            slot[0] += 1

    def add(self, address: str, flows: int, first_seen: float, example: str,
            dns_from_workload: bool) -> None:
        """Count ``flows`` flows to or from ``address`` at once (a summary's row)."""
        slot = self._seen.get(address)
        if slot is None:
            self._seen[address] = [flows, first_seen, example, dns_from_workload]
            return
        slot[0] += flows
        slot[1], slot[2] = min((slot[1], slot[2]), (first_seen, example))
        slot[3] = slot[3] or dns_from_workload

    def merge(self, other: UnexplainedAddresses) -> None:
        for address, (flows, first, example, asked) in other._seen.items():
            self.add(address, flows, first, example, asked)

    def rows(self) -> list[tuple[str, int, float, str, bool]]:
        """(address, flows, first seen of the example, example, asked for DNS), sorted."""
        return [(ip, n, first, example, asked)
                for ip, (n, first, example, asked) in sorted(self._seen.items())]

    def uses(self) -> list[AddressUse]:
        return [AddressUse(ip, n, example, asked)
                for ip, (n, _first, example, asked) in sorted(self._seen.items())]


_DUMP_SERVICES: Final = "kubectl get services,endpointslices -A -o json"
_DUMP_PODS: Final = "kubectl get pods -A -o json"


def check_inventory(uses: Iterable[AddressUse], inventory: Inventory,
                    ranges: ClusterRanges, dns: Iterable[DnsAnswer] = ()) -> None:
    """Refuse traffic that the inventory should explain and does not (see the module docstring):
    a Service's ClusterIP with no backend, an address in the Service range that no Service has
    (or any Service traffic when the inventory holds pods but no Services), an address in a pod
    range that no pod held.

    Raises:
        InventoryError: one line naming the addresses, what is missing and the ``kubectl get``
            that supplies it.
    """
    by_ip = sorted(uses, key=lambda u: (-u.flows, u.address))
    if not by_ip:
        return
    cluster_ip_of = {ip: f"{s.namespace}/{s.name}" for s in inventory.services
                     for ip in s.cluster_ips}
    named = service_name_addresses(dns)
    problems: list[str] = []
    backendless = [u for u in by_ip if u.address in cluster_ip_of]
    if backendless:
        services = sorted({cluster_ip_of[u.address] for u in backendless})
        problems.append(
            f"{_flows(backendless, verb=True)} the ClusterIP of Service{_s(services)} "
            f"{', '.join(services)}, which {'has' if len(services) == 1 else 'have'} no backend "
            f"in the inventory (no EndpointSlice, no pod its selector matches): "
            f"{_listed(backendless)}; add them: kubectl get endpointslices,pods -A -o json")
    rest = [u for u in by_ip if u.address not in cluster_ip_of]
    in_services = [u for u in rest if ranges.service_range(u.address) is not None]
    no_services = not inventory.services and bool(inventory.pods)
    if not ranges.services_declared and no_services:
        # No Service and no declared range: a workload's DNS query to a private address that
        # is no pod, node or Service is the cluster DNS Service's ClusterIP in all but clusters
        # whose pods use dnsPolicy: Default.
        in_services.extend(u for u in rest if u.dns_from_workload and u not in in_services
                           and _private(u.address))
        in_services.extend(u for u in rest if u.address in named and u not in in_services)
    if in_services:
        where = sorted({str(r) for u in in_services
                        if (r := ranges.service_range(u.address)) is not None})
        span = f" in the Service range {', '.join(where)}" if where else ""
        if no_services:
            sliced = sorted({f"{es.namespace}/{es.service}" for es in inventory.endpoint_slices
                             if es.service})
            holds = (f"pods and the EndpointSlices of {len(sliced)} Service"
                     f"{'' if len(sliced) == 1 else 's'}" if sliced else "pods")
            problems.append(
                f"the inventory holds {holds} but no Services, and the capture shows Service "
                f"traffic: {_flows(in_services)} to {_addresses(in_services)}{span} "
                f"({_listed(in_services)}); add the Services and EndpointSlices: "
                f"{_DUMP_SERVICES}")
        else:
            problems.append(
                f"{_flows(in_services, verb=True)} {_addresses(in_services)}{span} that no "
                f"Service in the inventory has ({_listed(in_services)}): Services created "
                f"after the inventory was taken or deleted before it? Take it with the "
                f"capture: {_DUMP_SERVICES}")
    in_pods = [u for u in rest if u not in in_services and ranges.pod_range(u.address)]
    if in_pods:
        where = sorted({str(r) for u in in_pods if (r := ranges.pod_range(u.address))})
        problems.append(
            f"{_flows(in_pods, verb=True)} {_addresses(in_pods)} in the pod range "
            f"{', '.join(where)} that no pod in the inventory held ({_listed(in_pods)}): pods "
            f"that started after the inventory was taken or ended before it? Take it during "
            f"the capture: segmenter inventory --live --watch, or {_DUMP_PODS}")
    if problems:
        sources = ", ".join(inventory.sources) or None
        raise InventoryError("; ".join(problems), path=sources)


def _private(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_private
    except ValueError:
        return False


def _flows(uses: Sequence[AddressUse], *, verb: bool = False) -> str:
    """``3 flows``; with ``verb``, ``3 flows reach`` / ``1 flow reaches``."""
    total = sum(u.flows for u in uses)
    if verb:
        return f"{total} flow reaches" if total == 1 else f"{total} flows reach"
    return f"{total} flow{'' if total == 1 else 's'}"


def _addresses(uses: Sequence[AddressUse]) -> str:
    return f"{len(uses)} address{'' if len(uses) == 1 else 'es'}"


def _s(items: Sequence[str]) -> str:
    return "" if len(items) == 1 else "s"


def _listed(uses: Sequence[AddressUse]) -> str:
    shown = ", ".join(u.example for u in uses[:_SHOWN])
    return shown + (f" and {len(uses) - _SHOWN} more" if len(uses) > _SHOWN else "")
