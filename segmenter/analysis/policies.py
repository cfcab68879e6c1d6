"""The one loader of "the policies to judge", for every command and view that evaluates policies.

Policies come from YAML/JSON files and folders, from a compiled :class:`~segmenter.policy.ir.
PolicySet` (written in a target's dialect), from manifests already in memory, or from the
cluster. Every manifest is validated the same way wherever it comes from: a document the API
server or Calico would reject is left out and listed in ``rejected`` with where it came from and
why, never evaluated (it would not be in force).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from segmenter.evaluate import describe_manifest, is_warning, iter_manifests, validate_manifest
from segmenter.policy.ir import PolicySet
from segmenter.targets import Target, all_kinds

PolicySource = str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | PolicySet | \
    Iterable[Mapping[str, Any]] | None


@dataclass(frozen=True)
class PolicyDocs:
    """Valid policy manifests and where they came from.

    ``rejected``: one line per document left out, ``where: problem; problem``. ``notes``: what
    the reading noticed (API groups a cluster does not serve). ``target``: the target the set
    was written for, when the source says (a PolicySet emitted for it). ``served_groups``: for
    the policies in force, the targets' API groups the cluster serves (``None`` for files).
    """

    manifests: tuple[dict[str, Any], ...]
    label: str
    rejected: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    target: Target | None = None
    served_groups: tuple[str, ...] | None = None


def _checked(items: Iterable[tuple[str, Mapping[str, Any]]]
             ) -> tuple[tuple[dict[str, Any], ...], tuple[str, ...]]:
    kept: list[dict[str, Any]] = []
    rejected: list[str] = []
    for where, doc in items:
        problems = [p for p in validate_manifest(doc) if not is_warning(p)]
        if problems:
            rejected.append(f"{where}: {'; '.join(problems)}")
        else:
            kept.append(dict(doc))
    return tuple(kept), tuple(rejected)


def from_paths(paths: Sequence[str | os.PathLike[str]]) -> PolicyDocs:
    """Manifests of YAML/JSON files and folders (see :func:`segmenter.evaluate.iter_manifests`).

    Raises:
        InputError: a path that does not exist, unreadable text, bad YAML/JSON.
    """
    names = [os.fspath(p) for p in paths]
    manifests, rejected = _checked(
        (f"{path} (document {number})", doc)
        for path, number, doc in iter_manifests(names))
    return PolicyDocs(manifests, ", ".join(names), rejected)


def from_policy_set(policy_set: PolicySet, target: Target) -> PolicyDocs:
    """A compiled policy set as ``target``'s dialect writes it."""
    output = target.dialect().emit(policy_set)
    docs = [m for _, manifests in sorted(output.files.items()) for m in manifests]
    manifests, rejected = _checked((describe_manifest(d), d) for d in docs)
    return PolicyDocs(manifests, f"compiled {target.name} policies", rejected, target=target)


def from_manifests(docs: Iterable[Mapping[str, Any]], label: str = "manifests") -> PolicyDocs:
    """Manifests already parsed."""
    manifests, rejected = _checked((describe_manifest(d), d) for d in docs)
    return PolicyDocs(manifests, label, rejected)


def from_cluster(*, context: str | None = None, kubeconfig: str | None = None,
                 target: Target | None = None) -> PolicyDocs:
    """The policy objects in force in the cluster, of every target's kinds. With ``target``
    (the enforcement they will be judged under), the cluster must serve that target's API
    groups: Calico enforcement asked of a cluster without ``projectcalico.org/v3`` is an error.

    Raises:
        InventoryError: unreachable cluster, a server that is not a Kubernetes API server, bad
            kubeconfig, 401, 403, a malformed response, ``target``'s API groups not served.
    """
    from segmenter.cluster.policies import read_live_policies

    required = ({kind.group: f"{target.name} enforcement" for kind in target.kinds}
                if target is not None else {})
    live = read_live_policies(all_kinds(), context=context, kubeconfig=kubeconfig,
                              required_groups=required)
    manifests, rejected = _checked((describe_manifest(d), d) for d in live.manifests)
    label = f"cluster {live.host}" + (f" (context {context})" if context else "")
    return PolicyDocs(manifests, label, rejected, live.notes,
                      served_groups=tuple(live.served_groups))


def load_policies(source: PolicySource, target: Target | None = None) -> PolicyDocs:
    """Policies from whatever a caller has: a path or paths, a PolicySet (written as ``target``,
    by default the first registered target), parsed manifests, or ``None`` (no policies)."""
    if source is None:
        return PolicyDocs((), "no policies")
    if isinstance(source, str | os.PathLike):
        return from_paths([source])
    if isinstance(source, PolicySet):
        from segmenter.targets import TARGETS

        return from_policy_set(source, target or next(iter(TARGETS.values())))
    items = list(source)
    if items and all(isinstance(i, str | os.PathLike) for i in items):
        return from_paths(items)  # type: ignore[arg-type]
    return from_manifests(items)  # type: ignore[arg-type]
