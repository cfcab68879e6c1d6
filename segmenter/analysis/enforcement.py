"""Which enforcement judges a set of policies.

A set of policies means something only under the dataplane that enforces it: Calico v3 objects
are Calico's, Cilium objects Cilium's, ClusterNetworkPolicies those of a cluster serving
``policy.networking.k8s.io`` (every target in :mod:`segmenter.targets`). Kubernetes
NetworkPolicies alone are every target's, and each enforces them a little differently
(policy-semantics.md §1.5 case 17: whether an ipBlock matches pod IPs; §4.5: Cilium's node and
API server identities), so their enforcement is named by the user or detected from the cluster
that holds them; it is never assumed.

Every gate resolves it the same way (:func:`resolve_enforcement`), and refuses, with one line
saying why, a set that cannot be judged: empty, without a policy, holding objects of two
targets (no cluster enforces both), holding objects that the chosen enforcement does not
evaluate, or at odds with the enforcement the user named.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from segmenter.analysis.policies import PolicyDocs
from segmenter.errors import InputError
from segmenter.evaluate import PolicyEngine, describe_manifest
from segmenter.targets import TARGETS, Target, get_target, kind_of, target_of, target_of_group

ENFORCEMENT_OPTION: Final = "--enforcement"
_SHOWN: Final = 3  # objects named in a message


@dataclass(frozen=True)
class Enforcement:
    """The target whose enforcement judges a set of policies, and why (one phrase)."""

    target: Target
    why: str

    @property
    def name(self) -> str:
        return self.target.name


def _common() -> Target:
    """The first registered target: Kubernetes NetworkPolicy, which every target enforces."""
    return next(iter(TARGETS.values()))


def owner_of(doc: Mapping[str, Any]) -> Target | None:
    """The target a document belongs to: by its registered kind, else by its API group
    (``crd.projectcalico.org`` is Calico's storage; an AdminNetworkPolicy is in the
    ClusterNetworkPolicy group); None for documents of no target (a Namespace, a Deployment)."""
    return target_of(doc) or target_of_group(doc)


def is_policy(doc: Mapping[str, Any]) -> bool:
    """Whether a document is a policy in force: a registered or target-owned kind named
    ``...Policy``; staged Calico policies are recorded but never enforced."""
    kind = kind_of(doc)
    if kind is not None:
        return kind.kind.endswith("Policy") and not kind.staged
    return owner_of(doc) is not None and str(doc.get("kind") or "").endswith("Policy") and \
        not str(doc.get("kind")).startswith("Staged")


def _sample(docs: Sequence[Mapping[str, Any]]) -> str:
    names = [describe_manifest(d) for d in docs[:_SHOWN]]
    more = f" and {len(docs) - _SHOWN} more" if len(docs) > _SHOWN else ""
    return ", ".join(names) + more


def check_judgeable(docs: PolicyDocs) -> None:
    """Refuse a set that is empty or holds no policy in force.

    Raises:
        InputError: no document; every document invalid; only non-policy objects (tiers,
            network sets) or only staged policies.
    """
    if not docs.manifests and not docs.rejected:
        raise InputError("holds no policy document: an empty set would pass every check; "
                         "give the policies to judge", path=docs.label)
    if not docs.manifests:
        raise InputError(f"holds no valid policy: all {len(docs.rejected)} document(s) are "
                         "rejected as the API server would reject them", path=docs.label)
    if not any(is_policy(d) for d in docs.manifests):
        kinds = Counter(str(d.get("kind") or "?") for d in docs.manifests)
        shown = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        raise InputError(f"holds no policy in force (only {shown}): nothing to judge",
                         path=docs.label)


def written_for(docs: PolicyDocs) -> Target | None:
    """The one target other than the common one whose objects the set holds, or None for a
    set of Kubernetes NetworkPolicies alone.

    Raises:
        InputError: objects of two such targets (ambiguous: no cluster enforces both).
    """
    if docs.target is not None:
        return None if docs.target is _common() else docs.target
    common = _common()
    owned: dict[str, list[Mapping[str, Any]]] = {}
    for doc in docs.manifests:
        target = owner_of(doc)
        if target is not None and target is not common:
            owned.setdefault(target.name, []).append(doc)
    if len(owned) > 1:
        parts = [f"{name} ({len(found)}: {_sample(found)})"
                 for name, found in sorted(owned.items())]
        raise InputError(f"holds objects of {len(owned)} targets, {' and '.join(parts)}: "
                         "ambiguous, no cluster enforces both; judge one target's policies "
                         "at a time", path=docs.label)
    return TARGETS[next(iter(owned))] if owned else None


def from_cluster_groups(served: Iterable[str], where: str) -> Enforcement:
    """The enforcement of a cluster from the targets' API groups it serves: the one target
    (other than the common one) it serves, else the common one.

    Raises:
        InputError: it serves the groups of several targets (their CRDs installed side by
            side): the enforcement must be named.
    """
    common = _common()
    groups = set(served)
    found = [t for t in TARGETS.values()
             if t is not common and groups & {k.group for k in t.kinds}]
    if len(found) > 1:
        raise InputError(
            f"the cluster at {where} serves the policy APIs of {len(found)} targets "
            f"({', '.join(t.name for t in found)}): name the one that enforces its policies "
            f"with {ENFORCEMENT_OPTION}")
    if found:
        return Enforcement(found[0], f"detected from the cluster: it serves "
                                     f"{', '.join(sorted(groups & set(found[0].api_groups)))}")
    others = sorted({k.group for t in TARGETS.values() if t is not common for k in t.kinds})
    return Enforcement(common, "detected from the cluster: it serves none of "
                               f"{', '.join(others)}")


def _check_enforced(sets: Sequence[PolicyDocs], target: Target) -> None:
    """Refuse objects the chosen enforcement would not evaluate (mixed in a way no cluster
    enforces): an apiVersion no longer served, a kind of a target's group that no evaluator
    reads, another target's objects."""
    for docs in sets:
        engine = PolicyEngine.from_manifests(docs.manifests, namespaces={},
                                             enforcement=target.name)
        if engine.ignored:
            more = f" (and {len(engine.ignored) - 1} more)" if len(engine.ignored) > 1 else ""
            raise InputError(f"{engine.ignored[0]}{more}: no cluster enforces this set as "
                             "written", path=docs.label)


def resolve_enforcement(sets: PolicyDocs | Sequence[PolicyDocs], named: str | None = None,
                        *, option: str = ENFORCEMENT_OPTION,
                        allow_empty_sides: bool = False) -> Enforcement:
    """The enforcement that judges ``sets`` (one set, or the sides of a diff).

    In order: the target the documents are written for (Calico, Cilium, ClusterNetworkPolicy
    objects); for Kubernetes NetworkPolicies alone, ``named`` (the user's ``--enforcement``),
    else what the cluster serves when the set was read from one. ``named`` that disagrees with
    the documents is an error naming both. ``allow_empty_sides``: for a diff, one side may be
    empty (no policies yet), not every side.

    Raises:
        InputError: with one line: an empty set or a set without a policy, objects of two
            targets, a conflict with ``named``, objects the enforcement does not evaluate, or
            Kubernetes NetworkPolicies with no enforcement named or detectable.
    """
    items = [sets] if isinstance(sets, PolicyDocs) else list(sets)
    if allow_empty_sides:
        check_some_side(items)
        filled = [d for d in items if d.manifests or d.rejected]
        for docs in filled:
            if docs.manifests:
                written_for(docs)  # ambiguity within one side is refused as such
        judged = [d for d in filled if d.manifests]
        if not judged:
            check_judgeable(filled[0])
    else:
        for docs in items:
            check_judgeable(docs)
        judged = items
    found: dict[str, tuple[Target, PolicyDocs]] = {}
    for docs in judged:
        target = written_for(docs)
        if target is not None:
            found.setdefault(target.name, (target, docs))
    if len(found) > 1:
        parts = [f"{docs.label} holds {name} objects" for name, (_, docs) in
                 sorted(found.items())]
        raise InputError(f"{'; '.join(parts)}: no cluster enforces both; compare or judge "
                         "one target's policies at a time")
    chosen: Enforcement
    if found:
        target, docs = next(iter(found.values()))
        if named is not None and get_target(named) is not target:
            owned = [d for d in docs.manifests if owner_of(d) is target]
            raise InputError(
                f"{option} {named} conflicts with the documents: {docs.label} holds "
                f"{target.name} objects ({_sample(owned)}), which {named} enforcement does not "
                f"evaluate; use {option} {target.name} or leave it out")
        chosen = Enforcement(target, f"the documents are {target.title} objects")
    elif named is not None:
        chosen = Enforcement(get_target(named), f"named with {option}")
    else:
        clusters = [d for d in judged if d.served_groups is not None]
        if clusters:
            chosen = from_cluster_groups(clusters[0].served_groups or (), clusters[0].label)
        else:
            labels = ", ".join(d.label for d in judged)
            raise InputError(
                f"holds only Kubernetes NetworkPolicies, which every target's dataplane enforces "
                f"in its own way: name the enforcement with {option} "
                f"({', '.join(TARGETS)}), or judge the policies in force with --cluster",
                path=labels)
    _check_enforced(judged, chosen.target)
    return chosen


def check_some_side(sides: Sequence[PolicyDocs]) -> None:
    """Refuse a comparison where every side is empty.

    Raises:
        InputError: naming the sides.
    """
    if not any(d.manifests or d.rejected for d in sides):
        raise InputError("every side is empty: no policy document to compare",
                         path=", ".join(d.label for d in sides))


def target_of_each(sets: Sequence[PolicyDocs]) -> list[tuple[str, str]]:
    """(label, target name) of each set: its written-for target, ``kubernetes``-style common
    target for NetworkPolicies alone. Raises as :func:`written_for` does."""
    return [(docs.label, (written_for(docs) or _common()).name) for docs in sets]


def check_one_target(sets: Sequence[PolicyDocs], what: str) -> None:
    """Refuse sets written for different targets given together (the folders ``run`` writes
    are alternatives, never deployed together).

    Raises:
        InputError: naming each set and its target.
    """
    for docs in sets:
        check_judgeable(docs)
    each = target_of_each(sets)
    if len({name for _, name in each}) > 1:
        parts = ", ".join(f"{label} is {name}" for label, name in each)
        raise InputError(f"{what} evaluates one target's policies at a time: {parts}; give "
                         "one target's folder (run it once per target)")


__all__ = [
    "ENFORCEMENT_OPTION",
    "Enforcement",
    "check_judgeable",
    "check_one_target",
    "check_some_side",
    "from_cluster_groups",
    "is_policy",
    "owner_of",
    "resolve_enforcement",
    "target_of_each",
    "written_for",
]
