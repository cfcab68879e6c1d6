"""The inventory file ``segmenter inventory`` writes (``inventory.json``): a parsed
:class:`~segmenter.model.Inventory` as JSON, read back without re-parsing the dumps."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

from segmenter.errors import InputError
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
             **({"pod_cidrs": list(n.pod_cidrs)} if n.pod_cidrs else {})}
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
    """Rebuild an Inventory from :func:`inventory_to_dict` output; InputError when malformed."""
    if data.get("format") != CACHE_FORMAT:
        raise InputError(f"not a {CACHE_FORMAT} file", path=path)
    version = data.get("version")
    if version != CACHE_VERSION:
        raise InputError(
            f"inventory cache version {version!r} is not supported (this reader knows "
            f"{CACHE_VERSION})",
            path=path,
        )
    section = "?"
    index = 0
    try:

        def ref(d: Mapping[str, Any]) -> WorkloadRef:
            return WorkloadRef(str(d["namespace"]), str(d["kind"]), str(d["name"]))

        def sp(d: Mapping[str, Any]) -> ServicePort:
            return ServicePort(
                port=int(d["port"]),
                protocol=Transport.parse(d.get("protocol") or "TCP"),
                target_port=d.get("target_port"),
                name=d.get("name"),
                node_port=d.get("node_port"),
            )

        def items(name: str) -> Iterator[Mapping[str, Any]]:
            nonlocal section, index
            section = name
            for index, item in enumerate(data.get(name) or []):  # noqa: B007
                yield item

        namespaces = tuple(
            Namespace(d["name"], Labels.of(d.get("labels")), Labels.of(d.get("annotations")))
            for d in items("namespaces")
        )
        nodes = tuple(
            Node(d["name"], tuple(d.get("addresses") or ()), Labels.of(d.get("labels")),
                 tuple(d.get("pod_cidrs") or ()))
            for d in items("nodes")
        )
        workloads = tuple(
            Workload(
                ref=ref(d["ref"]),
                labels=Labels.of(d.get("labels")),
                annotations=Labels.of(d.get("annotations")),
                template_labels=Labels.of(d.get("template_labels")),
                host_network=bool(d.get("host_network", False)),
            )
            for d in items("workloads")
        )
        pods = tuple(
            Pod(
                namespace=d["namespace"],
                name=d["name"],
                labels=Labels.of(d.get("labels")),
                ips=tuple(d.get("ips") or ()),
                owner=ref(d["owner"]),
                node=d.get("node"),
                host_network=bool(d.get("host_network", False)),
                ports=tuple(
                    ContainerPort(
                        int(c["port"]), Transport.parse(c.get("protocol") or "TCP"), c.get("name")
                    )
                    for c in d.get("ports") or ()
                ),
                annotations=Labels.of(d.get("annotations")),
                service_account=d.get("service_account"),
                start=d.get("start"),
                end=d.get("end"),
                images=tuple(d.get("images") or ()),
            )
            for d in items("pods")
        )
        services = tuple(
            Service(
                namespace=d["namespace"],
                name=d["name"],
                type=d.get("type") or "ClusterIP",
                cluster_ips=tuple(d.get("cluster_ips") or ()),
                external_ips=tuple(d.get("external_ips") or ()),
                selector=Labels.of(d.get("selector")),
                ports=tuple(sp(p) for p in d.get("ports") or ()),
                labels=Labels.of(d.get("labels")),
                load_balancer_ips=tuple(d.get("load_balancer_ips") or ()),
            )
            for d in items("services")
        )
        slices = tuple(
            EndpointSlice(
                namespace=d["namespace"],
                name=d["name"],
                service=d.get("service"),
                endpoints=tuple(
                    SliceEndpoint(tuple(e.get("addresses") or ()), e.get("pod"), e.get("node"))
                    for e in d.get("endpoints") or ()
                ),
                ports=tuple(sp(p) for p in d.get("ports") or ()),
            )
            for d in items("endpoint_slices")
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(
            f"malformed inventory cache: {type(exc).__name__}: {exc}",
            path=path,
            record=f"{section}[{index}]",
        ) from None
    return Inventory(
        namespaces=namespaces,
        nodes=nodes,
        workloads=workloads,
        pods=pods,
        services=services,
        endpoint_slices=slices,
        sources=tuple(str(s) for s in data.get("sources") or ()),
    )

