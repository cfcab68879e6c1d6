"""Inventory from a live cluster, through the official ``kubernetes`` client.

Lists pods, services, EndpointSlices, namespaces, nodes and the workload controllers with paged
``list`` calls (``limit`` / ``continue``) and feeds the API server's list responses to the same
parser as ``kubectl get -o json`` dumps (:func:`segmenter.inventory.parse_documents`).

The responses are read raw (``_preload_content=False``): the parser wants the JSON the API
server sent, and building the client's model objects first (then ``sanitize_for_serialization``)
costs seconds per ten thousand pods for nothing. Objects that do come back as models (a patched
or older client) are converted with ``ApiClient.sanitize_for_serialization``.

:mod:`segmenter.cluster.watch` builds on this module to follow pod changes during a capture window.

Read-only RBAC for this is in ``docs/rbac.yaml``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from segmenter.cluster.client import api_client as _api_client
from segmenter.cluster.client import api_status_error as _api_status_error
from segmenter.cluster.client import decode_response as _decode_response
from segmenter.cluster.client import is_transport_error as _is_transport_error
from segmenter.cluster.client import transport_reason as _reason
from segmenter.cluster.dump import parse_documents
from segmenter.errors import InputError, InventoryError
from segmenter.model import Inventory

logger = logging.getLogger(__name__)

RBAC_HINT: Final = "docs/rbac.yaml"
DEFAULT_TIMEOUT: Final = 60.0
_MAX_RESTARTS: Final = 2


@dataclass(frozen=True)
class _Resource:
    plural: str
    group: str  # "" for the core group
    api: str  # client class name
    method: str  # its list-for-all-namespaces method

    @property
    def rbac_name(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES: Final = (
    _Resource("namespaces", "", "CoreV1Api", "list_namespace"),
    _Resource("nodes", "", "CoreV1Api", "list_node"),
    _Resource("pods", "", "CoreV1Api", "list_pod_for_all_namespaces"),
    _Resource("services", "", "CoreV1Api", "list_service_for_all_namespaces"),
    _Resource(
        "endpointslices",
        "discovery.k8s.io",
        "DiscoveryV1Api",
        "list_endpoint_slice_for_all_namespaces",
    ),
    _Resource("deployments", "apps", "AppsV1Api", "list_deployment_for_all_namespaces"),
    _Resource("replicasets", "apps", "AppsV1Api", "list_replica_set_for_all_namespaces"),
    _Resource("statefulsets", "apps", "AppsV1Api", "list_stateful_set_for_all_namespaces"),
    _Resource("daemonsets", "apps", "AppsV1Api", "list_daemon_set_for_all_namespaces"),
    _Resource("jobs", "batch", "BatchV1Api", "list_job_for_all_namespaces"),
    _Resource("cronjobs", "batch", "BatchV1Api", "list_cron_job_for_all_namespaces"),
)
# Served instead when a cluster has no discovery.k8s.io/v1 (before Kubernetes 1.21).
_LEGACY_ENDPOINTS: Final = _Resource(
    "endpoints", "", "CoreV1Api", "list_endpoints_for_all_namespaces"
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
    unreachable cluster, rejected credentials or missing RBAC raise :class:`InventoryError`
    with one line saying which.
    """
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    api_client, host = _api_client(context=context, kubeconfig=kubeconfig)
    with api_client:
        documents = list_documents(
            api_client, host=host, page_size=page_size, request_timeout=request_timeout
        )
    return parse_live_documents(documents, host=host, context=context)


def parse_live_documents(
    documents: list[Mapping[str, Any]], *, host: str, context: str | None = None
) -> Inventory:
    """:func:`~segmenter.inventory.parse_documents` for list pages; errors as InventoryError."""
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

    A resource the cluster does not serve is skipped with a warning (EndpointSlices fall back
    to core/v1 Endpoints).
    """
    from kubernetes import client

    lister = functools.partial(
        _list_all, api_client, client, host=host, page_size=page_size, timeout=request_timeout
    )
    documents: list[Mapping[str, Any]] = []
    for resource in resources:
        pages = lister(resource)
        if pages is None and resource.plural == "endpointslices":
            logger.warning(
                "the cluster at %s serves no discovery.k8s.io/v1 EndpointSlices; "
                "reading core/v1 Endpoints instead",
                host,
            )
            pages = lister(_LEGACY_ENDPOINTS)
        if pages is None:
            logger.warning("the cluster at %s does not serve %s; skipped", host, resource.rbac_name)
            continue
        documents.extend(pages)
    return documents


def list_pages(
    api_client: Any, resource: _Resource, *, host: str, page_size: int, request_timeout: float
) -> list[Mapping[str, Any]] | None:
    """Every page of one resource (a consistent paged list), or None when it is not served."""
    from kubernetes import client

    return _list_all(
        api_client, client, resource, host=host, page_size=page_size, timeout=request_timeout
    )


def _list_all(
    api_client: Any,
    client: Any,
    resource: _Resource,
    *,
    host: str,
    page_size: int,
    timeout: float,
) -> list[Mapping[str, Any]] | None:
    """Every page of one resource, or None when the cluster does not serve it (404)."""
    from kubernetes.client.exceptions import ApiException

    method: Callable[..., Any] = getattr(getattr(client, resource.api)(api_client), resource.method)
    pages: list[Mapping[str, Any]] = []
    token: str | None = None
    restarts = 0
    while True:
        try:
            response = method(
                limit=page_size,
                _continue=token,
                _preload_content=False,
                _request_timeout=timeout,
            )
            page = _as_dict(api_client, response, resource, host)
        except ApiException as exc:
            if exc.status == 404:
                return None
            if exc.status == 410 and token is not None and restarts < _MAX_RESTARTS:
                # The continue token expired: a consistent list has to start over.
                restarts += 1
                logger.warning(
                    "listing %s: continue token expired; restarting the list", resource.rbac_name
                )
                pages, token = [], None
                continue
            raise _api_error(exc, resource, host) from None
        except InventoryError:
            raise
        except Exception as exc:  # urllib3 / socket / TLS failures
            if _is_transport_error(exc):
                raise InventoryError(
                    f"cannot reach the cluster at {host}: {_reason(exc)}"
                ) from None
            raise
        pages.append(page)
        meta = page.get("metadata")
        token = meta.get("continue") if isinstance(meta, Mapping) else None
        if not token:
            return pages


def _as_dict(api_client: Any, response: Any, resource: _Resource, host: str) -> Mapping[str, Any]:
    page = _decode_response(response, api_client, host=host, what=f"list {resource.rbac_name}")
    if isinstance(page, Mapping) and "items" in page and page["items"] is None:
        page = {**page, "items": []}  # Go encodes an empty list as null
    if not isinstance(page, Mapping) or not isinstance(page.get("items"), list):
        raise InventoryError(
            f"the API server at {host} sent an unexpected response to list "
            f"{resource.rbac_name} (no items list)"
        )
    return page


def _api_error(exc: Any, resource: _Resource, host: str, *, verb: str = "list") -> InventoryError:
    return _api_status_error(
        exc, host=host, what=f"{verb} {resource.rbac_name}",
        forbidden=f"forbidden: needs {verb} on {resource.rbac_name} (see {RBAC_HINT})")


