"""Declarations of what is sensitive: ``segmenter.yaml`` and ``--sensitive`` on the command line.

``segmenter.yaml``::

    version: 1
    classes:                      # optional: custom classes and per-class options
      pci: {title: "PCI DSS cardholder data"}
      ledger: {title: "Internal ledger", framework: pci}
    sensitive:
      - class: pci                # pci, phi, or a class declared under `classes`
        namespace: payments       # optional: every namespace when omitted
        selector: {app: card-vault}
        role: store               # store (default) or processor
        reason: PostgreSQL holding primary account numbers
    exclude_namespaces: [kube-system]   # not policed; default: the system namespaces
    cluster:                      # optional: the cluster's own ranges (else from the inventory)
      pod_cidrs: [10.244.0.0/16]
      service_cidrs: [10.96.0.0/12]
    declared_flows:               # flows the capture cannot show (README "Declared flows")
      - from: {namespace: payments, selector: {app: settlement}}
        to: {cidr: 198.51.100.0/24}
        port: 443
        reason: monthly settlement upload to the acquirer
        justification: PCI DSS 1.2.5 business need, ticket SEC-42   # into/out of a restricted
        approved_by: payments security lead                        # zone: both required
    justifications:               # the register of flows across a restricted zone's boundary
      - from: {workload: payments/Deployment/payments-api}     # as declared_flows' ends
        to: {workload: payments/StatefulSet/card-vault}
        port: 5432                # or ports: [...]; protocol: TCP (default), UDP, SCTP, ICMP
        reason: stores tokenised card numbers after authorisation   # the business need
        approved_by: payments security lead
        date: 2026-11-20          # when it was approved (YYYY-MM-DD)
        ticket: SEC-101           # optional
    entry_points:                 # workloads the internet reaches (besides those detected)
      - {namespace: shop, selector: {app: frontend}, reason: the storefront}
    compile:
      port_ranges: false          # fold runs of 3+ consecutive observed ports into endPort
      dns_egress: used            # used (default): DNS only for workloads seen resolving; all
      entry_points: auto          # auto (default): also LoadBalancer/NodePort/ingress; declared
      external_cidrs:             # external peers inside these blocks are allowed as the block
        - {cidr: 203.0.113.0/24, except: [203.0.113.128/25], name: payment-gateway,
           namespace: payments, peer_name: "*.gateway.example"}
      targets:                    # per-target options (``segmenter.targets``)
        calico: {domains: true}

Pods (or their controllers' pod templates) may also declare themselves with the label or
annotation ``segmenter.io/data-class: pci`` (several classes separated by commas).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import ipaddress
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from segmenter.compliance import BUILTIN_CLASSES
from segmenter.documents import At, load_yaml
from segmenter.errors import InputError, PlanError, type_name
from segmenter.k8s import SYSTEM_NAMESPACES, is_dns1123_label, is_label_key, is_label_value
from segmenter.model import Labels, NodeId, NodeKind, Transport

DATA_CLASS_KEY = "segmenter.io/data-class"

@dataclass(frozen=True)
class SensitiveDecl:
    """One declaration: pods matching ``selector`` (in ``namespace``) hold ``data_class`` data."""

    data_class: str
    selector: Labels
    namespace: str | None = None
    role: str = "store"
    reason: str = ""
    source: str = ""


@dataclass(frozen=True)
class ExternalBlock:
    """A configured aggregate for external peers: ``cidr`` minus ``excepts``.

    Scoped, when any of these is set, to the peers of the policed workloads in ``namespace``,
    of the one ``workload`` (a ``namespace/Kind/name`` node id), and to external peers the
    traffic's DNS answers named ``peer_name`` (exact, or ``*.`` for one or more labels).
    """

    cidr: str
    excepts: tuple[str, ...] = ()
    name: str = ""
    namespace: str | None = None
    workload: str | None = None
    peer_name: str | None = None

    def applies_to(self, workload: str, namespace: str) -> bool:
        """Whether the block may stand for the peers of the policed ``workload``."""
        return ((self.namespace is None or self.namespace == namespace)
                and (self.workload is None or self.workload == workload))

    def names_peer(self, names: tuple[str, ...] | list[str]) -> bool:
        """Whether a peer known by the DNS ``names`` is in scope (always without peer_name)."""
        return self.peer_name is None or any(name_matches(self.peer_name, n) for n in names)


def name_matches(pattern: str, name: str) -> bool:
    """A DNS name against ``pattern``: exact, or ``*.suffix`` for one or more labels before it
    (case-insensitive, trailing dots ignored).

    >>> name_matches("*.example.com", "a.b.example.com")
    True
    >>> name_matches("*.example.com", "example.com")
    False
    """
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        return name.endswith(pattern[1:]) and len(name) > len(pattern) - 1
    return pattern == name


class DnsEgress(enum.StrEnum):
    """Which policed workloads may reach the cluster DNS resolver."""

    USED = "used"  # those seen resolving names in the capture, or declared (the default)
    ALL = "all"  # every policed workload (DNS is an exfiltration path: not the default)


class EntryPointMode(enum.StrEnum):
    """Which workloads are internet entry points (allowed from the internet, not only from the
    clients the capture saw)."""

    AUTO = "auto"  # declared ones, and those behind a LoadBalancer/NodePort Service or that
    #                are a recognised ingress or gateway controller (the default)
    DECLARED = "declared"  # only those declared under `entry_points`


@dataclass(frozen=True)
class WorkloadMatch:
    """Workloads named by a declaration: one ``workload`` (node id), or ``selector`` in
    ``namespace`` (every namespace when None)."""

    workload: str | None = None
    namespace: str | None = None
    selector: Labels | None = None

    def matches(self, node: str, namespace: str | None, labels: Labels) -> bool:
        if self.workload is not None:
            return node == self.workload
        if self.namespace is not None and namespace != self.namespace:
            return False
        return self.selector is None or labels.matches(self.selector)

    def describe(self) -> str:
        if self.workload is not None:
            return self.workload
        selector = ",".join(f"{k}={v}" for k, v in (self.selector or Labels()).items)
        return f"{self.namespace or '*'}/{selector or '*'}"


@dataclass(frozen=True)
class FlowEnd:
    """One end of a declared flow: workloads, or an external address block."""

    workloads: WorkloadMatch | None = None
    cidr: str | None = None

    def describe(self) -> str:
        if self.cidr is not None:
            return self.cidr
        return (self.workloads or WorkloadMatch()).describe()


@dataclass(frozen=True)
class DeclaredFlowDecl:
    """A flow the capture cannot show (a monthly batch, a failover path, a backup window).

    Allowed like an observed one, with provenance ``declared: <reason>``. Into or out of a
    restricted zone it needs ``justification`` and ``approved_by`` (the planner refuses it
    otherwise)."""

    client: FlowEnd
    server: FlowEnd
    protocol: Transport
    ports: tuple[int | None, ...]
    reason: str
    justification: str = ""
    approved_by: str = ""
    source: str = ""
    date: str = ""  # when it was approved (YYYY-MM-DD), optional
    ticket: str = ""


@dataclass(frozen=True)
class Justification:
    """An entry of the justifications register: why flows between ``client`` and ``server`` on
    ``protocol``/``ports`` are allowed (PCI DSS 1.2.5: identified, approved, with a business
    need), who approved them and when. The evidence report matches it to the flows that cross
    a restricted zone's boundary; a declared flow's ``justification`` and ``approved_by`` count
    as an entry too."""

    client: FlowEnd
    server: FlowEnd
    protocol: Transport
    ports: tuple[int | None, ...]
    reason: str
    approved_by: str
    date: str
    ticket: str = ""
    source: str = ""


@dataclass(frozen=True)
class EntryPointDecl:
    """Workloads the internet reaches: allowed from ``cidrs`` (the internet minus the cluster's
    ranges when empty) on the ports external clients were seen using."""

    workloads: WorkloadMatch
    reason: str
    cidrs: tuple[str, ...] = ()
    justification: str = ""
    approved_by: str = ""
    source: str = ""


@dataclass(frozen=True)
class ClusterNetworks:
    """The cluster's address ranges as declared (``cluster:`` in ``segmenter.yaml``): Service
    ClusterIPs (``service_cidrs``) and pod addresses (``pod_cidrs``), canonical CIDR text.
    ``source`` names where they were declared, for messages."""

    service_cidrs: tuple[str, ...] = ()
    pod_cidrs: tuple[str, ...] = ()
    source: str = ""


@dataclass(frozen=True)
class CompileOptions:
    """What lowering reads from segmenter.yaml: ``compile:``, plus the declared internet entry
    points and the cluster's ranges (top-level keys) that the internet rules exclude."""

    port_ranges: bool = False
    external_cidrs: tuple[ExternalBlock, ...] = ()
    dns_egress: DnsEgress = DnsEgress.USED
    entry_point_mode: EntryPointMode = EntryPointMode.AUTO
    entry_points: tuple[EntryPointDecl, ...] = ()
    cluster: ClusterNetworks = ClusterNetworks()
    # Per-target options by target name, as written (checked against the registry by
    # ``segmenter.targets.target_options``).
    targets: Mapping[str, Mapping[str, object]] = field(default_factory=dict, hash=False)
    path: str | None = None


@dataclass(frozen=True)
class Config:
    sensitive: tuple[SensitiveDecl, ...] = ()
    classes: dict[str, dict[str, str]] = field(default_factory=lambda: dict(BUILTIN_CLASSES))
    exclude_namespaces: tuple[str, ...] = SYSTEM_NAMESPACES
    path: str | None = None
    compile: CompileOptions = CompileOptions()
    cluster: ClusterNetworks = ClusterNetworks()
    declared_flows: tuple[DeclaredFlowDecl, ...] = ()
    justifications: tuple[Justification, ...] = ()

    def framework(self, data_class: str) -> str:
        return self.classes.get(data_class, {}).get("framework", data_class)


def _check_labels(selector: Any, *, path: str | None, record: str) -> Labels:
    if not isinstance(selector, dict) or not selector:
        raise PlanError("selector must be a non-empty map of label: value", path=path,
                        record=record)
    for key, value in selector.items():
        if not isinstance(key, str) or not is_label_key(key):
            raise PlanError(f"invalid label key {key!r} in selector", path=path, record=record)
        if not isinstance(value, str | int) or isinstance(value, bool) or not is_label_value(
            str(value)
        ):
            raise PlanError(f"invalid label value {value!r} for {key}", path=path, record=record)
    return Labels.of({str(k): str(v) for k, v in selector.items()})


def parse_sensitive_arg(spec: str) -> SensitiveDecl:
    """Parse ``CLASS=NAMESPACE/LABEL=VALUE[,LABEL=VALUE]`` (namespace may be ``*``).

    >>> d = parse_sensitive_arg("pci=payments/app=card-vault")
    >>> (d.data_class, d.namespace, d.selector.as_dict())
    ('pci', 'payments', {'app': 'card-vault'})
    """
    record = f"--sensitive {spec}"
    match = re.fullmatch(r"([a-z0-9][-a-z0-9]*)=([^/=]+)/(.+)", spec.strip())
    if not match:
        raise PlanError(
            "expected CLASS=NAMESPACE/LABEL=VALUE, e.g. pci=payments/app=card-vault",
            record=record)
    data_class, namespace, pairs = match.groups()
    selector: dict[str, str] = {}
    for pair in pairs.split(","):
        key, sep, value = pair.partition("=")
        if not sep:
            raise PlanError(f"expected LABEL=VALUE, got {pair!r}", record=record)
        selector[key.strip()] = value.strip()
    labels = _check_labels(selector, path=None, record=record)
    ns = None if namespace == "*" else namespace
    if ns is not None and not is_dns1123_label(ns):
        raise PlanError(f"invalid namespace {ns!r}", record=record)
    return SensitiveDecl(data_class, labels, ns, "store", "declared on the command line", record)


def load_config(path: str | None, extra: tuple[SensitiveDecl, ...] = ()) -> Config:
    """Read ``segmenter.yaml`` (or nothing) and add command-line declarations."""
    if path is None:
        config = Config()
    else:
        documents = [d for d in load_yaml(path) if d is not None]
        if len(documents) > 1:
            raise InputError("expected one YAML document, found several", path=path)
        config = _parse_config(At(documents[0] if documents else {}, path), path)
    classes = dict(config.classes)
    for decl in extra:
        _check_class(decl.data_class, classes, path=None, record=decl.source)
    check_conflicts(config.sensitive + extra, config.exclude_namespaces, path)
    return dataclasses.replace(config, sensitive=config.sensitive + extra, classes=classes,
                               path=path)


def check_conflicts(decls: tuple[SensitiveDecl, ...], exclude: tuple[str, ...],
                    path: str | None) -> None:
    """Declarations that cannot all hold: a store in a namespace that is not policed, or the same
    pods declared twice for one class with different roles."""
    seen: dict[tuple[str, str | None, Labels], SensitiveDecl] = {}
    for decl in decls:
        where = path if decl.source.startswith(Path(path).name if path else "\0") else None
        if decl.namespace is not None and decl.namespace in exclude:
            raise PlanError(f"declares {decl.data_class} data in namespace {decl.namespace}, "
                            "which exclude_namespaces leaves unpoliced", path=where,
                            record=decl.source)
        key = (decl.data_class, decl.namespace, decl.selector)
        earlier = seen.setdefault(key, decl)
        if earlier.role != decl.role:
            raise PlanError(f"conflicts with {earlier.source}: the same pods are declared "
                            f"{earlier.role} and {decl.role} of {decl.data_class} data",
                            path=where, record=decl.source)


def _check_class(name: str, classes: dict[str, dict[str, str]], *, path: str | None,
                 record: str) -> None:
    if name not in classes:
        known = ", ".join(sorted(classes))
        raise PlanError(f"unknown class {name!r} (known: {known}; declare custom classes under "
                        "`classes:`)", path=path, record=record)


def _parse_config(doc: At, path: str) -> Config:
    known_keys = {"version", "classes", "sensitive", "exclude_namespaces", "compile", "cluster",
                  "declared_flows", "entry_points", "justifications"}
    for key, value in doc.entries():
        if key not in known_keys:
            value.fail(f"unknown key (known: {', '.join(sorted(known_keys))})")
    version = doc.key("version")
    if version.value is not None and (type(version.value) is not int or version.value != 1):
        version.fail(f"unsupported config version {_shown(version.value)}")
    classes = dict(BUILTIN_CLASSES)
    for name, options in doc.key("classes").entries():
        if not is_dns1123_label(name):
            options.fail("class names are lowercase letters, digits and '-'")
        merged = dict(classes.get(name, {"title": name, "framework": name}))
        for key, value in options.entries():
            if key not in ("title", "framework"):
                value.fail("unknown key (known: framework, title)")
            merged[key] = value.text()
        classes[name] = merged
    decls = []
    for entry in doc.key("sensitive").items():
        record = entry.where
        for key, value in entry.entries():
            if key not in {"class", "namespace", "selector", "role", "reason"}:
                value.fail("unknown key (known: class, namespace, reason, role, selector)")
        data_class = entry.need("class").text()
        _check_class(data_class, classes, path=path, record=record)
        role = entry.key("role").text_or_none() or "store"
        if role not in {"store", "processor"}:
            entry.key("role").fail(f"role must be store or processor, not {role!r}")
        namespace = entry.key("namespace").text_or_none()
        if namespace is not None and not is_dns1123_label(namespace):
            entry.key("namespace").fail(f"invalid namespace {namespace!r}")
        selector = _check_labels(entry.key("selector").value, path=path, record=record)
        decls.append(SensitiveDecl(data_class, selector, namespace, role,
                                   entry.key("reason").text_or_none()
                                   or f"declared in {Path(path).name}",
                                   f"{Path(path).name} {record}"))
    exclude = doc.key("exclude_namespaces")
    excluded = exclude.texts() if exclude.value is not None else SYSTEM_NAMESPACES
    cluster = _parse_cluster(doc.key("cluster").value, path)
    compile_options = dataclasses.replace(
        _parse_compile(doc.key("compile").value, path),
        entry_points=_parse_entry_points(doc.key("entry_points").value, path),
        cluster=cluster, path=path)
    return Config(tuple(decls), classes, tuple(sorted(excluded)), path, compile_options, cluster,
                  _parse_declared_flows(doc.key("declared_flows").value, path),
                  _parse_justifications(doc.key("justifications").value, path))


def _parse_cluster(raw: Any, path: str) -> ClusterNetworks:
    """``cluster: {service_cidrs: [...], pod_cidrs: [...]}``: valid CIDR blocks (host bits
    zero), no block in both lists or overlapping one of the other list."""
    if raw is None:
        return ClusterNetworks()
    if not isinstance(raw, dict):
        raise PlanError("`cluster` must be a map", path=path, record="cluster")
    unknown = set(raw) - {"service_cidrs", "pod_cidrs"}
    if unknown:
        raise PlanError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))} (known: "
                        "pod_cidrs, service_cidrs)", path=path, record="cluster")
    lists: dict[str, list[ipaddress.IPv4Network | ipaddress.IPv6Network]] = {}
    for key in ("service_cidrs", "pod_cidrs"):
        entries = raw.get(key) or []
        if not isinstance(entries, list):
            raise PlanError(f"`{key}` must be a list of CIDR blocks", path=path,
                            record=f"cluster.{key}")
        nets = []
        for index, entry in enumerate(entries):
            record = f"cluster.{key}[{index}]"
            if not isinstance(entry, str):
                raise PlanError(f"expected a CIDR block such as 10.96.0.0/12, not {entry!r}",
                                path=path, record=record)
            try:
                nets.append(ipaddress.ip_network(entry.strip(), strict=True))
            except ValueError as exc:
                raise PlanError(f"invalid CIDR: {exc}", path=path, record=record) from None
        lists[key] = nets
    for i, service in enumerate(lists["service_cidrs"]):
        for j, pod in enumerate(lists["pod_cidrs"]):
            if service.version == pod.version and service.overlaps(pod):
                raise PlanError(f"Service range {service} overlaps pod range {pod}: an address "
                                "is either a ClusterIP or a pod's", path=path,
                                record=f"cluster.service_cidrs[{i}], cluster.pod_cidrs[{j}]")
    where = f"{Path(path).name} cluster"
    return ClusterNetworks(tuple(str(n) for n in lists["service_cidrs"]),
                           tuple(str(n) for n in lists["pod_cidrs"]), where)


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str | int | float | bool) else type_name(value)


def _parse_compile(raw: Any, path: str) -> CompileOptions:
    if raw is None:
        return CompileOptions()
    if not isinstance(raw, dict):
        raise PlanError("`compile` must be a map", path=path, record="compile")
    unknown = set(raw) - {"port_ranges", "external_cidrs", "dns_egress", "entry_points",
                          "targets"}
    if unknown:
        raise PlanError(f"unknown key(s) {', '.join(sorted(unknown))}", path=path,
                        record="compile")
    port_ranges = raw.get("port_ranges", False)
    if not isinstance(port_ranges, bool):
        raise PlanError("port_ranges must be true or false", path=path,
                        record="compile.port_ranges")
    dns_egress = _choice(DnsEgress, raw.get("dns_egress", DnsEgress.USED.value), path,
                         "compile.dns_egress")
    mode = _choice(EntryPointMode, raw.get("entry_points", EntryPointMode.AUTO.value), path,
                   "compile.entry_points")
    targets = raw.get("targets") or {}
    if not isinstance(targets, dict) or not all(
            isinstance(k, str) and isinstance(v, dict) for k, v in targets.items()):
        raise PlanError("`targets` must map target names to maps of options", path=path,
                        record="compile.targets")
    blocks: list[ExternalBlock] = []
    entries = raw.get("external_cidrs") or []
    if not isinstance(entries, list):
        raise PlanError("`external_cidrs` must be a list", path=path,
                        record="compile.external_cidrs")
    for index, entry in enumerate(entries):
        record = f"compile.external_cidrs[{index}]"
        if not isinstance(entry, dict) or "cidr" not in entry:
            raise PlanError("each entry needs a cidr", path=path, record=record)
        unknown = set(entry) - {"cidr", "except", "name", "namespace", "workload", "peer_name"}
        if unknown:
            raise PlanError(f"unknown key(s) {', '.join(sorted(unknown))}", path=path,
                            record=record)
        net = _network(entry["cidr"], path, record)
        excepts = []
        raw_excepts = entry.get("except") or []
        if not isinstance(raw_excepts, list):
            raise PlanError(f"must be a list, not {type_name(raw_excepts)}", path=path,
                            record=f"{record}.except")
        for item in raw_excepts:
            sub = _network(item, path, record)
            # NetworkPolicy rejects an except that is not a strict subset of cidr.
            if sub.version != net.version or not sub.subnet_of(net) or sub == net:  # type: ignore[arg-type]
                raise PlanError(f"except {sub} is not a strict subset of {net}", path=path,
                                record=record)
            excepts.append(str(sub))
        name = str(entry.get("name") or str(net).replace(".", "-").replace("/", "-")
                   .replace(":", "-"))
        if not is_dns1123_label(name):
            raise PlanError(f"name {name!r} must be a DNS-1123 label", path=path, record=record)
        if any(b.name == name for b in blocks):
            raise PlanError(f"name {name!r} is used by another block", path=path, record=record)
        namespace = _namespace(entry.get("namespace"), path, record)
        workload = _workload_id(entry.get("workload"), path, record)
        if workload is not None and namespace is not None and not workload.startswith(
                f"{namespace}/"):
            raise PlanError(f"workload {workload} is not in namespace {namespace}", path=path,
                            record=record)
        peer_name = entry.get("peer_name")
        if peer_name is not None and not (isinstance(peer_name, str) and _DNS_NAME.fullmatch(
                peer_name)):
            raise PlanError(f"peer_name {peer_name!r} must be a DNS name, optionally starting "
                            "with '*.'", path=path, record=record)
        blocks.append(ExternalBlock(str(net), tuple(sorted(excepts)), name, namespace, workload,
                                    peer_name))
    return CompileOptions(port_ranges, tuple(blocks), dns_egress, mode,
                          targets={str(k): dict(v) for k, v in sorted(targets.items())})


_DNS_NAME = re.compile(r"(\*\.)?([a-zA-Z0-9_]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.)*"
                       r"[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?\.?")
_Choice = TypeVar("_Choice", bound=enum.StrEnum)


def _choice(kind: type[_Choice], value: Any, path: str, record: str) -> _Choice:
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(m.value for m in kind)
        raise PlanError(f"{value!r} is not one of {known}", path=path, record=record) from None


def _network(value: Any, path: str, record: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(value, str):
        raise PlanError(f"expected a CIDR block such as 10.0.0.0/8, not {type_name(value)}",
                        path=path, record=record)
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise PlanError(f"invalid CIDR: {exc}", path=path, record=record) from exc


def _namespace(value: Any, path: str, record: str) -> str | None:
    if value is not None and (not isinstance(value, str) or not is_dns1123_label(value)):
        raise PlanError(f"invalid namespace {value!r}", path=path, record=record)
    return value


def _workload_id(value: Any, path: str, record: str) -> str | None:
    if value is None:
        return None
    try:
        parsed = NodeId.parse(str(value))
    except ValueError:
        parsed = None
    if parsed is None or parsed.kind is not NodeKind.WORKLOAD:
        raise PlanError(f"workload {value!r} must be namespace/Kind/name, e.g. "
                        "payments/Deployment/payments-api", path=path, record=record)
    return str(value)


def _workloads(raw: Mapping[str, Any], path: str, record: str) -> WorkloadMatch:
    """``workload: ns/Kind/name``, or ``namespace`` and/or ``selector``."""
    workload = _workload_id(raw.get("workload"), path, record)
    namespace = _namespace(raw.get("namespace"), path, record)
    selector = (_check_labels(raw["selector"], path=path, record=record)
                if raw.get("selector") is not None else None)
    if workload is not None and (namespace is not None or selector is not None):
        raise PlanError("give `workload`, or `namespace` and `selector`, not both", path=path,
                        record=record)
    if workload is None and namespace is None and selector is None:
        raise PlanError("name the workloads: `workload`, or `namespace` and/or `selector`",
                        path=path, record=record)
    return WorkloadMatch(workload, namespace, selector)


def _text(raw: Mapping[str, Any], key: str, path: str, record: str, *,
          required: bool = False) -> str:
    value = raw.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise PlanError(f"`{key}` is required (say why)", path=path, record=record)
        return ""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise PlanError(f"`{key}` must be text", path=path, record=record)
    return str(value).strip()


def _edge(entry: Mapping[str, Any], path: str, record: str
          ) -> tuple[FlowEnd, FlowEnd, Transport, tuple[int | None, ...]]:
    """The ``from``, ``to``, ``protocol`` and ``port``/``ports`` of a declared flow or a
    justification."""
    ends = []
    for key in ("from", "to"):
        end = entry.get(key)
        where = f"{record}.{key}"
        if not isinstance(end, dict):
            raise PlanError(f"`{key}` is required: a map with `workload`, `namespace`/"
                            "`selector`, or `cidr`", path=path, record=where)
        if "cidr" in end:
            if set(end) != {"cidr"}:
                raise PlanError("`cidr` stands alone (an address block outside the "
                                "cluster)", path=path, record=where)
            ends.append(FlowEnd(cidr=str(_network(end["cidr"], path, where))))
        else:
            unknown = set(end) - {"workload", "namespace", "selector"}
            if unknown:
                raise PlanError(f"unknown key(s) {', '.join(sorted(unknown))}", path=path,
                                record=where)
            ends.append(FlowEnd(workloads=_workloads(end, path, where)))
    if ends[0].cidr is not None and ends[1].cidr is not None:
        raise PlanError("a flow needs a workload at one end at least", path=path,
                        record=record)
    try:
        protocol = Transport.parse(str(entry.get("protocol", "TCP")))
    except ValueError as exc:
        raise PlanError(str(exc), path=path, record=f"{record}.protocol") from None
    if "port" in entry and "ports" in entry:
        raise PlanError("give `port` or `ports`, not both", path=path, record=record)
    ports_raw = entry.get("ports", [entry["port"]] if "port" in entry else [])
    if not isinstance(ports_raw, list):
        raise PlanError("`ports` must be a list of numbers", path=path, record=record)
    ports: list[int | None] = []
    for port in ports_raw:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise PlanError(f"port {port!r} must be a number 1-65535 (an ICMP type for "
                            "ICMP)", path=path, record=record)
        ports.append(port)
    if not ports:
        if protocol in (Transport.TCP, Transport.UDP, Transport.SCTP):
            raise PlanError(f"`port` is required for {protocol} (a flow opens named ports, "
                            "never all of them)", path=path, record=record)
        ports.append(None)
    return ends[0], ends[1], protocol, tuple(sorted(set(ports), key=lambda p: p or 0))


def _date(raw: Mapping[str, Any], path: str, record: str, *, required: bool) -> str:
    """``date``: YAML reads 2026-11-20 as a date; a string must be one too."""
    value = raw.get("date")
    if value is None or value == "":
        if required:
            raise PlanError("`date` is required: when it was approved (YYYY-MM-DD)", path=path,
                            record=record)
        return ""
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        return value.isoformat()
    try:
        return datetime.date.fromisoformat(str(value).strip()).isoformat()
    except ValueError:
        raise PlanError(f"date {value!r} must be YYYY-MM-DD", path=path,
                        record=f"{record}.date") from None


def _entries(raw: Any, path: str, key: str, known: frozenset[str]
             ) -> Iterator[tuple[str, dict[str, Any]]]:
    """(record, entry) of each entry of the list ``key``: a map with only ``known`` keys."""
    if not isinstance(raw, list):
        raise PlanError(f"`{key}` must be a list", path=path, record=key)
    for index, entry in enumerate(raw):
        record = f"{key}[{index}]"
        if not isinstance(entry, dict):
            raise PlanError("each entry must be a map", path=path, record=record)
        unknown = set(entry) - known
        if unknown:
            raise PlanError(f"unknown key(s) {', '.join(sorted(unknown))}", path=path,
                            record=record)
        yield record, entry


def _parse_declared_flows(raw: Any, path: str) -> tuple[DeclaredFlowDecl, ...]:
    if raw is None:
        return ()
    out = []
    name = Path(path).name
    known = frozenset({"from", "to", "protocol", "port", "ports", "reason", "justification",
                       "approved_by", "date", "ticket"})
    for record, entry in _entries(raw, path, "declared_flows", known):
        client, server, protocol, ports = _edge(entry, path, record)
        out.append(DeclaredFlowDecl(
            client, server, protocol, ports,
            _text(entry, "reason", path, record, required=True),
            _text(entry, "justification", path, record),
            _text(entry, "approved_by", path, record), f"{name} {record}",
            _date(entry, path, record, required=False), _text(entry, "ticket", path, record)))
    return tuple(out)


def _parse_justifications(raw: Any, path: str) -> tuple[Justification, ...]:
    """``justifications``: every entry names its flows (as a declared flow does), the business
    need, the approver and the date; a ticket is optional."""
    if raw is None:
        return ()
    out = []
    name = Path(path).name
    known = frozenset({"from", "to", "protocol", "port", "ports", "reason", "approved_by",
                       "date", "ticket"})
    for record, entry in _entries(raw, path, "justifications", known):
        client, server, protocol, ports = _edge(entry, path, record)
        approver = _text(entry, "approved_by", path, record)
        if not approver:
            raise PlanError("`approved_by` is required: who approved it", path=path,
                            record=record)
        out.append(Justification(
            client, server, protocol, ports, _text(entry, "reason", path, record, required=True),
            approver, _date(entry, path, record, required=True),
            _text(entry, "ticket", path, record), f"{name} {record}"))
    return tuple(out)


def _parse_entry_points(raw: Any, path: str) -> tuple[EntryPointDecl, ...]:
    if raw is None:
        return ()
    out = []
    name = Path(path).name
    known = frozenset({"workload", "namespace", "selector", "reason", "cidrs", "justification",
                       "approved_by"})
    for record, entry in _entries(raw, path, "entry_points", known):
        cidrs = entry.get("cidrs") or []
        if not isinstance(cidrs, list):
            raise PlanError("`cidrs` must be a list", path=path, record=f"{record}.cidrs")
        nets = sorted({_network(c, path, f"{record}.cidrs") for c in cidrs},
                      key=lambda n: (n.version, n))
        out.append(EntryPointDecl(
            _workloads(entry, path, record), _text(entry, "reason", path, record, required=True),
            tuple(str(n) for n in nets), _text(entry, "justification", path, record),
            _text(entry, "approved_by", path, record), f"{name} {record}"))
    return tuple(out)
