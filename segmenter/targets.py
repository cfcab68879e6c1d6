"""Every policy target, registered here and nowhere else.

A target is what segmenter writes policies for and judges them under: its writer (a dialect
reading only the policy IR), the evaluator that knows how its objects are enforced, the kinds
it writes and reads back from a cluster, how ``diff`` fills in the API's defaults for them, and
how ``apply`` puts them into a cluster. The CLI's choices, the facade, the report's enforcement
detection and ``run``'s self-check all come from :data:`TARGETS`.

To add a target: write ``segmenter/dialects/<name>.py`` (a :class:`~segmenter.dialects.base.
Dialect`), make the evaluator understand what it writes (an enforcement mode of
:mod:`segmenter.evaluate`), and add one :class:`Target` to ``TARGETS``. A target cannot be
registered without an evaluator: what it writes is always verified.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from segmenter.cluster.cni import recognise_engines
from segmenter.dialects.base import Dialect
from segmenter.dialects.calico import Calico
from segmenter.dialects.cilium import Cilium
from segmenter.dialects.clusternetworkpolicy import ClusterNetworkPolicy
from segmenter.dialects.kubernetes import Kubernetes
from segmenter.errors import InputError, UnknownNameError
from segmenter.evaluate import PolicyEngine
from segmenter.evaluate.calico import fill_defaults as calico_defaults
from segmenter.evaluate.kubernetes import fill_defaults as kubernetes_defaults
from segmenter.k8s import PolicyKind, api_group
from segmenter.model import Inventory, Labels

K8S_GROUP: Final = "networking.k8s.io"
CALICO_GROUP: Final = "projectcalico.org"
CALICO_VERSION: Final = "v3"
CILIUM_GROUP: Final = "cilium.io"
ADMIN_GROUP: Final = "policy.networking.k8s.io"


class ApplyRoute(enum.StrEnum):
    """How ``segmenter apply`` puts a target's objects into a cluster."""

    KUBECTL = "kubectl"
    # kubectl where the cluster serves the target's API group (Calico's API server or native v3
    # CRDs), calicoctl otherwise (policy-semantics.md §3.6).
    KUBECTL_OR_CALICOCTL = "kubectl-or-calicoctl"


Namespaces = Mapping[str, Labels] | Mapping[str, Mapping[str, str]]


@dataclass(frozen=True)
class TargetOption:
    """A switch a target's writer takes: its keyword, the key under ``compile.targets.<target>``
    in segmenter.yaml, and the CLI flag ``--<target>-<name with dashes>``."""

    name: str
    help: str

    def flag(self, target: str) -> str:
        return f"--{target}-{self.name.replace('_', '-')}"

    def dest(self, target: str) -> str:
        return f"{target}_{self.name}"


@dataclass(frozen=True)
class Target:
    """One policy target.

    Attributes:
        name: the CLI value, the output folder name and the dialect's name.
        title: what a person calls it.
        writer: makes the dialect that writes the IR as this target's objects.
        evaluator: builds the evaluator for a set of manifests under this target's
            enforcement: ``evaluator(manifests, namespaces)``; its ``check`` answers whether a
            connection is allowed and which policy and rule decided.
        kinds: the kinds this target writes and that are read back from a cluster for it; the
            first target (Kubernetes) owns the NetworkPolicy every CNI enforces.
        fill_defaults: ``fill_defaults(doc)`` makes the API's defaults explicit in an object
            of the target's groups, in place, and drops what its API server adds, so that
            ``diff`` compares what objects mean.
        omits_empty: the API drops empty maps and strings when it stores the objects (Go
            ``omitempty`` on structs), so ``diff`` drops them too.
        apply_route: how ``apply`` puts the objects into a cluster.
        options: the switches the writer takes (:meth:`dialect` passes them on).
    """

    name: str
    title: str
    writer: Callable[..., Dialect]
    evaluator: Callable[[Iterable[Mapping[str, Any]], Namespaces], PolicyEngine]
    kinds: tuple[PolicyKind, ...]
    fill_defaults: Callable[[dict[str, Any]], None]
    omits_empty: bool = False
    # API groups whose objects are this target's besides its kinds' (Calico's storage group).
    other_groups: tuple[str, ...] = ()
    apply_route: ApplyRoute = ApplyRoute.KUBECTL
    options: tuple[TargetOption, ...] = ()

    def dialect(self, *, best_effort: bool = False, staged: bool = False,
                **options: bool) -> Dialect:
        """The writer, with ``options`` (:attr:`options` only; an unknown one is an error)."""
        for key in options:
            if key not in {o.name for o in self.options}:
                raise UnknownNameError(f"option of target {self.name}", key,
                                       [o.name for o in self.options])
        return self.writer(best_effort=best_effort, staged=staged, **options)

    def owns(self, doc: Mapping[str, Any]) -> bool:
        """Whether ``doc`` is of one of this target's kinds."""
        return any(kind.describes(dict(doc)) for kind in self.kinds)

    @property
    def api_groups(self) -> tuple[str, ...]:
        """The API groups of the target's objects."""
        return tuple(dict.fromkeys((*(k.group for k in self.kinds), *self.other_groups)))

    def __str__(self) -> str:
        return self.name


def _engine(enforcement: str) -> Callable[[Iterable[Mapping[str, Any]], Namespaces],
                                          PolicyEngine]:
    def build(manifests: Iterable[Mapping[str, Any]], namespaces: Namespaces) -> PolicyEngine:
        return PolicyEngine.from_manifests(manifests, namespaces=namespaces,
                                           enforcement=enforcement)

    return build


KUBERNETES_KINDS: Final = (PolicyKind("NetworkPolicy", K8S_GROUP, "v1", "networkpolicies", True),)
CALICO_KINDS: Final = (
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

CILIUM_KINDS: Final = (
    PolicyKind("CiliumNetworkPolicy", CILIUM_GROUP, "v2", "ciliumnetworkpolicies", True),
    PolicyKind("CiliumClusterwideNetworkPolicy", CILIUM_GROUP, "v2",
               "ciliumclusterwidenetworkpolicies", False),
)

CLUSTER_NETWORK_POLICY_KINDS: Final = (
    PolicyKind("ClusterNetworkPolicy", ADMIN_GROUP, "v1alpha2", "clusternetworkpolicies", False),
)


def _no_defaults(doc: dict[str, Any]) -> None:
    """The API server defaults nothing in these objects that changes their meaning (Cilium
    v2; ClusterNetworkPolicy v1alpha2, whose every field that matters is required)."""


TARGETS: dict[str, Target] = {
    target.name: target for target in (
        Target("kubernetes", "Kubernetes NetworkPolicy", Kubernetes, _engine("kubernetes"),
               KUBERNETES_KINDS, kubernetes_defaults),
        Target("calico", "Calico projectcalico.org/v3", Calico, _engine("calico"),
               CALICO_KINDS, calico_defaults, omits_empty=True,
               other_groups=("crd.projectcalico.org",),
               apply_route=ApplyRoute.KUBECTL_OR_CALICOCTL,
               options=(TargetOption("domains", "Calico Enterprise only: allow external peers "
                                     "named by DNS answers also by name (allowedEgressDomains "
                                     "on their GlobalNetworkSets)"),)),
        Target("cilium", "Cilium cilium.io/v2", Cilium, _engine("cilium"), CILIUM_KINDS,
               _no_defaults),
        # Its folder also holds the per-workload NetworkPolicies: complete on its own for
        # clusters without Calico tiers (Calico 3.32, kube-network-policies).
        Target("clusternetworkpolicy", "ClusterNetworkPolicy policy.networking.k8s.io/v1alpha2",
               ClusterNetworkPolicy, _engine("clusternetworkpolicy"),
               CLUSTER_NETWORK_POLICY_KINDS, _no_defaults,
               options=(TargetOption("domain_names", "experimental channel CRD only: Accept "
                                     "egress to external peers named by DNS answers by name "
                                     "(domainNames) in the zone guardrails"),)),
    )
}


def target_names() -> tuple[str, ...]:
    """The registered targets' names, in registry order."""
    return tuple(TARGETS)


def get_target(name: str) -> Target:
    """The target named ``name``; :class:`~segmenter.errors.UnknownNameError` with the closest
    names otherwise."""
    target = TARGETS.get(str(name))
    if target is None:
        raise UnknownNameError("target", str(name), TARGETS)
    return target


def all_kinds() -> tuple[PolicyKind, ...]:
    """Every kind of every target, without repeats: what is read from a cluster."""
    return tuple(dict.fromkeys(kind for target in TARGETS.values() for kind in target.kinds))


def kind_of(doc: Mapping[str, Any]) -> PolicyKind | None:
    """The registered kind of a manifest, or None for other kinds.

    >>> kind_of({"apiVersion": "projectcalico.org/v3", "kind": "Tier"}).plural
    'tiers'
    """
    for kind in all_kinds():
        if kind.describes(dict(doc)):
            return kind
    return None


def target_of(doc: Mapping[str, Any]) -> Target | None:
    """The target that owns a manifest's kind (the first registered), or None."""
    for target in TARGETS.values():
        if target.owns(doc):
            return target
    return None


def target_of_group(doc: Mapping[str, Any]) -> Target | None:
    """The (last registered) target whose API groups hold a manifest's group, or None:
    ``networking.k8s.io`` is Kubernetes', ``projectcalico.org`` Calico's."""
    group = api_group(dict(doc))
    found = None
    for target in TARGETS.values():
        if group in target.api_groups:
            found = target
    return found


def target_options(raw: Mapping[str, Mapping[str, object]], *, path: str | None = None,
                   ) -> dict[str, dict[str, bool]]:
    """``compile.targets`` of segmenter.yaml checked against the registry: target name ->
    option -> value.

    Raises:
        UnknownNameError: an unknown target or option (naming ``compile.targets.<...>``).
        InputError: a value that is not true or false.
    """
    out: dict[str, dict[str, bool]] = {}
    for name, options in sorted(raw.items()):
        record = f"compile.targets.{name}"
        if name not in TARGETS:
            raise UnknownNameError("target", name, TARGETS, path=path, record=record)
        target = TARGETS[name]
        known = {o.name for o in target.options}
        for key, value in sorted(options.items()):
            if key not in known:
                raise UnknownNameError(f"option of target {name}", str(key), known, path=path,
                                       record=f"{record}.{key}")
            if not isinstance(value, bool):
                raise InputError("must be true or false", path=path, record=f"{record}.{key}")
            out.setdefault(name, {})[str(key)] = value
    return out


@dataclass(frozen=True)
class Detection:
    """The targets a cluster enforces (``--dialect auto``), and what says so."""

    targets: tuple[Target, ...]
    evidence: tuple[str, ...]


def _primary_group(target: Target) -> str:
    return target.kinds[0].group


def detect_targets(inventory: Inventory | None = None,
                   served: Iterable[tuple[str, str]] | None = None) -> Detection:
    """The targets whose policies the cluster enforces, from the policy engines its inventory
    shows (:func:`~segmenter.cluster.cni.recognise_engines`) and/or the API groups it serves
    (``served``: (group, version) pairs).

    Kubernetes NetworkPolicy (the first target) is the floor: every engine recognised enforces
    it, so it is chosen whenever any engine is. A served group counts for a target when it
    serves one of its kinds' group and version, or one of its other groups (Calico's storage
    group in classic mode); ``networking.k8s.io`` is served by every cluster, enforced or not,
    so it proves nothing alone.

    Raises:
        InputError: nothing recognisable: never an empty choice (fail closed).
    """
    groups: set[str] = set()
    evidence: list[str] = []
    for finding in recognise_engines(inventory) if inventory is not None else ():
        groups |= finding.api_groups
        evidence.append(f"{finding.engine}: {finding.evidence}")
    first = next(iter(TARGETS.values()))
    if served is not None:
        pairs = set(served)
        names = {g for g, _ in pairs}
        for target in TARGETS.values():
            if target is first:
                continue
            hit = sorted({f"{k.group}/{k.version}" for k in target.kinds
                          if (k.group, k.version) in pairs}
                         | {g for g in target.other_groups if g in names})
            if hit:
                groups |= {_primary_group(target), _primary_group(first)}
                evidence.append(f"{target.title}: the cluster serves {', '.join(hit)}")
    if not groups:
        looked = ("the calico-node / cilium / kube-network-policies DaemonSets and the Tigera "
                  "operator in the inventory")
        if served is not None:
            looked += ", and the Calico, Cilium and ClusterNetworkPolicy API groups"
        raise InputError(f"--dialect auto: no network policy engine recognised ({looked}); "
                         "writing policies the cluster may not enforce would be a false sense "
                         "of security: name the targets with --dialect (kubernetes is "
                         "enforced by every CNI that enforces NetworkPolicy)")
    chosen = tuple(t for t in TARGETS.values() if _primary_group(t) in groups)
    return Detection(chosen, tuple(evidence))
