"""Calico ``projectcalico.org/v3`` output checked against Calico's own CRD schemas.

The CRDs are third-party files and are not kept in this repository: they are read in place
from ``../shared/corpora/crds/calico`` (Calico's ``api/config/crd/projectcalico.org_*.yaml``,
with its licence). ``SEGMENTER_CALICO_CRDS`` points at another folder of them::

    SEGMENTER_CALICO_CRDS=/path/to/crds .venv/bin/pytest tests/test_calico_schema.py

Without either, every test here skips with the reason.

What is checked, per document, as the API server would for a CRD in native v3 CRD mode:

* the kind has a CRD whose group and served version match ``apiVersion``;
* schema ``default`` values are applied first (the API server defaults before it validates);
* the ``openAPIV3Schema`` of that version, with ``jsonschema`` (Draft 4, the closest to
  OpenAPI 3.0). Kubernetes extensions: ``x-kubernetes-int-or-string`` accepts an integer or a
  string; ``x-kubernetes-list-type: set`` requires unique items; an object with ``properties``
  rejects unknown fields (``kubectl``'s default strict field validation) unless it carries
  ``x-kubernetes-preserve-unknown-fields``;
* the ``metadata`` the schema leaves open (name, namespace against the CRD's scope, labels and
  annotation keys) with the API server's ObjectMeta rules;
* every ``x-kubernetes-validations`` CEL rule on a value the document has, through a Python
  reading of that rule (``CEL_RULES``). A rule without a reading fails the test, so a new rule
  in a newer CRD gets reviewed instead of silently passing.

Not checked: validation Calico does in Go (its API server or webhook), such as selector syntax.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from segmenter.cli import main
from tests.conftest import CORPORA

ENV = "SEGMENTER_CALICO_CRDS"
SAMPLE = Path(__file__).resolve().parent.parent / "sample"
RUN_ARGS = [
    str(SAMPLE / "shop.pcapng"),
    "--inventory", str(SAMPLE / "shop-inventory.json"),
    "--config", str(SAMPLE / "segmenter.yaml"),
]
VERSION = "v3"

DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_SUBDOMAIN = re.compile(rf"{DNS_LABEL}(\.{DNS_LABEL})*")
QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
MAX_ANNOTATIONS_BYTES = 256 * 1024


# ---------------------------------------------------------------------------------------------
# CRDs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Crd:
    group: str
    kind: str
    scope: str
    schema: dict[str, Any]
    source: str


def load_crds(folder: Path) -> dict[str, Crd]:
    """Every CustomResourceDefinition in ``folder``, by kind, with its served ``v3`` schema."""
    crds: dict[str, Crd] = {}
    for path in sorted(folder.glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if version["name"] == VERSION and version.get("served", False):
                    crds[spec["names"]["kind"]] = Crd(
                        group=spec["group"], kind=spec["names"]["kind"], scope=spec["scope"],
                        schema=version["schema"]["openAPIV3Schema"], source=path.name)
    return crds


def to_json_schema(node: Any) -> Any:
    """An OpenAPI v3 structural schema as a Draft 4 JSON schema, with the Kubernetes extensions
    turned into what the API server enforces."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: to_json_schema(value) for key, value in node.items()
           if not key.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if ("properties" in node and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def apply_defaults(schema: dict[str, Any], value: Any) -> None:
    """Fill schema ``default`` values into ``value`` in place, as the API server does."""
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                apply_defaults(sub, value[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for item in value.values():
                apply_defaults(extra, item)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(schema["items"], item)


# ---------------------------------------------------------------------------------------------
# CEL rules, read by hand
# ---------------------------------------------------------------------------------------------


def _has(obj: Any, key: str) -> bool:
    return isinstance(obj, dict) and obj.get(key) is not None


def _empty(obj: Any, key: str) -> bool:
    """``!has(self.key) || size(self.key) == 0``."""
    return not _has(obj, key) or len(obj[key]) == 0


def _true(obj: Any, key: str) -> bool:
    """``has(self.key) && self.key``."""
    return _has(obj, key) and obj[key] is True


def _protocol_ok(rule: Any, key: str, names: tuple[str, int], version: int) -> bool:
    """``(!has(self.key) || (self.key != name && self.key != number)) || !has(self.ipVersion)
    || self.ipVersion == version``. Python's ``'TCP' != 1`` is CEL's heterogeneous equality."""
    return (not _has(rule, key) or rule[key] not in names
            or not _has(rule, "ipVersion") or rule["ipVersion"] == version)


def _ip_or_cidr(text: Any) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except (TypeError, ValueError):
        return False
    return True


def _tier_action(name: str, action: str) -> Callable[[Any], bool]:
    return lambda s: s["metadata"].get("name") != name or s["spec"].get("defaultAction") == action


def _tier_order(name: str, order: float) -> Callable[[Any], bool]:
    # CEL compares the number as a double: 1000000 and 1000000.0 are equal.
    return lambda s: s["metadata"].get("name") != name or (
        _has(s["spec"], "order") and float(s["spec"]["order"]) == order)


# Keyed by the rule text with whitespace collapsed; the value says whether ``self`` passes.
CEL_RULES: dict[str, Callable[[Any], bool]] = {
    # EntityRule (source, destination)
    "!has(self.selector) || !self.selector.contains('global(')":
        lambda s: not _has(s, "selector") or "global(" not in s["selector"],
    "!has(self.services) || !has(self.namespaceSelector) || size(self.namespaceSelector) == 0":
        lambda s: not _has(s, "services") or _empty(s, "namespaceSelector"),
    "!has(self.services) || !has(self.serviceAccounts)":
        lambda s: not _has(s, "services") or not _has(s, "serviceAccounts"),
    "!has(self.services) || size(self.services.name) > 0":
        lambda s: not _has(s, "services") or len(s["services"].get("name") or "") > 0,
    "!has(self.services) || (!has(self.selector) || size(self.selector) == 0) && "
    "(!has(self.notSelector) || size(self.notSelector) == 0)":
        lambda s: not _has(s, "services") or (_empty(s, "selector") and _empty(s, "notSelector")),
    "!has(self.services) || (!has(self.nets) || size(self.nets) == 0) && "
    "(!has(self.notNets) || size(self.notNets) == 0)":
        lambda s: not _has(s, "services") or (_empty(s, "nets") and _empty(s, "notNets")),
    # ICMPFields (icmp, notICMP)
    "!has(self.code) || has(self.type)": lambda s: not _has(s, "code") or _has(s, "type"),
    # Rule
    "!has(self.http) || !has(self.protocol) || self.protocol == 'TCP' || self.protocol == 6":
        lambda s: not _has(s, "http") or not _has(s, "protocol") or s["protocol"] in ("TCP", 6),
    "!has(self.http) || !has(self.protocol) || self.protocol == 'TCP'":
        lambda s: not _has(s, "http") or not _has(s, "protocol") or s["protocol"] == "TCP",
    "self.action == 'Allow' || !has(self.http)":
        lambda s: s.get("action") == "Allow" or not _has(s, "http"),
    "!has(self.destination) || !has(self.destination.services) || "
    "(!has(self.destination.ports) || size(self.destination.ports) == 0) && "
    "(!has(self.destination.notPorts) || size(self.destination.notPorts) == 0)":
        lambda s: (not _has(s, "destination") or not _has(s["destination"], "services")
                   or (_empty(s["destination"], "ports")
                       and _empty(s["destination"], "notPorts"))),
    "!has(self.icmp) || (has(self.protocol) && (self.protocol == 'ICMP' || "
    "self.protocol == 'ICMPv6' || self.protocol == 1 || self.protocol == 58))":
        lambda s: (not _has(s, "icmp")
                   or (_has(s, "protocol") and s["protocol"] in ("ICMP", "ICMPv6", 1, 58))),
    "(!has(self.protocol) || (self.protocol != 'ICMP' && self.protocol != 1)) || "
    "!has(self.ipVersion) || self.ipVersion == 4":
        lambda s: _protocol_ok(s, "protocol", ("ICMP", 1), 4),
    "(!has(self.protocol) || (self.protocol != 'ICMPv6' && self.protocol != 58)) || "
    "!has(self.ipVersion) || self.ipVersion == 6":
        lambda s: _protocol_ok(s, "protocol", ("ICMPv6", 58), 6),
    "(!has(self.notProtocol) || (self.notProtocol != 'ICMP' && self.notProtocol != 1)) || "
    "!has(self.ipVersion) || self.ipVersion == 4":
        lambda s: _protocol_ok(s, "notProtocol", ("ICMP", 1), 4),
    "(!has(self.notProtocol) || (self.notProtocol != 'ICMPv6' && self.notProtocol != 58)) || "
    "!has(self.ipVersion) || self.ipVersion == 6":
        lambda s: _protocol_ok(s, "notProtocol", ("ICMPv6", 58), 6),
    # NetworkPolicy / StagedNetworkPolicy spec
    "!has(self.serviceAccountSelector) || !self.serviceAccountSelector.contains('global(')":
        lambda s: (not _has(s, "serviceAccountSelector")
                   or "global(" not in s["serviceAccountSelector"]),
    # GlobalNetworkPolicy / StagedGlobalNetworkPolicy spec
    "!((has(self.doNotTrack) && self.doNotTrack) && (has(self.preDNAT) && self.preDNAT))":
        lambda s: not (_true(s, "doNotTrack") and _true(s, "preDNAT")),
    "(!has(self.preDNAT) || !self.preDNAT) || !has(self.egress) || size(self.egress) == 0":
        lambda s: not _true(s, "preDNAT") or _empty(s, "egress"),
    "(!has(self.preDNAT) || !self.preDNAT) || !has(self.types) || "
    "!self.types.exists(t, t == 'Egress')":
        lambda s: not _true(s, "preDNAT") or "Egress" not in (s.get("types") or []),
    "(has(self.applyOnForward) && self.applyOnForward) || ((!has(self.doNotTrack) || "
    "!self.doNotTrack) && (!has(self.preDNAT) || !self.preDNAT))":
        lambda s: (_true(s, "applyOnForward")
                   or (not _true(s, "doNotTrack") and not _true(s, "preDNAT"))),
    # Tier (the whole object)
    "self.metadata.name == 'kube-admin' ? self.spec.defaultAction == 'Pass' : true":
        _tier_action("kube-admin", "Pass"),
    "self.metadata.name == 'kube-baseline' ? self.spec.defaultAction == 'Pass' : true":
        _tier_action("kube-baseline", "Pass"),
    "self.metadata.name == 'default' ? self.spec.defaultAction == 'Deny' : true":
        _tier_action("default", "Deny"),
    # The same rules as Calico 3.30+ writes them (has() first), and the reserved tiers' orders
    # (the kube-admin / kube-baseline tiers of ClusterNetworkPolicy, the default tier).
    "self.metadata.name == 'kube-admin' ? (has(self.spec.defaultAction) && "
    "self.spec.defaultAction == 'Pass') : true": _tier_action("kube-admin", "Pass"),
    "self.metadata.name == 'kube-baseline' ? (has(self.spec.defaultAction) && "
    "self.spec.defaultAction == 'Pass') : true": _tier_action("kube-baseline", "Pass"),
    "self.metadata.name == 'default' ? (has(self.spec.defaultAction) && "
    "self.spec.defaultAction == 'Deny') : true": _tier_action("default", "Deny"),
    "self.metadata.name != 'default' || (has(self.spec.order) && self.spec.order == 1000000.0)":
        _tier_order("default", 1000000.0),
    "self.metadata.name != 'kube-admin' || (has(self.spec.order) && self.spec.order == 1000.0)":
        _tier_order("kube-admin", 1000.0),
    "self.metadata.name != 'kube-baseline' || (has(self.spec.order) && "
    "self.spec.order == 10000000.0)": _tier_order("kube-baseline", 10000000.0),
    # GlobalNetworkPolicy spec.namespaceSelector
    "!has(self.namespaceSelector) || !self.namespaceSelector.contains('global(')":
        lambda s: not _has(s, "namespaceSelector") or "global(" not in s["namespaceSelector"],
    # GlobalNetworkSet spec.nets (Kubernetes' isCIDR / isIP)
    "self.all(n, isCIDR(n) || isIP(n))": lambda s: all(_ip_or_cidr(n) for n in s),
}


def _normalize(rule: str) -> str:
    return " ".join(rule.split())


def cel_errors(schema: dict[str, Any], value: Any, path: str,
               rules: dict[str, Callable[[Any], bool]] | None = None) -> Iterator[str]:
    """Every CEL rule in ``schema`` that applies to a value present in ``value`` and fails.

    ``rules`` holds the readings by rule text (default: ``CEL_RULES``, Calico's)."""
    if value is None:
        return
    readings = CEL_RULES if rules is None else rules
    for check in schema.get("x-kubernetes-validations", []):
        rule = _normalize(check["rule"])
        reading = readings.get(rule)
        if reading is None:
            yield f"{path}: CEL rule not reviewed, read it and add it to CEL_RULES: {rule}"
        elif not reading(value):
            yield f"{path}: CEL: {check.get('message', rule)} ({rule})"
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                yield from cel_errors(sub, value[key], f"{path}.{key}", rules)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in value.items():
                yield from cel_errors(extra, item, f"{path}[{key!r}]", rules)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from cel_errors(schema["items"], item, f"{path}[{index}]", rules)


# ---------------------------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------------------------


def _qualified_key_errors(key: Any, where: str) -> Iterator[str]:
    if not isinstance(key, str):
        yield f"{where}: key {key!r} is not a string"
        return
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not DNS_SUBDOMAIN.fullmatch(prefix)):
        yield f"{where}: key {key!r}: prefix is not a DNS subdomain"
    if len(name) > 63 or not QUALIFIED_NAME.fullmatch(name):
        yield f"{where}: key {key!r}: name is not a qualified name"


def metadata_errors(doc: dict[str, Any], crd: Crd) -> Iterator[str]:
    """ObjectMeta as the API server checks it for a custom resource."""
    meta = doc.get("metadata") or {}
    name = meta.get("name")
    if not isinstance(name, str) or len(name) > 253 or not DNS_SUBDOMAIN.fullmatch(name):
        yield f"metadata.name: {name!r} is not a DNS subdomain"
    namespace = meta.get("namespace")
    if crd.scope == "Namespaced":
        if not isinstance(namespace, str) or len(namespace) > 63 or not re.fullmatch(
                DNS_LABEL, namespace):
            yield f"metadata.namespace: {namespace!r} is not a DNS label (kind is namespaced)"
    elif namespace is not None:
        yield f"metadata.namespace: {namespace!r} set on a cluster-scoped kind"
    for key, value in (meta.get("labels") or {}).items():
        yield from _qualified_key_errors(key, "metadata.labels")
        if not isinstance(value, str) or (value and (
                len(value) > 63 or not QUALIFIED_NAME.fullmatch(value))):
            yield f"metadata.labels[{key!r}]: value {value!r} is not a valid label value"
    annotations = meta.get("annotations") or {}
    size = 0
    for key, value in annotations.items():
        yield from _qualified_key_errors(key, "metadata.annotations")
        if not isinstance(value, str):
            yield f"metadata.annotations[{key!r}]: value {value!r} is not a string"
            continue
        size += len(str(key).encode()) + len(value.encode())
    if size > MAX_ANNOTATIONS_BYTES:
        yield f"metadata.annotations: {size} bytes, over {MAX_ANNOTATIONS_BYTES}"


def document_errors(doc: Any, crds: dict[str, Crd]) -> list[str]:
    """Why the API server would refuse ``doc`` (empty when it would accept it)."""
    import jsonschema

    if not isinstance(doc, dict):
        return [f"not a mapping: {doc!r}"]
    kind = doc.get("kind")
    crd = crds.get(str(kind))
    if crd is None:
        return [f"no CRD with a served {VERSION} version for kind {kind!r}"]
    if doc.get("apiVersion") != f"{crd.group}/{VERSION}":
        return [f"apiVersion {doc.get('apiVersion')!r}, the CRD serves {crd.group}/{VERSION}"]
    defaulted = copy.deepcopy(doc)
    apply_defaults(crd.schema, defaulted)
    validator = jsonschema.Draft4Validator(to_json_schema(crd.schema))
    errors = [f"{error.json_path}: {error.message}"
              for error in sorted(validator.iter_errors(defaulted), key=lambda e: e.json_path)]
    errors += metadata_errors(defaulted, crd)
    errors += cel_errors(crd.schema, defaulted, "$")
    return errors


def calico_documents(folder: Path) -> Iterator[tuple[str, Any]]:
    """``(file, document)`` for every Calico document in ``folder`` (kustomization aside)."""
    for path in sorted(folder.rglob("*.y*ml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                yield str(path.relative_to(folder)), doc


def folder_errors(folder: Path, crds: dict[str, Crd]) -> tuple[int, list[str]]:
    """How many documents ``folder`` holds, and every error, prefixed with file, kind and name."""
    count, errors = 0, []
    for rel, doc in calico_documents(folder):
        count += 1
        label = f"{rel} {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}" \
            if isinstance(doc, dict) else rel
        errors += [f"{label}: {error}" for error in document_errors(doc, crds)]
    return count, errors


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crds() -> dict[str, Crd]:
    pytest.importorskip("jsonschema")
    folder = os.environ.get(ENV) or str(CORPORA / "crds" / "calico")
    if not os.environ.get(ENV) and not Path(folder).is_dir():
        pytest.skip(f"no Calico CRDs: ../shared/corpora/crds/calico is absent and {ENV} is not "
                    "set (point it at api/config/crd of projectcalico/calico)")
    if not Path(folder).is_dir():
        pytest.skip(f"{ENV}={folder} is not a directory")
    found = load_crds(Path(folder))
    if not found:
        pytest.fail(f"{ENV}={folder} holds no CustomResourceDefinition with a served {VERSION}")
    return found


@pytest.mark.parametrize("staged", [False, True], ids=["enforced", "staged"])
def test_calico_output_is_accepted_by_calico_crds(
        tmp_path: Path, crds: dict[str, Crd], staged: bool) -> None:
    out = tmp_path / "out"
    assert main(["run", *RUN_ARGS, "-o", str(out), *(["--staged"] if staged else [])]) == 0
    docs = list(calico_documents(out / "calico"))
    kinds = {doc["kind"] for _, doc in docs}
    policies = {"StagedNetworkPolicy", "StagedGlobalNetworkPolicy"} if staged \
        else {"NetworkPolicy", "GlobalNetworkPolicy"}
    assert {"Tier", "GlobalNetworkSet", *policies} <= kinds
    count, errors = folder_errors(out / "calico", crds)
    assert count == len(docs)
    assert not errors, "\n".join(errors)


def _good_policy() -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
        "metadata": {"name": "allow-x", "namespace": "shop"},
        "spec": {"selector": "app == 'x'", "types": ["Ingress", "Egress"],
                 "ingress": [{"action": "Allow", "protocol": "TCP",
                              "destination": {"ports": [8080, "http", "9000:9100"]}}],
                 "egress": [{"action": "Allow", "protocol": "UDP",
                             "destination": {"ports": [53]}}]},
    }


def test_checks_accept_a_good_policy(crds: dict[str, Crd]) -> None:
    assert document_errors(_good_policy(), crds) == []


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda d: d["spec"]["ingress"][0].update(action="Reject"), "'Reject' is not one of"),
    (lambda d: d["spec"].update(ingres=[]), "Additional properties are not allowed"),
    (lambda d: d["spec"]["egress"][0]["destination"]["ports"].append(True), "ports[1]"),
    (lambda d: d["spec"]["types"].append("Ingress"), "non-unique"),
    (lambda d: d["spec"].update(selector="global()"), "global() can only be used"),
    (lambda d: d["spec"]["ingress"][0].update(icmp={"type": 8}), "ICMP fields require"),
    (lambda d: d["metadata"].pop("namespace"), "metadata.namespace"),
], ids=["enum", "unknown-field", "int-or-string", "list-set", "cel-selector", "cel-icmp",
        "metadata"])
def test_checks_refuse_bad_policies(crds: dict[str, Crd], edit: Callable[[dict[str, Any]], Any],
                                    expected: str) -> None:
    """The checks are not vacuous: each broken copy of a good policy is refused."""
    policy = _good_policy()
    edit(policy)
    errors = document_errors(policy, crds)
    assert any(expected in error for error in errors), errors
