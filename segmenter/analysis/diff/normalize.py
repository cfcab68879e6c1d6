"""Policy objects as they compare: identity (API group, kind, namespace, name) and
normalisation, which removes what the API server adds (uid, resourceVersion, generation,
creationTimestamp, managedFields, the last-applied annotation, status) and fills in what it
defaults (``protocol: TCP``, ``policyTypes``, Calico ``types`` and ``tier``...: each target's
``fill_defaults``), so that a live object and the file it was applied from compare equal."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from segmenter.k8s import api_group
from segmenter.targets import kind_of, target_of_group

SERVER_METADATA: Final = (
    "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink",
    "deletionTimestamp", "deletionGracePeriodSeconds",
)
SERVER_ANNOTATIONS: Final = ("kubectl.kubernetes.io/last-applied-configuration",)
CLUSTER_SCOPED_KINDS: Final = frozenset(
    {"GlobalNetworkPolicy", "GlobalNetworkSet", "Tier", "StagedGlobalNetworkPolicy",
     "Namespace", "Node", "HostEndpoint", "Profile", "ClusterNetworkPolicy",
     "AdminNetworkPolicy", "BaselineAdminNetworkPolicy", "CustomResourceDefinition",
     "ClusterRole", "ClusterRoleBinding"}
)


@dataclass(frozen=True, order=True)
class ObjectKey:
    """What identifies an object: API group (not version), kind, namespace ("" if none), name."""

    group: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> ObjectKey:
        """The key of a manifest as :func:`normalize` leaves it."""
        meta = doc.get("metadata") or {}
        if not isinstance(meta, Mapping):
            meta = {}
        return cls(api_group(dict(doc)), str(doc.get("kind") or ""),
                   str(meta.get("namespace") or ""), str(meta.get("name") or ""))

    def __str__(self) -> str:
        api = f"{self.group}/" if self.group else ""
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{api}{self.kind} {where}"

    def as_dict(self) -> dict[str, str]:
        return {"group": self.group, "kind": self.kind, "namespace": self.namespace,
                "name": self.name}


def _is_namespaced(doc: Mapping[str, Any]) -> bool | None:
    info = kind_of(doc)
    if info is not None:
        return info.namespaced
    if str(doc.get("kind") or "") in CLUSTER_SCOPED_KINDS:
        return False
    return None  # unknown kind: keep what the document says


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def _prune(value: Any, *, omit_empty: bool) -> Any:
    """Drop what serialises as "absent": None and empty lists everywhere (Go ``omitempty``
    slices); with ``omit_empty`` (APIs whose structs are ``omitempty``, like Calico's) also
    empty maps and empty strings; otherwise only empty label maps (``podSelector: {}`` means
    all)."""
    if isinstance(value, dict):
        out = {}
        for k, raw in value.items():
            v = _prune(raw, omit_empty=omit_empty)
            if v is None or (isinstance(v, list) and not v):
                continue
            if isinstance(v, dict) and not v and (
                    omit_empty or k in ("matchLabels", "labels", "annotations")):
                continue
            if omit_empty and v == "":
                continue
            out[k] = v
        return out
    if isinstance(value, list):
        return [_prune(v, omit_empty=omit_empty) for v in value]
    return value


def normalize(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``doc`` as it compares: server-added fields removed, API defaults filled in.

    Removes ``status`` and the metadata the server sets (uid, resourceVersion, generation,
    creationTimestamp, managedFields, selfLink, the last-applied annotation); sets the namespace
    of namespaced policy kinds (``default`` when missing) and drops it from cluster-scoped ones;
    fills in the defaults of the target whose API group the object is in (its
    ``fill_defaults``: Kubernetes ``ports[].protocol`` and ``policyTypes``, §1.3; Calico
    ``tier``, ``types``, §3.3, ...); turns integral floats into ints; drops what the API
    serialises as absent (None, empty lists; empty maps and strings where the API omits them).

    >>> normalize({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
    ...            "metadata": {"name": "x", "uid": "u1", "resourceVersion": "7"},
    ...            "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]}})["spec"]
    {'podSelector': {}, 'ingress': [{'ports': [{'port': 80, 'protocol': 'TCP'}]}], \
'policyTypes': ['Ingress']}
    """
    out: dict[str, Any] = _integral(copy.deepcopy(dict(doc)))
    out.pop("status", None)
    meta = out.get("metadata")
    meta = dict(meta) if isinstance(meta, Mapping) else {}
    for key in SERVER_METADATA:
        meta.pop(key, None)
    annotations = meta.get("annotations")
    if isinstance(annotations, Mapping):
        meta["annotations"] = {k: v for k, v in annotations.items()
                               if k not in SERVER_ANNOTATIONS}
    namespaced = _is_namespaced(out)
    if namespaced is True:
        meta["namespace"] = str(meta.get("namespace") or "default")
    elif namespaced is False:
        meta.pop("namespace", None)
    out["metadata"] = meta
    if isinstance(out.get("spec"), Mapping):
        out["spec"] = dict(out["spec"])
    target = target_of_group(out)
    if target is not None:
        target.fill_defaults(out)
    pruned: dict[str, Any] = _prune(out, omit_empty=target is not None and target.omits_empty)
    return pruned
