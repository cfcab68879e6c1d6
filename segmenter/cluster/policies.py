"""The policies in force in a live cluster, read through the official ``kubernetes`` client.

Reads ``networking.k8s.io/v1`` NetworkPolicies in all namespaces, and the Calico
``projectcalico.org/v3`` kinds (NetworkPolicy, GlobalNetworkPolicy, NetworkSet,
GlobalNetworkSet, Tier and the staged policy kinds) through ``CustomObjectsApi`` when the
cluster serves that group: the Calico API server, or native v3 CRDs (policy-semantics.md §3.6).
A cluster that does not serve it (404: classic mode without the API server) is skipped with a
note. Every list is paged with ``limit`` / ``continue``.

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

import argparse
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from segmenter.cluster.client import api_client as _api_client
from segmenter.cluster.client import api_status_error as _api_status_error
from segmenter.cluster.client import decode_response as _decode_response
from segmenter.cluster.client import is_transport_error as _is_transport_error
from segmenter.cluster.client import status_message as _status_message
from segmenter.cluster.client import transport_reason as _reason
from segmenter.errors import InventoryError
from segmenter.render import sorted_yaml

__all__ = [
    "CALICO_GROUP",
    "CALICO_KINDS",
    "CALICO_VERSION",
    "K8S_GROUP",
    "POLICY_KINDS",
    "LivePolicies",
    "PolicyKind",
    "add_parser",
    "kind_info",
    "live_policies",
    "read_live_policies",
]

logger = logging.getLogger(__name__)

K8S_GROUP: Final = "networking.k8s.io"
CALICO_GROUP: Final = "projectcalico.org"
CALICO_VERSION: Final = "v3"
DEFAULT_TIMEOUT: Final = 60.0
RBAC_HINT: Final = "docs/rbac.yaml"
_MAX_RESTARTS: Final = 2
# Calico's derived, read-only names for Kubernetes policies (policy-semantics.md §3.5).
_DERIVED_PREFIXES: Final = ("knp.default.", "kcnp.", "staged:knp.default.", "staged:kcnp.")


@dataclass(frozen=True)
class PolicyKind:
    """A policy-related resource type: its kind, group, plural and scope."""

    kind: str
    group: str
    version: str
    plural: str
    namespaced: bool
    staged: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def resource(self) -> str:
        """The fully qualified resource name for kubectl: ``networkpolicies.projectcalico.org``.

        Always qualified: a bare ``networkpolicies`` is ambiguous once Calico's API is served.
        """
        return f"{self.plural}.{self.group}"


POLICY_KINDS: Final = (
    PolicyKind("NetworkPolicy", K8S_GROUP, "v1", "networkpolicies", True),
    PolicyKind("Tier", CALICO_GROUP, CALICO_VERSION, "tiers", False),
    PolicyKind("GlobalNetworkSet", CALICO_GROUP, CALICO_VERSION, "globalnetworksets", False),
    PolicyKind("NetworkSet", CALICO_GROUP, CALICO_VERSION, "networksets", True),
    PolicyKind("GlobalNetworkPolicy", CALICO_GROUP, CALICO_VERSION, "globalnetworkpolicies",
               False),
    PolicyKind("NetworkPolicy", CALICO_GROUP, CALICO_VERSION, "networkpolicies", True),
    PolicyKind("StagedGlobalNetworkPolicy", CALICO_GROUP, CALICO_VERSION,
               "stagedglobalnetworkpolicies", False, staged=True),
    PolicyKind("StagedNetworkPolicy", CALICO_GROUP, CALICO_VERSION, "stagednetworkpolicies",
               True, staged=True),
    PolicyKind("StagedKubernetesNetworkPolicy", CALICO_GROUP, CALICO_VERSION,
               "stagedkubernetesnetworkpolicies", True, staged=True),
)
CALICO_KINDS: Final = tuple(k for k in POLICY_KINDS if k.group == CALICO_GROUP)


def kind_info(doc: Mapping[str, Any]) -> PolicyKind | None:
    """The :class:`PolicyKind` of a manifest, or ``None`` for other kinds.

    >>> kind_info({"apiVersion": "projectcalico.org/v3", "kind": "Tier"}).plural
    'tiers'
    """
    api = str(doc.get("apiVersion") or "")
    group = api.split("/", 1)[0] if "/" in api else ""
    kind = str(doc.get("kind") or "")
    for info in POLICY_KINDS:
        if info.kind == kind and info.group == group:
            return info
    return None


@dataclass(frozen=True)
class LivePolicies:
    """What :func:`read_live_policies` found: the objects, notes on what was skipped, the host."""

    manifests: list[dict[str, Any]]
    notes: tuple[str, ...] = ()
    host: str = ""
    calico_served: bool = False
    kinds: tuple[PolicyKind, ...] = field(default=())


def live_policies(*, context: str | None = None, kubeconfig: str | None = None
                  ) -> list[dict[str, Any]]:
    """The policy objects in force in the cluster, as plain dicts in a stable order.

    See :func:`read_live_policies` (this returns its ``manifests``; its notes are logged).
    """
    result = read_live_policies(context=context, kubeconfig=kubeconfig)
    for note in result.notes:
        logger.info("%s", note)
    return result.manifests


def read_live_policies(
    *,
    context: str | None = None,
    kubeconfig: str | None = None,
    page_size: int = 500,
    request_timeout: float = DEFAULT_TIMEOUT,
    calico: bool = True,
) -> LivePolicies:
    """Read every policy object of the cluster (``calico=False``: Kubernetes kinds only).

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
    kinds: list[PolicyKind] = []
    served = False
    with api_client:
        k8s = POLICY_KINDS[0]
        networking = client.NetworkingV1Api(api_client)
        items = _list_all(
            networking.list_network_policy_for_all_namespaces,
            api_client, k8s, host=host, page_size=page_size, timeout=request_timeout)
        if items is None:
            notes.append(f"the cluster at {host} serves no {k8s.resource}; skipped")
        else:
            manifests.extend(items)
            kinds.append(k8s)
        if calico:
            custom = client.CustomObjectsApi(api_client)
            plurals = _served_plurals(custom, host=host, timeout=request_timeout)
            if plurals is None:
                notes.append(f"the cluster at {host} does not serve {CALICO_GROUP}/"
                             f"{CALICO_VERSION} (no Calico API server or v3 CRDs): Calico "
                             "policies skipped")
            else:
                served = True
                for info in CALICO_KINDS:
                    if info.plural not in plurals:
                        notes.append(f"the cluster at {host} does not serve {info.resource}; "
                                     "skipped")
                        continue
                    found = _list_all(
                        _custom_lister(custom, info), api_client, info, host=host,
                        page_size=page_size, timeout=request_timeout)
                    if found is None:
                        notes.append(f"the cluster at {host} does not serve {info.resource}; "
                                     "skipped")
                        continue
                    kinds.append(info)
                    for item in found:
                        name = str((item.get("metadata") or {}).get("name") or "")
                        if name.startswith(_DERIVED_PREFIXES):
                            logger.debug("skipping %s %s: derived from a Kubernetes policy",
                                         info.kind, name)
                            continue
                        manifests.append(item)
    manifests.sort(key=_sort_key)
    return LivePolicies(manifests=manifests, notes=tuple(notes), host=host,
                        calico_served=served, kinds=tuple(kinds))


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


def _served_plurals(custom: Any, *, host: str, timeout: float) -> set[str] | None:
    """The resource plurals the cluster serves in projectcalico.org/v3; None on 404."""
    from kubernetes.client.exceptions import ApiException

    what = f"{CALICO_GROUP}/{CALICO_VERSION}"
    try:
        response = custom.get_api_resources(CALICO_GROUP, CALICO_VERSION,
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


# ---------------------------------------------------------------------------------------------
# Command


def cmd_live_policies(args: argparse.Namespace) -> int:
    from segmenter.diff import normalize
    from segmenter.fileio import atomic_write_text

    result = read_live_policies(context=args.context, kubeconfig=args.kubeconfig,
                                calico=not args.no_calico)
    manifests = result.manifests if args.raw else [normalize(m) for m in result.manifests]
    atomic_write_text(args.output, sorted_yaml(manifests))
    for note in result.notes:
        print(f"note: {note}")
    print(f"wrote {args.output}: {len(manifests)} policy objects from {result.host}")
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``segmenter live-policies``: save the cluster's policy objects as YAML."""
    p = subparsers.add_parser(
        "live-policies", help="save the policies in force in the cluster as YAML",
        description="Read NetworkPolicies and Calico projectcalico.org/v3 policy objects from "
                    "the cluster and write them as one multi-document YAML file, with the "
                    "fields the server adds removed (unless --raw).")
    p.add_argument("-o", "--output", required=True, help="YAML file to write")
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument("--kubeconfig", help="kubeconfig file")
    p.add_argument("--raw", action="store_true",
                   help="keep server fields (uid, resourceVersion, managedFields, status...)")
    p.add_argument("--no-calico", action="store_true", help="read Kubernetes policies only")
    p.set_defaults(func=cmd_live_policies)
