"""ClusterNetworkPolicy (``policy.networking.k8s.io/v1alpha2``) → :class:`CompiledPolicy`.

Semantics follow the reference algorithm of policy-semantics.md §2.7. The engine evaluates it
with the loop it uses for Calico tiers (§3.4), with the tiers Calico v3.32 itself uses for
ClusterNetworkPolicy: ``spec.tier: Admin`` goes to tier ``kube-admin`` (order 1,000) and
``Baseline`` to ``kube-baseline`` (order 10,000,000), both with defaultAction Pass, around the
NetworkPolicies in tier ``default`` (order 1,000,000, end-of-tier Deny for the pods they
isolate). That is §2.7 exactly:

- Admin, then the NetworkPolicy tier, then Baseline, then allow (§2.3);
- policies in ascending ``priority``, ties broken by name, as kube-network-policies and Calico
  do (upstream leaves ties undefined, §2.8 case 8); rules in written order; the first rule whose
  peers and protocols match decides for its tier: Accept and Deny are final for the direction,
  Pass ends the tier; a tier with no matching rule falls through (its defaultAction is Pass);
- the NetworkPolicy tier decides only for pods a NetworkPolicy isolates in that direction; a pod
  it does not isolate goes on to Baseline;
- subjects and ``namespaces``/``pods`` peers are pod-network pods only; ``networks`` matches any
  address in the CIDRs, pod IPs included (§2.4, §2.8 case 3); no ingress peer matches a non-pod
  source (§2.8 case 1);
- no ``protocols``: every protocol, ICMP included; with ``protocols``: TCP/UDP/SCTP by number or
  inclusive range, ``destinationNamedPort`` on the destination pod's declared container port of
  the connection's protocol; never ICMP (§2.5).

What the engine does not model, and how it stays on the safe side:

- ``nodes`` (experimental) needs the cluster's Node objects and ``domainNames`` (experimental)
  needs the implementation's name resolution (§2.4, [I]); the engine has neither. In an Accept
  rule such a peer matches nothing (the engine never credits an allow it cannot check; a warning
  says so). A Deny or Pass rule with one is refused (:class:`PolicyCompileError`, listed in
  ``rejected``) rather than evaluated as matching less than it would.
- A peer that sets no field the engine knows (a newer CRD) fails closed as upstream asks (§2.4):
  it matches nothing in an Accept rule and makes a Deny or Pass rule "deny all".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from segmenter.evaluate.core import CnpPeer, CnpProtocol, CnpRule, CompiledPolicy
from segmenter.evaluate.kubernetes import PolicyCompileError
from segmenter.evaluate.model import Action, Direction, PortRange, parse_net
from segmenter.evaluate.selector import ALL, SelectorError, from_label_selector
from segmenter.model import Transport

__all__ = [
    "ADMIN_TIER",
    "BASELINE_TIER",
    "CNP_GROUP",
    "CNP_KIND",
    "compile_cluster_network_policy",
    "evaluation_warnings",
]

CNP_GROUP = "policy.networking.k8s.io"
CNP_KIND = "ClusterNetworkPolicy"
# Calico v3.32's tiers for ClusterNetworkPolicy (policy-semantics.md §3.4), built into the engine.
ADMIN_TIER = "kube-admin"
BASELINE_TIER = "kube-baseline"
_TIERS = {"Admin": ADMIN_TIER, "Baseline": BASELINE_TIER}
_ACTIONS = {"Accept": Action.ALLOW, "Deny": Action.DENY, "Pass": Action.PASS}
_PROTOCOLS = {"tcp": Transport.TCP, "udp": Transport.UDP, "sctp": Transport.SCTP}
INGRESS_PEERS = frozenset({"namespaces", "pods"})
EGRESS_PEERS = frozenset({"namespaces", "pods", "networks", "nodes", "domainNames"})
UNMODELLED_PEERS = frozenset({"nodes", "domainNames"})


def policy_display(name: str) -> str:
    return f"{CNP_GROUP}/{CNP_KIND} {name}"


def compile_cluster_network_policy(doc: Mapping[str, Any]) -> CompiledPolicy:
    """Compile one ClusterNetworkPolicy manifest.

    Raises:
        PolicyCompileError: for a structure the API server would reject, or a Deny/Pass rule
            with a peer the engine cannot evaluate (``nodes``, ``domainNames``).

    Examples:
        >>> p = compile_cluster_network_policy({"kind": "ClusterNetworkPolicy",
        ...     "metadata": {"name": "guard"}, "spec": {"tier": "Admin", "priority": 5,
        ...     "subject": {"namespaces": {}},
        ...     "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}})
        >>> p.tier, p.order, sorted(p.types), p.ingress[0].action
        ('kube-admin', 5.0, [<Direction.INGRESS: 'ingress'>], <Action.DENY: 'Deny'>)
    """
    meta = doc.get("metadata") or {}
    name = str(meta.get("name") or "")
    spec = doc.get("spec")
    if not isinstance(spec, Mapping):
        raise PolicyCompileError("spec must be a mapping")
    tier = _TIERS.get(str(spec.get("tier")))
    if tier is None:
        raise PolicyCompileError(f"spec.tier must be Admin or Baseline, not {spec.get('tier')!r}")
    priority = spec.get("priority")
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 1000:
        raise PolicyCompileError(f"spec.priority must be an integer 0-1000, not {priority!r}")
    try:
        namespace_selector, selector = _subject(spec.get("subject"))
        rules = {direction: _rules(spec.get(key), direction, peer_key)
                 for direction, key, peer_key in ((Direction.INGRESS, "ingress", "from"),
                                                  (Direction.EGRESS, "egress", "to"))}
    except (SelectorError, ValueError, TypeError, KeyError, AttributeError) as exc:
        if isinstance(exc, PolicyCompileError):
            raise
        raise PolicyCompileError(str(exc)) from exc
    return CompiledPolicy(
        kind="clusternp",
        display=policy_display(name),
        namespace=None,
        name=name,
        tier=tier,
        order=float(priority),
        # A ClusterNetworkPolicy with no rules for a direction does not affect it (§2.2).
        types=frozenset(d for d, r in rules.items() if r),
        ingress=rules[Direction.INGRESS],
        egress=rules[Direction.EGRESS],
        selector=selector,
        namespace_selector=namespace_selector,
    )


def evaluation_warnings(doc: Mapping[str, Any]) -> list[str]:
    """What of ``doc`` the engine evaluates conservatively (peers it cannot check)."""
    spec = doc.get("spec") or {}
    out: list[str] = []
    if not isinstance(spec, Mapping):
        return out
    for key, peer_key in (("ingress", "from"), ("egress", "to")):
        rules = spec.get(key)
        for i, rule in enumerate(rules if isinstance(rules, Sequence) else ()):
            peers = rule.get(peer_key) if isinstance(rule, Mapping) else None
            for j, peer in enumerate(peers if isinstance(peers, Sequence) else ()):
                for field in sorted(UNMODELLED_PEERS & set(peer if isinstance(peer, Mapping)
                                                           else ())):
                    out.append(f"spec.{key}[{i}].{peer_key}[{j}].{field}: matches nothing here "
                               "(the engine has no Node objects nor name resolution)")
    return out


def _subject(subject: Any) -> tuple[Any, Any]:
    """(namespace selector, pod selector) of ``spec.subject``."""
    if not isinstance(subject, Mapping):
        raise PolicyCompileError("spec.subject is required")
    present = [k for k in ("namespaces", "pods") if subject.get(k) is not None]
    if len(present) != 1 or len(subject) != 1:
        raise PolicyCompileError("spec.subject must set exactly one of namespaces or pods")
    if present[0] == "namespaces":
        return from_label_selector(subject["namespaces"]), ALL
    pods = subject["pods"]
    if not isinstance(pods, Mapping) or pods.get("podSelector") is None:
        raise PolicyCompileError("spec.subject.pods.podSelector is required")
    # namespaceSelector is a value field upstream: missing is the same as {} (all namespaces).
    return (from_label_selector(pods.get("namespaceSelector") or {}),
            from_label_selector(pods["podSelector"]))


def _as_list(value: Any, what: str) -> Sequence[Any]:
    if value is None:
        return ()
    if isinstance(value, Sequence) and not isinstance(value, str):
        return value
    raise PolicyCompileError(f"{what} must be a list")


def _rules(value: Any, direction: Direction, peer_key: str) -> tuple[CnpRule, ...]:
    out = []
    known = INGRESS_PEERS if direction is Direction.INGRESS else EGRESS_PEERS
    for index, rule in enumerate(_as_list(value, direction.value)):
        where = f"{direction.value}[{index}]"
        if not isinstance(rule, Mapping):
            raise PolicyCompileError(f"{where} must be a mapping")
        action = _ACTIONS.get(str(rule.get("action")))
        if action is None:
            raise PolicyCompileError(f"{where}.action must be Accept, Deny or Pass, not "
                                     f"{rule.get('action')!r}")
        raw_peers = _as_list(rule.get(peer_key), f"{where}.{peer_key}")
        if not raw_peers:
            raise PolicyCompileError(f"{where}.{peer_key} needs at least one peer")
        peers: list[CnpPeer] = []
        unknown = False
        for j, raw in enumerate(raw_peers):
            if not isinstance(raw, Mapping):
                raise PolicyCompileError(f"{where}.{peer_key}[{j}] must be a mapping")
            fields = [k for k, v in raw.items() if v is not None]
            if len(fields) > 1:
                raise PolicyCompileError(f"{where}.{peer_key}[{j}] must set exactly one field")
            if not fields or fields[0] not in known:
                unknown = True  # fail closed (§2.4)
                continue
            field = fields[0]
            if field in UNMODELLED_PEERS and action is not Action.ALLOW:
                raise PolicyCompileError(f"{where}.{peer_key}[{j}]: a {action.value} rule with "
                                         f"a {field} peer cannot be evaluated here")
            peers.append(_peer(field, raw[field]))
        protocols = _protocols(rule.get("protocols"), where)
        rule_name = str(rule.get("name") or "")
        if unknown and action is not Action.ALLOW:
            out.append(CnpRule(direction, index, Action.DENY, rule_name, (), None, match_all=True))
        else:
            out.append(CnpRule(direction, index, action, rule_name, tuple(peers), protocols))
    return tuple(out)


def _peer(field: str, value: Any) -> CnpPeer:
    if field == "namespaces":
        return CnpPeer("namespaces", namespace_selector=from_label_selector(value))
    if field == "pods":
        if not isinstance(value, Mapping) or value.get("podSelector") is None:
            raise PolicyCompileError("a pods peer needs podSelector")
        return CnpPeer("pods", namespace_selector=from_label_selector(
            value.get("namespaceSelector") or {}),
            pod_selector=from_label_selector(value["podSelector"]))
    if field == "networks":
        return CnpPeer("networks", networks=tuple(parse_net(n) for n in
                                                  _as_list(value, "networks")))
    return CnpPeer(field)  # nodes, domainNames: match nothing (Accept rules only)


def _protocols(value: Any, where: str) -> tuple[CnpProtocol, ...] | None:
    if value is None:
        return None
    out = []
    for j, entry in enumerate(_as_list(value, f"{where}.protocols")):
        if not isinstance(entry, Mapping) or len(entry) != 1:
            raise PolicyCompileError(f"{where}.protocols[{j}] must set exactly one field")
        (key, body), = entry.items()
        if key == "destinationNamedPort":
            out.append(CnpProtocol(None, PortRange(name=str(body))))
            continue
        transport = _PROTOCOLS.get(key)
        if transport is None:
            raise PolicyCompileError(f"{where}.protocols[{j}]: unknown protocol {key!r}")
        port = (body or {}).get("destinationPort") if isinstance(body, Mapping) else None
        if not isinstance(port, Mapping):
            raise PolicyCompileError(f"{where}.protocols[{j}].{key}.destinationPort is required")
        if port.get("number") is not None:
            number = int(port["number"])
            out.append(CnpProtocol(transport, PortRange(number, number)))
        elif isinstance(port.get("range"), Mapping):
            out.append(CnpProtocol(transport, PortRange(int(port["range"]["start"]),
                                                        int(port["range"]["end"]))))
        else:
            raise PolicyCompileError(f"{where}.protocols[{j}].{key}.destinationPort needs "
                                     "number or range")
    if not out:
        raise PolicyCompileError(f"{where}.protocols must not be empty")
    return tuple(out)
