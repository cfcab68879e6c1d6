"""validate_manifest: what the API server (Kubernetes) or Calico validation would reject."""

from __future__ import annotations

from typing import Any

import pytest
from eval_helpers import calico, cnp, gnp, netpol, tier

from segmenter.evaluate import describe_manifest, is_warning, validate_manifest


def errors(doc: dict[str, Any]) -> list[str]:
    return [p for p in validate_manifest(doc) if not is_warning(p)]


def test_valid_policies_have_no_problems() -> None:
    assert validate_manifest(netpol(
        types=["Ingress", "Egress"],
        ingress=[{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"a": "b"}}},
                           {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                  "ports": [{"port": 80}, {"protocol": "UDP", "port": "dns"},
                            {"port": 30000, "endPort": 32767}, {"protocol": "SCTP"}]}],
        egress=[{}])) == []
    assert validate_manifest(gnp("g", order=10, selector="all()", types=["Ingress"],
                                 namespaceSelector="has(x)",
                                 ingress=[{"action": "Allow", "protocol": "TCP",
                                           "source": {"nets": ["10.0.0.0/8"],
                                                      "namespaceSelector": "global()"},
                                           "destination": {"ports": [80, "8000:8080",
                                                                     "http"]}}])) == []
    assert validate_manifest({"apiVersion": "v1", "kind": "Pod"}) == []


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (netpol(ingress=[{"from": [{}]}]),
         "spec.ingress[0].from[0]: must specify a peer (podSelector, namespaceSelector or "
         "ipBlock)"),
        (netpol(egress=[{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]),
         "spec.egress[0].to[0]: ipBlock may not be combined with podSelector or "
         "namespaceSelector"),
        (netpol(ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/16",
                                                "except": ["10.0.0.0/16"]}}]}]),
         "spec.ingress[0].from[0].ipBlock.except[0]: must be a strict subset of cidr "
         "10.0.0.0/16, not equal to it"),
        (netpol(ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/16",
                                                "except": ["10.1.0.0/24"]}}]}]),
         "spec.ingress[0].from[0].ipBlock.except[0]: must be a strict subset of cidr "
         "10.0.0.0/16: 10.1.0.0/24 is outside it"),
        (netpol(ingress=[{"from": [{"ipBlock": {}}]}]),
         "spec.ingress[0].from[0].ipBlock.cidr: required"),
        (netpol(ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.300/8"}}]}]),
         "spec.ingress[0].from[0].ipBlock.cidr: '10.0.0.300/8' is not a valid CIDR"),
        (netpol(ingress=[{"ports": [{"port": "http", "endPort": 90}]}]),
         "spec.ingress[0].ports[0].endPort: may not be used with a named port"),
        (netpol(ingress=[{"ports": [{"port": 90, "endPort": 80}]}]),
         "spec.ingress[0].ports[0].endPort: 80 must be greater than or equal to port 90"),
        (netpol(ingress=[{"ports": [{"endPort": 80}]}]),
         "spec.ingress[0].ports[0].endPort: may only be given together with port"),
        (netpol(ingress=[{"ports": [{"port": 0}]}]),
         "spec.ingress[0].ports[0].port: 0 must be between 1 and 65535"),
        (netpol(ingress=[{"ports": [{"port": "8080"}]}]),
         "spec.ingress[0].ports[0].port: '8080' is not a valid port name (IANA_SVC_NAME) nor "
         "a number"),
        (netpol(ingress=[{"ports": [{"protocol": "ICMP"}]}]),
         "spec.ingress[0].ports[0].protocol: unsupported value 'ICMP': must be TCP, UDP or "
         "SCTP"),
        (netpol(types=["Ingress", "Egress", "Ingress"]),
         "spec.policyTypes: may hold at most 2 values, got 3"),
        (netpol(types=["Inbound"]),
         "spec.policyTypes[0]: unsupported value 'Inbound': must be Ingress or Egress"),
        (netpol(pod_selector={"matchExpressions": [{"key": "a", "operator": "Equals",
                                                    "values": ["x"]}]}),
         "spec.podSelector.matchExpressions[0].operator: 'Equals' is not a valid selector "
         "operator (In, NotIn, Exists, DoesNotExist)"),
        (netpol(ingress=[{"from": [{"namespaceSelector": {"matchExpressions": [
            {"key": "a", "operator": "In"}]}}]}]),
         "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values: must be "
         "non-empty for operator In"),
        (netpol(ingresss=[]), "spec: unknown field 'ingresss'"),
        (netpol(ingress=[{"form": []}]), "spec.ingress[0]: unknown field 'form'"),
        ({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {},
          "spec": {}}, "metadata.name: required"),
    ],
)
def test_kubernetes_problems(doc: dict[str, Any], expected: str) -> None:
    assert expected in errors(doc)


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (cnp("p", ingress=[{"action": "Allow", "destination": {"ports": [80]}}]),
         "spec.ingress[0].destination.ports: requires protocol to be set (TCP, UDP, SCTP or "
         "UDPLite)"),
        (cnp("p", ingress=[{"action": "Allow", "protocol": "ICMP",
                            "destination": {"ports": [80]}}]),
         "spec.ingress[0].destination.ports: ports are only valid with TCP, UDP, SCTP or "
         "UDPLite, not icmp"),
        (cnp("p", ingress=[{"action": "Accept"}]),
         "spec.ingress[0].action: unknown action 'Accept': must be Allow, Deny, Log or Pass"),
        (cnp("p", egress=[{}]), "spec.egress[0].action: required"),
        (cnp("p", selector="app = 'x'"),
         "spec.selector: invalid selector \"app = 'x'\": expected == at column 5"),
        (gnp("g", ingress=[{"action": "Deny", "source": {"notSelector": "has(a"}}]),
         "spec.ingress[0].source.notSelector: invalid selector 'has(a': no closing ')' after "
         "has( at column 1"),
        (cnp("p", types=["Ingress", "Ingress"]), "spec.types: must not repeat a value"),
        (cnp("p", types=["Forward"]),
         "spec.types[0]: unsupported value 'Forward': must be Ingress or Egress"),
        (cnp("p", namespaceSelector="all()"), "spec: unknown field 'namespaceSelector'"),
        (cnp("p", ingress=[{"action": "Allow", "protocol": "FTP"}]),
         "spec.ingress[0].protocol: invalid protocol 'FTP'"),
        (cnp("p", ingress=[{"action": "Allow", "protocol": "TCP",
                            "destination": {"ports": ["90:80"]}}]),
         "spec.ingress[0].destination.ports[0]: invalid port range '90:80'"),
        (cnp("p", ingress=[{"action": "Allow", "icmp": {"code": 1}}]),
         "spec.ingress[0].icmp: requires protocol ICMP or ICMPv6"),
        (cnp("p", ingress=[{"action": "Allow", "protocol": "ICMP", "icmp": {"code": 1}}]),
         "spec.ingress[0].icmp.code: requires a type"),
        (cnp("p", ingress=[{"action": "Allow", "source": {"nets": ["10.0.0.0/8", "::/0"]}}]),
         "spec.ingress[0]: mixes IPv4 and IPv6 nets in one rule"),
        (cnp("p", ingress=[{"action": "Deny", "http": {"methods": ["GET"]}}]),
         "spec.ingress[0].http: only allowed in Allow rules"),
        (cnp("p", ingress=[{"action": "Allow", "destination": {
            "services": {"name": "x"}, "selector": "a == 'b'"}}]),
         "spec.ingress[0].destination.services: cannot be combined with selector"),
        (gnp("g", preDNAT=True, egress=[{"action": "Allow"}], applyOnForward=True),
         "spec: a preDNAT policy cannot have egress rules or the Egress type"),
        (gnp("g", doNotTrack=True), "spec.applyOnForward: must be true when doNotTrack or "
                                    "preDNAT is"),
        (cnp("p", order="first"), "spec.order: must be a number, got 'first'"),
        (tier("t", default_action="Allow"), "spec.defaultAction: must be Deny or Pass, got "
                                            "'Allow'"),
        (calico("GlobalNetworkSet", "s", {"nets": ["10.0.0.0/33"]}),
         "spec.nets[0]: '10.0.0.0/33' is not a valid CIDR"),
        (calico("StagedGlobalNetworkPolicy", "s", {"stagedAction": "Apply"}),
         "spec.stagedAction: unknown value 'Apply': must be one of Delete, Ignore, Learn, Set"),
    ],
)
def test_calico_problems(doc: dict[str, Any], expected: str) -> None:
    assert expected in errors(doc)


def test_warnings() -> None:
    problems = validate_manifest(gnp("guard", tier="security", selector="global()"))
    assert problems == [
        "warning: metadata.name: policies in tier 'security' must be named 'security.<name>' "
        "before Calico v3.32",
        "warning: spec.selector: global() only has meaning in a rule namespaceSelector; here it "
        "matches nothing",
    ]
    assert all(is_warning(p) for p in problems)
    assert validate_manifest(gnp("security.guard", tier="security")) == []


def test_describe_manifest() -> None:
    assert describe_manifest(netpol("a", "shop")) == "networking.k8s.io/v1 NetworkPolicy shop/a"
    assert describe_manifest(gnp("g")) == "projectcalico.org/v3 GlobalNetworkPolicy g"
    assert describe_manifest({}) == "? ? <unnamed>"
