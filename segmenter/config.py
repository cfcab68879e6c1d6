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

Pods (or their controllers' pod templates) may also declare themselves with the label or
annotation ``segmenter.io/data-class: pci`` (several classes separated by commas).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segmenter.compliance import BUILTIN_CLASSES
from segmenter.documents import At, load_yaml
from segmenter.errors import InputError, PlanError, type_name
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
class Config:
    sensitive: tuple[SensitiveDecl, ...] = ()
    classes: dict[str, dict[str, str]] = field(default_factory=lambda: dict(BUILTIN_CLASSES))
    exclude_namespaces: tuple[str, ...] = SYSTEM_NAMESPACES
    path: str | None = None
    compile: CompileOptions = CompileOptions()

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
    return Config(config.sensitive + extra, classes, config.exclude_namespaces, path,
                  config.compile)


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
    known_keys = {"version", "classes", "sensitive", "exclude_namespaces", "compile"}
    for key, value in doc.entries():
        if key not in known_keys:
            value.fail(f"unknown key (known: {', '.join(sorted(known_keys))})")
    version = doc.key("version")
    if version.value is not None and (type(version.value) is not int or version.value != 1):
        version.fail(f"unsupported config version {_text(version.value)}")
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
    return Config(tuple(decls), classes, tuple(sorted(excluded)), path,
                  _parse_compile(doc.key("compile"), path))


def _text(value: Any) -> str:
    return repr(value) if isinstance(value, str | int | float | bool) else type_name(value)


def _parse_compile(raw: At, path: str) -> CompileOptions:
    if raw.value is None:
        return CompileOptions()
    for key, value in raw.entries():
        if key not in ("port_ranges", "external_cidrs"):
            value.fail("unknown key (known: external_cidrs, port_ranges)")
    port_ranges = raw.key("port_ranges")
    blocks: list[ExternalBlock] = []
    for entry in raw.key("external_cidrs").items():
        for key, value in entry.entries():
            if key not in ("cidr", "except", "name"):
                value.fail("unknown key (known: cidr, except, name)")
        net = _network(entry.need("cidr"))
        excepts = []
        for item in entry.key("except").items():
            sub = _network(item)
            # NetworkPolicy rejects an except that is not a strict subset of cidr.
            if sub.version != net.version or not sub.subnet_of(net) or sub == net:  # type: ignore[arg-type]
                item.fail(f"except {sub} is not a strict subset of {net}")
            excepts.append(str(sub))
        name = entry.key("name").text_or_none() or (
            str(net).replace(".", "-").replace("/", "-").replace(":", "-"))
        if not is_dns1123_label(name):
            entry.key("name").fail(f"name {name!r} must be a DNS-1123 label")
        if any(b.name == name for b in blocks):
            entry.key("name").fail(f"name {name!r} is used by another block")
        blocks.append(ExternalBlock(str(net), tuple(sorted(excepts)), name))
    return CompileOptions(port_ranges.flag() if port_ranges.value is not None else False,
                          tuple(blocks))


def _network(at: At) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(at.text(), strict=True)
    except ValueError as exc:
        at.fail(f"invalid CIDR: {exc}")
