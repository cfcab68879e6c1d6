"""ClusterNetworkPolicy output checked against the upstream CRDs, as the API server would.

The CRDs are read in place from the team corpus (``corpora/crds/network-policy-api/{standard,
experimental}/policy.networking.k8s.io_clusternetworkpolicies.yaml``: kubernetes-sigs/
network-policy-api at 0eec1b0e, bundle v0.2.0; see that folder's README); every test here skips
with a reason when the corpus is absent.

Per document, the same checks as ``tests/test_calico_schema.py`` (whose helpers are reused):

* ``apiVersion`` is the CRD's group and served version, and the kind is the CRD's;
* the ``openAPIV3Schema`` with ``jsonschema`` (Draft 4): ``maxItems`` 25, ``maxLength`` 100 for
  rule names and 43 for CIDRs, ``minProperties``/``maxProperties`` (exactly one peer field, one
  protocol, one of ``number``/``range``; ``tcp: {}`` refused), enums, ``x-kubernetes-list-type:
  set`` as unique items, and unknown fields refused (``kubectl``'s strict field validation);
* ``metadata`` with the API server's ObjectMeta rules (cluster-scoped: no namespace);
* every CEL rule, read by hand in ``CEL_RULES`` below: ``self.start < self.end`` (port ranges),
  ``isCIDR(self)`` (networks), and the experimental channel's rule refusing a
  ``destinationNamedPort`` in an egress rule with a ``networks``/``nodes``/``domainNames`` peer.
  A rule without a reading fails the test.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from segmenter.dialects.clusternetworkpolicy import ClusterNetworkPolicy
from tests.conftest import CORPORA
from tests.scenarios import SCENARIOS
from tests.test_calico_schema import Crd, cel_errors, metadata_errors, to_json_schema
from tests.test_clusternetworkpolicy import big_case, compile_case, domain_case, scenario_case

CRD_DIR = CORPORA / "crds" / "network-policy-api"
CRD_FILE = "policy.networking.k8s.io_clusternetworkpolicies.yaml"
VERSION = "v1alpha2"


def _has(obj: Any, key: str) -> bool:
    return isinstance(obj, dict) and obj.get(key) is not None


def _is_cidr(text: Any) -> bool:
    """Kubernetes' CEL ``isCIDR``: an address, ``/``, a prefix length (host bits allowed)."""
    if not isinstance(text, str) or "/" not in text:
        return False
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


CEL_RULES: dict[str, Callable[[Any], bool]] = {
    "self.start < self.end": lambda s: s["start"] < s["end"],
    "isCIDR(self)": _is_cidr,
    "!(self.to.exists(peer, has(peer.networks) || has(peer.nodes) || has(peer.domainNames)) && "
    "has(self.protocols) && self.protocols.exists(protocol, has(protocol.destinationNamedPort)))":
        lambda s: not (any(_has(p, k) for p in s["to"] for k in ("networks", "nodes",
                                                                  "domainNames"))
                       and _has(s, "protocols")
                       and any(_has(e, "destinationNamedPort") for e in s["protocols"])),
}


def load_crd(channel: str) -> Crd:
    path = CRD_DIR / channel / CRD_FILE
    if not path.is_file():
        pytest.skip(f"{path} is absent: the network-policy-api CRDs come from the team corpus "
                    "(../shared/corpora beside the checkout)")
    pytest.importorskip("jsonschema")
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    spec = doc["spec"]
    for version in spec["versions"]:
        if version["name"] == VERSION and version.get("served", False):
            return Crd(group=spec["group"], kind=spec["names"]["kind"], scope=spec["scope"],
                       schema=version["schema"]["openAPIV3Schema"], source=path.name)
    pytest.fail(f"{path} serves no {VERSION}")


@pytest.fixture(scope="module")
def standard() -> Crd:
    return load_crd("standard")


@pytest.fixture(scope="module")
def experimental() -> Crd:
    return load_crd("experimental")


def document_errors(doc: dict[str, Any], crd: Crd) -> list[str]:
    """Why the API server with ``crd`` installed would refuse ``doc`` (empty: accepted)."""
    import jsonschema

    if doc.get("kind") != crd.kind:
        return [f"kind {doc.get('kind')!r}, the CRD is for {crd.kind}"]
    if doc.get("apiVersion") != f"{crd.group}/{VERSION}":
        return [f"apiVersion {doc.get('apiVersion')!r}, the CRD serves {crd.group}/{VERSION}"]
    validator = jsonschema.Draft4Validator(to_json_schema(crd.schema))
    errors = [f"{error.json_path}: {error.message}"
              for error in sorted(validator.iter_errors(doc), key=lambda e: e.json_path)]
    errors += metadata_errors(doc, crd)
    errors += cel_errors(crd.schema, doc, "$", CEL_RULES)
    return errors


def cnp_documents(files: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The ClusterNetworkPolicy documents of an output, as read back from its YAML."""
    from segmenter.render import to_yaml

    docs = []
    for _, manifests in sorted(files.items()):
        docs += [d for d in yaml.safe_load_all(to_yaml(manifests))
                 if d.get("kind") == "ClusterNetworkPolicy"]
    return docs


def _check(docs: list[dict[str, Any]], crd: Crd) -> None:
    assert docs, "nothing to validate"
    errors = [f"{d['metadata']['name']}: {e}" for d in docs for e in document_errors(d, crd)]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_scenario_output_is_accepted_by_the_standard_crd(scenario: str, standard: Crd) -> None:
    _check(cnp_documents(scenario_case(scenario).files), standard)


def test_split_output_is_accepted_by_the_standard_crd(standard: Crd) -> None:
    docs = cnp_documents(compile_case(big_case()).files)
    assert len(docs) >= 3  # the split chain and the baseline denies
    _check(docs, standard)


def test_domain_names_need_the_experimental_crd(standard: Crd, experimental: Crd) -> None:
    output = compile_case(domain_case(), ClusterNetworkPolicy(domain_names=True))
    docs = cnp_documents(output.files)
    assert any(p.get("domainNames") for d in docs for r in d["spec"].get("egress", [])
               for p in r["to"])
    _check(docs, experimental)
    refused = [e for d in docs for e in document_errors(d, standard)]
    assert any("domainNames" in e and "Additional properties" in e for e in refused), refused
    # Off by default: the same plan is standard-channel output.
    _check(cnp_documents(compile_case(domain_case()).files), standard)


def _guard() -> dict[str, Any]:
    return {
        "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
        "metadata": {"name": "segmenter.guard"},
        "spec": {"tier": "Admin", "priority": 100,
                 "subject": {"namespaces": {"matchLabels": {"a": "b"}}},
                 "egress": [{"name": "x", "action": "Pass",
                             "to": [{"networks": ["10.0.0.0/8"]}],
                             "protocols": [{"tcp": {"destinationPort": {"number": 5432}}}]}]},
    }


def test_checks_accept_a_good_policy(standard: Crd, experimental: Crd) -> None:
    assert document_errors(_guard(), standard) == []
    assert document_errors(_guard(), experimental) == []


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda d: d["spec"]["egress"][0]["protocols"].__setitem__(0, {"tcp": {}}),
     "should be non-empty"),
    (lambda d: d["spec"]["egress"][0]["protocols"].__setitem__(
        0, {"tcp": {"destinationPort": {"range": {"start": 80, "end": 80}}}}),
     "Start port must be less than End port"),
    (lambda d: d["spec"]["egress"][0]["to"][0]["networks"].append("10.0.0.0/33"),
     "Invalid CIDR format"),
    (lambda d: d["spec"]["egress"][0]["to"][0]["networks"].append("10.0.0.0/8"), "non-unique"),
    (lambda d: d["spec"]["egress"].extend([copy.deepcopy(d["spec"]["egress"][0])] * 25),
     "is too long"),
    (lambda d: d["spec"].update(ingress=[{"action": "Deny",
                                          "from": [{"networks": ["0.0.0.0/0"]}]}]),
     "Additional properties are not allowed ('networks'"),
    (lambda d: d["spec"]["egress"][0].update(action="Allow"), "'Allow' is not one of"),
    (lambda d: d["spec"]["egress"][0].update(name="x" * 101), "is too long"),
    (lambda d: d["metadata"].update(namespace="shop"), "cluster-scoped"),
    (lambda d: d["spec"].update(priority=1001), "is greater than the maximum"),
], ids=["tcp-empty", "cel-range", "cel-cidr", "list-set", "max-rules", "ingress-networks",
        "enum", "name-length", "metadata", "priority"])
def test_checks_refuse_bad_policies(standard: Crd, edit: Callable[[dict[str, Any]], Any],
                                    expected: str) -> None:
    doc = _guard()
    edit(doc)
    errors = document_errors(doc, standard)
    assert any(expected in e for e in errors), errors


def test_experimental_cel_refuses_named_ports_towards_networks(standard: Crd,
                                                              experimental: Crd) -> None:
    doc = _guard()
    doc["spec"]["egress"][0]["protocols"] = [{"destinationNamedPort": "postgres"}]
    assert document_errors(doc, standard) == []  # §2.8 case 10: accepted, matches nothing
    assert any("namedPorts" in e for e in document_errors(doc, experimental))


def test_the_corpus_crds_are_the_v0_2_0_bundle() -> None:
    for channel in ("standard", "experimental"):
        path = CRD_DIR / channel / CRD_FILE
        if not path.is_file():
            pytest.skip(f"{path} is absent")
        annotations = yaml.safe_load(path.read_text())["metadata"]["annotations"]
        assert annotations["policy.networking.k8s.io/bundle-version"] == "v0.2.0"
        assert annotations["policy.networking.k8s.io/channel"] == channel


def test_output_cidrs_are_canonical() -> None:
    """isCIDR accepts host bits; our networks never carry any (readers compare them as text)."""
    docs = cnp_documents(compile_case(big_case()).files)
    cidrs = [c for d in docs for r in d["spec"].get("egress", []) for p in r["to"]
             for c in p.get("networks", [])]
    assert len(cidrs) > 25
    for cidr in cidrs:
        assert str(ipaddress.ip_network(cidr)) == cidr
