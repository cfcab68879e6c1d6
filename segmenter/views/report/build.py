"""Building the evidence report from the stage outputs, and writing it to a folder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import networkx as nx

from segmenter.analysis.enforcement import resolve_enforcement
from segmenter.analysis.findings import Finding, FindingKind
from segmenter.analysis.policies import PolicyDocs, PolicySource, load_policies
from segmenter.analysis.reachability import eval_endpoints
from segmenter.config import Config
from segmenter.flowfile import Traffic
from segmenter.graph.declared import apply_declared
from segmenter.model import DnsAnswer, Flow, Inventory
from segmenter.planner import Plan
from segmenter.targets import get_target
from segmenter.views.report.appendix import appendix_blocks
from segmenter.views.report.cluster import ClusterFacts, cluster_section
from segmenter.views.report.coverage import coverage_section
from segmenter.views.report.document import (
    Report,
    render_html,
    render_markdown,
)
from segmenter.views.report.isolation import isolation_section
from segmenter.views.report.provenance import (
    SUMS_FILE,
    Provenance,
    about_blocks,
    provenance,
    sums_text,
)
from segmenter.views.report.register import declared_section, register_section
from segmenter.views.report.scope_advice import scope_advice_section
from segmenter.views.report.sections import (
    ReportContext,
    default_deny_section,
    diagram_section,
    encryption_section,
    limits_section,
    mapping_section,
    scope_section,
    summary_blocks,
    verify_section,
)
from segmenter.views.report.segmentation import segmentation_section


def build_report(graph: nx.DiGraph, plan: Plan, policies: PolicySource | PolicyDocs, *,
                 flows: Sequence[Flow] | None = None, inventory: Inventory | None = None,
                 dns: Sequence[DnsAnswer] = (),
                 enforcement: str | None = None, title: str = "",
                 generated_at: str | None = None,
                 sources: Mapping[str, Sequence[str]] | None = None,
                 provenance_of: Provenance | None = None,
                 traffic_files: Sequence[tuple[str, Traffic]] = (),
                 config: Config | None = None,
                 cluster: ClusterFacts | None = None) -> Report:
    """Build the evidence report.

    ``policies``: anything :func:`~segmenter.analysis.policies.load_policies` reads, or the
    :class:`~segmenter.analysis.policies.PolicyDocs` already read (from the cluster).
    ``enforcement``: the target whose enforcement judges them; by default the one their
    documents are written for (:func:`~segmenter.analysis.enforcement.resolve_enforcement`:
    Kubernetes NetworkPolicies alone need it named).
    ``flows`` with ``inventory``: every observed flow is replayed against the policies (``dns``:
    the traffic's DNS answers, by which a DNS-aware dataplane knows external addresses).
    ``traffic_files``: each flow file as read (path, contents), for the coverage section.
    ``config``: segmenter.yaml, whose justifications register fills the allowed-flow register.
    ``cluster``: what ``--cluster`` read besides the policies (API groups, RBAC).
    ``provenance_of``: the tool, time, command and input digests; else made here from
    ``sources`` (input files by role) at ``generated_at`` (ISO 8601; default: now, or
    ``SOURCE_DATE_EPOCH``).

    Raises:
        InputError: policies that cannot be judged (empty, no policy, two targets' objects, an
            enforcement at odds with the documents, NetworkPolicies with none named), or a
            ``generated_at`` that is not a time.
    """
    apply_declared(graph, plan.declared)  # a graph read from its file lacks them
    prov = provenance_of or provenance(inputs=sources, generated_at=generated_at)
    docs = policies if isinstance(policies, PolicyDocs) else load_policies(
        policies, get_target(enforcement) if enforcement else None)
    target = resolve_enforcement(docs, enforcement).target
    chosen = target.name
    manifests = list(docs.manifests)
    namespaces = {ns.name: ns.labels for ns in inventory.namespaces} if inventory else {}
    engine = target.evaluator(manifests, namespaces)
    verdicts = None
    if flows is not None and inventory is not None:
        from segmenter.analysis.verify import verify_flows

        verdicts = verify_flows(flows, inventory, manifests, enforcement=chosen, dns=tuple(dns))
    ctx = ReportContext(graph, plan, manifests, engine, eval_endpoints(graph, inventory), chosen,
                        inventory, flows, tuple(dns), namespaces, config, tuple(traffic_files),
                        verdicts)
    report = Report(title or "Network segmentation evidence report", enforcement=chosen)
    blocks = report.blocks
    findings = report.findings
    rejected = [*docs.rejected, *engine.rejected]
    findings.extend(Finding.of(FindingKind.INVALID_POLICY, r.split(":", 1)[0],
                               f"invalid policy left out (not in force): {r}")
                    for r in rejected)
    scope_section(ctx, blocks)
    scope_advice_section(ctx, blocks, findings)
    diagram_section(ctx, blocks)
    coverage_section(ctx, blocks, findings)
    register_section(ctx, blocks, findings)
    declared_section(ctx, blocks, findings)
    encryption_section(ctx, blocks, findings)
    deny_status = default_deny_section(ctx, blocks, findings)
    isolation = isolation_section(ctx, blocks, findings)
    if isolation is not None and not all(w.clean for w in isolation.workloads):
        deny_status["restricted_isolated"] = False
    seg = segmentation_section(ctx, blocks, findings)
    if seg is not None:
        report.evidence["segmentation"] = seg
    verified = verify_section(ctx, blocks, findings)
    cluster_section(ctx, blocks, findings, cluster)
    mapping_section(ctx, blocks, deny_status, seg.stats() if seg else {}, verified,
                    findings=findings)
    limits_section(ctx, blocks)
    blocks.extend(appendix_blocks(manifests, label=docs.label, rejected=rejected))
    classes = ", ".join(f"{s.title} ({s.data_class})" for s in plan.classes) or "none"
    head = about_blocks(prov, enforcement=chosen, classes=classes,
                        images=[(i.name, i.data) for i in report.images()])
    summary = summary_blocks(ctx, findings, seg.summary if seg else None, verified)
    blocks[0:0] = [*head, *summary]
    report.evidence["provenance"] = prov
    return report


REPORT_FILES: Final = ("report.md", "report.html", "report.pdf", SUMS_FILE)


def report_file(entry: Path) -> bool:
    """A file a report writes (its Markdown, HTML and PDF, its pictures, the digests of them
    all): what a report folder may hold before it is replaced."""
    return entry.is_file() and not entry.is_symlink() and (
        entry.name in REPORT_FILES or entry.suffix == ".png")


def write_report(report: Report, out_dir: str | Path, *, pdf: str | None = None
                 ) -> dict[str, Path]:
    """Write ``report.md``, its PNGs, ``report.html`` (and ``report.pdf`` with ``pdf``, the
    renderer: ``auto``, ``chromium``, ``weasyprint``) and ``SHA256SUMS`` of them all into
    ``out_dir``, the folder swapped in whole: a failure (a renderer that fails too) leaves the
    previous report as it was, never a mix of two runs, and a PDF an earlier run wrote does
    not outlive a report written without one.

    Raises:
        PdfError: ``pdf`` asked for and no renderer available, or it failed.
        OutputError: the folder cannot be written, or holds files a report does not write
            (it is replaced whole, so they would be lost).
    """
    import hashlib
    from datetime import datetime

    from segmenter.fileio import replace_folder

    names: list[str] = []

    def fill(staging: Path) -> None:
        # Rendered into the staging folder, so that a failure of any step (the disk, the
        # PDF renderer) is reported as the folder's and leaves the previous report whole.
        files: dict[str, bytes] = {image.name: image.data for image in report.images()}
        files["report.md"] = render_markdown(report).encode("utf-8")
        page = render_html(report)
        files["report.html"] = page.encode("utf-8")
        if pdf is not None:
            from segmenter.views.report.pdf import render_pdf

            # Dated as the report is: the same inputs and time give the same PDF.
            prov = report.evidence.get("provenance")
            created = datetime.fromisoformat(prov.generated_at) if prov else None
            files["report.pdf"], _ = render_pdf(page, renderer=pdf, created=created)
        digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
        files[SUMS_FILE] = sums_text(digests).encode("ascii")
        for name, data in sorted(files.items()):
            (staging / name).write_bytes(data)
        names.extend(sorted(files))

    replace_folder(out_dir, fill, owned=report_file)
    out = Path(out_dir)
    return {name: out / name for name in names}
