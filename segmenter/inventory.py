"""Kubernetes inventory: read ``kubectl get … -o json|yaml`` dumps, and map IPs to graph nodes.

``load_inventory`` reads one or more dumps (a ``List``, several YAML documents or single objects;
several files or snapshots merge) into the frozen :class:`~segmenter.model.Inventory`. Pods are
collapsed to their top owner (Pod → ReplicaSet → Deployment, Pod → Job → CronJob, StatefulSet,
DaemonSet, or the bare Pod). ``parse_documents`` is the same parser for objects that come from
elsewhere (the live API in :mod:`segmenter.kube_live`). Snapshots written by
:mod:`segmenter.watch` carry ``watch.segmenter.io/*`` pod annotations that bound the interval
during which each pod held its IP.

``Resolver`` answers "which graph node is behind ``ip:port`` at time ``ts``" for a flow endpoint,
following Service DNAT, NodePorts, the API server endpoints, hostNetwork pods, node addresses,
NodeLocal DNSCache and pod IP reuse over time (see ``docs/graph-format.md``).
"""

from __future__ import annotations

import bisect
import ipaddress
import json
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import yaml

from segmenter.errors import InputError, type_name
from segmenter.k8s import NAMESPACE_NAME_LABEL, SERVICE_NAME_LABEL
from segmenter.model import (
    ContainerPort,
    EndpointSlice,
    Inventory,
    Labels,
    Namespace,
    Node,
    Pod,
    Service,
    ServicePort,
    SliceEndpoint,
    Transport,
    Workload,
    WorkloadRef,
)

logger = logging.getLogger(__name__)

CACHE_FORMAT: Final = "segmenter-inventory"
CACHE_VERSION: Final = 1

CONTROLLER_KINDS: Final = frozenset(
    {"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "CronJob"}
)
KNOWN_KINDS: Final = CONTROLLER_KINDS | {
    "Pod",
    "Service",
    "EndpointSlice",
    "Endpoints",
    "Namespace",
    "Node",
}
CLUSTER_SCOPED_KINDS: Final = frozenset({"Namespace", "Node"})

# Annotations that carry no meaning for segmentation and can be huge.
DROPPED_ANNOTATIONS: Final = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})
# Pod annotations that ``segmenter inventory --watch`` (segmenter.watch) adds to the pods of its
# snapshots: when it first saw the pod's IP and when it saw the pod deleted (RFC 3339). They
# tighten the interval during which the pod held its IP and are removed from the annotations.
WATCH_ANNOTATION_PREFIX: Final = "watch.segmenter.io/"
IP_ASSIGNED_ANNOTATION: Final = WATCH_ANNOTATION_PREFIX + "ip-assigned-at"
DELETED_ANNOTATION: Final = WATCH_ANNOTATION_PREFIX + "deleted-at"
# Label/annotation prefix of this project's own declarations (e.g. segmenter.io/data-class).
SEGMENTER_PREFIX: Final = "segmenter.io/"

APISERVER_NODE: Final = "apiserver"
# NodeLocal DNSCache listens on a link-local address; 169.254.20.10 in the upstream manifests.
NODE_LOCAL_DNS_PREFIX: Final = "169.254.20."  # 169.254.20.0/24
DNS_PORT: Final = 53


class _BadRecord(Exception):
    """A malformed object; turned into an InputError naming the file and the record."""


# --------------------------------------------------------------------------------------------
# Small field readers: each raises _BadRecord with the field path on a wrong type.


def _map(obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _BadRecord(f"{where}{key} must be an object, not {type_name(value)}")
    return value


def _list(obj: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _BadRecord(f"{where}{key} must be a list, not {type_name(value)}")
    return value


def _maps(obj: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    items = _list(obj, key, where)
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise _BadRecord(f"{where}{key}[{i}] must be an object, not {type_name(item)}")
    return items


def _str(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _BadRecord(f"{where}{key} must be a string, not {type_name(value)}")
    return value


def _int(obj: Mapping[str, Any], key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadRecord(f"{where}{key} must be an integer, not {type_name(value)}")
    return value


def _bool(obj: Mapping[str, Any], key: str, where: str) -> bool:
    value = obj.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _BadRecord(f"{where}{key} must be true or false, not {type_name(value)}")
    return value


def _str_map(obj: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    value = _map(obj, key, where)
    out: dict[str, str] = {}
    for k, v in value.items():
        if isinstance(v, (dict, list)):
            raise _BadRecord(f"{where}{key}.{k} must be a string, not {type_name(v)}")
        out[str(k)] = "" if v is None else _scalar_text(v)
    return out


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _ip(value: Any, where: str) -> str:
    """Validate an IP address and return its canonical (compressed) text."""
    if not isinstance(value, str):
        raise _BadRecord(f"{where} must be an IP address string, not {type_name(value)}")
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise _BadRecord(f"{where}: {value!r} is not an IP address") from None


def _timestamp(value: Any, where: str) -> float | None:
    """RFC 3339 (``2024-05-01T10:00:00Z``) to epoch seconds; a number is taken as epoch."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _BadRecord(f"{where} must be a timestamp, not a boolean")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):  # YAML loaders turn unquoted timestamps into datetimes
        return _epoch(value)
    if not isinstance(value, str):
        raise _BadRecord(f"{where} must be a timestamp, not {type_name(value)}")
    try:
        return _epoch(datetime.fromisoformat(value.strip()))
    except ValueError:
        raise _BadRecord(f"{where}: {value!r} is not an RFC 3339 timestamp") from None


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None:  # Kubernetes timestamps are UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _transport(obj: Mapping[str, Any], key: str, where: str) -> Transport:
    value = _str(obj, key, where)
    if value is None:
        return Transport.TCP
    try:
        return Transport.parse(value)
    except ValueError:
        raise _BadRecord(f"{where}{key}: unknown protocol {value!r}") from None


def _annotations(raw: Mapping[str, str]) -> dict[str, str]:
    return {
        k: v
        for k, v in raw.items()
        if k not in DROPPED_ANNOTATIONS and not k.startswith(WATCH_ANNOTATION_PREFIX)
    }


# --------------------------------------------------------------------------------------------
# Intermediate records (mutable while a dump is read; frozen model objects are built at the end)


@dataclass
class _OwnerRef:
    kind: str
    name: str


@dataclass
class _Controller:
    kind: str
    namespace: str
    name: str
    labels: dict[str, str]
    annotations: dict[str, str]
    owner: _OwnerRef | None
    template_labels: dict[str, str] | None
    template_annotations: dict[str, str]
    host_network: bool
    created: float | None


@dataclass
class _PodRecord:
    namespace: str
    name: str
    uid: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    owner: _OwnerRef | None
    ips: list[str]
    node: str | None
    host_network: bool
    ports: list[ContainerPort]
    service_account: str | None
    start: float | None  # creationTimestamp
    end: float | None
    ip_since: float | None = None  # when a watch first saw its IP (watch.segmenter.io/…)
    images: tuple[str, ...] = ()


def _owner_ref(meta: Mapping[str, Any], where: str) -> _OwnerRef | None:
    refs = _maps(meta, "ownerReferences", where + "metadata.")
    if not refs:
        return None
    chosen = next((r for r in refs if r.get("controller") is True), refs[0])
    kind = _str(chosen, "kind", where + "metadata.ownerReferences[].")
    name = _str(chosen, "name", where + "metadata.ownerReferences[].")
    if not kind or not name:
        raise _BadRecord("metadata.ownerReferences[] needs kind and name")
    return _OwnerRef(kind, name)


def _container_ports(spec: Mapping[str, Any]) -> list[ContainerPort]:
    ports: list[ContainerPort] = []
    for key in ("containers", "initContainers"):
        for container in _maps(spec, key, "spec."):
            for entry in _maps(container, "ports", f"spec.{key}[]."):
                where = f"spec.{key}[].ports[]."
                number = _int(entry, "containerPort", where)
                if number is None:
                    raise _BadRecord(f"{where}containerPort is required")
                ports.append(
                    ContainerPort(
                        port=number,
                        protocol=_transport(entry, "protocol", where),
                        name=_str(entry, "name", where) or None,
                    )
                )
    return sorted(set(ports))


def _images(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """Container images (init containers too); malformed entries are ignored, not errors."""
    out = set()
    for key in ("containers", "initContainers"):
        containers = spec.get(key)
        if isinstance(containers, list):
            for container in containers:
                if isinstance(container, Mapping) and isinstance(container.get("image"), str):
                    out.add(container["image"])
    return tuple(sorted(out))


def _target_port(value: Any, where: str) -> int | str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise _BadRecord(f"{where}targetPort must be a number or a port name")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value) if value.isdigit() else value
    raise _BadRecord(f"{where}targetPort must be a number or a port name, not {type_name(value)}")


def _service_ports(spec: Mapping[str, Any], where: str, *, slice_ports: bool) -> list[ServicePort]:
    out: list[ServicePort] = []
    for entry in _maps(spec, "ports", where):
        w = where + "ports[]."
        number = _int(entry, "port", w)
        if number is None:
            if slice_ports:  # an EndpointSlice port without a number means "all ports"
                continue
            raise _BadRecord(f"{w}port is required")
        out.append(
            ServicePort(
                port=number,
                protocol=_transport(entry, "protocol", w),
                target_port=None if slice_ports else _target_port(entry.get("targetPort"), w),
                name=_str(entry, "name", w) or None,
                node_port=None if slice_ports else _int(entry, "nodePort", w),
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# The builder: accumulates objects from any number of files, then freezes an Inventory.


class _Builder:
    def __init__(self) -> None:
        self.namespaces: dict[str, Namespace] = {}
        self.nodes: dict[str, Node] = {}
        self.controllers: dict[tuple[str, str, str], _Controller] = {}
        self.pods: dict[tuple[str, str, str], _PodRecord] = {}
        self.services: dict[tuple[str, str], Service] = {}
        self.slices: dict[tuple[str, str], EndpointSlice] = {}
        self.endpoints: dict[tuple[str, str], EndpointSlice] = {}  # legacy v1 Endpoints
        self.skipped: Counter[str] = Counter()
        self.sources: list[str] = []

    # -- reading ------------------------------------------------------------------------------

    def add(self, obj: Mapping[str, Any], default_kind: str | None) -> None:
        kind = obj.get("kind") or default_kind
        if not isinstance(kind, str) or not kind:
            raise _BadRecord("object has no kind")
        meta = obj.get("metadata")
        if not isinstance(meta, Mapping):
            raise _BadRecord(f"{kind} has no metadata")
        name = meta.get("name")
        if name is None or name == "":
            raise _BadRecord(f"{kind} has no metadata.name")
        if not isinstance(name, str):
            raise _BadRecord(f"metadata.name must be a string, not {type_name(name)}")
        if kind not in KNOWN_KINDS:
            self.skipped[kind] += 1
            return
        namespace = ""
        if kind not in CLUSTER_SCOPED_KINDS:
            namespace = _str(meta, "namespace", "metadata.") or "default"
        if kind in CONTROLLER_KINDS:
            self._add_controller(obj, meta, namespace, name, kind)
        else:
            getattr(self, f"_add_{kind.lower()}")(obj, meta, namespace, name)

    def _add_namespace(
        self, obj: Mapping[str, Any], meta: Mapping[str, Any], _ns: str, name: str
    ) -> None:
        labels = _str_map(meta, "labels", "metadata.")
        labels.setdefault(NAMESPACE_NAME_LABEL, name)  # set by the API server since 1.22
        self.namespaces[name] = Namespace(
            name=name,
            labels=Labels.of(labels),
            annotations=Labels.of(_annotations(_str_map(meta, "annotations", "metadata."))),
        )

    def _add_node(
        self, obj: Mapping[str, Any], meta: Mapping[str, Any], _ns: str, name: str
    ) -> None:
        status = _map(obj, "status", "")
        addresses = []
        for entry in _maps(status, "addresses", "status."):
            if entry.get("type") in ("InternalIP", "ExternalIP"):
                addresses.append(_ip(entry.get("address"), "status.addresses[].address"))
        self.nodes[name] = Node(
            name=name,
            addresses=tuple(sorted(set(addresses))),
            labels=Labels.of(_str_map(meta, "labels", "metadata.")),
        )

    def _add_controller(
        self, obj: Mapping[str, Any], meta: Mapping[str, Any], ns: str, name: str, kind: str
    ) -> None:
        spec = _map(obj, "spec", "")
        if kind == "CronJob":
            job_spec = _map(_map(spec, "jobTemplate", "spec."), "spec", "spec.jobTemplate.")
            template = _map(job_spec, "template", "spec.jobTemplate.spec.")
        else:
            template = _map(spec, "template", "spec.")
        tmeta = _map(template, "metadata", "spec.template.")
        tspec = _map(template, "spec", "spec.template.")
        self.controllers[(kind, ns, name)] = _Controller(
            kind=kind,
            namespace=ns,
            name=name,
            labels=_str_map(meta, "labels", "metadata."),
            annotations=_annotations(_str_map(meta, "annotations", "metadata.")),
            owner=_owner_ref(meta, ""),
            template_labels=_str_map(tmeta, "labels", "spec.template.metadata.")
            if template
            else None,
            template_annotations=_annotations(
                _str_map(tmeta, "annotations", "spec.template.metadata.")
            ),
            host_network=_bool(tspec, "hostNetwork", "spec.template.spec."),
            created=_timestamp(meta.get("creationTimestamp"), "metadata.creationTimestamp"),
        )

    def _add_pod(self, obj: Mapping[str, Any], meta: Mapping[str, Any], ns: str, name: str) -> None:
        spec = _map(obj, "spec", "")
        status = _map(obj, "status", "")
        ips: list[str] = []
        for entry in _maps(status, "podIPs", "status."):
            ips.append(_ip(entry.get("ip"), "status.podIPs[].ip"))
        pod_ip = status.get("podIP")
        if pod_ip:
            ips.append(_ip(pod_ip, "status.podIP"))
        start = _timestamp(meta.get("creationTimestamp"), "metadata.creationTimestamp")
        end = _timestamp(meta.get("deletionTimestamp"), "metadata.deletionTimestamp")
        if status.get("phase") in ("Succeeded", "Failed"):
            # A finished pod keeps status.podIP, but its address is back in the IPAM pool.
            end = _min_opt(end, self._finished_at(status))
        raw_annotations = _str_map(meta, "annotations", "metadata.")
        ip_since = _timestamp(
            raw_annotations.get(IP_ASSIGNED_ANNOTATION),
            f"metadata.annotations.{IP_ASSIGNED_ANNOTATION}",
        )
        end = _min_opt(
            end,
            _timestamp(
                raw_annotations.get(DELETED_ANNOTATION),
                f"metadata.annotations.{DELETED_ANNOTATION}",
            ),
        )
        rec = _PodRecord(
            namespace=ns,
            name=name,
            uid=_str(meta, "uid", "metadata."),
            labels=_str_map(meta, "labels", "metadata."),
            annotations=_annotations(raw_annotations),
            owner=_owner_ref(meta, ""),
            ips=sorted(set(ips)),
            node=_str(spec, "nodeName", "spec.") or None,
            host_network=_bool(spec, "hostNetwork", "spec."),
            ports=_container_ports(spec),
            service_account=_str(spec, "serviceAccountName", "spec.")
            or _str(spec, "serviceAccount", "spec.")
            or None,
            start=start,
            end=end,
            ip_since=ip_since,
            images=_images(spec),
        )
        key = (ns, name, rec.uid or "")
        old = self.pods.get(key)
        if old is not None:  # the same pod in an earlier snapshot: merge what each one saw
            rec.ips = sorted(set(old.ips) | set(rec.ips))
            rec.start = _min_opt(old.start, rec.start)
            # A deletionTimestamp only moves earlier, and a finished or deleted pod stays so.
            rec.end = _min_opt(old.end, rec.end)
            rec.ip_since = _min_opt(old.ip_since, rec.ip_since)
            rec.node = rec.node or old.node
        self.pods[key] = rec

    @staticmethod
    def _finished_at(status: Mapping[str, Any]) -> float | None:
        latest: float | None = None
        for cs in _maps(status, "containerStatuses", "status."):
            state = _map(cs, "state", "status.containerStatuses[].")
            terminated = _map(state, "terminated", "status.containerStatuses[].state.")
            moment = _timestamp(
                terminated.get("finishedAt"),
                "status.containerStatuses[].state.terminated.finishedAt",
            )
            if moment is not None and (latest is None or moment > latest):
                latest = moment
        return latest

    def _add_service(
        self, obj: Mapping[str, Any], meta: Mapping[str, Any], ns: str, name: str
    ) -> None:
        spec = _map(obj, "spec", "")
        status = _map(obj, "status", "")
        cluster_ips = list(_list(spec, "clusterIPs", "spec."))
        single = _str(spec, "clusterIP", "spec.")
        if single:
            cluster_ips.append(single)
        external = [_ip(v, "spec.externalIPs[]") for v in _list(spec, "externalIPs", "spec.")]
        lb = _map(status, "loadBalancer", "status.")
        lb_ips = [
            _ip(entry["ip"], "status.loadBalancer.ingress[].ip")
            for entry in _maps(lb, "ingress", "status.loadBalancer.")
            if entry.get("ip")
        ]
        self.services[(ns, name)] = Service(
            namespace=ns,
            name=name,
            type=_str(spec, "type", "spec.") or "ClusterIP",
            cluster_ips=tuple(
                sorted(
                    {_ip(ip, "spec.clusterIPs[]") for ip in cluster_ips if ip not in ("None", "")}
                )
            ),
            external_ips=tuple(sorted(set(external))),
            selector=Labels.of(_str_map(spec, "selector", "spec.")),
            ports=tuple(_service_ports(spec, "spec.", slice_ports=False)),
            labels=Labels.of(_str_map(meta, "labels", "metadata.")),
            load_balancer_ips=tuple(sorted(set(lb_ips))),
        )

    def _add_endpointslice(
        self, obj: Mapping[str, Any], meta: Mapping[str, Any], ns: str, name: str
    ) -> None:
        labels = _str_map(meta, "labels", "metadata.")
        service = labels.get(SERVICE_NAME_LABEL)
        if service is None:
            owner = _owner_ref(meta, "")
            service = owner.name if owner is not None and owner.kind == "Service" else None
        endpoints = []
        for entry in _maps(obj, "endpoints", ""):
            addresses = _list(entry, "addresses", "endpoints[].")
            if obj.get("addressType") == "FQDN":
                continue
            ref = _map(entry, "targetRef", "endpoints[].")
            pod = _str(ref, "name", "endpoints[].targetRef.") if ref.get("kind") == "Pod" else None
            endpoints.append(
                SliceEndpoint(
                    addresses=tuple(sorted({_ip(a, "endpoints[].addresses[]") for a in addresses})),
                    pod=pod,
                    node=_str(entry, "nodeName", "endpoints[].") or None,
                )
            )
        self.slices[(ns, name)] = EndpointSlice(
            namespace=ns,
            name=name,
            service=service,
            endpoints=tuple(sorted(endpoints)),
            ports=tuple(sorted(_service_ports(obj, "", slice_ports=True))),
        )

    def _add_endpoints(
        self, obj: Mapping[str, Any], meta: Mapping[str, Any], ns: str, name: str
    ) -> None:
        """Legacy core/v1 Endpoints: kept as a slice, used only when no EndpointSlice exists."""
        endpoints: list[SliceEndpoint] = []
        ports: list[ServicePort] = []
        for subset in _maps(obj, "subsets", ""):
            for key in ("addresses", "notReadyAddresses"):
                for entry in _maps(subset, key, "subsets[]."):
                    ref = _map(entry, "targetRef", f"subsets[].{key}[].")
                    endpoints.append(
                        SliceEndpoint(
                            addresses=(_ip(entry.get("ip"), f"subsets[].{key}[].ip"),),
                            pod=_str(ref, "name", "targetRef.")
                            if ref.get("kind") == "Pod"
                            else None,
                            node=_str(entry, "nodeName", f"subsets[].{key}[].") or None,
                        )
                    )
            ports.extend(_service_ports(subset, "subsets[].", slice_ports=True))
        self.endpoints[(ns, name)] = EndpointSlice(
            namespace=ns,
            name=name,
            service=name,
            endpoints=tuple(sorted(set(endpoints))),
            ports=tuple(sorted(set(ports))),
        )

    # -- freezing -----------------------------------------------------------------------------

    def build(self) -> Inventory:
        for kind, count in sorted(self.skipped.items()):
            logger.warning("skipped %d object(s) of kind %s (not used by segmenter)", count, kind)

        pods_by_owner: dict[WorkloadRef, list[_PodRecord]] = defaultdict(list)
        pods: list[Pod] = []
        for rec in self.pods.values():
            ref = self._top_owner_of_pod(rec)
            pods_by_owner[ref].append(rec)
            pods.append(
                Pod(
                    namespace=rec.namespace,
                    name=rec.name,
                    labels=Labels.of(rec.labels),
                    ips=tuple(rec.ips),
                    owner=ref,
                    node=rec.node,
                    host_network=rec.host_network,
                    ports=tuple(rec.ports),
                    annotations=Labels.of(rec.annotations),
                    service_account=rec.service_account,
                    start=_ip_start(rec),
                    end=rec.end,
                    images=rec.images,
                )
            )

        # Every top owner: those of pods, and controllers in the dump that nothing owns
        # (a Deployment scaled to zero is still a workload).
        refs: set[WorkloadRef] = set(pods_by_owner)
        below: dict[WorkloadRef, list[_Controller]] = defaultdict(list)
        for ctrl in self.controllers.values():
            top = self._top_owner(ctrl.namespace, ctrl.kind, ctrl.name, None)[0]
            refs.add(top)
            if ctrl.owner is not None:
                below[top].append(ctrl)
        workloads = [
            self._workload(ref, pods_by_owner.get(ref, []), below.get(ref, [])) for ref in refs
        ]

        slices = dict(self.slices)
        sliced = {(s.namespace, s.service) for s in slices.values()}
        for key, legacy in self.endpoints.items():
            if (legacy.namespace, legacy.service) not in sliced:
                slices[key] = legacy

        namespaces = dict(self.namespaces)
        for ns in (
            {p.namespace for p in pods}
            | {w.ref.namespace for w in workloads}
            | {s.namespace for s in self.services.values()}
        ):
            namespaces.setdefault(
                ns, Namespace(name=ns, labels=Labels.of({NAMESPACE_NAME_LABEL: ns}))
            )

        return Inventory(
            namespaces=tuple(namespaces[k] for k in sorted(namespaces)),
            nodes=tuple(self.nodes[k] for k in sorted(self.nodes)),
            workloads=tuple(sorted(workloads, key=lambda w: w.ref)),
            pods=tuple(sorted(pods, key=_pod_sort_key)),
            services=tuple(self.services[k] for k in sorted(self.services)),
            endpoint_slices=tuple(slices[k] for k in sorted(slices)),
            sources=tuple(self.sources),
        )

    def _top_owner_of_pod(self, rec: _PodRecord) -> WorkloadRef:
        if rec.owner is None or rec.owner.kind == "Node":  # bare pod, or a static (mirror) pod
            return WorkloadRef(rec.namespace, "Pod", rec.name)
        return self._top_owner(rec.namespace, rec.owner.kind, rec.owner.name, rec.labels)[0]

    def _top_owner(
        self, ns: str, kind: str, name: str, pod_labels: Mapping[str, str] | None
    ) -> tuple[WorkloadRef, list[_Controller]]:
        """Follow owner references to the top; also return the controller objects passed."""
        chain: list[_Controller] = []
        seen: set[tuple[str, str]] = set()
        while (kind, name) not in seen:
            seen.add((kind, name))
            ctrl = self.controllers.get((kind, ns, name))
            if ctrl is not None:
                chain.append(ctrl)
                if ctrl.owner is None or ctrl.owner.kind == "Node":
                    break
                kind, name = ctrl.owner.kind, ctrl.owner.name
                continue
            if kind == "ReplicaSet" and pod_labels is not None:
                pth = pod_labels.get("pod-template-hash")
                if pth and name.endswith("-" + pth) and len(name) > len(pth) + 1:
                    kind, name = "Deployment", name[: -len(pth) - 1]
                    continue
            elif kind == "Job":
                cronjob = self._cronjob_of_job(ns, name)
                if cronjob is not None:
                    kind, name = "CronJob", cronjob
                    continue
            break
        return WorkloadRef(ns, kind, name), chain

    def _cronjob_of_job(self, ns: str, job: str) -> str | None:
        """A Job absent from the dump: the CronJob controller names its Jobs ``<cronjob>-<n>``."""
        head, sep, tail = job.rpartition("-")
        if sep and tail.isdigit() and ("CronJob", ns, head) in self.controllers:
            return head
        return None

    def _workload(
        self, ref: WorkloadRef, pod_recs: list[_PodRecord], below: list[_Controller]
    ) -> Workload:
        pod_recs = sorted(
            pod_recs, key=lambda r: (-math.inf if r.start is None else r.start, r.name, r.uid or "")
        )
        top = self.controllers.get((ref.kind, ref.namespace, ref.name))
        # The controller that describes the pods best: the top owner itself, else the newest
        # intermediate object (a ReplicaSet whose Deployment is not in the dump).
        template_source = top
        if template_source is None and below:
            template_source = max(
                below, key=lambda c: (-math.inf if c.created is None else c.created, c.name)
            )

        pods_stable = [Labels.of(r.labels).stable() for r in pod_recs]
        shared = _intersection(pods_stable)
        if ref.kind == "Pod" and pod_recs:
            rec = pod_recs[-1]
            labels = dict(rec.labels)
            annotations = dict(rec.annotations)
            template_labels = Labels.of(rec.labels).stable()
        elif template_source is not None and template_source.template_labels is not None:
            labels = dict(top.labels) if top is not None else shared.as_dict()
            annotations = dict(top.annotations) if top is not None else {}
            for k, v in template_source.template_annotations.items():
                annotations.setdefault(k, v)
            template_labels = Labels.of(template_source.template_labels).stable()
        else:
            labels = dict(top.labels) if top is not None else shared.as_dict()
            annotations = dict(top.annotations) if top is not None else {}
            template_labels = shared

        # segmenter.io/* declarations must be visible on the workload wherever they were put.
        extra_sources: list[Mapping[str, str]] = []
        if template_source is not None:
            extra_sources.append(template_source.labels)
            extra_sources.append(template_source.template_labels or {})
        extra_sources.extend(r.annotations for r in pod_recs)
        extra_sources.extend(r.labels for r in pod_recs)
        conflicts: set[str] = set()
        for source in extra_sources:
            for k, v in source.items():
                if k.startswith(SEGMENTER_PREFIX) and annotations.setdefault(k, v) != v:
                    if k not in conflicts:
                        logger.warning(
                            "%s: %s is %r, but %r on its pod template or some of its pods; "
                            "using %r",
                            ref.id,
                            k,
                            annotations[k],
                            v,
                            annotations[k],
                        )
                    conflicts.add(k)

        host_network = any(r.host_network for r in pod_recs) or (
            template_source is not None and template_source.host_network
        )
        return Workload(
            ref=ref,
            labels=Labels.of(labels),
            annotations=Labels.of(annotations),
            template_labels=template_labels,
            host_network=host_network,
        )


def _intersection(label_sets: Sequence[Labels]) -> Labels:
    if not label_sets:
        return Labels()
    common = set(label_sets[0].items)
    for labels in label_sets[1:]:
        common &= set(labels.items)
    return Labels(tuple(sorted(common)))


def _ip_start(rec: _PodRecord) -> float | None:
    """When the pod got its IP: a watch's observation when there is one, else its creation."""
    if rec.ip_since is None:
        return rec.start
    if rec.start is None:
        return rec.ip_since
    return max(rec.start, rec.ip_since)  # the watcher's clock may lag the API server's


def _min_opt(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _pod_sort_key(pod: Pod) -> tuple[str, str, float, tuple[str, ...]]:
    return (pod.namespace, pod.name, -math.inf if pod.start is None else pod.start, pod.ips)


# --------------------------------------------------------------------------------------------
# Files


def _read_documents(path: str) -> list[Any]:
    """Parse a JSON or YAML file into its documents; raise InputError on a syntax error."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("no such file", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", path=path) from None
    stripped = text.lstrip()
    if not stripped:
        raise InputError("empty file, expected a Kubernetes object or List", path=path)
    if stripped[0] in "{[":
        try:
            return [json.loads(text)]
        except json.JSONDecodeError as exc:
            raise InputError(
                f"malformed JSON: {exc.msg}",
                path=path,
                record=f"line {exc.lineno} column {exc.colno}",
            ) from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        documents = [doc for doc in yaml.load_all(text, Loader=loader) if doc is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        record = f"line {mark.line + 1} column {mark.column + 1}" if mark is not None else None
        raise InputError(f"malformed YAML: {problem}", path=path, record=record) from None
    if not text.endswith("\n"):
        # kubectl and YAML dumpers end files with a newline; a YAML stream cut short can still
        # parse, its last object silently missing fields (a pod without its status and IP).
        logger.warning(
            "%s does not end with a newline: if it was cut short, its last object is incomplete",
            path,
        )
    return documents


def _describe(obj: Any, default_kind: str | None) -> str:
    if not isinstance(obj, Mapping):
        return ""
    kind = obj.get("kind") or default_kind
    prefix = f"{kind} " if isinstance(kind, str) and kind else ""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return f" ({prefix.strip()})" if prefix else ""
    name = meta.get("name") or "?"
    ns = meta.get("namespace")
    return f" ({prefix}{ns}/{name})" if ns else f" ({prefix}{name})"


def _iter_objects(docs: Sequence[Any]) -> Iterator[tuple[str, Any, str | None]]:
    """Yield (record label, object, default kind) for every object of every document.

    Items are numbered from 1 in file order, across documents.
    """
    number = 0
    for doc_index, doc in enumerate(docs, start=1):
        if isinstance(doc, list):  # a bare JSON array of objects
            items: list[Any] = doc
            default_kind: str | None = None
        elif (
            isinstance(doc, Mapping)
            and (
                isinstance(doc.get("items"), list)
                # Go serialises an empty list as null: {"kind": "PodList", "items": null}
                or ("items" in doc and doc["items"] is None and "kind" in doc)
            )
            and (str(doc.get("kind", "List")).endswith("List"))
        ):
            items = doc["items"] or []
            list_kind = str(doc.get("kind", "List"))
            default_kind = list_kind[: -len("List")] or None  # PodList items carry no kind
        else:
            if not isinstance(doc, Mapping):
                where = f"document {doc_index}" if len(docs) > 1 else "document"
                raise _BadDocument(
                    where, f"expected a Kubernetes object or List, got {type_name(doc)}"
                )
            items = [doc]
            default_kind = None
        for item in items:
            number += 1
            yield f"item {number}{_describe(item, default_kind)}", item, default_kind


class _BadDocument(Exception):
    def __init__(self, where: str, message: str):
        super().__init__(message)
        self.where = where
        self.message = message


def parse_documents(documents: Sequence[Any], *, source: str) -> Inventory:
    """Build an Inventory from already-decoded documents: objects, ``List``s or ``PodList``s.

    This is the parser behind :func:`load_inventory`; :mod:`segmenter.kube_live` feeds it the
    API server's list responses. ``source`` names the origin in error messages (a file path or
    a cluster URL). Items of a ``<Kind>List`` without their own ``kind`` (as the API server
    returns them) are taken to be ``<Kind>``.
    """
    builder = _Builder()
    builder.sources.append(source)
    _add_all(builder, _iter_objects(documents), source)
    return builder.build()


def _add_all(
    builder: _Builder, objects: Iterable[tuple[str, Any, str | None]], source: str
) -> None:
    try:
        for record, obj, default_kind in objects:
            if not isinstance(obj, Mapping):
                raise InputError(
                    f"expected a Kubernetes object, got {type_name(obj)}",
                    path=source,
                    record=record,
                )
            try:
                builder.add(obj, default_kind)
            except _BadRecord as exc:
                raise InputError(str(exc), path=source, record=record) from None
    except _BadDocument as exc:
        raise InputError(exc.message, path=source, record=exc.where) from None


def load_inventory(paths: Sequence[str]) -> Inventory:
    """Read ``kubectl get … -o json|yaml`` dumps (or one inventory cache file) and merge them.

    A pod seen in several snapshots is one pod (same namespace, name and uid); for other objects
    the last file given wins. Unknown kinds are skipped with a warning. A malformed file or object
    raises :class:`InputError` naming the file and the item (numbered from 1).
    """
    if isinstance(paths, (str, Path)):
        paths = [str(paths)]
    if not paths:
        raise InputError("no inventory file given")
    builder = _Builder()
    caches: list[tuple[str, Inventory]] = []
    for path in paths:
        docs = _read_documents(str(path))
        if (
            len(docs) == 1
            and isinstance(docs[0], Mapping)
            and docs[0].get("format") == CACHE_FORMAT
        ):
            caches.append((str(path), inventory_from_dict(docs[0], path=str(path))))
            continue
        builder.sources.append(str(path))
        _add_all(builder, _iter_objects(docs), str(path))
    if caches:
        if len(caches) > 1 or builder.sources:
            raise InputError(
                "an inventory cache cannot be merged with other inventory files; give it alone",
                path=caches[0][0],
            )
        return caches[0][1]
    return builder.build()


# --------------------------------------------------------------------------------------------
# JSON cache of a parsed Inventory


def _labels_dict(labels: Labels) -> dict[str, str]:
    return labels.as_dict()


def _ref_dict(ref: WorkloadRef) -> dict[str, str]:
    return {"namespace": ref.namespace, "kind": ref.kind, "name": ref.name}


def _sp_dict(sp: ServicePort) -> dict[str, Any]:
    return {
        "port": sp.port,
        "protocol": sp.protocol.value,
        "target_port": sp.target_port,
        "name": sp.name,
        "node_port": sp.node_port,
    }


def inventory_to_dict(inventory: Inventory) -> dict[str, Any]:
    """A JSON-ready dict of the inventory; the same inventory always gives the same dict."""
    return {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "sources": list(inventory.sources),
        "namespaces": [
            {
                "name": ns.name,
                "labels": _labels_dict(ns.labels),
                "annotations": _labels_dict(ns.annotations),
            }
            for ns in inventory.namespaces
        ],
        "nodes": [
            {"name": n.name, "addresses": list(n.addresses), "labels": _labels_dict(n.labels)}
            for n in inventory.nodes
        ],
        "workloads": [
            {
                "ref": _ref_dict(w.ref),
                "labels": _labels_dict(w.labels),
                "annotations": _labels_dict(w.annotations),
                "template_labels": _labels_dict(w.template_labels),
                "host_network": w.host_network,
            }
            for w in inventory.workloads
        ],
        "pods": [
            {
                "namespace": p.namespace,
                "name": p.name,
                "labels": _labels_dict(p.labels),
                "ips": list(p.ips),
                "owner": _ref_dict(p.owner),
                "node": p.node,
                "host_network": p.host_network,
                "ports": [
                    {"port": c.port, "protocol": c.protocol.value, "name": c.name} for c in p.ports
                ],
                "annotations": _labels_dict(p.annotations),
                "service_account": p.service_account,
                "start": p.start,
                "end": p.end,
                "images": list(p.images),
            }
            for p in inventory.pods
        ],
        "services": [
            {
                "namespace": s.namespace,
                "name": s.name,
                "type": s.type,
                "cluster_ips": list(s.cluster_ips),
                "external_ips": list(s.external_ips),
                "load_balancer_ips": list(s.load_balancer_ips),
                "selector": _labels_dict(s.selector),
                "ports": [_sp_dict(sp) for sp in s.ports],
                "labels": _labels_dict(s.labels),
            }
            for s in inventory.services
        ],
        "endpoint_slices": [
            {
                "namespace": es.namespace,
                "name": es.name,
                "service": es.service,
                "endpoints": [
                    {"addresses": list(e.addresses), "pod": e.pod, "node": e.node}
                    for e in es.endpoints
                ],
                "ports": [_sp_dict(sp) for sp in es.ports],
            }
            for es in inventory.endpoint_slices
        ],
    }


def inventory_from_dict(data: Mapping[str, Any], *, path: str | None = None) -> Inventory:
    """Rebuild an Inventory from :func:`inventory_to_dict` output; InputError when malformed."""
    if data.get("format") != CACHE_FORMAT:
        raise InputError(f"not a {CACHE_FORMAT} file", path=path)
    version = data.get("version")
    if version != CACHE_VERSION:
        raise InputError(
            f"inventory cache version {version!r} is not supported (this reader knows "
            f"{CACHE_VERSION})",
            path=path,
        )
    section = "?"
    index = 0
    try:

        def ref(d: Mapping[str, Any]) -> WorkloadRef:
            return WorkloadRef(str(d["namespace"]), str(d["kind"]), str(d["name"]))

        def sp(d: Mapping[str, Any]) -> ServicePort:
            return ServicePort(
                port=int(d["port"]),
                protocol=Transport.parse(d.get("protocol") or "TCP"),
                target_port=d.get("target_port"),
                name=d.get("name"),
                node_port=d.get("node_port"),
            )

        def items(name: str) -> Iterator[Mapping[str, Any]]:
            nonlocal section, index
            section = name
            for index, item in enumerate(data.get(name) or []):  # noqa: B007
                yield item

        namespaces = tuple(
            Namespace(d["name"], Labels.of(d.get("labels")), Labels.of(d.get("annotations")))
            for d in items("namespaces")
        )
        nodes = tuple(
            Node(d["name"], tuple(d.get("addresses") or ()), Labels.of(d.get("labels")))
            for d in items("nodes")
        )
        workloads = tuple(
            Workload(
                ref=ref(d["ref"]),
                labels=Labels.of(d.get("labels")),
                annotations=Labels.of(d.get("annotations")),
                template_labels=Labels.of(d.get("template_labels")),
                host_network=bool(d.get("host_network", False)),
            )
            for d in items("workloads")
        )
        pods = tuple(
            Pod(
                namespace=d["namespace"],
                name=d["name"],
                labels=Labels.of(d.get("labels")),
                ips=tuple(d.get("ips") or ()),
                owner=ref(d["owner"]),
                node=d.get("node"),
                host_network=bool(d.get("host_network", False)),
                ports=tuple(
                    ContainerPort(
                        int(c["port"]), Transport.parse(c.get("protocol") or "TCP"), c.get("name")
                    )
                    for c in d.get("ports") or ()
                ),
                annotations=Labels.of(d.get("annotations")),
                service_account=d.get("service_account"),
                start=d.get("start"),
                end=d.get("end"),
                images=tuple(d.get("images") or ()),
            )
            for d in items("pods")
        )
        services = tuple(
            Service(
                namespace=d["namespace"],
                name=d["name"],
                type=d.get("type") or "ClusterIP",
                cluster_ips=tuple(d.get("cluster_ips") or ()),
                external_ips=tuple(d.get("external_ips") or ()),
                selector=Labels.of(d.get("selector")),
                ports=tuple(sp(p) for p in d.get("ports") or ()),
                labels=Labels.of(d.get("labels")),
                load_balancer_ips=tuple(d.get("load_balancer_ips") or ()),
            )
            for d in items("services")
        )
        slices = tuple(
            EndpointSlice(
                namespace=d["namespace"],
                name=d["name"],
                service=d.get("service"),
                endpoints=tuple(
                    SliceEndpoint(tuple(e.get("addresses") or ()), e.get("pod"), e.get("node"))
                    for e in d.get("endpoints") or ()
                ),
                ports=tuple(sp(p) for p in d.get("ports") or ()),
            )
            for d in items("endpoint_slices")
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(
            f"malformed inventory cache: {type(exc).__name__}: {exc}",
            path=path,
            record=f"{section}[{index}]",
        ) from None
    return Inventory(
        namespaces=namespaces,
        nodes=nodes,
        workloads=workloads,
        pods=pods,
        services=services,
        endpoint_slices=slices,
        sources=tuple(str(s) for s in data.get("sources") or ()),
    )


# --------------------------------------------------------------------------------------------
# Cluster DNS


_OPENSHIFT_DNS_LABEL: Final = "dns.operator.openshift.io/daemonset-dns"


def _dns_service(inventory: Inventory) -> Service | None:
    for svc in inventory.services:
        if (svc.namespace, svc.name) in (
            ("kube-system", "kube-dns"),
            ("openshift-dns", "dns-default"),
        ):
            return svc
    return None


def dns_service_ips(inventory: Inventory) -> tuple[str, ...]:
    """ClusterIPs of the cluster DNS Service (``kube-system/kube-dns`` or OpenShift's)."""
    svc = _dns_service(inventory)
    return tuple(sorted(svc.cluster_ips)) if svc is not None else ()


def dns_workload(inventory: Inventory) -> WorkloadRef | None:
    """The workload that serves cluster DNS (CoreDNS / kube-dns), or None when not found.

    The backend of Service ``kube-system/kube-dns``; else pods labelled ``k8s-app=kube-dns``;
    else OpenShift's ``dns.operator.openshift.io/daemonset-dns`` pods. Several candidates: the
    one with most pods, then the smallest id.
    """
    return _dns_workload(inventory, None)


def _dns_workload(
    inventory: Inventory, backend_of: Mapping[tuple[str, str], _Backend | None] | None
) -> WorkloadRef | None:
    svc = _dns_service(inventory)
    if svc is not None:
        if backend_of is not None:
            backend = backend_of.get((svc.namespace, svc.name))
        else:
            backend = _ServiceBackends(inventory).backend_of(svc)
        if backend is not None and backend.target.count("/") == 2:
            return WorkloadRef.parse(backend.target)
    for key, value in (("k8s-app", "kube-dns"), (_OPENSHIFT_DNS_LABEL, None)):
        counts: Counter[WorkloadRef] = Counter(
            p.owner
            for p in inventory.pods
            if (p.labels.get(key) == value if value is not None else p.labels.get(key) is not None)
        )
        if counts:
            return min(counts, key=lambda r: (-counts[r], r))
    return None


# --------------------------------------------------------------------------------------------
# Resolution


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where a flow endpoint lands: a graph node id and the port as the server pod sees it.

    ``how`` says which rule matched: ``pod``, ``service`` (ClusterIP, externalIP or load-balancer
    IP), ``nodeport``, ``nodelocal-dns``, ``apiserver``, ``node`` or ``external``. For
    ``service``, ``nodeport`` and ``nodelocal-dns`` the address was rewritten (DNAT) on the way.
    """

    node_id: str
    port: int | None
    via_service: str | None = None
    how: str = "external"

    @property
    def dnat(self) -> bool:
        return self.how in DNAT_HOWS

    @property
    def workload(self) -> WorkloadRef | None:
        return WorkloadRef.parse(self.node_id) if self.node_id.count("/") == 2 else None


DNAT_HOWS: Final = frozenset({"service", "nodeport", "nodelocal-dns"})


def node_node_id(name: str) -> str:
    return f"node:{name}"


def external_node_id(ip: str) -> str:
    return f"external:{ip}"


@dataclass(frozen=True)
class _Backend:
    target: str  # graph node id
    how: str
    pods: tuple[Pod, ...]
    # (transport, port name) -> numbers that EndpointSlices give for it
    slice_ports: Mapping[tuple[Transport, str | None], tuple[int, ...]] = field(
        default_factory=dict
    )


class _ServiceBackends:
    """Which graph node serves each Service, from EndpointSlices, else from its selector."""

    def __init__(self, inventory: Inventory, pod_index: Mapping[str, list[Pod]] | None = None):
        self.inventory = inventory
        self.pods_by_name: dict[tuple[str, str], list[Pod]] = defaultdict(list)
        # (namespace, label key, label value) -> pods, in inventory order, for selectors
        self.postings: dict[tuple[str, str, str], list[Pod]] = defaultdict(list)
        for pod in inventory.pods:
            self.pods_by_name[(pod.namespace, pod.name)].append(pod)
            for k, v in pod.labels.items:
                self.postings[(pod.namespace, k, v)].append(pod)
        if pod_index is None:
            index: dict[str, list[Pod]] = defaultdict(list)
            for pod in inventory.pods:
                for ip in pod.ips:
                    index[ip].append(pod)
            pod_index = index
        self.pod_index = pod_index
        self.node_of_ip: dict[str, str] = {}
        for node in inventory.nodes:
            for ip in node.addresses:
                self.node_of_ip[ip] = node.name
        self.slices_of: dict[tuple[str, str], list[EndpointSlice]] = defaultdict(list)
        for es in inventory.endpoint_slices:
            if es.service is not None:
                self.slices_of[(es.namespace, es.service)].append(es)
        self._logged: set[str] = set()

    def backend_of(self, svc: Service) -> _Backend | None:
        key = f"{svc.namespace}/{svc.name}"
        votes: Counter[str] = Counter()
        members: dict[str, list[Pod]] = defaultdict(list)
        hows: dict[str, str] = {}
        slice_ports: dict[tuple[Transport, str | None], set[int]] = defaultdict(set)
        slices = self.slices_of.get((svc.namespace, svc.name), [])
        for es in slices:
            for sp in es.ports:
                slice_ports[(sp.protocol, sp.name)].add(sp.port)
            for ep in es.endpoints:
                target, how, pod = self._endpoint_target(svc.namespace, ep)
                if target is None:
                    continue
                votes[target] += 1
                hows[target] = how
                if pod is not None:
                    members[target].append(pod)
        if not slices and svc.selector:
            for pod in self.select(svc.namespace, svc.selector):
                target = (
                    pod.owner.id
                    if not pod.host_network
                    else node_node_id(pod.node or (pod.ips[0] if pod.ips else pod.name))
                )
                votes[target] += 1
                hows[target] = "pod" if not pod.host_network else "node"
                members[target].append(pod)
        if not votes:
            return None
        chosen = min(votes, key=lambda t: (-votes[t], t))
        if len(votes) > 1 and key not in self._logged:
            self._logged.add(key)
            logger.info(
                "Service %s has backends in %d workloads (%s); its addresses are attributed "
                "to %s, the one with most endpoints",
                key,
                len(votes),
                ", ".join(sorted(votes)),
                chosen,
            )
        return _Backend(
            target=chosen,
            how=hows[chosen],
            pods=tuple(members.get(chosen, ())),
            slice_ports={k: tuple(sorted(v)) for k, v in slice_ports.items()},
        )

    def select(self, namespace: str, selector: Labels) -> list[Pod]:
        """Pods of ``namespace`` whose labels match the (non-empty) equality ``selector``."""
        lists = [self.postings.get((namespace, k, v), []) for k, v in selector.items]
        if not lists or not all(lists):
            return []
        lists.sort(key=len)
        others = [{id(p) for p in posting} for posting in lists[1:]]
        return [p for p in lists[0] if all(id(p) in other for other in others)]

    def _endpoint_target(self, ns: str, ep: SliceEndpoint) -> tuple[str | None, str, Pod | None]:
        if ep.pod is not None:
            candidates = self.pods_by_name.get((ns, ep.pod), [])
            if candidates:
                pod = next(
                    (p for p in candidates if set(p.ips) & set(ep.addresses)), candidates[-1]
                )
                if pod.host_network:
                    return node_node_id(pod.node or ep.node or pod.name), "node", pod
                return pod.owner.id, "pod", pod
        for ip in ep.addresses:
            pods = [
                p for p in self.pod_index.get(ip, []) if p.namespace == ns
            ] or self.pod_index.get(ip, [])
            if pods:
                pod = pods[-1]
                if pod.host_network:
                    return node_node_id(pod.node or ip), "node", pod
                return pod.owner.id, "pod", pod
            if ip in self.node_of_ip:
                return node_node_id(self.node_of_ip[ip]), "node", None
            return external_node_id(ip), "external", None
        return None, "", None


def resolve_target_port(sp: ServicePort, backend: _Backend | None, *, service: str = "?") -> int:
    """The port a Service port forwards to, as the backend pods see it."""
    target = sp.target_port
    if target is None:
        return sp.port
    if isinstance(target, int):
        return target
    numbers: Counter[int] = Counter()
    if backend is not None:
        for pod in backend.pods:
            for cp in pod.ports:
                if cp.name == target and cp.protocol == sp.protocol:
                    numbers[cp.port] += 1
        if not numbers:
            for number in backend.slice_ports.get((sp.protocol, sp.name), ()):
                numbers[number] += 1
    if not numbers:
        logger.warning(
            "Service %s: target port %r (%s) is not declared by any backend pod; using port %d",
            service,
            target,
            sp.protocol.value,
            sp.port,
        )
        return sp.port
    chosen = min(numbers, key=lambda n: (-numbers[n], n))
    if len(numbers) > 1:
        logger.warning(
            "Service %s: target port %r means %s on different backend pods; using %d",
            service,
            target,
            ", ".join(str(n) for n in sorted(numbers)),
            chosen,
        )
    return chosen


class _TimedPods:
    """Pods that held one IP at different times (IP reuse), sorted by start time."""

    __slots__ = ("ends", "starts", "targets")

    def __init__(self, entries: list[tuple[float, float, str]]):
        entries.sort()
        self.starts = [e[0] for e in entries]
        self.ends = [e[1] for e in entries]
        self.targets = [e[2] for e in entries]

    def at(self, ts: float) -> str:
        starts, ends = self.starts, self.ends
        i = bisect.bisect_right(starts, ts) - 1
        # The latest-started pod whose interval contains ts.
        j = i
        while j >= 0:
            if ends[j] >= ts:
                return self.targets[j]
            j -= 1
        # None contains ts: the nearest in time (before: since its end; after: until its start).
        best, best_gap = 0, math.inf
        if i >= 0:
            k = max(range(i + 1), key=lambda n: ends[n])
            best, best_gap = k, ts - ends[k]
        if i + 1 < len(starts) and starts[i + 1] - ts < best_gap:
            best = i + 1
        return self.targets[best]


class Resolver:
    """Maps (ip, port, transport, time) of a flow endpoint to a graph node.

    All indexes are built once here; :meth:`resolve` is a few dict lookups, with results cached
    per (ip, port, transport) unless the IP was reused by several workloads over time.
    """

    def __init__(self, inventory: Inventory):
        self.inventory = inventory
        pod_index: dict[str, list[Pod]] = defaultdict(list)
        for pod in inventory.pods:
            for ip in pod.ips:
                pod_index[ip].append(pod)
        backends = _ServiceBackends(inventory, pod_index)

        # Node addresses: cluster nodes, and hostNetwork pods (their IP is their node's).
        self._node_ip: dict[str, str] = {}
        for pod in inventory.pods:
            if pod.host_network:
                for ip in pod.ips:
                    self._node_ip[ip] = node_node_id(pod.node or ip)
        for node in inventory.nodes:
            for ip in node.addresses:
                self._node_ip[ip] = node_node_id(node.name)

        # Pod IPs (not hostNetwork): one workload, or several over time.
        self._pod_ip: dict[str, Resolved | _TimedPods] = {}
        for ip, holders in pod_index.items():
            pods = [p for p in holders if not p.host_network]
            if not pods:
                continue
            owners = {p.owner.id for p in pods}
            if len(owners) == 1:
                self._pod_ip[ip] = Resolved(owners.pop(), None, None, "pod")
            else:
                self._pod_ip[ip] = _TimedPods(
                    [
                        (
                            -math.inf if p.start is None else p.start,
                            math.inf if p.end is None else p.end,
                            p.owner.id,
                        )
                        for p in pods
                    ]
                )

        # The API server: the default/kubernetes Service and its EndpointSlice.
        self._apiserver_addrs: set[str] = set()
        self._apiserver_slice_ports: list[ServicePort] = []
        for es in inventory.endpoint_slices:
            if es.namespace == "default" and es.service == "kubernetes":
                for ep in es.endpoints:
                    self._apiserver_addrs.update(ep.addresses)
                self._apiserver_slice_ports.extend(es.ports)
        self._apiserver_ports = {sp.port for sp in self._apiserver_slice_ports}

        # Service addresses: (ip, transport, port) -> Resolved, plus a port-less fallback for
        # ClusterIPs; NodePorts: (transport, nodePort) -> Resolved.
        self._vip: dict[tuple[str, Transport, int], Resolved] = {}
        self._cluster_ip: dict[str, Resolved] = {}
        self._node_port: dict[tuple[Transport, int], Resolved] = {}
        self._backend_of: dict[tuple[str, str], _Backend | None] = {}
        for svc in inventory.services:
            name = f"{svc.namespace}/{svc.name}"
            if svc.type == "ExternalName":
                continue
            if (svc.namespace, svc.name) == ("default", "kubernetes"):
                self._add_apiserver_service(svc, name)
                continue
            backend = backends.backend_of(svc)
            self._backend_of[(svc.namespace, svc.name)] = backend
            if backend is None:
                if svc.cluster_ips or svc.external_ips or svc.load_balancer_ips:
                    logger.warning(
                        "Service %s has no backend in the inventory (no EndpointSlice and no pod "
                        "matching its selector); flows to its addresses stay external",
                        name,
                    )
                for ip in svc.cluster_ips:
                    self._cluster_ip[ip] = Resolved(external_node_id(ip), None, name, "external")
                continue
            how = "service"
            for sp in svc.ports:
                tport = resolve_target_port(sp, backend, service=name)
                res = Resolved(backend.target, tport, name, how)
                for ip in (*svc.cluster_ips, *svc.external_ips, *svc.load_balancer_ips):
                    self._vip.setdefault((ip, sp.protocol, sp.port), res)
                if sp.node_port is not None:
                    self._node_port.setdefault(
                        (sp.protocol, sp.node_port),
                        Resolved(backend.target, tport, name, "nodeport"),
                    )
            for ip in svc.cluster_ips:
                self._cluster_ip.setdefault(ip, Resolved(backend.target, None, name, how))

        # Cluster DNS, for NodeLocal DNSCache link-local addresses.
        self._dns: dict[Transport, Resolved] = {}
        dns_ref = _dns_workload(inventory, self._backend_of)
        if dns_ref is not None:
            dns_svc = _dns_service(inventory)
            for transport in (Transport.UDP, Transport.TCP):
                port = DNS_PORT
                if dns_svc is not None:
                    for sp in dns_svc.ports:
                        if sp.port == DNS_PORT and sp.protocol == transport:
                            port = resolve_target_port(
                                sp,
                                self._backend_of.get((dns_svc.namespace, dns_svc.name)),
                                service=f"{dns_svc.namespace}/{dns_svc.name}",
                            )
                self._dns[transport] = Resolved(dns_ref.id, port, None, "nodelocal-dns")

        self._cache: dict[tuple[str, int | None, Transport], Resolved | _TimedPods] = {}
        self._pod_results: dict[tuple[str, int | None], Resolved] = {}

    def _add_apiserver_service(self, svc: Service, name: str) -> None:
        for sp in svc.ports:
            # The real port: from the default/kubernetes EndpointSlice (e.g. 6443), else the
            # Service's numeric targetPort, else its port.
            port: int
            if len(self._apiserver_ports) == 1:
                port = next(iter(self._apiserver_ports))
            elif self._apiserver_ports:
                named = [p for p in self._apiserver_slice_ports if p.name == sp.name]
                port = named[0].port if named else min(self._apiserver_ports)
            elif isinstance(sp.target_port, int):
                port = sp.target_port
            else:
                port = sp.port
            res = Resolved(APISERVER_NODE, port, name, "service")
            for ip in svc.cluster_ips:
                self._vip.setdefault((ip, sp.protocol, sp.port), res)
        for ip in svc.cluster_ips:
            self._cluster_ip.setdefault(ip, Resolved(APISERVER_NODE, None, name, "service"))

    def resolve(self, ip: str, port: int | None, transport: Transport, ts: float) -> Resolved:
        """The graph node behind ``ip:port`` at time ``ts`` and the port its pod sees.

        Pass ``port=None`` for a flow's client side (its ephemeral port means nothing).
        """
        key = (ip, port, transport)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._classify(ip, port, transport)
            if len(self._cache) > 2_000_000:
                self._cache.clear()
            self._cache[key] = hit
        if type(hit) is Resolved:
            return hit
        assert isinstance(hit, _TimedPods)
        target = hit.at(ts)
        result = self._pod_results.get((target, port))
        if result is None:
            result = self._pod_results[(target, port)] = Resolved(target, port, None, "pod")
        return result

    def _classify(self, ip: str, port: int | None, transport: Transport) -> Resolved | _TimedPods:
        if ":" in ip:  # IPv6: the inventory holds compressed forms
            try:
                canonical = str(ipaddress.ip_address(ip))
            except ValueError:
                return Resolved(external_node_id(ip), port, None, "external")
            if canonical != ip:
                return self._classify(canonical, port, transport)
        if port == DNS_PORT and ip.startswith(NODE_LOCAL_DNS_PREFIX) and transport in self._dns:
            return self._dns[transport]
        if port is not None:
            res = self._vip.get((ip, transport, port))
            if res is not None:
                return res
        res = self._cluster_ip.get(ip)
        if res is not None:  # a ClusterIP on a port the Service does not define
            return (
                Resolved(res.node_id, port, res.via_service, res.how) if port is not None else res
            )
        if ip in self._apiserver_addrs and (
            # An endpoint address that is also a node's (kind, kubeadm): the API server only on
            # its own port; other ports of that address (kubelet, NodePorts) are the node.
            ip not in self._node_ip
            or (port is not None and (not self._apiserver_ports or port in self._apiserver_ports))
        ):
            return Resolved(APISERVER_NODE, port, None, "apiserver")
        pod = self._pod_ip.get(ip)
        if pod is not None:
            if isinstance(pod, Resolved):
                return pod if port is None else Resolved(pod.node_id, port, None, "pod")
            return pod
        node = self._node_ip.get(ip)
        if node is not None:
            if port is not None:
                res = self._node_port.get((transport, port))
                if res is not None:
                    return res
            return Resolved(node, port, None, "node")
        return Resolved(external_node_id(ip), port, None, "external")

    def apiserver_addresses(self) -> tuple[str, ...]:
        return tuple(sorted(self._apiserver_addrs))

    def node_addresses(self) -> dict[str, tuple[str, ...]]:
        """``node:<name>`` -> its addresses (node objects and hostNetwork pod IPs)."""
        out: dict[str, set[str]] = defaultdict(set)
        for ip, node_id in self._node_ip.items():
            out[node_id].add(ip)
        return {k: tuple(sorted(v)) for k, v in out.items()}


def is_private(ip: str) -> bool:
    """RFC 1918, IPv6 ULA (fc00::/7), CGNAT (100.64.0.0/10) or link-local."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in _PRIVATE_NETS if net.version == addr.version)


_PRIVATE_NETS: Final = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
    )
)
