"""Cluster DNS as the inventory shows it: the resolver's Service, its addresses and the workload
behind it (CoreDNS / kube-dns, OpenShift DNS; policy-semantics.md §1.8)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Final

from segmenter.cluster.services import ServiceBackend, ServiceBackends
from segmenter.model import Inventory, NodeId, NodeKind, Service, WorkloadRef

# NodeLocal DNSCache listens on a link-local address; 169.254.20.10 in the upstream manifests.
NODE_LOCAL_DNS_PREFIX: Final = "169.254.20."  # 169.254.20.0/24
DNS_PORT: Final = 53
_OPENSHIFT_DNS_LABEL: Final = "dns.operator.openshift.io/daemonset-dns"


def dns_service(inventory: Inventory) -> Service | None:
    """The cluster DNS Service: ``kube-system/kube-dns`` or OpenShift's ``dns-default``."""
    for svc in inventory.services:
        if (svc.namespace, svc.name) in (
            ("kube-system", "kube-dns"),
            ("openshift-dns", "dns-default"),
        ):
            return svc
    return None


def dns_service_ips(inventory: Inventory) -> tuple[str, ...]:
    """ClusterIPs of the cluster DNS Service (``kube-system/kube-dns`` or OpenShift's)."""
    svc = dns_service(inventory)
    return tuple(sorted(svc.cluster_ips)) if svc is not None else ()


def dns_workload(inventory: Inventory) -> WorkloadRef | None:
    """The workload that serves cluster DNS (CoreDNS / kube-dns), or None when not found.

    The backend of Service ``kube-system/kube-dns``; else pods labelled ``k8s-app=kube-dns``;
    else OpenShift's ``dns.operator.openshift.io/daemonset-dns`` pods. Several candidates: the
    one with most pods, then the smallest id.
    """
    return find_dns_workload(inventory, None)


def find_dns_workload(
    inventory: Inventory, backend_of: Mapping[tuple[str, str], ServiceBackend | None] | None
) -> WorkloadRef | None:
    """:func:`dns_workload`, with the Service backends already worked out (``backend_of``)."""
    svc = dns_service(inventory)
    if svc is not None:
        if backend_of is not None:
            backend = backend_of.get((svc.namespace, svc.name))
        else:
            backend = ServiceBackends(inventory).backend_of(svc)
        if backend is not None:
            target = NodeId.parse(backend.target)
            if target.kind is NodeKind.WORKLOAD:
                return target.workload
    for key, value in (("k8s-app", "kube-dns"), (_OPENSHIFT_DNS_LABEL, None)):
        counts: Counter[WorkloadRef] = Counter(
            p.owner
            for p in inventory.pods
            if (p.labels.get(key) == value if value is not None else p.labels.get(key) is not None)
        )
        if counts:
            return min(counts, key=lambda r: (-counts[r], r))
    return None

