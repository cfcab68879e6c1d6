"""Inventory from a live cluster, through the official ``kubernetes`` client.

Lists pods, services, EndpointSlices, namespaces, nodes and the workload controllers with paged
``list`` calls (``limit`` / ``continue``, :func:`segmenter.cluster.client.list_pages`) and feeds
the API server's list responses to the same parser as ``kubectl get -o json`` dumps
(:func:`segmenter.cluster.dump.parse_documents`).

The server must first show that it is a Kubernetes API server
(:func:`segmenter.cluster.client.connect`): a kubeconfig pointing at anything else is an error,
never an empty inventory. Namespaces, nodes, pods and services are part of every cluster: a 404
on one of them is an error. EndpointSlices fall back to core/v1 Endpoints (before Kubernetes
1.21), and a workload controller kind the cluster does not serve is skipped with a warning.

The responses are read raw (``_preload_content=False``): the parser wants the JSON the API
server sent, and building the client's model objects first (then ``sanitize_for_serialization``)
costs seconds per ten thousand pods for nothing. Objects that do come back as models (a patched
or older client) are converted with ``ApiClient.sanitize_for_serialization``.

:mod:`segmenter.cluster.watch` builds on this module to follow pod changes during a capture window.

Read-only RBAC for this is in ``docs/rbac.yaml``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from segmenter.cluster.client import DEFAULT_TIMEOUT, RBAC_HINT, api_error, connect, list_pages
from segmenter.cluster.dump import parse_documents
from segmenter.errors import InputError, InventoryError
from segmenter.model import Inventory

__all__ = ["DEFAULT_TIMEOUT", "RBAC_HINT", "RESOURCES", "list_documents", "list_resource",
           "live_inventory", "parse_live_documents"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Resource:
    plural: str
    group: str  # "" for the core group
    api: str  # client class name
    method: str  # its list-for-all-namespaces method
    kind: str
    required: bool = False  # part of every cluster: a 404 is an error, not "not served"

    @property
    def rbac_name(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES: Final = (
    _Resource("namespaces", "", "CoreV1Api", "list_namespace", "Namespace", True),
    _Resource("nodes", "", "CoreV1Api", "list_node", "Node", True),
    _Resource("pods", "", "CoreV1Api", "list_pod_for_all_namespaces", "Pod", True),
    _Resource("services", "", "CoreV1Api", "list_service_for_all_namespaces", "Service", True),
    _Resource(
        "endpointslices",
        "discovery.k8s.io",
        "DiscoveryV1Api",
        "list_endpoint_slice_for_all_namespaces",
        "EndpointSlice",
    ),
    _Resource("deployments", "apps", "AppsV1Api", "list_deployment_for_all_namespaces",
              "Deployment"),
    _Resource("replicasets", "apps", "AppsV1Api", "list_replica_set_for_all_namespaces",
              "ReplicaSet"),
    _Resource("statefulsets", "apps", "AppsV1Api", "list_stateful_set_for_all_namespaces",
              "StatefulSet"),
    _Resource("daemonsets", "apps", "AppsV1Api", "list_daemon_set_for_all_namespaces",
              "DaemonSet"),
    _Resource("jobs", "batch", "BatchV1Api", "list_job_for_all_namespaces", "Job"),
    _Resource("cronjobs", "batch", "BatchV1Api", "list_cron_job_for_all_namespaces", "CronJob"),
)
# Served instead when a cluster has no discovery.k8s.io/v1 (before Kubernetes 1.21).
_LEGACY_ENDPOINTS: Final = _Resource(
    "endpoints", "", "CoreV1Api", "list_endpoints_for_all_namespaces", "Endpoints", True
)


def live_inventory(
    *,
    context: str | None = None,
    kubeconfig: str | None = None,
    page_size: int = 500,
    request_timeout: float = DEFAULT_TIMEOUT,
) -> Inventory:
    """Read the inventory of a running cluster.

    Uses ``kubeconfig`` (or ``$KUBECONFIG``, or ``~/.kube/config``) with ``context`` (default:
    its current context); without any kubeconfig file, the in-cluster service account. An
    unreachable cluster, a server that is not a Kubernetes API server, rejected credentials or
    missing RBAC raise :class:`InventoryError` with one line saying which.
    """
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    api_client, host = connect(context=context, kubeconfig=kubeconfig,
                               request_timeout=request_timeout)
    with api_client:
        documents = list_documents(
            api_client, host=host, page_size=page_size, request_timeout=request_timeout
        )
    return parse_live_documents(documents, host=host, context=context)


def parse_live_documents(
    documents: list[Mapping[str, Any]], *, host: str, context: str | None = None
) -> Inventory:
    """:func:`~segmenter.cluster.dump.parse_documents` for list pages; errors as
    InventoryError."""
    source = f"cluster {host}" + (f" (context {context})" if context else "")
    try:
        return parse_documents(documents, source=source)
    except InputError as exc:
        raise InventoryError(exc.message, path=exc.path, record=exc.record) from None


def list_documents(
    api_client: Any,
    *,
    host: str,
    page_size: int = 500,
    request_timeout: float = DEFAULT_TIMEOUT,
    resources: tuple[_Resource, ...] = RESOURCES,
) -> list[Mapping[str, Any]]:
    """The list pages (``PodList``, ``ServiceList``, …) of ``resources``, as the API sent them.

    A controller kind the cluster does not serve is skipped with a warning (EndpointSlices fall
    back to core/v1 Endpoints); a core resource it does not serve is an error.
    """
    documents: list[Mapping[str, Any]] = []
    for resource in resources:
        pages = list_resource(api_client, resource, host=host, page_size=page_size,
                              request_timeout=request_timeout)
        if pages is None and resource.plural == "endpointslices":
            logger.warning(
                "the cluster at %s serves no discovery.k8s.io/v1 EndpointSlices; "
                "reading core/v1 Endpoints instead",
                host,
            )
            pages = list_resource(api_client, _LEGACY_ENDPOINTS, host=host,
                                  page_size=page_size, request_timeout=request_timeout)
        if pages is None:
            logger.warning("the cluster at %s does not serve %s; skipped", host, resource.rbac_name)
            continue
        documents.extend(pages)
    return documents


def list_resource(
    api_client: Any, resource: _Resource, *, host: str, page_size: int, request_timeout: float
) -> list[dict[str, Any]] | None:
    """Every page of one resource (a consistent paged list), or None when it is not served.

    Raises:
        InventoryError: as :func:`~segmenter.cluster.client.list_pages`, and a 404 on a
            resource that every cluster serves.
    """
    from kubernetes import client

    method = getattr(getattr(client, resource.api)(api_client), resource.method)
    pages = list_pages(method, api_client, host=host, resource=resource.rbac_name,
                       list_kind=f"{resource.kind}List", page_size=page_size,
                       timeout=request_timeout)
    if pages is None and resource.required:
        raise InventoryError(f"the API server at {host} answered 404 Not Found to list "
                             f"{resource.rbac_name}, which every cluster serves")
    return pages


def watch_error(exc: Any, host: str) -> InventoryError:
    """The one-line reason for a failed watch of pods."""
    return api_error(exc, host=host, verb="watch", resource="pods")
