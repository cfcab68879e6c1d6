"""The report's segmentation test section: the tables, the summary line and the picture, all
read from one :class:`~segmenter.analysis.segmentation.SegmentationTest` (and the test of the
same graph with no policies, for the picture's "today" side)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from segmenter.analysis.findings import Finding
from segmenter.analysis.isolation import INGRESS
from segmenter.analysis.reachability import Reachability, reach_matrix
from segmenter.analysis.segmentation import (
    DENIED,
    NODE_LOCAL,
    PLANNED,
    UNPLANNED,
    WELL_KNOWN_PORTS,
    SegmentationTest,
    segmentation_test,
)
from segmenter.model import NodeKind
from segmenter.planner import Zone
from segmenter.targets import get_target
from segmenter.views.report.document import Block, Heading, Image, Para, Table
from segmenter.views.report.sections import ReportContext, _png

_MAX_ROWS: Final = 200
PICTURE: Final = "reachability.png"


@dataclass(frozen=True)
class SegmentationEvidence:
    """What the section showed: the test, the matrix drawn, and the summary's line."""

    test: SegmentationTest
    reach: Reachability
    summary: str

    def stats(self) -> dict[str, int]:
        """For the requirements mapping: probes, allowed beyond the plan, from outside."""
        unplanned = self.test.paths_at(UNPLANNED)
        external = {p.id for p in self.test.peers if p.kind is NodeKind.EXTERNAL}
        return {"probes": self.test.probes, "allowed": self.test.count(UNPLANNED),
                "external_allowed": sum(1 for p in unplanned if p.peer in external)}


def _direction(direction: str) -> str:
    return "in" if direction == INGRESS else "out"


def summary_line(test: SegmentationTest) -> str:
    """The summary's line: every count read from ``test``."""
    paths = len(test.paths_at(UNPLANNED))
    return (f"Segmentation test: {test.probes} probes (TCP and UDP, into and out of "
            f"{len(test.members)} restricted workload(s), {len(test.peers)} peers, "
            f"{len(test.ports)} ports): {test.count(DENIED)} denied, {test.count(PLANNED)} "
            f"allowed as planned, {test.count(NODE_LOCAL)} allowed from the workload's own "
            f"node only (not governed by policy), {test.count(UNPLANNED)} allowed beyond the "
            f"plan on {paths} path(s).")


def member_rows(test: SegmentationTest) -> tuple[tuple[tuple[str, ...], ...], tuple[str, ...]]:
    """Per restricted workload and direction: probes by category (the first table)."""
    rows, marks = [], []
    for member in test.members:
        for direction in (INGRESS, "egress"):
            paths = [p for p in test.paths if p.member == member and p.direction == direction]
            count = {reach: sum(1 for p in paths for a in p.allowed if a.reach == reach)
                     for reach in (PLANNED, NODE_LOCAL, UNPLANNED)}
            probes = sum(p.probes for p in paths)
            denied = probes - sum(count.values())
            rows.append(("/".join(test.member_classes.get(member, ())), member,
                         _direction(direction), str(len(paths)), str(probes), str(denied),
                         str(count[PLANNED]), str(count[NODE_LOCAL]), str(count[UNPLANNED])))
            marks.append("fail" if count[UNPLANNED] else "warn" if count[NODE_LOCAL] else "ok")
    return tuple(rows), tuple(marks)


_SHOWN_PORTS: Final = 24


def ports_text(ports: Sequence[str], probed: int) -> str:
    """``TCP/22, UDP/53``; ``every port probed (110)``; the first ones and how many more."""
    if len(ports) == probed and probed > _SHOWN_PORTS:
        return f"every port probed ({probed})"
    if len(ports) > _SHOWN_PORTS:
        return f"{', '.join(ports[:_SHOWN_PORTS])} and {len(ports) - _SHOWN_PORTS} more"
    return ", ".join(ports)


def path_rows(test: SegmentationTest, reach: int) -> tuple[tuple[str, ...], ...]:
    """Every path whose worst probe is ``reach``, with its ports of that category."""
    zone = {p.id: p.zone for p in test.peers}
    out = []
    for path in test.paths_at(reach):
        first = next(a for a in path.allowed if a.reach == reach)
        out.append((path.member, _direction(path.direction),
                    f"{test.label(path.peer)} ({zone.get(path.peer, '-')})",
                    ports_text(path.ports(reach), path.probes), first.decided_by))
    return tuple(out)


def _first(rows: Sequence[tuple[str, ...]]) -> tuple[tuple[tuple[str, ...], ...], str]:
    more = f" (the first {_MAX_ROWS})" if len(rows) > _MAX_ROWS else ""
    return tuple(rows[:_MAX_ROWS]), more


def segmentation_section(ctx: ReportContext, blocks: list[Block], findings: list[Finding]
                         ) -> SegmentationEvidence | None:
    from segmenter.views.viz.reach import draw_reachability

    blocks.append(Heading(2, "Segmentation test evidence", "segmentation"))
    well_known = ", ".join(str(p) for p in WELL_KNOWN_PORTS)
    blocks.append(Para(
        "The expected-deny test of PCI DSS 11.4.5 (every 12 months and after any change to the "
        "segmentation controls; 11.4.6: every six months for service providers): every "
        "restricted workload probed, in and out, over TCP and UDP, against every peer outside "
        "the restricted zone (every other zone's workloads, the nodes, the API server, the "
        "external addresses seen and the internet, 8.8.8.8 and 2001:4860:4860::8888), on "
        "every port a rule names, every observed or declared port and these well-known ports: "
        f"{well_known}; evaluated end to end with segmenter's policy engine under "
        f"{ctx.enforcement} enforcement (both sides' policies). An allowed probe is *planned* "
        "when an observed or declared flow (or cluster DNS) explains it, *own node only* when "
        "it is allowed only because the peer is the workload's own node (kubelet probes, which "
        "no NetworkPolicy governs: a `node-path` finding, low, whose compensating control is "
        "node isolation), else *beyond the plan*: a `segmentation` finding, high. The "
        "summary, these tables and the picture are read from the same result. Simulated probes "
        "support, and do not replace, the penetration test by an independent tester."))
    if not ctx.plan.classes:
        blocks.append(Para("No restricted zone: nothing to test.", "info"))
        return None
    test = segmentation_test(ctx.graph, ctx.plan, ctx.engine, endpoints=ctx.endpoints,
                             manifests=ctx.manifests, inventory=ctx.inventory)
    target = get_target(ctx.enforcement)
    today = segmentation_test(ctx.graph, ctx.plan, target.evaluator([], ctx.namespaces),
                              endpoints=ctx.endpoints, manifests=ctx.manifests,
                              inventory=ctx.inventory)
    rows, marks = member_rows(test)
    blocks.append(Table(("Class", "Restricted workload", "Direction", "Peers", "Probes",
                         "Denied", "Allowed as planned", "Own node only", "Beyond the plan"),
                        rows, marks, caption=f"{len(test.peers)} peers, {len(test.ports)} "
                                             "ports (TCP and UDP), both directions"))
    if test.unchecked:
        blocks.append(Para("Not probed (no pod of it in the inventory): " + ", ".join(
            f"`{m}`" for m in test.unchecked) + ".", "fail"))
    unplanned = path_rows(test, UNPLANNED)
    if unplanned:
        shown, more = _first(unplanned)
        blocks.append(Para(f"{len(unplanned)} path(s) allowed beyond the plan{more}:", "fail"))
        blocks.append(Table(("Restricted workload", "Direction", "Peer (zone)",
                             "Ports beyond the plan", "Allowed by"), shown,
                            ("fail",) * len(shown)))
    else:
        blocks.append(Para("No path into or out of the restricted zone is allowed beyond the "
                           "plan.", "ok"))
    local = path_rows(test, NODE_LOCAL)
    if local:
        shown, more = _first(local)
        blocks.append(Para(
            f"{len(local)} path(s) allowed only from the workload's own node{more}: traffic "
            "from a node (and its hostNetwork pods) to the pods on it is not governed by "
            "NetworkPolicy. Compensating control: node isolation (a dedicated node pool, "
            "taints) for restricted workloads.", "warn"))
        blocks.append(Table(("Restricted workload", "Direction", "Peer (zone)", "Ports",
                             "Decided by"), shown, ("warn",) * len(shown)))
    findings.extend(test.findings())
    _indirect(ctx, blocks)
    reach = reach_matrix(test, today, ctx.graph, before_label="no policies (today)",
                         after_label="with these policies")
    ax1, _ = draw_reachability(reach)
    blocks.append(Image(PICTURE, _png(ax1.figure),
                        "Reachability of the restricted zone, before and after",
                        "Rows: every peer outside the restricted zone, by zone; columns: each "
                        "restricted workload in (the row opens a connection to it) and out (it "
                        "opens one to the row); a cell is the worst of the path's probes and "
                        "its number the probes allowed. Read from the same result as the "
                        "tables above."))
    return SegmentationEvidence(test, reach, summary_line(test))


def _indirect(ctx: ReportContext, blocks: list[Block]) -> None:
    """Observed chains general -> connected -> restricted."""
    graph = ctx.graph
    indirect = []
    for scope in ctx.plan.classes:
        general = {m.node for m in scope.members(Zone.GENERAL)}
        connected = {m.node for m in scope.members(Zone.CONNECTED)}
        restricted = {m.node for m in scope.members(Zone.RESTRICTED)}
        for g in sorted(general):
            for c in sorted(s for s in graph.successors(g) if s in connected):
                for r in sorted(s for s in graph.successors(c) if s in restricted):
                    indirect.append((scope.data_class, g, c, r))
    if indirect:
        blocks.append(Para(
            f"{len(indirect)} indirect path(s): an out-of-scope workload calls a connected-to "
            "workload that calls the restricted zone. PCI DSS out-of-scope systems must not "
            "reach the CDE through an in-scope system; whether an application-level call "
            "counts is the assessor's judgement. The plan's scope reduction options above list "
            "the flows to cut.", "warn"))
        blocks.append(Table(("Class", "Out of scope", "Through (connected-to)",
                             "Restricted member"), tuple(indirect[:_MAX_ROWS])))


__all__ = ["PICTURE", "SegmentationEvidence", "member_rows", "path_rows", "ports_text",
           "segmentation_section", "summary_line"]
