"""The communication graph: flows + inventory -> ``networkx.DiGraph`` (``docs/graph-format.md``).

One node per entity (workload, cluster node, the API server, external address or DNS-named set
of external addresses), one edge per (client entity, server entity) carrying per-(protocol,
post-DNAT port) aggregates. Saved by :mod:`segmenter.graph.io`; summarised by
:mod:`segmenter.graph.stats`.
"""

from __future__ import annotations

import bisect
import functools
import gc
import ipaddress
import logging
import socket
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import networkx as nx

from segmenter.cluster.dns import DNS_PORT
from segmenter.config import ClusterNetworks
from segmenter.graph.addresses import address_class, link_local_service
from segmenter.graph.blocked import BlockedFlows
from segmenter.graph.identity import FlowEnds
from segmenter.graph.io import GRAPH_FORMAT, GRAPH_VERSION
from segmenter.graph.ranges import (
    AddressUse,
    UnexplainedAddresses,
    check_inventory,
    cluster_ranges,
)
from segmenter.graph.resolve import Resolver, is_private
from segmenter.model import (
    DnsAnswer,
    Flow,
    FlowVerdict,
    Inventory,
    Labels,
    NodeId,
    NodeKind,
    Pod,
    Resolution,
    Transport,
    Workload,
    WorkloadRef,
)

logger = logging.getLogger(__name__)

_Slots = dict[tuple[str, str, Transport, int | None], list[Any]]


def build_graph(
    flows: Iterable[Flow],
    inventory: Inventory,
    dns: Iterable[DnsAnswer] = (),
    *,
    resolver: Resolver | None = None,
    named_sets: bool = True,
    networks: ClusterNetworks | None = None,
    ends: FlowEnds | None = None,
) -> nx.DiGraph:
    """Build the communication graph of ``flows`` against ``inventory``.

    Every workload of the inventory is a node, with ``observed: false`` when no flow touches it.
    Flows are aggregated per (client node, server node, protocol, port as the server pod sees it);
    a workload talking to itself is a self-loop. ``dns`` answers name external nodes; with
    ``named_sets``, the external addresses of one DNS name (several addresses, all public or all
    private) are one node ``external:name:<name>`` (see ``docs/graph-format.md``).

    Flows with a loopback, link-local, multicast or broadcast end are left out and counted in
    the graph attribute ``special_addresses``. An address that stays external must not be one
    the inventory should explain (``networks``: the ranges declared in ``segmenter.yaml``;
    :mod:`segmenter.graph.ranges`).

    Flows that were not forwarded (a flow log's ``dropped``, ``audit``, ``error``) are no edge:
    they are kept in the graph's ``blocked`` attribute. The identities flow records carry are
    used and cross-checked by ``ends`` (:class:`~segmenter.graph.identity.FlowEnds`; one over
    ``inventory`` by default), whose report is the graph's ``identity`` attribute.

    Raises:
        InventoryError: traffic to a Service's or pod's address that the inventory lacks.
    """
    if resolver is None:
        resolver = ends.resolver if ends is not None else Resolver(inventory)
    if ends is None:
        ends = FlowEnds(inventory, resolver)
    blocked = BlockedFlows()
    answers = tuple(dns)
    namer = _NamedSets(answers) if named_sets else None
    # The loop allocates a few small objects per flow; with a million Flow objects alive, the
    # cyclic GC's full passes would cost a fifth of the build. Nothing in it makes cycles.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        acc, seen_addresses, unexplained, special = _aggregate(flows, resolver, namer, ends,
                                                               blocked)
    finally:
        if gc_was_enabled:
            gc.enable()
    check_inventory(unexplained, inventory, cluster_ranges(inventory, answers, networks), answers)

    graph = nx.DiGraph(format=GRAPH_FORMAT, version=GRAPH_VERSION)
    if special:
        graph.graph["special_addresses"] = special
    if ends.used:
        graph.graph["identity"] = ends.report()
    if blocked:
        graph.graph["blocked"] = blocked.entries()
    _add_workload_nodes(graph, inventory)

    dns_names: dict[str, set[str]] = defaultdict(set)
    for answer in answers:
        for ip in answer.answers:
            dns_names[ip].add(answer.name)

    node_addresses = resolver.node_addresses()
    apiserver_addresses = set(resolver.apiserver_addresses())
    # External nodes reached on the DNS port: a link-local one is a DNS resolver.
    dns_servers = {NodeId.parse(dst).address for (_, dst, _, port) in acc if port == DNS_PORT}

    edges: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for (src, dst, transport, port), slot in acc.items():
        via = slot[6] or ()
        services = sorted({name for name, _ in via if name is not None})
        entry = {
            "protocol": transport.value,
            "port": port,
            "flows": slot[0],
            "packets": slot[1],
            "bytes": slot[2],
            "first_seen": float(slot[3]),
            "last_seen": float(slot[4]),
            "tls": slot[5],
            "via_service": services[0] if services else None,
            "via_addresses": sorted({a for _, a in via if a is not None}, key=_ip_sort_key),
            # Flows of captures (and flow files of version 1) name no source: "capture".
            "sources": sorted({s for seen in slot[7] for s in (seen or _CAPTURE)}),
        }
        if slot[8]:
            entry["sampled"] = True  # the counts are estimates
        edges[(src, dst)].append(entry)

    endpoints = sorted({n for pair in edges for n in pair})
    for node_id in endpoints:
        if node_id in graph:
            continue
        parsed = NodeId.parse(node_id)
        if parsed.dns_name is not None and namer is not None:
            graph.add_node(
                node_id, **namer.attrs(parsed.dns_name, seen_addresses.get(node_id, set())))
        elif parsed.kind is NodeKind.APISERVER:
            addresses = apiserver_addresses | seen_addresses.get(node_id, set())
            graph.add_node(
                node_id,
                kind="apiserver",
                label="apiserver",
                addresses=sorted(addresses, key=_ip_sort_key),
            )
        elif parsed.kind is NodeKind.NODE:
            addresses = set(node_addresses.get(node_id, ())) | seen_addresses.get(node_id, set())
            graph.add_node(
                node_id,
                kind="node",
                label=parsed.node_name,
                addresses=sorted(addresses, key=_ip_sort_key),
            )
        elif parsed.address is not None:
            ip = parsed.address
            names = sorted(dns_names.get(ip, set()) | ends.names.get(node_id, set()))
            service = link_local_service(ip, DNS_PORT if ip in dns_servers else None)
            graph.add_node(
                node_id,
                kind="external",
                label=names[0] if names else ip,
                addresses=[ip],
                dns_names=names,
                private=is_private(ip),
            )
            if service is not None:
                graph.nodes[node_id].update(label=f"{service.title} ({ip})",
                                            link_local_service=service.slug)
        elif parsed.workload is not None:  # a workload the inventory's pods name, not its list
            ref = parsed.workload
            pods = [p for p in inventory.pods if p.owner == ref]
            graph.add_node(node_id, **_workload_attrs(Workload(ref=ref), pods))

    for src, dst in sorted(edges):
        ports = sorted(edges[(src, dst)], key=_port_sort_key)
        graph.add_edge(src, dst, **_edge_totals(ports))
    for node_id, attrs in graph.nodes(data=True):
        attrs["observed"] = graph.degree(node_id) > 0
    if resolver.dns_workload is not None and resolver.dns_workload.id in graph:
        graph.nodes[resolver.dns_workload.id]["cluster_dns"] = True
    return graph


def _aggregate(
    flows: Iterable[Flow], resolver: Resolver, namer: _NamedSets | None, ends: FlowEnds,
    blocked: BlockedFlows,
) -> tuple[_Slots, dict[str, set[str]], list[AddressUse], dict[str, Any]]:
    """Resolve both ends of every flow and sum them per (client, server, transport, port).

    A slot is ``[flows, packets, bytes, first, last, tls, {(via service, address)} or None,
    {sources tuples}, sampled]``: a list with literal indexes, because this loop runs once per
    flow and dominates the build. Also returns the addresses seen for each node, apiserver and
    external node; how the addresses that resolved external were used (for
    :func:`~segmenter.graph.ranges.check_inventory`); and the flows left out for a special
    address, per address class. A flow whose record carries identities or a verdict goes
    through ``ends``; one that was not forwarded goes to ``blocked`` instead.
    """
    resolve = resolver.resolve
    name_for = namer.name_for if namer is not None and namer.sets else None
    acc: _Slots = {}
    seen_addresses: dict[str, set[str]] = defaultdict(set)
    external = UnexplainedAddresses()
    special: dict[str, list[Any]] = {}
    count = 0
    forwarded = FlowVerdict.FORWARDED
    for flow in flows:
        count += 1
        transport = flow.transport
        ts = flow.first_seen
        last = flow.last_seen
        client_ip, server_ip = flow.client, flow.server
        if (client_ip is None or server_ip is None or flow.client_endpoint is not None
                or flow.server_endpoint is not None):
            pair = ends.resolve(flow)
            if pair is None:
                continue  # an end without an address that no workload matches: reported
            client, server = pair
            ends.check(flow, client, server)
        else:
            client = resolve(client_ip, None, transport, ts)
            server = resolve(server_ip, flow.server_port, transport, ts)
        if client.how is Resolution.SPECIAL or server.how is Resolution.SPECIAL:
            _count_special(special, flow, client.how, server.how)
            continue
        if flow.verdict is not None and flow.verdict is not forwarded:
            blocked.add(flow, client, server)
            continue
        if server.how is Resolution.EXTERNAL or client.how is Resolution.EXTERNAL:
            external.note(flow, client, server)
        server_id = server.node_id
        if name_for is not None and server.how is Resolution.EXTERNAL and client_ip is not None \
                and server_ip is not None:
            server_id = name_for(client_ip, server_ip, ts) or server_id
        key = (client.node_id, server_id, transport, server.port)
        slot = acc.get(key)
        if slot is None:
            slot = acc[key] = [0, 0, 0, ts, last, False, None, set(), False]
        else:
            if ts < slot[3]:  # noqa: PLR1730 - min() is markedly slower here
                slot[3] = ts
            if last > slot[4]:  # noqa: PLR1730
                slot[4] = last
        slot[0] += 1
        slot[1] += flow.packets_to_server + flow.packets_to_client
        slot[2] += flow.bytes_to_server + flow.bytes_to_client
        if flow.tls:
            slot[5] = True
        slot[7].add(flow.sources)
        if flow.sampled:
            slot[8] = True
        how = server.how
        if how is not Resolution.POD or server.via_service is not None:
            if how.dnat or server.via_service is not None:
                if slot[6] is None:
                    slot[6] = set()
                slot[6].add((server.via_service, server_ip if how.dnat else None))
            if how in _ADDRESSED and server_ip is not None:
                seen_addresses[server_id].add(server_ip)
        if client.how in _ADDRESSED and client_ip is not None:
            seen_addresses[client.node_id].add(client_ip)
    logger.info("graph: %d flows aggregated into %d (edge, port) entries", count, len(acc))
    uses = external.uses()
    left_out: dict[str, Any] = {}
    if special:
        total = special.pop("")[0]
        left_out = {"flows": total, "by_class": {
            name: {"flows": n, "addresses": sorted(addresses, key=_ip_sort_key)}
            for name, (n, addresses) in sorted(special.items())}}
    return acc, seen_addresses, uses, left_out


def _count_special(special: dict[str, list[Any]], flow: Flow, client_how: Resolution,
                   server_how: Resolution) -> None:
    """Count a flow left out for its special end(s): once in all (key ``""``), once under the
    class of each such end (a DHCP discover from 0.0.0.0 to 255.255.255.255 is in two)."""
    special.setdefault("", [0, set()])[0] += 1
    classes: dict[str, set[str]] = {}
    for address, how in ((flow.client, client_how), (flow.server, server_how)):
        if how is Resolution.SPECIAL and address is not None:
            canonical = _canonical_ip(address) or address
            found = address_class(canonical)
            classes.setdefault(str(found or "special"), set()).add(canonical)
    for name, addresses in classes.items():
        slot = special.setdefault(name, [0, set()])
        slot[0] += 1
        slot[1].update(addresses)


_CAPTURE: Final = ("capture",)
# Resolutions whose node keeps the addresses it was seen at.
_ADDRESSED: Final = frozenset({Resolution.NODE, Resolution.APISERVER, Resolution.EXTERNAL,
                               Resolution.LINK_LOCAL_SERVICE})


@functools.lru_cache(maxsize=1 << 16)
def _canonical_ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def _dns_name(name: str) -> str:
    return name.strip().rstrip(".").lower()


class _NamedSets:
    """External addresses grouped by the DNS name that the capture's answers give them.

    A name is a set when its answers hold at least two addresses, all public or all private.
    A flow to one of those addresses joins the set of the name its client resolved to that
    address (its latest such answer at or before the flow, else its first); a client seen
    resolving no name to it joins the set only when every answer naming the address is for
    that one name. Otherwise the address stays its own node.
    """

    def __init__(self, answers: Sequence[DnsAnswer]):
        addresses: dict[str, set[str]] = defaultdict(set)
        names_of: dict[str, set[str]] = defaultdict(set)
        asked: dict[tuple[str, str], list[tuple[float, str]]] = defaultdict(list)
        for answer in answers:
            name = _dns_name(answer.name)
            client = _canonical_ip(answer.client) or answer.client
            for raw in answer.answers:
                ip = _canonical_ip(raw)
                if ip is None or not name:
                    continue
                addresses[name].add(ip)
                names_of[ip].add(name)
                asked[(client, ip)].append((answer.ts, name))
        self.sets: dict[str, tuple[str, ...]] = {}
        self.private: dict[str, bool] = {}
        for name in sorted(addresses):
            members = addresses[name]
            if len(members) < 2:
                continue
            classes = {is_private(ip) for ip in members}
            if len(classes) > 1:
                logger.info(
                    "DNS name %s answers both private and public addresses; its addresses are "
                    "not aggregated",
                    name,
                )
                continue
            self.sets[name] = tuple(sorted(members, key=_ip_sort_key))
            self.private[name] = classes.pop()
        self.names_of = {ip: names for ip, names in names_of.items() if names & self.sets.keys()}
        self.asked = {key: sorted(v) for key, v in asked.items() if key[1] in self.names_of}

    def name_for(self, client: str, server: str, ts: float) -> str | None:
        """The named-set node id for a flow from ``client`` to external ``server``, or None."""
        names = self.names_of.get(server)
        if names is None:
            if ":" not in server:
                return None
            server = _canonical_ip(server) or server
            names = self.names_of.get(server)
            if names is None:
                return None
        if ":" in client:
            client = _canonical_ip(client) or client
        history = self.asked.get((client, server))
        if history:
            i = bisect.bisect_right(history, ts, key=lambda entry: entry[0]) - 1
            name = history[max(i, 0)][1]
        elif len(names) == 1:
            (name,) = names
        else:
            return None
        return NodeId.of_named_set(name) if name in self.sets else None

    def attrs(self, name: str, seen: set[str]) -> dict[str, Any]:
        members = self.sets[name]
        blocks = _exact_blocks(members)
        rule = f"dns-name {name}: {len(members)} addresses from DNS answers in the capture"
        if len(blocks) == 1:
            rule += f", filling {blocks[0]}"
        elif len(blocks) < len(members):
            rule += f", in {len(blocks)} address blocks"
        return {
            "kind": "external",
            "label": name,
            "addresses": list(members),
            "addresses_seen": sorted({_canonical_ip(a) or a for a in seen}, key=_ip_sort_key),
            "cidrs": blocks,
            "dns_names": [name],
            "private": self.private[name],
            "aggregation": rule,
        }


def _exact_blocks(addresses: Iterable[str]) -> list[str]:
    """The fewest CIDR blocks that hold exactly ``addresses`` (IPv4 first)."""
    by_version: dict[int, list[Any]] = defaultdict(list)
    for ip in addresses:
        addr = ipaddress.ip_address(ip)
        by_version[addr.version].append(addr)
    return [
        str(net)
        for version in sorted(by_version)
        for net in ipaddress.collapse_addresses(by_version[version])
    ]


def _add_workload_nodes(graph: nx.DiGraph, inventory: Inventory) -> None:
    pods_of: dict[WorkloadRef, list[Pod]] = defaultdict(list)
    for pod in inventory.pods:
        pods_of[pod.owner].append(pod)
    for wl in sorted(inventory.workloads, key=lambda w: w.ref):
        graph.add_node(wl.ref.id, **_workload_attrs(wl, pods_of.get(wl.ref, [])))


def _workload_attrs(wl: Workload, pods: list[Pod]) -> dict[str, Any]:
    if pods:
        common = set(pods[0].labels.stable().items)
        for pod in pods[1:]:
            common &= set(pod.labels.stable().items)
        labels = Labels(tuple(sorted(common)))
    else:
        labels = wl.template_labels
    return {
        "kind": "workload",
        "label": wl.ref.name,
        "namespace": wl.ref.namespace,
        "name": wl.ref.name,
        "workload_kind": wl.ref.kind,
        "labels": labels.as_dict(),
        "annotations": wl.annotations.as_dict(),
        "host_network": wl.host_network,
        "pod_count": len({(p.namespace, p.name) for p in pods}),
        "images": sorted({image for p in pods for image in p.images}),
    }


def _edge_totals(ports: list[dict[str, Any]]) -> dict[str, Any]:
    totals = {
        "ports": ports,
        "flows": sum(p["flows"] for p in ports),
        "packets": sum(p["packets"] for p in ports),
        "bytes": sum(p["bytes"] for p in ports),
        "first_seen": min(p["first_seen"] for p in ports),
        "last_seen": max(p["last_seen"] for p in ports),
    }
    if any(p.get("sampled") for p in ports):
        totals["sampled"] = True
    return totals


def _port_sort_key(entry: Mapping[str, Any]) -> tuple[str, int]:
    port = entry["port"]
    return (entry["protocol"], -1 if port is None else port)


def _ip_sort_key(ip: str) -> tuple[int, bytes, str]:
    """IPv4 before IPv6, numerically (``inet_pton`` is much faster than ``ipaddress``)."""
    for rank, family in ((4, socket.AF_INET), (6, socket.AF_INET6)):
        try:
            return (rank, socket.inet_pton(family, ip), ip)
        except OSError:
            continue
    return (9, b"", ip)


