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
    compile:
      port_ranges: false          # fold runs of 3+ consecutive observed ports into endPort
      external_cidrs:             # external peers inside these blocks are allowed as the block
        - {cidr: 203.0.113.0/24, except: [203.0.113.128/25], name: payment-gateway}
    cluster:                      # optional: the cluster's address ranges, when the inventory
      service_cidrs: [10.96.0.0/12]   # does not show them (kube-apiserver
      pod_cidrs: [10.244.0.0/16]      # --service-cluster-ip-range, the CNI's pod pool)

Pods (or their controllers' pod templates) may also declare themselves with the label or
annotation ``segmenter.io/data-class: pci`` (several classes separated by commas).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from segmenter.compliance import BUILTIN_CLASSES
from segmenter.errors import InputError, PlanError
from segmenter.k8s import SYSTEM_NAMESPACES, is_dns1123_label, is_label_key, is_label_value
from segmenter.model import Labels

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
    """A configured aggregate for external peers: ``cidr`` minus ``excepts``."""

    cidr: str
    excepts: tuple[str, ...] = ()
    name: str = ""


@dataclass(frozen=True)
class CompileOptions:
    port_ranges: bool = False
    external_cidrs: tuple[ExternalBlock, ...] = ()


@dataclass(frozen=True)
class ClusterNetworks:
    """The cluster's address ranges as declared (``cluster:`` in ``segmenter.yaml``): Service
    ClusterIPs (``service_cidrs``) and pod addresses (``pod_cidrs``), canonical CIDR text.
    ``source`` names where they were declared, for messages."""

    service_cidrs: tuple[str, ...] = ()
    pod_cidrs: tuple[str, ...] = ()
    source: str = ""


@dataclass(frozen=True)
class Config:
    sensitive: tuple[SensitiveDecl, ...] = ()
    classes: dict[str, dict[str, str]] = field(default_factory=lambda: dict(BUILTIN_CLASSES))
    exclude_namespaces: tuple[str, ...] = SYSTEM_NAMESPACES
    path: str | None = None
    compile: CompileOptions = CompileOptions()
    cluster: ClusterNetworks = ClusterNetworks()

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
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read config: {exc.strerror or exc}", path=path) from exc
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}" if mark is not None else None
            raise InputError(f"not valid YAML: {getattr(exc, 'problem', exc)}", path=path,
                             record=where) from exc
        config = _parse_config(raw or {}, path)
    classes = dict(config.classes)
    for decl in extra:
        _check_class(decl.data_class, classes, path=None, record=decl.source)
    check_conflicts(config.sensitive + extra, config.exclude_namespaces, path)
    return Config(config.sensitive + extra, classes, config.exclude_namespaces, path,
                  config.compile, config.cluster)


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


def _parse_config(raw: Any, path: str) -> Config:
    if not isinstance(raw, dict):
        raise PlanError("the config must be a map", path=path)
    known_keys = {"version", "classes", "sensitive", "exclude_namespaces", "compile", "cluster"}
    for key in raw:
        if key not in known_keys:
            raise PlanError(f"unknown key {key!r} (known: {', '.join(sorted(known_keys))})",
                            path=path, record=str(key))
    if raw.get("version", 1) != 1:
        raise PlanError(f"unsupported config version {raw.get('version')!r}", path=path,
                        record="version")
    classes = dict(BUILTIN_CLASSES)
    for name, options in (raw.get("classes") or {}).items():
        record = f"classes.{name}"
        if not isinstance(name, str) or not is_dns1123_label(name):
            raise PlanError("class names are lowercase letters, digits and '-'", path=path,
                            record=record)
        if options is not None and not isinstance(options, dict):
            raise PlanError("class options must be a map", path=path, record=record)
        merged = dict(classes.get(name, {"title": name, "framework": name}))
        merged.update({str(k): str(v) for k, v in (options or {}).items()})
        classes[name] = merged
    decls = []
    entries = raw.get("sensitive") or []
    if not isinstance(entries, list):
        raise PlanError("`sensitive` must be a list", path=path, record="sensitive")
    for index, entry in enumerate(entries):
        record = f"sensitive[{index}]"
        if not isinstance(entry, dict):
            raise PlanError("each entry must be a map", path=path, record=record)
        unknown = set(entry) - {"class", "namespace", "selector", "role", "reason"}
        if unknown:
            raise PlanError(f"unknown key(s) {', '.join(sorted(unknown))}", path=path,
                            record=record)
        data_class = entry.get("class")
        if not isinstance(data_class, str):
            raise PlanError("`class` is required", path=path, record=record)
        _check_class(data_class, classes, path=path, record=record)
        role = entry.get("role", "store")
        if role not in {"store", "processor"}:
            raise PlanError(f"role must be store or processor, not {role!r}", path=path,
                            record=record)
        namespace = entry.get("namespace")
        if namespace is not None and (not isinstance(namespace, str)
                                      or not is_dns1123_label(namespace)):
            raise PlanError(f"invalid namespace {namespace!r}", path=path, record=record)
        selector = _check_labels(entry.get("selector"), path=path, record=record)
        decls.append(SensitiveDecl(data_class, selector, namespace, role,
                                   str(entry.get("reason") or f"declared in {Path(path).name}"),
                                   f"{Path(path).name} {record}"))
    exclude = raw.get("exclude_namespaces", list(SYSTEM_NAMESPACES))
    if not isinstance(exclude, list) or not all(isinstance(n, str) for n in exclude):
        raise PlanError("`exclude_namespaces` must be a list of names", path=path,
                        record="exclude_namespaces")
    return Config(tuple(decls), classes, tuple(sorted(exclude)), path,
                  _parse_compile(raw.get("compile"), path),
                  _parse_cluster(raw.get("cluster"), path))


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


def _parse_compile(raw: Any, path: str) -> CompileOptions:
    if raw is None:
        return CompileOptions()
    if not isinstance(raw, dict):
        raise PlanError("`compile` must be a map", path=path, record="compile")
    unknown = set(raw) - {"port_ranges", "external_cidrs"}
    if unknown:
        raise PlanError(f"unknown key(s) {', '.join(sorted(unknown))}", path=path,
                        record="compile")
    port_ranges = raw.get("port_ranges", False)
    if not isinstance(port_ranges, bool):
        raise PlanError("port_ranges must be true or false", path=path,
                        record="compile.port_ranges")
    blocks: list[ExternalBlock] = []
    for index, entry in enumerate(raw.get("external_cidrs") or []):
        record = f"compile.external_cidrs[{index}]"
        if not isinstance(entry, dict) or "cidr" not in entry:
            raise PlanError("each entry needs a cidr", path=path, record=record)
        try:
            net = ipaddress.ip_network(str(entry["cidr"]), strict=True)
            excepts = []
            for item in entry.get("except") or []:
                sub = ipaddress.ip_network(str(item), strict=True)
                # NetworkPolicy rejects an except that is not a strict subset of cidr.
                if sub.version != net.version or not sub.subnet_of(net) or sub == net:  # type: ignore[arg-type]
                    raise PlanError(f"except {sub} is not a strict subset of {net}", path=path,
                                    record=record)
                excepts.append(str(sub))
        except ValueError as exc:
            raise PlanError(f"invalid CIDR: {exc}", path=path, record=record) from exc
        name = str(entry.get("name") or str(net).replace(".", "-").replace("/", "-")
                   .replace(":", "-"))
        if not is_dns1123_label(name):
            raise PlanError(f"name {name!r} must be a DNS-1123 label", path=path, record=record)
        if any(b.name == name for b in blocks):
            raise PlanError(f"name {name!r} is used by another block", path=path, record=record)
        blocks.append(ExternalBlock(str(net), tuple(sorted(excepts)), name))
    return CompileOptions(port_ranges, tuple(blocks))
