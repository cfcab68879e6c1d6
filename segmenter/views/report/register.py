"""The allowed-flow register (PCI DSS 1.2.5): every flow across a zone boundary with its
evidence, and its justification from the register kept in ``segmenter.yaml``
(``justifications``, and the ``justification`` / ``approved_by`` of ``declared_flows``), so
that it survives every regeneration of the report. A flow across a restricted zone's boundary
with no entry is an ``unjustified`` finding. Also the declared flows, apart from the observed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx

from segmenter.analysis.findings import Finding, FindingKind
from segmenter.config import Config, FlowEnd
from segmenter.graph.stats import count_text, entry_of
from segmenter.model import Labels, NodeId
from segmenter.planner import Crossing, Plan, Zone
from segmenter.views.report.document import Block, Heading, Para, Table, _slug
from segmenter.views.report.sections import (
    ReportContext,
    _check,
    _decided_by,
    _name,
    _port,
    _span,
)


@dataclass(frozen=True)
class RegisterEntry:
    """One justification: the flows it covers (``client``/``server`` ends as segmenter.yaml
    names them, or exact node ids from the plan), the business need, who approved it, when,
    the ticket, and where it is written."""

    reason: str
    approved_by: str
    date: str
    ticket: str
    source: str
    protocol: str
    ports: tuple[int | None, ...]
    client: FlowEnd | str
    server: FlowEnd | str

    def covers(self, graph: nx.DiGraph, c: Crossing) -> bool:
        return (c.protocol == self.protocol and c.port in self.ports
                and _end_matches(graph, self.client, c.client)
                and _end_matches(graph, self.server, c.server))


def _addresses(graph: nx.DiGraph, node: str) -> list[str]:
    attrs = graph.nodes[node] if node in graph else {}
    found = [str(a) for a in (attrs.get("addresses") or [])]
    found += [str(c) for c in (attrs.get("cidrs") or [])]
    if not found:
        try:
            address = NodeId.parse(node).address
        except ValueError:
            address = None
        if address:
            found.append(address)
    return found


def _end_matches(graph: nx.DiGraph, end: FlowEnd | str, node: str) -> bool:
    if isinstance(end, str):
        return end == node
    attrs = graph.nodes[node] if node in graph else {}
    if end.workloads is not None:
        return attrs.get("kind") == "workload" and end.workloads.matches(
            node, attrs.get("namespace"), Labels.of(attrs.get("labels") or {}))
    if end.cidr is None or attrs.get("kind") == "workload":
        return False
    block = ipaddress.ip_network(end.cidr, strict=False)
    found = _addresses(graph, node)
    try:
        nets = [ipaddress.ip_network(a, strict=False) for a in found]
    except ValueError:
        return False
    return bool(nets) and all(n.version == block.version and n.subnet_of(block)  # type: ignore[arg-type]
                              for n in nets)


def register_entries(config: Config | None, plan: Plan) -> list[RegisterEntry]:
    """The register: ``config``'s justifications and justified declared flows; without a
    config, the plan's declared flows that carry a justification."""
    out: list[RegisterEntry] = []
    if config is None:
        for f in plan.declared:
            if f.justification and f.approved_by:
                out.append(RegisterEntry(f.justification, f.approved_by, "", "", f.source,
                                         f.protocol, (f.port,), f.client, f.server))
        return out
    for j in config.justifications:
        out.append(RegisterEntry(j.reason, j.approved_by, j.date, j.ticket, j.source,
                                 str(j.protocol), j.ports, j.client, j.server))
    for d in config.declared_flows:
        if d.justification and d.approved_by:
            out.append(RegisterEntry(d.justification, d.approved_by, d.date, d.ticket,
                                     d.source, str(d.protocol), d.ports, d.client, d.server))
    return out


def _restricted_boundary(c: Crossing) -> bool:
    return Zone.RESTRICTED in (c.client_zone, c.server_zone)


def register_section(ctx: ReportContext, blocks: list[Block], findings: list[Finding]) -> None:
    blocks.append(Heading(2, "Allowed-flow register: flows across zone boundaries",
                          "register"))
    blocks.append(Para(
        "Every observed flow whose ends are in different zones, and every flow segmenter.yaml "
        "declares across them (rows marked *declared*: not seen in the capture) (PCI DSS 1.2.5; "
        "HIPAA 164.312(a)(1) access authorisation). The policies allow exactly these. The "
        "justification, approver, date and ticket come from the register in segmenter.yaml "
        "(`justifications`, and declared flows' `justification` and `approved_by`), so they "
        "survive every regeneration; a flow into or out of a restricted zone without an entry "
        "is a finding (`unjustified`)."))
    entries = register_entries(ctx.config, ctx.plan)
    if ctx.config is None:
        blocks.append(Para("No segmenter.yaml was given (`--config`): the register holds only "
                           "the justifications of the plan's declared flows.", "warn"))
    if not ctx.plan.classes:
        blocks.append(Para("No zones: nothing is in scope.", "info"))
    used: set[str] = set()
    for scope in ctx.plan.classes:
        rows, marks = [], []
        for c in scope.crossings:
            verdict = _check(ctx, c.client, c.server, c.protocol, c.port)
            allowed_by = "-" if verdict is None else _decided_by(verdict)
            mark = ""
            flow = f"{c.client} -> {c.server} {_port(c.protocol, c.port)}"
            if verdict is not None and not verdict.allowed:
                mark = "fail"
                allowed_by = "DENIED: " + verdict.summary()
                what = "observed" if c.flows or not c.declared else "declared"
                findings.append(Finding.of(FindingKind.DENIED_FLOW, flow,
                                           f"{what} flow {flow} would be denied"))
            found = [e for e in entries if e.covers(ctx.graph, c)]
            used.update(e.source for e in found)
            if not found and _restricted_boundary(c):
                mark = mark or "warn"
                findings.append(Finding.of(
                    FindingKind.UNJUSTIFIED, flow,
                    f"flow {flow} crosses the restricted {scope.data_class} zone's boundary "
                    "with no entry in the justifications register (segmenter.yaml "
                    "`justifications`; PCI DSS 1.2.5)"))
            seen = _span(c.first_seen, c.last_seen) if c.flows else "not observed"
            if c.declared:
                seen += f"; *declared*: {c.declared}"
            rows.append((f"{_name(ctx.graph, c.client)} ({c.client_zone})",
                         f"{_name(ctx.graph, c.server)} ({c.server_zone})",
                         _port(c.protocol, c.port), "yes" if c.tls else "no",
                         count_text(c.flows, entry_of(ctx.graph, c.client, c.server,
                                                      c.protocol, c.port))
                         if c.flows or not c.declared else "declared",
                         seen, allowed_by, *_columns(found)))
            marks.append(mark)
        blocks.append(Heading(3, f"{scope.title} (`{scope.data_class}`): "
                                 f"{len(rows)} flows", f"register-{_slug(scope.data_class)}"))
        if rows:
            blocks.append(Table(("Client (zone)", "Server (zone)", "Port", "TLS", "Flows",
                                 "First – last seen (UTC)", "Allowed by", "Justification",
                                 "Approver", "Date", "Ticket", "Register entry"),
                                tuple(rows), tuple(marks)))
    stale = sorted({e.source for e in entries} - used)
    if stale and ctx.plan.classes:
        blocks.append(Para("Register entries that match no flow across a zone boundary "
                           "(stale, or a name mistyped): " + ", ".join(f"`{s}`" for s in stale)
                           + ".", "info"))


def _columns(found: Sequence[RegisterEntry]) -> tuple[str, str, str, str, str]:
    def joined(values: Iterable[str]) -> str:
        return "; ".join(dict.fromkeys(v for v in values if v))

    return (joined(e.reason for e in found), joined(e.approved_by for e in found),
            joined(e.date for e in found), joined(e.ticket for e in found),
            joined(e.source for e in found))


def declared_section(ctx: ReportContext, blocks: list[Block], findings: list[Finding]
                     ) -> None:
    """The flows segmenter.yaml declares (a capture cannot show them), apart from the observed."""
    if not ctx.plan.declared:
        return
    blocks.append(Heading(2, "Declared flows (not observed)", "declared"))
    blocks.append(Para("Flows the capture cannot show (a monthly batch, a failover path, a "
                       "backup window), declared in segmenter.yaml with a reason; the policies "
                       "allow them like observed flows, with the provenance `declared: "
                       "<reason>`. A declared flow into or out of a restricted zone carries a "
                       "justification and an approver, or the plan refuses it."))
    rows, marks = [], []
    for flow in ctx.plan.declared:
        verdict: Any = _check(ctx, flow.client, flow.server, flow.protocol, flow.port)
        allowed_by = "-" if verdict is None else _decided_by(verdict)
        mark = ""
        if verdict is not None and not verdict.allowed:
            mark = "fail"
            allowed_by = "DENIED: " + verdict.summary()
            what = f"{flow.client} -> {flow.server} {_port(flow.protocol, flow.port)}"
            findings.append(Finding.of(FindingKind.DENIED_FLOW, what,
                                       f"declared flow {what} would be denied"))
        zones = "; ".join(f"{s.data_class}: {s.zone_of(flow.client)} -> {s.zone_of(flow.server)}"
                          for s in ctx.plan.classes) or "-"
        rows.append((_name(ctx.graph, flow.client), _name(ctx.graph, flow.server),
                     _port(flow.protocol, flow.port), zones, flow.reason,
                     flow.justification or "-", flow.approved_by or "-", allowed_by,
                     flow.source))
        marks.append(mark)
    blocks.append(Table(("Client", "Server", "Port", "Zones", "Reason", "Justification",
                         "Approver", "Allowed by", "Declared in"), tuple(rows), tuple(marks)))


__all__ = ["RegisterEntry", "declared_section", "register_entries", "register_section"]
