"""Semantic diff: what connections change between two policy sets.

With an inventory, every observed flow is evaluated against both sides with the project's
evaluator (:func:`segmenter.analysis.verify.verify_flows`), and every ordered pair of workloads
(one pod each; at most ``max_workloads``, reported when capped) is probed on every (protocol,
port) that appears in either side's rules or in the flows, to list the connections newly
allowed and newly denied."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from segmenter.analysis.diff.structural import diff_policies
from segmenter.analysis.probes import probe_ports, representative_pods
from segmenter.analysis.verify import EndpointFinder, verify_flows
from segmenter.evaluate import PolicyEngine
from segmenter.model import Flow, Inventory, Transport
from segmenter.targets import kind_of

DEFAULT_MAX_WORKLOADS: Final = 200



@dataclass(frozen=True)
class FlowChange:
    """Observed flows (same client, server, protocol and port) whose verdict changes."""

    client: str
    server: str
    transport: str
    port: int | None
    flows: int
    allowed_before: bool
    allowed_after: bool
    before: str
    after: str


@dataclass(frozen=True)
class ReachChange:
    """A workload-to-workload connection on one (protocol, port) that changes verdict."""

    source: str
    destination: str
    transport: str
    port: int | None
    allowed_before: bool
    allowed_after: bool
    before: str
    after: str


@dataclass(frozen=True)
class SemanticDiff:
    enforcement: str
    flow_changes: tuple[FlowChange, ...] = ()
    reach_changes: tuple[ReachChange, ...] = ()
    flows_checked: int = 0
    workloads_total: int = 0
    workloads_checked: int = 0
    probes: tuple[tuple[str, int | None], ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def capped(self) -> bool:
        return self.workloads_checked < self.workloads_total

    @property
    def has_changes(self) -> bool:
        return bool(self.flow_changes or self.reach_changes)


def _affected(
    old: Sequence[Mapping[str, Any]],
    new: Sequence[Mapping[str, Any]],
    endpoints: Sequence[Any],
    namespaces: Mapping[str, Any],
    enforcement: str,
) -> tuple[set[int], set[int]] | None:
    """Indexes of ``endpoints`` whose egress, and whose ingress, a changed policy selects.

    A direction's decision depends only on the policies that select the endpoint for it, so a
    connection can change verdict only if a changed policy (its OLD or NEW version) selects the
    source for egress or the destination for ingress. ``None`` (check every pair) when
    something else changed: tiers, network sets, namespaces or kinds this does not know.
    """
    structural = diff_policies(old, new)
    keys = [*(a.key for a in structural.added), *(r.key for r in structural.removed),
            *(c.key for c in structural.changed)]
    if any(not k.kind.endswith("Policy") or kind_of(
            {"apiVersion": f"{k.group}/v", "kind": k.kind}) is None for k in keys):
        return None
    tiers = [d for d in old if d.get("kind") == "Tier" and kind_of(d) is not None]
    before = [*(r.manifest for r in structural.removed), *(c.old for c in structural.changed)]
    after = [*(a.manifest for a in structural.added), *(c.new for c in structural.changed)]
    engines = [PolicyEngine.from_manifests([*tiers, *docs], namespaces=namespaces,
                                           enforcement=enforcement) for docs in (before, after)]
    egress = {i for i, ep in enumerate(endpoints)
              if any(e.policies_for(ep, "egress") for e in engines)}
    ingress = {i for i, ep in enumerate(endpoints)
               if any(e.policies_for(ep, "ingress") for e in engines)}
    return egress, ingress


def semantic_diff(
    old: Sequence[Mapping[str, Any]],
    new: Sequence[Mapping[str, Any]],
    inventory: Inventory,
    flows: Sequence[Flow] = (),
    enforcement: str = "kubernetes",
    *,
    max_workloads: int = DEFAULT_MAX_WORKLOADS,
    focus_namespaces: Iterable[str] = (),
) -> SemanticDiff:
    """Which observed flows and which workload-to-workload connections change verdict.

    ``flows`` are evaluated as :func:`segmenter.verify.verify_flows` does. Workload pairs
    (ordered, one representative pod each, hostNetwork pods left out since policy does not
    govern them) are probed on :func:`probe_ports` of both sides plus the flows' ports. Above
    ``max_workloads`` workloads, those in ``focus_namespaces`` come first, then the rest in
    name order; ``workloads_checked < workloads_total`` tells the cap was hit.
    """
    notes: list[str] = []
    flow_changes: list[FlowChange] = []
    flow_probes: set[tuple[Transport, int | None]] = set()
    if flows:
        before = verify_flows(flows, inventory, old, enforcement=enforcement)
        after = verify_flows(flows, inventory, new, enforcement=enforcement)
        groups: dict[tuple[Any, ...], list[Any]] = {}
        for b, a in zip(before, after, strict=True):
            flow_probes.add((b.flow.transport, b.port))
            if b.allowed == a.allowed:
                continue
            key = (b.client, b.server, str(b.flow.transport), b.port, b.allowed, a.allowed)
            groups.setdefault(key, [b.verdict.summary(), a.verdict.summary(), 0])[2] += 1
        for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], -1 if k[3] is None else k[3],
                                                 k[4])):
            before_text, after_text, count = groups[key]
            flow_changes.append(FlowChange(key[0], key[1], key[2], key[3], count, key[4],
                                           key[5], before_text, after_text))
    namespaces = {ns.name: ns.labels for ns in inventory.namespaces}
    engines = []
    for side, docs in (("OLD", old), ("NEW", new)):
        engine = PolicyEngine.from_manifests(docs, namespaces=namespaces,
                                             enforcement=enforcement)
        engines.append(engine)
        notes.extend(f"{side}: left out (invalid): {r}" for r in engine.rejected)
        calico_ignored = sum(1 for i in engine.ignored if "not enforced under kubernetes" in i)
        if calico_ignored:
            notes.append(f"{side}: {calico_ignored} Calico object(s) not evaluated under "
                         "kubernetes enforcement (see --enforcement calico)")
    old_engine, new_engine = engines
    probes = probe_ports([*old, *new], inventory, flow_probes)
    reps = representative_pods(inventory)
    focus = set(focus_namespaces)
    order = sorted(reps, key=lambda ref: (ref.namespace not in focus, ref))
    total = len(order)
    chosen = sorted(order[:max_workloads])
    if total > max_workloads:
        notes.append(f"connections checked between {max_workloads} of {total} workloads "
                     f"(capped; changed namespaces first)")
    endpoints = [(ref.id, EndpointFinder.of_pod(reps[ref])) for ref in chosen]
    affected = _affected(old, new, [ep for _, ep in endpoints], namespaces, enforcement)
    reach: list[ReachChange] = []
    for i, (src_id, src) in enumerate(endpoints):
        for j, (dst_id, dst) in enumerate(endpoints):
            if src_id == dst_id:
                continue
            if affected is not None and i not in affected[0] and j not in affected[1]:
                continue  # no changed policy selects src for egress or dst for ingress
            for transport, port in probes:
                was = old_engine.check(src, dst, transport, port)
                now = new_engine.check(src, dst, transport, port)
                if was.allowed != now.allowed:
                    reach.append(ReachChange(src_id, dst_id, str(transport), port, was.allowed,
                                             now.allowed, was.summary(), now.summary()))
    return SemanticDiff(
        enforcement=enforcement,
        flow_changes=tuple(flow_changes),
        reach_changes=tuple(reach),
        flows_checked=len(flows),
        workloads_total=total,
        workloads_checked=len(chosen),
        probes=tuple((str(t), p) for t, p in probes),
        notes=tuple(notes),
    )
