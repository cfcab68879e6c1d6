"""The sections of the evidence report, each built from the graph, the plan, the policies and
their evaluation (see :mod:`segmenter.views.report`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import networkx as nx

from segmenter.analysis.findings import Finding, FindingKind
from segmenter.analysis.verify import FlowVerdict
from segmenter.compliance import CATALOG, FRAMEWORK_TITLES, Framework
from segmenter.config import Config
from segmenter.evaluate.engine import PolicyEngine
from segmenter.flowfile import Traffic
from segmenter.graph.stats import count_text
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
    namespaces: Mapping[str, Any] = field(default_factory=dict)  # name -> labels
    config: Config | None = None  # segmenter.yaml: the justifications register
    traffic_files: Sequence[tuple[str, Traffic]] = ()  # each flow file given, as read
    verdicts: Sequence[FlowVerdict] | None = None  # the observed flows replayed
    _chooser: Any = field(default=None, repr=False)

    def selector_chooser(self) -> Any:
        """The inventory's :class:`~segmenter.policy.selectors.SelectorChooser`, made once."""
        if self._chooser is None:
            from segmenter.policy.selectors import SelectorChooser

            self._chooser = SelectorChooser(self.inventory or Inventory())
        return self._chooser


_SUMMARY_FINDINGS = 100  # findings listed in the summary; the sections list them all


def summary_blocks(ctx: ReportContext, findings: list[Finding], seg_line: str | None,
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
    if seg_line:
        items.append(seg_line)
    if verified is not None:
        items.append(f"Observed flows replayed against the policies: {verified[0]} of "
                     f"{verified[1]} allowed.")
    if items:
        out.append(Bullets(tuple(items)))
    if findings:
        unique = sorted(set(findings))
        more = (f" (the first {_SUMMARY_FINDINGS}; the sections below list them all)"
                if len(unique) > _SUMMARY_FINDINGS else "")
        out.append(Para(f"{len(unique)} finding(s) need attention, most severe first{more}:",
                        "fail" if any(f.severity.rank <= 1 for f in unique) else "warn"))
        out.append(Bullets(tuple(f"**{f.severity}** ({f.kind}): {f.message}"
                                 for f in unique[:_SUMMARY_FINDINGS])))
    elif ctx.plan.classes:
        out.append(Para("No findings: every restricted workload is isolated in both "
                        "directions, and no path into or out of the restricted zone is allowed "
                        "beyond the plan.", "ok"))
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

    blocks.append(Heading(2, "Network and data-flow diagram", "diagram"))
    blocks.append(Para("Generated from observed traffic (PCI DSS 1.2.3, 1.2.4). Each zone is a "
                       "region; stars mark the declared sensitive stores; dashed arrows cross a "
                       "zone boundary. Regenerated on every run."))
    fig = zone_map_figure(ctx.graph, ctx.plan, title="Observed communications by zone")
    blocks.append(Image("zone-map.png", _png(fig), "Zone map of observed communications",
                        "Workloads by zone; arrows point from client to server."))


def _check(ctx: ReportContext, client: str, server: str, protocol: str, port: int | None) -> Any:
    src, dst = ctx.endpoints.get(client), ctx.endpoints.get(server)
    if src is None or dst is None:
        return None
    return ctx.engine.check(src, dst, protocol, port)


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


def verify_section(ctx: ReportContext, blocks: list[Block], findings: list[Finding]
                   ) -> tuple[int, int] | None:
    if ctx.flows is None or ctx.inventory is None:
        return None
    blocks.append(Heading(2, "Observed flows replayed", "verify"))
    if ctx.verdicts is not None:
        results = list(ctx.verdicts)
    else:
        from segmenter.analysis.verify import verify_flows

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
                    seg: Mapping[str, int], verified: tuple[int, int] | None, *,
                    findings: Sequence[Finding] = ()) -> None:
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
    kinds = {f.kind for f in findings}
    pci_rows = [
        ("1.2.2", _asks(Framework.PCI, "1.2.2"),
         "[Who may change the policies](#cluster-rbac), policy provenance annotations",
         na if nothing else ("partly: the subjects whose RBAC lets them change the policies "
                             "are listed; the change-control records are the organisation's")),
        ("1.2.4", _asks(Framework.PCI, "1.2.4"),
         "[Diagram](#diagram), [allowed-flow register](#register)",
         status(True, "evidence supplied (regenerate on change)", "")),
        ("1.2.5", _asks(Framework.PCI, "1.2.5"), "[Allowed-flow register](#register)",
         status(FindingKind.UNJUSTIFIED not in kinds,
                "every flow across a restricted boundary is justified and approved in the "
                "register", "gaps: flows across a restricted boundary without a justification "
                "(see findings)")),
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
                "is still required" + ("; paths from the workloads' own nodes need node "
                                       "isolation as the compensating control"
                                       if FindingKind.NODE_PATH in kinds else ""),
                "simulated probes found allowed paths")),
        ("11.4.6", _asks(Framework.PCI, "11.4.6"), "[Segmentation test](#segmentation)",
         status(seg_ok, "for service providers: the same test, every six months",
                "simulated probes found allowed paths")),
        ("12.5.2", _asks(Framework.PCI, "12.5.2"),
         "[Scope statement](#scope), [scope advice](#scope-advice), "
         "[coverage](#coverage)",
         status(not kinds & {FindingKind.PROCESSOR_CANDIDATE, FindingKind.STILL_LEARNING},
                "scope statement supplied (confirm it every 12 months)",
                "partly: review the scope advice and the capture's coverage")),
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
        "The segmentation test probes TCP and UDP on the ports it lists; SCTP and ICMP only "
        "where a rule names them. It is simulated with segmenter's policy engine: the "
        "penetration test by an independent tester is still required.",
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
