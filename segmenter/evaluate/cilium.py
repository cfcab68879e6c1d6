"""Cilium ``cilium.io/v2`` policy, and Kubernetes NetworkPolicy as Cilium enforces it →
compiled policies in the engine's tiers.

Semantics follow policy-semantics.md §4 (reference algorithm §4.9). Cilium has no order: a
direction of an endpoint is enforced once any selecting rule has an entry for it; a matching
deny drops the connection whatever allows it; otherwise, with default deny on, some allow must
match, and with default deny off for every enforcing rule, everything is allowed. The engine's
tier loop evaluates that with three tiers:

1. ``cilium-deny`` (order 0, end-of-tier Pass): every ``ingressDeny``/``egressDeny`` entry. A
   match denies; no match passes on (deny precedence).
2. ``cilium-no-default-deny`` (order 999999, Pass): the allows of rules whose
   ``enableDefaultDeny`` is false for the direction. They allow, but do not isolate.
3. ``default`` (the engine's last tier, end-of-tier Deny): the allows of rules with default deny
   for the direction (the default for a direction with entries, §4.4), and every Kubernetes
   NetworkPolicy (always default deny, §4.8). One selecting rule isolates; the union decides.

An endpoint that only Pass tiers select ends allowed: the allow-all Cilium synthesizes.

What is modelled: Cilium's agent defaults (``enable-policy=default``, ``allow-localhost``: a pod's
own node always reaches it, ``policy-cidr-match-mode`` empty: CIDRs never match pods or nodes,
one cluster), identity labels after the default label filter (§4.2), namespace pinning of CNP
selectors (§4.3), entities (§4.5), ``toFQDNs`` matched against the DNS names an endpoint is
known by, for names the source's DNS lookups expose to the DNS proxy (``rules.dns``, tricky case
8), ports, ranges and named ports (egress named ports resolve on the destination pod, a
simplification of Cilium's cluster-wide map, §4.6), ICMP types. Not evaluated (listed in the
engine's ``ignored``): host policies (``nodeSelector``), ``toServices``, ``toGroups``,
``fromNodes``/``toNodes``, CIDR groups.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from segmenter.evaluate.core import (
    CILIUM_CLUSTER,
    CILIUM_NAMESPACE,
    CILIUM_NAMESPACE_LABELS,
    CILIUM_SERVICE_ACCOUNT,
    CiliumPort,
    CiliumRule,
    CompiledPolicy,
    FqdnSelector,
    Tier,
)
from segmenter.evaluate.kubernetes import PolicyCompileError
from segmenter.evaluate.model import Action, Direction, IPNetwork, PortRange, parse_net
from segmenter.evaluate.selector import (
    ALL,
    And,
    Eq,
    Has,
    In,
    Node,
    Not,
    NotIn,
)
from segmenter.model import Transport

__all__ = [
    "CILIUM_GROUP",
    "CILIUM_KINDS",
    "CILIUM_TIERS",
    "NotEvaluated",
    "cilium_labels",
    "compile_cilium_policy",
    "compile_knp_for_cilium",
    "dns_visibility",
    "identity_label_kept",
]

CILIUM_GROUP = "cilium.io"
CILIUM_KINDS = ("CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy")
DENY_TIER = "cilium-deny"
OPEN_TIER = "cilium-no-default-deny"
ALLOW_TIER = "default"
CILIUM_TIERS = (Tier(DENY_TIER, 0.0, Action.PASS), Tier(OPEN_TIER, 999_999.0, Action.PASS))
# The cluster name Cilium labels pods with when none is configured.
DEFAULT_CLUSTER = "default"
# The CRD's entity enum (pkg/policy/api/entity.go; world-ipv4/-ipv6 exist in code but the API
# server rejects them, tricky case 11).
ENTITIES = frozenset({"all", "world", "cluster", "host", "init", "ingress", "unmanaged",
                      "remote-node", "health", "none", "kube-apiserver"})
MAX_PORTS = 40  # rule_validation.go maxPorts
MAX_ICMP_FIELDS = 40

_ALL_TRANSPORTS = frozenset({Transport.TCP, Transport.UDP, Transport.SCTP})
_PROTOCOLS = {"TCP": frozenset({Transport.TCP}), "UDP": frozenset({Transport.UDP}),
              "SCTP": frozenset({Transport.SCTP}), "ANY": _ALL_TRANSPORTS, "": _ALL_TRANSPORTS,
              # Newer CRDs accept these; no flow of ours uses them.
              "VRRP": frozenset(), "IGMP": frozenset()}
_ICMP_TYPES = {
    "IPv4": {"EchoReply": 0, "DestinationUnreachable": 3, "Redirect": 5, "Echo": 8,
             "EchoRequest": 8, "RouterAdvertisement": 9, "RouterSelection": 10,
             "TimeExceeded": 11, "ParameterProblem": 12, "Timestamp": 13, "TimestampReply": 14,
             "Photuris": 40, "ExtendedEchoRequest": 42, "ExtendedEchoReply": 43},
    "IPv6": {"DestinationUnreachable": 1, "PacketTooBig": 2, "TimeExceeded": 3,
             "ParameterProblem": 4, "EchoRequest": 128, "EchoReply": 129,
             "MulticastListenerQuery": 130, "MulticastListenerReport": 131,
             "MulticastListenerDone": 132, "RouterSolicitation": 133, "RouterAdvertisement": 134,
             "NeighborSolicitation": 135, "NeighborAdvertisement": 136, "RedirectMessage": 137},
}
_IANA_SVC_NAME = re.compile(r"^(?=.*[a-zA-Z])[a-zA-Z0-9]([a-zA-Z0-9]|-(?!-))*(?<!-)$")
_FQDN_TEXT = re.compile(r"^([-a-zA-Z0-9_*]+[.]?)+$")

_L3 = {
    Direction.INGRESS: ("fromEndpoints", "fromCIDR", "fromCIDRSet", "fromEntities", "fromNodes",
                        "fromGroups", "fromRequires"),
    Direction.EGRESS: ("toEndpoints", "toCIDR", "toCIDRSet", "toEntities", "toNodes", "toGroups",
                       "toRequires", "toServices", "toFQDNs"),
}
_DENY_L3 = {
    Direction.INGRESS: ("fromEndpoints", "fromCIDR", "fromCIDRSet", "fromEntities", "fromNodes",
                        "fromGroups", "fromRequires"),
    Direction.EGRESS: ("toEndpoints", "toCIDR", "toCIDRSet", "toEntities", "toNodes", "toGroups",
                       "toRequires", "toServices"),
}
_NOT_EVALUATED = {"fromNodes": "needs node labels (enable-node-selector-labels)",
                  "toNodes": "needs node labels (enable-node-selector-labels)",
                  "fromGroups": "cloud provider groups", "toGroups": "cloud provider groups",
                  "toServices": "needs the Services and EndpointSlices"}
_REMOVED = ("fromRequires", "toRequires")  # deprecated in 1.17, removed in 1.19 (§4.5)
_SPEC_KEYS = {"description", "endpointSelector", "nodeSelector", "ingress", "ingressDeny",
              "egress", "egressDeny", "enableDefaultDeny", "labels", "log"}
_RULE_EXTRA = {"toPorts", "icmps", "authentication"}


class NotEvaluated(PolicyCompileError):
    """A valid Cilium construct the engine does not model (the manifest is left out, listed)."""


# ------------------------------------------------------------------------------------------------
# Identities


def identity_label_kept(key: str) -> bool:
    """Whether Cilium's default label filter keeps a Kubernetes label key in identities.

    From ``pkg/labelsfilter/filter.go`` (``defaultLabelPrefixCfg``): prefix expressions matched
    at the start of the key; a key is kept unless an ignore prefix matches, or when the longest
    include match is longer than the shortest ignore match (policy-semantics.md §4.2).

    >>> [identity_label_kept(k) for k in ("app", "pod-template-hash", "kubernetes.io/os",
    ...                                    "app.kubernetes.io/name", "topology.kubernetes.io/zone")]
    [True, False, False, True, True]
    """
    include = 0
    for prefix in _KEEP:
        hit = prefix.match(key)
        if hit:
            include = max(include, hit.end())
    ignore = 0
    for prefix in _DROP:
        hit = prefix.match(key)
        if hit and (ignore == 0 or hit.end() < ignore):
            ignore = hit.end()
    return ignore == 0 or include > ignore


_KEEP = tuple(re.compile(re.escape(p)) for p in (
    "io.kubernetes.pod.namespace", "io.cilium.k8s.namespace.labels", "app.kubernetes.io",
    "io.cilium.k8s.policy.cluster"))
_DROP = tuple(re.compile(p) for p in (
    r"io\.kubernetes", r"kubernetes\.io", re.escape("statefulset.kubernetes.io/pod-name"),
    re.escape("apps.kubernetes.io/pod-index"),
    re.escape("batch.kubernetes.io/job-completion-index"), r".*beta\.kubernetes\.io", r"k8s\.io",
    r"pod-template-generation", r"pod-template-hash", r"controller-revision-hash",
    r"annotation.*", r"etcd_node"))


def cilium_labels(pod_labels: Mapping[str, str], namespace: str, ns_labels: Mapping[str, str],
                  service_account: str) -> dict[str, str]:
    """A pod's identity labels as selectors see them: ``k8s:<key>`` (and an ``any:<key>`` copy,
    what a selector key without a source matches) for the pod labels the filter keeps, the
    namespace, its labels, the service account and the cluster (§4.2).

    >>> sorted(cilium_labels({"app": "db", "pod-template-hash": "x"}, "shop", {}, "default"))[:3]
    ['any:app', 'any:io.cilium.k8s.policy.cluster', 'any:io.cilium.k8s.policy.serviceaccount']
    """
    out: dict[str, str] = {}

    def put(key: str, value: str) -> None:
        out[f"k8s:{key}"] = value
        out[f"any:{key}"] = value

    for key, value in pod_labels.items():
        if identity_label_kept(key):
            put(key, value)
    for key, value in ns_labels.items():
        put(CILIUM_NAMESPACE_LABELS + key, value)
    put(CILIUM_NAMESPACE.split(":", 1)[1], namespace)
    put(CILIUM_SERVICE_ACCOUNT, service_account)
    put(CILIUM_CLUSTER, DEFAULT_CLUSTER)
    return out


def dns_visibility(policies: Iterable[CompiledPolicy]) -> tuple[FqdnSelector, ...]:
    """The L7 DNS rules of the egress allows of ``policies``: the names whose lookups the DNS
    proxy sees, and so the names whose answers ``toFQDNs`` can match (§4.5)."""
    out: list[FqdnSelector] = []
    for policy in policies:
        for rule in policy.egress:
            if isinstance(rule, CiliumRule) and rule.action is Action.ALLOW:
                out.extend(f for f in rule.dns if f not in out)
    return tuple(out)


# ------------------------------------------------------------------------------------------------
# Selectors


def _label_key(key: str) -> str:
    """``source:key`` for a selector key; no source means ``any`` (§4.2)."""
    source, sep, _ = key.partition(":")
    return key if sep and source else f"any:{key}"


def _bare(key: str) -> str:
    return _label_key(key).split(":", 1)[1]


def _selector(sel: Any, path: str) -> Node:
    """An EndpointSelector (a LabelSelector over identity labels) as a selector node."""
    if sel is None:
        return ALL
    if not isinstance(sel, Mapping):
        raise PolicyCompileError(f"{path}: a selector must be a mapping")
    unknown = set(sel) - {"matchLabels", "matchExpressions"}
    if unknown:
        raise PolicyCompileError(f"{path}: unknown field {sorted(unknown)[0]!r}")
    parts: list[Node] = []
    labels = sel.get("matchLabels") or {}
    if not isinstance(labels, Mapping):
        raise PolicyCompileError(f"{path}.matchLabels: must be a mapping")
    for key, value in sorted(labels.items()):
        parts.append(Eq(_label_key(str(key)), "" if value is None else str(value)))
    exprs = sel.get("matchExpressions") or []
    if not isinstance(exprs, Sequence) or isinstance(exprs, str):
        raise PolicyCompileError(f"{path}.matchExpressions: must be a list")
    for i, expr in enumerate(exprs):
        where = f"{path}.matchExpressions[{i}]"
        if not isinstance(expr, Mapping) or "key" not in expr or "operator" not in expr:
            raise PolicyCompileError(f"{where}: needs key and operator")
        key = _label_key(str(expr["key"]))
        op = expr["operator"]
        values = expr.get("values") or []
        if op in ("In", "NotIn") and not values:
            raise PolicyCompileError(f"{where}: {op} needs values")
        if op in ("Exists", "DoesNotExist") and values:
            raise PolicyCompileError(f"{where}: {op} takes no values")
        found = frozenset(str(v) for v in values)
        if op == "In":
            parts.append(In(key, found))
        elif op == "NotIn":
            parts.append(NotIn(key, found))
        elif op == "Exists":
            parts.append(Has(key))
        elif op == "DoesNotExist":
            parts.append(Not(Has(key)))
        else:
            raise PolicyCompileError(f"{where}: unknown operator {op!r}")
    if not parts:
        return ALL
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _selector_keys(sel: Any) -> list[str]:
    if not isinstance(sel, Mapping):
        return []
    keys = [str(k) for k in (sel.get("matchLabels") or {})]
    keys += [str(e.get("key")) for e in sel.get("matchExpressions") or []
             if isinstance(e, Mapping)]
    return keys


def _peer_selector(sel: Any, path: str, namespace: str | None) -> Node:
    """A fromEndpoints/toEndpoints selector after Cilium's namespace scoping (§4.3, UTIL): a
    selector naming neither the namespace, a namespace label nor a reserved label is pinned to
    the CNP's namespace (``namespace``), or to "any namespace" in a CCNP (``None``)."""
    node = _selector(sel, path)
    keys = _selector_keys(sel)
    if any(_bare(k) == "io.kubernetes.pod.namespace" or _bare(k).startswith(
            CILIUM_NAMESPACE_LABELS) or _label_key(k).startswith("reserved:") for k in keys):
        return node
    pin: Node = Has(CILIUM_NAMESPACE) if namespace is None else Eq(CILIUM_NAMESPACE, namespace)
    return pin if node is ALL else And((node, pin))


def _subject_selector(sel: Any, path: str, namespace: str | None) -> Node:
    """``endpointSelector``: in a CNP any namespace term is replaced by the CNP's namespace
    (§4.1, ParseToCiliumRule); a CCNP's is used as written."""
    if namespace is None:
        return _selector(sel, path)
    if isinstance(sel, Mapping):
        sel = {
            "matchLabels": {k: v for k, v in (sel.get("matchLabels") or {}).items()
                            if _bare(str(k)) != "io.kubernetes.pod.namespace"},
            "matchExpressions": [e for e in sel.get("matchExpressions") or []
                                 if not (isinstance(e, Mapping) and _bare(str(e.get("key")))
                                         == "io.kubernetes.pod.namespace")],
        }
    node = _selector(sel, path)
    pin = Eq(CILIUM_NAMESPACE, namespace)
    return pin if node is ALL else And((node, pin))


def fqdn_selector(entry: Any, path: str) -> FqdnSelector:
    """A ``matchName`` (exact) or ``matchPattern`` (``*`` within one label; ``*`` alone every
    name; a ``**.`` prefix one or more labels, Cilium ≥ 1.19)."""
    if not isinstance(entry, Mapping) or len(entry) != 1 or not (
            {"matchName", "matchPattern"} & set(entry)):
        raise PolicyCompileError(f"{path}: needs exactly one of matchName, matchPattern")
    text = str(next(iter(entry.values()))).lower().rstrip(".")
    if not _FQDN_TEXT.fullmatch(text or "."):
        raise PolicyCompileError(f"{path}: invalid DNS name or pattern {text!r}")
    if "matchName" in entry:
        if "*" in text:
            raise PolicyCompileError(f"{path}: matchName cannot hold '*'")
        return FqdnSelector(text, re.compile(re.escape(text)))
    if text == "*":
        return FqdnSelector(text, re.compile(r".*"))
    body = re.escape(text)
    multi = ""
    if body.startswith(r"\*\*\."):
        body, multi = body[len(r"\*\*\."):], r"(?:[-a-z0-9_]+\.)+"
    return FqdnSelector(text, re.compile(multi + body.replace(r"\*", r"[-a-z0-9_]*")))


# ------------------------------------------------------------------------------------------------
# Rules


def _list(value: Any, path: str) -> Sequence[Any]:
    if value is None:
        return ()
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return value
    raise PolicyCompileError(f"{path}: must be a list")


def _cidr(value: Any, path: str) -> IPNetwork:
    try:
        return parse_net(value)
    except ValueError:
        raise PolicyCompileError(f"{path}: invalid CIDR {value!r}") from None


def _cidr_set(items: Sequence[Any], path: str) -> tuple[tuple[IPNetwork, tuple[IPNetwork, ...]],
                                                       ...]:
    out = []
    for i, item in enumerate(items):
        where = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            raise PolicyCompileError(f"{where}: must be a mapping")
        if "cidrGroupRef" in item or "cidrGroupSelector" in item:
            raise NotEvaluated(f"{where}: CiliumCIDRGroup references are not evaluated")
        if "cidr" not in item:
            raise PolicyCompileError(f"{where}: needs cidr")
        cidr = _cidr(item["cidr"], f"{where}.cidr")
        excepts = []
        for j, raw in enumerate(_list(item.get("except"), f"{where}.except")):
            net = _cidr(raw, f"{where}.except[{j}]")
            # rule_validation.go: every except must lie inside its cidr (same family).
            if net.version != cidr.version or net.network_address not in cidr:
                raise PolicyCompileError(f"{where}.except[{j}]: {raw} is not inside {cidr}")
            excepts.append(net)
        out.append((cidr, tuple(excepts)))
    return tuple(out)


def _port(entry: Any, path: str, *, dns: bool) -> CiliumPort:
    if not isinstance(entry, Mapping):
        raise PolicyCompileError(f"{path}: must be a mapping")
    unknown = set(entry) - {"port", "endPort", "protocol"}
    if unknown:
        raise PolicyCompileError(f"{path}: unknown field {sorted(unknown)[0]!r}")
    raw = entry.get("port")
    if not isinstance(raw, str) or not raw:
        raise PolicyCompileError(f"{path}.port: required, a string (a number or a port name)")
    protocol = str(entry.get("protocol") or "").upper()
    if protocol not in _PROTOCOLS:
        raise PolicyCompileError(f"{path}.protocol: unknown protocol {entry.get('protocol')!r}")
    protocols = _PROTOCOLS[protocol]
    end = entry.get("endPort")
    if end is not None and (not isinstance(end, int) or isinstance(end, bool)
                            or not 0 <= end <= 65535):
        raise PolicyCompileError(f"{path}.endPort: must be a port number")
    if raw.isdigit():
        number = int(raw)
        if number > 65535:
            raise PolicyCompileError(f"{path}.port: {raw} is outside 0-65535")
        if number == 0:
            if dns:
                raise PolicyCompileError(f"{path}: L7 rules cannot be used when a port is 0")
            return CiliumPort(protocols, None)
        last = number if end is None or end < number else end
        if dns and last != number:
            raise PolicyCompileError(f"{path}: DNS rules do not support port ranges")
        return CiliumPort(protocols, PortRange(number, last))
    if not _IANA_SVC_NAME.fullmatch(raw):
        raise PolicyCompileError(f"{path}.port: {raw!r} is neither a number nor a port name")
    return CiliumPort(protocols, PortRange(name=raw.lower()))


def _to_ports(value: Any, path: str, *, deny: bool, direction: Direction
              ) -> tuple[tuple[CiliumPort, ...], tuple[FqdnSelector, ...]]:
    ports: list[CiliumPort] = []
    dns: list[FqdnSelector] = []
    for i, rule in enumerate(_list(value, path)):
        where = f"{path}[{i}]"
        if not isinstance(rule, Mapping):
            raise PolicyCompileError(f"{where}: must be a mapping")
        allowed = {"ports"} if deny else {"ports", "rules", "listener", "originatingTLS",
                                          "terminatingTLS", "serverNames"}
        unknown = set(rule) - allowed
        if unknown:
            raise PolicyCompileError(f"{where}: unknown field {sorted(unknown)[0]!r}")
        l7 = rule.get("rules") or {}
        if not isinstance(l7, Mapping):
            raise PolicyCompileError(f"{where}.rules: must be a mapping")
        dns_rules = _list(l7.get("dns"), f"{where}.rules.dns")
        if dns_rules and direction is Direction.INGRESS:
            raise PolicyCompileError(f"{where}.rules.dns: DNS rules are not allowed on ingress")
        entries = _list(rule.get("ports"), f"{where}.ports")
        if len(entries) > MAX_PORTS:
            raise PolicyCompileError(f"{where}.ports: too many ports, the max is {MAX_PORTS}")
        if dns_rules and not entries:
            raise PolicyCompileError(f"{where}: port 53 must be specified for DNS rules")
        for j, entry in enumerate(entries):
            ports.append(_port(entry, f"{where}.ports[{j}]", dns=bool(l7)))
        if not entries:
            # A port rule without ports covers every port and protocol.
            ports.append(CiliumPort(_ALL_TRANSPORTS, None))
        dns.extend(fqdn_selector(d, f"{where}.rules.dns[{k}]") for k, d in enumerate(dns_rules))
    return tuple(ports), tuple(dns)


def _icmps(value: Any, path: str) -> tuple[tuple[Transport, int], ...]:
    out = []
    for i, rule in enumerate(_list(value, path)):
        fields = _list(rule.get("fields") if isinstance(rule, Mapping) else None,
                       f"{path}[{i}].fields")
        if len(fields) > MAX_ICMP_FIELDS:
            raise PolicyCompileError(f"{path}[{i}].fields: too many types, the max is "
                                     f"{MAX_ICMP_FIELDS}")
        for j, field in enumerate(fields):
            where = f"{path}[{i}].fields[{j}]"
            if not isinstance(field, Mapping):
                raise PolicyCompileError(f"{where}: must be a mapping")
            family = str(field.get("family") or "IPv4")
            if family not in _ICMP_TYPES:
                raise PolicyCompileError(f"{where}.family: wrong family {family!r}")
            raw = field.get("type")
            if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= 255:
                number = raw
            elif isinstance(raw, str) and raw.isdigit() and int(raw) <= 255:
                number = int(raw)
            elif isinstance(raw, str) and raw in _ICMP_TYPES[family]:
                number = _ICMP_TYPES[family][raw]
            else:
                raise PolicyCompileError(f"{where}.type: invalid ICMP type {raw!r}")
            out.append((Transport.ICMP if family == "IPv4" else Transport.ICMPV6, number))
    return tuple(out)


def compile_rule(raw: Any, direction: Direction, *, deny: bool, index: int, path: str,
                 namespace: str | None) -> CiliumRule:
    """One ``ingress``/``egress``/``ingressDeny``/``egressDeny`` entry (rule_validation.go)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise PolicyCompileError(f"{path}: must be a mapping")
    l3_keys = (_DENY_L3 if deny else _L3)[direction]
    unknown = set(raw) - set(l3_keys) - _RULE_EXTRA
    if unknown:
        raise PolicyCompileError(f"{path}: unknown field {sorted(unknown)[0]!r}")
    # Empty lists have no effect, as if omitted (api/egress.go).
    present = [k for k in l3_keys if _list(raw.get(k), f"{path}.{k}")]
    if len(present) > 1:
        raise PolicyCompileError(f"{path}: combining {present[0]} and {present[1]} is not "
                                 "supported")
    for key in present:
        if key in _REMOVED:
            raise PolicyCompileError(f"{path}.{key}: removed in Cilium 1.19")
        if key in _NOT_EVALUATED:
            raise NotEvaluated(f"{path}.{key}: not evaluated ({_NOT_EVALUATED[key]})")
    to_ports = _list(raw.get("toPorts"), f"{path}.toPorts")
    icmps = _list(raw.get("icmps"), f"{path}.icmps")
    if to_ports and icmps:
        raise PolicyCompileError(f"{path}: the icmps block may only be present without toPorts")
    ports, dns = (_to_ports(to_ports, f"{path}.toPorts", deny=deny, direction=direction)
                  if to_ports else (None, ()))
    rule: dict[str, Any] = {}
    if present:
        key = present[0]
        items = _list(raw[key], f"{path}.{key}")
        where = f"{path}.{key}"
        if key.endswith("Endpoints"):
            rule["selectors"] = tuple(_peer_selector(s, f"{where}[{i}]", namespace)
                                      for i, s in enumerate(items))
        elif key.endswith("Entities"):
            for i, entity in enumerate(items):
                if entity not in ENTITIES:
                    raise PolicyCompileError(f"{where}[{i}]: unsupported entity {entity!r}")
            rule["entities"] = frozenset(str(e) for e in items)
        elif key.endswith("CIDRSet"):
            rule["cidrs"] = _cidr_set(items, where)
        elif key.endswith("CIDR"):
            rule["cidrs"] = tuple((_cidr(c, f"{where}[{i}]"), ()) for i, c in enumerate(items))
        else:  # toFQDNs
            rule["fqdns"] = tuple(fqdn_selector(f, f"{where}[{i}]")
                                  for i, f in enumerate(items))
    return CiliumRule(direction=direction, index=index, path=path,
                      action=Action.DENY if deny else Action.ALLOW, ports=ports,
                      icmps=_icmps(icmps, f"{path}.icmps") if icmps else None, dns=dns, **rule)


# ------------------------------------------------------------------------------------------------
# Policies


def _default_deny(spec: Mapping[str, Any], path: str) -> dict[Direction, bool]:
    """``enableDefaultDeny`` per direction; unset: true when the direction has entries (§4.4,
    rule_validation.go Sanitize)."""
    raw = spec.get("enableDefaultDeny") or {}
    if not isinstance(raw, Mapping):
        raise PolicyCompileError(f"{path}.enableDefaultDeny: must be a mapping")
    out = {}
    for direction in Direction:
        value = raw.get(str(direction))
        if value is not None and not isinstance(value, bool):
            raise PolicyCompileError(f"{path}.enableDefaultDeny.{direction}: must be a boolean")
        entries = bool(spec.get(str(direction)) or spec.get(f"{direction}Deny"))
        out[direction] = entries if value is None else value
    return out


def _compile_spec(spec: Any, path: str, *, kind: str, display: str, name: str,
                  namespace: str | None, always_default_deny: bool = False,
                  paths: Mapping[str, Sequence[str]] | None = None) -> list[CompiledPolicy]:
    if not isinstance(spec, Mapping):
        raise PolicyCompileError(f"{path}: must be a mapping")
    unknown = set(spec) - _SPEC_KEYS
    if unknown:
        raise PolicyCompileError(f"{path}: unknown field {sorted(unknown)[0]!r}")
    has_ep, has_node = "endpointSelector" in spec, "nodeSelector" in spec
    if has_ep == has_node:
        raise PolicyCompileError(f"{path}: needs exactly one of endpointSelector, nodeSelector")
    if has_node:
        if namespace is not None:
            raise PolicyCompileError(f"{path}.nodeSelector: only a "
                                     "CiliumClusterwideNetworkPolicy can select nodes")
        raise NotEvaluated(f"{path}: a host policy (nodeSelector) is not evaluated: host "
                           "endpoints are not modelled")
    selector = _subject_selector(spec.get("endpointSelector"), f"{path}.endpointSelector",
                                 namespace)
    allows: dict[Direction, list[CiliumRule]] = {d: [] for d in Direction}
    denies: dict[Direction, list[CiliumRule]] = {d: [] for d in Direction}
    index = 0
    for direction in Direction:
        for deny, key in ((False, str(direction)), (True, f"{direction}Deny")):
            for i, raw in enumerate(_list(spec.get(key), f"{path}.{key}")):
                where = f"{path}.{key}[{i}]" if path != "spec" else f"{key}[{i}]"
                if paths is not None:
                    where = paths[key][i]
                rule = compile_rule(raw, direction, deny=deny, index=index, path=where,
                                    namespace=namespace)
                index += 1
                (denies if deny else allows)[direction].append(rule)
    entries = {d for d in Direction if allows[d] or denies[d]}
    if not entries:
        raise PolicyCompileError(f"{path}: a rule needs at least one ingress, ingressDeny, "
                                 "egress or egressDeny entry")
    default_deny = _default_deny(spec, path)
    if always_default_deny:
        default_deny = dict.fromkeys(Direction, True)

    def part(tier: str, types: Iterable[Direction], rules: Mapping[Direction, list[CiliumRule]]
             ) -> CompiledPolicy:
        kept = frozenset(types)
        return CompiledPolicy(
            kind=kind, display=display, namespace=namespace, name=name, tier=tier, order=None,
            types=kept,
            ingress=tuple(rules[Direction.INGRESS]) if Direction.INGRESS in kept else (),
            egress=tuple(rules[Direction.EGRESS]) if Direction.EGRESS in kept else (),
            selector=selector)

    out = []
    if any(denies.values()):
        out.append(part(DENY_TIER, (d for d in Direction if denies[d]), denies))
    isolating = [d for d in entries if default_deny[d]]
    if isolating:
        out.append(part(ALLOW_TIER, isolating, allows))
    open_allows = [d for d in entries if not default_deny[d] and allows[d]]
    if open_allows:
        out.append(part(OPEN_TIER, open_allows, allows))
    return out


def compile_cilium_policy(doc: Mapping[str, Any]) -> list[CompiledPolicy]:
    """Compile a CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy (``spec`` and/or
    ``specs``; each rule its own subject).

    Raises:
        NotEvaluated: for a construct the engine does not model (host policies, toServices...).
        PolicyCompileError: for anything the API server or the agent would reject.
    """
    kind = str(doc.get("kind"))
    meta = doc.get("metadata") or {}
    name = str(meta.get("name") or "")
    cluster = kind == "CiliumClusterwideNetworkPolicy"
    namespace = None if cluster else str(meta.get("namespace") or "default")
    display = f"{kind} {name}" if cluster else f"{kind} {namespace}/{name}"
    specs: list[tuple[str, Any]] = []
    if doc.get("spec") is not None:
        specs.append(("spec", doc["spec"]))
    specs += [(f"specs[{i}]", s) for i, s in enumerate(_list(doc.get("specs"), "specs"))]
    if not specs:
        raise PolicyCompileError("needs spec or specs")
    out: list[CompiledPolicy] = []
    try:
        for path, spec in specs:
            out += _compile_spec(spec, path, kind="ccnp" if cluster else "cnp",
                                 display=display, name=name, namespace=namespace)
    except (TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, PolicyCompileError):
            raise
        raise PolicyCompileError(str(exc)) from exc
    return out


# ------------------------------------------------------------------------------------------------
# Kubernetes NetworkPolicy, as Cilium translates it (pkg/k8s/network_policy.go, §4.8)


def _k8s_selector(sel: Any, prefix: str, path: str) -> dict[str, Any]:
    if sel is None:
        return {}
    if not isinstance(sel, Mapping):
        raise PolicyCompileError(f"{path}: must be a mapping")
    out: dict[str, Any] = {}
    labels = sel.get("matchLabels") or {}
    if labels:
        out["matchLabels"] = {f"{prefix}{k}": v for k, v in labels.items()}
    exprs = [{**e, "key": f"{prefix}{e.get('key')}"} for e in sel.get("matchExpressions") or []
             if isinstance(e, Mapping)]
    if exprs:
        out["matchExpressions"] = exprs
    return out


def _k8s_peer(peer: Any, path: str) -> tuple[str, Any]:
    if not isinstance(peer, Mapping):
        raise PolicyCompileError(f"{path}: a peer must be a mapping")
    block = peer.get("ipBlock")
    if block is not None:
        item = {"cidr": block.get("cidr")}
        if block.get("except"):
            item["except"] = list(block["except"])
        return "CIDRSet", item
    ns_sel, pod_sel = peer.get("namespaceSelector"), peer.get("podSelector")
    if ns_sel is None and pod_sel is None:
        raise PolicyCompileError(f"{path}: must specify a peer")
    selector = _k8s_selector(pod_sel, "k8s:", f"{path}.podSelector")
    if ns_sel is not None:
        ns = _k8s_selector(ns_sel, "k8s:" + CILIUM_NAMESPACE_LABELS, f"{path}.namespaceSelector")
        selector.setdefault("matchLabels", {}).update(ns.get("matchLabels", {}))
        selector.setdefault("matchExpressions", []).extend(ns.get("matchExpressions", []))
        # namespaceSelector: {} is "any namespace": pods only, no reserved identity (§4.8.4).
        selector["matchExpressions"].append({"key": CILIUM_NAMESPACE, "operator": "Exists"})
        selector = {k: v for k, v in selector.items() if v}
    return "Endpoints", selector


def compile_knp_for_cilium(doc: Mapping[str, Any]) -> list[CompiledPolicy]:
    """A ``networking.k8s.io/v1`` NetworkPolicy as Cilium enforces it (§4.8): ipBlock is a CIDR
    peer (never a pod or a node), both directions' rules apply whatever ``policyTypes`` says, an
    empty ``from``/``to`` is every identity, selectors see only identity labels, always default
    deny.

    Raises:
        PolicyCompileError: for a structure the API server would reject.
    """
    meta = doc.get("metadata") or {}
    name = str(meta.get("name") or "")
    namespace = str(meta.get("namespace") or "default")
    spec = doc.get("spec") or {}
    if not isinstance(spec, Mapping):
        raise PolicyCompileError("spec must be a mapping")
    types = set(spec.get("policyTypes") or ())
    # The KNP rule each translated entry came from, for the verdict's rule name.
    paths: dict[str, list[str]] = {"ingress": [], "egress": []}
    rule: dict[str, Any] = {
        "endpointSelector": _k8s_selector(spec.get("podSelector"), "k8s:", "spec.podSelector")}
    for direction, key, side in ((Direction.INGRESS, "ingress", "from"),
                                 (Direction.EGRESS, "egress", "to")):
        out: list[dict[str, Any]] = []
        for i, item in enumerate(_list(spec.get(key), f"spec.{key}")):
            raw = item or {}
            ports = []
            for given in _list(raw.get("ports"), f"spec.{key}[{i}].ports"):
                p = given or {}
                port = p.get("port")
                entry: dict[str, Any] = {"port": "0" if port is None else str(port),
                                         "protocol": str(p.get("protocol") or "TCP")}
                if p.get("endPort") is not None:
                    entry["endPort"] = p["endPort"]
                ports.append(entry)
            l4 = {"toPorts": [{"ports": ports}]} if ports else {}
            peers = _list(raw.get(side), f"spec.{key}[{i}].{side}")
            if not peers:
                out.append({f"{side}Entities": ["all"], **l4})
                paths[key].append(f"{key}[{i}]")
                continue
            groups: dict[str, list[Any]] = {}
            for j, peer in enumerate(peers):
                what, translated = _k8s_peer(peer, f"spec.{key}[{i}].{side}[{j}]")
                groups.setdefault(what, []).append(translated)
            out += [{f"{side}{what}": items, **l4} for what, items in groups.items()]
            paths[key] += [f"{key}[{i}]"] * len(groups)
        # Deny-all entries where a listed direction has no rules (§4.8.2).
        if not out and (("Ingress" in types or "Egress" not in types)
                        if direction is Direction.INGRESS else "Egress" in types):
            out = [{}]
            paths[key].append(f"{key} (deny all)")
        if out:
            rule[key] = out
    if not rule.get("ingress") and not rule.get("egress"):
        raise PolicyCompileError("selects pods but enforces no direction")
    try:
        return _compile_spec(rule, "spec", kind="knp",
                             display=f"networking.k8s.io/NetworkPolicy {namespace}/{name}",
                             name=name, namespace=namespace, always_default_deny=True,
                             paths=paths)
    except (TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, PolicyCompileError):
            raise
        raise PolicyCompileError(str(exc)) from exc
