"""The communication graph: flows + inventory -> ``networkx.DiGraph`` (``docs/graph-format.md``).

One node per entity (workload, cluster node, the API server, external address or DNS-named set
of external addresses), one edge per (client entity, server entity) carrying per-(protocol,
post-DNAT port) aggregates. Saved as node-link JSON with sorted nodes, edges and keys, so the
same input gives the same bytes. :func:`graph_stats` and :func:`format_stats` summarise a graph,
including whether the capture window was long enough to learn its edges.
"""

from __future__ import annotations

import bisect
import gc
import ipaddress
import json
import logging
import math
import re
import socket
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import networkx as nx

from segmenter.errors import InputError
from segmenter.fileio import atomic_write_text, dump_json
from segmenter.inventory import (
    APISERVER_NODE,
    DNAT_HOWS,
    Resolver,
    is_private,
)
from segmenter.model import (
    DnsAnswer,
    Flow,
    Inventory,
    Labels,
    Pod,
    Transport,
    Workload,
    WorkloadRef,
)

logger = logging.getLogger(__name__)

GRAPH_FORMAT: Final = "segmenter-graph"
GRAPH_VERSION: Final = 1
NODE_KINDS: Final = ("workload", "node", "apiserver", "external")
NAMED_SET_PREFIX: Final = "external:name:"


_Slots = dict[tuple[str, str, Transport, int | None], list[Any]]


def build_graph(
    flows: Iterable[Flow],
    inventory: Inventory,
    dns: Iterable[DnsAnswer] = (),
    *,
    resolver: Resolver | None = None,
    named_sets: bool = True,
) -> nx.DiGraph:
    """Build the communication graph of ``flows`` against ``inventory``.

    Every workload of the inventory is a node, with ``observed: false`` when no flow touches it.
    Flows are aggregated per (client node, server node, protocol, port as the server pod sees it);
    a workload talking to itself is a self-loop. ``dns`` answers name external nodes; with
    ``named_sets``, the external addresses of one DNS name (several addresses, all public or all
    private) are one node ``external:name:<name>`` (see ``docs/graph-format.md``).
    """
    if resolver is None:
        resolver = Resolver(inventory)
    answers = tuple(dns)
    namer = _NamedSets(answers) if named_sets else None
    # The loop allocates a few small objects per flow; with a million Flow objects alive, the
    # cyclic GC's full passes would cost a fifth of the build. Nothing in it makes cycles.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        acc, seen_addresses = _aggregate(flows, resolver, namer)
    finally:
        if gc_was_enabled:
            gc.enable()

    graph = nx.DiGraph(format=GRAPH_FORMAT, version=GRAPH_VERSION)
    _add_workload_nodes(graph, inventory)

    dns_names: dict[str, set[str]] = defaultdict(set)
    for answer in answers:
        for ip in answer.answers:
            dns_names[ip].add(answer.name)

    node_addresses = resolver.node_addresses()
    apiserver_addresses = set(resolver.apiserver_addresses())

    edges: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for (src, dst, transport, port), slot in acc.items():
        via = slot[6] or ()
        services = sorted({name for name, _ in via if name is not None})
        edges[(src, dst)].append(
            {
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
            }
        )

    endpoints = sorted({n for pair in edges for n in pair})
    for node_id in endpoints:
        if node_id in graph:
            continue
        if node_id.startswith(NAMED_SET_PREFIX) and namer is not None:
            graph.add_node(
                node_id,
                **namer.attrs(node_id[len(NAMED_SET_PREFIX) :], seen_addresses.get(node_id, set())),
            )
        elif node_id == APISERVER_NODE:
            addresses = apiserver_addresses | seen_addresses.get(node_id, set())
            graph.add_node(
                node_id,
                kind="apiserver",
                label="apiserver",
                addresses=sorted(addresses, key=_ip_sort_key),
            )
        elif node_id.startswith("node:"):
            addresses = set(node_addresses.get(node_id, ())) | seen_addresses.get(node_id, set())
            graph.add_node(
                node_id,
                kind="node",
                label=node_id[len("node:") :],
                addresses=sorted(addresses, key=_ip_sort_key),
            )
        elif node_id.startswith("external:"):
            ip = node_id[len("external:") :]
            names = sorted(dns_names.get(ip, ()))
            graph.add_node(
                node_id,
                kind="external",
                label=names[0] if names else ip,
                addresses=[ip],
                dns_names=names,
                private=is_private(ip),
            )
        else:  # a workload that the inventory's pods name but its workload list lacks
            ref = WorkloadRef.parse(node_id)
            pods = [p for p in inventory.pods if p.owner == ref]
            graph.add_node(node_id, **_workload_attrs(Workload(ref=ref), pods))

    for src, dst in sorted(edges):
        ports = sorted(edges[(src, dst)], key=_port_sort_key)
        graph.add_edge(src, dst, **_edge_totals(ports))
    for node_id, attrs in graph.nodes(data=True):
        attrs["observed"] = graph.degree(node_id) > 0
    return graph


def _aggregate(
    flows: Iterable[Flow], resolver: Resolver, namer: _NamedSets | None = None
) -> tuple[_Slots, dict[str, set[str]]]:
    """Resolve both ends of every flow and sum them per (client, server, transport, port).

    A slot is ``[flows, packets, bytes, first, last, tls, {(via service, address)} or None]``:
    a list with literal indexes, because this loop runs once per flow and dominates the build.
    Also returns the addresses seen for each node, apiserver and external node.
    """
    resolve = resolver.resolve
    name_for = namer.name_for if namer is not None and namer.sets else None
    acc: _Slots = {}
    seen_addresses: dict[str, set[str]] = defaultdict(set)
    count = 0
    for flow in flows:
        count += 1
        transport = flow.transport
        ts = flow.first_seen
        last = flow.last_seen
        client = resolve(flow.client, None, transport, ts)
        server = resolve(flow.server, flow.server_port, transport, ts)
        server_id = server.node_id
        if name_for is not None and server.how == "external":
            server_id = name_for(flow.client, flow.server, ts) or server_id
        key = (client.node_id, server_id, transport, server.port)
        slot = acc.get(key)
        if slot is None:
            slot = acc[key] = [0, 0, 0, ts, last, False, None]
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
        how = server.how
        if how != "pod":
            if how in DNAT_HOWS or server.via_service is not None:
                if slot[6] is None:
                    slot[6] = set()
                slot[6].add((server.via_service, flow.server if how in DNAT_HOWS else None))
            if how in _ADDRESSED_HOWS:
                seen_addresses[server_id].add(flow.server)
        if client.how != "pod" and client.how in _ADDRESSED_HOWS:
            seen_addresses[client.node_id].add(flow.client)
    logger.info("graph: %d flows aggregated into %d (edge, port) entries", count, len(acc))
    return acc, seen_addresses


_ADDRESSED_HOWS: Final = frozenset({"node", "apiserver", "external"})


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
        return NAMED_SET_PREFIX + name if name in self.sets else None

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
    return {
        "ports": ports,
        "flows": sum(p["flows"] for p in ports),
        "packets": sum(p["packets"] for p in ports),
        "bytes": sum(p["bytes"] for p in ports),
        "first_seen": min(p["first_seen"] for p in ports),
        "last_seen": max(p["last_seen"] for p in ports),
    }


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


# --------------------------------------------------------------------------------------------
# Files


def graph_to_dict(graph: nx.DiGraph) -> dict[str, Any]:
    """Node-link data with nodes sorted by id and edges by (source, target)."""
    data = nx.node_link_data(graph, edges="edges")
    data["nodes"] = sorted(data["nodes"], key=lambda n: str(n["id"]))
    data["edges"] = sorted(data["edges"], key=lambda e: (str(e["source"]), str(e["target"])))
    return data


def save_graph(graph: nx.DiGraph, path: str | Path) -> None:
    """Write ``graph`` as deterministic node-link JSON, atomically."""
    atomic_write_text(path, dump_json(graph_to_dict(graph)))


def load_graph(path: str | Path) -> nx.DiGraph:
    """Read a graph written by :func:`save_graph`; InputError when the file is not one."""
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("no such file", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", path=path) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"malformed JSON: {exc.msg}", path=path, record=f"line {exc.lineno} column {exc.colno}"
        ) from None
    return graph_from_dict(data, path=path)


def graph_from_dict(data: Any, *, path: str | None = None) -> nx.DiGraph:
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        raise InputError('not a node-link graph (no "nodes" list)', path=path)
    if not isinstance(data.get("edges"), list):
        raise InputError(
            'not a segmenter graph: no "edges" list (node-link data saved with edges="edges")',
            path=path,
        )
    if data.get("directed") is not True or data.get("multigraph"):
        raise InputError("not a segmenter graph: expected a directed, non-multi graph", path=path)
    attrs = data.get("graph") or {}
    if not isinstance(attrs, dict):
        raise InputError('"graph" must be an object', path=path)
    if "format" in attrs and attrs["format"] != GRAPH_FORMAT:
        raise InputError(f"not a {GRAPH_FORMAT} file (format {attrs['format']!r})", path=path)
    version = attrs.get("version", GRAPH_VERSION)
    if not isinstance(version, int) or version > GRAPH_VERSION:
        raise InputError(
            f"graph version {version!r} is newer than this reader (version {GRAPH_VERSION})",
            path=path,
        )
    ids: set[Any] = set()
    for i, node in enumerate(data["nodes"]):
        if not isinstance(node, dict) or not isinstance(node.get("id"), str):
            raise InputError("node without a string id", path=path, record=f"nodes[{i}]")
        if node.get("kind") not in NODE_KINDS:
            raise InputError(
                f"node {node['id']!r}: kind must be one of {', '.join(NODE_KINDS)}",
                path=path,
                record=f"nodes[{i}]",
            )
        ids.add(node["id"])
    for i, edge in enumerate(data["edges"]):
        if (
            not isinstance(edge, dict)
            or edge.get("source") not in ids
            or edge.get("target") not in ids
        ):
            raise InputError(
                "edge whose source or target is not a node", path=path, record=f"edges[{i}]"
            )
        if not isinstance(edge.get("ports", []), list):
            raise InputError('"ports" must be a list', path=path, record=f"edges[{i}]")
    try:
        graph = nx.node_link_graph(data, directed=True, multigraph=False, edges="edges")
    except (KeyError, TypeError, nx.NetworkXError) as exc:
        raise InputError(f"malformed graph: {exc}", path=path) from None
    return graph


LEARNING_BUCKET: Final = 3600.0


def graph_stats(graph: nx.DiGraph, *, top: int = 10) -> dict[str, Any]:
    """Counts by node kind, edges, flows, packets, bytes, top talkers, and learning completeness.

    ``learning`` counts new edges per hour of the capture window, an edge being a (client,
    server, protocol, port) entry counted at its ``first_seen``: when the last hours still bring
    new edges, a longer capture would likely find more. ``window`` is the span of the flows.
    """
    by_kind: Counter[str] = Counter(attrs.get("kind", "?") for _, attrs in graph.nodes(data=True))
    unobserved = sorted(
        n
        for n, a in graph.nodes(data=True)
        if a.get("kind") == "workload" and not a.get("observed")
    )
    named_sets = sum(1 for _, a in graph.nodes(data=True) if a.get("aggregation"))
    talk_bytes: Counter[str] = Counter()
    talk_flows: Counter[str] = Counter()
    protocols: Counter[str] = Counter()
    firsts: list[float] = []
    lasts: list[float] = []
    flows = packets = volume = entries = 0
    for src, dst, attrs in graph.edges(data=True):
        flows += attrs.get("flows", 0)
        packets += attrs.get("packets", 0)
        volume += attrs.get("bytes", 0)
        for entry in attrs.get("ports", []):
            entries += 1
            protocols[entry.get("protocol", "?")] += entry.get("flows", 0)
            if isinstance(entry.get("first_seen"), int | float):
                firsts.append(float(entry["first_seen"]))
            if isinstance(entry.get("last_seen"), int | float):
                lasts.append(float(entry["last_seen"]))
        for node in {src, dst}:
            talk_bytes[node] += attrs.get("bytes", 0)
            talk_flows[node] += attrs.get("flows", 0)
    talkers = sorted(talk_bytes, key=lambda n: (-talk_bytes[n], -talk_flows[n], n))[:top]
    return {
        "nodes": graph.number_of_nodes(),
        "nodes_by_kind": dict(sorted(by_kind.items())),
        "unobserved_workloads": len(unobserved),
        "external_named_sets": named_sets,
        "edges": graph.number_of_edges(),
        "self_loops": nx.number_of_selfloops(graph),
        "port_entries": entries,
        "flows": flows,
        "packets": packets,
        "bytes": volume,
        "flows_by_protocol": dict(sorted(protocols.items())),
        "top_talkers": [
            {
                "node": n,
                "bytes": talk_bytes[n],
                "flows": talk_flows[n],
                "peers": len((set(graph.predecessors(n)) | set(graph.successors(n))) - {n}),
            }
            for n in talkers
        ],
        **_learning(firsts, lasts),
    }


def _learning(firsts: list[float], lasts: list[float]) -> dict[str, Any]:
    if not firsts:
        return {"window": None, "learning": None}
    start = min(firsts)
    end = max([*lasts, *firsts])
    buckets = [0] * (math.floor((end - start) / LEARNING_BUCKET) + 1)
    for first in firsts:
        buckets[math.floor((first - start) / LEARNING_BUCKET)] += 1
    last_new = max(firsts)
    return {
        "window": {"start": start, "end": end, "seconds": end - start},
        "learning": {
            "bucket_seconds": LEARNING_BUCKET,
            "new_edges_per_hour": buckets,
            "new_edges_last_hour": sum(1 for f in firsts if f > end - LEARNING_BUCKET),
            "last_new_edge": last_new,
            "quiet_seconds": end - last_new,
        },
    }


def format_stats(stats: Mapping[str, Any]) -> str:
    """:func:`graph_stats` as plain text for ``segmenter graph --stats`` (ends with a newline)."""
    lines: list[str] = []
    kinds = ", ".join(f"{k} {v}" for k, v in stats.get("nodes_by_kind", {}).items())
    line = f"nodes: {stats.get('nodes', 0)}" + (f" ({kinds})" if kinds else "")
    if stats.get("unobserved_workloads"):
        line += f"; {_n(stats['unobserved_workloads'], 'workload')} not seen in traffic"
    lines.append(line)
    if stats.get("external_named_sets"):
        lines.append(
            f"external named sets: {stats['external_named_sets']} (addresses grouped by DNS name)"
        )
    lines.append(
        f"edges: {stats.get('edges', 0)} ({_n(stats.get('self_loops', 0), 'self-loop')}), "
        f"{_n(stats.get('port_entries', 0), '(protocol, port) entry', '(protocol, port) entries')}"
    )
    protocols = ", ".join(f"{k} {v}" for k, v in stats.get("flows_by_protocol", {}).items())
    lines.append(
        f"flows: {stats.get('flows', 0)}"
        + (f" ({protocols})" if protocols else "")
        + f", {_n(stats.get('packets', 0), 'packet')}, {_size(stats.get('bytes', 0))}"
    )
    window, learning = stats.get("window"), stats.get("learning")
    if window and learning:
        start, end = float(window["start"]), float(window["end"])
        lines.append(
            f"capture window: {_utc(start)} to {_utc(end)} ({_span(float(window['seconds']))})"
        )
        lines.append(
            "new edges per hour (an edge is a client, server, protocol and port, counted when "
            "first seen):"
        )
        per_hour = list(learning["new_edges_per_hour"])
        bucket = float(learning.get("bucket_seconds", LEARNING_BUCKET))
        for i, count in enumerate(per_hour):
            lo, hi = start + i * bucket, min(start + (i + 1) * bucket, end)
            lines.append(f"  hour {i + 1:>3} ({_utc(lo)[11:16]}-{_utc(hi)[11:16]}Z): {count}")
        quiet = float(learning["quiet_seconds"])
        lines.append(
            f"last new edge: {_utc(float(learning['last_new_edge']))}, "
            f"{_span(quiet)} before the end of the window"
        )
        lines.append(_verdict(float(window["seconds"]), quiet, learning, bucket))
    talkers = stats.get("top_talkers") or []
    if talkers:
        lines.append("top talkers by bytes:")
        width = max(len(str(t["node"])) for t in talkers)
        for t in talkers:
            lines.append(
                f"  {t['node']:<{width}}  {_size(t['bytes']):>9}  {_n(t['flows'], 'flow'):>13}  "
                f"{_n(t['peers'], 'peer'):>10}"
            )
    return "\n".join(lines) + "\n"


def _verdict(seconds: float, quiet: float, learning: Mapping[str, Any], bucket: float) -> str:
    recent = int(learning.get("new_edges_last_hour", 0))
    total = sum(learning.get("new_edges_per_hour") or [0])
    if seconds < bucket:
        return (
            f"learning: the window is shorter than an hour; {_n(total, 'edge')} learned, the "
            f"last {_span(quiet)} before its end. Capture over a full business cycle (a day, "
            "with its batch jobs) before trusting the graph as complete."
        )
    if recent:
        share = 100.0 * recent / total if total else 0.0
        return (
            f"learning: still learning: {_n(recent, 'new edge')} ({share:.0f}%) in the last hour "
            "of the window; a longer capture would likely find more."
        )
    return (
        f"learning: no new edge in the last {_span(quiet)} of the window; the window looks long "
        "enough for the traffic it saw."
    )


def _n(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count == 1 else (plural or singular + 's')}"


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(math.floor(ts), UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _span(seconds: float) -> str:
    total = max(0, round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    shown = [f"{n} {unit}" for n, unit in parts if n][:2]
    return " ".join(shown) if shown else "0 s"


def _size(count: float) -> str:
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def _flat_value(value: Any) -> str | int | float | bool:
    if isinstance(value, bool | int | float | str):
        return value
    if value is None:
        return ""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _flat_copy(graph: nx.DiGraph) -> nx.DiGraph:
    """The graph with list/dict attributes as JSON strings and None as "" (GraphML, GEXF)."""
    flat = nx.DiGraph()
    for node in sorted(graph.nodes):
        flat.add_node(node, **{k: _flat_value(v) for k, v in sorted(graph.nodes[node].items())})
    for src, dst in sorted(graph.edges):
        flat.add_edge(
            src, dst, **{k: _flat_value(v) for k, v in sorted(graph.edges[src, dst].items())}
        )
    return flat


def graph_to_graphml(graph: nx.DiGraph, path: str | Path) -> None:
    """Write GraphML (list and dict attributes become JSON strings), atomically."""
    text = "\n".join(nx.generate_graphml(_flat_copy(graph))) + "\n"
    atomic_write_text(path, text)


def graph_to_gexf(graph: nx.DiGraph, path: str | Path) -> None:
    """Write GEXF 1.2 (list and dict attributes become JSON strings), atomically.

    networkx stamps the current date in ``<meta lastmodifieddate>``; it is removed so that the
    same graph gives the same bytes.
    """
    text = "\n".join(nx.generate_gexf(_flat_copy(graph))) + "\n"
    text = re.sub(r' lastmodifieddate="[^"]*"', "", text, count=1)
    atomic_write_text(path, text)
