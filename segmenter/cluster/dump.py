"""Kubernetes inventory from ``kubectl get … -o json|yaml`` dumps.

``load_dumps`` reads one or more dumps (a ``List``, several YAML documents or single objects;
several files or snapshots merge) into the frozen :class:`~segmenter.model.Inventory`. Pods are
collapsed to their top owner (Pod → ReplicaSet → Deployment, Pod → Job → CronJob, StatefulSet,
DaemonSet, or the bare Pod), through ownerReferences and, where the owner object is not in the
dump, through the names the controllers give: a ReplicaSet ``<deployment>-<pod-template-hash>``,
a CronJob's Job ``<cronjob>-<scheduled minute>`` (``_Builder._cronjob_of_job`` says when).
``parse_documents`` is the same parser for objects that come from elsewhere (the live API in
:mod:`segmenter.cluster.live`). Snapshots written by
:mod:`segmenter.cluster.watch` carry ``watch.segmenter.io/*`` pod annotations that bound the
interval during which each pod held its IP.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from segmenter.cluster.cache import CACHE_FORMAT, inventory_from_dict
from segmenter.cluster.fields import (
    DELETED_ANNOTATION,
    IP_ASSIGNED_ANNOTATION,
    BadRecord,
    ControllerRecord,
    PodRecord,
    container_ports,
    get_bool,
    get_cidr,
    get_ip,
    get_list,
    get_map,
    get_maps,
    get_str,
    get_str_map,
    images,
    kept_annotations,
    owner_ref,
    parse_timestamp,
    service_ports,
)
from segmenter.documents import iter_yaml, parse_json, read_text
from segmenter.errors import InputError, type_name
from segmenter.gcpause import no_gc
from segmenter.k8s import NAMESPACE_NAME_LABEL, SERVICE_NAME_LABEL
from segmenter.model import (
    EndpointSlice,
    Inventory,
    Labels,
    Namespace,
    Node,
    Pod,
    Service,
    ServicePort,
    SliceEndpoint,
    Workload,
    WorkloadRef,
)

logger = logging.getLogger(__name__)

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

# Label/annotation prefix of this project's own declarations (e.g. segmenter.io/data-class).
SEGMENTER_PREFIX: Final = "segmenter.io/"

# Naming a CronJob from a run's Job name (_Builder._cronjob_of_job): a CronJob name is at most
# 52 characters (the API's validation leaves 11 for "-<minutes>" in a 63-character Job name).
MAX_CRONJOB_NAME: Final = 52
MAX_JOB_POD_LAG: Final = 7 * 86400.0
CRONJOB_EPOCH: Final = 1_451_606_400.0  # 2016-01-01T00:00:00Z
CRONJOB_HORIZON: Final = 4_102_444_800.0  # 2100-01-01T00:00:00Z

# --------------------------------------------------------------------------------------------
# The builder: accumulates objects from any number of files, then freezes an Inventory.


class _Builder:
    def __init__(self) -> None:
        self.namespaces: dict[str, Namespace] = {}
        self.nodes: dict[str, Node] = {}
        self.controllers: dict[tuple[str, str, str], ControllerRecord] = {}
        self.pods: dict[tuple[str, str, str], PodRecord] = {}
        self.services: dict[tuple[str, str], Service] = {}
        self.slices: dict[tuple[str, str], EndpointSlice] = {}
        self.endpoints: dict[tuple[str, str], EndpointSlice] = {}  # legacy v1 Endpoints
        self.skipped: Counter[str] = Counter()
        self.sources: list[str] = []
        self._inferred_jobs: set[tuple[str, str]] = set()

    # -- reading ------------------------------------------------------------------------------

    def add(self, obj: Mapping[str, Any], default_kind: str | None) -> None:
        kind = obj.get("kind") or default_kind
        if not isinstance(kind, str) or not kind:
            raise BadRecord("object has no kind")
        meta = obj.get("metadata")
        if not isinstance(meta, Mapping):
            raise BadRecord(f"{kind} has no metadata")
        name = meta.get("name")
        if name is None or name == "":
            raise BadRecord(f"{kind} has no metadata.name")
        if not isinstance(name, str):
            raise BadRecord(f"metadata.name must be a string, not {type_name(name)}")
        if kind not in KNOWN_KINDS:
            self.skipped[kind] += 1
            return
        namespace = ""
        if kind not in CLUSTER_SCOPED_KINDS:
            namespace = get_str(meta, "namespace", "metadata.") or "default"
        if kind in CONTROLLER_KINDS:
            self._add_controller(obj, meta, namespace, name, kind)
        else:
            getattr(self, f"_add_{kind.lower()}")(obj, meta, namespace, name)

    def _add_namespace(
        self, obj: Mapping[str, Any], meta: Mapping[str, Any], _ns: str, name: str
    ) -> None:
        labels = get_str_map(meta, "labels", "metadata.")
        labels.setdefault(NAMESPACE_NAME_LABEL, name)  # set by the API server since 1.22
        self.namespaces[name] = Namespace(
            name=name,
            labels=Labels.of(labels),
            annotations=Labels.of(kept_annotations(get_str_map(meta, "annotations", "metadata."))),
        )

    def _add_node(
        self, obj: Mapping[str, Any], meta: Mapping[str, Any], _ns: str, name: str
    ) -> None:
        status = get_map(obj, "status", "")
        addresses = []
        for entry in get_maps(status, "addresses", "status."):
            if entry.get("type") in ("InternalIP", "ExternalIP"):
                addresses.append(get_ip(entry.get("address"), "status.addresses[].address"))
        spec = get_map(obj, "spec", "")
        pod_cidrs = [get_cidr(v, "spec.podCIDRs[]") for v in get_list(spec, "podCIDRs", "spec.")]
        single = get_str(spec, "podCIDR", "spec.")
        if single:
            pod_cidrs.append(get_cidr(single, "spec.podCIDR"))
        self.nodes[name] = Node(
            name=name,
            addresses=tuple(sorted(set(addresses))),
            labels=Labels.of(get_str_map(meta, "labels", "metadata.")),
            pod_cidrs=tuple(sorted(set(pod_cidrs))),
        )

    def _add_controller(
        self, obj: Mapping[str, Any], meta: Mapping[str, Any], ns: str, name: str, kind: str
    ) -> None:
        spec = get_map(obj, "spec", "")
        if kind == "CronJob":
            job_spec = get_map(get_map(spec, "jobTemplate", "spec."), "spec", "spec.jobTemplate.")
            template = get_map(job_spec, "template", "spec.jobTemplate.spec.")
        else:
            template = get_map(spec, "template", "spec.")
        tmeta = get_map(template, "metadata", "spec.template.")
        tspec = get_map(template, "spec", "spec.template.")
        self.controllers[(kind, ns, name)] = ControllerRecord(
            kind=kind,
            namespace=ns,
            name=name,
            labels=get_str_map(meta, "labels", "metadata."),
            annotations=kept_annotations(get_str_map(meta, "annotations", "metadata.")),
            owner=owner_ref(meta, ""),
            template_labels=get_str_map(tmeta, "labels", "spec.template.metadata.")
            if template
            else None,
            template_annotations=kept_annotations(
                get_str_map(tmeta, "annotations", "spec.template.metadata.")
            ),
            host_network=get_bool(tspec, "hostNetwork", "spec.template.spec."),
            created=parse_timestamp(meta.get("creationTimestamp"), "metadata.creationTimestamp"),
        )

    def _add_pod(self, obj: Mapping[str, Any], meta: Mapping[str, Any], ns: str, name: str) -> None:
        spec = get_map(obj, "spec", "")
        status = get_map(obj, "status", "")
        ips: list[str] = []
        for entry in get_maps(status, "podIPs", "status."):
            ips.append(get_ip(entry.get("ip"), "status.podIPs[].ip"))
        pod_ip = status.get("podIP")
        if pod_ip:
            ips.append(get_ip(pod_ip, "status.podIP"))
        start = parse_timestamp(meta.get("creationTimestamp"), "metadata.creationTimestamp")
        end = parse_timestamp(meta.get("deletionTimestamp"), "metadata.deletionTimestamp")
        if status.get("phase") in ("Succeeded", "Failed"):
            # A finished pod keeps status.podIP, but its address is back in the IPAM pool.
            end = _min_opt(end, self._finished_at(status))
        raw_annotations = get_str_map(meta, "annotations", "metadata.")
        ip_since = parse_timestamp(
            raw_annotations.get(IP_ASSIGNED_ANNOTATION),
            f"metadata.annotations.{IP_ASSIGNED_ANNOTATION}",
        )
        end = _min_opt(
            end,
            parse_timestamp(
                raw_annotations.get(DELETED_ANNOTATION),
                f"metadata.annotations.{DELETED_ANNOTATION}",
            ),
        )
        rec = PodRecord(
            namespace=ns,
            name=name,
            uid=get_str(meta, "uid", "metadata."),
            labels=get_str_map(meta, "labels", "metadata."),
            annotations=kept_annotations(raw_annotations),
            owner=owner_ref(meta, ""),
            ips=sorted(set(ips)),
            node=get_str(spec, "nodeName", "spec.") or None,
            host_network=get_bool(spec, "hostNetwork", "spec."),
            ports=container_ports(spec),
            service_account=get_str(spec, "serviceAccountName", "spec.")
            or get_str(spec, "serviceAccount", "spec.")
            or None,
            start=start,
            end=end,
            ip_since=ip_since,
            images=images(spec),
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
        for cs in get_maps(status, "containerStatuses", "status."):
            state = get_map(cs, "state", "status.containerStatuses[].")
            terminated = get_map(state, "terminated", "status.containerStatuses[].state.")
            moment = parse_timestamp(
                terminated.get("finishedAt"),
                "status.containerStatuses[].state.terminated.finishedAt",
            )
            if moment is not None and (latest is None or moment > latest):
                latest = moment
        return latest

    def _add_service(
        self, obj: Mapping[str, Any], meta: Mapping[str, Any], ns: str, name: str
    ) -> None:
        spec = get_map(obj, "spec", "")
        status = get_map(obj, "status", "")
        cluster_ips = list(get_list(spec, "clusterIPs", "spec."))
        single = get_str(spec, "clusterIP", "spec.")
        if single:
            cluster_ips.append(single)
        external = [get_ip(v, "spec.externalIPs[]") for v in get_list(spec, "externalIPs", "spec.")]
        lb = get_map(status, "loadBalancer", "status.")
        lb_ips = [
            get_ip(entry["ip"], "status.loadBalancer.ingress[].ip")
            for entry in get_maps(lb, "ingress", "status.loadBalancer.")
            if entry.get("ip")
        ]
        self.services[(ns, name)] = Service(
            namespace=ns,
            name=name,
            type=get_str(spec, "type", "spec.") or "ClusterIP",
            cluster_ips=tuple(
                sorted(
                    {get_ip(ip, "spec.clusterIPs[]") for ip in cluster_ips
                     if ip not in ("None", "")}
                )
            ),
            external_ips=tuple(sorted(set(external))),
            selector=Labels.of(get_str_map(spec, "selector", "spec.")),
            ports=tuple(service_ports(spec, "spec.", slice_ports=False)),
            labels=Labels.of(get_str_map(meta, "labels", "metadata.")),
            load_balancer_ips=tuple(sorted(set(lb_ips))),
        )

    def _add_endpointslice(
        self, obj: Mapping[str, Any], meta: Mapping[str, Any], ns: str, name: str
    ) -> None:
        labels = get_str_map(meta, "labels", "metadata.")
        service = labels.get(SERVICE_NAME_LABEL)
        if service is None:
            owner = owner_ref(meta, "")
            service = owner.name if owner is not None and owner.kind == "Service" else None
        endpoints = []
        for entry in get_maps(obj, "endpoints", ""):
            addresses = get_list(entry, "addresses", "endpoints[].")
            if obj.get("addressType") == "FQDN":
                continue
            ref = get_map(entry, "targetRef", "endpoints[].")
            pod = (get_str(ref, "name", "endpoints[].targetRef.") if ref.get("kind") == "Pod"
                   else None)
            endpoints.append(
                SliceEndpoint(
                    addresses=tuple(sorted({get_ip(a, "endpoints[].addresses[]")
                                            for a in addresses})),
                    pod=pod,
                    node=get_str(entry, "nodeName", "endpoints[].") or None,
                )
            )
        self.slices[(ns, name)] = EndpointSlice(
            namespace=ns,
            name=name,
            service=service,
            endpoints=tuple(sorted(endpoints)),
            ports=tuple(sorted(service_ports(obj, "", slice_ports=True))),
        )

    def _add_endpoints(
        self, obj: Mapping[str, Any], meta: Mapping[str, Any], ns: str, name: str
    ) -> None:
        """Legacy core/v1 Endpoints: kept as a slice, used only when no EndpointSlice exists."""
        endpoints: list[SliceEndpoint] = []
        ports: list[ServicePort] = []
        for subset in get_maps(obj, "subsets", ""):
            for key in ("addresses", "notReadyAddresses"):
                for entry in get_maps(subset, key, "subsets[]."):
                    ref = get_map(entry, "targetRef", f"subsets[].{key}[].")
                    endpoints.append(
                        SliceEndpoint(
                            addresses=(get_ip(entry.get("ip"), f"subsets[].{key}[].ip"),),
                            pod=get_str(ref, "name", "targetRef.")
                            if ref.get("kind") == "Pod"
                            else None,
                            node=get_str(entry, "nodeName", f"subsets[].{key}[].") or None,
                        )
                    )
            ports.extend(service_ports(subset, "subsets[].", slice_ports=True))
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

        pods_by_owner: dict[WorkloadRef, list[PodRecord]] = defaultdict(list)
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
        below: dict[WorkloadRef, list[ControllerRecord]] = defaultdict(list)
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

    def _top_owner_of_pod(self, rec: PodRecord) -> WorkloadRef:
        if rec.owner is None or rec.owner.kind == "Node":  # bare pod, or a static (mirror) pod
            return WorkloadRef(rec.namespace, "Pod", rec.name)
        return self._top_owner(rec.namespace, rec.owner.kind, rec.owner.name, rec.labels,
                               rec.start)[0]

    def _top_owner(
        self, ns: str, kind: str, name: str, pod_labels: Mapping[str, str] | None,
        pod_created: float | None = None,
    ) -> tuple[WorkloadRef, list[ControllerRecord]]:
        """Follow owner references to the top; also return the controller objects passed."""
        chain: list[ControllerRecord] = []
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
            elif kind == "Job" and pod_labels is not None:
                cronjob = self._cronjob_of_job(ns, name, pod_created)
                if cronjob is not None:
                    kind, name = "CronJob", cronjob
                    continue
            break
        return WorkloadRef(ns, kind, name), chain

    def _cronjob_of_job(self, ns: str, job: str, pod_created: float | None) -> str | None:
        """The CronJob of a Job absent from the dump, from the Job's name, or None.

        The CronJob controller names a run's Job ``<cronjob>-<scheduled time in minutes since
        the epoch>`` (``getJobName`` / ``getTimeHashInMinutes`` in kubernetes
        ``pkg/controller/cronjob/utils.go``). A name of that form is taken as a run of CronJob
        ``<cronjob>`` when that CronJob is in the dump; else when the number, read as that
        time, is plausible: at most 5 minutes after the pod's creation (clock skew) and at
        most :data:`MAX_JOB_POD_LAG` before it (a Job's retries and replacement pods), or,
        without a creation time, between 2016 (CronJob's first release, as ScheduledJob) and
        2100; and the CronJob name fits the API's 52 characters. Otherwise (``migrate-3``,
        ``backup-20240101``) the Job stays the workload.
        """
        head, sep, tail = job.rpartition("-")
        if not sep or not head or not tail.isdigit():
            return None
        if ("CronJob", ns, head) in self.controllers:
            return head
        scheduled = int(tail) * 60.0
        if len(head) > MAX_CRONJOB_NAME:
            return None
        if pod_created is not None:
            plausible = scheduled - 300 <= pod_created <= scheduled + MAX_JOB_POD_LAG
        else:
            plausible = CRONJOB_EPOCH <= scheduled <= CRONJOB_HORIZON
        if not plausible:
            return None
        if (ns, job) not in self._inferred_jobs:
            self._inferred_jobs.add((ns, job))
            logger.info("%s/%s: Job %s is not in the inventory; its name is CronJob %s's run "
                        "scheduled at %s (<cronjob>-<minutes since the epoch>): taken as that "
                        "CronJob", ns, job, job, head, _utc_minute(scheduled))
        return head

    def _workload(
        self, ref: WorkloadRef, pod_recs: list[PodRecord], below: list[ControllerRecord]
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


def _utc_minute(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%MZ")


def _intersection(label_sets: Sequence[Labels]) -> Labels:
    if not label_sets:
        return Labels()
    common = set(label_sets[0].items)
    for labels in label_sets[1:]:
        common &= set(labels.items)
    return Labels(tuple(sorted(common)))


def _ip_start(rec: PodRecord) -> float | None:
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
    """Parse a JSON or YAML file into its documents; InputError naming the place of a syntax
    error, a byte that is not UTF-8, too deep a nesting, an alias bomb..."""
    text = read_text(path)
    stripped = text.lstrip()
    if not stripped:
        raise InputError("empty file, expected a Kubernetes object or List", path=path)
    if stripped[0] in "{[":
        return [parse_json(text, path=path)]
    documents = [doc for doc in iter_yaml(text, path=path) if doc is not None]
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

    This is the parser behind :func:`load_inventory`; :mod:`segmenter.cluster.live` feeds it the
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
            except BadRecord as exc:
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
    with no_gc():  # a large dump is millions of small objects and no cycles
        return _load_inventory(paths)


def _load_inventory(paths: Sequence[str]) -> Inventory:
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
        del docs  # one file's documents at a time
    if caches:
        if len(caches) > 1 or builder.sources:
            raise InputError(
                "an inventory cache cannot be merged with other inventory files; give it alone",
                path=caches[0][0],
            )
        return caches[0][1]
    return builder.build()

