"""Compare two sets of policies: what objects change, and what connections that changes.

Structural diff (:func:`diff_policies`): objects are matched by (API group, kind, namespace,
name) and compared after :func:`normalize`, which removes what the API server adds (uid,
resourceVersion, generation, creationTimestamp, managedFields, the last-applied annotation,
status, Calico's ``projectcalico.org/tier`` label) and fills in what it defaults (``protocol: TCP``,
``policyTypes``, Calico ``types`` and ``tier``...), so that a live object and the file it was
applied from compare equal. Each changed object gets a unified diff of its normalised YAML.

Semantic diff (:func:`semantic_diff`): with an inventory, every observed flow is evaluated
against both sides with the project's evaluator (:func:`segmenter.verify.verify_flows`), and
every ordered pair of workloads (one pod each; at most ``max_workloads``, reported when capped)
is probed on every (protocol, port) that appears in either side's rules or in the flows, to list
the connections newly allowed and newly denied.

``segmenter diff OLD NEW`` exits like ``git diff --exit-code``: 0 no change, 1 differences,
2 error. Either side may be ``--cluster``: the policies in force, read through
:mod:`segmenter.cluster.policies`. When OLD is the cluster, NEW is laid over it (as
``kubectl apply`` would leave the cluster: objects not in NEW stay) unless ``--no-overlay``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import json
import logging
import os
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from segmenter.errors import InputError
from segmenter.evaluate.calico import fill_defaults as calico_defaults
from segmenter.evaluate.calico import port_number
from segmenter.evaluate.kubernetes import fill_defaults as k8s_defaults
from segmenter.model import ContainerPort, Flow, Inventory, Pod, Transport, WorkloadRef
from segmenter.render import sorted_yaml
from segmenter.targets import CALICO_GROUP, K8S_GROUP, kind_of

__all__ = [
    "CLUSTER",
    "Added",
    "Changed",
    "FlowChange",
    "ObjectKey",
    "ReachChange",
    "Removed",
    "SemanticDiff",
    "StructuralDiff",
    "add_parser",
    "diff_policies",
    "normalize",
    "overlay",
    "probe_ports",
    "semantic_diff",
    "to_json",
    "to_text",
]

logger = logging.getLogger(__name__)

CLUSTER: Final = "<cluster>"
DEFAULT_MAX_WORKLOADS: Final = 200
EXIT_SAME, EXIT_DIFFERENT = 0, 1

SERVER_METADATA: Final = (
    "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink",
    "deletionTimestamp", "deletionGracePeriodSeconds",
)
SERVER_ANNOTATIONS: Final = ("kubectl.kubernetes.io/last-applied-configuration",)
# Calico's API server labels every policy with its tier (for kubectl label selection).
CALICO_TIER_LABEL: Final = "projectcalico.org/tier"
CLUSTER_SCOPED_KINDS: Final = frozenset(
    {"GlobalNetworkPolicy", "GlobalNetworkSet", "Tier", "StagedGlobalNetworkPolicy",
     "Namespace", "Node", "HostEndpoint", "Profile", "ClusterNetworkPolicy",
     "AdminNetworkPolicy", "BaselineAdminNetworkPolicy", "CustomResourceDefinition",
     "ClusterRole", "ClusterRoleBinding"}
)
_CALICO_POLICY_KINDS: Final = frozenset(
    {"NetworkPolicy", "GlobalNetworkPolicy", "StagedNetworkPolicy", "StagedGlobalNetworkPolicy"}
)
_K8S_SHAPED_KINDS: Final = frozenset({"NetworkPolicy", "StagedKubernetesNetworkPolicy"})
_PROTOCOL_NUMBERS: Final = {1: Transport.ICMP, 6: Transport.TCP, 17: Transport.UDP,
                            58: Transport.ICMPV6, 132: Transport.SCTP}


# ---------------------------------------------------------------------------------------------
# Identity and normalisation


def _group(doc: Mapping[str, Any]) -> str:
    api = str(doc.get("apiVersion") or "")
    return api.split("/", 1)[0] if "/" in api else ""


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
        return cls(_group(doc), str(doc.get("kind") or ""), str(meta.get("namespace") or ""),
                   str(meta.get("name") or ""))

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


def _prune(value: Any, *, calico: bool) -> Any:
    """Drop what serialises as "absent": None and empty lists everywhere (Go ``omitempty``
    slices); in Calico objects also empty maps and empty strings (zero-valued structs and
    selectors); in Kubernetes objects only empty label maps (``podSelector: {}`` means all)."""
    if isinstance(value, dict):
        out = {}
        for k, raw in value.items():
            v = _prune(raw, calico=calico)
            if v is None or (isinstance(v, list) and not v):
                continue
            if isinstance(v, dict) and not v and (
                    calico or k in ("matchLabels", "labels", "annotations")):
                continue
            if calico and v == "":
                continue
            out[k] = v
        return out
    if isinstance(value, list):
        return [_prune(v, calico=calico) for v in value]
    return value


def normalize(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``doc`` as it compares: server-added fields removed, API defaults filled in.

    Removes ``status`` and the metadata the server sets (uid, resourceVersion, generation,
    creationTimestamp, managedFields, selfLink, the last-applied annotation, Calico's tier
    label); sets the namespace of namespaced policy kinds (``default`` when missing) and drops
    it from cluster-scoped ones; defaults Kubernetes ``ports[].protocol`` and ``policyTypes``
    (§1.3) and Calico ``tier``, ``types`` (§3.3), ``stagedAction`` and a Tier's
    ``defaultAction``; strips the ``default.`` prefix older Calico API servers add to names of
    default-tier policies; sorts ``policyTypes`` / ``types``; turns integral floats into ints;
    drops what the API serialises as absent (None, empty lists; empty maps and strings in
    Calico objects).

    >>> normalize({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
    ...            "metadata": {"name": "x", "uid": "u1", "resourceVersion": "7"},
    ...            "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]}})["spec"]
    {'podSelector': {}, 'ingress': [{'ports': [{'port': 80, 'protocol': 'TCP'}]}], \
'policyTypes': ['Ingress']}
    """
    out: dict[str, Any] = _integral(copy.deepcopy(dict(doc)))
    out.pop("status", None)
    kind = str(out.get("kind") or "")
    calico = _group(out) in (CALICO_GROUP, "crd." + CALICO_GROUP)
    meta = out.get("metadata")
    meta = dict(meta) if isinstance(meta, Mapping) else {}
    for key in SERVER_METADATA:
        meta.pop(key, None)
    annotations = meta.get("annotations")
    if isinstance(annotations, Mapping):
        meta["annotations"] = {k: v for k, v in annotations.items()
                               if k not in SERVER_ANNOTATIONS}
    labels = meta.get("labels")
    if calico and isinstance(labels, Mapping):
        meta["labels"] = {k: v for k, v in labels.items() if k != CALICO_TIER_LABEL}
    namespaced = _is_namespaced(out)
    if namespaced is True:
        meta["namespace"] = str(meta.get("namespace") or "default")
    elif namespaced is False:
        meta.pop("namespace", None)
    out["metadata"] = meta
    spec = out.get("spec")
    if isinstance(spec, Mapping):
        spec = dict(spec)
        if calico:
            calico_defaults(kind, spec)
        elif kind in _K8S_SHAPED_KINDS:
            k8s_defaults(kind, spec)
        out["spec"] = spec
        name = str(meta.get("name") or "")
        if (calico and kind in _CALICO_POLICY_KINDS and spec.get("tier") == "default"
                and name.startswith("default.")):
            meta["name"] = name[len("default."):]
    pruned: dict[str, Any] = _prune(out, calico=calico)
    return pruned


# ---------------------------------------------------------------------------------------------
# Structural diff


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


# ---------------------------------------------------------------------------------------------
# Semantic diff


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


def _transport_of(value: Any, default: Transport | None) -> Transport | None:
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return _PROTOCOL_NUMBERS.get(value)
    try:
        return Transport.parse(str(value))
    except ValueError:
        return None


def _named(name: str, transport: Transport | None, ports: Iterable[ContainerPort]
           ) -> set[tuple[Transport, int | None]]:
    return {(cp.protocol, cp.port) for cp in ports
            if cp.name == name and (transport is None or cp.protocol == transport)}


def probe_ports(manifests: Iterable[Mapping[str, Any]], inventory: Inventory,
                extra: Iterable[tuple[Transport, int | None]] = ()
                ) -> list[tuple[Transport, int | None]]:
    """Every (protocol, destination port) that the rules of ``manifests`` mention, plus
    ``extra``: named ports resolved through the inventory's container ports, both ends of a
    range, ``None`` for ICMP. Sorted."""
    container_ports = [cp for pod in inventory.pods for cp in pod.ports]
    found: set[tuple[Transport, int | None]] = set(extra)
    for doc in manifests:
        spec = doc.get("spec")
        if not isinstance(spec, Mapping):
            continue
        k8s_shaped = ("podSelector" in spec or _group(doc) == K8S_GROUP
                      or doc.get("kind") == "StagedKubernetesNetworkPolicy")
        for direction in ("ingress", "egress"):
            rules = spec.get(direction)
            if not isinstance(rules, list):
                continue
            for rule in rules:
                if not isinstance(rule, Mapping):
                    continue
                if k8s_shaped:
                    for port in rule.get("ports") or []:
                        if not isinstance(port, Mapping):
                            continue
                        transport = _transport_of(port.get("protocol"), Transport.TCP)
                        if transport is None:
                            continue
                        value = port.get("port")
                        if isinstance(value, int):
                            found.add((transport, value))
                            end = port.get("endPort")
                            if isinstance(end, int):
                                found.add((transport, end))
                        elif isinstance(value, str):
                            found |= _named(value, transport, container_ports)
                    continue
                transport = _transport_of(rule.get("protocol"), None)
                if transport in (Transport.ICMP, Transport.ICMPV6):
                    found.add((transport, None))
                destination = rule.get("destination")
                if not isinstance(destination, Mapping):
                    continue
                for key in ("ports", "notPorts"):
                    for raw in destination.get(key) or []:
                        value = port_number(raw)
                        if isinstance(value, int):
                            if transport is not None:
                                found.add((transport, value))
                        elif isinstance(value, str) and ":" in value:
                            first, _, last = value.partition(":")
                            if transport is not None and first.isdigit() and last.isdigit():
                                found.update({(transport, int(first)), (transport, int(last))})
                        elif isinstance(value, str):
                            found |= _named(value, transport, container_ports)
    return sorted(found, key=_probe_key)


def _probe_key(probe: tuple[Transport | str, int | None]) -> tuple[str, int]:
    return (str(probe[0]), -1 if probe[1] is None else probe[1])


def representative_pods(inventory: Inventory) -> dict[WorkloadRef, Pod]:
    """One pod per workload (pod-network pods only): a running one, else the latest."""
    by_owner: dict[WorkloadRef, list[Pod]] = defaultdict(list)
    for pod in inventory.pods:
        if not pod.host_network and pod.ips:
            by_owner[pod.owner].append(pod)
    return {owner: min(pods, key=lambda p: (p.end is not None, -(p.start or 0.0), p.name))
            for owner, pods in sorted(by_owner.items())}


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
    from segmenter.evaluate import PolicyEngine

    structural = diff_policies(old, new)
    keys = [*(a.key for a in structural.added), *(r.key for r in structural.removed),
            *(c.key for c in structural.changed)]
    policy_kinds = {(K8S_GROUP, "NetworkPolicy")} | {
        (CALICO_GROUP, k) for k in (*_CALICO_POLICY_KINDS, "StagedKubernetesNetworkPolicy")}
    if any((k.group, k.kind) not in policy_kinds for k in keys):
        return None
    tiers = [d for d in old if d.get("kind") == "Tier" and _group(d) == CALICO_GROUP]
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
    from segmenter.evaluate import PolicyEngine
    from segmenter.verify import EndpointFinder, verify_flows

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


# ---------------------------------------------------------------------------------------------
# Rendering


_COLOURS: Final = {"add": "\033[32m", "del": "\033[31m", "chg": "\033[33m", "hunk": "\033[36m",
                   "head": "\033[1m"}
_RESET: Final = "\033[0m"


def _paint(text: str, what: str, colour: bool) -> str:
    return f"{_COLOURS[what]}{text}{_RESET}" if colour else text


def _port_text(transport: str, port: int | None) -> str:
    return transport if port is None else f"{transport}/{port}"


def to_text(structural: StructuralDiff, semantic: SemanticDiff | None = None, *,
            colour: bool = False, old_label: str = "OLD", new_label: str = "NEW") -> str:
    """A report for terminals; ANSI colour only when ``colour``."""
    out: list[str] = []
    s = structural
    out.append(_paint(f"policies {old_label} -> {new_label}: {len(s.added)} added, "
                      f"{len(s.removed)} removed, {len(s.changed)} changed, "
                      f"{len(s.unchanged)} unchanged", "head", colour))
    out.extend(_paint(f"+ added    {a.id}", "add", colour) for a in s.added)
    out.extend(_paint(f"- removed  {r.id}", "del", colour) for r in s.removed)
    for c in s.changed:
        out.append(_paint(f"~ changed  {c.id}", "chg", colour))
        for line in c.unified.splitlines():
            if line.startswith(("+++", "---")):
                out.append("    " + _paint(line, "head", colour))
            elif line.startswith("@@"):
                out.append("    " + _paint(line, "hunk", colour))
            elif line.startswith("+"):
                out.append("    " + _paint(line, "add", colour))
            elif line.startswith("-"):
                out.append("    " + _paint(line, "del", colour))
            else:
                out.append("    " + line)
    out.extend(f"note: {n}" for n in s.notes)
    if semantic is not None:
        out.extend(_semantic_text(semantic, colour))
    return "\n".join(out) + "\n"


def _semantic_text(sem: SemanticDiff, colour: bool) -> list[str]:
    out: list[str] = []
    ports = ", ".join(_port_text(t, p) for t, p in sem.probes) or "none"
    out.append(_paint(
        f"connections ({sem.enforcement} enforcement, {sem.workloads_checked} of "
        f"{sem.workloads_total} workloads, ports {ports}):", "head", colour))
    pairs: dict[tuple[str, str, bool], list[str]] = defaultdict(list)
    for r in sem.reach_changes:
        pairs[(r.source, r.destination, r.allowed_after)].append(
            _port_text(r.transport, r.port))
    if not pairs:
        out.append("  no connection between workloads changes verdict")
    for (src, dst, allowed), plist in sorted(pairs.items(), key=lambda kv: (not kv[0][2],
                                                                            kv[0])):
        if allowed:
            out.append(_paint(f"  + newly allowed  {src} -> {dst}: {', '.join(plist)}",
                              "add", colour))
        else:
            out.append(_paint(f"  - newly denied   {src} -> {dst}: {', '.join(plist)}",
                              "del", colour))
    if sem.flows_checked:
        changed = sum(f.flows for f in sem.flow_changes)
        out.append(_paint(f"observed flows: {changed} of {sem.flows_checked} change verdict",
                          "head", colour))
        for f in sem.flow_changes:
            what = _port_text(f.transport, f.port)
            line = (f"  {'+' if f.allowed_after else '-'} {f.client} -> {f.server} {what} "
                    f"({f.flows} flow{'s' if f.flows != 1 else ''}): "
                    f"{f.before} -> {f.after}")
            out.append(_paint(line, "add" if f.allowed_after else "del", colour))
    out.extend(f"note: {n}" for n in sem.notes)
    return out


def to_dict(structural: StructuralDiff, semantic: SemanticDiff | None = None, *,
            old_label: str = "OLD", new_label: str = "NEW") -> dict[str, Any]:
    """The JSON-ready form of :func:`to_json`."""
    s = structural
    data: dict[str, Any] = {
        "format": "segmenter-diff",
        "version": 1,
        "old": old_label,
        "new": new_label,
        "changes": s.has_changes or bool(semantic and semantic.has_changes),
        "structural": {
            "added": [{"id": a.id, **a.key.as_dict()} for a in s.added],
            "removed": [{"id": r.id, **r.key.as_dict()} for r in s.removed],
            "changed": [{"id": c.id, **c.key.as_dict(), "unified": c.unified}
                        for c in s.changed],
            "unchanged": len(s.unchanged),
            "notes": list(s.notes),
        },
        "semantic": None,
    }
    if semantic is not None:
        data["semantic"] = {
            "enforcement": semantic.enforcement,
            "workloads_total": semantic.workloads_total,
            "workloads_checked": semantic.workloads_checked,
            "capped": semantic.capped,
            "probes": [{"protocol": t, "port": p} for t, p in semantic.probes],
            "flows_checked": semantic.flows_checked,
            "flow_changes": [vars(f) for f in semantic.flow_changes],
            "connection_changes": [vars(r) for r in semantic.reach_changes],
            "notes": list(semantic.notes),
        }
    return data


def to_json(structural: StructuralDiff, semantic: SemanticDiff | None = None, *,
            old_label: str = "OLD", new_label: str = "NEW") -> str:
    """Deterministic JSON (sorted keys, no timestamps) for machines."""
    return json.dumps(to_dict(structural, semantic, old_label=old_label, new_label=new_label),
                      sort_keys=True, indent=1, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------------------------
# Command


class _Sides(argparse.Action):
    """Collects OLD/NEW positionals and ``--cluster`` in command-line order."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        sides = list(getattr(namespace, self.dest, None) or [])
        if option_string is not None:
            sides.append(CLUSTER)
        else:
            sides.extend(values or [])
        setattr(namespace, self.dest, sides)


def _load_side(spec: str, args: argparse.Namespace, notes: list[str]) -> tuple[
        list[dict[str, Any]], str]:
    if spec == CLUSTER:
        from segmenter.cluster.policies import read_live_policies
        from segmenter.targets import all_kinds

        live = read_live_policies(all_kinds(), context=args.context, kubeconfig=args.kubeconfig)
        notes.extend(live.notes)
        label = f"cluster {live.host}" + (f" (context {args.context})" if args.context else "")
        return live.manifests, label
    from segmenter.evaluate import load_manifests

    if not os.path.exists(spec):
        raise InputError("no such file or directory", path=spec)
    return load_manifests([spec]), spec


def _policy_only(docs: list[dict[str, Any]], label: str, notes: list[str]
                 ) -> list[dict[str, Any]]:
    kept = [d for d in docs if kind_of(d) is not None]
    if len(kept) < len(docs):
        notes.append(f"{label}: {len(docs) - len(kept)} object(s) of kinds the cluster "
                     "side does not read left out of the comparison")
    return kept


def run_diff(args: argparse.Namespace) -> tuple[StructuralDiff, SemanticDiff | None, str, str]:
    """Load both sides and diff them: (structural, semantic or None, old label, new label).

    Notes on how the sides were read (skipped kinds, unserved API groups) join
    ``structural.notes``.
    """
    sides: list[str] = list(args.sides or [])
    if len(sides) != 2:
        raise InputError("diff needs two sides: OLD NEW (either may be --cluster)")
    if sides == [CLUSTER, CLUSTER]:
        raise InputError("only one side can be --cluster")
    if args.flows and not args.inventory:
        raise InputError("--flows needs --inventory to resolve flow addresses to workloads")
    notes: list[str] = []
    old, old_label = _load_side(sides[0], args, notes)
    new, new_label = _load_side(sides[1], args, notes)
    if CLUSTER in sides:
        if sides[0] == CLUSTER:
            new = _policy_only(new, new_label, notes)
        else:
            old = _policy_only(old, old_label, notes)
    if sides[0] == CLUSTER and not args.no_overlay:
        new = overlay(old, new)
        new_label = f"{new_label} applied over the cluster"
    structural = diff_policies(old, new)
    structural = dataclasses.replace(structural, notes=(*notes, *structural.notes))
    semantic = None
    if args.inventory:
        from segmenter.cluster.dump import load_inventory

        inventory = load_inventory(list(args.inventory))
        flows: Sequence[Flow] = ()
        if args.flows:
            from segmenter.flows import read_flow_files

            flows = read_flow_files(list(args.flows)).flows
        semantic = semantic_diff(old, new, inventory, flows, str(args.enforcement),
                                 max_workloads=args.max_workloads,
                                 focus_namespaces=structural.touched_namespaces())
    return structural, semantic, old_label, new_label


def cmd_diff(args: argparse.Namespace) -> int:
    structural, semantic, old_label, new_label = run_diff(args)
    if args.format == "json":
        sys.stdout.write(to_json(structural, semantic, old_label=old_label,
                                 new_label=new_label))
    else:
        colour = args.color == "always" or (
            args.color == "auto" and sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
        sys.stdout.write(to_text(structural, semantic, colour=colour, old_label=old_label,
                                 new_label=new_label))
    changed = structural.has_changes or bool(semantic and semantic.has_changes)
    return EXIT_DIFFERENT if changed else EXIT_SAME


def add_parser(subparsers: Any) -> None:
    """Register ``segmenter diff``."""
    p = subparsers.add_parser(
        "diff", help="compare two policy sets: objects and connections that change",
        description="Structural and semantic diff of two policy sets (folders/files of YAML, or "
                    "--cluster for the policies in force). Exit status: 0 no difference, "
                    "1 differences, 2 error.")
    p.add_argument("sides", nargs="*", action=_Sides, metavar="OLD NEW",
                   help="YAML files or folders; put --cluster in the place of one of them")
    p.add_argument("--cluster", dest="sides", nargs=0, action=_Sides,
                   help="the live cluster's policies as this side (in OLD/NEW order)")
    p.add_argument("--context", help="kubeconfig context (with --cluster)")
    p.add_argument("--kubeconfig", help="kubeconfig file (with --cluster)")
    p.add_argument("--no-overlay", action="store_true",
                   help="with --cluster as OLD: compare NEW alone, not NEW applied over the "
                        "cluster")
    p.add_argument("--flows", action="append", default=[], metavar="FLOWS",
                   help="flow file(s) to replay against both sides (repeatable)")
    p.add_argument("--inventory", action="append", default=[], metavar="DUMP",
                   help="inventory dump(s) for the semantic diff (repeatable)")
    p.add_argument("--enforcement", choices=["kubernetes", "calico"], default="kubernetes")
    p.add_argument("--max-workloads", type=int, default=DEFAULT_MAX_WORKLOADS,
                   help="cap on workloads probed pairwise (default %(default)s)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                   help="colour in text output (auto: only on a terminal)")
    p.set_defaults(func=cmd_diff, sides=[])

