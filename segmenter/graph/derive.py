"""An inventory built from the flow records themselves, when no inventory is given.

Flow-log sources that know the cluster (Hubble, Calico, GKE's VPC flow logs) say for each end
its namespace, pod, labels, workload and node, or a reserved identity (``world``, ``host``,
``kube-apiserver``). :func:`derive_inventory` turns that into the
:class:`~segmenter.model.Inventory` the graph, the compiler and the replay need, and says what
it lacks. It refuses (fail closed) when any flow has an end the records do not identify: such
an end could only be guessed.

What it holds: a namespace per namespace seen (with the ``kubernetes.io/metadata.name`` label
the control plane sets, k8s.NAMESPACE_NAME_LABEL); a pod per pod name (or aggregated name
prefix) with the records' labels, the addresses the records showed it at and, as its lifetime,
the span of those records (so that an address reused by another pod later resolves by time);
the workload each pod belongs to; the nodes (``host``, ``remote-node``) at the addresses shown;
the API server's addresses (``kube-apiserver``) as the ``default/kubernetes`` endpoints.

The workload of a pod is the one the record names (Hubble's ``workloads``, GKE's
``pod_workload``), else what Kubernetes' own naming says for certain: a ``pod-template-hash``
label whose value is in the pod name after ``<deployment>-`` (the Deployment controller names a
ReplicaSet ``<deployment>-<hash>``, kubernetes pkg/controller/deployment/sync.go); a
``statefulset.kubernetes.io/pod-name`` label equal to ``<statefulset>-<ordinal>``; a
``controller-revision-hash`` ``<name>-<hash>`` with ``pod-template-generation`` (a DaemonSet,
pkg/controller/daemon/util) or without it (a StatefulSet); a ``job-name`` label (a Job). Cilium
leaves those labels out of its identities, and Cilium before 1.13 writes no ``workloads``: then
a pod name of the Deployment shape ``<deployment>-<hash>-<suffix>`` (hash and suffix in the
alphabet the controllers draw them from, apimachinery pkg/util/rand) names its Deployment, and
the notes list the workloads found so. Nothing else is inferred: a pod whose workload is not
known is left out, and the notes say so.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from segmenter.errors import InputError
from segmenter.graph.identity import HOST_ENDPOINT, NETWORK_SETS, RECORDS_SOURCE
from segmenter.k8s import GENERATED_NAME_ALPHABET, NAMESPACE_NAME_LABEL
from segmenter.model import (
    EndpointIdentity,
    EndpointSlice,
    Flow,
    Inventory,
    Labels,
    Namespace,
    Node,
    Pod,
    ServicePort,
    SliceEndpoint,
    Transport,
    Workload,
    WorkloadRef,
)

_ORDINAL: Final = re.compile(r"^(?P<name>.+)-(?P<ordinal>\d+)$")
_SAFE: Final = f"[{GENERATED_NAME_ALPHABET}]"
_DEPLOYMENT_POD: Final = re.compile(rf"^(?P<name>.+)-{_SAFE}{{6,10}}-(?:{_SAFE}{{5}}|\*)$")
_REVISION: Final = re.compile(r"^(?P<name>.+)-(?P<hash>[a-z0-9]+)$")
EXAMPLES: Final = 5


def record_workload(ep: EndpointIdentity) -> WorkloadRef | None:
    """The workload of a pod end, from what the record says (see the module docstring;
    :func:`workload_by_pod_name` for the last resort)."""
    namespace = ep.namespace
    if not namespace or ep.workload_kind in NETWORK_SETS or ep.workload_kind == HOST_ENDPOINT:
        return None
    if ep.workload_kind and ep.workload_name:
        return WorkloadRef(namespace, ep.workload_kind, ep.workload_name)
    pod = ep.pod
    if not pod:
        return None
    labels = ep.labels
    template_hash = labels.get("pod-template-hash")
    if template_hash:
        marker = f"-{template_hash}-"
        cut = pod.rfind(marker)
        if cut > 0:
            return WorkloadRef(namespace, "Deployment", pod[:cut])
    pod_name = labels.get("statefulset.kubernetes.io/pod-name")
    if pod_name and pod_name == pod and (match := _ORDINAL.match(pod)) is not None:
        return WorkloadRef(namespace, "StatefulSet", match["name"])
    revision = labels.get("controller-revision-hash")
    if revision and (match := _REVISION.match(revision)) is not None \
            and pod.startswith(match["name"] + "-"):
        kind = "DaemonSet" if labels.get("pod-template-generation") else "StatefulSet"
        return WorkloadRef(namespace, kind, match["name"])
    job = labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")
    if job and pod.startswith(job + "-"):
        return WorkloadRef(namespace, "Job", job)
    return None


def workload_by_pod_name(ep: EndpointIdentity) -> WorkloadRef | None:
    """A Deployment named by the shape of its pod's name alone (``<deployment>-<replicaset
    hash>-<random suffix>``, or Calico's aggregated ``<deployment>-<hash>-*``)."""
    if not ep.namespace or not ep.pod:
        return None
    match = _DEPLOYMENT_POD.match(ep.pod)
    return WorkloadRef(ep.namespace, "Deployment", match["name"]) if match else None


@dataclass
class _PodSeen:
    owner: WorkloadRef
    labels: set[tuple[str, str]] | None = None
    ips: set[str] = field(default_factory=set)
    node: str | None = None
    start: float = math.inf
    end: float = -math.inf
    # The endpoint objects already folded in (a pod is the end of many flows, its records
    # repeat one object: its labels and workload are looked at once).
    endpoints: set[EndpointIdentity] = field(default_factory=set)


@dataclass(frozen=True)
class DerivedInventory:
    """An inventory built from the records, and what it lacks (one line each)."""

    inventory: Inventory
    notes: tuple[str, ...]


def derive_inventory(flows: Iterable[Flow]) -> DerivedInventory:
    """The inventory the records describe (``flows`` is read once: a stream of flow files
    goes through without being held).

    Raises:
        InputError: a flow has an end the records do not identify (no ``*_endpoint``): it
            needs an inventory (``--inventory``).
    """
    builder = _Builder()
    total = 0
    anonymous = 0
    sources: set[str] = set()
    first: Flow | None = None  # the earliest anonymous flow, in the order of flow files
    for flow in flows:
        total += 1
        if flow.client_endpoint is None or flow.server_endpoint is None:
            anonymous += 1
            sources.update(flow.sources)
            if first is None or _file_order(flow) < _file_order(first):
                first = flow
            continue
        if anonymous:
            continue  # refused below: no need to build
        builder.add(flow.client, flow.client_endpoint, flow, None)
        builder.add(flow.server, flow.server_endpoint, flow, flow.server_port)
    if first is not None:
        side = "client" if first.client_endpoint is None else "server"
        named = ", ".join(sorted(sources or {"capture"}))
        raise InputError(
            f"no inventory given, and {anonymous} of {total} flows have an end their "
            f"records do not identify (sources: {named}; e.g. the {side} of {first.client} -> "
            f"{first.server} {first.transport}/{first.server_port}): give --inventory (a "
            "kubectl dump or the inventory file)")
    if not total:
        raise InputError("no inventory given and no flows to build one from: give --inventory")
    return builder.build()


def _file_order(flow: Flow) -> tuple[Any, ...]:
    """Where a flow file puts a flow (docs/flow-format.md): the example a message names does
    not depend on the order flows come in."""
    return (flow.first_seen, flow.transport.value, flow.client or "",
            -1 if flow.client_port is None else flow.client_port, flow.server or "",
            -1 if flow.server_port is None else flow.server_port)


class _Builder:
    def __init__(self) -> None:
        self.pods: dict[tuple[str, str], _PodSeen] = {}
        self.namespaces: set[str] = set()
        self.node_names: dict[str, str] = {}  # address -> node name
        self.node_addresses: set[str] = set()
        self.apiserver: set[str] = set()
        self.apiserver_ports: set[tuple[Transport, int]] = set()
        self.unowned: dict[tuple[str, str], int] = defaultdict(int)
        self.by_name: set[WorkloadRef] = set()
        self.conflicts: set[tuple[str, str, str]] = set()

    def add(self, address: str | None, ep: EndpointIdentity, flow: Flow,
            port: int | None) -> None:
        if ep.namespace:
            self.namespaces.add(ep.namespace)
        if ep.pod and ep.namespace:
            self._pod(address, ep, flow)
            return
        if address is None:
            return  # reported when the end is resolved
        if ep.entity in ("host", "remote-node") or ep.workload_kind == HOST_ENDPOINT:
            self.node_addresses.add(address)
            if ep.node:
                self.node_names.setdefault(address, ep.node)
        elif ep.entity == "kube-apiserver":
            self.apiserver.add(address)
            if port is not None:
                self.apiserver_ports.add((flow.transport, port))

    def _pod(self, address: str | None, ep: EndpointIdentity, flow: Flow) -> None:
        assert ep.pod is not None
        assert ep.namespace is not None
        key = (ep.namespace, ep.pod)
        seen = self.pods.get(key)
        if seen is None:
            owner = record_workload(ep)
            if owner is None and (owner := workload_by_pod_name(ep)) is not None:
                self.by_name.add(owner)
            if owner is None:
                self.unowned[key] += 1
                return
            seen = self.pods[key] = _PodSeen(owner)
        if ep not in seen.endpoints:
            seen.endpoints.add(ep)
            owner = record_workload(ep) or workload_by_pod_name(ep)
            if owner is not None and owner != seen.owner:
                self.conflicts.add((f"{ep.namespace}/{ep.pod}", seen.owner.id, owner.id))
            pairs = set(ep.labels.items)
            seen.labels = pairs if seen.labels is None else seen.labels & pairs
            if ep.node and (seen.node is None or ep.node < seen.node):
                seen.node = ep.node  # the least, whatever the order of the records
        if address is not None:
            seen.ips.add(address)
        if flow.first_seen < seen.start:  # noqa: PLR1730 - min() is slower, once per end
            seen.start = flow.first_seen
        if flow.last_seen > seen.end:  # noqa: PLR1730
            seen.end = flow.last_seen

    def build(self) -> DerivedInventory:
        pods = []
        for (namespace, name), seen in sorted(self.pods.items()):
            pods.append(Pod(namespace=namespace, name=name,
                            labels=Labels(tuple(sorted(seen.labels or ()))),
                            ips=tuple(sorted(seen.ips)), owner=seen.owner, node=seen.node,
                            start=seen.start, end=seen.end))
        owners = sorted({p.owner for p in pods})
        workloads = tuple(Workload(ref=ref) for ref in owners)
        namespaces = tuple(Namespace(ns, Labels.of({NAMESPACE_NAME_LABEL: ns}))
                           for ns in sorted(self.namespaces))
        by_name: dict[str, set[str]] = defaultdict(set)
        for address in self.node_addresses:
            by_name[self.node_names.get(address, address)].add(address)
        nodes = tuple(Node(name, tuple(sorted(addresses)))
                      for name, addresses in sorted(by_name.items()))
        slices: tuple[EndpointSlice, ...] = ()
        if self.apiserver:
            slices = (EndpointSlice(
                "default", "kubernetes", "kubernetes",
                (SliceEndpoint(tuple(sorted(self.apiserver))),),
                tuple(ServicePort(port, transport) for transport, port
                      in sorted(self.apiserver_ports))),)
        inventory = Inventory(namespaces=namespaces, nodes=nodes, workloads=workloads,
                              pods=tuple(pods), endpoint_slices=slices,
                              sources=(RECORDS_SOURCE,))
        return DerivedInventory(inventory, tuple(self._notes(pods, owners)))

    def _notes(self, pods: Iterable[Pod], owners: Sequence[WorkloadRef]) -> list[str]:
        pods = list(pods)
        notes = [
            f"inventory built from the flow records (no --inventory): {len(self.namespaces)} "
            f"namespaces, {len(owners)} workloads, {len(pods)} pods, "
            f"{len({self.node_names.get(a, a) for a in self.node_addresses})} nodes seen in "
            "traffic; a selector is checked only against the pods seen, not against pods "
            "that sent nothing or pod templates: give --inventory to check it against the "
            "cluster",
        ]
        if self.by_name:
            named = sorted(r.id for r in self.by_name)
            notes.append(
                f"{len(named)} Deployment(s) named from their pods' names alone (the records "
                f"name no workload and carry no pod-template-hash): {_some(named)}; give "
                "--inventory to be sure")
        unlabelled = sorted(r.id for r in owners
                            if not any(p.labels.stable() for p in pods if p.owner == r))
        if unlabelled:
            notes.append(
                f"{len(unlabelled)} workload(s) have no labels in the records, so no policy "
                f"can select them (compiling a plan that polices them or allows them as "
                f"peers fails): {_some(unlabelled)}")
        if self.unowned:
            names = sorted(f"{ns}/{pod}" for ns, pod in self.unowned)
            notes.append(
                f"{len(names)} pod name(s) with no workload in the records (no workload "
                f"fields, and no controller label that names it): their flows are left out: "
                f"{_some(names)}")
        for pod, first, second in sorted(self.conflicts):
            notes.append(f"the records name two workloads for pod {pod}: {first} and "
                         f"{second}; {first} is used")
        return notes


def _some(items: Sequence[str]) -> str:
    shown = ", ".join(items[:EXAMPLES])
    return shown + (f" and {len(items) - EXAMPLES} more" if len(items) > EXAMPLES else "")


__all__ = ["DerivedInventory", "derive_inventory", "record_workload", "workload_by_pod_name"]
