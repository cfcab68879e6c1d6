"""What the traffic covers: the captured window per traffic source and per node, and whether the
capture had stopped learning (the learning curve, :mod:`segmenter.views.viz.learning`).

Per flow file given to ``report --flows``: what it came from (the header's ``sources``), the
window of its flows, and the nodes and interfaces it was captured on, as far as the file says:
a capture agent's file names its host and interfaces (the header's ``agent`` object, or its
``sources`` entries ``HOST:IFACE`` once merged: docs/capture-agent.md "Headers"); flow-log
records name the nodes of their endpoints (``client_endpoint.node``, docs/flow-format.md); a
pcapng capture names its interfaces (the header's ``interfaces``) but not its node, a classic
pcap neither (shown as not recorded). Per node of the inventory: the window
of the flows that touched it (its addresses, its pods' addresses, records naming it, the agent
running on it); a node with none was not covered.

The capture is *still learning* (finding ``still-learning``) when its window is shorter than a
full business cycle, one day (:data:`MIN_WINDOW`: a day with its batch jobs), or when new edges
were still first seen in the last fifth of the window (:data:`LEARNING_TAIL`, the learning
curve's "still learning" mark). The window it recommends is the longer of a day and twice the
time it took to see the last new edge: as long again without anything new before the curve can
be called level.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from segmenter.analysis.findings import Finding, FindingKind
from segmenter.flowfile import Traffic
from segmenter.model import Flow, Inventory
from segmenter.views.report.document import Block, Heading, Image, Para, Table
from segmenter.views.report.sections import ReportContext, _iso, _png, _span
from segmenter.views.viz.learning import LEARNING_TAIL, LearningCurve

MIN_WINDOW: Final = 86_400.0  # one day: a full business cycle with its batch jobs

# A capture agent's source name, HOST:IFACE (capture/agent.py: the host name made safe, then the
# interface, "any", or the names and patterns given, comma-separated); file names of captures
# and flow logs end in a suffix and are not mistaken for one.
_AGENT_SOURCE: Final = re.compile(r"(?P<host>[A-Za-z0-9][A-Za-z0-9._-]*):(?P<iface>[^:/\s]+)")
_FILE_SUFFIXES: Final = (".pcap", ".pcapng", ".cap", ".jsonl", ".json", ".log", ".gz", ".zst",
                         ".xz", ".bz2", ".txt", ".csv")


@dataclass(frozen=True)
class SourceCoverage:
    """One flow file: what it came from and what it covers."""

    path: str
    sources: tuple[str, ...]
    generator: str
    first: float | None
    last: float | None
    flows: int
    packets: int
    skipped: int
    nodes: tuple[str, ...]  # nodes it was captured on or whose records it holds
    interfaces: tuple[str, ...]  # HOST:IFACE as the agent named them

    @property
    def seconds(self) -> float:
        return 0.0 if self.first is None or self.last is None else self.last - self.first


@dataclass(frozen=True)
class NodeCoverage:
    """One node: the window of the flows that touched it, and what saw them."""

    node: str
    first: float | None
    last: float | None
    flows: int
    seen_by: tuple[str, ...]


def _agent_source(name: str) -> tuple[str, str] | None:
    if name.lower().endswith(_FILE_SUFFIXES):
        return None
    match = _AGENT_SOURCE.fullmatch(name)
    return (match.group("host"), match.group("iface")) if match else None


def _endpoint_nodes(flow: Flow) -> set[str]:
    return {str(e.node) for e in (flow.client_endpoint, flow.server_endpoint)
            if e is not None and e.node}


def source_coverage(path: str, traffic: Traffic) -> SourceCoverage:
    """What one flow file says it covers."""
    header: Mapping[str, Any] = traffic.header
    sources = tuple(str(s) for s in header.get("sources") or ())
    nodes: set[str] = set()
    interfaces: set[str] = set()
    agent = header.get("agent")
    if isinstance(agent, Mapping) and agent.get("host"):
        nodes.add(str(agent["host"]))
        if agent.get("iface"):
            interfaces.add(f"{agent['host']}:{agent['iface']}")
    for name in sources:
        found = _agent_source(name)
        if found is not None:
            nodes.add(found[0])
            interfaces.add(name)
    for names in (header.get("interfaces") or {}).values():
        interfaces.update(names)  # a pcapng's own names (its Interface Description Blocks)
    for flow in traffic.flows:
        nodes |= _endpoint_nodes(flow)
    raw_stats = header.get("stats")
    stats: Mapping[str, Any] = raw_stats if isinstance(raw_stats, Mapping) else {}
    raw_skipped = stats.get("skipped")
    skipped: Mapping[str, Any] = raw_skipped if isinstance(raw_skipped, Mapping) else {}
    first = min((f.first_seen for f in traffic.flows), default=None)
    last = max((f.last_seen for f in traffic.flows), default=None)
    return SourceCoverage(path, sources, str(header.get("generator") or ""), first, last,
                          len(traffic.flows), int(stats.get("packets") or 0),
                          sum(v for v in skipped.values() if isinstance(v, int)),
                          tuple(sorted(nodes)), tuple(sorted(interfaces)))


def node_coverage(files: Sequence[tuple[SourceCoverage, Traffic]], inventory: Inventory | None
                  ) -> list[NodeCoverage]:
    """Per node of the inventory (and every node a file names): the window of the flows that
    touched it and what saw them. Pod addresses are taken as the inventory gives them (a
    reused address is counted for each pod that had it)."""
    owner: dict[str, set[str]] = defaultdict(set)  # address -> nodes
    known: set[str] = set()
    if inventory is not None:
        for machine in inventory.nodes:
            known.add(machine.name)
            for address in machine.addresses:
                owner[_canonical(address)].add(machine.name)
        for pod in inventory.pods:
            if pod.node:
                for address in pod.ips:
                    owner[_canonical(address)].add(pod.node)
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    count: dict[str, int] = defaultdict(int)
    seen_by: dict[str, set[str]] = defaultdict(set)
    for cover, traffic in files:
        agents = {n for n in cover.nodes if any(i.startswith(f"{n}:") for i in cover.interfaces)}
        for node in agents:
            seen_by[node].add(f"capture agent ({cover.path})")
        for flow in traffic.flows:
            touched = set(agents)
            for end in (flow.client, flow.server):
                if end is not None:  # a flow-log end with no address
                    touched |= owner.get(_canonical(end), set())
            named = _endpoint_nodes(flow)
            for node in named - agents:
                seen_by[node].add(f"flow-log records ({cover.path})")
            touched |= named
            for node in touched:
                first[node] = min(first.get(node, math.inf), flow.first_seen)
                last[node] = max(last.get(node, -math.inf), flow.last_seen)
                count[node] += 1
                if node not in agents and node not in named:
                    seen_by[node].add(f"traffic of its addresses ({cover.path})")
    out = []
    for node in sorted(known | set(count) | set(seen_by)):
        out.append(NodeCoverage(node, first.get(node), last.get(node), count.get(node, 0),
                                tuple(sorted(seen_by.get(node, ())))))
    return out


def _canonical(address: str | None) -> str:
    if not address:
        return ""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


@dataclass(frozen=True)
class Learning:
    """Whether the capture had stopped learning, and the window it recommends."""

    window: float  # seconds
    still_learning: bool
    late_edges: int  # first seen in the last LEARNING_TAIL of the window
    short: bool  # shorter than MIN_WINDOW
    recommended: float  # seconds

    @property
    def complete(self) -> bool:
        return not self.still_learning and not self.short


def assess_learning(curve: LearningCurve) -> Learning | None:
    """The learning verdict of ``curve`` (None when it holds no observed edge)."""
    if not curve.times:
        return None
    window = max(0.0, curve.end - curve.start)
    late = curve.new_in_last(LEARNING_TAIL) if window > 0 else curve.total
    to_last = max(0.0, curve.times[-1] - curve.start)
    recommended = max(MIN_WINDOW, 2.0 * to_last)
    return Learning(window, late > 0, late, window < MIN_WINDOW, recommended)


def learning_finding(learning: Learning) -> Finding | None:
    """The ``still-learning`` finding, when the capture had not stopped learning."""
    if learning.complete:
        return None
    why = []
    if learning.short:
        why.append(f"the capture window ({duration(learning.window)}) is shorter than a full "
                   "business cycle (a day, with its batch jobs)")
    if learning.still_learning:
        why.append(f"{learning.late_edges} new edge(s) were first seen in the last "
                   f"{LEARNING_TAIL:.0%} of the window")
    return Finding.of(FindingKind.STILL_LEARNING, "capture window",
                      f"the capture was still learning: {'; '.join(why)}; capture for at least "
                      f"{duration(learning.recommended)} (policies deny what was not seen)")


def duration(seconds: float) -> str:
    """``7 s``, ``2 h 5 min``, ``3 d``.

    >>> duration(7.2), duration(7500), duration(3 * 86400 + 60)
    ('7 s', '2 h 5 min', '3 d 1 min')
    """
    total = max(0, round(seconds))
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{v} {unit}" for v, unit in ((days, "d"), (hours, "h"), (minutes, "min"))
             if v]
    if secs and not days:
        parts.append(f"{secs} s")
    return " ".join(parts) or "0 s"


def _window(first: float | None, last: float | None) -> str:
    return "-" if first is None else _span(first, last)


def coverage_section(ctx: ReportContext, blocks: list[Block], findings: list[Finding]
                     ) -> Learning | None:
    """The section: sources, nodes, the learning curve and its verdict."""
    import matplotlib.figure

    from segmenter.views.viz.learning import draw_learning_curve, learning_curve

    blocks.append(Heading(2, "Coverage and learning", "coverage"))
    blocks.append(Para(
        "What the traffic covers: each flow file with what it was captured from, its window, "
        "and the nodes and interfaces it was captured on as far as the file records them (a "
        "capture agent's files name their node and interfaces, flow-log records their "
        "endpoints' nodes; a capture file names neither); then each node with the window of the "
        "flows that touched it. The policies allow only what was seen (and declared): a node, "
        "a workload or a period the capture did not cover is not in the evidence."))
    covered = [(source_coverage(path, traffic), traffic) for path, traffic in ctx.traffic_files]
    if covered:
        rows = tuple((c.path, ", ".join(c.sources) or "-", ", ".join(c.nodes) or
                      "not recorded", ", ".join(c.interfaces) or "not recorded",
                      _window(c.first, c.last), duration(c.seconds), str(c.flows),
                      f"{c.packets} ({c.skipped} skipped)") for c, _ in covered)
        blocks.append(Table(("Flow file", "Captured from", "Nodes", "Interfaces",
                             "Window (UTC)", "Duration", "Flows", "Packets"), rows,
                            caption="Traffic sources"))
    else:
        blocks.append(Para("No flow file was given (`--flows`): the sources are not recorded; "
                           "the window below is the graph's.", "warn"))
    nodes = node_coverage(covered, ctx.inventory)
    if nodes:
        blocks.append(Table(("Node", "Window (UTC)", "Flows", "Seen by"), tuple(
            (n.node, _window(n.first, n.last), str(n.flows),
             "; ".join(n.seen_by) or "no traffic seen: not covered") for n in nodes),
            tuple("" if n.flows else "warn" for n in nodes), caption="Nodes"))
    curve = learning_curve(ctx.graph, ctx.plan)
    learning = assess_learning(curve)
    if learning is None:
        blocks.append(Para("No observed flow with a time: nothing to say about learning.",
                           "warn"))
        return None
    verdict = ("still learning" if learning.still_learning else
               "levelled off, but the window is shorter than a day" if learning.short else
               "levelled off")
    blocks.append(Para(
        f"Observation window {_iso(curve.start)} to {_iso(curve.end)} "
        f"({duration(learning.window)}): {curve.total} distinct (client, server, protocol, "
        f"port) edges; the last new one at {_iso(curve.last_new)}, with "
        f"{curve.quiet_fraction():.0%} of the window after it; {learning.late_edges} new in "
        f"the last {LEARNING_TAIL:.0%}: **{verdict}**. Recommended minimum window: "
        f"{duration(learning.recommended)} (a day, or twice the time to the last new edge if "
        "longer).", "ok" if learning.complete else "warn"))
    finding = learning_finding(learning)
    if finding is not None:
        findings.append(finding)
    fig = matplotlib.figure.Figure(figsize=(7.5, 3.4), layout="constrained")
    draw_learning_curve(curve, fig.add_subplot(), plan=ctx.plan)
    blocks.append(Image("learning-curve.png", _png(fig), "Learning completeness curve",
                        "Distinct edges first seen over the capture window."))
    return learning


__all__ = ["MIN_WINDOW", "Learning", "NodeCoverage", "SourceCoverage", "assess_learning",
           "coverage_section", "duration", "learning_finding", "node_coverage",
           "source_coverage"]
