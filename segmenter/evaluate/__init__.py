"""Policy engine: is a connection allowed, and which policy and rule decided?

Evaluates Kubernetes ``networking.k8s.io/v1`` NetworkPolicy (reference algorithm of
policy-semantics.md §1.9); under ``enforcement="calico"`` Calico ``projectcalico.org/v3`` policy
with tiers (§3.4); under ``enforcement="cilium"`` Cilium ``cilium.io/v2`` policy with deny
precedence and Kubernetes policy as Cilium translates it (§4.9); under
``enforcement="clusternetworkpolicy"`` ``policy.networking.k8s.io/v1alpha2`` ClusterNetworkPolicy
around the NetworkPolicies (§2.7)::

    from segmenter.evaluate import EvalEndpoint, PolicyEngine, load_manifests

    engine = PolicyEngine.from_manifests(load_manifests(["policies/"]), namespaces=ns_labels,
                                         enforcement="calico")
    verdict = engine.check(src, dst, Transport.TCP, 5432)
    verdict.allowed, verdict.ingress.policy, verdict.ingress.rule, verdict.ingress.reason

Modules: :mod:`.model` (public value types), :mod:`.selector` (Calico selector language and
Kubernetes label selectors), :mod:`.kubernetes`, :mod:`.calico`, :mod:`.cilium` and
:mod:`.clusternetworkpolicy` (manifest → compiled policy), :mod:`.core` (compiled rules and
policies), :mod:`.engine` (evaluation, indexes, caches), :mod:`.validate` (what the API would
reject), :mod:`.load` (reading files).
"""

from segmenter.evaluate.engine import ENFORCEMENTS, PolicyEngine
from segmenter.evaluate.load import iter_manifests, load_manifests
from segmenter.evaluate.model import Decision, Direction, EvalEndpoint, Verdict
from segmenter.evaluate.selector import SelectorError, from_label_selector, parse_selector
from segmenter.evaluate.validate import describe_manifest, is_warning, validate_manifest

__all__ = [
    "ENFORCEMENTS",
    "Decision",
    "Direction",
    "EvalEndpoint",
    "PolicyEngine",
    "SelectorError",
    "Verdict",
    "describe_manifest",
    "from_label_selector",
    "is_warning",
    "iter_manifests",
    "load_manifests",
    "parse_selector",
    "validate_manifest",
]
