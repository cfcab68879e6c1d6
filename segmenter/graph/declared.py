"""Declared flows in the graph: the edges a capture cannot show, marked as declared.

``segmenter.yaml`` declares flows that no capture window catches (a monthly batch, a failover
path, a backup window; :class:`~segmenter.config.DeclaredFlowDecl`). They join the graph as port
entries with ``declared: <reason>`` and no observed flows (``flows: 0``, no timestamps), on
edges marked ``declared: true`` when nothing was observed between the two ends; a declared
address block outside the inventory becomes an ``external`` node with ``declared: true`` and
``cidrs: [<block>]``. An entry that was also observed keeps its counts and gains the
``declared`` reason. So zones, crossings and the policies account for them like any edge, and
every reader can tell them apart (``docs/graph-format.md``). The graph attribute ``declared``
counts them (absent: none, and nothing to look for).

:func:`apply_declared` first removes what an earlier declaration added, so the graph always holds
exactly the declarations of the plan at hand.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import networkx as nx

from segmenter.config import DeclaredFlowDecl, FlowEnd
from segmenter.errors import PlanError
from segmenter.graph.resolve import is_private
from segmenter.model import Labels, NodeId

DECLARED: Final = "declared"


@dataclass(frozen=True, order=True)
class DeclaredFlow:
    """One declared (client, server, protocol, port), resolved to graph node ids."""

    client: str
    server: str
    protocol: str
    port: int | None
    reason: str
    justification: str = ""
    approved_by: str = ""
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"client": self.client, "server": self.server, "protocol": self.protocol,
                "port": self.port, "reason": self.reason, "justification": self.justification,
                "approved_by": self.approved_by, "source": self.source}

    @classmethod
    def from_dict(cls, data: Any) -> DeclaredFlow:
        return cls(str(data["client"]), str(data["server"]), str(data["protocol"]),
                   None if data.get("port") is None else int(data["port"]), str(data["reason"]),
                   str(data.get("justification") or ""), str(data.get("approved_by") or ""),
                   str(data.get("source") or ""))


def external_node_id(cidr: str) -> str:
    """The node of a declared address block: ``external:<ip>`` for one address (the same node
    as observed traffic to it), ``external:<cidr>`` for a block.

    >>> external_node_id("203.0.113.10/32"), external_node_id("198.51.100.0/24")
    ('external:203.0.113.10', 'external:198.51.100.0/24')
    """
    net = ipaddress.ip_network(cidr, strict=False)
    if net.num_addresses == 1:
        return NodeId.of_external(str(net.network_address))
    return NodeId.of_external(str(net))


def resolve_declared(graph: nx.DiGraph, decls: Iterable[DeclaredFlowDecl],
                     path: str | None = None) -> tuple[DeclaredFlow, ...]:
    """Every (client, server, port) the declarations name, as graph node ids.

    Raises:
        PlanError: an end that names no workload of the graph (every inventory workload is a
            node, seen in traffic or not), naming the declaration.
    """
    out: set[DeclaredFlow] = set()
    for decl in decls:
        clients = _ends(graph, decl.client, decl, "from", path)
        servers = _ends(graph, decl.server, decl, "to", path)
        for client in clients:
            for server in servers:
                for port in decl.ports:
                    out.add(DeclaredFlow(client, server, decl.protocol.value, port, decl.reason,
                                         decl.justification, decl.approved_by, decl.source))
    return tuple(sorted(out, key=lambda f: (f.client, f.server, f.protocol, f.port or 0,
                                            f.source)))


def _ends(graph: nx.DiGraph, end: FlowEnd, decl: DeclaredFlowDecl, key: str,
          path: str | None) -> list[str]:
    if end.cidr is not None:
        return [external_node_id(end.cidr)]
    match = end.workloads
    assert match is not None
    found = sorted(
        node for node, attrs in graph.nodes(data=True)
        if attrs.get("kind") == "workload"
        and match.matches(node, attrs.get("namespace"), Labels.of(attrs.get("labels") or {})))
    if not found:
        record = decl.source.split(" ", 1)[-1] if decl.source else None
        raise PlanError(f"`{key}` ({match.describe()}) matches no workload in the inventory",
                        path=path, record=f"{record}.{key}" if record else key)
    return found


def strip_declared(graph: nx.DiGraph) -> None:
    """Remove what declarations added: declared-only port entries, edges and nodes; the
    ``declared`` mark on entries that were also observed."""
    if not graph.graph.pop(DECLARED, None):
        return
    for u, v in list(graph.edges):
        data = graph.edges[u, v]
        ports = data.get("ports", [])
        if not any(DECLARED in p for p in ports):
            continue
        kept = []
        for entry in ports:
            if DECLARED not in entry:
                kept.append(entry)
            elif entry.get("flows"):
                kept.append({k: x for k, x in entry.items() if k != DECLARED})
        if kept:
            data["ports"] = kept
            data.pop(DECLARED, None)
        else:
            graph.remove_edge(u, v)
    for node in [n for n, a in graph.nodes(data=True) if a.get(DECLARED)]:
        if graph.degree(node) == 0:
            graph.remove_node(node)


def apply_declared(graph: nx.DiGraph, flows: Iterable[DeclaredFlow]) -> None:
    """Put ``flows`` into ``graph`` in place (after removing earlier declarations)."""
    strip_declared(graph)
    flows = tuple(flows)
    if flows:
        graph.graph[DECLARED] = len(flows)
    for flow in flows:
        for node in (flow.client, flow.server):
            if node not in graph:
                _add_external(graph, node)
        entry: dict[str, Any] = {
            "protocol": flow.protocol, "port": flow.port, "flows": 0, "packets": 0, "bytes": 0,
            "first_seen": None, "last_seen": None, "tls": False, "via_service": None,
            "via_addresses": [], DECLARED: flow.reason}
        if not graph.has_edge(flow.client, flow.server):
            graph.add_edge(flow.client, flow.server, ports=[entry], flows=0, packets=0, bytes=0,
                           first_seen=None, last_seen=None, declared=True)
            continue
        data = graph.edges[flow.client, flow.server]
        same = [p for p in data.get("ports", [])
                if (p.get("protocol"), p.get("port")) == (flow.protocol, flow.port)]
        if same:
            # Observed too (or declared twice): the entry keeps its counts and says both.
            reasons = sorted({*str(same[0].get(DECLARED) or "").split("; "), flow.reason} - {""})
            same[0][DECLARED] = "; ".join(reasons)
            continue
        data["ports"] = sorted([*data.get("ports", []), entry],
                               key=lambda p: (str(p.get("protocol")), p.get("port") or 0))


def _add_external(graph: nx.DiGraph, node: str) -> None:
    parsed = NodeId.parse(node)
    if parsed.address is None:
        raise PlanError(f"declared flow end {node} is not in the graph")
    net = ipaddress.ip_network(parsed.address, strict=False)
    attrs: dict[str, Any] = {
        "kind": "external", "label": parsed.address, "dns_names": [],
        # One address of the block stands for it where a single endpoint is needed (the
        # report's replay of declared flows); `cidrs` is what policies allow.
        "addresses": [str(net.network_address)], "private": is_private(str(net.network_address)),
        "observed": False, DECLARED: True,
    }
    if net.num_addresses > 1:
        attrs["cidrs"] = [str(net)]
    graph.add_node(node, **attrs)


__all__ = ["DECLARED", "DeclaredFlow", "apply_declared", "external_node_id", "resolve_declared",
           "strip_declared"]
