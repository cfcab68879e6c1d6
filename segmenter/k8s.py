"""Kubernetes facts the whole project relies on, in one place: naming rules and well-known labels.

Sources: the apimachinery validation code (``IsQualifiedName``, ``IsValidLabelValue``,
``IsDNS1123Label``, ``IsDNS1123Subdomain``) and the well-known labels reference
(kubernetes.io/docs/reference/labels-annotations-taints/).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

# Set by the control plane on every namespace since 1.21 (beta) / 1.22 (GA): the only way to
# select a namespace by name (policy-semantics.md §1.5).
NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"
# Set by the EndpointSlice controller: the Service a slice belongs to.
SERVICE_NAME_LABEL: Final = "kubernetes.io/service-name"

# Labels that change on every rollout or identify a single pod: never use them in a selector.
# Sources: pod-template-hash (Deployment controller), controller-revision-hash and
# statefulset.kubernetes.io/pod-name (StatefulSet controller), pod-template-generation
# (DaemonSet controller), batch.kubernetes.io/controller-uid and job-name (Job controller).
VOLATILE_LABEL_KEYS: Final = frozenset(
    {
        "pod-template-hash",
        "controller-revision-hash",
        "pod-template-generation",
        "statefulset.kubernetes.io/pod-name",
        "apps.kubernetes.io/pod-index",
        "batch.kubernetes.io/controller-uid",
        "batch.kubernetes.io/job-name",
        "controller-uid",
        "job-name",
        "batch.kubernetes.io/job-completion-index",
    }
)
# The characters of the hashes and random suffixes controllers put in generated names (a
# Deployment's ReplicaSet ``<deployment>-<pod-template-hash>``, pods ``<generateName><5 chars>``):
# rand.SafeEncodeString's alphabet, no vowels and no 0, 1, 3 (apimachinery pkg/util/rand).
GENERATED_NAME_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"

# Labels that are stable across pods but change on upgrades: avoid them in selectors.
UNSTABLE_LABEL_KEYS: Final = frozenset(
    {
        "version",
        "app.kubernetes.io/version",
        "helm.sh/chart",
        "chart",
        "release",
        "heritage",
        "app.kubernetes.io/managed-by",
    }
)

# Namespaces that hold the control plane, the CNI and cluster DNS. A default deny there can lock
# out nodes and the API server (policy-semantics.md, Calico trap 3.8.2), so they are not policed
# unless the user says otherwise.
SYSTEM_NAMESPACES: Final = (
    "calico-apiserver",
    "calico-system",
    "kube-node-lease",
    "kube-public",
    "kube-system",
    "tigera-operator",
)



@dataclass(frozen=True)
class PolicyKind:
    """A policy-related resource type: its kind, API group and version, plural and scope."""

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

    def describes(self, doc: object) -> bool:
        """Whether a manifest is of this kind (group and kind; any version)."""
        if not isinstance(doc, dict):
            return False
        api = str(doc.get("apiVersion") or "")
        group = api.split("/", 1)[0] if "/" in api else ""
        return doc.get("kind") == self.kind and group == self.group


def api_group(doc: object) -> str:
    """The API group of a manifest's ``apiVersion`` (``""`` for the core group)."""
    api = str(doc.get("apiVersion") or "") if isinstance(doc, dict) else ""
    return api.split("/", 1)[0] if "/" in api else ""


_QUALIFIED_NAME: Final = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS1123_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS1123_SUBDOMAIN: Final = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NOT_LABEL_CHARS: Final = re.compile(r"[^a-z0-9-]+")


def is_label_key(key: str) -> bool:
    """A valid label key: an optional DNS-subdomain prefix (at most 253 characters) and ``/``,
    then a name of at most 63 characters.

    >>> is_label_key("app.kubernetes.io/name"), is_label_key("x" * 64), is_label_key("a/b/c")
    (True, False, False)
    """
    prefix, slash, name = key.partition("/")
    if not slash:
        prefix, name = "", key
    elif not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix):
        return False
    return bool(_QUALIFIED_NAME.match(name))


def is_label_value(value: str) -> bool:
    """A valid label value: empty, or at most 63 characters of ``[-A-Za-z0-9_.]`` that begin
    and end with a letter or digit."""
    return value == "" or bool(_QUALIFIED_NAME.match(value))


def is_dns1123_label(name: str) -> bool:
    """A DNS-1123 label (namespace names, most object names): ``[a-z0-9-]``, at most 63."""
    return bool(_DNS1123_LABEL.match(name))


def is_dns1123_subdomain(name: str) -> bool:
    """A DNS-1123 subdomain (at most 253 characters of dot-separated labels)."""
    return len(name) <= 253 and bool(_DNS1123_SUBDOMAIN.match(name))


def dns1123(name: str, limit: int = 63) -> str:
    """A DNS-1123 label made from any text (for generated object names).

    >>> dns1123("Card_Vault.DB")
    'card-vault-db'
    """
    out = _NOT_LABEL_CHARS.sub("-", name.lower()).strip("-")
    return (out[:limit].rstrip("-")) or "x"
