"""Scope advice: the connected-to workloads that read from or write to a restricted store are
candidates for the processor role, inside the cardholder data environment.

PCI DSS scoping ("Scope of PCI DSS Requirements", v4.0.1; PCI SSC "Guidance for PCI DSS Scoping
and Network Segmentation", 2016): the CDE is the system components that store, process or
transmit cardholder data or sensitive authentication data, and those with unrestricted
connectivity to them; systems connected to the CDE (or that can affect its security) are in
scope too, as *connected-to*. A client that opens connections to a store of cardholder data on
its service port reads or writes that data: it processes or transmits it, so it belongs in the
CDE, not beside it, unless the organisation shows it never handles the data (a health checker,
a metrics exporter). The capture sees bytes each way, not their content: the advice names the
candidates, with the traffic, for the organisation to decide; declaring one ``role: processor``
in segmenter.yaml makes it restricted (and its own clients connected-to).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Final

from segmenter.analysis.findings import Finding, FindingKind
from segmenter.compliance import Framework
from segmenter.model import Labels, NodeId, NodeKind
from segmenter.planner import Zone
from segmenter.views.report.document import Block, Code, Heading, Para, Table
from segmenter.views.report.sections import ReportContext, _port

# The planner's reason for a declared store begins so (planner._plan: "<role> of <class> data").
_STORE_REASON: Final = "store of "


def _selector(ctx: ReportContext, node: str) -> dict[str, str]:
    """The labels to declare ``node`` with: the selector the policies use for it when the
    inventory is known, else its name-like label, else all its labels."""
    from segmenter.policy.selectors import PREFERRED_KEYS, UnselectableWorkload

    attrs = ctx.graph.nodes[node]
    labels = Labels.of(attrs.get("labels") or {})
    ref = NodeId.parse(node).workload
    if ctx.inventory is not None and ref is not None:
        try:
            chosen: Labels = ctx.selector_chooser().choose(ref, labels).labels
            return chosen.as_dict()
        except UnselectableWorkload:
            pass
    for key in PREFERRED_KEYS:
        value = labels.get(key)
        if value is not None:
            return {key: value}
    return labels.as_dict()


def scope_advice_section(ctx: ReportContext, blocks: list[Block], findings: list[Finding]
                         ) -> None:
    stores: dict[str, set[str]] = defaultdict(set)  # store -> classes
    connected: dict[str, set[str]] = defaultdict(set)
    for scope in ctx.plan.classes:
        if scope.framework != Framework.PCI:
            continue  # HIPAA has no scope reduction: every ePHI system is covered alike
        for member in scope.members(Zone.RESTRICTED):
            if member.reason.startswith(_STORE_REASON):
                stores[member.node].add(scope.data_class)
        for member in scope.members(Zone.CONNECTED):
            connected[member.node].add(scope.data_class)
    blocks.append(Heading(3, "Scope advice: candidates for the processor role", "scope-advice"))
    blocks.append(Para(
        "PCI DSS scope is the systems that **store, process or transmit** cardholder data (the "
        "CDE), and the systems connected to them or that can affect their security (PCI DSS "
        "v4.0.1 \"Scope of PCI DSS Requirements\"; PCI SSC scoping guidance). A workload that "
        "reads from or writes to a store of cardholder data processes or transmits it: it "
        "belongs in the CDE (declare it `role: processor` in segmenter.yaml), not merely "
        "connected-to, unless you can show it never handles the data. The bytes each way are "
        "what the capture saw; their content it never keeps."))
    rows, snippets = [], []
    sent: dict[tuple[str, str], int] = defaultdict(int)
    received: dict[tuple[str, str], int] = defaultdict(int)
    for verdict in ctx.verdicts or ():
        sent[(verdict.client, verdict.server)] += verdict.flow.bytes_to_server
        received[(verdict.client, verdict.server)] += verdict.flow.bytes_to_client
    for store in sorted(stores):
        for client in sorted(ctx.graph.predecessors(store)):
            classes = sorted(connected.get(client, set()) & stores[store])
            if not classes or NodeId.parse(client).kind is not NodeKind.WORKLOAD:
                continue
            ports = [p for p in ctx.graph.edges[client, store].get("ports", [])
                     if p.get("flows")]
            if not ports:
                continue  # declared only: nothing seen to read or write
            flows = sum(int(p.get("flows", 0)) for p in ports)
            # Bytes each way say that data moved, not which way the card numbers went (a query
            # can be longer than its answer): the advice says "reads from or writes to".
            to_store, from_store = sent.get((client, store)), received.get((client, store))
            if to_store is None or from_store is None:
                seen = f"{sum(int(p.get('bytes', 0)) for p in ports)} both ways"
            else:
                seen = f"{to_store} to the store, {from_store} from it"
            port_text = ", ".join(_port(str(p.get("protocol")), p.get("port")) for p in ports)
            rows.append(("/".join(classes), client, store, port_text, str(flows), seen))
            namespace = str(ctx.graph.nodes[client].get("namespace"))
            # JSON strings are YAML strings: every value quoted, whatever it looks like.
            selector = ", ".join(f"{json.dumps(k)}: {json.dumps(v)}"
                                 for k, v in sorted(_selector(ctx, client).items()))
            snippets.append(f"  - class: {classes[0]}\n    namespace: {namespace}\n"
                            f"    selector: {{{selector}}}\n    role: processor\n"
                            f"    reason: {json.dumps(f'reads from or writes to {store}')}")
            findings.append(Finding.of(
                FindingKind.PROCESSOR_CANDIDATE, client,
                f"{client} reads from or writes to the {'/'.join(classes)} store {store} "
                f"({port_text}): it "
                "processes or transmits cardholder data unless shown otherwise; declare it "
                "`role: processor` in segmenter.yaml (inside the CDE), or cut the flow"))
    if not rows:
        blocks.append(Para("No connected-to workload reads from or writes to a restricted "
                           "store.", "ok"))
        return
    blocks.append(Table(("Class", "Client (connected-to)", "Restricted store", "Ports",
                         "Flows", "Bytes seen"), tuple(rows),
                        ("warn",) * len(rows)))
    blocks.append(Para("To declare them (segmenter.yaml, under `sensitive:`), after checking "
                       "that they handle cardholder data:"))
    blocks.append(Code("sensitive:\n" + "\n".join(snippets) + "\n", "yaml"))


__all__ = ["scope_advice_section"]
