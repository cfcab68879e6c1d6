"""Small builders for policy-engine tests: pods, external endpoints, manifests, engines."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from segmenter.evaluate import EvalEndpoint, PolicyEngine
from segmenter.model import ContainerPort, Labels, Transport

TCP, UDP, SCTP, ICMP = Transport.TCP, Transport.UDP, Transport.SCTP, Transport.ICMP

_counter = iter(range(1, 1_000_000))


def pod(ns: str = "default", ip: str | None = None, *, node: str | None = "node-1",
        host_network: bool = False, ports: Iterable[tuple[int, str | None] |
                                                   tuple[int, str | None, Transport]] = (),
        sa: str | None = None, name: str = "", labels: Mapping[str, str] | None = None,
        **kw: str) -> EvalEndpoint:
    """A pod; keyword arguments are more labels (``app="web"``)."""
    n = next(_counter)
    cps = []
    for p in ports:
        proto = p[2] if len(p) == 3 else TCP  # type: ignore[misc]
        cps.append(ContainerPort(p[0], proto, p[1]))
    return EvalEndpoint(
        ip=ip or f"10.244.{n // 250}.{n % 250 + 1}",
        namespace=ns,
        labels=Labels.of({**(labels or {}), **kw}),
        host_network=host_network,
        node=node,
        ports=tuple(cps),
        service_account=sa,
        name=name or f"{ns}/pod-{n}",
    )


def ext(ip: str = "203.0.113.7", *, node: str | None = None) -> EvalEndpoint:
    """Something that is not a pod: an external address, or a node when ``node`` is given."""
    return EvalEndpoint(ip=ip, node=node, name=ip)


def netpol(name: str = "np", ns: str = "default", *, pod_selector: Mapping[str, Any] | None
           = None, types: list[str] | None = None, ingress: Any = None, egress: Any = None,
           **extra: Any) -> dict[str, Any]:
    """A networking.k8s.io/v1 NetworkPolicy; fields left ``None`` are omitted."""
    spec: dict[str, Any] = {"podSelector": {} if pod_selector is None else pod_selector}
    if types is not None:
        spec["policyTypes"] = types
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    spec.update(extra)
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def match(**labels: str) -> dict[str, Any]:
    return {"matchLabels": dict(labels)}


def calico(kind: str, name: str, spec: Mapping[str, Any], *, ns: str | None = None,
           labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if ns is not None:
        meta["namespace"] = ns
    if labels:
        meta["labels"] = dict(labels)
    return {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta,
            "spec": dict(spec)}


def gnp(name: str, **spec: Any) -> dict[str, Any]:
    return calico("GlobalNetworkPolicy", name, spec)


def cnp(name: str, ns: str = "default", **spec: Any) -> dict[str, Any]:
    return calico("NetworkPolicy", name, spec, ns=ns)


def tier(name: str, order: float | None = None, default_action: str | None = None
         ) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if order is not None:
        spec["order"] = order
    if default_action is not None:
        spec["defaultAction"] = default_action
    return calico("Tier", name, spec)


def engine(*docs: Mapping[str, Any], enforcement: str = "kubernetes",
           namespaces: Mapping[str, Mapping[str, str]] | None = None,
           **options: Any) -> PolicyEngine:
    ns = {k: Labels.of(v) for k, v in (namespaces or {}).items()}
    return PolicyEngine.from_manifests(docs, namespaces=ns, enforcement=enforcement, **options)


def allowed(e: PolicyEngine, src: EvalEndpoint, dst: EvalEndpoint,
            proto: Transport = TCP, port: int | None = 80) -> bool:
    return e.check(src, dst, proto, port).allowed
