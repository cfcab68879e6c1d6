"""Notebook helpers: the pipeline in a few calls, and rich HTML displays.

The facade (``segmenter.load_flows`` ... ``segmenter.draw``) is one function per stage; this
module adds what a notebook needs on top::

    from segmenter import notebook as nb

    study = nb.Study.open("sample/shop.pcapng", "sample/shop-inventory.json",
                          config="sample/segmenter.yaml")
    study                      # an HTML summary: flows, graph, scope
    study.plan_view()          # the plan as tables (also: nb.PlanView(plan, graph))
    study.draw()               # the zone map
    policies = study.compile()
    study.verify(policies)     # every observed flow replayed, as a table
    nb.DiffView.compare(old, new, study.inventory, study.flows.flows)   # a diff, as HTML

Displays: :class:`PlanView`, :class:`DiffView`, :class:`VerifyView` and :class:`TableView`
have ``_repr_html_``; :func:`enable_rich_display` registers HTML formatters for the core
types (``Plan``, ``StructuralDiff``, ``SemanticDiff``) so they render richly on their own.
"""

from __future__ import annotations

import html
import logging
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx

from segmenter.synthetic import synthetic_graph, synthetic_plan

if TYPE_CHECKING:
    from segmenter.analysis.diff.semantic import SemanticDiff
    from segmenter.analysis.diff.structural import StructuralDiff
    from segmenter.analysis.verify import FlowVerdict
    from segmenter.config import Config
    from segmenter.flowfile import Traffic
    from segmenter.model import Inventory
    from segmenter.planner import Plan
    from segmenter.policy.ir import PolicySet

logger = logging.getLogger(__name__)

__all__ = [
    "DiffView",
    "PlanView",
    "Study",
    "TableView",
    "VerifyView",
    "enable_rich_display",
    "load_capture",
    "render_yaml",
    "repo_path",
    "synthetic_graph",
    "synthetic_plan",
    "top_talkers",
    "write_policies",
]

_CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz")


def repo_path(*parts: str) -> Path:
    """A path inside the source checkout (``repo_path("sample", "shop.pcapng")``), found from
    the installed package; notebooks run from any directory."""
    here = Path(__file__).resolve().parent.parent
    return here.joinpath(*parts)


def load_capture(paths: str | Path | Sequence[str | Path], *,
                 workdir: str | Path | None = None) -> Traffic:
    """Flows from captures and flow logs (any format ``ingest`` reads, found by content;
    ingested into ``workdir``/flows.jsonl, a temporary folder by default) or from flow files
    (``.jsonl``, ``.jsonl.gz``) as they are."""
    from segmenter.pipeline import ingest, read_traffic

    items = [str(paths)] if isinstance(paths, str | Path) else [str(p) for p in paths]
    captures = [p for p in items if p.lower().endswith(_CAPTURE_SUFFIXES)
                or not _is_flow_file(p)]
    flow_files = [p for p in items if p not in captures]
    if captures:
        folder = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="segmenter-"))
        target = folder / "flows.jsonl"
        ingest(captures, str(target))
        flow_files.append(str(target))
    return read_traffic(flow_files)


def _is_flow_file(path: str) -> bool:
    """Whether ``path`` is a segmenter flow file (by content); anything else is ingested,
    which names the formats it reads when it is none of them."""
    from capture.errors import CaptureError
    from capture.sources import detect

    try:
        return detect(path)[1].name == "flows"
    except CaptureError:
        return False


def render_yaml(policy_set: PolicySet, dialect: str = "kubernetes", **options: bool) -> str:
    """One target's YAML for a policy set, one multi-document string (``options``: the
    target's writer options)."""
    from segmenter.render import to_yaml
    from segmenter.targets import get_target

    output = get_target(dialect).dialect(**options).emit(policy_set)
    return "---\n".join(to_yaml(docs) for _, docs in sorted(output.files.items()))


def write_policies(policy_set: PolicySet, out: str | Path,
                   dialects: Sequence[str] | None = None) -> dict[str, Path]:
    """Emit ``policy_set`` for each target (default: every registered one) into
    ``out``/<target>, atomically, as the CLI does."""
    from segmenter.pipeline import emit, write_outputs
    from segmenter.targets import get_target, target_names

    chosen = [get_target(name) for name in (dialects or target_names())]
    folders = {t.name: str(Path(out) / t.name) for t in chosen}
    write_outputs(emit(policy_set, chosen), folders)
    return {name: Path(folder) for name, folder in folders.items()}


# ---------------------------------------------------------------------------------------------
# HTML displays


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, caption: str = "",
           marks: Sequence[str] = ()) -> str:
    from segmenter.views.report.document import Table, html_fragment

    cells = tuple(tuple(str(c) for c in row) for row in rows)
    return html_fragment([Table(tuple(headers), cells, tuple(marks) if marks else (),
                                caption)])


@dataclass
class TableView:
    """Rows as an HTML table in a notebook, plain text elsewhere."""

    headers: Sequence[str]
    rows: Sequence[Sequence[Any]]
    caption: str = ""

    def _repr_html_(self) -> str:
        return _table(self.headers, self.rows, caption=self.caption)

    def __repr__(self) -> str:
        widths = [max(len(str(h)), *(len(str(r[i])) for r in self.rows)) if self.rows
                  else len(str(h)) for i, h in enumerate(self.headers)]
        lines = ["  ".join(str(h).ljust(w) for h, w in zip(self.headers, widths, strict=True))
                 .rstrip()]
        lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                  for r in self.rows]
        return "\n".join(([self.caption] if self.caption else []) + lines)


def top_talkers(graph: nx.DiGraph, n: int = 15) -> TableView:
    """The ``n`` edges with the most flows: client, server, ports, flows, bytes, TLS."""
    from segmenter.graph.labels import display_label
    from segmenter.graph.stats import count_text

    edges = sorted(graph.edges(data=True), key=lambda e: (-int(e[2].get("flows", 0)), e[0],
                                                          e[1]))[:n]
    rows = []
    for u, v, d in edges:
        ports = ", ".join(p["protocol"] if p.get("port") is None else
                          f"{p['protocol']}/{p['port']}" for p in d.get("ports", []))
        tls = {bool(p.get("tls")) for p in d.get("ports", [])}
        rows.append((display_label(graph, u, with_namespace=True),
                     display_label(graph, v, with_namespace=True), ports,
                     count_text(int(d.get("flows", 0)), d),
                     f"{int(d.get('bytes', 0)):,}", "yes" if tls == {True} else
                     ("no" if tls == {False} else "some")))
    return TableView(("Client", "Server", "Ports", "Flows", "Bytes", "TLS"), rows,
                     f"Top {len(rows)} of {graph.number_of_edges()} edges by flows")


def _crossing_flows(graph: nx.DiGraph | None, crossing: Any) -> str:
    """A crossing's flow count, ``~n`` when a sampled source counted it."""
    from segmenter.graph.stats import count_text, entry_of

    if graph is None:
        return str(crossing.flows)
    entry = entry_of(graph, crossing.client, crossing.server, crossing.protocol, crossing.port)
    return count_text(crossing.flows, entry)


def plan_html(plan: Plan, graph: nx.DiGraph | None = None) -> str:
    """The plan as HTML: per class, zone sizes, members with reasons, boundary crossings,
    scope reductions; then suggestions and notes."""
    from segmenter.planner import ZONES, Zone
    from segmenter.views.report.document import Bullets, Heading, Para, Table, html_fragment
    from segmenter.views.report.sections import scope_blocks

    blocks: list[Any] = []
    if not plan.classes:
        blocks.append(Para("No sensitive stores declared: nothing is in scope; every workload "
                           "still gets least-privilege policies.", "info"))
    for scope in plan.classes:
        blocks.append(Heading(4, f"{scope.title} (`{scope.data_class}`, {scope.framework})"))
        blocks.append(Table(("Zone", "Members"), tuple(
            (zone, str(len(scope.members(zone)))) for zone in ZONES)))
        if graph is not None:
            blocks.extend(b for b in scope_blocks(graph, scope)
                          if not getattr(b, "caption", "").startswith(Zone.GENERAL))
        else:
            for zone in (Zone.RESTRICTED, Zone.CONNECTED):
                blocks.append(Table(("Member", "Why"), tuple(
                    (m.node, m.reason) for m in scope.members(zone)), caption=zone))
        boundary = [c for c in scope.crossings if Zone.RESTRICTED in (c.client_zone, c.server_zone)]
        if boundary:
            blocks.append(Table(
                ("Client", "Server", "Port", "Flows", "TLS"),
                tuple((c.client, c.server, c.protocol if c.port is None else
                       f"{c.protocol}/{c.port}",
                       _crossing_flows(graph, c) if c.flows or not c.declared else "declared",
                       "yes" if c.tls else "no")
                      for c in boundary),
                tuple("" if c.tls or (c.declared and not c.flows) else "warn" for c in boundary),
                f"flows across the restricted boundary ({len(boundary)})"))
        if scope.reductions:
            blocks.append(Table(("Cut", "Effect"), tuple(
                ("; ".join(f"{a} → {b}" for a, b in r.flows),
                 r.note or ", ".join(r.leaves)) for r in scope.reductions),
                caption="scope reduction options (not applied)"))
    if plan.declared:
        blocks.append(Table(("Client", "Server", "Port", "Reason", "Justification", "Approver"),
                            tuple((f.client, f.server, f.protocol if f.port is None else
                                   f"{f.protocol}/{f.port}", f.reason, f.justification or "-",
                                   f.approved_by or "-") for f in plan.declared),
                            caption=f"declared flows, not observed ({len(plan.declared)}): "
                                    "allowed with provenance declared: <reason>"))
    if plan.suggestions:
        blocks.append(Table(("Workload", "Why it looks like a data store"), tuple(
            (m.node, m.reason) for m in plan.suggestions),
            caption="possible undeclared data stores (never applied)"))
    if plan.notes:
        blocks.append(Bullets(tuple(plan.notes)))
    return html_fragment(blocks)


@dataclass
class PlanView:
    """A plan displayed as tables (``_repr_html_``); ``graph`` adds display names and the
    infrastructure and external members."""

    plan: Plan
    graph: nx.DiGraph | None = None

    def _repr_html_(self) -> str:
        return plan_html(self.plan, self.graph)

    def __repr__(self) -> str:
        from segmenter.planner import summary_lines

        return "\n".join(summary_lines(self.plan))


def diff_html(structural: StructuralDiff | None, semantic: SemanticDiff | None = None, *,
              limit: int = 40) -> str:
    """A policy diff as HTML: objects added, removed and changed; observed flows whose verdict
    changes; connections that open and close (first ``limit`` of each)."""
    from segmenter.views.report.document import Bullets, Para, Table, html_fragment

    blocks: list[Any] = []
    if structural is not None:
        s = structural
        blocks.append(Para(f"**Objects**: {len(s.added)} added, {len(s.removed)} removed, "
                           f"{len(s.changed)} changed, {len(s.unchanged)} unchanged."))
        rows = [("added", a.id) for a in s.added] + [("removed", r.id) for r in s.removed] + [
            ("changed", c.id) for c in s.changed]
        if rows:
            blocks.append(Table(("Change", "Object"), tuple(rows), tuple(
                {"added": "ok", "removed": "fail", "changed": "warn"}[r[0]] for r in rows)))
        if s.notes:
            blocks.append(Bullets(tuple(s.notes)))
    if semantic is not None:
        sem = semantic
        opened = [r for r in sem.reach_changes if r.allowed_after and not r.allowed_before]
        closed = [r for r in sem.reach_changes if not r.allowed_after]
        blocks.append(Para(
            f"**Connections** ({sem.enforcement} enforcement, {sem.workloads_checked} of "
            f"{sem.workloads_total} workloads, {len(sem.probes)} ports): {len(opened)} open, "
            f"{len(closed)} close. **Observed flows** ({sem.flows_checked}): "
            f"{sum(f.flows for f in sem.flow_changes if f.allowed_after)} newly allowed, "
            f"{sum(f.flows for f in sem.flow_changes if not f.allowed_after)} newly denied.",
            "fail" if any(not f.allowed_after for f in sem.flow_changes) else ""))
        if sem.flow_changes:
            blocks.append(Table(
                ("Client", "Server", "Port", "Flows", "Before", "After"),
                tuple((f.client, f.server, f.transport if f.port is None else
                       f"{f.transport}/{f.port}", str(f.flows), f.before, f.after)
                      for f in sem.flow_changes[:limit]),
                tuple("fail" if not f.allowed_after else "ok"
                      for f in sem.flow_changes[:limit]),
                "observed flows whose verdict changes"))
        for what, items, mark in (("open", opened, "warn"), ("close", closed, "")):
            if items:
                blocks.append(Table(
                    ("Source", "Destination", "Port", "Now"),
                    tuple((r.source, r.destination, r.transport if r.port is None else
                           f"{r.transport}/{r.port}", r.after) for r in items[:limit]),
                    (mark,) * min(len(items), limit),
                    f"connections that {what} ({len(items)}"
                    + (f", first {limit}" if len(items) > limit else "") + ")"))
        if sem.notes:
            blocks.append(Bullets(tuple(sem.notes)))
    return html_fragment(blocks)


@dataclass
class DiffView:
    """A structural and semantic policy diff (``_repr_html_``); :meth:`draw` shows what opens
    and closes on the zone map."""

    structural: StructuralDiff | None
    semantic: SemanticDiff | None = None

    @classmethod
    def compare(cls, old: Any, new: Any, inventory: Inventory | None = None,
                flows: Sequence[Any] = (), *, enforcement: str = "kubernetes") -> DiffView:
        """Diff two policy sides (folders, manifests or PolicySets); with an inventory, also
        what the change does to connections and to the observed ``flows``."""
        from segmenter.analysis.policies import load_policies
        from segmenter.pipeline import diff
        from segmenter.targets import get_target

        target = get_target(enforcement)
        structural, semantic = diff(load_policies(old, target), load_policies(new, target),
                                    inventory=inventory, flows=list(flows), target=target)
        return cls(structural, semantic)

    def _repr_html_(self) -> str:
        return diff_html(self.structural, self.semantic)

    def __repr__(self) -> str:
        from segmenter.analysis.diff.structural import StructuralDiff
        from segmenter.analysis.diff.text import to_text

        return to_text(self.structural or StructuralDiff(), self.semantic)

    def draw(self, graph: nx.DiGraph, plan: Plan | None, ax: Any = None, **kwargs: Any) -> Any:
        from segmenter.views.viz.draw import draw_diff

        if self.semantic is None:
            raise ValueError("no semantic diff: compare with an inventory to draw it")
        return draw_diff(graph, plan, self.semantic, ax, **kwargs)


@dataclass
class VerifyView:
    """Observed flows replayed against policies: the counts and every denied flow."""

    results: Sequence[FlowVerdict]
    enforcement: str = "kubernetes"

    @property
    def denied(self) -> list[FlowVerdict]:
        return [r for r in self.results if not r.allowed]

    def _repr_html_(self) -> str:
        from segmenter.views.report.document import Para, Table, html_fragment

        denied = self.denied
        blocks: list[Any] = [Para(
            f"{len(self.results) - len(denied)} of {len(self.results)} observed flows allowed "
            f"under {self.enforcement} enforcement; {len(denied)} denied.",
            "fail" if denied else "ok")]
        if denied:
            grouped = Counter((r.client, r.server, str(r.flow.transport), r.port,
                               r.verdict.summary()) for r in denied)
            blocks.append(Table(("Client", "Server", "Port", "Flows", "Why"), tuple(
                (c, s, t if p is None else f"{t}/{p}", str(n), why)
                for (c, s, t, p, why), n in sorted(grouped.items(), key=lambda kv: (
                    kv[0][0], kv[0][1], kv[0][2], -1 if kv[0][3] is None else kv[0][3])))))
        return html_fragment(blocks)

    def __repr__(self) -> str:
        denied = self.denied
        return (f"{len(self.results) - len(denied)} of {len(self.results)} observed flows "
                f"allowed under {self.enforcement} enforcement; {len(denied)} denied")


def enable_rich_display() -> bool:
    """Register HTML formatters for Plan, StructuralDiff and SemanticDiff in the running
    IPython; False outside IPython."""
    import importlib

    try:  # IPython comes with the notebook kernel, not with segmenter
        ipython = importlib.import_module("IPython")
    except ImportError:
        return False
    shell = ipython.get_ipython()
    if shell is None:
        return False
    from segmenter.analysis.diff.semantic import SemanticDiff
    from segmenter.analysis.diff.structural import StructuralDiff
    from segmenter.planner import Plan

    formatter = shell.display_formatter.formatters["text/html"]
    formatter.for_type(Plan, plan_html)
    formatter.for_type(StructuralDiff, diff_html)
    formatter.for_type(SemanticDiff, lambda d: diff_html(None, d))
    return True


# ---------------------------------------------------------------------------------------------
# A study: one capture, one inventory, one plan


@dataclass
class Study:
    """Everything a notebook carries from a capture to policies, each stage one attribute."""

    flows: Traffic
    inventory: Inventory
    graph: nx.DiGraph
    config: Config
    plan: Plan
    sources: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def open(cls, captures: str | Path | Sequence[str | Path],
             inventory: str | Path | Sequence[str | Path] | None = None, *,
             config: str | Path | None = None, sensitive: Sequence[str] = (),
             workdir: str | Path | None = None) -> Study:
        """Load captures, flow logs (or flow files) and the inventory, build the graph and
        plan it. Without ``inventory``, it is built from the flow records (Hubble, Calico:
        every record must say who its ends are); the graph's ``identity`` says what it
        lacks."""
        from segmenter import pipeline

        flows = load_capture(captures, workdir=workdir)
        cfg = pipeline.read_config(str(config) if config else None, sensitive)
        if inventory is None:
            derived = pipeline.inventory_from_records(flows)
            inv, inv_paths = derived.inventory, list(derived.inventory.sources)
            graph = pipeline.make_graph(flows, derived, cfg.cluster)
        else:
            inv_paths = [str(inventory)] if isinstance(inventory, str | Path) else [
                str(p) for p in inventory]
            inv = pipeline.read_inventory(inv_paths)
            graph = pipeline.make_graph(flows, inv, cfg.cluster)
        plan = pipeline.make_plan(graph, cfg)
        capture_list = [str(captures)] if isinstance(captures, str | Path) else [
            str(c) for c in captures]
        return cls(flows, inv, graph, cfg, plan, {"captures": capture_list,
                                                 "inventory": inv_paths})

    def replan(self, *, sensitive: Sequence[str] = (), config: str | Path | None = None
               ) -> Study:
        """The same traffic with other declarations (what-if)."""
        from segmenter import pipeline

        cfg = pipeline.read_config(str(config) if config else self.config.path, sensitive)
        plan = pipeline.make_plan(self.graph, cfg)
        return Study(self.flows, self.inventory, self.graph, cfg, plan, dict(self.sources))

    def compile(self) -> PolicySet:
        from segmenter import pipeline

        return pipeline.compile_policies(self.graph, self.plan, self.inventory,
                                         self.config.compile)

    def manifests(self, policies: Any = None, enforcement: str = "kubernetes"
                  ) -> list[dict[str, Any]]:
        """Manifests of ``policies`` (a PolicySet, folder or manifests; default: compile),
        as the target ``enforcement`` writes and validates them."""
        from segmenter.analysis.policies import load_policies
        from segmenter.targets import get_target

        source = self.compile() if policies is None else policies
        return list(load_policies(source, get_target(enforcement)).manifests)

    def verify(self, policies: Any = None, *, enforcement: str = "kubernetes") -> VerifyView:
        from segmenter.analysis.verify import verify_flows

        docs = self.manifests(policies, enforcement)
        return VerifyView(verify_flows(self.flows.flows, self.inventory, docs,
                                       enforcement=enforcement, dns=self.flows.dns,
                                       networks=self.config.cluster), enforcement)

    def plan_view(self) -> PlanView:
        return PlanView(self.plan, self.graph)

    def draw(self, ax: Any = None, **kwargs: Any) -> Any:
        from segmenter.views.viz.draw import draw_zones

        return draw_zones(self.graph, self.plan, ax, **kwargs)

    def learning_curve(self, ax: Any = None) -> Any:
        from segmenter.views.viz.learning import draw_learning_curve

        return draw_learning_curve(self.graph, ax, plan=self.plan)

    def reachability(self, after: Any = None, before: Any = None, *,
                     enforcement: str = "kubernetes") -> Any:
        """Who can reach the restricted zone, ``before`` (default: no policies) and ``after``
        (default: the compiled policies); draws the two heatmaps, returns the result."""
        from segmenter.analysis.reachability import reachability
        from segmenter.views.viz.reach import draw_reachability

        after_docs = self.manifests(after, enforcement)
        result = reachability(self.graph, self.plan, after_docs, before,
                              inventory=self.inventory, enforcement=enforcement,
                              after_label="compiled policies" if after is None else "")
        draw_reachability(result)
        return result

    def diff(self, old: Any, new: Any = None, *, enforcement: str = "kubernetes") -> DiffView:
        """Diff ``old`` against ``new`` (default: the compiled policies)."""
        new_side = self.compile() if new is None else new
        return DiffView.compare(old, new_side, self.inventory, self.flows.flows,
                                enforcement=enforcement)

    def report(self, policies: Any, out: str | Path, *, enforcement: str | None = None,
               **kwargs: Any) -> dict[str, Path]:
        """Write the compliance evidence report for ``policies`` into ``out``."""
        from segmenter.views.report.build import build_report, write_report

        report = build_report(self.graph, self.plan, policies, flows=self.flows.flows,
                              dns=self.flows.dns, inventory=self.inventory,
                              enforcement=enforcement, **kwargs)
        return write_report(report, out)

    def _repr_html_(self) -> str:
        from segmenter.views.report.document import Bullets, html_fragment

        workloads = sum(1 for _, a in self.graph.nodes(data=True) if a.get("kind") ==
                        "workload")
        items = [
            f"{len(self.flows.flows)} flows, {len(self.flows.dns)} DNS answers",
            f"{len(self.inventory.pods)} pods in {len(self.inventory.namespaces)} namespaces",
            f"graph: {self.graph.number_of_nodes()} nodes ({workloads} workloads), "
            f"{self.graph.number_of_edges()} edges",
        ]
        return html_fragment([Bullets(tuple(html.escape(i) for i in items))]) + plan_html(
            self.plan, self.graph)

    def __repr__(self) -> str:
        return (f"Study({len(self.flows.flows)} flows, {self.graph.number_of_nodes()} nodes, "
                f"{len(self.plan.classes)} data classes)")
