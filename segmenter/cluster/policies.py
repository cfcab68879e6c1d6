"""The policies in force in a live cluster, read through the official ``kubernetes`` client.

Reads the kinds it is given (the targets' kinds, ``segmenter.targets``): ``networking.k8s.io/v1``
NetworkPolicies in all namespaces, and other groups -- Calico's ``projectcalico.org/v3``
(NetworkPolicy, GlobalNetworkPolicy, NetworkSet, GlobalNetworkSet, Tier, the staged policy
kinds) -- through ``CustomObjectsApi`` when the cluster serves that group: for Calico, its API
server or native v3 CRDs (policy-semantics.md §3.6). A group the cluster does not serve (404:
Calico in classic mode without the API server) is skipped with a note, unless the caller
requires it (``required_groups``: the enforcement asked for is that target's), which makes it an
error. Every list is paged with ``limit`` / ``continue`` (:func:`segmenter.cluster.client.
list_pages`), after the server has shown that it is a Kubernetes API server
(:func:`segmenter.cluster.client.connect`): a server answering 404 to everything is an error,
never "no policies".

Responses are read raw (``_preload_content=False``) and parsed as JSON, so the objects are
exactly the API server's, including fields newer than the client's models; anything that does
come back as a model object is converted with ``ApiClient.sanitize_for_serialization``. Items of
a list response carry no ``kind`` / ``apiVersion``; both are filled in.

Calico's read-only derived forms of Kubernetes policies (``knp.default.*``,
``kcnp.*``, ``staged:knp.default.*``; §3.5) are left out: the ``networking.k8s.io`` object is
the one to manage, and counting both would duplicate it.

An unreachable cluster, a server that is not a Kubernetes API server, rejected credentials (401)
or missing RBAC (403) raise :class:`~segmenter.errors.InventoryError` with one line saying which.

Tested in ``tests/test_kube_policies.py`` through the real client against a loopback HTTP server
that serves recorded API responses (``tests/fixtures/policies/live/``): no Kubernetes API server
runs on the development machine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from segmenter.cluster.client import (
    DEFAULT_TIMEOUT,
    NETWORKING_GROUP,
    connect,
    list_pages,
    served_resources,
)
from segmenter.errors import InventoryError
from segmenter.k8s import PolicyKind

__all__ = ["LivePolicies", "read_live_policies"]

logger = logging.getLogger(__name__)

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
    required_groups: Mapping[str, str] | None = None,
) -> LivePolicies:
    """Read every object of ``kinds`` from the cluster (``segmenter.targets.all_kinds()``: every
    kind of every target). ``networking.k8s.io`` NetworkPolicies are listed through the typed
    client; other groups are discovered first, and a group or kind the cluster does not serve is
    skipped with a note.

    ``required_groups`` maps API groups that must be served to why (``"calico enforcement"``):
    such a group not served is an error instead of a note.

    Uses ``kubeconfig`` (or ``$KUBECONFIG``, or ``~/.kube/config``) with ``context`` (default:
    its current context); without any kubeconfig file, the in-cluster service account.

    Raises:
        InventoryError: unreachable cluster, a server that is not a Kubernetes API server, bad
            kubeconfig, 401, 403, a malformed response, or a required group not served.
    """
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    from kubernetes import client

    required = dict(required_groups or {})
    api_client, host = connect(context=context, kubeconfig=kubeconfig,
                               request_timeout=request_timeout)
    notes: list[str] = []
    manifests: list[dict[str, Any]] = []
    read: list[PolicyKind] = []
    served: list[str] = []
    with api_client:
        custom = client.CustomObjectsApi(api_client)
        by_group: dict[tuple[str, str], list[PolicyKind]] = {}
        for info in kinds:
            by_group.setdefault((info.group, info.version), []).append(info)
        unasked = sorted(set(required) - {g for g, _ in by_group})
        if unasked:
            raise ValueError(f"required_groups {unasked} hold none of the kinds asked for")
        for (group, version), group_kinds in by_group.items():
            plurals: frozenset[str] | None
            if group == NETWORKING_GROUP:
                plurals = frozenset(k.plural for k in group_kinds)  # checked by connect()
            else:
                plurals = served_resources(
                    _discovery_call(custom, group, version), host=host,
                    group_version=f"{group}/{version}", path=f"/apis/{group}/{version}",
                    timeout=request_timeout)
            if plurals is None:
                if group in required:
                    raise InventoryError(f"{required[group]} asked of the cluster at {host}, "
                                         f"which does not serve {group}/{version}")
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
                pages = list_pages(lister, api_client, host=host, resource=info.resource,
                                   list_kind=f"{info.kind}List", page_size=page_size,
                                   timeout=request_timeout)
                if pages is None:
                    notes.append(f"the cluster at {host} serves no {info.resource}; skipped")
                    continue
                read.append(info)
                for item in _items(pages, info):
                    name = str((item.get("metadata") or {}).get("name") or "")
                    if group != NETWORKING_GROUP and name.startswith(_DERIVED_PREFIXES):
                        logger.debug("skipping %s %s: derived from a Kubernetes policy",
                                     info.kind, name)
                        continue
                    manifests.append(item)
    manifests.sort(key=_sort_key)
    return LivePolicies(manifests=manifests, notes=tuple(notes), host=host,
                        served_groups=tuple(served), kinds=tuple(read))


def _items(pages: list[dict[str, Any]], info: PolicyKind) -> list[dict[str, Any]]:
    """The objects of list pages, with the ``kind`` and ``apiVersion`` list items lack."""
    items = []
    for page in pages:
        for raw in page["items"]:
            if not isinstance(raw, Mapping):
                continue
            item = dict(raw)
            item.setdefault("apiVersion", info.api_version)
            item.setdefault("kind", info.kind)
            items.append(item)
    return items


def _sort_key(doc: Mapping[str, Any]) -> tuple[str, str, str, str]:
    meta = doc.get("metadata") or {}
    return (str(doc.get("apiVersion") or ""), str(doc.get("kind") or ""),
            str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def _custom_lister(custom: Any, info: PolicyKind) -> Callable[..., Any]:
    def call(**kwargs: Any) -> Any:
        return custom.list_cluster_custom_object(info.group, info.version, info.plural, **kwargs)

    return call


def _discovery_call(custom: Any, group: str, version: str) -> Callable[..., Any]:
    def call(**kwargs: Any) -> Any:
        return custom.get_api_resources(group, version, **kwargs)

    return call
