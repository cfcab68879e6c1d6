"""The cluster's RBAC objects, read through the official ``kubernetes`` client: Roles and
RoleBindings in every namespace, ClusterRoles and ClusterRoleBindings
(``rbac.authorization.k8s.io/v1``), for the evidence report's list of who may change the
policies (:mod:`segmenter.analysis.rbac`).

Read-only: ``list`` on those four resources (docs/rbac-report.yaml). Every list is paged
(:func:`segmenter.cluster.client.list_pages`) after the server has shown it is a Kubernetes API
server (:func:`segmenter.cluster.client.connect`); a cluster that does not serve the RBAC API
(404), missing permissions (403) or anything malformed raise
:class:`~segmenter.errors.InventoryError` in one line: a list of who may change the policies is
never silently empty.

Tested through the real client against recorded API responses on loopback
(``tests/test_report_cluster.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from segmenter.cluster.client import DEFAULT_TIMEOUT, connect, list_pages
from segmenter.errors import InventoryError

RBAC_GROUP: Final = "rbac.authorization.k8s.io"
RBAC_READ_HINT: Final = "docs/rbac-report.yaml"


@dataclass(frozen=True)
class RbacObjects:
    """The RBAC objects as the API server sent them (``kind`` and ``apiVersion`` filled in)."""

    roles: tuple[Mapping[str, Any], ...] = ()
    cluster_roles: tuple[Mapping[str, Any], ...] = ()
    role_bindings: tuple[Mapping[str, Any], ...] = ()
    cluster_role_bindings: tuple[Mapping[str, Any], ...] = ()
    host: str = ""


# (attribute, kind, plural, client method name)
_LISTS: Final = (
    ("roles", "Role", "roles", "list_role_for_all_namespaces"),
    ("cluster_roles", "ClusterRole", "clusterroles", "list_cluster_role"),
    ("role_bindings", "RoleBinding", "rolebindings", "list_role_binding_for_all_namespaces"),
    ("cluster_role_bindings", "ClusterRoleBinding", "clusterrolebindings",
     "list_cluster_role_binding"),
)


def read_rbac(*, context: str | None = None, kubeconfig: str | None = None,
              page_size: int = 500, request_timeout: float = DEFAULT_TIMEOUT) -> RbacObjects:
    """Every Role, ClusterRole, RoleBinding and ClusterRoleBinding of the cluster.

    Raises:
        InventoryError: unreachable cluster, not a Kubernetes API server, bad kubeconfig, 401,
            403 (naming the permission and docs/rbac-report.yaml), the RBAC API not served, a
            malformed response.
    """
    from kubernetes import client

    api_client, host = connect(context=context, kubeconfig=kubeconfig,
                               request_timeout=request_timeout)
    found: dict[str, tuple[Mapping[str, Any], ...]] = {}
    with api_client:
        rbac = client.RbacAuthorizationV1Api(api_client)
        for attribute, kind, plural, method in _LISTS:
            resource = f"{plural}.{RBAC_GROUP}"
            try:
                pages = list_pages(getattr(rbac, method), api_client, host=host,
                                   resource=resource, list_kind=f"{kind}List",
                                   page_size=page_size, timeout=request_timeout)
            except InventoryError as exc:
                if exc.message.startswith("forbidden"):
                    raise InventoryError(f"forbidden: needs list on {resource} at {host} to "
                                         f"say who may change the policies (see "
                                         f"{RBAC_READ_HINT})") from None
                raise
            if pages is None:
                raise InventoryError(f"the cluster at {host} does not serve {resource}: who "
                                     "may change the policies cannot be read")
            items = []
            for page in pages:
                for raw in page["items"]:
                    if isinstance(raw, Mapping):
                        item = dict(raw)
                        item.setdefault("apiVersion", f"{RBAC_GROUP}/v1")
                        item.setdefault("kind", kind)
                        items.append(item)
            found[attribute] = tuple(items)
    return RbacObjects(found["roles"], found["cluster_roles"], found["role_bindings"],
                       found["cluster_role_bindings"], host)


__all__ = ["RBAC_GROUP", "RBAC_READ_HINT", "RbacObjects", "read_rbac"]
