"""Output dialects: each reads only the policy IR (``segmenter.policy.ir``)."""

from __future__ import annotations

from segmenter.dialects.base import Dialect, Output
from segmenter.dialects.calico import Calico
from segmenter.dialects.clusternetworkpolicy import ClusterNetworkPolicy
from segmenter.dialects.kubernetes import Kubernetes

DIALECTS: dict[str, type[Dialect]] = {"kubernetes": Kubernetes, "calico": Calico,
                                      "clusternetworkpolicy": ClusterNetworkPolicy}


def get_dialect(name: str, *, best_effort: bool = False, staged: bool = False) -> Dialect:
    try:
        cls = DIALECTS[name]
    except KeyError:
        raise ValueError(f"unknown dialect {name!r} (known: {', '.join(DIALECTS)})") from None
    return cls(best_effort=best_effort, staged=staged)


__all__ = ["DIALECTS", "Calico", "ClusterNetworkPolicy", "Dialect", "Kubernetes", "Output",
           "get_dialect"]
