"""Which network-policy engines a cluster runs: from the inventory (a dump, or the workloads a
live cluster runs now: :func:`live_engines`), or the API groups it serves.

``--dialect auto`` writes the targets the cluster enforces. From the inventory, a CNI is
recognised by its agent's workload: the labels its upstream manifests give the pod template, or
the image it runs (which survives a relabelling installer). What each recognised engine enforces
is said as the policy API groups it implements; the registry of targets
(:func:`segmenter.targets.detect_targets`) turns those into targets. Every engine recognised here
also enforces Kubernetes ``networking.k8s.io`` NetworkPolicy.

Recognised (labels and images as the upstream manifests checked set them):

- **Calico**: the ``calico-node`` DaemonSet (``k8s-app: calico-node``; image ``calico/node``;
  projectcalico/calico ``charts/calico/templates/calico-node.yaml``; the operator creates the
  same in ``calico-system``), or the Tigera operator Deployment (``k8s-app: tigera-operator``;
  image ``tigera/operator``; ``charts/tigera-operator/templates/tigera-operator/
  02-tigera-operator.yaml``), which installs Calico (or Calico Enterprise);
- **Cilium**: the agent DaemonSet (``k8s-app: cilium``, ``app.kubernetes.io/name:
  cilium-agent``; image ``cilium/cilium``; cilium/cilium ``install/kubernetes/cilium/templates/
  cilium-agent/daemonset.yaml``);
- **kube-network-policies** (the SIG's reference NetworkPolicy agent): its DaemonSet
  (``app: kube-network-policies``; image ``networking/kube-network-policies``;
  kubernetes-sigs/kube-network-policies ``install.yaml``); its ``-npa-v1alpha2`` image
  (``install-cnp.yaml``) also enforces ClusterNetworkPolicy.

Not recognised on purpose: a CNI that accepts NetworkPolicy objects without enforcing them
(flannel alone, for instance) must not be mistaken for a floor that holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from segmenter.model import Inventory, Labels, WorkloadRef

NETWORKING_GROUP: Final = "networking.k8s.io"
CALICO_GROUP: Final = "projectcalico.org"
CILIUM_GROUP: Final = "cilium.io"
ADMIN_POLICY_GROUP: Final = "policy.networking.k8s.io"


@dataclass(frozen=True)
class Recogniser:
    """How one engine's agent looks in an inventory."""

    engine: str
    kinds: tuple[str, ...]  # workload kinds the agent runs as
    labels: tuple[tuple[str, str], ...]  # any one pair on the pod template or pods
    images: tuple[str, ...]  # image repository suffixes
    api_groups: frozenset[str]
    # An image tag fragment that adds ClusterNetworkPolicy (kube-network-policies' npa build).
    admin_tag: str = ""


RECOGNISERS: Final = (
    Recogniser("Calico", ("DaemonSet",), (("k8s-app", "calico-node"),), ("calico/node",),
               frozenset({NETWORKING_GROUP, CALICO_GROUP})),
    Recogniser("Calico (Tigera operator)", ("Deployment",), (("k8s-app", "tigera-operator"),),
               ("tigera/operator",), frozenset({NETWORKING_GROUP, CALICO_GROUP})),
    Recogniser("Cilium", ("DaemonSet",), (("k8s-app", "cilium"),
                                          ("app.kubernetes.io/name", "cilium-agent")),
               ("cilium/cilium",), frozenset({NETWORKING_GROUP, CILIUM_GROUP})),
    Recogniser("kube-network-policies", ("DaemonSet",), (("app", "kube-network-policies"),),
               ("networking/kube-network-policies",), frozenset({NETWORKING_GROUP}),
               admin_tag="npa-v1alpha2"),
)


@dataclass(frozen=True)
class EngineFinding:
    """A policy engine the cluster runs, why we think so, and the policy API groups it
    enforces."""

    engine: str
    evidence: str
    api_groups: frozenset[str]


def _repository(image: str) -> tuple[str, str]:
    """(repository, tag) of an image reference; the tag may be empty.

    >>> _repository("quay.io/cilium/cilium:v1.16.3@sha256:ab")
    ('quay.io/cilium/cilium', 'v1.16.3')
    """
    name = image.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    repo, _, tag = last.partition(":")
    return (f"{head}/{repo}" if head else repo), tag


def recognise_engines(inventory: Inventory) -> tuple[EngineFinding, ...]:
    """The policy engines the inventory shows, one finding per agent workload."""
    images: dict[WorkloadRef, set[str]] = {}
    labels: dict[WorkloadRef, set[tuple[str, str]]] = {}
    for pod in inventory.pods:
        images.setdefault(pod.owner, set()).update(pod.images)
        labels.setdefault(pod.owner, set()).update(pod.labels.items)
    for workload in inventory.workloads:
        labels.setdefault(workload.ref, set()).update(
            (*workload.template_labels.items, *workload.labels.items))
    found: list[EngineFinding] = []
    for ref in sorted(labels):
        for rec in RECOGNISERS:
            if ref.kind not in rec.kinds:
                continue
            finding = _match(rec, ref, Labels(tuple(sorted(labels[ref]))),
                             sorted(images.get(ref, ())))
            if finding is not None:
                found.append(finding)
                break
    return tuple(found)


def _match(rec: Recogniser, ref: WorkloadRef, labels: Labels, images: Iterable[str]
           ) -> EngineFinding | None:
    why = [f"{k}={v}" for k, v in rec.labels if labels.get(k) == v]
    tags: list[str] = []
    for image in images:
        repo, tag = _repository(image)
        if any(repo == s or repo.endswith("/" + s) for s in rec.images):
            why.append(f"image {image}")
            tags.append(tag)
    if not why:
        return None
    groups = set(rec.api_groups)
    if rec.admin_tag and any(rec.admin_tag in t for t in tags):
        groups.add(ADMIN_POLICY_GROUP)
    return EngineFinding(rec.engine, f"{ref.kind} {ref.namespace}/{ref.name} "
                                     f"({', '.join(why)})", frozenset(groups))


def served_api_groups(*, context: str | None = None, kubeconfig: str | None = None
                      ) -> tuple[tuple[str, str], ...]:
    """Every (group, version) the cluster's API serves (the ``/apis`` discovery document).

    Raises:
        InventoryError: unreachable cluster, bad kubeconfig, 401, 403, or a malformed answer.
    """
    from kubernetes import client

    from segmenter.cluster.client import (
        api_client,
        api_status_error,
        decode_response,
        is_transport_error,
        transport_reason,
    )
    from segmenter.errors import InventoryError

    api, host = api_client(context=context, kubeconfig=kubeconfig)
    with api:
        try:
            response = client.ApisApi(api).get_api_versions(_preload_content=False)
        except client.ApiException as exc:
            raise api_status_error(exc, host=host, what="list API groups",
                                   forbidden=f"forbidden: the credentials for {host} may not "
                                             "read the API discovery document") from None
        except Exception as exc:
            if is_transport_error(exc):
                raise InventoryError(f"cannot reach the cluster at {host}: "
                                     f"{transport_reason(exc)}") from None
            raise
        body = decode_response(response, api, host=host, what="list API groups")
    groups = body.get("groups") if isinstance(body, dict) else None
    if not isinstance(groups, list):
        raise InventoryError(f"the API server at {host} sent no API group list")
    out = set()
    for group in groups:
        if not isinstance(group, dict):
            continue
        for version in group.get("versions") or []:
            if isinstance(version, dict) and version.get("version"):
                out.add((str(group.get("name") or ""), str(version["version"])))
    return tuple(sorted(out))


# What recognising an engine in a live cluster lists: the agents' workloads and their pods (the
# ReplicaSets to tie a Deployment's pods to it), as segmenter.cluster.live names them.
ENGINE_RESOURCES: Final = ("daemonsets", "deployments", "replicasets", "pods")


def live_engines(*, context: str | None = None, kubeconfig: str | None = None
                 ) -> tuple[EngineFinding, ...]:
    """The policy engines the cluster runs now, recognised from its DaemonSets, Deployments and
    pods as :func:`recognise_engines` does from a dump.

    Raises:
        InventoryError: unreachable cluster, not a Kubernetes API server, bad kubeconfig, 401,
            403 (naming the permission), or a malformed answer.
    """
    from segmenter.cluster.client import connect
    from segmenter.cluster.live import RESOURCES, list_documents, parse_live_documents

    api, host = connect(context=context, kubeconfig=kubeconfig)
    with api:
        documents = list_documents(api, host=host, resources=tuple(
            r for r in RESOURCES if r.plural in ENGINE_RESOURCES))
    return recognise_engines(parse_live_documents(documents, host=host, context=context))


__all__ = ["ADMIN_POLICY_GROUP", "CALICO_GROUP", "CILIUM_GROUP", "ENGINE_RESOURCES",
           "NETWORKING_GROUP", "RECOGNISERS", "EngineFinding", "Recogniser", "live_engines",
           "recognise_engines", "served_api_groups"]
