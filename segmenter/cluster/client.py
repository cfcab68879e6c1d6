"""The official kubernetes client, set up once for every live command.

The one home of what the live inventory, the pod watch and the live policy reader share:
kubeconfig (with a context, several files in ``$KUBECONFIG``) or the in-cluster service account;
checking that the server is a Kubernetes API server before reading anything from it
(:func:`connect`, :func:`served_resources`); the paged list (:func:`list_pages`); and turning the
client's and urllib3's exceptions into one-line reasons (:func:`api_error`).

A server that answers 404 to every path (a kubeconfig pointing at a web server, a proxy's login
page) must never read as an empty cluster: :func:`connect` asks for the discovery documents of
the core API (``/api/v1``) and of ``networking.k8s.io/v1``, which every Kubernetes API server
serves (NetworkPolicy is GA since 1.7), and refuses anything that is not an ``APIResourceList``
for that group/version (Kubernetes API concepts, "Discovery API").
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from segmenter.documents import decode_utf8, parse_json
from segmenter.errors import InputError, InventoryError

logger = logging.getLogger(__name__)

RBAC_HINT: Final = "docs/rbac.yaml"
DEFAULT_TIMEOUT: Final = 60.0
# How many times a paged list starts over after its continue token expired (410 Gone).
MAX_RESTARTS: Final = 2
CORE_DISCOVERY: Final = "/api/v1"
NETWORKING_GROUP: Final = "networking.k8s.io"
NETWORKING_DISCOVERY: Final = f"/apis/{NETWORKING_GROUP}/v1"


def kubeconfig_paths(kubeconfig: str | None) -> list[str]:
    if kubeconfig:
        return [kubeconfig]
    env = os.environ.get("KUBECONFIG")
    if env:
        return [p for p in env.split(os.pathsep) if p]
    return [str(Path("~/.kube/config").expanduser())]



def api_client(*, context: str | None, kubeconfig: str | None) -> tuple[Any, str]:
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    configuration = client.Configuration()
    paths = kubeconfig_paths(kubeconfig)
    existing = [p for p in paths if Path(p).expanduser().is_file()]
    if kubeconfig and not existing:
        raise InventoryError("no such kubeconfig file", path=kubeconfig)
    try:
        if existing:
            config.load_kube_config(
                config_file=os.pathsep.join(existing) if len(existing) > 1 else existing[0],
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
        else:
            if context:
                raise InventoryError(
                    f"context {context!r} asked for, but no kubeconfig found ({', '.join(paths)})"
                )
            config.load_incluster_config(client_configuration=configuration)
    except ConfigException as exc:
        where = ", ".join(existing) if existing else None
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if not existing:
            message = (
                f"no kubeconfig found ({', '.join(paths)}) and not running in a cluster: " + message
            )
        raise InventoryError(message, path=where) from None
    return client.ApiClient(configuration), str(configuration.host)



def status_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if body:
        try:
            status = json.loads(body)
        except (TypeError, ValueError, RecursionError):
            return ""
        if isinstance(status, Mapping) and isinstance(status.get("message"), str):
            return str(status["message"])
    return ""



def exception_chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        nxt = getattr(current, "reason", None)
        if not isinstance(nxt, BaseException):
            nxt = current.__cause__ or current.__context__
        current = nxt
    return seen



def is_transport_error(exc: BaseException) -> bool:
    import urllib3

    return any(isinstance(e, (urllib3.exceptions.HTTPError, OSError)) for e in exception_chain(exc))



def transport_reason(exc: BaseException) -> str:
    import urllib3

    chain = exception_chain(exc)
    for e in chain:
        if isinstance(e, ConnectionRefusedError) or "Connection refused" in str(e):
            return "connection refused"
    for e in chain:
        if isinstance(
            e, urllib3.exceptions.NameResolutionError
        ) or "Name or service not known" in str(e):
            return "cannot resolve the host name"
    for e in chain:
        if isinstance(e, (urllib3.exceptions.TimeoutError, TimeoutError)):
            return "timed out"
    for e in chain:
        if isinstance(e, urllib3.exceptions.SSLError):
            return f"TLS error: {str(e).splitlines()[0]}"
    last = chain[-1]
    return str(last).splitlines()[0] if str(last) else type(last).__name__



def decode_response(response: Any, api_client: Any, *, host: str, what: str) -> Any:
    """The JSON body of an API call's response -- raw (``_preload_content=False``; the
    connection goes back to the pool), already a mapping, or a model object -- unchecked.
    ``what`` names the call in the error (``list pods``)."""
    if isinstance(getattr(response, "data", None), bytes):
        try:  # the reading layer's bounds: depth, integer size, UTF-8
            return parse_json(decode_utf8(response.data, path=host), path=host)
        except InputError as exc:
            syntax = exc.message.startswith(("malformed JSON", "not UTF-8"))
            raise InventoryError(
                f"the API server at {host} sent a malformed response to {what} "
                f"({'not JSON' if syntax else exc.message})"
            ) from None
        finally:
            release = getattr(response, "release_conn", None)
            if callable(release):
                release()
    if isinstance(response, Mapping):
        return response
    return api_client.sanitize_for_serialization(response)  # a model object


def api_status_error(exc: Any, *, host: str, what: str, forbidden: str) -> InventoryError:
    """The one-line reason for the client's ApiException ``exc`` of the call ``what``;
    ``forbidden`` is the reason for a 403 (which permission is missing)."""
    status = exc.status
    if status == 0:  # the REST layer's TLS failure
        reason = str(exc.reason or "").replace("\n", ": ")
        return InventoryError(f"cannot reach the cluster at {host}: {reason}")
    if status == 401:
        return InventoryError(
            f"unauthorized: the cluster at {host} rejected the credentials "
            "(expired token or certificate?)"
        )
    if status == 403:
        return InventoryError(forbidden)
    message = status_message(exc)
    return InventoryError(
        f"the API server at {host} answered {status} {exc.reason or ''} to {what}"
        + (f": {message}" if message else "")
    )


def api_error(exc: Any, *, host: str, verb: str, resource: str) -> InventoryError:
    """The one-line reason for the client's ApiException ``exc`` of ``verb`` on ``resource``
    (its RBAC name: ``pods``, ``endpointslices.discovery.k8s.io``, or a discovery path); a 403
    names the permission that is missing and what the server said."""
    message = status_message(exc)
    return api_status_error(
        exc, host=host, what=f"{verb} {resource}",
        forbidden=f"forbidden: needs {verb} on {resource} at {host} (see {RBAC_HINT})"
        + (f": {message}" if message else ""))


def _transport_failure(exc: Exception, host: str) -> InventoryError | None:
    if is_transport_error(exc):
        return InventoryError(f"cannot reach the cluster at {host}: {transport_reason(exc)}")
    return None


def connect(*, context: str | None, kubeconfig: str | None,
            request_timeout: float = DEFAULT_TIMEOUT) -> tuple[Any, str]:
    """The API client for the cluster and its server URL, once the server has shown that it is
    a Kubernetes API server (:func:`require_kubernetes_api`). The caller closes the client.

    Raises:
        InventoryError: no or bad kubeconfig, unreachable server, 401/403, or a server that does
            not serve the core and ``networking.k8s.io/v1`` APIs.
    """
    client_, host = api_client(context=context, kubeconfig=kubeconfig)
    try:
        require_kubernetes_api(client_, host=host, timeout=request_timeout)
    except BaseException:
        client_.close()
        raise
    return client_, host


def require_kubernetes_api(api_client: Any, *, host: str, timeout: float) -> None:
    """Refuse a server that does not serve the core API and ``networking.k8s.io/v1``: a 404
    to discovery, an HTML page, JSON that is not an ``APIResourceList`` of that group/version,
    or one that lists no pods or no NetworkPolicies."""
    from kubernetes import client

    for call, group_version, path, needed in (
        (client.CoreV1Api(api_client).get_api_resources, "v1", CORE_DISCOVERY,
         ("namespaces", "nodes", "pods", "services")),
        (client.NetworkingV1Api(api_client).get_api_resources, f"{NETWORKING_GROUP}/v1",
         NETWORKING_DISCOVERY, ("networkpolicies",)),
    ):
        served = served_resources(call, host=host, group_version=group_version, path=path,
                                  timeout=timeout)
        if served is None:
            raise InventoryError(f"the server at {host} is not a Kubernetes API server: it "
                                 f"answered 404 Not Found to {path} (API discovery of "
                                 f"{group_version}); check the kubeconfig's server URL")
        missing = [name for name in needed if name not in served]
        if missing:
            raise InventoryError(f"the server at {host} is not a Kubernetes API server: its "
                                 f"discovery of {group_version} ({path}) lists no "
                                 f"{', '.join(missing)}")


def served_resources(call: Callable[..., Any], *, host: str, group_version: str, path: str,
                     timeout: float) -> frozenset[str] | None:
    """The resource names (``pods``, ``networkpolicies``; no subresources) that the server's
    discovery document of ``group_version`` lists, or None when it answers 404 (the group is not
    served). ``call`` is the client's ``get_api_resources`` for that group/version and ``path``
    the URL path it asks, for messages.

    Raises:
        InventoryError: unreachable server, 401/403/5xx, or an answer that is not the
            ``APIResourceList`` of ``group_version`` (not JSON, another kind of JSON).
    """
    from kubernetes.client.exceptions import ApiException

    try:
        response = call(_preload_content=False, _request_timeout=timeout)
        raw = response.data
        release = getattr(response, "release_conn", None)
        if callable(release):
            release()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise api_error(exc, host=host, verb="get", resource=path) from None
    except Exception as exc:
        failure = _transport_failure(exc, host)
        if failure is not None:
            raise failure from None
        raise
    not_kubernetes = f"the server at {host} is not a Kubernetes API server: its answer to {path}"
    try:
        document = json.loads(raw)
    except (TypeError, ValueError):
        looks_html = raw.lstrip()[:1] == b"<" if isinstance(raw, bytes) else False
        raise InventoryError(f"{not_kubernetes} is not JSON"
                             + (" (an HTML page: a proxy or a login page?)" if looks_html else "")
                             ) from None
    if (not isinstance(document, Mapping) or document.get("kind") != "APIResourceList"
            or document.get("groupVersion") != group_version
            or not isinstance(document.get("resources"), list)):
        raise InventoryError(f"{not_kubernetes} is JSON but not the APIResourceList of "
                             f"{group_version}")
    return frozenset(str(r.get("name")) for r in document["resources"]
                     if isinstance(r, Mapping) and "/" not in str(r.get("name")))


def list_pages(method: Callable[..., Any], api_client: Any, *, host: str, resource: str,
               list_kind: str, page_size: int, timeout: float) -> list[dict[str, Any]] | None:
    """Every page of one resource as the API server sent it, or None when the server does not
    serve it (404). The list is consistent: pages are asked with ``limit`` and ``continue``,
    and started over (at most ``MAX_RESTARTS`` times) when the continue token expires (410).

    ``method`` is the client's list call (``CoreV1Api.list_pod_for_all_namespaces``, a
    ``CustomObjectsApi`` list), ``resource`` the RBAC name for messages, ``list_kind`` the
    ``kind`` every page must have (``PodList``). A page's ``items: null`` (Go's empty list)
    becomes ``[]``.

    Raises:
        InventoryError: unreachable server, 401/403/5xx, or a page that is not JSON or not a
            ``list_kind`` with an items list.
    """
    from kubernetes.client.exceptions import ApiException

    pages: list[dict[str, Any]] = []
    token: str | None = None
    restarts = 0
    while True:
        try:
            response = method(limit=page_size, _continue=token, _preload_content=False,
                              _request_timeout=timeout)
            page = _list_page(decode_response(response, api_client, host=host,
                                              what=f"list {resource}"),
                              host=host, resource=resource, list_kind=list_kind)
        except ApiException as exc:
            if exc.status == 404:
                return None
            if exc.status == 410 and token is not None and restarts < MAX_RESTARTS:
                # The continue token expired: a consistent list has to start over.
                restarts += 1
                logger.warning("listing %s: continue token expired; restarting the list",
                               resource)
                pages, token = [], None
                continue
            raise api_error(exc, host=host, verb="list", resource=resource) from None
        except InventoryError:
            raise
        except Exception as exc:  # urllib3 / socket / TLS failures
            failure = _transport_failure(exc, host)
            if failure is not None:
                raise failure from None
            raise
        pages.append(page)
        meta = page.get("metadata")
        token = meta.get("continue") if isinstance(meta, Mapping) else None
        if not token:
            return pages


def _list_page(page: Any, *, host: str, resource: str, list_kind: str) -> dict[str, Any]:
    if isinstance(page, Mapping) and "items" in page and page["items"] is None:
        page = {**page, "items": []}  # Go encodes an empty list as null
    kind = page.get("kind") if isinstance(page, Mapping) else None
    if not isinstance(page, Mapping) or kind != list_kind or not isinstance(page.get("items"),
                                                                             list):
        got = f"a {kind}" if isinstance(kind, str) and kind else "JSON without a kind"
        raise InventoryError(f"the API server at {host} sent an unexpected response to list "
                             f"{resource} ({got}, not a {list_kind} with an items list)")
    return dict(page)
