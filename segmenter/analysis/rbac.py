"""Who may change the policies: the subjects whose RBAC lets them create, update, patch or
delete the policy objects of any target (``segmenter.targets``: Kubernetes NetworkPolicies,
Calico policies, network sets and tiers, Cilium policies, ClusterNetworkPolicies; the Calico
kinds also under the ``crd.projectcalico.org`` group that stores them) in the restricted
namespaces, or cluster-wide.

RBAC as the API server applies it (Kubernetes "Using RBAC Authorization"): a RoleBinding grants
its Role's, or a ClusterRole's, rules in the binding's namespace only, so it can grant
namespaced resources only; a ClusterRoleBinding grants a ClusterRole's rules in every namespace
and on cluster-scoped resources. A rule matches a resource when its ``apiGroups`` holds the
group or ``*`` and its ``resources`` the plural or ``*`` (a subresource such as
``networkpolicies/status`` is another resource); ``verbs`` ``*`` is every verb; ``resourceNames``
limits the rule to those objects (``create`` cannot be limited so: Kubernetes ignores names for
it). An aggregated ClusterRole (``aggregationRule``) holds the rules of every ClusterRole its
selectors match, as the controller fills them in; they are recomputed here, to a fixed point, so
that a recorded object whose ``rules`` the controller has not filled yet is not read as empty.

Not seen by RBAC alone: other authorizers (a webhook, ABAC), the ``system:masters`` group (which
the API server lets do anything whatever RBAC says), and the subjects that may ``bind`` or
``escalate`` roles or impersonate others, who could grant themselves these rights; the report
says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from segmenter.cluster.rbac import RbacObjects
from segmenter.evaluate.selector import SelectorError, from_label_selector
from segmenter.targets import TARGETS

WRITE_VERBS: Final = ("create", "update", "patch", "delete", "deletecollection")
CLUSTER_WIDE: Final = "cluster-wide"


@dataclass(frozen=True)
class PolicyResource:
    """A resource whose objects are policy: ``plural.group``, and whether it is namespaced."""

    group: str
    plural: str
    namespaced: bool

    @property
    def name(self) -> str:
        return f"{self.plural}.{self.group}"


def policy_resources() -> tuple[PolicyResource, ...]:
    """Every target's kinds in force (staged kinds only audit), in their group and in the
    target's other groups (Calico's ``crd.projectcalico.org`` storage)."""
    found: dict[str, PolicyResource] = {}
    for target in TARGETS.values():
        for kind in target.kinds:
            if kind.staged:
                continue
            for group in (kind.group, *target.other_groups):
                resource = PolicyResource(group, kind.plural, kind.namespaced)
                found.setdefault(resource.name, resource)
    return tuple(sorted(found.values(), key=lambda r: r.name))


@dataclass(frozen=True, order=True)
class Grant:
    """A subject's right to change policy objects, where, and through which binding and role."""

    subject: str  # "User alice", "Group ops", "ServiceAccount ns/name"
    scope: str  # a namespace, or CLUSTER_WIDE
    verbs: tuple[str, ...]
    resources: tuple[str, ...]
    binding: str  # "RoleBinding ns/name", "ClusterRoleBinding name"
    role: str  # "Role ns/name", "ClusterRole name"
    names: tuple[str, ...] = ()  # resourceNames: only these objects


def _list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def aggregated_rules(cluster_roles: Iterable[Mapping[str, Any]]
                     ) -> dict[str, list[Mapping[str, Any]]]:
    """Each ClusterRole's rules, with those of the ClusterRoles its ``aggregationRule`` selects
    added (to a fixed point: an aggregated role may be selected by another)."""
    roles = {str(_meta(r).get("name")): r for r in cluster_roles}
    rules: dict[str, list[Mapping[str, Any]]] = {
        name: [x for x in (r.get("rules") or []) if isinstance(x, Mapping)]
        for name, r in roles.items()}
    selects: dict[str, list[str]] = {}
    for name, role in roles.items():
        aggregation = role.get("aggregationRule")
        if not isinstance(aggregation, Mapping):
            continue
        chosen = []
        for selector in aggregation.get("clusterRoleSelectors") or []:
            try:
                node = from_label_selector(selector)
            except SelectorError:
                continue  # the API server rejects it: it selects nothing
            chosen += [other for other, r in roles.items() if other != name and node.match(
                {str(k): str(v) for k, v in (_meta(r).get("labels") or {}).items()})]
        selects[name] = sorted(set(chosen))
    changed = True
    while changed:
        changed = False
        for name, others in selects.items():
            for other in others:
                for rule in rules[other]:
                    if rule not in rules[name]:
                        rules[name].append(rule)
                        changed = True
    return rules


def _matches(rule: Mapping[str, Any], resource: PolicyResource) -> tuple[str, ...]:
    """The write verbs ``rule`` grants on ``resource`` (none: it does not match)."""
    groups, resources, verbs = (_list(rule.get(k)) for k in ("apiGroups", "resources", "verbs"))
    if not ("*" in groups or resource.group in groups):
        return ()
    if not ("*" in resources or resource.plural in resources):
        return ()
    if "*" in verbs:
        return WRITE_VERBS
    return tuple(v for v in WRITE_VERBS if v in verbs)


def _subjects(binding: Mapping[str, Any]) -> list[str]:
    out = []
    for subject in binding.get("subjects") or []:
        if not isinstance(subject, Mapping):
            continue
        kind, name = str(subject.get("kind") or ""), str(subject.get("name") or "")
        if kind == "ServiceAccount":
            namespace = subject.get("namespace") or _meta(binding).get("namespace") or ""
            out.append(f"ServiceAccount {namespace}/{name}")
        else:
            out.append(f"{kind} {name}")
    return out


def policy_writers(rbac: RbacObjects, namespaces: Sequence[str]) -> list[Grant]:
    """Every subject that may change a policy object in ``namespaces`` (the restricted ones)
    or cluster-wide, sorted."""
    resources = policy_resources()
    cluster_rules = aggregated_rules(rbac.cluster_roles)
    roles = {(str(_meta(r).get("namespace")), str(_meta(r).get("name"))):
             [x for x in (r.get("rules") or []) if isinstance(x, Mapping)] for r in rbac.roles}
    wanted = set(namespaces)
    grants: set[Grant] = set()

    def grant(binding: Mapping[str, Any], what: str, scope: str, namespaced_only: bool) -> None:
        ref = binding.get("roleRef")
        if not isinstance(ref, Mapping):
            return
        kind, name = str(ref.get("kind") or ""), str(ref.get("name") or "")
        namespace = str(_meta(binding).get("namespace") or "")
        if kind == "ClusterRole":
            rules, role = cluster_rules.get(name, []), f"ClusterRole {name}"
        elif kind == "Role":
            rules, role = roles.get((namespace, name), []), f"Role {namespace}/{name}"
        else:
            return
        by_names: dict[tuple[str, ...], tuple[set[str], set[str]]] = {}
        for rule in rules:
            names = tuple(sorted(_list(rule.get("resourceNames"))))
            for resource in resources:
                if namespaced_only and not resource.namespaced:
                    continue  # a RoleBinding never grants cluster-scoped resources
                verbs = _matches(rule, resource)
                if names:
                    verbs = tuple(v for v in verbs if v != "create")  # names never limit create
                if verbs:
                    kept = by_names.setdefault(names, (set(), set()))
                    kept[0].update(verbs)
                    kept[1].add(resource.name)
        for names, (verb_set, resource_set) in by_names.items():
            for subject in _subjects(binding):
                grants.add(Grant(subject, scope, tuple(v for v in WRITE_VERBS if v in verb_set),
                                 tuple(sorted(resource_set)), what, role, names))

    for binding in rbac.role_bindings:
        namespace = str(_meta(binding).get("namespace") or "")
        if namespace in wanted:
            grant(binding, f"RoleBinding {namespace}/{_meta(binding).get('name')}", namespace,
                  True)
    for binding in rbac.cluster_role_bindings:
        grant(binding, f"ClusterRoleBinding {_meta(binding).get('name')}", CLUSTER_WIDE, False)
    return sorted(grants, key=lambda g: (g.scope != CLUSTER_WIDE, g.scope, g.subject, g.binding,
                                         g.names))


def escalation_subjects(rbac: RbacObjects, namespaces: Sequence[str]) -> list[str]:
    """Subjects that may grant themselves rights (``bind``/``escalate`` on roles, ``create``
    on role bindings, ``impersonate``) there or cluster-wide: named in the report as such."""
    rules = aggregated_rules(rbac.cluster_roles)
    local = {(str(_meta(r).get("namespace")), str(_meta(r).get("name"))):
             [x for x in (r.get("rules") or []) if isinstance(x, Mapping)] for r in rbac.roles}
    out: set[str] = set()

    def risky(rule: Mapping[str, Any]) -> bool:
        verbs, resources = set(_list(rule.get("verbs"))), set(_list(rule.get("resources")))
        groups = set(_list(rule.get("apiGroups")))
        if "impersonate" in verbs or ("*" in verbs and "*" in resources):
            return True
        if not ("*" in groups or "rbac.authorization.k8s.io" in groups):
            return False
        grants_roles = bool(verbs & {"bind", "escalate", "*"}) and bool(
            resources & {"roles", "clusterroles", "*"})
        writes_bindings = bool(verbs & {"create", "update", "patch", "*"}) and bool(
            resources & {"rolebindings", "clusterrolebindings", "*"})
        return grants_roles or writes_bindings

    for binding, namespaced in [*((b, True) for b in rbac.role_bindings),
                                *((b, False) for b in rbac.cluster_role_bindings)]:
        namespace = str(_meta(binding).get("namespace") or "")
        if namespaced and namespace not in namespaces:
            continue
        raw_ref = binding.get("roleRef")
        ref: Mapping[str, Any] = raw_ref if isinstance(raw_ref, Mapping) else {}
        name = str(ref.get("name") or "")
        found = rules.get(name, []) if ref.get("kind") == "ClusterRole" else local.get(
            (namespace, name), [])
        if any(risky(rule) for rule in found):
            out.update(_subjects(binding))
    return sorted(out)


__all__ = ["CLUSTER_WIDE", "WRITE_VERBS", "Grant", "PolicyResource", "aggregated_rules",
           "escalation_subjects", "policy_resources", "policy_writers"]
