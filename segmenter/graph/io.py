"""Graph files: deterministic node-link JSON (``docs/graph-format.md``), GraphML and GEXF."""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import networkx as nx

from segmenter.documents import MAX_EPOCH, MIN_EPOCH, At, load_json
from segmenter.fileio import atomic_write_text, dump_json
from segmenter.model import NodeId, NodeKind, Transport

GRAPH_FORMAT: Final = "segmenter-graph"
GRAPH_VERSION: Final = 1
NODE_KINDS: Final = tuple(k.value for k in NodeKind)

def graph_to_dict(graph: nx.DiGraph) -> dict[str, Any]:
    """Node-link data with nodes sorted by id and edges by (source, target)."""
    data: dict[str, Any] = nx.node_link_data(graph, edges="edges")
    data["nodes"] = sorted(data["nodes"], key=lambda n: str(n["id"]))
    data["edges"] = sorted(data["edges"], key=lambda e: (str(e["source"]), str(e["target"])))
    return data


def save_graph(graph: nx.DiGraph, path: str | Path) -> None:
    """Write ``graph`` as deterministic node-link JSON, atomically."""
    atomic_write_text(path, dump_json(graph_to_dict(graph)))


def load_graph(path: str | Path) -> nx.DiGraph:
    """Read a graph written by :func:`save_graph`; InputError naming the node, edge and
    attribute of anything that is not one (``docs/graph-format.md``)."""
    path = str(path)
    return graph_from_dict(load_json(path), path=path)


def graph_from_dict(data: Any, *, path: str | None = None) -> nx.DiGraph:
    """A graph from node-link data, every documented attribute checked for its type (the
    planner, the compiler and the views read them without checking again)."""
    doc = At(data, path)
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        doc.fail('not a node-link graph (no "nodes" list)')
    if not isinstance(data.get("edges"), list):
        doc.fail('not a segmenter graph: no "edges" list (node-link data saved with '
                 'edges="edges")')
    if data.get("directed") is not True or data.get("multigraph"):
        doc.fail("not a segmenter graph: expected a directed, non-multi graph")
    attrs = doc.key("graph")
    if attrs.value is not None:
        attrs.mapping()
        if attrs.has("format") and attrs.value["format"] != GRAPH_FORMAT:
            attrs.key("format").fail(f"not a {GRAPH_FORMAT} file (format "
                                     f"{attrs.value['format']!r})")
        version = attrs.value.get("version", GRAPH_VERSION)
        if type(version) is not int or version > GRAPH_VERSION:
            attrs.key("version").fail(f"graph version {version!r} is newer than this reader "
                                      f"(version {GRAPH_VERSION})")
        for entry in attrs.key("blocked").items():
            _check_attrs(entry, _BLOCKED_ATTRS)
        identity = attrs.key("identity")
        if identity.value is not None:
            _check_attrs(identity, _IDENTITY_ATTRS)
    ids: set[str] = set()
    for node in doc.key("nodes").items():
        ids.add(_check_node(node, ids))
    pairs: set[tuple[str, str]] = set()
    for edge in doc.key("edges").items():
        ends = (edge.value.get("source"), edge.value.get("target")) if isinstance(
            edge.value, dict) else (None, None)
        if not all(isinstance(end, str) and end in ids for end in ends):
            edge.fail("edge whose source or target is not a node")
        pair = (edge.value["source"], edge.value["target"])
        if pair in pairs:
            edge.fail(f"a second edge {pair[0]} -> {pair[1]}")
        pairs.add(pair)
        _check_attrs(edge, _EDGE_ATTRS)
        for entry in edge.key("ports").items():
            _check_attrs(entry, _PORT_ATTRS)
            if entry.value.get("port") is None and entry.value["protocol"] in _PORTED:
                # A missing port would be compiled as "every port" of the protocol.
                entry.fail(f"a {entry.value['protocol']} entry needs its port")
    return nx.node_link_graph(data, directed=True, multigraph=False, edges="edges")


def _check_node(node: At, ids: set[str]) -> str:
    if not isinstance(node.value, dict) or type(node.value.get("id")) is not str:
        node.fail("node without a string id")
    node_id: str = node.value["id"]
    if node_id in ids:
        node.fail(f"a second node {node_id!r}")
    kind = node.value.get("kind")
    if kind not in NODE_KINDS:
        node.fail(f"node {node_id!r}: kind must be one of {', '.join(NODE_KINDS)}")
    try:
        parsed = NodeId.parse(node_id)
    except ValueError:
        node.fail(f"{node_id!r} is not a node id (namespace/Kind/name, node:<name>, apiserver, "
                  "external:<address>, external:name:<dns name>)")
    if parsed.kind.value != kind:
        node.fail(f"node {node_id!r} is a {parsed.kind.value} id, but its kind is {kind}")
    if parsed.address is not None and _ip(parsed.address) is None:
        node.fail(f"node {node_id!r}: {parsed.address!r} is not an IP address")
    _check_attrs(node, _NODE_ATTRS)
    if parsed.workload is not None:
        ref = parsed.workload
        for key, expected in (("namespace", ref.namespace), ("name", ref.name),
                              ("workload_kind", ref.kind)):
            if node.value.get(key, expected) != expected or (
                    key != "workload_kind" and key not in node.value):
                node.key(key).fail(f"must be {expected!r}, as the node id {node_id!r} says")
    return node_id


@functools.lru_cache(maxsize=1 << 16)
def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _ips(at: At) -> None:
    for item in at.items():
        if _ip(item.text()) is None:
            item.fail(f"{item.value!r} is not an IP address")


def _cidrs(at: At) -> None:
    for item in at.items():
        try:
            ipaddress.ip_network(item.text())
        except ValueError:
            item.fail(f"{item.value!r} is not a CIDR block")


def _count(at: At) -> None:
    at.integer(0, 2**63 - 1)


def _port(at: At) -> None:
    at.integer_or_none(0, 65535)


def _transport(at: At) -> None:
    at.choice(_TRANSPORTS)


def _text_or_none(at: At) -> None:
    at.text_or_none()


def _is_texts(value: Any) -> bool:
    return type(value) is list and all(type(v) is str for v in value)


def _is_text_map(value: Any) -> bool:
    return type(value) is dict and all(type(v) is str for v in value.values())


def _is_ips(value: Any) -> bool:
    return type(value) is list and all(type(v) is str and _ip(v) is not None for v in value)


_TRANSPORTS: Final = {t.value: t for t in Transport}
_PORTED: Final = frozenset({Transport.TCP.value, Transport.UDP.value, Transport.SCTP.value})
# attribute -> (required, a fast test of the raw value, the check that names what is wrong)
_Check = tuple[bool, Callable[[Any], bool], Callable[[At], Any]]
_NODE_ATTRS: Final[dict[str, _Check]] = {
    "label": (False, lambda v: type(v) is str, At.text),
    "observed": (False, lambda v: type(v) is bool, At.flag),
    "namespace": (False, lambda v: type(v) is str, At.text),
    "name": (False, lambda v: type(v) is str, At.text),
    "workload_kind": (False, lambda v: type(v) is str, At.text),
    "labels": (False, _is_text_map, At.text_map),
    "annotations": (False, _is_text_map, At.text_map),
    "host_network": (False, lambda v: type(v) is bool, At.flag),
    "pod_count": (False, lambda v: type(v) is int and 0 <= v < 2**63, _count),
    "images": (False, _is_texts, At.texts),
    "cluster_dns": (False, lambda v: type(v) is bool, At.flag),
    "addresses": (False, _is_ips, _ips),
    "addresses_seen": (False, _is_ips, _ips),
    "dns_names": (False, _is_texts, At.texts),
    "private": (False, lambda v: type(v) is bool, At.flag),
    "cidrs": (False, lambda _: False, _cidrs),
    "aggregation": (False, lambda v: type(v) is str, At.text),
}
_TIMES: Final[_Check] = (True, lambda v: type(v) is float and MIN_EPOCH <= v <= MAX_EPOCH,
                         At.epoch)
_COUNT: Final[_Check] = (True, lambda v: type(v) is int and 0 <= v < 2**63, _count)
_EDGE_ATTRS: Final[dict[str, _Check]] = {
    "ports": (True, lambda v: type(v) is list, At.items),
    "flows": _COUNT, "packets": _COUNT, "bytes": _COUNT,
    "first_seen": _TIMES, "last_seen": _TIMES,
}
_PORT_ATTRS: Final[dict[str, _Check]] = {
    "protocol": (True, lambda v: isinstance(v, str) and v in _TRANSPORTS, _transport),
    "port": (False, lambda v: v is None or (type(v) is int and 0 <= v <= 65535), _port),
    "flows": _COUNT, "packets": _COUNT, "bytes": _COUNT,
    "first_seen": _TIMES, "last_seen": _TIMES,
    "tls": (True, lambda v: type(v) is bool, At.flag),
    "via_service": (False, lambda v: v is None or type(v) is str, _text_or_none),
    "via_addresses": (False, _is_ips, _ips),
    "sources": (False, _is_texts, At.texts),
    "sampled": (False, lambda v: type(v) is bool, At.flag),
}
# The graph attribute ``blocked`` (graph.blocked): flows the policies in force did not let
# through, shown by ``graph --stats``, ``run`` and the notebook.
_BLOCKED_ATTRS: Final[dict[str, _Check]] = {
    "client": (True, lambda v: type(v) is str, At.text),
    "server": (True, lambda v: type(v) is str, At.text),
    "protocol": (True, lambda v: isinstance(v, str) and v in _TRANSPORTS, _transport),
    "port": (False, lambda v: v is None or (type(v) is int and 0 <= v <= 65535), _port),
    "verdict": (True, lambda v: type(v) is str, At.text),
    "flows": _COUNT,
    "first_seen": _TIMES, "last_seen": _TIMES,
    "sources": (True, _is_texts, At.texts),
    "policies": (True, _is_texts, At.texts),
    "sampled": (False, lambda v: type(v) is bool, At.flag),
}
# The graph attribute ``identity`` (graph.identity): the counts ``graph --stats`` adds up.
_IDENTITY_ATTRS: Final[dict[str, _Check]] = {
    "identified_ends": (False, lambda v: type(v) is int and 0 <= v < 2**63, _count),
    "checked_ends": (False, lambda v: type(v) is int and 0 <= v < 2**63, _count),
    "addressless_ends": (False, lambda v: type(v) is int and 0 <= v < 2**63, _count),
    "notes": (False, _is_texts, At.texts),
}


def _check_attrs(at: At, checks: dict[str, _Check]) -> None:
    values = at.mapping()
    for key, (required, fast, check) in checks.items():
        value = values.get(key)
        if value is None:
            if required:
                at.fail(f"missing {key!r}")
            continue
        if not fast(value):
            check(at.key(key))


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

