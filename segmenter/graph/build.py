"""The communication graph: flows + inventory -> ``networkx.DiGraph`` (``docs/graph-format.md``).

One node per entity (workload, cluster node, the API server, external address or DNS-named set
of external addresses), one edge per (client entity, server entity) carrying per-(protocol,
post-DNAT port) aggregates. Saved by :mod:`segmenter.graph.io`; summarised by
:mod:`segmenter.graph.stats`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import networkx as nx

from segmenter.cluster.dns import DNS_PORT
from segmenter.config import ClusterNetworks
from segmenter.gcpause import no_gc
from segmenter.graph.addresses import link_local_service
from segmenter.graph.fold import (
    BYTES,
    FIRST,
    FLOWS,
    LAST,
    PACKETS,
    SAMPLED,
    SOURCES,
    TLS,
    VIA,
    GraphFold,
    GraphSummary,
    NamedSets,
    add_edge,
    ip_sort_key,
)
from segmenter.graph.identity import FlowEnds, identity_report, identity_used
from segmenter.graph.io import GRAPH_FORMAT, GRAPH_VERSION
from segmenter.graph.ranges import check_inventory, cluster_ranges
from segmenter.graph.resolve import Resolver, is_private
from segmenter.model import (
    DnsAnswer,
    Flow,
    Inventory,
    Labels,
    NodeId,
    NodeKind,
    Pod,
    Transport,
    Workload,
    WorkloadRef,
)

logger = logging.getLogger(__name__)


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

    ``flows`` is read once and not kept: an iterator over flow files streams through
    (:class:`~segmenter.graph.fold.GraphFold`). The graph does not depend on their order.

    Raises:
        InventoryError: traffic to a Service's or pod's address that the inventory lacks.
    """
    answers = tuple(dns)
    fold = GraphFold(inventory, answers, resolver=resolver, named_sets=named_sets, ends=ends)
    # The loop allocates a few small objects per flow, and the flows of a file in memory are
    # millions of objects: the cyclic GC's full passes would cost a fifth of the build. Nothing
    # in it makes cycles.
    with no_gc():
        fold.add(flows)
    logger.info("graph: %d flows aggregated into %d (edge, port) entries", fold.summary.flows,
                len(fold.summary.edges))
    return graph_from_summary(fold.summary, inventory, answers, resolver=fold.resolver,
                              named_sets=named_sets, networks=networks,
                              derived=fold.ends.derived, notes=fold.ends.notes)


def graph_from_summary(
    summary: GraphSummary,
    inventory: Inventory,
    dns: Iterable[DnsAnswer] = (),
    *,
    resolver: Resolver | None = None,
    named_sets: bool = True,
    networks: ClusterNetworks | None = None,
    derived: bool = False,
    notes: Iterable[str] = (),
) -> nx.DiGraph:
    """The graph of the flows ``summary`` adds up (:mod:`segmenter.graph.fold`), resolved
    against ``inventory``, with every DNS answer of the traffic (``dns``). ``derived``: the
    inventory was built from the records (``notes`` say what it lacks).

    Raises:
        InventoryError: traffic to a Service's or pod's address that the inventory lacks.
    """
    if resolver is None:
        resolver = Resolver(inventory)
    answers = tuple(dns)
    namer = NamedSets(answers) if named_sets else None
    check_inventory(summary.external.uses(), inventory,
                    cluster_ranges(inventory, answers, networks), answers)
    edges_of, seen_addresses = _edges(summary, namer)

    graph = nx.DiGraph(format=GRAPH_FORMAT, version=GRAPH_VERSION)
    special = summary.left_out()
    if special:
        graph.graph["special_addresses"] = special
    if identity_used(summary.identity, derived=derived):
        graph.graph["identity"] = identity_report(summary.identity, derived=derived, notes=notes)
    if summary.blocked:
        graph.graph["blocked"] = summary.blocked.entries()
    _add_workload_nodes(graph, inventory)

    dns_names: dict[str, set[str]] = defaultdict(set)
    for answer in answers:
        for ip in answer.answers:
            dns_names[ip].add(answer.name)

    node_addresses = resolver.node_addresses()
    apiserver_addresses = set(resolver.apiserver_addresses())
    # External nodes reached on the DNS port: a link-local one is a DNS resolver.
    dns_servers = {NodeId.parse(dst).address for (_, dst, _, port) in edges_of
                   if port == DNS_PORT}
    record_names = summary.identity.names

    edges: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for (src, dst, transport, port), slot in edges_of.items():
        via = slot[VIA] or ()
        services = sorted({name for name, _ in via if name is not None})
        entry = {
            "protocol": transport.value,
            "port": port,
            "flows": slot[FLOWS],
            "packets": slot[PACKETS],
            "bytes": slot[BYTES],
            "first_seen": float(slot[FIRST]),
            "last_seen": float(slot[LAST]),
            "tls": slot[TLS],
            "via_service": services[0] if services else None,
            "via_addresses": sorted({a for _, a in via if a is not None}, key=ip_sort_key),
            # Flows of captures (and flow files of version 1) name no source: "capture".
            "sources": sorted(slot[SOURCES]),
        }
        if slot[SAMPLED]:
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
                addresses=sorted(addresses, key=ip_sort_key),
            )
        elif parsed.kind is NodeKind.NODE:
            addresses = set(node_addresses.get(node_id, ())) | seen_addresses.get(node_id, set())
            graph.add_node(
                node_id,
                kind="node",
                label=parsed.node_name,
                addresses=sorted(addresses, key=ip_sort_key),
            )
        elif parsed.address is not None:
            ip = parsed.address
            names = sorted(dns_names.get(ip, set()) | record_names.get(node_id, set()))
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


def _edges(summary: GraphSummary, namer: NamedSets | None
           ) -> tuple[dict[tuple[str, str, Transport, int | None], list[Any]],
                      dict[str, set[str]]]:
    """The summary's edges over all windows, external servers in their DNS-named sets, and
    the addresses each node was seen at (a named set's: its members that flows reached)."""
    seen = summary.addresses
    renamed: dict[str, set[str]] = defaultdict(set)
    totals: dict[Any, list[Any]] = {}
    for (client, server, transport, port, hint, _window), slot in summary.edges.items():
        target = server
        if hint is not None and namer is not None and namer.sets:
            address = NodeId.parse(server).address
            named = namer.named_set(address, hint) if address is not None else None
            if named is not None:
                renamed[named].update(seen.get(server, ()))
                target = named
        add_edge(totals, (client, target, transport, port, None, None), slot)
    edges = {key[:4]: slot for key, slot in totals.items()}
    if renamed:
        seen = {**seen, **renamed}
    return edges, seen


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
