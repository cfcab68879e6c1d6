"""The sections of the evidence report, each built from the graph, the plan, the policies and
their evaluation (see :mod:`segmenter.views.report`)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import networkx as nx

from segmenter.analysis.findings import Finding, FindingKind
from segmenter.compliance import CATALOG, FRAMEWORK_TITLES, Framework
from segmenter.evaluate.engine import PolicyEngine
from segmenter.graph.stats import count_text, entry_of
from segmenter.model import DnsAnswer, Flow, Inventory, NodeId, NodeKind, is_workload_id
from segmenter.planner import ClassScope, Plan, Zone
from segmenter.views.report.document import Block, Bullets, Heading, Image, Para, Table, _slug

# Addresses from TEST-NET-1 (RFC 5737) and a port nothing listens on: the probes that show a
# namespace's default deny.
_PROBE_IP = "192.0.2.123"
_PROBE_PORT = 65000
_PROBE_LABEL = {"segmenter.io/probe": "default-deny"}


def _iso(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _span(first: float | None, last: float | None) -> str:
    """``2026-11-26 17:49:59Z – 17:50:04Z`` (the date once when both are on one day)."""
    a, b = _iso(first), _iso(last)
    if a[:10] == b[:10] and a != "-":
        return f"{a} – {b[11:]}"
    return f"{a} – {b}"


def _port(protocol: str, port: int | None) -> str:
    return protocol if port is None else f"{protocol}/{port}"


def _name(graph: nx.DiGraph, node: str) -> str:
    from segmenter.graph.labels import display_label

    parsed = NodeId.parse(node)
    if parsed.kind is NodeKind.APISERVER:
        return display_label(graph, node)
    if parsed.dns_name is not None:
        # A named set of one DNS name's addresses: the name says it all.
        addresses = graph.nodes[node].get("addresses") or []
        return f"{parsed.dns_name} ({len(addresses)} addresses)"
    if parsed.address is not None:
        label = display_label(graph, node)
        return f"{label} ({parsed.address})" if label != parsed.address else label
    if parsed.kind is NodeKind.NODE:
        return f"node {display_label(graph, node)}"
    return node


def _policy_name(display: str | None) -> str:
    """``networking.k8s.io/NetworkPolicy payments/x`` -> ``NetworkPolicy payments/x``."""
    if not display:
        return ""
    kind, _, rest = display.partition(" ")
    # The evaluator names Kubernetes policies with their group and Calico ones without.
    prefix = "Calico " if kind in {"NetworkPolicy", "projectcalico.org/NetworkPolicy"} else ""
    return f"{prefix}{kind.rsplit('/', 1)[-1]} {rest}".strip()


def _decided_by(verdict: Any) -> str:
    parts = []
    for side, decision in (("egress", verdict.egress), ("ingress", verdict.ingress)):
        if decision.policy:
            rule = f" {decision.rule}" if decision.rule else ""
            parts.append(f"{side}: `{_policy_name(decision.policy)}`{rule}")
        elif not decision.allowed or "own node" in decision.reason:
            parts.append(f"{side}: {decision.reason}")
    return "; ".join(parts) or "no policy applies (not isolated)"


def sha256_of(path: str) -> str:
    try:
        digest = hashlib.sha256()
        files = sorted(p for p in Path(path).rglob("*") if p.is_file()) \
            if Path(path).is_dir() else [Path(path)]
        for f in files:
            digest.update(str(f.relative_to(path) if Path(path).is_dir() else f.name).encode())
            digest.update(f.read_bytes())
        return digest.hexdigest()[:16]
    except OSError:
        return "-"


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    from segmenter.views.viz.draw import figure_bytes

    data = figure_bytes(fig, "png", dpi=100)
    plt.close(fig)
    return data


# ---------------------------------------------------------------------------------------------
# Building


@dataclass
class ReportContext:
    graph: nx.DiGraph
    plan: Plan
    manifests: list[dict[str, Any]]
    engine: PolicyEngine
    endpoints: dict[str, Any]
    enforcement: str
    inventory: Inventory | None
    flows: Sequence[Flow] | None
    dns: Sequence[DnsAnswer] = ()  # the traffic's DNS answers: names of external addresses


def summary_blocks(ctx: ReportContext, findings: list[Finding], seg: dict[str, int],
                    verified: tuple[int, int] | None) -> list[Block]:
    out: list[Block] = [Heading(2, "Summary", "summary")]
    items = []
    if not ctx.plan.classes:
        out.append(Para("No sensitive data stores are declared: **nothing is in scope** for "
                        "PCI DSS or HIPAA. Every workload still gets least-privilege policies; "
                        "declare stores (label `segmenter.io/data-class`, `--sensitive` or "
                        "`segmenter.yaml`) to scope them.", "info"))
    for scope in ctx.plan.classes:
        restricted = _workloads(scope.members(Zone.RESTRICTED))
        connected = _workloads(scope.members(Zone.CONNECTED))
        general = _workloads(scope.members(Zone.GENERAL))
        items.append(f"{scope.title} (`{scope.data_class}`): {len(restricted)} restricted, "
                     f"{len(connected)} connected-to, {len(general)} out-of-scope workloads; "
                     f"{len(scope.crossings)} allowed flows cross a zone boundary.")
    if seg.get("probes"):
        items.append(f"Segmentation test: {seg['probes']} probes from out-of-scope workloads "
                     f"and external addresses into the restricted zone; {seg['allowed']} "
                     "allowed.")
    if verified is not None:
        items.append(f"Observed flows replayed against the policies: {verified[0]} of "
                     f"{verified[1]} allowed.")
    if items:
        out.append(Bullets(tuple(items)))
    if findings:
        unique = sorted(set(findings))
        out.append(Para(f"{len(unique)} finding(s) need attention, most severe first:", "fail"))
        out.append(Bullets(tuple(f"**{f.severity}** ({f.kind}): {f.message}" for f in unique)))
    elif ctx.plan.classes:
        out.append(Para("No findings: every restricted workload is isolated in both "
                        "directions, and every probe into the restricted zone from out of scope "
                        "is denied.", "ok"))
    return out


def _workloads(members: Iterable[Any]) -> list[Any]:
    return [m for m in members if is_workload_id(m.node)]


def _member_rows(graph: nx.DiGraph, members: Iterable[Any]) -> tuple[tuple[str, ...], ...]:
    return tuple((_name(graph, m.node), m.reason) for m in sorted(members))


def scope_section(ctx: ReportContext, blocks: list[Block]) -> None:
    blocks.append(Heading(2, "Scope statement", "scope"))
    plan, graph = ctx.plan, ctx.graph
    if not plan.classes:
        workloads = sorted(n for n, a in graph.nodes(data=True) if a.get("kind") == "workload")
        blocks.append(Para(f"Nothing is in scope: no data class is declared. The "
                           f"{len(workloads)} workloads observed are listed as out of scope.",
                           "info"))
        blocks.append(Table(("Workload", "Why"), tuple(
            (n, "no sensitive data declared") for n in workloads)))
    for scope in plan.classes:
        framework = FRAMEWORK_TITLES.get(Framework(scope.framework), scope.framework) \
            if scope.framework in Framework._value2member_map_ else scope.framework
        blocks.append(Heading(3, f"{scope.title} (`{scope.data_class}`, {framework})",
                              f"scope-{_slug(scope.data_class)}"))
        if scope.framework == "pci":
            blocks.append(Para(
                "Cardholder data environment (CDE) systems are the restricted zone; systems "
                "with an observed flow to or from them are connected-to (PCI SSC scoping "
                "guidance, category 2); cluster DNS, nodes, the API server and the system "
                "namespaces are security-impacting. Out-of-scope workloads must not be able to "
                "reach the CDE: see the segmentation test."))
        else:
            blocks.append(Para(
                "The restricted zone holds the ePHI stores; the Security Rule covers all ePHI "
                "(there is no scope reduction as in PCI DSS), so the zones show where "
                "164.312 access, audit and transmission controls apply."))
        for zone, heading in ((Zone.RESTRICTED, "Restricted (stores and processors)"),
                              (Zone.CONNECTED, "Connected-to (in scope)"),
                              (Zone.INFRASTRUCTURE, "Security-impacting infrastructure"),
                              (Zone.EXTERNAL, "External peers"),
                              (Zone.GENERAL, "Out of scope")):
            members = scope.members(zone)
            if zone == Zone.GENERAL:
                members = tuple(m.__class__(m.node, m.reason + "; cannot open a connection "
                                            "to the restricted zone under the policies (see "
                                            "the segmentation test)") for m in members)
            blocks.append(Para(f"**{heading}**: {len(members)}"))
            if members:
                blocks.append(Table(("Member", "Why it is here"),
                                    _member_rows(graph, members)))
        leaving = [r for r in scope.reductions if r.leaves]
        cuts = [r for r in scope.reductions if not r.leaves]
        if leaving or cuts:
            blocks.append(Para("**Scope reduction options** (not applied): cutting these "
                               "flows (removing them or proxying them) shrinks the scope."))
            blocks.append(Table(("Cut flows", "Effect"), tuple(
                ("; ".join(f"`{a}` → `{b}`" for a, b in r.flows),
                 r.note or f"{', '.join(r.leaves)} leave scope")
                for r in [*leaving, *cuts])))
    if plan.suggestions:
        blocks.append(Para("**Possible undeclared data stores** (suggestions, never applied: "
                           "decide whether they hold sensitive data):", "warn"))
        blocks.append(Table(("Workload", "Why it looks like a data store"),
                            _member_rows(graph, plan.suggestions)))


def diagram_section(ctx: ReportContext, blocks: list[Block]) -> None:
    from segmenter.views.viz.draw import zone_map_figure
    from segmenter.views.viz.learning import learning_curve

    blocks.append(Heading(2, "Network and data-flow diagram", "diagram"))
    blocks.append(Para("Generated from observed traffic (PCI DSS 1.2.3, 1.2.4). Each zone is a "
                       "region; stars mark the declared sensitive stores; dashed arrows cross a "
                       "zone boundary. Regenerated on every run."))
    fig = zone_map_figure(ctx.graph, ctx.plan, title="Observed communications by zone")
    blocks.append(Image("zone-map.png", _png(fig), "Zone map of observed communications",
                        "Workloads by zone; arrows point from client to server."))
    curve = learning_curve(ctx.graph, ctx.plan)
    if curve.total:
        import matplotlib.figure

        fig2 = matplotlib.figure.Figure(figsize=(7.5, 3.4), layout="constrained")
        from segmenter.views.viz.learning import draw_learning_curve

        draw_learning_curve(curve, fig2.add_subplot(), plan=ctx.plan)
        blocks.append(Para(
            f"Observation window {_iso(curve.start)} to {_iso(curve.end)}: {curve.total} "
            f"distinct (client, server, protocol, port) edges; the last new one at "
            f"{_iso(curve.last_new)}, with {curve.quiet_fraction():.0%} of the window after "
            "it. A curve still rising at the end means some traffic (monthly jobs, failover "
            "paths) may not have been seen: the policies would deny it."))
        blocks.append(Image("learning-curve.png", _png(fig2), "Learning completeness curve",
                            "Distinct edges first seen over the capture window."))


def _check(ctx: ReportContext, client: str, server: str, protocol: str, port: int | None) -> Any:
    src, dst = ctx.endpoints.get(client), ctx.endpoints.get(server)
    if src is None or dst is None:
        return None
    return ctx.engine.check(src, dst, protocol, port)


def register_section(ctx: ReportContext, blocks: list[Block], findings: list[Finding]
                     ) -> None:
    blocks.append(Heading(2, "Allowed-flow register: flows across zone boundaries",
                          "register"))
    blocks.append(Para("Every observed flow whose ends are in different zones, and every flow "
                       "segmenter.yaml declares across them (rows marked *declared*: not seen "
                       "in the capture) (PCI DSS 1.2.5; HIPAA 164.312(a)(1) access "
                       "authorisation). The policies allow exactly these; fill in the business "
                       "justification and the approver where they are missing."))
    if not ctx.plan.classes:
        blocks.append(Para("No zones: nothing is in scope.", "info"))
    declared = {(f.client, f.server, f.protocol, f.port): f for f in ctx.plan.declared}
    for scope in ctx.plan.classes:
        rows, marks = [], []
        for c in scope.crossings:
            verdict = _check(ctx, c.client, c.server, c.protocol, c.port)
            allowed_by = "-" if verdict is None else _decided_by(verdict)
            mark = ""
            what = "observed" if c.flows or not c.declared else "declared"
            if verdict is not None and not verdict.allowed:
                mark = "fail"
                allowed_by = "DENIED: " + verdict.summary()
                flow = f"{c.client} -> {c.server} {_port(c.protocol, c.port)}"
                findings.append(Finding.of(FindingKind.DENIED_FLOW, flow,
                                           f"{what} flow {flow} would be denied"))
            decl = declared.get((c.client, c.server, c.protocol, c.port))
            seen = _span(c.first_seen, c.last_seen) if c.flows else "not observed"
            if c.declared:
                seen += f"; *declared*: {c.declared}"
            rows.append((f"{_name(ctx.graph, c.client)} ({c.client_zone})",
                         f"{_name(ctx.graph, c.server)} ({c.server_zone})",
                         _port(c.protocol, c.port), "yes" if c.tls else "no",
                         count_text(c.flows, entry_of(ctx.graph, c.client, c.server,
                                                      c.protocol, c.port))
                         if c.flows or not c.declared else "declared",
                         seen, allowed_by, decl.justification if decl else "",
                         decl.approved_by if decl else ""))
            marks.append(mark)
        blocks.append(Heading(3, f"{scope.title} (`{scope.data_class}`): "
                                 f"{len(rows)} flows", f"register-{_slug(scope.data_class)}"))
        if rows:
            blocks.append(Table(("Client (zone)", "Server (zone)", "Port", "TLS", "Flows",
                                 "First – last seen (UTC)", "Allowed by", "Justification",
                                 "Approver"), tuple(rows), tuple(marks)))


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
        verdict = _check(ctx, flow.client, flow.server, flow.protocol, flow.port)
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


def encryption_section(ctx: ReportContext, blocks: list[Block], findings: list[Finding]
                       ) -> None:
    blocks.append(Heading(2, "Encryption in transit", "encryption"))
    blocks.append(Para("Flows to or from the restricted zone without a TLS handshake in the "
                       "capture (PCI DSS 1.2.6 insecure services, 4.2.1; HIPAA 164.312(e)(1)). "
                       "A protocol that negotiates TLS inside its own handshake (PostgreSQL "
                       "`SSLRequest`, SMTP/LDAP `STARTTLS`) is listed too: confirm at the server."))
    restricted = {m.node for s in ctx.plan.classes for m in s.members(Zone.RESTRICTED)}
    rows = []
    tls_count = 0
    for u, v, data in sorted(ctx.graph.edges(data=True)):
        if u not in restricted and v not in restricted:
            continue
        for p in data.get("ports", []):
            if p.get("declared") and not p.get("flows"):
                continue  # declared, never seen: nothing to say about its encryption
            if p.get("tls"):
                tls_count += 1
                continue
            classes = sorted({s.data_class for s in ctx.plan.classes
                              if Zone.RESTRICTED in (s.zone_of(u), s.zone_of(v))})
            rows.append((_name(ctx.graph, u), _name(ctx.graph, v),
                         _port(str(p.get("protocol")), p.get("port")), ", ".join(classes),
                         count_text(int(p.get("flows", 0)), p),
                         _span(p.get("first_seen"), p.get("last_seen")),
                         ""))
    if not restricted:
        blocks.append(Para("No restricted zone: nothing is in scope.", "info"))
    elif rows:
        findings.append(Finding.of(FindingKind.PLAINTEXT, "restricted zone",
                                   f"{len(rows)} plaintext flow(s) to or from the restricted "
                                   "zone"))
        blocks.append(Para(f"{len(rows)} flow(s) without TLS ({tls_count} with TLS).", "warn"))
        blocks.append(Table(("Client", "Server", "Port", "Class", "Flows",
                             "First – last seen (UTC)", "Mitigation"), tuple(rows),
                            ("warn",) * len(rows)))
    else:
        blocks.append(Para(f"Every flow to or from the restricted zone ({tls_count}) started "
                           "a TLS handshake.", "ok"))


def _probe(namespace: str) -> Any:
    from segmenter.evaluate import EvalEndpoint
    from segmenter.model import Labels

    return EvalEndpoint(ip="10.255.255.254", namespace=namespace, labels=Labels.of(_PROBE_LABEL),
                        name=f"{namespace}/<a new pod>")


def default_deny_section(ctx: ReportContext, blocks: list[Block], findings: list[Finding]
                          ) -> dict[str, bool]:
    """Returns {"restricted_isolated": ..., "namespaces_denied": ...}."""
    from segmenter.evaluate import EvalEndpoint

    blocks.append(Heading(2, "Default deny", "default-deny"))
    blocks.append(Para(
        "For each namespace, whether a new pod with labels no policy names is denied ingress "
        "and egress, and the object that denies it (PCI DSS 1.3.1, 1.3.2 \"specifically "
        "denied\"): checked with the evaluator against a probe from and to "
        f"`{_PROBE_IP}` on TCP/{_PROBE_PORT}."))
    outside = EvalEndpoint(ip=_PROBE_IP, name="an address outside the cluster")
    namespaces: dict[str, list[str]] = defaultdict(list)
    for node, attrs in ctx.graph.nodes(data=True):
        if attrs.get("kind") == "workload":
            namespaces[str(attrs.get("namespace"))].append(node)
    excluded = set(ctx.plan.excluded_namespaces)
    rows: list[tuple[str, ...]] = []
    marks: list[str] = []
    all_denied = True
    for namespace in sorted(namespaces):
        if namespace in excluded:
            rows.append((namespace, str(len(namespaces[namespace])), "not policed (excluded "
                         "system namespace)", "-", "-"))
            marks.append("")
            continue
        probe = _probe(namespace)
        cells = []
        for verdict, decision in ((ctx.engine.check(outside, probe, "TCP", _PROBE_PORT),
                                   "ingress"),
                                  (ctx.engine.check(probe, outside, "TCP", _PROBE_PORT),
                                   "egress")):
            d = verdict.ingress if decision == "ingress" else verdict.egress
            if d.allowed:
                cells.append("**not denied**: " + d.reason)
                all_denied = False
            else:
                cells.append(f"denied by `{_policy_name(d.policy)}`" if d.policy else
                             "denied: " + d.reason)
        ok = all(c.startswith("denied") for c in cells)
        rows.append((namespace, str(len(namespaces[namespace])), "policed", *cells))
        marks.append("ok" if ok else "warn")
        if not ok:
            findings.append(Finding.of(FindingKind.NO_DEFAULT_DENY, namespace,
                                       f"namespace {namespace} has no default deny"))
    blocks.append(Table(("Namespace", "Workloads", "Status", "Ingress default",
                         "Egress default"), tuple(rows), tuple(marks)))
    # Workloads no policy isolates.
    in_scope: dict[str, str] = {}
    for scope in ctx.plan.classes:
        for zone in (Zone.RESTRICTED, Zone.CONNECTED):
            for m in scope.members(zone):
                in_scope.setdefault(m.node, zone)
    uncovered, restricted_ok = [], True
    for node in ctx.plan.policed:
        ep = ctx.endpoints.get(node)
        if ep is None or not ep.is_pod:
            continue
        missing = [d for d in ("ingress", "egress") if not ctx.engine.policies_for(ep, d)]
        if missing:
            scope_zone = in_scope.get(node, "")
            uncovered.append((node, scope_zone or "-", ", ".join(missing)))
            if scope_zone:
                # The finding is the isolation check's (isolation_section), shared with verify.
                restricted_ok = False
    if uncovered:
        blocks.append(Para(f"{len(uncovered)} policed workload(s) are not isolated by any "
                           "policy in some direction (must be none in restricted and "
                           "connected zones):", "fail" if not restricted_ok else "warn"))
        blocks.append(Table(("Workload", "In-scope zone", "Not isolated for"),
                            tuple(uncovered), tuple("fail" if z != "-" else "warn"
                                                    for _, z, _ in uncovered)))
    else:
        blocks.append(Para("Every policed workload is isolated for ingress and egress by at "
                           "least one policy.", "ok"))
    return {"restricted_isolated": restricted_ok, "namespaces_denied": all_denied}


def segmentation_section(ctx: ReportContext, blocks: list[Block], findings: list[Finding]
                          ) -> dict[str, int]:
    from segmenter.analysis.reachability import reachability, target_probes
    from segmenter.views.viz.reach import draw_reachability

    blocks.append(Heading(2, "Segmentation test evidence", "segmentation"))
    blocks.append(Para(
        "The expected-deny matrix (PCI DSS 11.4.5): every out-of-scope workload and every "
        "external address, against every restricted member, on the ports the member was seen "
        "serving or declares plus TCP/22, 443 and 8080, evaluated with segmenter's policy "
        "engine. These simulated probes support, and do not replace, the penetration test by "
        "an independent tester after every change to the segmentation controls."))
    stats = {"probes": 0, "allowed": 0, "external_allowed": 0}
    if not ctx.plan.classes:
        blocks.append(Para("No restricted zone: nothing to test.", "info"))
        return stats
    graph = ctx.graph
    rows, marks = [], []
    failures = []
    for scope in ctx.plan.classes:
        targets = [m.node for m in scope.members(Zone.RESTRICTED)]
        sources = [m.node for m in scope.members(Zone.GENERAL) if m.node in ctx.endpoints] + [
            m.node for m in scope.members(Zone.EXTERNAL) if m.node in ctx.endpoints]
        for target in targets:
            probes = target_probes(graph, target, ctx.endpoints[target])
            denied = allowed = 0
            for source in sources:
                for protocol, port in probes:
                    verdict = ctx.engine.check(ctx.endpoints[source], ctx.endpoints[target],
                                               protocol, port)
                    if verdict.allowed:
                        allowed += 1
                        if NodeId.parse(source).kind is NodeKind.EXTERNAL:
                            stats["external_allowed"] += 1
                        failures.append((scope.data_class, _name(graph, source),
                                         _name(graph, target), _port(protocol, port),
                                         _decided_by(verdict)))
                    else:
                        denied += 1
            stats["probes"] += denied + allowed
            stats["allowed"] += allowed
            rows.append((scope.data_class, target, str(len(sources)),
                         ", ".join(_port(p, q) for p, q in probes), str(denied + allowed),
                         str(denied), str(allowed)))
            marks.append("fail" if allowed else "ok")
    blocks.append(Table(("Class", "Restricted member", "Sources", "Ports probed", "Probes",
                         "Denied", "Allowed"), tuple(rows), tuple(marks)))
    if failures:
        findings.append(Finding.of(FindingKind.SEGMENTATION, "restricted zone",
                                   f"{len(failures)} probe(s) from out of scope into the "
                                   "restricted zone are allowed"))
        blocks.append(Para("Allowed paths from out of scope into the restricted zone:", "fail"))
        blocks.append(Table(("Class", "Source", "Restricted member", "Port", "Decided by"),
                            tuple(failures[:200]), ("fail",) * min(len(failures), 200)))
    else:
        blocks.append(Para("Every probe from out of scope into the restricted zone is denied.",
                           "ok"))
    # Indirect paths: observed chains general -> in scope -> restricted.
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
                             "Restricted member"), tuple(indirect[:200])))
    # The matrix as a picture: now (no policies) against the policies.
    reach = reachability(graph, ctx.plan, ctx.manifests, inventory=ctx.inventory,
                         enforcement=ctx.enforcement, before_label="no policies (today)",
                         after_label="with these policies")
    ax1, _ = draw_reachability(reach)
    blocks.append(Image("reachability.png", _png(ax1.figure),
                        "Reachability of the restricted zone, before and after",
                        "Rows: every node outside the restricted zone, by zone; columns: "
                        "restricted members. Infrastructure rows include node-local traffic "
                        "that NetworkPolicy does not govern."))
    return stats


def verify_section(ctx: ReportContext, blocks: list[Block], findings: list[Finding]
                    ) -> tuple[int, int] | None:
    if ctx.flows is None or ctx.inventory is None:
        return None
    from segmenter.analysis.verify import verify_flows

    blocks.append(Heading(2, "Observed flows replayed", "verify"))
    results = verify_flows(ctx.flows, ctx.inventory, ctx.manifests,
                           enforcement=ctx.enforcement, dns=ctx.dns)
    denied = [r for r in results if not r.allowed]
    allowed = len(results) - len(denied)
    if denied:
        findings.append(Finding.of(FindingKind.DENIED_FLOW, "observed flows",
                                   f"{len(denied)} observed flow(s) would be denied by the "
                                   "policies"))
        blocks.append(Para(f"{len(denied)} of {len(results)} observed flows would be denied: "
                           "the application would break where they are needed.", "fail"))
        grouped: dict[tuple[str, str, str], int] = defaultdict(int)
        reason: dict[tuple[str, str, str], str] = {}
        for r in denied:
            key = (r.client, r.server, _port(str(r.flow.transport), r.port))
            grouped[key] += 1
            reason[key] = r.verdict.summary()
        blocks.append(Table(("Client", "Server", "Port", "Flows", "Why"), tuple(
            (k[0], k[1], k[2], str(n), reason[k]) for k, n in sorted(grouped.items())),
            ("fail",) * len(grouped)))
    else:
        blocks.append(Para(f"All {len(results)} observed flows are allowed under "
                           f"{ctx.enforcement} enforcement: the policies block nothing the "
                           "application was seen doing.", "ok"))
    return allowed, len(results)


def _asks(framework: Framework, ref: str) -> str:
    """What a requirement asks, from the one catalogue (segmenter.compliance)."""
    return CATALOG[(framework, ref)].asks


def mapping_section(ctx: ReportContext, blocks: list[Block], deny: Mapping[str, bool],
                     seg: Mapping[str, int], verified: tuple[int, int] | None) -> None:
    blocks.append(Heading(2, "Mapping to PCI DSS v4.0.1 and HIPAA 164.312", "mapping"))
    frameworks = {s.framework for s in ctx.plan.classes}
    nothing = not ctx.plan.classes
    na = "not applicable: nothing is in scope"

    def status(ok: bool, good: str, bad: str) -> str:
        return na if nothing else (good if ok else bad)

    isolated = deny.get("restricted_isolated", True) and deny.get("namespaces_denied", True)
    seg_ok = seg.get("allowed", 0) == 0
    has_plaintext = any(
        not p.get("tls") for u, v, d in ctx.graph.edges(data=True)
        for p in d.get("ports", [])
        if any(Zone.RESTRICTED in (s.zone_of(u), s.zone_of(v)) for s in ctx.plan.classes))
    external = any(Zone.EXTERNAL in (c.client_zone, c.server_zone)
                   for s in ctx.plan.classes for c in s.crossings)
    pci_rows = [
        ("1.2.4", _asks(Framework.PCI, "1.2.4"),
         "[Diagram](#diagram), [allowed-flow register](#register)",
         status(True, "evidence supplied (regenerate on change)", "")),
        ("1.2.5", _asks(Framework.PCI, "1.2.5"), "[Allowed-flow register](#register)",
         status(True, "register supplied; justification and approval to be filled in", "")),
        ("1.3.1", _asks(Framework.PCI, "1.3.1"),
         "[Default deny](#default-deny), [segmentation test](#segmentation)",
         status(isolated and seg_ok, "met by the policies as evaluated", "gaps: see findings")),
        ("1.3.2", _asks(Framework.PCI, "1.3.2"),
         "[Default deny](#default-deny), [register](#register)",
         status(isolated, "met by the policies as evaluated", "gaps: see findings")),
        ("1.4.1, 1.4.2", f"{_asks(Framework.PCI, '1.4.1')}; {_asks(Framework.PCI, '1.4.2')}",
         "[Register](#register) (external rows), [scope](#scope)",
         status(True, "external peers listed by address" if external else
                "no flow with an external address", "")),
        ("1.4.4", _asks(Framework.PCI, "1.4.4"),
         "[Segmentation test](#segmentation) (external sources)",
         status(seg.get("external_allowed", 0) == 0,
                "no external address reaches a restricted member",
                "an external address reaches the restricted zone")),
        ("10.2", _asks(Framework.PCI, "10.2"),
         ("Calico guardrails `Log` unplanned traffic into the restricted zone; "
          if ctx.enforcement == "calico" else "NetworkPolicy cannot log; ")
         + "policy objects carry provenance annotations",
         na if nothing else (
             "partly: Calico Log rules record denied attempts; Kubernetes API audit logging of "
             "policy changes is the cluster's to enable" if ctx.enforcement == "calico" else
             "partly: enable the CNI's flow and deny logs and Kubernetes API audit logging "
             "of policy objects")),
        ("11.4.5", _asks(Framework.PCI, "11.4.5"), "[Segmentation test](#segmentation)",
         status(seg_ok, "expected-deny matrix passes in simulation; the independent pen test "
                "is still required", "simulated probes found allowed paths")),
    ]
    hipaa_rows = [
        ("164.312(a)(1)", _asks(Framework.HIPAA, "164.312(a)(1)"),
         "[Scope](#scope), [register](#register), [default deny](#default-deny)",
         status(isolated and seg_ok, "network access limited to the authorised workloads",
                "gaps: see findings")),
        ("164.312(b)", _asks(Framework.HIPAA, "164.312(b)"),
         "Calico `Log` rules; flow evidence in the register",
         na if nothing else "partly: flow and deny logs and API audit logs must be collected "
         "and reviewed"),
        ("164.312(e)(1)", _asks(Framework.HIPAA, "164.312(e)(1)"),
         "[Encryption in transit](#encryption)",
         status(not has_plaintext, "every flow with the restricted zone used TLS",
                "plaintext flows listed: encryption or a documented alternative needed")),
    ]
    if nothing or "pci" in frameworks:
        blocks.append(Heading(3, "PCI DSS v4.0.1", "mapping-pci"))
        blocks.append(Table(("Requirement", "What it asks", "Evidence here", "Status"),
                            tuple(pci_rows), tuple(_status_mark(r[3]) for r in pci_rows)))
    if nothing or "hipaa" in frameworks:
        blocks.append(Heading(3, "HIPAA Security Rule, 45 CFR 164.312", "mapping-hipaa"))
        blocks.append(Table(("Standard", "What it asks", "Evidence here", "Status"),
                            tuple(hipaa_rows), tuple(_status_mark(r[3]) for r in hipaa_rows)))
    if verified is not None:
        blocks.append(Para(f"Functional check: {verified[0]} of {verified[1]} observed flows "
                           "allowed (nothing needed is blocked)."))


def _status_mark(text: str) -> str:
    if text.startswith(("gaps", "an external", "simulated probes", "plaintext")):
        return "fail"
    if text.startswith("partly") or "to be filled" in text:
        return "warn"
    if text.startswith("not applicable"):
        return ""
    return "ok"


def limits_section(ctx: ReportContext, blocks: list[Block]) -> None:
    blocks.append(Heading(2, "Exceptions, assumptions and limits", "limits"))
    items = [
        "Traffic from a pod's own node (kubelet probes) and from hostNetwork pods is not "
        "governed by NetworkPolicy in most CNIs; it is shown as allowed. Compensating "
        "control: node isolation (dedicated node pools, taints) for restricted workloads.",
        "Policies are evaluated after Service DNAT (the pod port), with ipBlock matching pod "
        "addresses as Calico does; ICMP and existing connections are implementation-defined.",
        "Only the traffic seen during the capture is allowed: anything the application does "
        "rarely (see the learning curve) would be denied until added.",
        "TLS is detected from a ClientHello at the start of a connection; TLS negotiated inside "
        "another protocol is reported as plaintext.",
    ]
    if ctx.plan.excluded_namespaces:
        items.append("Not policed (system namespaces, a default deny there can lock out nodes "
                     "and the control plane): " + ", ".join(
                         f"`{n}`" for n in ctx.plan.excluded_namespaces) + ".")
    items.extend(ctx.plan.notes)
    items.extend(f"Policy engine: {w}" for w in sorted(set(ctx.engine.warnings))[:20])
    items.extend(f"Not evaluated: {i}" for i in sorted(set(ctx.engine.ignored))[:20])
    blocks.append(Bullets(tuple(items)))


# ---------------------------------------------------------------------------------------------
# Scope as blocks, for notebook displays


def scope_blocks(graph: nx.DiGraph, scope: ClassScope) -> list[Block]:
    """One class's zones as blocks (used by :class:`segmenter.notebook.PlanView`)."""
    blocks: list[Block] = []
    for zone in (Zone.RESTRICTED, Zone.CONNECTED, Zone.INFRASTRUCTURE, Zone.EXTERNAL, Zone.GENERAL):
        members = scope.members(zone)
        if members:
            blocks.append(Table(("Member", "Why it is here"), _member_rows(graph, members),
                                caption=f"{zone} ({len(members)})"))
    return blocks
