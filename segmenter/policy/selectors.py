"""Choosing pod selectors: the smallest set of stable labels that selects exactly one workload.

A selector is checked against every other pod of the namespace in the inventory (and the pod
templates of every other controller, so that pods created later are covered too). Labels that
change per rollout or per pod (``pod-template-hash``, ``controller-revision-hash``,
``statefulset.kubernetes.io/pod-name``, ...) and labels that change on upgrades (``version``,
``helm.sh/chart``) are never used.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations

from segmenter.k8s import UNSTABLE_LABEL_KEYS
from segmenter.model import Inventory, Labels, WorkloadRef

# Keys tried first, most conventional first (Kubernetes recommended labels, then common ones).
PREFERRED_KEYS = (
    "app.kubernetes.io/name",
    "app",
    "k8s-app",
    "name",
    "app.kubernetes.io/component",
    "component",
    "app.kubernetes.io/instance",
    "tier",
    "role",
)
MAX_SELECTOR_LABELS = 4
# Labels that name what a workload is and which instance; kept in every selector that finds
# them on all of the workload's pods (Kubernetes recommended labels, and the common short forms).
IDENTITY_KEYS = frozenset({"app.kubernetes.io/name", "app.kubernetes.io/instance", "app",
                           "k8s-app"})


@dataclass(frozen=True)
class SelectorChoice:
    labels: Labels
    note: str


class UnselectableWorkload(Exception):
    """No stable label set selects exactly this workload."""


def _key_rank(key: str) -> tuple[int, str]:
    try:
        return (PREFERRED_KEYS.index(key), key)
    except ValueError:
        return (len(PREFERRED_KEYS), key)


class SelectorChooser:
    """Chooses and caches selectors for the workloads of an inventory."""

    def __init__(self, inventory: Inventory):
        self._inventory = inventory
        # namespace -> owner -> list of label sets (pods and templates)
        self._label_sets: dict[str, dict[WorkloadRef, list[Labels]]] = defaultdict(
            lambda: defaultdict(list))
        for pod in inventory.pods:
            self._label_sets[pod.namespace][pod.owner].append(pod.labels.stable())
        self._templates: dict[WorkloadRef, Labels] = {}
        for wl in inventory.workloads:
            if wl.template_labels:
                self._templates[wl.ref] = wl.template_labels.stable()
                self._label_sets[wl.ref.namespace][wl.ref].append(wl.template_labels.stable())
        self._cache: dict[WorkloadRef, SelectorChoice] = {}
        self._indexes: dict[str, tuple[dict[tuple[str, str], set[int]],
                                       dict[WorkloadRef, set[int]]]] = {}

    def _index(self, namespace: str) -> tuple[dict[tuple[str, str], set[int]],
                                              dict[WorkloadRef, set[int]]]:
        """Inverted index of a namespace's label sets (pods and templates): a selector matches a
        label set iff that set holds every pair, i.e. the sets holding each pair intersect."""
        cached = self._indexes.get(namespace)
        if cached is None:
            holders: dict[tuple[str, str], set[int]] = defaultdict(set)
            owners: dict[WorkloadRef, set[int]] = defaultdict(set)
            index = 0
            for owner, sets in self._label_sets.get(namespace, {}).items():
                for labels in sets:
                    for pair in labels.items:
                        holders[pair].add(index)
                    owners[owner].add(index)
                    index += 1
            cached = self._indexes[namespace] = (dict(holders), dict(owners))
        return cached

    def choose(self, ref: WorkloadRef, fallback: Labels | None = None) -> SelectorChoice:
        """The selector for ``ref``.

        Raises:
            UnselectableWorkload: every candidate also selects another workload's pods.
        """
        if ref in self._cache:
            return self._cache[ref]
        own = self._label_sets.get(ref.namespace, {}).get(ref) or ([fallback] if fallback else [])
        if not own:
            raise UnselectableWorkload(f"{ref.id}: no pods or pod template labels in the inventory")
        common = set(own[0].items)
        for labels in own[1:]:
            common &= set(labels.items)
        # Labels whose value names the workload first: a selector like app=card-vault keeps
        # selecting only it when another instance of the same software (another postgresql)
        # is deployed beside it later.
        candidates = sorted((kv for kv in common if kv[0] not in UNSTABLE_LABEL_KEYS),
                            key=lambda kv: (kv[1] != ref.name, *_key_rank(kv[0])))
        holders, own_indices = self._index(ref.namespace)
        mine = own_indices.get(ref, set())
        for size in range(1, min(MAX_SELECTOR_LABELS, len(candidates)) + 1):
            for combo in combinations(candidates, size):
                shared = holders.get(combo[0], set()) - mine
                for pair in combo[1:]:
                    if not shared:
                        break
                    shared &= holders.get(pair, set())
                if not shared:
                    # Keep the identity labels too: the minimal set is unique only against
                    # today's pods; app.kubernetes.io/name=postgresql alone would also select
                    # a second PostgreSQL installed beside this one later.
                    identity = [kv for kv in candidates if kv[0] in IDENTITY_KEYS
                                and kv not in combo]
                    selector = Labels(tuple(sorted([*combo, *identity])))
                    keys = ", ".join(k for k, _ in combo)
                    skipped = sorted({k for k, _ in common if k in UNSTABLE_LABEL_KEYS})
                    note = (f"{keys}: the smallest set of stable labels shared by every pod "
                            f"(and the pod template) of {ref.kind}/{ref.name} that selects no "
                            f"other pod in {ref.namespace}")
                    if identity:
                        note += ("; plus the identity label(s) "
                                 f"{', '.join(k for k, _ in identity)}, so that another "
                                 "instance of the same software is not selected later")
                    if skipped:
                        note += f" (not used, change on upgrade: {', '.join(skipped)})"
                    choice = SelectorChoice(selector, note)
                    self._cache[ref] = choice
                    return choice
        clash = sorted(
            owner.id
            for owner, sets in self._label_sets.get(ref.namespace, {}).items()
            if owner != ref
            and any(labels.matches(Labels(tuple(sorted(candidates)))) for labels in sets)
        )
        raise UnselectableWorkload(
            f"{ref.id}: no stable label set selects only its pods "
            f"(labels {dict(candidates) or '{}'} also select {', '.join(clash) or 'other pods'}); "
            "add a distinguishing label to its pod template")
