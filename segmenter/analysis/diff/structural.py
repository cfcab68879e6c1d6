"""Structural diff: which objects two policy sets add, remove and change (matched by
:class:`~segmenter.analysis.diff.normalize.ObjectKey`, compared after normalisation), with a
unified diff of the normalised YAML of each changed object."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from segmenter.analysis.diff.normalize import ObjectKey, normalize
from segmenter.render import sorted_yaml


@dataclass(frozen=True)
class Added:
    """An object only in NEW (``manifest`` normalised)."""

    key: ObjectKey
    manifest: dict[str, Any] = field(compare=False, hash=False, repr=False)

    @property
    def id(self) -> str:
        return str(self.key)


@dataclass(frozen=True)
class Removed:
    """An object only in OLD (``manifest`` normalised)."""

    key: ObjectKey
    manifest: dict[str, Any] = field(compare=False, hash=False, repr=False)

    @property
    def id(self) -> str:
        return str(self.key)


@dataclass(frozen=True)
class Changed:
    """An object on both sides that differs after normalisation; ``unified`` is the YAML diff."""

    key: ObjectKey
    old: dict[str, Any] = field(compare=False, hash=False, repr=False)
    new: dict[str, Any] = field(compare=False, hash=False, repr=False)
    unified: str = ""

    @property
    def id(self) -> str:
        return str(self.key)


@dataclass(frozen=True)
class StructuralDiff:
    added: tuple[Added, ...] = ()
    removed: tuple[Removed, ...] = ()
    changed: tuple[Changed, ...] = ()
    unchanged: tuple[ObjectKey, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def touched_namespaces(self) -> set[str]:
        """Namespaces of added, removed and changed objects ("" for cluster-scoped ones)."""
        keys = [c.key for c in self.added] + [c.key for c in self.removed]
        return {k.namespace for k in (*keys, *(c.key for c in self.changed))}


def unified_yaml_diff(old: Mapping[str, Any], new: Mapping[str, Any], label: str) -> str:
    """A unified diff of two manifests' YAML (keys sorted), ``a/label`` to ``b/label``."""
    lines = difflib.unified_diff(sorted_yaml([old]).splitlines(),
                                 sorted_yaml([new]).splitlines(),
                                 fromfile=f"a/{label}", tofile=f"b/{label}", lineterm="")
    return "".join(f"{line}\n" for line in lines)


def _index(docs: Iterable[Mapping[str, Any]], side: str, notes: list[str]
           ) -> dict[ObjectKey, dict[str, Any]]:
    out: dict[ObjectKey, dict[str, Any]] = {}
    for doc in docs:
        norm = normalize(doc)
        key = ObjectKey.of(norm)
        if not key.kind or not key.name:
            notes.append(f"{side}: skipped an object without kind or metadata.name")
            continue
        if key in out:
            notes.append(f"{side}: {key} appears more than once; the last one counts")
        out[key] = norm
    return out


def diff_policies(old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]
                  ) -> StructuralDiff:
    """Objects added, removed and changed from ``old`` to ``new``, in key order.

    >>> a = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
    ...      "metadata": {"name": "deny", "namespace": "shop"}, "spec": {"podSelector": {}}}
    >>> b = {**a, "metadata": {**a["metadata"], "uid": "1", "resourceVersion": "9"}}
    >>> diff_policies([a], [b]).has_changes
    False
    """
    notes: list[str] = []
    before = _index(old, "OLD", notes)
    after = _index(new, "NEW", notes)
    added = tuple(Added(k, after[k]) for k in sorted(after.keys() - before.keys()))
    removed = tuple(Removed(k, before[k]) for k in sorted(before.keys() - after.keys()))
    changed: list[Changed] = []
    unchanged: list[ObjectKey] = []
    for key in sorted(before.keys() & after.keys()):
        if before[key] == after[key]:
            unchanged.append(key)
        else:
            changed.append(Changed(key, before[key], after[key],
                                   unified_yaml_diff(before[key], after[key], str(key))))
    return StructuralDiff(added, removed, tuple(changed), tuple(unchanged), tuple(notes))


def overlay(base: Sequence[Mapping[str, Any]], top: Sequence[Mapping[str, Any]]
            ) -> list[dict[str, Any]]:
    """``base`` with every object of ``top`` applied over it (replaced or added), as
    ``kubectl apply`` of ``top`` would leave a cluster holding ``base``; nothing is deleted."""
    merged: dict[ObjectKey, dict[str, Any]] = {}
    for doc in base:
        merged[ObjectKey.of(normalize(doc))] = dict(doc)
    for doc in top:
        merged[ObjectKey.of(normalize(doc))] = dict(doc)
    return [merged[k] for k in sorted(merged)]
