"""Calico ``projectcalico.org/v3`` objects → compiled policies, tiers and network sets.

Semantics follow policy-semantics.md §3: ``types`` defaulting (§3.3, different from Kubernetes),
rule criteria ANDed, selector scoping as Calico's ``rules.go`` does it (a namespaced policy's rule
selector, notSelector or serviceAccounts only see its own namespace unless a namespaceSelector
says otherwise; in a GlobalNetworkPolicy they see every namespace and global network sets).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from segmenter.evaluate.core import (
    CALICO_NAMESPACE,
    CalicoRule,
    CompiledPolicy,
    Entity,
    FqdnSelector,
    NetSet,
    Tier,
)
from segmenter.evaluate.kubernetes import PolicyCompileError
from segmenter.evaluate.kubernetes import fill_spec_defaults as k8s_spec_defaults
from segmenter.evaluate.model import Action, Direction, PortRange, parse_net
from segmenter.evaluate.selector import Node, parse_selector
from segmenter.model import Transport

__all__ = [
    "CALICO_POLICY_KINDS",
    "STAGED_KINDS",
    "calico_domain",
    "calico_policy_types",
    "compile_calico_policy",
    "compile_netset",
    "compile_tier",
    "fill_defaults",
    "fill_spec_defaults",
    "parse_calico_port",
    "parse_protocol",
]

CALICO_POLICY_KINDS = ("NetworkPolicy", "GlobalNetworkPolicy")
STAGED_KINDS = (
    "StagedNetworkPolicy",
    "StagedGlobalNetworkPolicy",
    "StagedKubernetesNetworkPolicy",
)

_PROTOCOL_NAMES = {
    "tcp": Transport.TCP,
    "udp": Transport.UDP,
    "sctp": Transport.SCTP,
    "icmp": Transport.ICMP,
    "icmpv6": Transport.ICMPV6,
}
_PROTOCOL_NUMBERS = {6: Transport.TCP, 17: Transport.UDP, 132: Transport.SCTP, 1: Transport.ICMP,
                     58: Transport.ICMPV6}
# Calico names that Transport does not model: a rule naming them matches none of our flows.
KNOWN_OTHER_PROTOCOLS = frozenset({"udplite"})


def parse_protocol(value: Any) -> frozenset[Transport]:
    """A Calico ``protocol`` (name in any case, or number 1-255) as the transports it covers.

    Raises:
        PolicyCompileError: for a value Calico rejects.
    """
    if isinstance(value, bool):
        raise PolicyCompileError(f"invalid protocol {value!r}")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        number = int(value)
        if not 1 <= number <= 255:
            raise PolicyCompileError(f"protocol number {number} is outside 1-255")
        known = _PROTOCOL_NUMBERS.get(number)
        return frozenset({known}) if known else frozenset()
    if isinstance(value, str):
        name = value.strip().lower()
        if name in _PROTOCOL_NAMES:
            return frozenset({_PROTOCOL_NAMES[name]})
        if name in KNOWN_OTHER_PROTOCOLS:
            return frozenset()
    raise PolicyCompileError(f"invalid protocol {value!r}")


def parse_calico_port(value: Any) -> PortRange:
    """One Calico port: an int, ``"a:b"`` range, a numeric string, or a named port.

    Raises:
        PolicyCompileError: for a malformed port or range.

    Examples:
        >>> str(parse_calico_port("8000:8080")), str(parse_calico_port(443)), \
str(parse_calico_port("https"))
        ('8000-8080', '443', 'https')
    """
    if isinstance(value, bool):
        raise PolicyCompileError(f"invalid port {value!r}")
    if isinstance(value, int):
        if not 0 <= value <= 65535:
            raise PolicyCompileError(f"port {value} is outside 0-65535")
        return PortRange(value, value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return parse_calico_port(int(text))
        if ":" in text:
            first, _, last = text.partition(":")
            if not (first.isdigit() and last.isdigit()):
                raise PolicyCompileError(f"invalid port range {value!r}")
            lo, hi = int(first), int(last)
            if not 0 <= lo <= hi <= 65535:
                raise PolicyCompileError(f"invalid port range {value!r}")
            return PortRange(lo, hi)
        if text:
            return PortRange(name=text)
    raise PolicyCompileError(f"invalid port {value!r}")


def calico_policy_types(spec: Mapping[str, Any]) -> frozenset[Direction]:
    """``types`` after Calico's defaulting (§3.3).

    Missing: ``[Egress]`` when there are only egress rules, both when both, else ``[Ingress]``.

    Examples:
        >>> sorted(calico_policy_types({"egress": [{"action": "Allow"}]}))
        [<Direction.EGRESS: 'egress'>]
    """
    types = spec.get("types")
    if types:
        return frozenset(Direction(str(t).lower()) for t in types
                         if str(t) in ("Ingress", "Egress"))
    ingress, egress = bool(spec.get("ingress")), bool(spec.get("egress"))
    if egress and not ingress:
        return frozenset({Direction.EGRESS})
    if egress and ingress:
        return frozenset({Direction.INGRESS, Direction.EGRESS})
    return frozenset({Direction.INGRESS})


_GNP_FLAGS = ("doNotTrack", "preDNAT", "applyOnForward")


def port_number(value: Any) -> Any:
    """A numeric port string as a number (Calico accepts both); anything else as it is."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


# Calico's API server labels every policy with its tier (for kubectl label selection).
TIER_LABEL = "projectcalico.org/tier"
_POLICY_KINDS = frozenset({*CALICO_POLICY_KINDS, "StagedNetworkPolicy",
                           "StagedGlobalNetworkPolicy"})


def fill_defaults(doc: dict[str, Any]) -> None:
    """Make Calico's defaults explicit in an object, in place, and drop what Calico's API server
    adds, so that two objects that mean the same compare equal (``segmenter diff``): the tier
    label; the ``default.`` prefix older API servers add to the names of default-tier policies;
    see :func:`fill_spec_defaults` for the spec."""
    kind = str(doc.get("kind") or "")
    meta = doc.get("metadata")
    spec = doc.get("spec")
    if isinstance(meta, dict) and isinstance(meta.get("labels"), dict):
        meta["labels"] = {k: v for k, v in meta["labels"].items() if k != TIER_LABEL}
    if not isinstance(spec, dict):
        return
    fill_spec_defaults(kind, spec)
    if isinstance(meta, dict) and kind in _POLICY_KINDS and spec.get("tier") == "default":
        name = str(meta.get("name") or "")
        if name.startswith("default."):
            meta["name"] = name[len("default."):]


def fill_spec_defaults(kind: str, spec: dict[str, Any]) -> None:
    """A ``spec`` with Calico's defaults made explicit, in place: a policy's ``tier`` and
    ``types`` (§3.3, sorted), a staged policy's ``stagedAction``, a Tier's ``defaultAction``;
    false GlobalNetworkPolicy flags dropped; numeric port strings as numbers. A
    StagedKubernetesNetworkPolicy has the Kubernetes defaults."""
    if kind == "Tier":
        spec.setdefault("defaultAction", "Deny")
        return
    if kind == "StagedKubernetesNetworkPolicy":
        spec.setdefault("stagedAction", "Set")
        k8s_spec_defaults(spec)
        return
    if kind not in _POLICY_KINDS:
        return
    if kind.startswith("Staged"):
        spec.setdefault("stagedAction", "Set")
    spec.setdefault("tier", "default")
    if not spec.get("types"):
        has_in, has_out = bool(spec.get("ingress")), bool(spec.get("egress"))
        spec["types"] = (["Ingress", "Egress"] if has_in and has_out
                         else ["Egress"] if has_out else ["Ingress"])
    if isinstance(spec.get("types"), list):
        spec["types"] = sorted(str(t) for t in spec["types"])
    for flag in _GNP_FLAGS:
        if spec.get(flag) is False:
            del spec[flag]
    for direction in ("ingress", "egress"):
        for rule in spec.get(direction) or []:
            if not isinstance(rule, dict):
                continue
            for side in ("source", "destination"):
                entity = rule.get(side)
                if isinstance(entity, dict):
                    for key in ("ports", "notPorts"):
                        if isinstance(entity.get(key), list):
                            entity[key] = [port_number(p) for p in entity[key]]


# A Calico Enterprise domain name: labels of letters, digits, '-' and '_', at most one of them a
# lone '*' (DNS policy docs: "*" matches one or more labels at its position; several wildcards,
# partial-label wildcards and regular expressions are not supported).
_DOMAIN_LABEL = re.compile(r"[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?")


def calico_domain(text: Any) -> FqdnSelector:
    """A Calico Enterprise domain name (``domains``, ``allowedEgressDomains``) as a matcher.

    Raises:
        PolicyCompileError: for a name Calico Enterprise does not support.

    >>> d = calico_domain("*.example.com")
    >>> d.match("api.eu.example.com"), d.match("example.com")
    (True, False)
    """
    if not isinstance(text, str) or not text.strip():
        raise PolicyCompileError(f"invalid domain name {text!r}")
    labels = text.strip().lower().rstrip(".").split(".")
    if labels.count("*") > 1 or not all(x == "*" or _DOMAIN_LABEL.fullmatch(x) for x in labels):
        raise PolicyCompileError(f"invalid domain name {text!r}: labels of letters, digits, "
                                 "'-' and '_', with at most one whole-label '*'")
    pattern = r"\.".join(r"[^.]+(?:\.[^.]+)*" if x == "*" else re.escape(x) for x in labels)
    return FqdnSelector(text.strip(), re.compile(pattern))


def _opt_selector(value: Any) -> Node | None:
    if value is None or value == "":
        return None
    return parse_selector(str(value))


def compile_entity(entity: Any, policy_ns: str | None) -> Entity:
    """Resolve an EntityRule's criteria and selector scope (Calico's ``getEndpointSelector``)."""
    if entity is None:
        return Entity()
    if not isinstance(entity, Mapping):
        raise PolicyCompileError("source/destination must be a mapping")
    selector = _opt_selector(entity.get("selector"))
    ns_selector = _opt_selector(entity.get("namespaceSelector"))
    not_selector = _opt_selector(entity.get("notSelector"))
    sa = entity.get("serviceAccounts") or {}
    sa_names = frozenset(str(n) for n in sa.get("names") or ()) or None
    sa_selector = _opt_selector(sa.get("selector"))
    positive = bool(
        selector is not None
        or sa_names is not None
        or sa_selector is not None
        or ns_selector is not None
        or (policy_ns is not None and not_selector is not None)
    )
    nets = entity.get("nets")
    ports = entity.get("ports")
    domains = entity.get("domains")
    return Entity(
        domains=None if domains is None else tuple(calico_domain(d) for d in domains),
        nets=tuple(parse_net(n) for n in nets) if nets else None,
        not_nets=tuple(parse_net(n) for n in entity.get("notNets") or ()),
        positive=positive,
        scope_ns=policy_ns if ns_selector is None else None,
        namespace_selector=ns_selector,
        selector=selector,
        sa_names=sa_names,
        sa_selector=sa_selector,
        not_selector=not_selector,
        ports=tuple(parse_calico_port(p) for p in ports) if ports else None,
        not_ports=tuple(parse_calico_port(p) for p in entity.get("notPorts") or ()),
        services=bool(entity.get("services")),
    )


def _icmp(value: Any) -> tuple[int | None, int | None]:
    if not value:
        return None, None
    t, c = value.get("type"), value.get("code")
    return (None if t is None else int(t)), (None if c is None else int(c))


def compile_rule(rule: Any, direction: Direction, index: int, policy_ns: str | None
                 ) -> CalicoRule:
    if not isinstance(rule, Mapping):
        raise PolicyCompileError("a rule must be a mapping")
    action_text = str(rule.get("action") or "")
    try:
        action = Action(action_text[:1].upper() + action_text[1:].lower())
    except ValueError:
        raise PolicyCompileError(f"unknown action {action_text!r}") from None
    protocol = rule.get("protocol")
    not_protocol = rule.get("notProtocol")
    icmp_type, icmp_code = _icmp(rule.get("icmp"))
    not_icmp_type, not_icmp_code = _icmp(rule.get("notICMP"))
    ip_version = rule.get("ipVersion")
    return CalicoRule(
        direction=direction,
        index=index,
        action=action,
        protocol=None if protocol is None else parse_protocol(protocol),
        not_protocol=None if not_protocol is None else parse_protocol(not_protocol),
        ip_version=None if ip_version is None else int(ip_version),
        icmp_type=icmp_type,
        icmp_code=icmp_code,
        not_icmp_type=not_icmp_type,
        not_icmp_code=not_icmp_code,
        source=compile_entity(rule.get("source"), policy_ns),
        destination=compile_entity(rule.get("destination"), policy_ns),
    )


def compile_calico_policy(doc: Mapping[str, Any]) -> CompiledPolicy:
    """Compile a Calico NetworkPolicy or GlobalNetworkPolicy manifest.

    Raises:
        PolicyCompileError: for anything Calico's validation would reject.
    """
    kind = str(doc.get("kind"))
    meta = doc.get("metadata") or {}
    name = str(meta.get("name") or "")
    spec = doc.get("spec") or {}
    namespaced = kind == "NetworkPolicy"
    namespace = str(meta.get("namespace") or "default") if namespaced else None
    try:
        rules: dict[Direction, tuple[CalicoRule, ...]] = {}
        for direction in Direction:
            raw = spec.get(str(direction)) or ()
            if not isinstance(raw, Sequence) or isinstance(raw, str):
                raise PolicyCompileError(f"spec.{direction} must be a list")
            rules[direction] = tuple(
                compile_rule(r, direction, i, namespace) for i, r in enumerate(raw)
            )
        order = spec.get("order")
        compiled = CompiledPolicy(
            kind="np" if namespaced else "gnp",
            display=f"NetworkPolicy {namespace}/{name}" if namespaced
            else f"GlobalNetworkPolicy {name}",
            namespace=namespace,
            name=name,
            tier=str(spec.get("tier") or "default"),
            order=None if order is None else float(order),
            types=calico_policy_types(spec),
            ingress=rules[Direction.INGRESS],
            egress=rules[Direction.EGRESS],
            selector=parse_selector(spec.get("selector") or ""),
            namespace_selector=None if namespaced
            else _opt_selector(spec.get("namespaceSelector")),
            sa_selector=_opt_selector(spec.get("serviceAccountSelector")),
        )
    except (ValueError, TypeError, AttributeError) as exc:
        if isinstance(exc, PolicyCompileError):
            raise
        raise PolicyCompileError(str(exc)) from exc
    return compiled


def compile_tier(doc: Mapping[str, Any]) -> Tier:
    """A ``Tier``: ``order`` (missing: last) and ``defaultAction`` (``Deny`` unless ``Pass``)."""
    meta = doc.get("metadata") or {}
    spec = doc.get("spec") or {}
    order = spec.get("order")
    default = str(spec.get("defaultAction") or "Deny")
    try:
        return Tier(
            name=str(meta.get("name") or ""),
            order=None if order is None else float(order),
            default_action=Action.PASS if default.lower() == "pass" else Action.DENY,
        )
    except (TypeError, ValueError) as exc:
        raise PolicyCompileError(str(exc)) from exc


def compile_netset(doc: Mapping[str, Any]) -> NetSet:
    """A NetworkSet or GlobalNetworkSet. Namespaced sets carry ``projectcalico.org/namespace``."""
    kind = str(doc.get("kind"))
    meta = doc.get("metadata") or {}
    namespace = str(meta.get("namespace") or "default") if kind == "NetworkSet" else None
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    if namespace is not None:
        labels[CALICO_NAMESPACE] = namespace
    spec = doc.get("spec") or {}
    try:
        nets = tuple(parse_net(n) for n in spec.get("nets") or ())
    except ValueError as exc:
        raise PolicyCompileError(str(exc)) from exc
    domains = tuple(calico_domain(d) for d in spec.get("allowedEgressDomains") or ())
    return NetSet(kind, str(meta.get("name") or ""), namespace, labels, nets, domains)
