"""The policies in force in a live cluster, read through the official ``kubernetes`` client.

Reads the kinds it is given (the targets' kinds, ``segmenter.targets``): ``networking.k8s.io/v1``
NetworkPolicies in all namespaces, and other groups -- Calico's ``projectcalico.org/v3``
(NetworkPolicy, GlobalNetworkPolicy, NetworkSet, GlobalNetworkSet, Tier, the staged policy
kinds) -- through ``CustomObjectsApi`` when the cluster serves that group: for Calico, its API
server or native v3 CRDs (policy-semantics.md §3.6). A group the cluster does not serve (404:
Calico in classic mode without the API server) is skipped with a note. Every list is paged with
``limit`` / ``continue``.

Responses are read raw (``_preload_content=False``) and parsed as JSON, so the objects are
exactly the API server's, including fields newer than the client's models; anything that does
come back as a model object is converted with ``ApiClient.sanitize_for_serialization``. Items of
a list response carry no ``kind`` / ``apiVersion``; both are filled in.

Calico's read-only derived forms of Kubernetes policies (``knp.default.*``,
``kcnp.*``, ``staged:knp.default.*``; §3.5) are left out: the ``networking.k8s.io`` object is
the one to manage, and counting both would duplicate it.

An unreachable cluster, rejected credentials (401) or missing RBAC (403) raise
:class:`~segmenter.errors.InventoryError` with one line saying which.

Tested in ``tests/test_kube_policies.py`` through the real client against a loopback HTTP server
that serves recorded API responses (``tests/fixtures/policies/live/``): no Kubernetes API server
runs on the development machine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from segmenter.cluster.client import api_client as _api_client
from segmenter.cluster.client import api_status_error as _api_status_error
from segmenter.cluster.client import decode_response as _decode_response
from segmenter.cluster.client import is_transport_error as _is_transport_error
from segmenter.cluster.client import status_message as _status_message
from segmenter.cluster.client import transport_reason as _reason
from segmenter.errors import InventoryError
from segmenter.k8s import PolicyKind

__all__ = ["LivePolicies", "read_live_policies"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT: Final = 60.0
RBAC_HINT: Final = "docs/rbac.yaml"
_MAX_RESTARTS: Final = 2
NETWORKING_GROUP: Final = "networking.k8s.io"
# Calico's derived, read-only names for Kubernetes policies (policy-semantics.md §3.5).
_DERIVED_PREFIXES: Final = ("knp.default.", "kcnp.", "staged:knp.default.", "staged:kcnp.")


@dataclass(frozen=True)
class LivePolicies:
    """What :func:`read_live_policies` found: the objects, notes on what was skipped, the host."""

    manifests: list[dict[str, Any]]
    notes: tuple[str, ...] = ()
    host: str = ""
    served_groups: tuple[str, ...] = ()  # API groups the cluster serves, of those asked for
    kinds: tuple[PolicyKind, ...] = field(default=())


def read_live_policies(
    kinds: Sequence[PolicyKind],
    *,
    context: str | None = None,
    kubeconfig: str | None = None,
    page_size: int = 500,
    request_timeout: float = DEFAULT_TIMEOUT,
) -> LivePolicies:
    """Read every object of ``kinds`` from the cluster (``segmenter.targets.all_kinds()``: every
    kind of every target). ``networking.k8s.io`` NetworkPolicies are listed through the typed
    client; other groups are discovered first, and a group or kind the cluster does not serve is
    skipped with a note.

    Uses ``kubeconfig`` (or ``$KUBECONFIG``, or ``~/.kube/config``) with ``context`` (default:
    its current context); without any kubeconfig file, the in-cluster service account.

    Raises:
        InventoryError: unreachable cluster, bad kubeconfig, 401, 403, or a malformed response.
    """
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    from kubernetes import client

    api_client, host = _api_client(context=context, kubeconfig=kubeconfig)
    notes: list[str] = []
    manifests: list[dict[str, Any]] = []
    read: list[PolicyKind] = []
    served: list[str] = []
    with api_client:
        custom = client.CustomObjectsApi(api_client)
        by_group: dict[tuple[str, str], list[PolicyKind]] = {}
        for info in kinds:
            by_group.setdefault((info.group, info.version), []).append(info)
        for (group, version), group_kinds in by_group.items():
            plurals: set[str] | None
            if group == NETWORKING_GROUP:
                plurals = {k.plural for k in group_kinds}  # always served (GA since 1.7)
            else:
                plurals = _served_plurals(custom, group, version, host=host,
                                          timeout=request_timeout)
            if plurals is None:
                notes.append(f"the cluster at {host} does not serve {group}/{version}: "
                             f"{', '.join(k.kind for k in group_kinds)} skipped")
                continue
            served.append(group)
            for info in group_kinds:
                if info.plural not in plurals:
                    notes.append(f"the cluster at {host} does not serve {info.resource}; "
                                 "skipped")
                    continue
                lister = (client.NetworkingV1Api(api_client)
                          .list_network_policy_for_all_namespaces
                          if (group, info.kind) == (NETWORKING_GROUP, "NetworkPolicy")
                          else _custom_lister(custom, info))
                found = _list_all(lister, api_client, info, host=host, page_size=page_size,
                                  timeout=request_timeout)
                if found is None:
                    notes.append(f"the cluster at {host} serves no {info.resource}; skipped")
                    continue
                read.append(info)
                for item in found:
                    name = str((item.get("metadata") or {}).get("name") or "")
                    if group != NETWORKING_GROUP and name.startswith(_DERIVED_PREFIXES):
                        logger.debug("skipping %s %s: derived from a Kubernetes policy",
                                     info.kind, name)
                        continue
                    manifests.append(item)
    manifests.sort(key=_sort_key)
    return LivePolicies(manifests=manifests, notes=tuple(notes), host=host,
                        served_groups=tuple(served), kinds=tuple(read))


def _sort_key(doc: Mapping[str, Any]) -> tuple[str, str, str, str]:
    meta = doc.get("metadata") or {}
    return (str(doc.get("apiVersion") or ""), str(doc.get("kind") or ""),
            str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def _custom_lister(custom: Any, info: PolicyKind) -> Callable[..., Any]:
    def call(**kwargs: Any) -> Any:
        return custom.list_cluster_custom_object(info.group, info.version, info.plural, **kwargs)

    return call


# ---------------------------------------------------------------------------------------------
# Client plumbing


def _served_plurals(custom: Any, group: str, version: str, *, host: str, timeout: float
                    ) -> set[str] | None:
    """The resource plurals the cluster serves in ``group/version``; None on 404."""
    from kubernetes.client.exceptions import ApiException

    what = f"{group}/{version}"
    try:
        response = custom.get_api_resources(group, version,
                                            _preload_content=False, _request_timeout=timeout)
        data = _decode(response, custom.api_client, host=host, what=f"discovery of {what}")
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise _api_error(exc, what=f"discover {what}", host=host) from None
    except InventoryError:
        raise
    except Exception as exc:
        if _is_transport_error(exc):
            raise InventoryError(f"cannot reach the cluster at {host}: {_reason(exc)}") from None
        raise
    resources = data.get("resources")
    if not isinstance(resources, list):
        raise InventoryError(f"the API server at {host} sent an unexpected response to discovery "
                             f"of {what} (no resources list)")
    return {str(r.get("name")) for r in resources
            if isinstance(r, Mapping) and "/" not in str(r.get("name"))}


def _list_all(method: Callable[..., Any], api_client: Any, info: PolicyKind, *, host: str,
              page_size: int, timeout: float) -> list[dict[str, Any]] | None:
    """Every item of every page, with kind/apiVersion filled in; None on 404."""
    from kubernetes.client.exceptions import ApiException

    items: list[dict[str, Any]] = []
    token: str | None = None
    restarts = 0
    while True:
        try:
            response = method(limit=page_size, _continue=token, _preload_content=False,
                              _request_timeout=timeout)
            page = _decode(response, api_client, host=host, what=f"list {info.resource}")
        except ApiException as exc:
            if exc.status == 404:
                return None
            if exc.status == 410 and token is not None and restarts < _MAX_RESTARTS:
                restarts += 1
                logger.warning("listing %s: continue token expired; restarting the list",
                               info.resource)
                items, token = [], None
                continue
            raise _api_error(exc, what=f"list {info.resource}", host=host) from None
        except InventoryError:
            raise
        except Exception as exc:  # urllib3 / socket / TLS failures
            if _is_transport_error(exc):
                raise InventoryError(
                    f"cannot reach the cluster at {host}: {_reason(exc)}") from None
            raise
        raw_items = page.get("items")
        if not isinstance(raw_items, list):
            raise InventoryError(f"the API server at {host} sent an unexpected response to list "
                                 f"{info.resource} (no items list)")
        for raw in raw_items:
            if not isinstance(raw, Mapping):
                continue
            item = dict(raw)
            item.setdefault("apiVersion", info.api_version)
            item.setdefault("kind", info.kind)
            items.append(item)
        meta = page.get("metadata")
        token = meta.get("continue") if isinstance(meta, Mapping) else None
        if not token:
            return items


def _decode(response: Any, api_client: Any, *, host: str, what: str) -> dict[str, Any]:
    page = _decode_response(response, api_client, host=host, what=what)
    if not isinstance(page, Mapping):
        raise InventoryError(f"the API server at {host} sent an unexpected response to {what}")
    return dict(page)


def _api_error(exc: Any, *, what: str, host: str) -> InventoryError:
    message = _status_message(exc)
    return _api_status_error(exc, host=host, what=what,
                             forbidden=f"forbidden: cannot {what} at {host} (see {RBAC_HINT})"
                             + (f": {message}" if message else ""))
