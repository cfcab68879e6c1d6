#!/usr/bin/env python3
"""Generate the bundled sample: a small shop with a cardholder-data store.

Two outputs, written next to this script unless ``--out-dir`` says otherwise:

``shop-inventory.json``
    What ``kubectl get pods,services,endpointslices,namespaces,nodes,deployments,replicasets,
    statefulsets,daemonsets,jobs,cronjobs -A -o json`` prints for the shop: a ``kind: List`` whose
    objects have the shape the API server returns. Fully deterministic: fixed uids, names,
    timestamps and resource versions, no randomness.

``shop.pcapng``
    A REAL packet capture. Every pod, the node, the API server, an internet shopper and an external
    payment gateway get a Linux network namespace with a veth into one bridge (the "node"
    namespace); real servers and clients (plain sockets, Python ``ssl``, a tiny DNS server built
    on scapy's DNS layer) run inside the namespaces and the bridge is sniffed live. Timestamps,
    ephemeral ports and TCP sequence numbers are therefore real and differ on every run; the
    addresses, the set of conversations and their order are fixed by this script.

The capture needs root (``ip netns``); ``--inventory-only`` does not. Namespaces are named
``segs-<pid>-<host>`` and are all deleted at the end, whatever happens. Nothing leaves the
namespaces this script creates: every address in use lives inside one of them.

The payments API writes a planted TEST card number (``4111 1111 1111 1111``, the well-known Visa
test PAN) to the card vault in plaintext, so the capture carries cardholder-like payload: the
project must never copy payload into its outputs, and its tests check exactly that.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CAPTURE_NAME = "shop.pcapng"
INVENTORY_NAME = "shop-inventory.json"

# The planted test card number (Visa test PAN). It is sent to the card vault in plaintext.
TEST_PAN = "4111 1111 1111 1111"
TEST_PAN_COMPACT = TEST_PAN.replace(" ", "")

# --------------------------------------------------------------------------------------------
# Addressing plan (the dump and the capture both come from these constants)
# --------------------------------------------------------------------------------------------

NODE_NAME = "worker-1"
NODE_IP = "172.18.0.2"
APISERVER_IP = "172.18.0.1"
APISERVER_PORT = 6443
POD_CIDR = "10.244.1.0/24"
SERVICE_CIDR = "10.96.0.0/16"

SHOPPER_IP = "198.51.100.20"  # an internet client (TEST-NET-2)
GATEWAY_IP = "203.0.113.10"  # the external payment gateway (TEST-NET-3)
GATEWAY_NAME = "api.gateway.example"

# Service ClusterIPs
VIP_KUBERNETES = "10.96.0.1"
VIP_KUBE_DNS = "10.96.0.10"
VIP_FRONTEND = "10.96.41.10"
VIP_CATALOG = "10.96.41.20"
VIP_RECOMMENDATIONS = "10.96.41.25"
VIP_CHECKOUT = "10.96.41.30"
VIP_PAYMENTS_API = "10.96.52.50"
VIP_CARD_VAULT = "10.96.52.60"

# Pod IPs (all on worker-1, whose podCIDR is 10.244.1.0/24)
IP_COREDNS = "10.244.1.2"
IP_FRONTEND_A = "10.244.1.10"
IP_FRONTEND_B = "10.244.1.11"
IP_CATALOG = "10.244.1.20"
IP_RECOMMENDATIONS = "10.244.1.25"
IP_CHECKOUT = "10.244.1.30"
IP_REDIS_CART = "10.244.1.40"
IP_PAYMENTS_A = "10.244.1.50"
IP_PAYMENTS_B = "10.244.1.51"
IP_CARD_VAULT = "10.244.1.60"
IP_SETTLEMENT = "10.244.1.70"

# Timeline of the (fictional) cluster. The CronJob's Job name suffix is its scheduled time in
# minutes since the epoch: 29123456 min = 2025-05-16T14:56:00Z, matching the schedule below.
T_CLUSTER = "2025-05-10T09:12:03Z"
T_SYSTEM = "2025-05-10T09:12:41Z"
T_APPS = "2025-05-12T08:03:17Z"
T_ROLLOUT = "2025-05-15T16:20:05Z"
T_JOB = "2025-05-16T14:56:00Z"
T_JOB_START = "2025-05-16T14:56:01Z"
T_JOB_DONE = "2025-05-16T14:56:27Z"
JOB_NAME = "settlement-29123456"

K8S_VERSION = "v1.31.2"

# --------------------------------------------------------------------------------------------
# Deterministic identifiers
# --------------------------------------------------------------------------------------------

# The alphabet Kubernetes uses for generated name suffixes and hashes (rand.SafeEncodeString).
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("/".join(("segmenter-sample", *parts)).encode()).digest()


def k8s_uid(*parts: str) -> str:
    """A fixed, v4-shaped uid for an object."""
    return str(uuid.UUID(bytes=_digest("uid", *parts)[:16], version=4))


def safe_suffix(length: int, *parts: str) -> str:
    """A fixed suffix in the style of generateName / pod-template-hash."""
    return "".join(_SAFE[b % len(_SAFE)] for b in _digest("sfx", *parts)[:length])


def hex_id(length: int, *parts: str) -> str:
    return (_digest("hex", *parts) * 2).hex()[:length]


class _ResourceVersions:
    """Increasing resourceVersion strings, deterministic in the order objects are built."""

    def __init__(self) -> None:
        self._next = 1204

    def __call__(self) -> str:
        self._next += 37
        return str(self._next)


# --------------------------------------------------------------------------------------------
# Inventory (kubectl get ... -A -o json)
# --------------------------------------------------------------------------------------------


@dataclass
class PodSpecIn:
    """What a workload author writes in a pod template (the parts this sample needs)."""

    name: str  # container name
    image: str
    ports: list[dict[str, Any]] = field(default_factory=list)
    env: list[dict[str, Any]] = field(default_factory=list)
    probes: dict[str, Any] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    restart_policy: str = "Always"
    host_network: bool = False
    priority_class: str | None = None
    service_account: str = "default"
    extra_volumes: list[dict[str, Any]] = field(default_factory=list)
    extra_mounts: list[dict[str, Any]] = field(default_factory=list)


def _container(spec: PodSpecIn) -> dict[str, Any]:
    c: dict[str, Any] = {
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "name": spec.name,
        "resources": {},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    if spec.args:
        c["args"] = list(spec.args)
    if spec.env:
        c["env"] = [dict(e) for e in spec.env]
    if spec.ports:
        c["ports"] = [dict(p) for p in spec.ports]
    for kind, probe in spec.probes.items():
        c[kind] = json.loads(json.dumps(probe))
    if spec.extra_mounts:
        c["volumeMounts"] = [dict(m) for m in spec.extra_mounts]
    return c


def _template_spec(spec: PodSpecIn) -> dict[str, Any]:
    """The pod spec as stored in a workload's template (before admission adds anything)."""
    s: dict[str, Any] = {
        "containers": [_container(spec)],
        "dnsPolicy": "ClusterFirstWithHostNet" if spec.host_network else "ClusterFirst",
        "restartPolicy": spec.restart_policy,
        "schedulerName": "default-scheduler",
        "securityContext": {},
        "terminationGracePeriodSeconds": 30,
    }
    if spec.host_network:
        s["hostNetwork"] = True
    if spec.priority_class:
        s["priorityClassName"] = spec.priority_class
    if spec.service_account != "default":
        s["serviceAccount"] = spec.service_account
        s["serviceAccountName"] = spec.service_account
    if spec.extra_volumes:
        s["volumes"] = [dict(v) for v in spec.extra_volumes]
    return s


def _pod_spec(spec: PodSpecIn, pod_key: str, hostname: str | None = None,
              subdomain: str | None = None) -> dict[str, Any]:
    """The pod spec as the API server returns it for a running pod (admission defaults added)."""
    s = _template_spec(spec)
    token_vol = "kube-api-access-" + safe_suffix(5, "kube-api-access", pod_key)
    mount = {
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
        "name": token_vol,
        "readOnly": True,
    }
    s["containers"][0].setdefault("volumeMounts", []).append(mount)
    s["enableServiceLinks"] = True
    s["nodeName"] = NODE_NAME
    s["preemptionPolicy"] = "PreemptLowerPriority"
    s["priority"] = 2000001000 if spec.priority_class == "system-node-critical" else 0
    s["serviceAccount"] = spec.service_account
    s["serviceAccountName"] = spec.service_account
    s["tolerations"] = [
        {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists",
         "tolerationSeconds": 300},
        {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists",
         "tolerationSeconds": 300},
    ]
    if hostname:
        s["hostname"] = hostname
    if subdomain:
        s["subdomain"] = subdomain
    s.setdefault("volumes", []).append(
        {
            "name": token_vol,
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"items": [{"key": "ca.crt", "path": "ca.crt"}],
                                   "name": "kube-root-ca.crt"}},
                    {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1",
                                                             "fieldPath": "metadata.namespace"},
                                                "path": "namespace"}]}},
                ],
            },
        }
    )
    return s


def _image_ref(image: str) -> str:
    """The fully qualified image reference containerd reports."""
    first = image.split("/", 1)[0]
    if "/" not in image:
        return "docker.io/library/" + image
    if "." not in first and ":" not in first:
        return "docker.io/" + image
    return image


def _owner(api_version: str, kind: str, name: str, uid: str) -> dict[str, Any]:
    return {"apiVersion": api_version, "blockOwnerDeletion": True, "controller": True,
            "kind": kind, "name": name, "uid": uid}


class Inventory:
    """Builds the kubectl List. Objects are kept per kind, in kubectl's output order."""

    KIND_ORDER = ("Pod", "Service", "EndpointSlice", "Namespace", "Node", "Deployment",
                  "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "CronJob")

    def __init__(self) -> None:
        self.rv = _ResourceVersions()
        self.objects: dict[str, list[dict[str, Any]]] = {k: [] for k in self.KIND_ORDER}
        self.pods_by_app: dict[tuple[str, str], list[dict[str, Any]]] = {}

    # -- generic ---------------------------------------------------------------------------

    def _meta(self, kind: str, name: str, namespace: str | None, created: str,  # noqa: PLR0917
              labels: dict[str, str] | None = None,
              annotations: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
        m: dict[str, Any] = {"creationTimestamp": created, "name": name}
        if namespace is not None:
            m["namespace"] = namespace
        if labels:
            m["labels"] = dict(labels)
        if annotations:
            m["annotations"] = dict(annotations)
        m["resourceVersion"] = self.rv()
        m["uid"] = k8s_uid(kind, namespace or "", name)
        m.update(extra)
        return m

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.objects[obj["kind"]].append(obj)
        return obj

    def as_list(self) -> dict[str, Any]:
        items: list[dict[str, Any]] = []
        for kind in self.KIND_ORDER:
            items.extend(sorted(self.objects[kind],
                                key=lambda o: (o["metadata"].get("namespace", ""),
                                               o["metadata"]["name"])))
        return {"apiVersion": "v1", "items": items, "kind": "List",
                "metadata": {"resourceVersion": ""}}

    # -- cluster-scoped --------------------------------------------------------------------

    def namespace(self, name: str, created: str, labels: dict[str, str] | None = None) -> None:
        all_labels = {"kubernetes.io/metadata.name": name, **(labels or {})}
        self.add({"apiVersion": "v1", "kind": "Namespace",
                  "metadata": self._meta("Namespace", name, None, created, all_labels),
                  "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})

    def node(self) -> None:
        labels = {
            "beta.kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": NODE_NAME,
            "kubernetes.io/os": "linux",
        }
        annotations = {
            "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///run/containerd/containerd.sock",
            "node.alpha.kubernetes.io/ttl": "0",
            "volumes.kubernetes.io/controller-managed-attach-detach": "true",
        }

        def cond(ctype: str, status: str, reason: str, message: str) -> dict[str, str]:
            return {"lastHeartbeatTime": "2025-05-16T14:55:12Z",
                    "lastTransitionTime": T_CLUSTER, "message": message, "reason": reason,
                    "status": status, "type": ctype}

        self.add({
            "apiVersion": "v1", "kind": "Node",
            "metadata": self._meta("Node", NODE_NAME, None, T_CLUSTER, labels, annotations),
            "spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR],
                     "providerID": f"kind://docker/shop/{NODE_NAME}"},
            "status": {
                "addresses": [{"address": NODE_IP, "type": "InternalIP"},
                              {"address": NODE_NAME, "type": "Hostname"}],
                "allocatable": {"cpu": "8", "ephemeral-storage": "102626232Ki",
                                "hugepages-2Mi": "0", "memory": "16318504Ki", "pods": "110"},
                "capacity": {"cpu": "8", "ephemeral-storage": "102626232Ki",
                             "hugepages-2Mi": "0", "memory": "16318504Ki", "pods": "110"},
                "conditions": [
                    cond("MemoryPressure", "False", "KubeletHasSufficientMemory",
                         "kubelet has sufficient memory available"),
                    cond("DiskPressure", "False", "KubeletHasNoDiskPressure",
                         "kubelet has no disk pressure"),
                    cond("PIDPressure", "False", "KubeletHasSufficientPID",
                         "kubelet has sufficient PID available"),
                    cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {
                    "architecture": "amd64",
                    "bootID": k8s_uid("boot", NODE_NAME),
                    "containerRuntimeVersion": "containerd://1.7.18",
                    "kernelVersion": "6.8.0-49-generic",
                    "kubeProxyVersion": K8S_VERSION,
                    "kubeletVersion": K8S_VERSION,
                    "machineID": hex_id(32, "machine", NODE_NAME),
                    "operatingSystem": "linux",
                    "osImage": "Debian GNU/Linux 12 (bookworm)",
                    "systemUUID": k8s_uid("system", NODE_NAME),
                },
            },
        })

    # -- pods --------------------------------------------------------------------------------

    def pod(self, *, name: str, namespace: str, labels: dict[str, str],
            annotations: dict[str, str] | None, spec: PodSpecIn, ip: str, created: str,
            owner: dict[str, Any], generate_name: str | None, phase: str = "Running",
            hostname: str | None = None, subdomain: str | None = None,
            started: str | None = None, finished: str | None = None) -> dict[str, Any]:
        key = f"{namespace}/{name}"
        meta = self._meta("Pod", name, namespace, created, labels, annotations)
        if generate_name:
            meta["generateName"] = generate_name
        meta["ownerReferences"] = [owner]
        start = started or created
        image_ref = _image_ref(spec.image)
        state: dict[str, Any]
        if phase == "Running":
            state = {"running": {"startedAt": start}}
            ready = True
        else:
            state = {"terminated": {
                "containerID": "containerd://" + hex_id(64, "ctr", key),
                "exitCode": 0, "finishedAt": finished, "reason": "Completed",
                "startedAt": start}}
            ready = False
        container_status = {
            "containerID": "containerd://" + hex_id(64, "ctr", key),
            "image": image_ref,
            "imageID": image_ref.rsplit(":", 1)[0] + "@sha256:" + hex_id(64, "img", spec.image),
            "lastState": {},
            "name": spec.name,
            "ready": ready,
            "restartCount": 0,
            "started": ready,
            "state": state,
        }

        def cond(ctype: str, status: str, when: str, reason: str | None = None) -> dict[str, Any]:
            c: dict[str, Any] = {"lastProbeTime": None, "lastTransitionTime": when,
                                 "status": status, "type": ctype}
            if reason:
                c["reason"] = reason
            return c

        if phase == "Running":
            conditions = [cond("PodReadyToStartContainers", "True", start),
                          cond("Initialized", "True", created),
                          cond("Ready", "True", start), cond("ContainersReady", "True", start),
                          cond("PodScheduled", "True", created)]
        else:
            conditions = [cond("PodReadyToStartContainers", "False", finished or start),
                          cond("Initialized", "True", created, "PodCompleted"),
                          cond("Ready", "False", finished or start, "PodCompleted"),
                          cond("ContainersReady", "False", finished or start, "PodCompleted"),
                          cond("PodScheduled", "True", created)]
        pod_spec = _pod_spec(spec, key, hostname, subdomain)
        container_status["volumeMounts"] = [
            {"mountPath": m["mountPath"], "name": m["name"],
             **({"readOnly": True, "recursiveReadOnly": "Disabled"} if m.get("readOnly") else {})}
            for m in pod_spec["containers"][0]["volumeMounts"]]
        pod = {
            "apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": pod_spec,
            "status": {
                "conditions": conditions,
                "containerStatuses": [container_status],
                "hostIP": NODE_IP,
                "hostIPs": [{"ip": NODE_IP}],
                "phase": phase,
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "qosClass": "BestEffort",
                "startTime": created,
            },
        }
        self.add(pod)
        app = labels.get("app") or labels.get("k8s-app") or name
        self.pods_by_app.setdefault((namespace, app), []).append(pod)
        return pod

    # -- workloads -------------------------------------------------------------------------

    def deployment(self, *, name: str, namespace: str, labels: dict[str, str],
                   selector: dict[str, str], spec: PodSpecIn, ips: list[str],
                   created: str = T_APPS, rollout: str = T_ROLLOUT,
                   template_annotations: dict[str, str] | None = None) -> None:
        replicas = len(ips)
        template = {"metadata": {"creationTimestamp": None, "labels": dict(labels)},
                    "spec": _template_spec(spec)}
        if template_annotations:
            template["metadata"]["annotations"] = dict(template_annotations)
        dep_meta = self._meta("Deployment", name, namespace, created, labels,
                              {"deployment.kubernetes.io/revision": "1"}, generation=1)
        self.add({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": dep_meta,
            "spec": {
                "progressDeadlineSeconds": 600, "replicas": replicas,
                "revisionHistoryLimit": 10, "selector": {"matchLabels": dict(selector)},
                "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
                             "type": "RollingUpdate"},
                "template": template,
            },
            "status": {
                "availableReplicas": replicas,
                "conditions": [
                    {"lastTransitionTime": rollout, "lastUpdateTime": rollout,
                     "message": "Deployment has minimum availability.",
                     "reason": "MinimumReplicasAvailable", "status": "True",
                     "type": "Available"},
                    {"lastTransitionTime": created, "lastUpdateTime": rollout,
                     "message": f'ReplicaSet "{name}-{self._pth(namespace, name)}" has '
                                "successfully progressed.",
                     "reason": "NewReplicaSetAvailable", "status": "True",
                     "type": "Progressing"},
                ],
                "observedGeneration": 1, "readyReplicas": replicas, "replicas": replicas,
                "updatedReplicas": replicas,
            },
        })
        pth = self._pth(namespace, name)
        rs_name = f"{name}-{pth}"
        rs_labels = {**labels, "pod-template-hash": pth}
        rs_template = json.loads(json.dumps(template))
        rs_template["metadata"]["labels"] = dict(rs_labels)
        rs_meta = self._meta(
            "ReplicaSet", rs_name, namespace, created, rs_labels,
            {"deployment.kubernetes.io/desired-replicas": str(replicas),
             "deployment.kubernetes.io/max-replicas": str(replicas + max(1, replicas // 4)),
             "deployment.kubernetes.io/revision": "1"},
            generation=1)
        rs_meta["ownerReferences"] = [_owner("apps/v1", "Deployment", name, dep_meta["uid"])]
        self.add({
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": rs_meta,
            "spec": {"replicas": replicas,
                     "selector": {"matchLabels": {**selector, "pod-template-hash": pth}},
                     "template": rs_template},
            "status": {"availableReplicas": replicas, "fullyLabeledReplicas": replicas,
                       "observedGeneration": 1, "readyReplicas": replicas,
                       "replicas": replicas},
        })
        for i, ip in enumerate(ips):
            pod_name = f"{rs_name}-{safe_suffix(5, namespace, rs_name, str(i))}"
            self.pod(name=pod_name, namespace=namespace, labels=rs_labels,
                     annotations=template_annotations, spec=spec, ip=ip, created=rollout,
                     owner=_owner("apps/v1", "ReplicaSet", rs_name, rs_meta["uid"]),
                     generate_name=f"{rs_name}-",
                     started=rollout[:-3] + f"{int(rollout[-3:-1]) + 4 + i:02d}Z")

    @staticmethod
    def _pth(namespace: str, name: str) -> str:
        return safe_suffix(10, "pod-template-hash", namespace, name)

    def statefulset(self, *, name: str, namespace: str, labels: dict[str, str],
                    selector: dict[str, str], spec: PodSpecIn, ip: str, service_name: str,
                    template_annotations: dict[str, str] | None = None,
                    storage: str | None = None) -> None:
        template: dict[str, Any] = {"metadata": {"creationTimestamp": None,
                                                 "labels": dict(labels)},
                                    "spec": _template_spec(spec)}
        if template_annotations:
            template["metadata"]["annotations"] = dict(template_annotations)
        revision = f"{name}-{safe_suffix(9, 'controller-revision', namespace, name)}"
        sts_meta = self._meta("StatefulSet", name, namespace, T_APPS, labels, generation=1)
        sts_spec: dict[str, Any] = {
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain",
                                                     "whenScaled": "Retain"},
            "podManagementPolicy": "OrderedReady", "replicas": 1, "revisionHistoryLimit": 10,
            "selector": {"matchLabels": dict(selector)}, "serviceName": service_name,
            "template": template,
            "updateStrategy": {"rollingUpdate": {"partition": 0}, "type": "RollingUpdate"},
        }
        if storage:
            sts_spec["volumeClaimTemplates"] = [{
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"creationTimestamp": None, "name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": storage}},
                         "volumeMode": "Filesystem"},
                "status": {"phase": "Pending"},
            }]
        self.add({
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": sts_meta,
            "spec": sts_spec,
            "status": {"availableReplicas": 1, "collisionCount": 0, "currentReplicas": 1,
                       "currentRevision": revision, "observedGeneration": 1,
                       "readyReplicas": 1, "replicas": 1, "updateRevision": revision,
                       "updatedReplicas": 1},
        })
        pod_name = f"{name}-0"
        pod_labels = {**labels, "apps.kubernetes.io/pod-index": "0",
                      "controller-revision-hash": revision,
                      "statefulset.kubernetes.io/pod-name": pod_name}
        pod_spec = spec
        if storage:
            pod_spec = PodSpecIn(**{**spec.__dict__, "extra_volumes": [
                *spec.extra_volumes,
                {"name": "data",
                 "persistentVolumeClaim": {"claimName": f"data-{pod_name}"}}]})
        self.pod(name=pod_name, namespace=namespace, labels=pod_labels,
                 annotations=template_annotations, spec=pod_spec, ip=ip, created=T_ROLLOUT,
                 owner=_owner("apps/v1", "StatefulSet", name, sts_meta["uid"]),
                 generate_name=f"{name}-", hostname=pod_name, subdomain=service_name,
                 started="2025-05-15T16:20:19Z")

    def daemonset(self, *, name: str, namespace: str, labels: dict[str, str],
                  spec: PodSpecIn, ip: str) -> None:
        template = {"metadata": {"creationTimestamp": None, "labels": dict(labels)},
                    "spec": _template_spec(spec)}
        ds_meta = self._meta("DaemonSet", name, namespace, T_CLUSTER, labels,
                             {"deprecated.daemonset.template.generation": "1"}, generation=1)
        self.add({
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": ds_meta,
            "spec": {"revisionHistoryLimit": 10, "selector": {"matchLabels": dict(labels)},
                     "template": template,
                     "updateStrategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
                                        "type": "RollingUpdate"}},
            "status": {"currentNumberScheduled": 1, "desiredNumberScheduled": 1,
                       "numberAvailable": 1, "numberMisscheduled": 0, "numberReady": 1,
                       "observedGeneration": 1, "updatedNumberScheduled": 1},
        })
        pod_name = f"{name}-{safe_suffix(5, namespace, name, 'ds')}"
        pod_labels = {**labels,
                      "controller-revision-hash": safe_suffix(10, "ds-revision", name),
                      "pod-template-generation": "1"}
        self.pod(name=pod_name, namespace=namespace, labels=pod_labels, annotations=None,
                 spec=spec, ip=ip, created=T_SYSTEM,
                 owner=_owner("apps/v1", "DaemonSet", name, ds_meta["uid"]),
                 generate_name=f"{name}-")

    def cronjob(self, *, name: str, namespace: str, labels: dict[str, str], schedule: str,
                spec: PodSpecIn, job_name: str, ip: str) -> None:
        job_template_spec = {
            "backoffLimit": 2,
            "template": {"metadata": {"creationTimestamp": None, "labels": dict(labels)},
                         "spec": _template_spec(spec)},
        }
        cj_meta = self._meta("CronJob", name, namespace, T_APPS, labels, generation=1)
        job_uid = k8s_uid("Job", namespace, job_name)
        self.add({
            "apiVersion": "batch/v1", "kind": "CronJob", "metadata": cj_meta,
            "spec": {"concurrencyPolicy": "Forbid", "failedJobsHistoryLimit": 1,
                     "jobTemplate": {"metadata": {"creationTimestamp": None},
                                     "spec": job_template_spec},
                     "schedule": schedule, "successfulJobsHistoryLimit": 3, "suspend": False},
            "status": {"lastScheduleTime": T_JOB, "lastSuccessfulTime": T_JOB_DONE},
        })
        job_labels = {**labels,
                      "batch.kubernetes.io/controller-uid": job_uid,
                      "batch.kubernetes.io/job-name": job_name,
                      "controller-uid": job_uid,
                      "job-name": job_name}
        job_meta = self._meta("Job", job_name, namespace, T_JOB, job_labels,
                              {"batch.kubernetes.io/cronjob-scheduled-timestamp": T_JOB},
                              generation=1)
        job_meta["ownerReferences"] = [_owner("batch/v1", "CronJob", name, cj_meta["uid"])]
        job_template = json.loads(json.dumps(job_template_spec["template"]))
        job_template["metadata"]["labels"] = dict(job_labels)
        self.add({
            "apiVersion": "batch/v1", "kind": "Job", "metadata": job_meta,
            "spec": {"backoffLimit": 2, "completionMode": "NonIndexed", "completions": 1,
                     "manualSelector": False, "parallelism": 1,
                     "podReplacementPolicy": "TerminatingOrFailed",
                     "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid":
                                                  job_uid}},
                     "suspend": False, "template": job_template},
            "status": {
                "completionTime": T_JOB_DONE,
                "conditions": [
                    {"lastProbeTime": T_JOB_DONE, "lastTransitionTime": T_JOB_DONE,
                     "message": "Reached expected number of succeeded pods",
                     "reason": "CompletionsReached", "status": "True",
                     "type": "SuccessCriteriaMet"},
                    {"lastProbeTime": T_JOB_DONE, "lastTransitionTime": T_JOB_DONE,
                     "message": "Reached expected number of succeeded pods",
                     "reason": "CompletionsReached", "status": "True", "type": "Complete"},
                ],
                "ready": 0, "startTime": T_JOB, "succeeded": 1, "terminating": 0,
                "uncountedTerminatedPods": {},
            },
        })
        pod_name = f"{job_name}-{safe_suffix(5, namespace, job_name, 'pod')}"
        self.pod(name=pod_name, namespace=namespace, labels=job_labels, annotations=None,
                       spec=spec, ip=ip, created=T_JOB,
                       owner=_owner("batch/v1", "Job", job_name, job_uid),
                       generate_name=f"{job_name}-", phase="Succeeded",
                       started=T_JOB_START, finished=T_JOB_DONE)

    # -- services --------------------------------------------------------------------------

    def service(self, *, name: str, namespace: str, cluster_ip: str | None,
                ports: list[dict[str, Any]], selector: dict[str, str] | None,
                labels: dict[str, str] | None = None,
                annotations: dict[str, str] | None = None, created: str = T_APPS,
                slice_endpoints: list[dict[str, Any]] | None = None) -> None:
        """A Service and the EndpointSlice its controller keeps."""
        svc_meta = self._meta("Service", name, namespace, created, labels, annotations)
        ip = cluster_ip or "None"
        spec: dict[str, Any] = {
            "clusterIP": ip, "clusterIPs": [ip], "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "ports": ports,
            "sessionAffinity": "None", "type": "ClusterIP",
        }
        if selector is not None:
            spec["selector"] = dict(selector)
        self.add({"apiVersion": "v1", "kind": "Service", "metadata": svc_meta, "spec": spec,
                  "status": {"loadBalancer": {}}})

        if slice_endpoints is not None:  # the API server's own slice (default/kubernetes)
            slice_meta = self._meta("EndpointSlice", name, namespace, created,
                                    {"kubernetes.io/service-name": name}, generation=1)
            self.add({"addressType": "IPv4", "apiVersion": "discovery.k8s.io/v1",
                      "endpoints": slice_endpoints, "kind": "EndpointSlice",
                      "metadata": slice_meta,
                      "ports": [{"name": p.get("name", ""), "port": p["targetPort"],
                                 "protocol": p["protocol"]} for p in ports]})
            return

        assert selector is not None
        pods = [p for (ns, _), plist in self.pods_by_app.items() if ns == namespace
                for p in plist
                if all(p["metadata"]["labels"].get(k) == v for k, v in selector.items())
                and p["status"]["phase"] == "Running"]
        endpoints = []
        for pod in sorted(pods, key=lambda p: p["status"]["podIP"]):
            endpoints.append({
                "addresses": [pod["status"]["podIP"]],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "nodeName": pod["spec"]["nodeName"],
                "targetRef": {"kind": "Pod", "name": pod["metadata"]["name"],
                              "namespace": namespace, "uid": pod["metadata"]["uid"]},
            })
        slice_ports = []
        for p in ports:
            target = p["targetPort"]
            if isinstance(target, str):  # named port: resolve in the pods' containers
                target = next(cp["containerPort"] for cp in pods[0]["spec"]["containers"][0]
                              ["ports"] if cp.get("name") == target
                              and cp["protocol"] == p["protocol"])
            slice_ports.append({"name": p.get("name", ""), "port": target,
                                "protocol": p["protocol"]})
        slice_labels = {**(labels or {}),
                        "endpointslice.kubernetes.io/managed-by":
                            "endpointslice-controller.k8s.io",
                        "kubernetes.io/service-name": name}
        if not cluster_ip:
            slice_labels["service.kubernetes.io/headless"] = ""
        slice_name = f"{name}-{safe_suffix(5, 'slice', namespace, name)}"
        slice_meta = self._meta(
            "EndpointSlice", slice_name, namespace, created, slice_labels,
            {"endpoints.kubernetes.io/last-change-trigger-time": T_ROLLOUT[:-3] + "31Z"},
            generateName=f"{name}-", generation=len(endpoints) + 1)
        slice_meta["ownerReferences"] = [_owner("v1", "Service", name, svc_meta["uid"])]
        self.add({"addressType": "IPv4", "apiVersion": "discovery.k8s.io/v1",
                  "endpoints": endpoints, "kind": "EndpointSlice", "metadata": slice_meta,
                  "ports": slice_ports})


def _port(port: int, name: str, protocol: str = "TCP") -> dict[str, Any]:
    return {"containerPort": port, "name": name, "protocol": protocol}


def _svc_port(name: str, port: int, target: int | str, protocol: str = "TCP") -> dict[str, Any]:
    return {"name": name, "port": port, "protocol": protocol, "targetPort": target}


def _http_probe(path: str, port: str | int, scheme: str = "HTTP",
                period: int = 10) -> dict[str, Any]:
    return {"failureThreshold": 3,
            "httpGet": {"path": path, "port": port, "scheme": scheme},
            "periodSeconds": period, "successThreshold": 1, "timeoutSeconds": 1}


def _exec_probe(command: list[str]) -> dict[str, Any]:
    return {"exec": {"command": command}, "failureThreshold": 3, "periodSeconds": 10,
            "successThreshold": 1, "timeoutSeconds": 1}


def build_inventory() -> dict[str, Any]:
    """The whole kubectl dump, as a Python object."""
    inv = Inventory()

    # Namespaces and the node
    inv.namespace("default", T_CLUSTER)
    inv.namespace("kube-node-lease", T_CLUSTER)
    inv.namespace("kube-public", T_CLUSTER)
    inv.namespace("kube-system", T_CLUSTER)
    inv.namespace("shop", "2025-05-12T08:00:02Z", {"segmenter.io/team": "storefront"})
    inv.namespace("payments", "2025-05-12T08:00:02Z",
                  {"segmenter.io/data-class": "pci", "segmenter.io/team": "payments"})
    inv.node()

    # kube-system: CoreDNS and kube-proxy (host network: its pod IP is the node's)
    inv.deployment(
        name="coredns", namespace="kube-system", labels={"k8s-app": "kube-dns"},
        selector={"k8s-app": "kube-dns"}, ips=[IP_COREDNS], created=T_CLUSTER,
        rollout=T_SYSTEM,
        spec=PodSpecIn(
            name="coredns", image="registry.k8s.io/coredns/coredns:v1.11.3",
            args=["-conf", "/etc/coredns/Corefile"],
            ports=[_port(53, "dns", "UDP"), _port(53, "dns-tcp"), _port(9153, "metrics")],
            priority_class="system-cluster-critical", service_account="coredns",
            extra_volumes=[{"configMap": {"defaultMode": 420,
                                          "items": [{"key": "Corefile", "path": "Corefile"}],
                                          "name": "coredns"}, "name": "config-volume"}],
            extra_mounts=[{"mountPath": "/etc/coredns", "name": "config-volume",
                           "readOnly": True}]))
    for pod in inv.pods_by_app[("kube-system", "kube-dns")]:
        pod["spec"]["priority"] = 2000000000
    inv.daemonset(
        name="kube-proxy", namespace="kube-system", labels={"k8s-app": "kube-proxy"},
        ip=NODE_IP,
        spec=PodSpecIn(
            name="kube-proxy", image=f"registry.k8s.io/kube-proxy:{K8S_VERSION}",
            args=["--config=/var/lib/kube-proxy/config.conf",
                  "--hostname-override=$(NODE_NAME)"],
            env=[{"name": "NODE_NAME", "valueFrom": {"fieldRef": {
                "apiVersion": "v1", "fieldPath": "spec.nodeName"}}}],
            host_network=True, priority_class="system-node-critical",
            service_account="kube-proxy"))

    # shop
    shop_common = {"app.kubernetes.io/part-of": "shop"}
    inv.deployment(
        name="frontend", namespace="shop",
        labels={"app": "frontend", "app.kubernetes.io/name": "frontend", **shop_common,
                "version": "v1.4.2"},
        selector={"app": "frontend"}, ips=[IP_FRONTEND_A, IP_FRONTEND_B],
        spec=PodSpecIn(
            name="frontend", image="registry.example.com/shop/frontend:v1.4.2",
            ports=[_port(8080, "http")],
            env=[{"name": "CATALOG_ADDR", "value": "catalog.shop.svc.cluster.local:3550"},
                 {"name": "CHECKOUT_ADDR", "value": "checkout.shop.svc.cluster.local:5050"},
                 {"name": "CART_REDIS_ADDR",
                  "value": "redis-cart.shop.svc.cluster.local:6379"}],
            probes={"livenessProbe": _http_probe("/healthz", "http", period=20),
                    "readinessProbe": _http_probe("/healthz", "http")}))
    inv.deployment(
        name="catalog", namespace="shop",
        labels={"app": "catalog", "app.kubernetes.io/name": "catalog", **shop_common},
        selector={"app": "catalog"}, ips=[IP_CATALOG],
        spec=PodSpecIn(name="catalog", image="registry.example.com/shop/catalog:v1.4.2",
                       ports=[_port(3550, "http")]))
    inv.deployment(
        name="recommendations", namespace="shop",
        labels={"app": "recommendations", "app.kubernetes.io/name": "recommendations",
                **shop_common},
        selector={"app": "recommendations"}, ips=[IP_RECOMMENDATIONS],
        spec=PodSpecIn(
            name="recommendations", image="registry.example.com/shop/recommendations:v1.4.2",
            ports=[_port(8081, "http")],
            env=[{"name": "CATALOG_ADDR", "value": "catalog.shop.svc.cluster.local:3550"}]))
    inv.deployment(
        name="checkout", namespace="shop",
        labels={"app": "checkout", "app.kubernetes.io/name": "checkout", **shop_common},
        selector={"app": "checkout"}, ips=[IP_CHECKOUT],
        spec=PodSpecIn(
            name="checkout", image="registry.example.com/shop/checkout:v1.4.2",
            ports=[_port(5050, "grpc")],
            env=[{"name": "CART_REDIS_ADDR", "value": "redis-cart.shop.svc.cluster.local:6379"},
                 {"name": "PAYMENTS_URL",
                  "value": "https://payments-api.payments.svc.cluster.local"}]))
    inv.statefulset(
        name="redis-cart", namespace="shop",
        labels={"app": "redis-cart", "app.kubernetes.io/name": "redis", **shop_common},
        selector={"app": "redis-cart"}, ip=IP_REDIS_CART, service_name="redis-cart",
        spec=PodSpecIn(name="redis", image="redis:7.2-alpine", ports=[_port(6379, "redis")],
                       probes={"readinessProbe": _exec_probe(["redis-cli", "ping"])}))

    # payments (the cardholder-data environment)
    pay_common = {"app.kubernetes.io/part-of": "payments"}
    inv.deployment(
        name="payments-api", namespace="payments",
        labels={"app": "payments-api", "app.kubernetes.io/name": "payments-api", **pay_common},
        selector={"app": "payments-api"}, ips=[IP_PAYMENTS_A, IP_PAYMENTS_B],
        spec=PodSpecIn(
            name="payments-api", image="registry.example.com/payments/payments-api:v2.0.7",
            ports=[_port(8443, "https")],
            env=[{"name": "VAULT_DSN",
                  "value": "postgres://card-vault.payments.svc.cluster.local:5432/vault"},
                 {"name": "GATEWAY_URL", "value": f"https://{GATEWAY_NAME}/v1/charges"}],
            probes={"readinessProbe": _http_probe("/healthz", "https", scheme="HTTPS")},
            service_account="payments-api"))
    inv.statefulset(
        name="card-vault", namespace="payments",
        labels={"app": "card-vault", "app.kubernetes.io/name": "postgresql", **pay_common},
        selector={"app": "card-vault"}, ip=IP_CARD_VAULT, service_name="card-vault",
        template_annotations={"segmenter.io/data-class": "pci"}, storage="10Gi",
        spec=PodSpecIn(
            name="postgres", image="postgres:16", ports=[_port(5432, "postgres")],
            env=[{"name": "POSTGRES_DB", "value": "vault"},
                 {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"}],
            probes={"readinessProbe": _exec_probe(["pg_isready", "-U", "postgres"])},
            extra_mounts=[{"mountPath": "/var/lib/postgresql/data", "name": "data"}]))
    inv.cronjob(
        name="settlement", namespace="payments",
        labels={"app": "settlement", "app.kubernetes.io/name": "settlement", **pay_common},
        schedule="56 14 * * *", job_name=JOB_NAME, ip=IP_SETTLEMENT,
        spec=PodSpecIn(
            name="settlement", image="registry.example.com/payments/settlement:v2.0.7",
            env=[{"name": "VAULT_DSN",
                  "value": "postgres://card-vault.payments.svc.cluster.local:5432/vault"}],
            restart_policy="OnFailure", service_account="settlement"))

    # Services (after the pods, so their EndpointSlices can list them)
    inv.service(name="kubernetes", namespace="default", cluster_ip=VIP_KUBERNETES,
                ports=[_svc_port("https", 443, APISERVER_PORT)], selector=None,
                labels={"component": "apiserver", "provider": "kubernetes"},
                created=T_CLUSTER,
                slice_endpoints=[{"addresses": [APISERVER_IP], "conditions": {"ready": True}}])
    inv.service(name="kube-dns", namespace="kube-system", cluster_ip=VIP_KUBE_DNS,
                ports=[_svc_port("dns", 53, "dns", "UDP"), _svc_port("dns-tcp", 53, "dns-tcp"),
                       _svc_port("metrics", 9153, 9153)],
                selector={"k8s-app": "kube-dns"},
                labels={"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                        "kubernetes.io/name": "CoreDNS"},
                annotations={"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
                created=T_CLUSTER)
    inv.service(name="frontend", namespace="shop", cluster_ip=VIP_FRONTEND,
                ports=[_svc_port("http", 80, "http")], selector={"app": "frontend"},
                labels={"app": "frontend", **shop_common})
    inv.service(name="catalog", namespace="shop", cluster_ip=VIP_CATALOG,
                ports=[_svc_port("http", 3550, 3550)], selector={"app": "catalog"},
                labels={"app": "catalog", **shop_common})
    inv.service(name="recommendations", namespace="shop", cluster_ip=VIP_RECOMMENDATIONS,
                ports=[_svc_port("http", 8081, 8081)], selector={"app": "recommendations"},
                labels={"app": "recommendations", **shop_common})
    inv.service(name="checkout", namespace="shop", cluster_ip=VIP_CHECKOUT,
                ports=[_svc_port("grpc", 5050, "grpc")], selector={"app": "checkout"},
                labels={"app": "checkout", **shop_common})
    inv.service(name="redis-cart", namespace="shop", cluster_ip=None,
                ports=[_svc_port("redis", 6379, 6379)], selector={"app": "redis-cart"},
                labels={"app": "redis-cart", **shop_common})
    inv.service(name="payments-api", namespace="payments", cluster_ip=VIP_PAYMENTS_API,
                ports=[_svc_port("https", 443, 8443)], selector={"app": "payments-api"},
                labels={"app": "payments-api", **pay_common})
    inv.service(name="card-vault", namespace="payments", cluster_ip=VIP_CARD_VAULT,
                ports=[_svc_port("postgres", 5432, "postgres")],
                selector={"app": "card-vault"}, labels={"app": "card-vault", **pay_common})
    return inv.as_list()


def render_inventory() -> str:
    """The dump as kubectl prints it (4-space indent, sorted keys, trailing newline)."""
    return json.dumps(build_inventory(), indent=4, sort_keys=True, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------------------------
# The lab: one network namespace per host, all on one bridge
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Host:
    """A machine in the lab: a pod, the node, the API server or an external host."""

    key: str  # short name, part of the netns name
    workload: str  # what the report and the tests call it
    addrs: tuple[str, ...]  # primary first; extra ones are Service VIPs "owned" by this host


HOSTS: tuple[Host, ...] = (
    Host("apiserver", "kube-apiserver", (APISERVER_IP, VIP_KUBERNETES)),
    Host("node", f"node/{NODE_NAME} (kubelet)", (NODE_IP,)),
    Host("coredns", "kube-system/coredns", (IP_COREDNS, VIP_KUBE_DNS)),
    Host("fe-a", "shop/frontend (pod 1)", (IP_FRONTEND_A,)),
    Host("fe-b", "shop/frontend (pod 2)", (IP_FRONTEND_B,)),
    Host("catalog", "shop/catalog", (IP_CATALOG,)),
    Host("recs", "shop/recommendations", (IP_RECOMMENDATIONS,)),
    Host("checkout", "shop/checkout", (IP_CHECKOUT,)),
    Host("redis", "shop/redis-cart", (IP_REDIS_CART,)),
    Host("pay-a", "payments/payments-api (pod 1)", (IP_PAYMENTS_A, VIP_PAYMENTS_API)),
    Host("pay-b", "payments/payments-api (pod 2)", (IP_PAYMENTS_B,)),
    Host("vault", "payments/card-vault", (IP_CARD_VAULT,)),
    Host("settle", f"payments/{JOB_NAME} (CronJob settlement)", (IP_SETTLEMENT,)),
    Host("shopper", "internet shopper", (SHOPPER_IP,)),
    Host("gateway", f"payment gateway {GATEWAY_NAME}", (GATEWAY_IP,)),
)
HOST = {h.key: h for h in HOSTS}
BRIDGE = "br0"
NETNS_DIR = Path("/var/run/netns")
_CLONE_NEWNET = 0x40000000


def _mac(prefix: int, ip: str) -> str:
    """Docker-style locally administered MAC: 02:<prefix>:<the four bytes of the IP>."""
    return ":".join(f"{b:02x}" for b in (2, prefix, *socket.inet_aton(ip)))


def _run(*argv: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.returncode}")


def enter_netns(name: str) -> None:
    """Move the calling (single-threaded, freshly forked) process into a named netns."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(NETNS_DIR / name, os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def disable_tx_checksum_offload(ready: Callable[[], None], ifname: str = "eth0") -> None:
    """Turn off TX checksum offload on ``ifname`` (ETHTOOL_STXCSUM, as ``ethtool -K tx off``).

    With offload on, a veth hands partially checksummed packets to the bridge and the capture
    would be full of "bad checksum" segments; with it off the kernel computes them in software.
    """
    import fcntl

    del ready
    siocethtool, ethtool_stxcsum = 0x8946, 0x17
    value = ctypes.create_string_buffer(struct.pack("II", ethtool_stxcsum, 0))
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value)).ljust(40, b"\0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s.fileno(), siocethtool, ifreq)


def _log(msg: str) -> None:
    print(f"[make_sample] {msg}", file=sys.stderr, flush=True)


class Lab:
    """Creates the namespaces, runs code inside them, and tears everything down."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.namespaces: list[str] = []
        self.daemons: list[int] = []

    def ns(self, key: str) -> str:
        return f"{self.prefix}-{key}"

    # -- set-up / tear-down ------------------------------------------------------------

    def _add_ns(self, name: str) -> None:
        _run("ip", "netns", "add", name)
        self.namespaces.append(name)
        # No IPv6: keeps router solicitations and MLD reports out of the capture.
        _run("ip", "netns", "exec", name, "sysctl", "-qw",
             "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        _run("ip", "-n", name, "link", "set", "lo", "up")

    def build(self) -> None:
        sw = self.ns("sw")
        self._add_ns(sw)
        _run("ip", "-n", sw, "link", "add", BRIDGE, "address", "02:42:ac:12:ff:fe", "type",
             "bridge", "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0")
        # Promiscuous: the bridge device then sees every frame it forwards (for the sniffer).
        _run("ip", "-n", sw, "link", "set", BRIDGE, "promisc", "on", "up")
        for i, host in enumerate(HOSTS):
            name = self.ns(host.key)
            self._add_ns(name)
            port = f"p{i}-{host.key}"[:15]
            _run("ip", "-n", sw, "link", "add", port, "address", _mac(0x43, host.addrs[0]),
                 "type", "veth", "peer", "name", "eth0", "address", _mac(0x42, host.addrs[0]),
                 "netns", name)
            _run("ip", "-n", sw, "link", "set", port, "master", BRIDGE, "up")
            for addr in host.addrs:
                _run("ip", "-n", name, "addr", "add", f"{addr}/32", "dev", "eth0")
            _run("ip", "-n", name, "link", "set", "eth0", "up")
            # On-link default route: every destination is ARPed for on the bridge, and
            # connections leave from the primary address even where a VIP is also configured.
            _run("ip", "-n", name, "route", "add", "default", "dev", "eth0", "src",
                 host.addrs[0])

    def close(self) -> None:
        for pid in self.daemons:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in self.daemons:
            with suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.daemons.clear()
        for name in reversed(self.namespaces):
            try:
                _run("ip", "netns", "del", name)
            except RuntimeError as exc:
                _log(f"warning: {exc}")
        self.namespaces.clear()

    # -- running code in a namespace -----------------------------------------------------

    def _fork(self, key: str, target: Callable[..., None], *args: Any) -> tuple[int, int]:
        """Fork; the child enters the host's netns and runs ``target(*args, ready)``."""
        r, w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                os.close(r)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                enter_netns(self.ns(key))
                target(*args, lambda: os.write(w, b"1"))
                code = 0
            except BaseException:
                traceback.print_exc()
                sys.stderr.flush()
            finally:
                os._exit(code)
        os.close(w)
        return pid, r

    def start(self, key: str, target: Callable[..., None], *args: Any,
              timeout: float = 10.0) -> int:
        """Start a long-running process in a host; wait until it reports ready."""
        pid, r = self._fork(key, target, *args)
        self.daemons.append(pid)
        try:
            ok = _wait_readable(r, timeout) and os.read(r, 1) == b"1"
        finally:
            os.close(r)
        if not ok:
            raise RuntimeError(f"{target.__name__} in {key} did not start")
        return pid

    def run(self, key: str, target: Callable[..., None], *args: Any,
            timeout: float = 20.0) -> None:
        """Run a function to completion inside a host."""
        pid, r = self._fork(key, target, *args)
        os.close(r)
        deadline = time.monotonic() + timeout
        try:
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{target.__name__} in {key} timed out")
                time.sleep(0.005)
        except BaseException:  # timeout, Ctrl-C, SIGTERM: never leave the child behind
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with suppress(ChildProcessError):
                os.waitpid(pid, 0)
            raise
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{target.__name__} in {key} failed")

    def wait(self, pid: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                self.daemons.remove(pid)
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.02)
        raise RuntimeError(f"process {pid} did not finish")


def _wait_readable(fd: int, timeout: float) -> bool:
    import select

    readable, _, _ = select.select([fd], [], [], timeout)
    return bool(readable)


def remove_stale_namespaces() -> None:
    """Delete ``segs-<pid>-*`` namespaces left by an earlier run of this script that died."""
    if not NETNS_DIR.is_dir():
        return
    for entry in NETNS_DIR.iterdir():
        parts = entry.name.split("-")
        if len(parts) >= 3 and parts[0] == "segs" and parts[1].isdigit() \
                and not Path(f"/proc/{parts[1]}").exists():
            with suppress(RuntimeError):
                _run("ip", "netns", "del", entry.name)


# --------------------------------------------------------------------------------------------
# Servers (each runs inside its host's namespace)
# --------------------------------------------------------------------------------------------


@dataclass
class _TlsState:
    """Set in the parent before forking: (cert, key) PEM paths, or None for bare ClientHellos."""

    files: tuple[str, str] | None = None


TLS = _TlsState()

DNS_ZONE = {
    "kubernetes.default.svc.cluster.local": VIP_KUBERNETES,
    "kube-dns.kube-system.svc.cluster.local": VIP_KUBE_DNS,
    "frontend.shop.svc.cluster.local": VIP_FRONTEND,
    "catalog.shop.svc.cluster.local": VIP_CATALOG,
    "recommendations.shop.svc.cluster.local": VIP_RECOMMENDATIONS,
    "checkout.shop.svc.cluster.local": VIP_CHECKOUT,
    "redis-cart.shop.svc.cluster.local": IP_REDIS_CART,  # headless: the pod's address
    "redis-cart-0.redis-cart.shop.svc.cluster.local": IP_REDIS_CART,
    "payments-api.payments.svc.cluster.local": VIP_PAYMENTS_API,
    "card-vault.payments.svc.cluster.local": VIP_CARD_VAULT,
    GATEWAY_NAME: GATEWAY_IP,
}


def _dns_answer(query: bytes) -> bytes:
    from scapy.layers.dns import DNS, DNSRR

    q = DNS(query)
    qname = q.qd[0].qname.decode().rstrip(".").lower()
    addr = DNS_ZONE.get(qname)
    if addr is not None and q.qd[0].qtype == 1:
        ttl = 300 if qname == GATEWAY_NAME else 30
        resp = DNS(id=q.id, qr=1, opcode=0, aa=int(qname != GATEWAY_NAME), rd=q.rd, ra=1,
                   qd=q.qd, an=DNSRR(rrname=q.qd[0].qname, type="A", ttl=ttl, rdata=addr))
    else:  # NXDOMAIN (or NODATA for other types)
        resp = DNS(id=q.id, qr=1, aa=1, rd=q.rd, ra=1, qd=q.qd,
                   rcode=0 if addr is not None else 3)
    return bytes(resp)


def _udp_dns_server(addr: str) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 53))  # bound per address: answers leave from the address that was asked

    def loop() -> None:
        while True:
            data, peer = s.recvfrom(4096)
            with suppress(Exception):
                s.sendto(_dns_answer(data), peer)

    threading.Thread(target=loop, daemon=True).start()


def _recv_until(conn: Any, marker: bytes, limit: int = 65536) -> bytes:
    buf = b""
    while marker not in buf:
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError("peer closed early")
        buf += chunk
        if len(buf) > limit:
            raise ConnectionError("message too long")
    return buf


def _recv_exact(conn: Any, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed early")
        buf += chunk
    return buf


def _read_http(conn: Any) -> tuple[str, bytes]:
    """Read one HTTP/1.1 message; return the head and the body."""
    buf = _recv_until(conn, b"\r\n\r\n")
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    if len(body) < length:
        body += _recv_exact(conn, length - len(body))
    return head.decode("latin-1"), body


HTTP_BODIES = {
    "frontend": (b"<!doctype html><html><head><title>Online Boutique</title></head>"
                 b"<body><h1>Hot products</h1><ul><li>Sunglasses</li><li>Tank top</li>"
                 b"<li>Watch</li></ul></body></html>", "text/html; charset=utf-8"),
    "catalog": (b'{"products":[{"id":"OLJCESPC7Z","name":"Sunglasses","priceUsd":19.99},'
                b'{"id":"66VCHSJNUP","name":"Tank Top","priceUsd":18.99},'
                b'{"id":"1YMWWN1N4O","name":"Watch","priceUsd":109.99}]}', "application/json"),
    "payments": (b'{"status":"authorized","token":"tok_7HfQ2x","last4":"1111"}',
                 "application/json"),
    "gateway": (b'{"id":"ch_3PqLm2","status":"succeeded","amount":4897,"currency":"usd"}',
                "application/json"),
    "apiserver": (b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success"}',
                  "application/json"),
}


def _http_handler(role: str) -> Callable[[Any], None]:
    body, ctype = HTTP_BODIES[role]

    def handle(conn: Any) -> None:
        head, _ = _read_http(conn)
        path = head.split(" ", 2)[1] if " " in head else "/"
        payload = b"ok" if path.startswith(("/healthz", "/readyz")) else body
        ptype = "text/plain; charset=utf-8" if payload == b"ok" else ctype
        conn.sendall(
            (f"HTTP/1.1 200 OK\r\nContent-Type: {ptype}\r\nContent-Length: {len(payload)}\r\n"
             "Date: Fri, 16 May 2025 14:56:10 GMT\r\nConnection: close\r\n\r\n").encode()
            + payload)
        with suppress(OSError):
            conn.recv(1)  # wait for the client to close first (TLS: its close_notify)
        if isinstance(conn, ssl.SSLSocket):
            with suppress(OSError):
                conn.unwrap()  # answer with our close_notify: a clean close, no RST

    return handle


# -- a gRPC-shaped HTTP/2 (h2c) exchange ------------------------------------------------------

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _h2_frame(ftype: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + struct.pack(
        "!I", stream) + payload


def _hpack_literal(name_index: int, value: str) -> bytes:
    """Literal header field with incremental indexing, indexed name (no Huffman)."""
    v = value.encode()
    assert name_index < 64
    assert len(v) < 127
    return bytes([0x40 | name_index, len(v)]) + v


def _hpack_new(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return bytes([0x40, len(n)]) + n + bytes([len(v)]) + v


def _read_h2_frame(conn: Any) -> tuple[int, int, int, bytes]:
    head = _recv_exact(conn, 9)
    length = int.from_bytes(head[:3], "big")
    payload = _recv_exact(conn, length) if length else b""
    return head[3], head[4], struct.unpack("!I", head[5:9])[0] & 0x7FFFFFFF, payload


def _grpc_handler(conn: Any) -> None:
    _recv_exact(conn, len(H2_PREFACE))
    conn.sendall(_h2_frame(4, 0, 0, struct.pack("!HI", 3, 100)))  # SETTINGS
    while True:
        ftype, flags, stream, _ = _read_h2_frame(conn)
        if ftype == 4 and not flags & 1:
            conn.sendall(_h2_frame(4, 1, 0))  # SETTINGS ACK
        elif ftype == 0 and flags & 1:  # DATA, END_STREAM: the request is complete
            reply = b'\n\x0ford-20250516-0042\x12\x06tok_7H'
            conn.sendall(
                _h2_frame(1, 4, stream, b"\x88" + _hpack_new("content-type", "application/grpc"))
                + _h2_frame(0, 0, stream, b"\x00" + struct.pack("!I", len(reply)) + reply)
                + _h2_frame(1, 5, stream, _hpack_new("grpc-status", "0")))
        elif ftype == 7:  # GOAWAY
            return


# -- Redis (RESP) -----------------------------------------------------------------------------


def _resp(*args: str) -> bytes:
    out = f"*{len(args)}\r\n".encode()
    for a in args:
        b = a.encode()
        out += f"${len(b)}\r\n".encode() + b + b"\r\n"
    return out


def _redis_handler(conn: Any) -> None:
    f = conn.makefile("rb")
    store: dict[str, dict[str, str]] = {}
    while True:
        line = f.readline()
        if not line:
            return
        n = int(line[1:])
        args = []
        for _ in range(n):
            size = int(f.readline()[1:])
            args.append(f.read(size + 2)[:-2].decode())
        cmd = args[0].upper()
        if cmd == "PING":
            conn.sendall(b"+PONG\r\n")
        elif cmd == "HSET":
            store.setdefault(args[1], {}).update(dict(zip(args[2::2], args[3::2], strict=True)))
            conn.sendall(f":{len(args[2:]) // 2}\r\n".encode())
        elif cmd == "HGETALL":
            items = [x for kv in store.get(args[1], {"OLJCESPC7Z": "1"}).items() for x in kv]
            conn.sendall(f"*{len(items)}\r\n".encode() + b"".join(
                f"${len(x)}\r\n{x}\r\n".encode() for x in items))
        elif cmd in ("EXPIRE", "DEL"):
            conn.sendall(b":1\r\n")
        elif cmd == "QUIT":
            conn.sendall(b"+OK\r\n")
            return
        else:
            conn.sendall(b"-ERR unknown command\r\n")


# -- PostgreSQL wire protocol (v3), plaintext -------------------------------------------------


def _pg_msg(tag: bytes, payload: bytes) -> bytes:
    return tag + struct.pack("!I", len(payload) + 4) + payload


def _pg_handler(conn: Any) -> None:
    size = struct.unpack("!I", _recv_exact(conn, 4))[0]
    _recv_exact(conn, size - 4)  # protocol version + parameters
    conn.sendall(
        _pg_msg(b"R", struct.pack("!I", 0))
        + _pg_msg(b"S", b"server_version\x0016.4\x00")
        + _pg_msg(b"S", b"client_encoding\x00UTF8\x00")
        + _pg_msg(b"K", struct.pack("!II", 4242, 0x5EC2E7))
        + _pg_msg(b"Z", b"I"))
    while True:
        tag = _recv_exact(conn, 1)
        length = struct.unpack("!I", _recv_exact(conn, 4))[0]
        body = _recv_exact(conn, length - 4)
        if tag == b"X":
            return
        if tag != b"Q":
            continue
        sql = body.rstrip(b"\x00").decode()
        verb = sql.split(None, 1)[0].upper()
        out = b""
        if verb == "SELECT":
            cols = [b"token", b"pan", b"amount_cents"]
            out += _pg_msg(b"T", struct.pack("!H", len(cols)) + b"".join(
                c + b"\x00" + struct.pack("!IhIhih", 16384, i + 1, 25, -1, -1, 0)
                for i, c in enumerate(cols)))
            row = [b"tok_7HfQ2x", TEST_PAN_COMPACT.encode(), b"4897"]
            out += _pg_msg(b"D", struct.pack("!H", len(row)) + b"".join(
                struct.pack("!I", len(v)) + v for v in row))
            out += _pg_msg(b"C", b"SELECT 1\x00")
        elif verb == "INSERT":
            out += _pg_msg(b"C", b"INSERT 0 1\x00")
        else:
            out += _pg_msg(b"C", verb.encode() + b" 1\x00")
        conn.sendall(out + _pg_msg(b"Z", b"I"))


# -- TLS ----------------------------------------------------------------------------------


def _tls_server_context() -> ssl.SSLContext | None:
    if TLS.files is None:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*TLS.files)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _hello_only_handler(conn: Any) -> None:
    """Without openssl: read the ClientHello, refuse it with a handshake_failure alert."""
    header = _recv_exact(conn, 5)
    _recv_exact(conn, struct.unpack("!H", header[3:5])[0])
    conn.sendall(b"\x15\x03\x03\x00\x02\x02\x28")
    with suppress(OSError):
        conn.recv(1)  # let the client close first


def _tcp_server(addr: str, port: int, handler: Callable[[Any], None], tls: bool) -> None:
    ctx = _tls_server_context() if tls else None
    if tls and ctx is None:
        handler = _hello_only_handler
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(32)

    def serve_one(conn: socket.socket) -> None:
        sock: Any = conn
        try:
            conn.settimeout(10)
            if ctx is not None:
                sock = ctx.wrap_socket(conn, server_side=True)
            handler(sock)
        except Exception as exc:  # a server thread must never take the process down
            _log(f"server {addr}:{port}: {exc!r}")
        finally:
            with suppress(OSError):
                sock.close()

    def loop() -> None:
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()


# What each host serves: (bind address, port, handler, TLS?)
SERVERS: dict[str, list[tuple[str, int, Callable[[Any], None], bool]]] = {
    "apiserver": [(APISERVER_IP, APISERVER_PORT, _http_handler("apiserver"), True),
                  (VIP_KUBERNETES, 443, _http_handler("apiserver"), True)],
    "fe-a": [("0.0.0.0", 8080, _http_handler("frontend"), False)],
    "fe-b": [("0.0.0.0", 8080, _http_handler("frontend"), False)],
    "catalog": [("0.0.0.0", 3550, _http_handler("catalog"), False)],
    "recs": [("0.0.0.0", 8081, _http_handler("catalog"), False)],
    "checkout": [("0.0.0.0", 5050, _grpc_handler, False)],
    "redis": [("0.0.0.0", 6379, _redis_handler, False)],
    # payments-api pod 1 also "owns" the Service VIP, so it answers on 443 as kube-proxy would
    "pay-a": [("0.0.0.0", 8443, _http_handler("payments"), True),
              (VIP_PAYMENTS_API, 443, _http_handler("payments"), True)],
    "pay-b": [("0.0.0.0", 8443, _http_handler("payments"), True)],
    "vault": [("0.0.0.0", 5432, _pg_handler, False)],
    "gateway": [(GATEWAY_IP, 443, _http_handler("gateway"), True)],
}


def run_servers(key: str, ready: Callable[[], None]) -> None:
    if key == "coredns":
        for addr in HOST[key].addrs:
            _udp_dns_server(addr)
    for addr, port, handler, tls in SERVERS.get(key, []):
        _tcp_server(addr, port, handler, tls)
    ready()
    while True:
        signal.pause()


# --------------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dns:
    """An A lookup against the cluster DNS Service (10.96.0.10:53)."""

    name: str


@dataclass(frozen=True)
class Http:
    """One HTTP/1.1 request on its own connection (HTTPS when ``tls``)."""

    dst: str
    port: int
    path: str = "/"
    method: str = "GET"
    host: str | None = None  # Host header; defaults to dst:port
    tls: bool = False
    sni: str | None = None  # None: no server_name extension (clients that dial an IP)
    body: bytes = b""
    agent: str = "Go-http-client/1.1"


@dataclass(frozen=True)
class Redis:
    dst: str
    port: int
    commands: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Grpc:
    dst: str
    port: int
    authority: str
    method: str
    message: bytes


@dataclass(frozen=True)
class Postgres:
    dst: str
    port: int
    user: str
    database: str
    queries: tuple[str, ...]


Action = Dns | Http | Redis | Grpc | Postgres


def _dns_lookup(name: str, qid: int) -> str | None:
    from scapy.layers.dns import DNS, DNSQR

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    try:
        s.connect((VIP_KUBE_DNS, 53))
        s.send(bytes(DNS(id=qid, rd=1, qd=DNSQR(qname=name, qtype="A"))))
        ans = DNS(s.recv(4096))
    finally:
        s.close()
    for rr in ans.an or []:
        if rr.type == 1:
            return str(rr.rdata)
    return None


def client_hello(sni: str | None) -> bytes:
    """A hand-built TLS 1.3 ClientHello (used only when openssl is missing)."""

    def ext(etype: int, data: bytes) -> bytes:
        return struct.pack("!HH", etype, len(data)) + data

    exts = b""
    if sni:
        name = sni.encode()
        entry = b"\x00" + struct.pack("!H", len(name)) + name
        exts += ext(0, struct.pack("!H", len(entry)) + entry)
    exts += ext(10, struct.pack("!HHH", 4, 0x001D, 0x0017))
    exts += ext(13, struct.pack("!HHHH", 6, 0x0403, 0x0804, 0x0401))
    exts += ext(16, b"\x00\x09\x08http/1.1")
    exts += ext(43, b"\x04\x03\x04\x03\x03")
    exts += ext(51, struct.pack("!HHH", 36, 0x001D, 32) + os.urandom(32))
    suites = struct.pack("!7H", 0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030)
    body = (b"\x03\x03" + os.urandom(32) + b"\x20" + os.urandom(32)
            + struct.pack("!H", len(suites)) + suites + b"\x01\x00"
            + struct.pack("!H", len(exts)) + exts)
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def _http_call(a: Http) -> None:
    raw = socket.create_connection((a.dst, a.port), timeout=5)
    sock: Any = raw
    try:
        if a.tls:
            if TLS.files is None:
                raw.sendall(client_hello(a.sni))
                raw.recv(4096)  # the server's alert
                return
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["http/1.1"])
            sock = ctx.wrap_socket(raw, server_hostname=a.sni)
        host = a.host or f"{a.dst}:{a.port}"
        head = (f"{a.method} {a.path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {a.agent}\r\n"
                "Accept: */*\r\nConnection: close\r\n")
        if a.body or a.method in ("POST", "PUT"):
            head += f"Content-Type: application/json\r\nContent-Length: {len(a.body)}\r\n"
        sock.sendall(head.encode() + b"\r\n" + a.body)
        status, _ = _read_http(sock)
        if not status.startswith("HTTP/1.1 200"):
            raise RuntimeError(f"{a.dst}:{a.port}{a.path}: {status.splitlines()[0]}")
        if isinstance(sock, ssl.SSLSocket):
            sock = sock.unwrap()  # close_notify both ways, then a plain TCP close
    finally:
        sock.close()


def _redis_call(a: Redis) -> None:
    with socket.create_connection((a.dst, a.port), timeout=5) as s:
        f = s.makefile("rb")
        for cmd in (*a.commands, ("QUIT",)):
            s.sendall(_resp(*cmd))
            line = f.readline()
            if line.startswith(b"*"):  # array reply: skip its elements
                for _ in range(int(line[1:])):
                    size = int(f.readline()[1:])
                    f.read(size + 2)


def _grpc_call(a: Grpc) -> None:
    with socket.create_connection((a.dst, a.port), timeout=5) as s:
        headers = (b"\x83\x86" + _hpack_literal(4, a.method) + _hpack_literal(1, a.authority)
                   + _hpack_literal(31, "application/grpc") + _hpack_new("te", "trailers")
                   + _hpack_new("user-agent", "grpc-go/1.64.0"))
        msg = b"\x00" + struct.pack("!I", len(a.message)) + a.message
        s.sendall(H2_PREFACE + _h2_frame(4, 0, 0, struct.pack("!HI", 4, 65535))
                  + _h2_frame(1, 4, 1, headers) + _h2_frame(0, 1, 1, msg))
        while True:
            ftype, flags, _, _ = _read_h2_frame(s)
            if ftype == 4 and not flags & 1:
                s.sendall(_h2_frame(4, 1, 0))
            elif ftype == 1 and flags & 1:  # trailers: the call is over
                break
        s.sendall(_h2_frame(7, 0, 0, struct.pack("!II", 1, 0)))  # GOAWAY, NO_ERROR


def _pg_read_until_ready(s: socket.socket) -> None:
    while True:
        tag = _recv_exact(s, 1)
        length = struct.unpack("!I", _recv_exact(s, 4))[0]
        _recv_exact(s, length - 4)
        if tag == b"Z":
            return


def _pg_call(a: Postgres) -> None:
    with socket.create_connection((a.dst, a.port), timeout=5) as s:
        params = (f"user\x00{a.user}\x00database\x00{a.database}\x00"
                  f"application_name\x00{a.user}\x00\x00").encode()
        s.sendall(struct.pack("!II", len(params) + 8, 196608) + params)
        _pg_read_until_ready(s)
        for q in a.queries:
            s.sendall(_pg_msg(b"Q", q.encode() + b"\x00"))
            _pg_read_until_ready(s)
        s.sendall(_pg_msg(b"X", b""))


def run_actions(actions: tuple[Action, ...], qid_base: int, ready: Callable[[], None]) -> None:
    del ready
    for i, a in enumerate(actions):
        if isinstance(a, Dns):
            answer = _dns_lookup(a.name, (qid_base * 16 + i) & 0xFFFF)
            if answer != DNS_ZONE.get(a.name):
                raise RuntimeError(f"DNS {a.name}: got {answer}")
        elif isinstance(a, Http):
            _http_call(a)
        elif isinstance(a, Redis):
            _redis_call(a)
        elif isinstance(a, Grpc):
            _grpc_call(a)
        else:
            _pg_call(a)


# --------------------------------------------------------------------------------------------
# The scenario: who talks to whom, in order
# --------------------------------------------------------------------------------------------

DNS_CATALOG = Dns("catalog.shop.svc.cluster.local")
DNS_CHECKOUT = Dns("checkout.shop.svc.cluster.local")
DNS_REDIS = Dns("redis-cart.shop.svc.cluster.local")
DNS_PAYMENTS = Dns("payments-api.payments.svc.cluster.local")
DNS_VAULT = Dns("card-vault.payments.svc.cluster.local")
DNS_GATEWAY = Dns(GATEWAY_NAME)
DNS_KUBERNETES = Dns("kubernetes.default.svc.cluster.local")

SHOP_HOST = "shop.example.com"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0"


def _shopper(dst: str, path: str, method: str = "GET", body: bytes = b"") -> Http:
    return Http(dst, 8080, path, method, host=SHOP_HOST, body=body, agent=BROWSER)


def _probes() -> tuple[Action, ...]:
    kube_probe = "kube-probe/1.31"
    return (Http(IP_FRONTEND_A, 8080, "/healthz", agent=kube_probe),
            Http(IP_FRONTEND_B, 8080, "/healthz", agent=kube_probe),
            Http(IP_PAYMENTS_A, 8443, "/healthz", tls=True, agent=kube_probe),
            Http(IP_PAYMENTS_B, 8443, "/healthz", tls=True, agent=kube_probe))


def _catalog(path: str) -> Http:
    return Http(IP_CATALOG, 3550, path, host="catalog.shop.svc.cluster.local:3550")


def _checkout(order: str) -> Grpc:
    return Grpc(IP_CHECKOUT, 5050, "checkout.shop.svc.cluster.local:5050",
                "/hipstershop.CheckoutService/PlaceOrder",
                b"\n\x08" + order.encode() + b"\x12\x03usd")


def _charge(dst: str, port: int, sni: str | None) -> Http:
    return Http(dst, port, "/v1/charges", "POST", tls=True, sni=sni,
                host=sni or f"{dst}:{port}",
                body=b'{"order":"ord-20250516-0042","amount":4897,"currency":"usd",'
                     b'"card_token":"tok_7HfQ2x"}')


def _vault_write(user: str) -> Postgres:
    return Postgres(IP_CARD_VAULT, 5432, user, "vault", (
        "BEGIN",
        "INSERT INTO cards (token, pan, exp_month, exp_year) "
        f"VALUES ('tok_7HfQ2x', '{TEST_PAN}', 12, 2030)",
        "COMMIT"))


def _gateway(path: str) -> Http:
    return Http(GATEWAY_IP, 443, path, "POST", tls=True, sni=GATEWAY_NAME, host=GATEWAY_NAME,
                body=b'{"amount":4897,"currency":"usd","source":"tok_7HfQ2x"}')


SCENARIO: tuple[tuple[str, tuple[Action, ...]], ...] = (
    # CoreDNS lists Services/EndpointSlices from the API server (by address, post-DNAT).
    ("coredns", (Http(APISERVER_IP, APISERVER_PORT,
                      "/apis/discovery.k8s.io/v1/endpointslices?limit=500", tls=True,
                      agent="coredns/1.11.3"),)),
    ("node", _probes()),
    ("shopper", (_shopper(IP_FRONTEND_A, "/"),)),
    ("fe-a", (DNS_CATALOG, _catalog("/products"), DNS_REDIS,
              Redis(IP_REDIS_CART, 6379, (("PING",), ("HGETALL", "cart:5f1c2e"))))),
    ("shopper", (_shopper(IP_FRONTEND_B, "/product/OLJCESPC7Z"),)),
    ("fe-b", (DNS_CATALOG, _catalog("/products/OLJCESPC7Z"))),
    ("recs", (DNS_CATALOG, _catalog("/products?ids=66VCHSJNUP,1YMWWN1N4O"))),
    ("shopper", (_shopper(IP_FRONTEND_A, "/cart", "POST",
                          b'{"product_id":"OLJCESPC7Z","quantity":1}'),)),
    ("fe-a", (DNS_REDIS, Redis(IP_REDIS_CART, 6379,
                               (("HSET", "cart:5f1c2e", "OLJCESPC7Z", "1"),
                                ("EXPIRE", "cart:5f1c2e", "86400"))))),
    ("shopper", (_shopper(IP_FRONTEND_B, "/cart/checkout", "POST",
                          b'{"email":"someone@example.com","cart":"5f1c2e"}'),)),
    ("fe-b", (DNS_CHECKOUT, _checkout("5f1c2e"))),
    # checkout reaches payments-api through the Service VIP (port 443 -> targetPort 8443)
    ("checkout", (DNS_REDIS, Redis(IP_REDIS_CART, 6379, (("HGETALL", "cart:5f1c2e"),)),
                  DNS_PAYMENTS,
                  _charge(VIP_PAYMENTS_API, 443, "payments-api.payments.svc.cluster.local"),
                  Redis(IP_REDIS_CART, 6379, (("DEL", "cart:5f1c2e"),)))),
    ("pay-a", (DNS_VAULT, _vault_write("payments_api"), DNS_GATEWAY, _gateway("/v1/charges"))),
    ("pay-a", (DNS_KUBERNETES, Http(VIP_KUBERNETES, 443,
                                    "/api/v1/namespaces/payments/secrets/gateway-credentials",
                                    tls=True, agent="payments-api/v2.0.7 (client-go)"))),
    ("shopper", (_shopper(IP_FRONTEND_B, "/"), _shopper(IP_FRONTEND_A, "/product/66VCHSJNUP"))),
    ("shopper", (_shopper(IP_FRONTEND_A, "/cart/checkout", "POST",
                          b'{"email":"other@example.com","cart":"9a03d7"}'),)),
    ("fe-a", (DNS_CHECKOUT, _checkout("9a03d7"))),
    # ... and once straight to a payments-api endpoint (pod IP, port 8443)
    ("checkout", (DNS_REDIS, Redis(IP_REDIS_CART, 6379, (("HGETALL", "cart:9a03d7"),)),
                  DNS_PAYMENTS, _charge(IP_PAYMENTS_B, 8443, None))),
    ("pay-b", (DNS_VAULT, _vault_write("payments_api"), DNS_GATEWAY, _gateway("/v1/charges"))),
    # The settlement CronJob's pod: reads the vault, settles with the gateway.
    ("settle", (DNS_VAULT, Postgres(IP_CARD_VAULT, 5432, "settlement", "vault", (
        "SELECT token, pan, amount_cents FROM pending_settlements WHERE day = '2025-05-16'",
        "UPDATE pending_settlements SET settled = true WHERE day = '2025-05-16'")),
                DNS_GATEWAY, _gateway("/v1/settlements"))),
    ("node", _probes()),
    ("shopper", (_shopper(IP_FRONTEND_B, "/product/1YMWWN1N4O"), _shopper(IP_FRONTEND_A, "/"))),
    ("fe-b", (DNS_CATALOG, _catalog("/products/1YMWWN1N4O"), DNS_REDIS,
              Redis(IP_REDIS_CART, 6379, (("PING",),)))),
    ("recs", (DNS_CATALOG, _catalog("/products?ids=OLJCESPC7Z"))),
)
STEP_PAUSE = 0.12  # seconds between steps, so the capture reads like a timeline


def expected_flows() -> list[tuple[str, str, str, int]]:
    """(proto, client IP, server IP, server port) for every conversation the scenario makes."""
    flows: list[tuple[str, str, str, int]] = []
    for key, actions in SCENARIO:
        src = HOST[key].addrs[0]
        for a in actions:
            flow = ("UDP", src, VIP_KUBE_DNS, 53) if isinstance(a, Dns) else (
                "TCP", src, a.dst, a.port)
            if flow not in flows:
                flows.append(flow)
    return flows


# --------------------------------------------------------------------------------------------
# Capture
# --------------------------------------------------------------------------------------------


def run_sniffer(out_path: str, stop_fd: int, ready: Callable[[], None]) -> None:
    """Inside the switch namespace: sniff the bridge until told to stop, then write the file."""
    from scapy.config import conf
    from scapy.layers import inet, l2  # registers Ether/IP/TCP/UDP for decoding
    from scapy.sendrecv import AsyncSniffer
    from scapy.utils import PcapNgWriter, PcapWriter

    del inet, l2
    conf.ifaces.reload()
    started = threading.Event()
    sniffer = AsyncSniffer(iface=BRIDGE, store=True, promisc=True,
                           started_callback=started.set)
    sniffer.start()
    if not started.wait(10):
        raise RuntimeError("sniffer did not start")
    ready()
    os.read(stop_fd, 1)
    time.sleep(0.4)
    packets: Any = sniffer.stop() or []
    try:
        writer: Any = PcapNgWriter(out_path)
        writer.write(packets)
        writer.close()
    except Exception:  # pcapng writing failed: fall back to classic pcap, named as such
        traceback.print_exc()
        fallback = str(Path(out_path).with_suffix(".pcap"))
        writer = PcapWriter(fallback, linktype=1, sync=False)
        writer.write(packets)
        writer.close()
        _log(f"wrote classic pcap {fallback} instead of pcapng")
        raise
    _log(f"captured {len(packets)} packets")


@contextmanager
def _tls_material(use_openssl: bool) -> Iterator[None]:
    openssl = shutil.which("openssl") if use_openssl else None
    if openssl is None:
        _log("openssl not found: TLS clients send a hand-built ClientHello only")
        TLS.files = None
        yield
        return
    with tempfile.TemporaryDirectory(prefix="segs-tls-") as tmp:
        key, cert = f"{tmp}/key.pem", f"{tmp}/cert.pem"
        _run(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
             "/CN=segmenter-sample", "-keyout", key, "-out", cert)
        TLS.files = (cert, key)
        try:
            yield
        finally:
            TLS.files = None


def make_capture(out: Path, prefix: str, use_openssl: bool = True) -> None:
    """Build the lab, run the scenario while sniffing the bridge, write ``out``; clean up."""
    remove_stale_namespaces()
    lab = Lab(prefix)
    tmp_out = out.with_name(out.name + ".part")
    tmp_out.unlink(missing_ok=True)
    previous_term = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        with _tls_material(use_openssl):
            t0 = time.monotonic()
            lab.build()
            for host in HOSTS:
                try:
                    lab.run(host.key, disable_tx_checksum_offload)
                except RuntimeError as exc:  # cosmetic only: checksums stay "partial"
                    _log(f"warning: could not turn off checksum offload: {exc}")
            _log(f"{len(lab.namespaces)} namespaces up in {time.monotonic() - t0:.1f}s")
            stop_r, stop_w = os.pipe()
            sniffer = lab.start("sw", run_sniffer, str(tmp_out), stop_r)
            os.close(stop_r)
            for host in HOSTS:
                if host.key in SERVERS or host.key == "coredns":
                    lab.start(host.key, run_servers, host.key)
            time.sleep(0.2)
            for n, (key, actions) in enumerate(SCENARIO):
                lab.run(key, run_actions, actions, n)
                time.sleep(STEP_PAUSE)
            time.sleep(0.3)
            os.write(stop_w, b"1")
            os.close(stop_w)
            if lab.wait(sniffer, 30) != 0:
                raise RuntimeError("the sniffer failed")
            tmp_out.replace(out)
            _log(f"wrote {out} ({out.stat().st_size} bytes) in {time.monotonic() - t0:.1f}s")
    finally:
        lab.close()
        tmp_out.unlink(missing_ok=True)
        signal.signal(signal.SIGTERM, previous_term)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=HERE,
                        help="where to write shop.pcapng and shop-inventory.json")
    parser.add_argument("--inventory-only", action="store_true",
                        help="write only the kubectl dump (no root needed)")
    parser.add_argument("--capture-only", action="store_true",
                        help="write only the capture")
    parser.add_argument("--prefix", default=f"segs-{os.getpid()}",
                        help="network namespace name prefix (default: segs-<pid>)")
    parser.add_argument("--no-openssl", action="store_true",
                        help="do not make a certificate: TLS clients send a bare ClientHello")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if not args.capture_only:
        path = args.out_dir / INVENTORY_NAME
        path.write_text(render_inventory(), encoding="utf-8")
        _log(f"wrote {path}")
    if args.inventory_only:
        return 0
    if os.geteuid() != 0:
        _log("the capture needs root (ip netns); rerun as root or use --inventory-only")
        return 2
    make_capture(args.out_dir / CAPTURE_NAME, args.prefix, use_openssl=not args.no_openssl)
    return 0


if __name__ == "__main__":
    sys.exit(main())
