"""What the Kubernetes API server or Calico's validation would reject in a policy manifest.

:func:`validate_manifest` returns one string per problem, each starting with the path of the
offending field (``spec.ingress[0].from[1]: ...``). Problems that the API would accept but that
are almost certainly mistakes, or that only some versions reject, start with ``warning: ``
(:func:`is_warning`). Kinds that are not policy objects validate to an empty list.

Sources: policy-semantics.md §1.1 (API-server validation of NetworkPolicy), §3.3 (Calico fields),
§3.8 (traps: ``ports`` without ``protocol``), §2.2 (ClusterNetworkPolicy: the v1alpha2 CRD's
schema and CEL rules, checked for either channel; what only the experimental channel accepts is a
warning, what only it rejects is a warning too unless the object is experimental anyway).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from segmenter.evaluate.calico import calico_domain, parse_calico_port, parse_protocol
from segmenter.evaluate.kubernetes import PolicyCompileError
from segmenter.evaluate.model import IPNetwork, parse_net
from segmenter.evaluate.selector import SelectorError, label_selector_problems, parse_selector

__all__ = ["WARNING", "describe_manifest", "is_warning", "validate_manifest"]

WARNING = "warning: "

_K8S_SPEC = {"podSelector", "policyTypes", "ingress", "egress"}
_K8S_INGRESS = {"from", "ports"}
_K8S_EGRESS = {"to", "ports"}
_K8S_PEER = {"podSelector", "namespaceSelector", "ipBlock"}
_K8S_PORT = {"protocol", "port", "endPort"}
_K8S_PROTOCOLS = {"TCP", "UDP", "SCTP"}

_CALICO_NP_SPEC = {"order", "tier", "selector", "types", "ingress", "egress",
                   "serviceAccountSelector", "performanceHints"}
_CALICO_GNP_SPEC = _CALICO_NP_SPEC | {"namespaceSelector", "doNotTrack", "preDNAT",
                                      "applyOnForward"}
_CALICO_RULE = {"action", "protocol", "notProtocol", "icmp", "notICMP", "ipVersion", "source",
                "destination", "http", "metadata"}
_CALICO_ENTITY = {"nets", "notNets", "selector", "notSelector", "namespaceSelector", "ports",
                  "notPorts", "serviceAccounts", "services", "domains"}
_ENTERPRISE = ("Calico Enterprise only (DNS policy): open-source Calico rejects the field")
_CALICO_ACTIONS = {"Allow", "Deny", "Log", "Pass"}
_PORT_PROTOCOLS = {"tcp", "udp", "sctp", "udplite", "6", "17", "132", "136"}
_STAGED_ACTIONS = {"Set", "Delete", "Learn", "Ignore"}
_CNP_SPEC = {"tier", "priority", "subject", "ingress", "egress"}
_CNP_PEERS = {"ingress": ("namespaces", "pods"),
              "egress": ("namespaces", "pods", "networks", "nodes", "domainNames")}
_CNP_EXPERIMENTAL = ("nodes", "domainNames")
_CNP_PROTOCOLS = ("tcp", "udp", "sctp", "destinationNamedPort")
_CNP_MAX = 25  # rules per direction, peers, protocols, CIDRs, names (CRD maxItems)
# The experimental CRD's DomainName pattern as the API server applies it (config/crd at
# network-policy-api 0eec1b0e). ``[a-zA-z0-9]`` is upstream's typo for ``[a-zA-Z0-9]`` (it also
# admits [\]^_` first); the API accepts what it says, so this check does too.
_CNP_DOMAIN = re.compile(r"^(\*\.)?([a-zA-z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.)+"
                         r"[a-zA-z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.?$")
_IANA_SVC_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9]|-(?!-))*(?<!-)$")
_TIER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def is_warning(problem: str) -> bool:
    """True for a problem the API would accept (see the module docstring)."""
    return problem.startswith(WARNING)


def describe_manifest(doc: Mapping[str, Any]) -> str:
    """``apiVersion Kind namespace/name`` (no namespace part for cluster-scoped objects)."""
    meta = doc.get("metadata") or {}
    if not isinstance(meta, Mapping):
        meta = {}
    api = doc.get("apiVersion") or "?"
    name = meta.get("name") or "<unnamed>"
    ns = meta.get("namespace")
    kind = doc.get("kind") or "?"
    namespaced = kind in ("NetworkPolicy", "NetworkSet", "StagedNetworkPolicy",
                          "StagedKubernetesNetworkPolicy", "CiliumNetworkPolicy")
    if namespaced:
        return f"{api} {kind} {ns or 'default'}/{name}"
    return f"{api} {kind} {name}"


def validate_manifest(doc: Any) -> list[str]:
    """Problems the API server (Kubernetes kinds) or Calico validation would reject.

    Examples:
        >>> validate_manifest({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        ...     "metadata": {"name": "x"},
        ...     "spec": {"podSelector": {}, "ingress": [{"from": [{}]}]}})
        ['spec.ingress[0].from[0]: must specify a peer (podSelector, namespaceSelector or ipBlock)']
    """
    if not isinstance(doc, Mapping):
        return ["document is not a mapping"]
    kind = str(doc.get("kind") or "")
    api = str(doc.get("apiVersion") or "")
    group = api.split("/", 1)[0] if "/" in api else ""
    v = _Validator()
    if kind == "NetworkPolicy" and group in ("networking.k8s.io", ""):
        if group == "" and _calico_shaped(doc):
            v.calico_policy(doc, namespaced=True)
        else:
            v.k8s_policy(doc)
    elif group in ("projectcalico.org", "crd.projectcalico.org"):
        if kind in ("NetworkPolicy", "StagedNetworkPolicy"):
            v.calico_policy(doc, namespaced=True, staged=kind.startswith("Staged"))
        elif kind in ("GlobalNetworkPolicy", "StagedGlobalNetworkPolicy"):
            v.calico_policy(doc, namespaced=False, staged=kind.startswith("Staged"))
        elif kind == "StagedKubernetesNetworkPolicy":
            v.k8s_policy(doc, staged=True)
        elif kind in ("NetworkSet", "GlobalNetworkSet"):
            v.netset(doc)
        elif kind == "Tier":
            v.tier(doc)
        else:
            v.metadata_shape(doc)
    elif group == "policy.networking.k8s.io" and kind == "ClusterNetworkPolicy":
        v.cluster_network_policy(doc)
    else:
        v.metadata_shape(doc)
    return v.problems


def _calico_shaped(doc: Mapping[str, Any]) -> bool:
    spec = doc.get("spec") or {}
    return isinstance(spec, Mapping) and "podSelector" not in spec and any(
        k in spec for k in ("selector", "order", "tier", "types"))


def _one_of(value: Any, choices: set[str]) -> bool:
    """``value in choices`` for any document value (a list or a map is in no set of names)."""
    return isinstance(value, str) and value in choices


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Validator:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def warn(self, path: str, message: str) -> None:
        self.problems.append(f"{WARNING}{path}: {message}")

    def unknown(self, path: str, value: Mapping[str, Any], allowed: set[str]) -> None:
        for key in value:
            if key not in allowed:
                self.error(path, f"unknown field {key!r}")

    def mapping(self, path: str, value: Any) -> Mapping[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.error(path, "must be a mapping")
            return None
        return value

    def items(self, path: str, value: Any) -> list[tuple[str, Any]]:
        if value is None:
            return []
        if not _is_list(value):
            self.error(path, "must be a list")
            return []
        return [(f"{path}[{i}]", item) for i, item in enumerate(value)]

    def metadata(self, doc: Mapping[str, Any]) -> Mapping[str, Any]:
        meta = self.metadata_shape(doc)
        if not meta.get("name"):
            self.error("metadata.name", "required")
        return meta

    def metadata_shape(self, doc: Mapping[str, Any]) -> Mapping[str, Any]:
        """Of any object: what every reader of manifests takes for granted."""
        meta = self.mapping("metadata", doc.get("metadata")) or {}
        for key in ("name", "namespace"):
            if meta.get(key) is not None and not isinstance(meta[key], str):
                self.error(f"metadata.{key}", "must be a string")
        for key in ("labels", "annotations"):
            values = self.mapping(f"metadata.{key}", meta.get(key)) or {}
            for name, value in values.items():
                if not isinstance(value, str):
                    self.error(f"metadata.{key}.{name}", "must be a string")
        return meta

    # ----------------------------------------------------------------------------------------
    # Kubernetes NetworkPolicy

    def k8s_policy(self, doc: Mapping[str, Any], *, staged: bool = False) -> None:
        self.metadata(doc)
        spec = self.mapping("spec", doc.get("spec"))
        if spec is None:
            if "spec" in doc:
                return
            spec = {}
        allowed = _K8S_SPEC | ({"stagedAction"} if staged else set())
        self.unknown("spec", spec, allowed)
        if staged:
            self.staged_action(spec)
        self.problems.extend(label_selector_problems(spec.get("podSelector"), "spec.podSelector"))
        types = spec.get("policyTypes")
        if types is not None:
            if not _is_list(types):
                self.error("spec.policyTypes", "must be a list")
            else:
                if len(types) > 2:
                    self.error("spec.policyTypes", f"may hold at most 2 values, got {len(types)}")
                for i, t in enumerate(types):
                    if t not in ("Ingress", "Egress"):
                        self.error(f"spec.policyTypes[{i}]",
                                   f"unsupported value {t!r}: must be Ingress or Egress")
        for key, peer_key, fields in (("ingress", "from", _K8S_INGRESS),
                                      ("egress", "to", _K8S_EGRESS)):
            for path, raw in self.items(f"spec.{key}", spec.get(key)):
                rule = self.mapping(path, raw)
                if rule is None:
                    continue
                self.unknown(path, rule, fields)
                for ppath, peer in self.items(f"{path}.{peer_key}", rule.get(peer_key)):
                    self.k8s_peer(ppath, peer)
                for ppath, port in self.items(f"{path}.ports", rule.get("ports")):
                    self.k8s_port(ppath, port)

    def k8s_peer(self, path: str, peer: Any) -> None:
        peer = self.mapping(path, peer)
        if peer is None:
            self.error(path, "must specify a peer (podSelector, namespaceSelector or ipBlock)")
            return
        self.unknown(path, peer, _K8S_PEER)
        present = [k for k in ("podSelector", "namespaceSelector", "ipBlock")
                   if peer.get(k) is not None]
        if not present:
            self.error(path, "must specify a peer (podSelector, namespaceSelector or ipBlock)")
            return
        block = peer.get("ipBlock")
        if block is not None and len(present) > 1:
            self.error(path, "ipBlock may not be combined with podSelector or namespaceSelector")
        for key in ("podSelector", "namespaceSelector"):
            self.problems.extend(label_selector_problems(peer.get(key), f"{path}.{key}"))
        if block is not None:
            self.ip_block(f"{path}.ipBlock", block)

    def ip_block(self, path: str, block: Any) -> None:
        block = self.mapping(path, block)
        if block is None:
            return
        self.unknown(path, block, {"cidr", "except"})
        cidr = block.get("cidr")
        net: IPNetwork | None = None
        if not cidr:
            self.error(f"{path}.cidr", "required")
        else:
            net = self.cidr(f"{path}.cidr", cidr)
        for epath, exc in self.items(f"{path}.except", block.get("except")):
            sub = self.cidr(epath, exc)
            if sub is None or net is None:
                continue
            if sub.version != net.version or not sub.subnet_of(net):  # type: ignore[arg-type]
                self.error(epath, f"must be a strict subset of cidr {cidr}: {exc} is outside it")
            elif sub.prefixlen <= net.prefixlen:
                self.error(epath, f"must be a strict subset of cidr {cidr}, not equal to it")

    def cidr(self, path: str, value: Any) -> IPNetwork | None:
        if not isinstance(value, str):
            self.error(path, f"must be a CIDR string, got {value!r}")
            return None
        if "/" not in value:
            self.error(path, f"{value!r} is not a CIDR (missing /prefix)")
            return None
        try:
            return parse_net(value)
        except ValueError:
            self.error(path, f"{value!r} is not a valid CIDR")
            return None

    def k8s_port(self, path: str, entry: Any) -> None:
        if entry is None:
            return
        entry = self.mapping(path, entry)
        if entry is None:
            return
        self.unknown(path, entry, _K8S_PORT)
        proto = entry.get("protocol")
        if proto is not None and not _one_of(proto, _K8S_PROTOCOLS):
            self.error(f"{path}.protocol", f"unsupported value {proto!r}: must be TCP, UDP or "
                                           f"SCTP")
        port = entry.get("port")
        end = entry.get("endPort")
        if port is not None:
            if _is_int(port):
                if not 1 <= port <= 65535:
                    self.error(f"{path}.port", f"{port} must be between 1 and 65535")
            elif isinstance(port, str):
                if not _IANA_SVC_NAME.match(port) or len(port) > 15:
                    self.error(f"{path}.port", f"{port!r} is not a valid port name "
                                               f"(IANA_SVC_NAME) nor a number")
            else:
                self.error(f"{path}.port", f"must be a number or a port name, got {port!r}")
        if end is not None:
            if not _is_int(end):
                self.error(f"{path}.endPort", "must be a number")
            elif port is None:
                self.error(f"{path}.endPort", "may only be given together with port")
            elif not _is_int(port):
                self.error(f"{path}.endPort", "may not be used with a named port")
            elif end < port:
                self.error(f"{path}.endPort", f"{end} must be greater than or equal to port "
                                              f"{port}")
            elif end > 65535:
                self.error(f"{path}.endPort", f"{end} must be at most 65535")

    # ----------------------------------------------------------------------------------------
    # Calico

    def staged_action(self, spec: Mapping[str, Any]) -> None:
        action = spec.get("stagedAction")
        if action is not None and not _one_of(action, _STAGED_ACTIONS):
            self.error("spec.stagedAction", f"unknown value {action!r}: must be one of "
                                            f"{', '.join(sorted(_STAGED_ACTIONS))}")

    def selector(self, path: str, value: Any, *, namespace_selector: bool = False) -> None:
        if value is None or value == "":
            return
        if not isinstance(value, str):
            self.error(path, f"a selector must be a string, got {type(value).__name__}")
            return
        try:
            node = parse_selector(value)
        except SelectorError as exc:
            self.error(path, f"invalid selector {value!r}: {exc}")
            return
        if node.uses_global() and not namespace_selector:
            self.warn(path, "global() only has meaning in a rule namespaceSelector; here it "
                            "matches nothing")

    def calico_policy(self, doc: Mapping[str, Any], *, namespaced: bool,
                      staged: bool = False) -> None:
        meta = self.metadata(doc)
        spec = self.mapping("spec", doc.get("spec"))
        if spec is None:
            return
        allowed = (_CALICO_NP_SPEC if namespaced else _CALICO_GNP_SPEC) | (
            {"stagedAction"} if staged else set())
        self.unknown("spec", spec, allowed)
        if staged:
            self.staged_action(spec)
        order = spec.get("order")
        if order is not None and (not isinstance(order, int | float) or isinstance(order, bool)
                                  or math.isnan(order)):
            self.error("spec.order", f"must be a number, got {order!r}")
        tier = spec.get("tier") or "default"
        name = str(meta.get("name") or "")
        if not isinstance(tier, str) or not _TIER_NAME.match(tier):
            self.error("spec.tier", f"invalid tier name {tier!r}")
        elif tier != "default" and name and not name.startswith(f"{tier}."):
            self.warn("metadata.name", f"policies in tier {tier!r} must be named "
                                       f"'{tier}.<name>' before Calico v3.32")
        self.selector("spec.selector", spec.get("selector"))
        self.selector("spec.serviceAccountSelector", spec.get("serviceAccountSelector"))
        if not namespaced:
            self.selector("spec.namespaceSelector", spec.get("namespaceSelector"))
        types = spec.get("types")
        if types is not None:
            if not _is_list(types):
                self.error("spec.types", "must be a list")
            else:
                if len(types) > 2:
                    self.error("spec.types", f"may hold at most 2 values, got {len(types)}")
                if len(set(map(str, types))) != len(types):
                    self.error("spec.types", "must not repeat a value")
                for i, t in enumerate(types):
                    if t not in ("Ingress", "Egress"):
                        self.error(f"spec.types[{i}]",
                                   f"unsupported value {t!r}: must be Ingress or Egress")
        if not namespaced:
            dnt, pre, fwd = (bool(spec.get(k)) for k in ("doNotTrack", "preDNAT",
                                                         "applyOnForward"))
            if dnt and pre:
                self.error("spec", "doNotTrack and preDNAT cannot both be true")
            if (dnt or pre) and not fwd:
                self.error("spec.applyOnForward", "must be true when doNotTrack or preDNAT is")
            if pre and (spec.get("egress") or "Egress" in (types or ())):
                self.error("spec", "a preDNAT policy cannot have egress rules or the Egress type")
        for key in ("ingress", "egress"):
            for path, rule in self.items(f"spec.{key}", spec.get(key)):
                self.calico_rule(path, rule)
                self.calico_domains(path, rule, egress=key == "egress")

    def calico_domains(self, path: str, rule: Any, *, egress: bool) -> None:
        """Rule ``domains`` (Calico Enterprise): egress Allow destinations only."""
        if not isinstance(rule, Mapping):
            return
        for side in ("source", "destination"):
            entity = rule.get(side)
            if not isinstance(entity, Mapping) or entity.get("domains") is None:
                continue
            where = f"{path}.{side}.domains"
            if side == "source" or not egress or rule.get("action") != "Allow":
                self.error(where, "domain names are only allowed in the destination of egress "
                                  "Allow rules")
            self.warn(where, _ENTERPRISE)
            for dpath, name in self.items(where, entity.get("domains")):
                try:
                    calico_domain(name)
                except PolicyCompileError as exc:
                    self.error(dpath, str(exc))

    def calico_rule(self, path: str, rule: Any) -> None:
        rule = self.mapping(path, rule)
        if rule is None:
            self.error(path, "a rule must be a mapping")
            return
        self.unknown(path, rule, _CALICO_RULE)
        action = rule.get("action")
        if action is None:
            self.error(f"{path}.action", "required")
        elif not _one_of(action, _CALICO_ACTIONS):
            self.error(f"{path}.action", f"unknown action {action!r}: must be Allow, Deny, Log "
                                         f"or Pass")
        proto_names: list[str] = []
        for key in ("protocol", "notProtocol"):
            value = rule.get(key)
            if value is None:
                continue
            try:
                parse_protocol(value)
            except PolicyCompileError as exc:
                self.error(f"{path}.{key}", str(exc))
                continue
            if key == "protocol":
                proto_names.append(str(value).strip().lower())
        proto = proto_names[0] if proto_names else None
        for key in ("icmp", "notICMP"):
            icmp = self.mapping(f"{path}.{key}", rule.get(key))
            if icmp is None:
                continue
            self.unknown(f"{path}.{key}", icmp, {"type", "code"})
            if proto not in ("icmp", "icmpv6", "1", "58"):
                self.error(f"{path}.{key}", "requires protocol ICMP or ICMPv6")
            if icmp.get("code") is not None and icmp.get("type") is None:
                self.error(f"{path}.{key}.code", "requires a type")
        ip_version = rule.get("ipVersion")
        if ip_version is not None and ip_version not in (4, 6):
            self.error(f"{path}.ipVersion", f"must be 4 or 6, got {ip_version!r}")
        if rule.get("http") is not None and action != "Allow":
            self.error(f"{path}.http", "only allowed in Allow rules")
        versions: set[int] = set()
        for key in ("source", "destination"):
            entity = self.mapping(f"{path}.{key}", rule.get(key))
            if entity is not None:
                versions |= self.calico_entity(f"{path}.{key}", entity, proto)
        if len(versions) > 1:
            self.error(path, "mixes IPv4 and IPv6 nets in one rule")
        elif versions and ip_version is not None and versions != {ip_version}:
            self.error(path, f"nets do not match ipVersion {ip_version}")

    def calico_entity(self, path: str, entity: Mapping[str, Any], proto: str | None
                      ) -> set[int]:
        self.unknown(path, entity, _CALICO_ENTITY)
        versions: set[int] = set()
        for key in ("nets", "notNets"):
            for npath, net in self.items(f"{path}.{key}", entity.get(key)):
                parsed = self.calico_net(npath, net)
                if parsed is not None:
                    versions.add(parsed.version)
        self.selector(f"{path}.selector", entity.get("selector"))
        self.selector(f"{path}.notSelector", entity.get("notSelector"))
        self.selector(f"{path}.namespaceSelector", entity.get("namespaceSelector"),
                      namespace_selector=True)
        sa = self.mapping(f"{path}.serviceAccounts", entity.get("serviceAccounts"))
        if sa is not None:
            self.unknown(f"{path}.serviceAccounts", sa, {"names", "selector"})
            self.selector(f"{path}.serviceAccounts.selector", sa.get("selector"))
        for key in ("ports", "notPorts"):
            ports = entity.get(key)
            if not ports:
                continue
            if proto is None:
                self.error(f"{path}.{key}", "requires protocol to be set (TCP, UDP, SCTP or "
                                            "UDPLite)")
            elif not _one_of(proto, _PORT_PROTOCOLS):
                self.error(f"{path}.{key}", f"ports are only valid with TCP, UDP, SCTP or "
                                            f"UDPLite, not {proto}")
            for ppath, port in self.items(f"{path}.{key}", ports):
                try:
                    parse_calico_port(port)
                except PolicyCompileError as exc:
                    self.error(ppath, str(exc))
        services = self.mapping(f"{path}.services", entity.get("services"))
        if services is not None:
            clash = [k for k in ("selector", "notSelector", "namespaceSelector", "nets",
                                 "notNets", "serviceAccounts") if entity.get(k)]
            if clash:
                self.error(f"{path}.services", f"cannot be combined with {', '.join(clash)}")
            if not services.get("name"):
                self.error(f"{path}.services.name", "required")
        return versions

    def calico_net(self, path: str, value: Any) -> IPNetwork | None:
        if not isinstance(value, str):
            self.error(path, f"must be a CIDR or IP string, got {value!r}")
            return None
        try:
            return parse_net(value)
        except ValueError:
            self.error(path, f"{value!r} is not a valid CIDR")
            return None

    def netset(self, doc: Mapping[str, Any]) -> None:
        self.metadata(doc)
        spec = self.mapping("spec", doc.get("spec")) or {}
        self.unknown("spec", spec, {"nets", "allowedEgressDomains"})
        for path, net in self.items("spec.nets", spec.get("nets")):
            self.calico_net(path, net)
        if spec.get("allowedEgressDomains") is not None:
            self.warn("spec.allowedEgressDomains", _ENTERPRISE)
            for path, name in self.items("spec.allowedEgressDomains",
                                         spec.get("allowedEgressDomains")):
                try:
                    calico_domain(name)
                except PolicyCompileError as exc:
                    self.error(path, str(exc))

    def tier(self, doc: Mapping[str, Any]) -> None:
        meta = self.metadata(doc)
        name = meta.get("name")
        if name and (not isinstance(name, str) or not _TIER_NAME.match(name)):
            self.error("metadata.name", f"invalid tier name {name!r}")
        spec = self.mapping("spec", doc.get("spec")) or {}
        self.unknown("spec", spec, {"order", "defaultAction"})
        order = spec.get("order")
        if order is not None and (not isinstance(order, int | float) or isinstance(order, bool)):
            self.error("spec.order", f"must be a number, got {order!r}")
        action = spec.get("defaultAction")
        if action is not None and action not in ("Deny", "Pass"):
            self.error("spec.defaultAction", f"must be Deny or Pass, got {action!r}")


    # ----------------------------------------------------------------------------------------
    # ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2, policy-semantics.md §2.2)

    def cluster_network_policy(self, doc: Mapping[str, Any]) -> None:
        meta = self.metadata(doc)
        if meta.get("namespace"):
            self.warn("metadata.namespace", "ClusterNetworkPolicy is cluster-scoped; the "
                                            "namespace is ignored")
        spec = self.mapping("spec", doc.get("spec"))
        if spec is None:
            self.error("spec", "required")
            return
        self.unknown("spec", spec, _CNP_SPEC)
        tier = spec.get("tier")
        if tier is None:
            self.error("spec.tier", "required")
        elif tier not in ("Admin", "Baseline"):
            self.error("spec.tier", f"unsupported value {tier!r}: must be Admin or Baseline")
        priority = spec.get("priority")
        if priority is None:
            self.error("spec.priority", "required")
        elif not _is_int(priority) or not 0 <= priority <= 1000:
            self.error("spec.priority", f"must be an integer from 0 to 1000, got {priority!r}")
        subject = self.mapping("spec.subject", spec.get("subject"))
        if subject is None:
            self.error("spec.subject", "required")
        else:
            self.unknown("spec.subject", subject, {"namespaces", "pods"})
            if len(subject) != 1:
                self.error("spec.subject", "must set exactly one of namespaces or pods")
            self.problems.extend(label_selector_problems(subject.get("namespaces"),
                                                         "spec.subject.namespaces"))
            if "pods" in subject:
                self.cnp_pods("spec.subject.pods", subject["pods"])
        for key, peer_key in (("ingress", "from"), ("egress", "to")):
            rules = self.items(f"spec.{key}", spec.get(key))
            if len(rules) > _CNP_MAX:
                self.error(f"spec.{key}", f"at most {_CNP_MAX} rules, got {len(rules)}")
            for path, raw in rules:
                rule = self.mapping(path, raw)
                if rule is None:
                    self.error(path, "a rule must be a mapping")
                    continue
                self.cnp_rule(path, rule, key, peer_key)

    def cnp_pods(self, path: str, value: Any) -> None:
        pods = self.mapping(path, value)
        if pods is None:
            return
        self.unknown(path, pods, {"namespaceSelector", "podSelector"})
        if pods.get("podSelector") is None:
            self.error(f"{path}.podSelector", "required")
        for key in ("namespaceSelector", "podSelector"):
            self.problems.extend(label_selector_problems(pods.get(key), f"{path}.{key}"))

    def cnp_list(self, path: str, value: Any) -> list[tuple[str, Any]]:
        """A CRD list of 1 to 25 items."""
        items = self.items(path, value)
        if value is not None and not items and _is_list(value):
            self.error(path, "must hold at least 1 item")
        if len(items) > _CNP_MAX:
            self.error(path, f"may hold at most {_CNP_MAX} items, got {len(items)}")
        return items

    def cnp_rule(self, path: str, rule: Mapping[str, Any], direction: str, peer_key: str
                 ) -> None:
        self.unknown(path, rule, {"name", "action", peer_key, "protocols"})
        name = rule.get("name")
        if name is not None and (not isinstance(name, str) or len(name) > 100):
            self.error(f"{path}.name", "must be a string of at most 100 characters")
        action = rule.get("action")
        if action is None:
            self.error(f"{path}.action", "required")
        elif action not in ("Accept", "Deny", "Pass"):
            self.error(f"{path}.action", f"unsupported value {action!r}: must be Accept, Deny "
                                         f"or Pass")
        if rule.get(peer_key) is None:
            self.error(f"{path}.{peer_key}", "required")
        fields: set[str] = set()
        for ppath, raw in self.cnp_list(f"{path}.{peer_key}", rule.get(peer_key)):
            peer = self.mapping(ppath, raw)
            if peer is None:
                continue
            allowed = _CNP_PEERS[direction]
            present = [k for k in peer if peer[k] is not None]
            if len(present) != 1:
                self.error(ppath, f"must set exactly one of {', '.join(allowed)}")
            for key in present:
                fields.add(key)
                if key not in allowed:
                    self.error(ppath, f"unknown field {key!r}" + (
                        " (ingress peers can only be namespaces or pods)"
                        if direction == "ingress" else ""))
                    continue
                self.cnp_peer(f"{ppath}.{key}", key, peer[key], action)
        named = False
        for epath, raw in self.cnp_list(f"{path}.protocols", rule.get("protocols")):
            entry = self.mapping(epath, raw)
            if entry is None:
                continue
            self.unknown(epath, entry, set(_CNP_PROTOCOLS))
            if len(entry) != 1:
                self.error(epath, "must set exactly one of tcp, udp, sctp or "
                                  "destinationNamedPort")
            for key in entry:
                if key == "destinationNamedPort":
                    named = True
                    port = entry[key]
                    if not isinstance(port, str):
                        self.error(f"{epath}.{key}", "must be a string")
                    elif not _IANA_SVC_NAME.match(port) or len(port) > 15:
                        self.warn(f"{epath}.{key}", f"{port!r} is not a valid port name "
                                                    f"(IANA_SVC_NAME): it matches no container "
                                                    f"port")
                elif key in _CNP_PROTOCOLS:
                    self.cnp_port(f"{epath}.{key}", entry[key])
        if named and direction == "egress" and fields & {"networks", *_CNP_EXPERIMENTAL}:
            message = ("a destinationNamedPort with a networks, nodes or domainNames peer is "
                       "rejected by the experimental CRD (there are no named ports there)")
            if fields & set(_CNP_EXPERIMENTAL):
                self.error(path, message)
            else:
                self.warn(path, message + "; the standard CRD accepts it and it matches nothing "
                                          "for the networks peer")

    def cnp_peer(self, path: str, key: str, value: Any, action: Any) -> None:
        if key in ("namespaces", "nodes"):
            self.problems.extend(label_selector_problems(value, path))
        elif key == "pods":
            self.cnp_pods(path, value)
        elif key == "networks":
            seen: set[str] = set()
            for npath, cidr in self.cnp_list(path, value):
                if isinstance(cidr, str) and len(cidr) > 43:
                    self.error(npath, "may be at most 43 characters")
                self.cidr(npath, cidr)
                if isinstance(cidr, str):
                    if cidr in seen:
                        self.error(npath, f"duplicate value {cidr!r} (a set)")
                    seen.add(cidr)
        elif key == "domainNames":
            seen = set()
            for npath, name in self.cnp_list(path, value):
                if not isinstance(name, str) or not _CNP_DOMAIN.match(name):
                    self.error(npath, f"{name!r} is not a domain name (an exact name, or '*.' "
                                      f"then a name)")
                elif name in seen:
                    self.error(npath, f"duplicate value {name!r} (a set)")
                else:
                    seen.add(name)
            if action not in (None, "Accept"):
                self.warn(path, "domainNames is only supported in Accept rules (field "
                                "documentation; not enforced by the CRD)")
        if key in _CNP_EXPERIMENTAL:
            self.warn(path, f"{key} is in the experimental channel CRD only (the standard "
                            "CRD rejects it as an unknown field)")

    def cnp_port(self, path: str, value: Any) -> None:
        body = self.mapping(path, value)
        if body is None:
            self.error(path, "must be a mapping")
            return
        self.unknown(path, body, {"destinationPort"})
        port = self.mapping(f"{path}.destinationPort", body.get("destinationPort"))
        if port is None:
            # MinProperties=1: `tcp: {}` is rejected, whatever the docs say (§2.2, §2.8 case 9).
            self.error(f"{path}.destinationPort", "required (use range 1-65535 for every port)")
            return
        ppath = f"{path}.destinationPort"
        self.unknown(ppath, port, {"number", "range"})
        if len(port) != 1:
            self.error(ppath, "must set exactly one of number or range")
        number = port.get("number")
        if number is not None and (not _is_int(number) or not 1 <= number <= 65535):
            self.error(f"{ppath}.number", f"must be an integer from 1 to 65535, got {number!r}")
        if "range" in port:
            rng = self.mapping(f"{ppath}.range", port["range"])
            if rng is None:
                return
            self.unknown(f"{ppath}.range", rng, {"start", "end"})
            bounds = []
            for key in ("start", "end"):
                item = rng.get(key)
                if item is None:
                    self.error(f"{ppath}.range.{key}", "required")
                elif not _is_int(item) or not 1 <= item <= 65535:
                    self.error(f"{ppath}.range.{key}",
                               f"must be an integer from 1 to 65535, got {item!r}")
                else:
                    bounds.append(item)
            if len(bounds) == 2 and not bounds[0] < bounds[1]:
                self.error(f"{ppath}.range", f"start {bounds[0]} must be less than end "
                                             f"{bounds[1]} (a single port is number)")
