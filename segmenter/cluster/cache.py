"""The inventory file ``segmenter inventory`` writes (``inventory.json``): a parsed
:class:`~segmenter.model.Inventory` as JSON, read back without re-parsing the dumps."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, Final

from segmenter.documents import At
from segmenter.errors import type_name
from segmenter.model import (
    ContainerPort,
    EndpointSlice,
    Inventory,
    Labels,
    Namespace,
    Node,
    Pod,
    Service,
    ServicePort,
    SliceEndpoint,
    Transport,
    Workload,
    WorkloadRef,
)

CACHE_FORMAT: Final = "segmenter-inventory"
CACHE_VERSION: Final = 1


def _labels_dict(labels: Labels) -> dict[str, str]:
    return labels.as_dict()


def _ref_dict(ref: WorkloadRef) -> dict[str, str]:
    return {"namespace": ref.namespace, "kind": ref.kind, "name": ref.name}


def _sp_dict(sp: ServicePort) -> dict[str, Any]:
    return {
        "port": sp.port,
        "protocol": sp.protocol.value,
        "target_port": sp.target_port,
        "name": sp.name,
        "node_port": sp.node_port,
    }


def inventory_to_dict(inventory: Inventory) -> dict[str, Any]:
    """A JSON-ready dict of the inventory; the same inventory always gives the same dict."""
    return {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "sources": list(inventory.sources),
        "namespaces": [
            {
                "name": ns.name,
                "labels": _labels_dict(ns.labels),
                "annotations": _labels_dict(ns.annotations),
            }
            for ns in inventory.namespaces
        ],
        "nodes": [
            {"name": n.name, "addresses": list(n.addresses), "labels": _labels_dict(n.labels),
             "pod_cidrs": list(n.pod_cidrs)}
            for n in inventory.nodes
        ],
        "workloads": [
            {
                "ref": _ref_dict(w.ref),
                "labels": _labels_dict(w.labels),
                "annotations": _labels_dict(w.annotations),
                "template_labels": _labels_dict(w.template_labels),
                "host_network": w.host_network,
            }
            for w in inventory.workloads
        ],
        "pods": [
            {
                "namespace": p.namespace,
                "name": p.name,
                "labels": _labels_dict(p.labels),
                "ips": list(p.ips),
                "owner": _ref_dict(p.owner),
                "node": p.node,
                "host_network": p.host_network,
                "ports": [
                    {"port": c.port, "protocol": c.protocol.value, "name": c.name} for c in p.ports
                ],
                "annotations": _labels_dict(p.annotations),
                "service_account": p.service_account,
                "start": p.start,
                "end": p.end,
                "images": list(p.images),
            }
            for p in inventory.pods
        ],
        "services": [
            {
                "namespace": s.namespace,
                "name": s.name,
                "type": s.type,
                "cluster_ips": list(s.cluster_ips),
                "external_ips": list(s.external_ips),
                "load_balancer_ips": list(s.load_balancer_ips),
                "selector": _labels_dict(s.selector),
                "ports": [_sp_dict(sp) for sp in s.ports],
                "labels": _labels_dict(s.labels),
            }
            for s in inventory.services
        ],
        "endpoint_slices": [
            {
                "namespace": es.namespace,
                "name": es.name,
                "service": es.service,
                "endpoints": [
                    {"addresses": list(e.addresses), "pod": e.pod, "node": e.node}
                    for e in es.endpoints
                ],
                "ports": [_sp_dict(sp) for sp in es.ports],
            }
            for es in inventory.endpoint_slices
        ],
    }


def inventory_from_dict(data: Mapping[str, Any], *, path: str | None = None) -> Inventory:
    """Rebuild an Inventory from :func:`inventory_to_dict` output; InputError naming the field of
    anything malformed."""
    doc = At(data, path)
    if doc.mapping().get("format") != CACHE_FORMAT:
        doc.fail(f"not a {CACHE_FORMAT} file")
    version = data.get("version")
    if version != CACHE_VERSION or type(version) is not int:
        doc.key("version").fail(
            f"inventory cache version {_shown(version)} is not supported (this reader knows "
            f"{CACHE_VERSION})")
    return Inventory(
        namespaces=tuple(
            Namespace(d.need("name").text(), _labels(d, "labels"), _labels(d, "annotations"))
            for d in doc.key("namespaces").items()),
        nodes=tuple(
            Node(d.need("name").text(), _ips(d.key("addresses")), _labels(d, "labels"),
                 _cidrs(d.key("pod_cidrs")))
            for d in doc.key("nodes").items()),
        workloads=tuple(
            Workload(
                ref=_ref(d.need("ref")),
                labels=_labels(d, "labels"),
                annotations=_labels(d, "annotations"),
                template_labels=_labels(d, "template_labels"),
                host_network=_flag(d, "host_network"),
            )
            for d in doc.key("workloads").items()),
        pods=tuple(_pod(d) for d in doc.key("pods").items()),
        services=tuple(
            Service(
                namespace=d.need("namespace").text(),
                name=d.need("name").text(),
                type=d.key("type").text_or_none() or "ClusterIP",
                cluster_ips=_ips(d.key("cluster_ips")),
                external_ips=_ips(d.key("external_ips")),
                selector=_labels(d, "selector"),
                ports=tuple(_service_port(p) for p in d.key("ports").items()),
                labels=_labels(d, "labels"),
                load_balancer_ips=_ips(d.key("load_balancer_ips")),
            )
            for d in doc.key("services").items()),
        endpoint_slices=tuple(
            EndpointSlice(
                namespace=d.need("namespace").text(),
                name=d.need("name").text(),
                service=d.key("service").text_or_none(),
                endpoints=tuple(
                    SliceEndpoint(_ips(e.key("addresses")), e.key("pod").text_or_none(),
                                  e.key("node").text_or_none())
                    for e in d.key("endpoints").items()),
                ports=tuple(_service_port(p) for p in d.key("ports").items()),
            )
            for d in doc.key("endpoint_slices").items()),
        sources=doc.key("sources").texts(),
    )


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str | int | float | bool) else type_name(value)


def _pod(d: At) -> Pod:
    start, end = d.key("start").epoch_or_none(), d.key("end").epoch_or_none()
    return Pod(
        namespace=d.need("namespace").text(),
        name=d.need("name").text(),
        labels=_labels(d, "labels"),
        ips=_ips(d.key("ips")),
        owner=_ref(d.need("owner")),
        node=d.key("node").text_or_none(),
        host_network=_flag(d, "host_network"),
        ports=tuple(
            ContainerPort(c.need("port").integer(0, 65535), _transport(c.key("protocol")),
                          c.key("name").text_or_none())
            for c in d.key("ports").items()),
        annotations=_labels(d, "annotations"),
        service_account=d.key("service_account").text_or_none(),
        start=start,
        end=end,
        images=d.key("images").texts(),
    )


def _ref(d: At) -> WorkloadRef:
    return WorkloadRef(d.need("namespace").text(), d.need("kind").text(), d.need("name").text())


def _labels(d: At, key: str) -> Labels:
    return Labels.of(d.key(key).text_map())


def _flag(d: At, key: str) -> bool:
    found = d.key(key)
    return False if found.value is None else found.flag()


def _transport(at: At) -> Transport:
    if at.value is None:
        return Transport.TCP
    try:
        return Transport.parse(at.text())
    except ValueError:
        at.fail(f"unknown protocol {at.value!r}")


def _service_port(d: At) -> ServicePort:
    target = d.key("target_port")
    target_port: int | str | None = None
    if target.value is not None:
        target_port = (target.integer(0, 65535) if type(target.value) is int
                       else target.text())
    return ServicePort(
        port=d.need("port").integer(0, 65535),
        protocol=_transport(d.key("protocol")),
        target_port=target_port,
        name=d.key("name").text_or_none(),
        node_port=d.key("node_port").integer_or_none(0, 65535),
    )


def _cidrs(at: At) -> tuple[str, ...]:
    """Address blocks, in their canonical text."""
    out = []
    for text in at.texts():
        try:
            out.append(str(ipaddress.ip_network(text)))
        except ValueError:
            at.fail(f"{text!r} is not an address block (CIDR)")
    return tuple(out)


_CANONICAL: dict[str, str] = {}


def _ips(at: At) -> tuple[str, ...]:
    """IP addresses, in their canonical text (the inventory's own form)."""
    out = []
    for text in at.texts():
        canonical = _CANONICAL.get(text)
        if canonical is None:
            try:
                canonical = str(ipaddress.ip_address(text))
            except ValueError:
                at.fail(f"{text!r} is not an IP address")
            if len(_CANONICAL) < 1_000_000:
                _CANONICAL[text] = canonical
        out.append(canonical)
    return tuple(out)
