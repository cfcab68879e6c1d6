"""Graph files: deterministic node-link JSON (``docs/graph-format.md``), GraphML and GEXF."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

import networkx as nx

from segmenter.errors import InputError
from segmenter.fileio import atomic_write_text, dump_json
from segmenter.model import NodeKind

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

