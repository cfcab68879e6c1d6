"""The report's section on the cluster as it is: the policy engine (CNI) found and whether it
enforces the policies judged (and Calico's tiers), and who may change the policies.

The engine is recognised from its agent's workload (:mod:`segmenter.cluster.cni`): with
``report --cluster``, among the workloads the cluster runs now, and the API groups it serves are
recorded too; else in the inventory. The
policies judged are enforced when a recognised engine implements every API group of their
documents. Engines recognised, none of which implements them: ``not-enforced`` (high: the
policies would not hold). No engine recognised (or no inventory to recognise it from):
``enforcement-unverified`` (medium: nothing shows that they hold; an engine segmenter does not
know may well enforce them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from segmenter.analysis.findings import Finding, FindingKind
from segmenter.analysis.rbac import (
    CLUSTER_WIDE,
    escalation_subjects,
    policy_resources,
    policy_writers,
)
from segmenter.cluster.cni import CALICO_GROUP, EngineFinding, recognise_engines
from segmenter.cluster.rbac import RBAC_READ_HINT, RbacObjects
from segmenter.k8s import api_group
from segmenter.model import NodeId
from segmenter.planner import Zone
from segmenter.views.report.document import Block, Bullets, Heading, Para, Table
from segmenter.views.report.sections import ReportContext


@dataclass(frozen=True)
class ClusterFacts:
    """What ``report --cluster`` read besides the policies: the server, the API groups it
    serves, its RBAC objects, and the policy engines among the workloads it runs (None: not
    read)."""

    host: str
    served_groups: tuple[str, ...] = ()
    rbac: RbacObjects | None = None
    engines: tuple[EngineFinding, ...] | None = None


def restricted_namespaces(ctx: ReportContext) -> list[str]:
    found = set()
    for scope in ctx.plan.classes:
        for member in scope.members(Zone.RESTRICTED):
            ref = NodeId.parse(member.node).workload
            if ref is not None:
                found.add(ref.namespace)
    return sorted(found)


def cluster_section(ctx: ReportContext, blocks: list[Block], findings: list[Finding],
                    cluster: ClusterFacts | None) -> None:
    blocks.append(Heading(2, "The cluster as it is", "cluster"))
    _engine(ctx, blocks, findings, cluster)
    _rbac(ctx, blocks, cluster)


def _engine(ctx: ReportContext, blocks: list[Block], findings: list[Finding],
            cluster: ClusterFacts | None) -> None:
    blocks.append(Heading(3, "Policy engine", "cluster-cni"))
    needed = sorted({api_group(doc) for doc in ctx.manifests if api_group(doc)})
    live = cluster is not None and cluster.engines is not None
    if cluster is not None and cluster.engines is not None:
        engines = cluster.engines
        where = f"among the workloads the cluster at `{cluster.host}` runs now"
    else:
        engines = recognise_engines(ctx.inventory) if ctx.inventory is not None else ()
        where = "in the inventory"
    blocks.append(Para(
        f"The policies judged here are of the API group(s) {', '.join(needed) or 'none'}: "
        "they hold only where the cluster's policy engine (its CNI, or an agent beside it) "
        "implements them. A CNI that accepts NetworkPolicy objects without enforcing them "
        "(flannel alone, for instance) is not a control. Recognised by the engine's agent (its "
        f"labels or image) {where}."))
    if cluster is not None:
        blocks.append(Para(f"API groups served by the cluster at `{cluster.host}`: "
                           + (", ".join(f"`{g}`" for g in cluster.served_groups) or "none")
                           + "."))
    if engines:
        rows = []
        enforcing = []
        for engine in engines:
            covers = set(needed) <= engine.api_groups
            if covers:
                enforcing.append(engine)
            rows.append((engine.engine, engine.evidence, ", ".join(sorted(engine.api_groups)),
                         "yes" if covers else "no"))
        blocks.append(Table(("Engine", "Evidence", "Enforces", "Enforces these policies"),
                            tuple(rows), tuple("ok" if r[3] == "yes" else "fail" for r in rows)))
        if not enforcing:
            findings.append(Finding.of(
                FindingKind.NOT_ENFORCED, "policy engine",
                f"the cluster runs {', '.join(e.engine for e in engines)}, none of which "
                f"enforces {', '.join(needed)}: these policies would not hold"))
            blocks.append(Para("No engine found enforces these policies.", "fail"))
        elif CALICO_GROUP in needed or any(CALICO_GROUP in e.api_groups for e in enforcing):
            tiers = sorted(str((d.get("metadata") or {}).get("name")) for d in ctx.manifests
                           if d.get("kind") == "Tier" and api_group(d) == CALICO_GROUP)
            blocks.append(Para(
                "Calico evaluates its tiers in order before the Kubernetes NetworkPolicies "
                "(which sit in its `default` tier)" + (f"; tiers among these policies: "
                f"{', '.join(f'`{t}`' for t in tiers)}" if tiers else "") + "."))
        return
    known = "no policy engine segmenter recognises (Calico, Cilium, kube-network-policies)"
    why = (f"the cluster runs {known}" if live else "no inventory was given"
           if ctx.inventory is None else f"the inventory shows {known}")
    findings.append(Finding.of(
        FindingKind.ENFORCEMENT_UNVERIFIED, "policy engine",
        f"nothing shows that these policies are enforced: {why}; record the CNI and that it "
        "enforces NetworkPolicy"))
    blocks.append(Para(f"Not verified: {why}.", "warn"))


def _rbac(ctx: ReportContext, blocks: list[Block], cluster: ClusterFacts | None) -> None:
    blocks.append(Heading(3, "Who may change the policies", "cluster-rbac"))
    namespaces = restricted_namespaces(ctx)
    resources = ", ".join(f"`{r.name}`" for r in policy_resources())
    blocks.append(Para(
        "The subjects whose RBAC lets them create, update, patch or delete policy objects "
        f"({resources}) in the restricted namespaces "
        f"({', '.join(f'`{n}`' for n in namespaces) or 'none'}) or cluster-wide, through "
        "RoleBindings there and ClusterRoleBindings (aggregated ClusterRoles and wildcards "
        "included; PCI DSS 1.2.2, 7.2). Read-only access is enough to read them "
        f"({RBAC_READ_HINT})."))
    if cluster is None or cluster.rbac is None:
        blocks.append(Para("Not read: give `--cluster` (with read access to the RBAC objects, "
                           f"{RBAC_READ_HINT}) to list them.", "info"))
        return
    grants = policy_writers(cluster.rbac, namespaces)
    if grants:
        blocks.append(Table(("Subject", "Where", "Verbs", "Resources", "Through",
                             "Only objects named"), tuple(
            (g.subject, g.scope, ", ".join(g.verbs), ", ".join(g.resources),
             f"{g.binding} → {g.role}", ", ".join(g.names) or "-") for g in grants),
            tuple("warn" if g.scope == CLUSTER_WIDE else "" for g in grants)))
    else:
        blocks.append(Para("No subject's RBAC lets it change the policies there.", "ok"))
    escalate = escalation_subjects(cluster.rbac, namespaces)
    notes: list[str] = []
    if escalate:
        notes.append("Subjects that may grant themselves these rights (bind or escalate "
                     "roles, create role bindings, impersonate): " + ", ".join(
                         f"`{s}`" for s in escalate) + ".")
    notes.append("Not seen through RBAC: the `system:masters` group (the API server lets it do "
                 "anything), other authorizers (webhook, ABAC), and access to etcd or to the "
                 "nodes.")
    blocks.append(Bullets(tuple(notes)))


def served_policy_groups(groups: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """The policy API groups among those a cluster serves (``group/version``), sorted."""
    wanted = {r.group for r in policy_resources()}
    return tuple(sorted({f"{g}/{v}" for g, v in groups if g in wanted}))


__all__ = ["ClusterFacts", "cluster_section", "restricted_namespaces", "served_policy_groups"]
