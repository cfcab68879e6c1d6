"""Kubernetes ``networking.k8s.io/v1`` NetworkPolicy → :class:`CompiledPolicy`.

Semantics follow policy-semantics.md §1: ``policyTypes`` defaulting (§1.3), empty versus missing
(§1.4), peers (§1.5), ports, named ports and ``endPort`` (§1.6). The same compiled form serves
Calico enforcement (§3.5): Calico puts every Kubernetes policy in tier ``default`` at order 1000
under the name ``knp.default.<name>``, matches ``ipBlock`` against pod IPs too, and restricts
pod selectors to Kubernetes pods, which is what :class:`SelectorPeer` already does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from segmenter.evaluate.core import (
    CompiledPolicy,
    IPBlockPeer,
    K8sPeer,
    K8sPort,
    K8sRule,
    SelectorPeer,
)
from segmenter.evaluate.model import Direction, PortRange, parse_net
from segmenter.evaluate.selector import from_label_selector
from segmenter.model import Transport

__all__ = ["K8S_POLICY_ORDER", "compile_k8s_policy", "effective_policy_types", "fill_defaults",
           "fill_spec_defaults"]

# Calico's order for converted Kubernetes policies (§3.5).
K8S_POLICY_ORDER = 1000.0


class PolicyCompileError(ValueError):
    """A policy the engine cannot evaluate (the API server would have rejected it)."""


def effective_policy_types(spec: Mapping[str, Any]) -> frozenset[Direction]:
    """``policyTypes`` after API-server defaulting (§1.3).

    Missing or empty: ``Ingress`` always, ``Egress`` only when ``egress`` has at least one rule.

    Examples:
        >>> sorted(effective_policy_types({"egress": [{}]}))
        [<Direction.EGRESS: 'egress'>, <Direction.INGRESS: 'ingress'>]
        >>> sorted(effective_policy_types({"egress": []}))
        [<Direction.INGRESS: 'ingress'>]
    """
    types = spec.get("policyTypes")
    if types:
        out = set()
        for t in types:
            if t == "Ingress":
                out.add(Direction.INGRESS)
            elif t == "Egress":
                out.add(Direction.EGRESS)
        return frozenset(out)
    if spec.get("egress"):
        return frozenset({Direction.INGRESS, Direction.EGRESS})
    return frozenset({Direction.INGRESS})


def fill_defaults(doc: dict[str, Any]) -> None:
    """Make the API server's defaults explicit in a NetworkPolicy, in place: each port's
    ``protocol`` (TCP) and ``policyTypes`` (§1.3), sorted; so that two objects that mean the
    same compare equal (``segmenter diff``)."""
    spec = doc.get("spec")
    if isinstance(spec, dict) and doc.get("kind") in ("NetworkPolicy",
                                                       "StagedKubernetesNetworkPolicy"):
        fill_spec_defaults(spec)


def fill_spec_defaults(spec: dict[str, Any]) -> None:
    """:func:`fill_defaults` of a NetworkPolicy ``spec``."""
    for direction in ("ingress", "egress"):
        for rule in spec.get(direction) or []:
            if isinstance(rule, dict):
                for port in rule.get("ports") or []:
                    if isinstance(port, dict):
                        port.setdefault("protocol", "TCP")
    if not spec.get("policyTypes"):
        types = ["Ingress"]
        if spec.get("egress"):
            types.append("Egress")
        spec["policyTypes"] = types
    if isinstance(spec.get("policyTypes"), list):
        spec["policyTypes"] = sorted(str(t) for t in spec["policyTypes"])


def policy_display(namespace: str, name: str, *, calico: bool) -> str:
    if calico:
        return f"NetworkPolicy {namespace}/knp.default.{name}"
    return f"networking.k8s.io/NetworkPolicy {namespace}/{name}"


def compile_k8s_policy(
    doc: Mapping[str, Any], *, ipblock_matches_pods: bool, calico: bool
) -> CompiledPolicy:
    """Compile one NetworkPolicy manifest.

    Args:
        doc: the manifest (already validated; errors left in it raise).
        ipblock_matches_pods: whether ``ipBlock`` peers match pod IPs (§1.5, [I]). Calico
            enforcement always matches them.
        calico: compile as Calico does: tier ``default``, order 1000, ``knp.default.<name>``.

    Raises:
        PolicyCompileError: for a structure the API server would reject.
    """
    meta = doc.get("metadata") or {}
    name = str(meta.get("name") or "")
    namespace = str(meta.get("namespace") or "default")
    spec = doc.get("spec") or {}
    if not isinstance(spec, Mapping):
        raise PolicyCompileError("spec must be a mapping")
    match_pods = True if calico else ipblock_matches_pods
    try:
        selector = from_label_selector(spec.get("podSelector"))
        rules: dict[Direction, tuple[K8sRule, ...]] = {}
        for direction, key, peer_key in (
            (Direction.INGRESS, "ingress", "from"),
            (Direction.EGRESS, "egress", "to"),
        ):
            compiled = []
            for i, raw in enumerate(_as_list(spec.get(key))):
                rule = raw or {}
                peers = tuple(
                    _peer(p, match_pods) for p in _as_list(rule.get(peer_key))
                )
                ports = tuple(_port(p) for p in _as_list(rule.get("ports")))
                compiled.append(K8sRule(direction, i, namespace, peers, ports))
            rules[direction] = tuple(compiled)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise PolicyCompileError(str(exc)) from exc
    return CompiledPolicy(
        kind="k8s",
        display=policy_display(namespace, name, calico=calico),
        namespace=namespace,
        name=f"knp.default.{name}" if calico else name,
        tier="default",
        order=K8S_POLICY_ORDER,
        types=effective_policy_types(spec),
        ingress=rules[Direction.INGRESS],
        egress=rules[Direction.EGRESS],
        selector=selector,
    )


def _as_list(value: Any) -> Sequence[Any]:
    if value is None:
        return ()
    if isinstance(value, Sequence) and not isinstance(value, str):
        return value
    raise PolicyCompileError(f"expected a list, got {type(value).__name__}")


def _peer(peer: Any, match_pods: bool) -> K8sPeer:
    if not isinstance(peer, Mapping):
        raise PolicyCompileError("a peer must be a mapping")
    block = peer.get("ipBlock")
    if block is not None:
        cidr = parse_net(block["cidr"])
        excepts = tuple(parse_net(e) for e in block.get("except") or ())
        return IPBlockPeer(cidr, excepts, match_pods)
    ns_sel = peer.get("namespaceSelector")
    pod_sel = peer.get("podSelector")
    if ns_sel is None and pod_sel is None:
        raise PolicyCompileError("must specify a peer")
    return SelectorPeer(
        None if ns_sel is None else from_label_selector(ns_sel),
        None if pod_sel is None else from_label_selector(pod_sel),
    )


def _port(entry: Any) -> K8sPort:
    entry = entry or {}
    proto = Transport.parse(str(entry.get("protocol") or "TCP"))
    port = entry.get("port")
    if port is None:
        return K8sPort(proto, None)
    if isinstance(port, int) and not isinstance(port, bool):
        end = entry.get("endPort")
        return K8sPort(proto, PortRange(port, int(end) if end is not None else port))
    return K8sPort(proto, PortRange(name=str(port)))
