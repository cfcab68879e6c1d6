"""networking.k8s.io/v1 NetworkPolicy.

Allow rules only: NetworkPolicy has no deny, pass or log, no tiers and no order
(policy-semantics.md §1.2). The plan's allowed set is carried entirely by the per-workload
policies plus the per-namespace default deny, so tiered zone guardrails are noted as not
expressible here rather than approximated. ICMP cannot be allowed by NetworkPolicy.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from segmenter.dialects.base import (
    MANAGED_BY,
    Dialect,
    Manifest,
    evidence_sources,
    flow_count,
    policy_annotations,
)
from segmenter.k8s import NAMESPACE_NAME_LABEL
from segmenter.model import Transport
from segmenter.policy.ir import (
    Action,
    CidrPeer,
    Evidence,
    Peer,
    PodPeer,
    Policy,
    PolicySet,
    Port,
    Rule,
)

_K8S_PROTOCOLS = {Transport.TCP, Transport.UDP, Transport.SCTP}


def timestamp(value: float | None) -> str | None:
    """RFC 3339 UTC to the second.

    >>> timestamp(1764000000.75)
    '2025-11-24T16:00:00Z'
    """
    if value is None:
        return None
    return _second(int(value // 1))


@lru_cache(maxsize=1 << 16)
def _second(value: int) -> str:
    # Cached per whole second: a capture's flows share seconds by the thousand.
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))


def evidence_lines(rules: tuple[Rule, ...], direction: str) -> list[str]:
    """One line per rule: ``ingress[0]: 12 flows, 2026-...Z to 2026-...Z; observed from ...``
    (``(hubble, capture)`` after it when a flow log saw them)."""
    return [f"{direction}[{index}]: {evidence_text(rule.evidence)}"
            for index, rule in enumerate(rules)]


def evidence_text(ev: Evidence) -> str:
    """``12 flows, <first> to <last>; observed from ... (hubble, capture)``."""
    text = flow_count(ev)
    if ev.first_seen is not None:
        text += f", {timestamp(ev.first_seen)} to {timestamp(ev.last_seen)}"
    if ev.reason:
        text += f"; {ev.reason}"
    sources = evidence_sources(ev)
    if sources:
        text += f" ({sources})"
    return text


class Kubernetes(Dialect):
    """Kubernetes NetworkPolicy, one file per policy."""

    def __init__(self, *, best_effort: bool = False, staged: bool = False):
        super().__init__(name="kubernetes", best_effort=best_effort, staged=staged)

    def generate(self, policy_set: PolicySet) -> dict[str, list[Manifest]]:
        if self.staged:
            self.note("--staged applies to Calico only; NetworkPolicy has no staged form")
        files: dict[str, list[Manifest]] = {}
        for policy in policy_set.policies:
            if policy.namespace is None:
                self.unsupported(f"{policy.name}: cluster-scoped policy")
                continue
            key = f"{policy.namespace}/{policy.name}.yaml"
            if key in files:
                self.unsupported(f"two policies would both be written as {key}")
            files[key] = [self.policy(policy)]
        for guard in policy_set.guardrails:
            self.note(f"zone guardrail {guard.name} needs tiers and Log/Pass/Deny actions, which "
                      "NetworkPolicy lacks; the same allowed set is enforced by the per-workload "
                      "policies and default deny")
        return files

    def policy(self, policy: Policy) -> Manifest:
        annotations = policy_annotations(policy)
        evidence = evidence_lines(policy.ingress or (), "ingress") + evidence_lines(
            policy.egress or (), "egress")
        if evidence:
            annotations["segmenter.io/evidence"] = "\n".join(evidence) + "\n"
        spec: dict[str, Any] = {"podSelector": self.selector(policy.target.labels.as_dict()),
                                "policyTypes": [d.type_name for d in policy.directions]}
        for direction, rules, key in (("ingress", policy.ingress, "from"),
                                      ("egress", policy.egress, "to")):
            emitted = [r for r in (self.rule(rule, policy, key) for rule in rules or ()) if r]
            if emitted:
                spec[direction] = emitted
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {
                "name": policy.name,
                "namespace": policy.namespace,
                "labels": dict(MANAGED_BY),
                "annotations": annotations,
            },
            "spec": spec,
        }

    @staticmethod
    def selector(labels: dict[str, str]) -> dict[str, Any]:
        return {"matchLabels": labels} if labels else {}

    def rule(self, rule: Rule, policy: Policy, key: str) -> dict[str, Any] | None:
        if rule.action is not Action.ALLOW:
            self.unsupported(f"{policy.namespace}/{policy.name}: {rule.action} rule")
        out: dict[str, Any] = {}
        if rule.peers:
            out[key] = [self.peer(p) for p in rule.peers]
        ports = [self.port(p, policy) for p in rule.ports]
        kept = [p for p in ports if p is not None]
        if rule.ports and not kept:
            # Every port of the rule was dropped (reported above); emitting the rule without
            # `ports` would mean "all ports", so it is left out whole.
            return None
        if kept:
            out["ports"] = kept
        return out

    def peer(self, peer: Peer) -> dict[str, Any]:
        if isinstance(peer, PodPeer):
            return {
                "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: peer.namespace}},
                "podSelector": self.selector(peer.pods.labels.as_dict()),
            }
        assert isinstance(peer, CidrPeer)
        block: dict[str, Any] = {"cidr": peer.cidr}
        if peer.excepts:
            block["except"] = list(peer.excepts)
        return {"ipBlock": block}

    def port(self, port: Port, policy: Policy) -> dict[str, Any] | None:
        if port.transport not in _K8S_PROTOCOLS:
            self.unsupported(f"{policy.namespace}/{policy.name}: {port.transport} cannot be "
                             "allowed by NetworkPolicy")
            return None
        out: dict[str, Any] = {"protocol": port.transport.value}
        if port.port is not None:
            out["port"] = port.port
            if port.end_port is not None and port.end_port != port.port:
                out["endPort"] = port.end_port
        return out
