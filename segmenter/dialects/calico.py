"""projectcalico.org/v3: Tier, GlobalNetworkPolicy guardrails, NetworkPolicy, GlobalNetworkSet.

- Zone guardrails live in a dedicated tier ordered before ``default``: planned flows ``Pass`` to
  the application policies, everything else into or out of the zone is ``Log``ged and ``Deny``ed.
  Their selectors use ``projectcalico.org/namespace``, which only workload endpoints carry, so they
  never catch host endpoints or system namespaces (policy-semantics.md §3.8 trap 2).
- Per-workload ``NetworkPolicy`` objects in the ``default`` tier carry the observed allows, and a
  per-namespace ``default-deny`` makes the deny explicit.
- External addresses become labelled ``GlobalNetworkSet`` objects, matched with
  ``namespaceSelector: global()`` (§3.1).
- ``types`` is always explicit: Calico defaults it differently from Kubernetes (§3.3).
- Policies in a non-default tier are named ``<tier>.<name>``, required before v3.32 and still
  accepted after (§3.3).
- ``domains=True`` (Calico Enterprise / Calico Cloud only, §3.7; off by default): the network set
  of an external peer the traffic named by DNS also lists the names as
  ``allowedEgressDomains``, so that egress Allow rules to it allow what the names resolve to
  (learned from DNS by Calico Enterprise), not only the addresses seen. The names have no
  effect in ingress rules nor in rules that do not Allow (Calico Enterprise GlobalNetworkSet
  reference): the zone guardrails' Pass rules keep passing only the observed addresses, so a
  restricted workload reaches no address it was not seen reaching. Open-source Calico rejects
  the field.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from segmenter.dialects.base import (
    MANAGED_BY,
    Dialect,
    Manifest,
    evidence_sources,
    policy_annotations,
)
from segmenter.dialects.kubernetes import timestamp
from segmenter.model import Labels
from segmenter.policy.ir import (
    Action,
    CidrPeer,
    CidrRole,
    Peer,
    PodPeer,
    Policy,
    PolicySet,
    Port,
    Rule,
)

API_VERSION = "projectcalico.org/v3"
NETWORK_SET_LABEL = "segmenter.io/network-set"
# Limits of the v3 API (policy-semantics.md §3.3; policy_common.go validation).
MAX_PORTS = 50
MAX_RULES = 1024
# Names Calico Enterprise accepts in allowedEgressDomains (DNS policy docs): whole labels of
# letters, digits, '-' and '_'. Observed names never hold the '*' the field also allows.
_DOMAIN = re.compile(r"^([a-zA-Z0-9_]([-a-zA-Z0-9_]*[a-zA-Z0-9_])?\.)*"
                     r"[a-zA-Z0-9_]([-a-zA-Z0-9_]*[a-zA-Z0-9_])?\.?$")


def quote(value: str) -> str:
    """A Calico selector string literal (no escapes exist: pick the quote the value lacks)."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"label value {value!r} cannot be quoted in a Calico selector")


def selector_expr(labels: Labels) -> str:
    if not labels:
        return "all()"
    return " && ".join(f"{k} == {quote(v)}" for k, v in labels.items)


class Calico(Dialect):
    """Calico v3 resources."""

    def __init__(self, *, best_effort: bool = False, staged: bool = False,
                 domains: bool = False):
        super().__init__(name="calico", best_effort=best_effort, staged=staged)
        self.domains = domains
        self._sets: dict[str, Manifest] = {}

    def generate(self, policy_set: PolicySet) -> dict[str, list[Manifest]]:
        self._sets = {}
        files: dict[str, list[Manifest]] = {}
        for tier in policy_set.tiers:
            files[f"00-tier-{tier.name}.yaml"] = [{
                "apiVersion": API_VERSION,
                "kind": "Tier",
                "metadata": {"name": tier.name, "labels": dict(MANAGED_BY),
                             "annotations": {"segmenter.io/description": tier.description}},
                "spec": {"order": _number(tier.order)},
            }]
        for guard in policy_set.guardrails:
            self.put_file(files, f"10-guardrails/{guard.name}.yaml", self.policy(guard))
        for policy in policy_set.policies:
            self.put_file(files, f"20-{policy.namespace}/{policy.name}.yaml", self.policy(policy))
        if self._sets:
            files["05-globalnetworksets.yaml"] = [self._sets[k] for k in sorted(self._sets)]
        named = sorted(k for k, v in self._sets.items() if v["spec"].get("allowedEgressDomains"))
        if named:
            self.note("Calico Enterprise only: GlobalNetworkSets list the DNS names the traffic "
                      "showed (allowedEgressDomains), so egress Allow rules to them also allow "
                      "what the names resolve to; guardrail Pass rules keep matching the "
                      f"observed addresses only: {', '.join(named)}")
        return files

    def policy(self, policy: Policy) -> Manifest:
        cluster = policy.namespace is None
        kind = "GlobalNetworkPolicy" if cluster else "NetworkPolicy"
        if self.staged:
            kind = "Staged" + kind
        tier = policy.tier or "default"
        name = policy.name if tier == "default" else f"{tier}.{policy.name}"
        metadata: dict[str, Any] = {"name": name}
        if not cluster:
            metadata["namespace"] = policy.namespace
        metadata["labels"] = dict(MANAGED_BY)
        metadata["annotations"] = policy_annotations(policy)
        spec: dict[str, Any] = {}
        if self.staged:
            spec["stagedAction"] = "Set"
        spec["tier"] = tier
        if policy.order is not None:
            spec["order"] = _number(policy.order)
        if cluster:
            if not policy.members:
                self.unsupported(f"{policy.name}: a cluster-wide policy without members would "
                                 "select host endpoints too")
            spec["selector"] = " || ".join(
                f"(projectcalico.org/namespace == {quote(m.namespace)} && "
                f"{selector_expr(m.pods.labels)})" if len(policy.members) > 1 else
                f"projectcalico.org/namespace == {quote(m.namespace)} && "
                f"{selector_expr(m.pods.labels)}"
                for m in policy.members)
        else:
            spec["selector"] = selector_expr(policy.target.labels)
        spec["types"] = [d.type_name for d in policy.directions]
        if policy.ingress is not None:
            spec["ingress"] = _unique([r for rule in policy.ingress
                                       for r in self.rules(rule, "source")])
        if policy.egress is not None:
            spec["egress"] = _unique([r for rule in policy.egress
                                      for r in self.rules(rule, "destination")])
        for direction in ("ingress", "egress"):
            if len(spec.get(direction, [])) > MAX_RULES:
                self.unsupported(f"{name}: {len(spec[direction])} {direction} rules, more than "
                                 f"the {MAX_RULES} Calico accepts in one policy")
        return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}

    def rules(self, rule: Rule, side: str) -> list[dict[str, Any]]:
        """One Calico rule per (protocol, peer): ``protocol`` is required with ports."""
        annotations: dict[str, str] = {}
        ev = rule.evidence
        if ev.flows:
            # A sampled source's count is an estimate: never written as an exact number.
            annotations["segmenter.io/flows"] = f"~{ev.flows}" if ev.sampled else str(ev.flows)
        sources = evidence_sources(ev)
        if sources:
            annotations["segmenter.io/sources"] = sources
            if ev.sampled:
                annotations["segmenter.io/sampled"] = "true"
        if ev.first_seen is not None:
            annotations["segmenter.io/first-seen"] = str(timestamp(ev.first_seen))
            annotations["segmenter.io/last-seen"] = str(timestamp(ev.last_seen))
        if ev.reason:
            annotations["segmenter.io/reason"] = ev.reason
        if ev.requirements:
            annotations["segmenter.io/requirements"] = ", ".join(ev.requirements)
        by_protocol: dict[str, list[Port]] = {}
        any_port: list[str] = []
        for port in rule.ports:
            if port.port is None:
                any_port.append(port.transport.value)
            else:
                by_protocol.setdefault(port.transport.value, []).append(port)
        groups: list[tuple[str | None, list[Port]]] = [(p, []) for p in sorted(set(any_port))]
        groups += [(p, ports) for p, ports in sorted(by_protocol.items()) if p not in any_port]
        if not rule.ports:
            groups = [(None, [])]
        # Calico accepts at most 50 ports per entity rule (policy-semantics.md §3.3): split.
        groups = [(protocol, ports[i:i + MAX_PORTS])
                  for protocol, ports in groups for i in range(0, max(len(ports), 1), MAX_PORTS)]
        peers: list[Peer | None] = list(rule.peers) or [None]
        out = []
        for protocol, ports in groups:
            for peer in peers:
                item: dict[str, Any] = {"action": rule.action.value}
                if annotations:
                    item["metadata"] = {"annotations": dict(annotations)}
                if protocol is not None:
                    item["protocol"] = protocol
                entity: dict[str, Any] = {}
                other: dict[str, Any] = {}
                if peer is not None:
                    entity.update(self.peer(peer))
                if ports:
                    other["ports"] = [
                        p.port if p.end_port in (None, p.port) else f"{p.port}:{p.end_port}"
                        for p in sorted(ports, key=lambda p: (p.port or 0, p.end_port or 0))
                    ]
                if side == "source":
                    if entity:
                        item["source"] = entity
                    if other:
                        item["destination"] = other
                else:
                    entity.update(other)
                    if entity:
                        item["destination"] = entity
                out.append(item)
        return out

    def peer(self, peer: Peer) -> dict[str, Any]:
        if isinstance(peer, PodPeer):
            return {
                "namespaceSelector": f"projectcalico.org/name == {quote(peer.namespace)}",
                "selector": selector_expr(peer.pods.labels),
            }
        assert isinstance(peer, CidrPeer)
        if peer.role is CidrRole.EXTERNAL and not peer.excepts:
            # One set per exact block: names come from DNS names, which several blocks can
            # share after DNS-1123 folding, and a shared set would widen every rule using it.
            domains = self._domains(peer)
            digest = hashlib.sha256(" ".join((peer.cidr, *domains)).encode()).hexdigest()[:8]
            ident = f"{peer.name[:50].rstrip('-')}-{digest}"
            name = f"segmenter-{ident}"
            if name not in self._sets:
                spec: dict[str, Any] = {"nets": [peer.cidr]}
                if domains:
                    spec["allowedEgressDomains"] = list(domains)
                self._sets[name] = {
                    "apiVersion": API_VERSION,
                    "kind": "GlobalNetworkSet",
                    "metadata": {"name": name,
                                 "labels": {**MANAGED_BY, NETWORK_SET_LABEL: ident},
                                 "annotations": {"segmenter.io/peer": peer.name}},
                    "spec": spec,
                }
            return {"namespaceSelector": "global()",
                    "selector": f"{NETWORK_SET_LABEL} == {quote(ident)}"}
        out: dict[str, Any] = {"nets": [peer.cidr]}
        if peer.excepts:
            out["notNets"] = list(peer.excepts)
        return out

    def _domains(self, peer: CidrPeer) -> tuple[str, ...]:
        """The names to list in the peer's network set (``domains`` only)."""
        if not self.domains:
            return ()
        kept = []
        for name in sorted(set(peer.dns_names)):
            if _DOMAIN.fullmatch(name) and len(name) <= 253:
                kept.append(name.rstrip("."))
            else:
                self.note(f"DNS name {name!r} is not a name Calico Enterprise accepts in "
                          f"allowedEgressDomains; {peer.cidr} stays an address block only")
        return tuple(dict.fromkeys(kept))


def _unique(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop repeats (several CIDRs of one network set render to the same rule), keeping order."""
    seen: set[str] = set()
    out = []
    for rule in rules:
        key = repr(rule)
        if key not in seen:
            seen.add(key)
            out.append(rule)
    return out


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


__all__ = ["Action", "Calico"]
