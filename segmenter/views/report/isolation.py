"""The report's section on the isolation of the in-scope workloads: the check ``verify --plan``
runs (:mod:`segmenter.analysis.isolation`), on the graph's nodes, so that ``report`` and
``verify`` find and gate on the same things."""

from __future__ import annotations

from segmenter.analysis.findings import Finding
from segmenter.analysis.isolation import IsolationCheck, check_from_graph
from segmenter.views.report.document import Block, Heading, Para, Table
from segmenter.views.report.sections import ReportContext

_MAX_ROWS = 200


def isolation_section(ctx: ReportContext, blocks: list[Block], findings: list[Finding]
                      ) -> IsolationCheck | None:
    """Append the section; returns the check (None when nothing is in scope)."""
    blocks.append(Heading(2, "Isolation of the in-scope workloads", "isolation"))
    blocks.append(Para(
        "Every restricted and connected-to workload (PCI DSS 1.3.1, 1.3.2; HIPAA "
        "164.312(a)(1)) must be isolated for ingress and egress, and reachable only by the "
        "peers and ports of its observed flows (plus cluster DNS). Probed with segmenter's "
        f"policy engine under {ctx.enforcement} enforcement: from every other workload, every "
        "node, the API server, the external addresses seen and the internet (8.8.8.8, "
        "2001:4860:4860::8888) into the workload, and from the workload out to each of them, "
        "on every port a rule names, the observed and declared ports and TCP/22, 53, 80, 443, "
        "8080 and UDP/53."))
    if not ctx.plan.classes:
        blocks.append(Para("No restricted zone: nothing to check.", "info"))
        return None
    check = check_from_graph(ctx.graph, ctx.plan, ctx.engine, endpoints=ctx.endpoints,
                             manifests=ctx.manifests, inventory=ctx.inventory)
    rows, marks = [], []
    for w in check.workloads:
        if not w.checked:
            isolated = "not checked: no endpoint"
        elif w.unisolated:
            isolated = "**no**: " + "; ".join(f"{d}: {r}" for d, r in w.unisolated)
        else:
            isolated = "ingress and egress"
        rows.append((w.node, w.scope, isolated, str(w.probes), str(w.planned_allowed),
                     str(w.unpoliced), str(len(w.beyond_plan))))
        marks.append("ok" if w.clean else "fail")
    blocks.append(Table(("Workload", "Zone", "Isolated", "Probes", "Allowed as planned",
                         "Allowed, no policy deciding", "Allowed beyond the plan by a rule"),
                        tuple(rows), tuple(marks),
                        caption=f"{check.peers} peers, {len(check.ports)} ports, both "
                                "directions"))
    openings = [(w.node, o.direction, w.peer_labels.get(o.peer, o.peer), o.port_text(),
                 o.decided_by) for w in check.workloads for o in w.beyond_plan]
    if openings:
        first = f" (the first {_MAX_ROWS})" if len(openings) > _MAX_ROWS else ""
        blocks.append(Para(f"{len(openings)} probe(s) allowed beyond the plan{first}:", "fail"))
        blocks.append(Table(("Workload", "Direction", "Peer", "Port", "Allowed by"),
                            tuple(openings[:_MAX_ROWS]), ("fail",) * min(len(openings),
                                                                         _MAX_ROWS)))
    elif all(w.clean for w in check.workloads):
        blocks.append(Para("Every in-scope workload is isolated and reachable only as "
                           "planned.", "ok"))
    findings.extend(check.findings())
    return check


__all__ = ["isolation_section"]
