"""Reading Kubernetes objects field by field: each reader raises ``BadRecord`` with the field's
path on a wrong type, and the intermediate records a dump is collected into before it is frozen
into the model (:mod:`segmenter.cluster.dump`)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from segmenter.documents import MAX_EPOCH, MIN_EPOCH
from segmenter.errors import type_name
from segmenter.model import ContainerPort, ServicePort, Transport

# Annotations that carry no meaning for segmentation and can be huge.
DROPPED_ANNOTATIONS: Final = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})
# Pod annotations that ``segmenter inventory --watch`` (segmenter.cluster.watch) adds to the pods
# of its snapshots: when it first saw the pod's IP and when it saw the pod deleted (RFC 3339).
# They tighten the interval during which the pod held its IP and are removed from the
# annotations.
WATCH_ANNOTATION_PREFIX: Final = "watch.segmenter.io/"
IP_ASSIGNED_ANNOTATION: Final = WATCH_ANNOTATION_PREFIX + "ip-assigned-at"
DELETED_ANNOTATION: Final = WATCH_ANNOTATION_PREFIX + "deleted-at"


class BadRecord(Exception):
    """A malformed object; turned into an InputError naming the file and the record."""


# --------------------------------------------------------------------------------------------
# Small field readers: each raises BadRecord with the field path on a wrong type.


def get_map(obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadRecord(f"{where}{key} must be an object, not {type_name(value)}")
    return value


def get_list(obj: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRecord(f"{where}{key} must be a list, not {type_name(value)}")
    return value


def get_maps(obj: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    items = get_list(obj, key, where)
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise BadRecord(f"{where}{key}[{i}] must be an object, not {type_name(item)}")
    return items


def get_str(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRecord(f"{where}{key} must be a string, not {type_name(value)}")
    return value


def get_int(obj: Mapping[str, Any], key: str, where: str, low: int = 0,
            high: int = 65535) -> int | None:
    """An integer in ``low``..``high`` (a port number by default)."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRecord(f"{where}{key} must be an integer, not {type_name(value)}")
    if not low <= value <= high:
        raise BadRecord(f"{where}{key} must be from {low} to {high}, not {value}")
    return value


def get_bool(obj: Mapping[str, Any], key: str, where: str) -> bool:
    value = obj.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadRecord(f"{where}{key} must be true or false, not {type_name(value)}")
    return value


def get_str_map(obj: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    value = get_map(obj, key, where)
    out: dict[str, str] = {}
    for k, v in value.items():
        if isinstance(v, (dict, list)):
            raise BadRecord(f"{where}{key}.{k} must be a string, not {type_name(v)}")
        out[str(k)] = "" if v is None else scalar_text(v)
    return out


def scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def get_ip(value: Any, where: str) -> str:
    """Validate an IP address and return its canonical (compressed) text."""
    if not isinstance(value, str):
        raise BadRecord(f"{where} must be an IP address string, not {type_name(value)}")
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise BadRecord(f"{where}: {value!r} is not an IP address") from None


def get_cidr(value: Any, where: str) -> str:
    """Validate a CIDR block (host bits zero, as the API server stores them) and return its
    canonical text."""
    if not isinstance(value, str):
        raise BadRecord(f"{where} must be a CIDR string, not {type_name(value)}")
    try:
        return str(ipaddress.ip_network(value.strip()))
    except ValueError:
        raise BadRecord(f"{where}: {value!r} is not a CIDR block") from None


def parse_timestamp(value: Any, where: str) -> float | None:
    """RFC 3339 (``2024-05-01T10:00:00Z``) to epoch seconds; a number is taken as epoch."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadRecord(f"{where} must be a timestamp, not a boolean")
    if isinstance(value, (int, float)):
        if not MIN_EPOCH <= value <= MAX_EPOCH:
            raise BadRecord(f"{where}: {value} is not epoch seconds of a year from 1 to 9999")
        return float(value)
    if isinstance(value, datetime):  # YAML loaders turn unquoted timestamps into datetimes
        return epoch(value)
    if not isinstance(value, str):
        raise BadRecord(f"{where} must be a timestamp, not {type_name(value)}")
    try:
        return epoch(datetime.fromisoformat(value.strip()))
    except ValueError:
        raise BadRecord(f"{where}: {value!r} is not an RFC 3339 timestamp") from None


def epoch(moment: datetime) -> float:
    if moment.tzinfo is None:  # Kubernetes timestamps are UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def get_transport(obj: Mapping[str, Any], key: str, where: str) -> Transport:
    value = get_str(obj, key, where)
    if value is None:
        return Transport.TCP
    try:
        return Transport.parse(value)
    except ValueError:
        raise BadRecord(f"{where}{key}: unknown protocol {value!r}") from None


def kept_annotations(raw: Mapping[str, str]) -> dict[str, str]:
    return {
        k: v
        for k, v in raw.items()
        if k not in DROPPED_ANNOTATIONS and not k.startswith(WATCH_ANNOTATION_PREFIX)
    }


# --------------------------------------------------------------------------------------------
# Intermediate records (mutable while a dump is read; frozen model objects are built at the end)


@dataclass
class OwnerRef:
    kind: str
    name: str


@dataclass
class ControllerRecord:
    kind: str
    namespace: str
    name: str
    labels: dict[str, str]
    annotations: dict[str, str]
    owner: OwnerRef | None
    template_labels: dict[str, str] | None
    template_annotations: dict[str, str]
    host_network: bool
    created: float | None


@dataclass
class PodRecord:
    namespace: str
    name: str
    uid: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    owner: OwnerRef | None
    ips: list[str]
    node: str | None
    host_network: bool
    ports: list[ContainerPort]
    service_account: str | None
    start: float | None  # creationTimestamp
    end: float | None
    ip_since: float | None = None  # when a watch first saw its IP (watch.segmenter.io/…)
    images: tuple[str, ...] = ()


def owner_ref(meta: Mapping[str, Any], where: str) -> OwnerRef | None:
    refs = get_maps(meta, "ownerReferences", where + "metadata.")
    if not refs:
        return None
    chosen = next((r for r in refs if r.get("controller") is True), refs[0])
    kind = get_str(chosen, "kind", where + "metadata.ownerReferences[].")
    name = get_str(chosen, "name", where + "metadata.ownerReferences[].")
    if not kind or not name:
        raise BadRecord("metadata.ownerReferences[] needs kind and name")
    return OwnerRef(kind, name)


def container_ports(spec: Mapping[str, Any]) -> list[ContainerPort]:
    ports: list[ContainerPort] = []
    for key in ("containers", "initContainers"):
        for container in get_maps(spec, key, "spec."):
            for entry in get_maps(container, "ports", f"spec.{key}[]."):
                where = f"spec.{key}[].ports[]."
                number = get_int(entry, "containerPort", where)
                if number is None:
                    raise BadRecord(f"{where}containerPort is required")
                ports.append(
                    ContainerPort(
                        port=number,
                        protocol=get_transport(entry, "protocol", where),
                        name=get_str(entry, "name", where) or None,
                    )
                )
    return sorted(set(ports))


def images(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """Container images (init containers too); malformed entries are ignored, not errors."""
    out = set()
    for key in ("containers", "initContainers"):
        containers = spec.get(key)
        if isinstance(containers, list):
            for container in containers:
                if isinstance(container, Mapping) and isinstance(container.get("image"), str):
                    out.add(container["image"])
    return tuple(sorted(out))


def target_port(value: Any, where: str) -> int | str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadRecord(f"{where}targetPort must be a number or a port name")
    if isinstance(value, int):
        if not 1 <= value <= 65535:
            raise BadRecord(f"{where}targetPort must be from 1 to 65535, not {value}")
        return value
    if isinstance(value, str):
        if value.isascii() and value.isdigit():
            return target_port(int(value), where) if len(value) <= 5 else target_port(0, where)
        return value
    raise BadRecord(f"{where}targetPort must be a number or a port name, not {type_name(value)}")


def service_ports(spec: Mapping[str, Any], where: str, *, slice_ports: bool) -> list[ServicePort]:
    out: list[ServicePort] = []
    for entry in get_maps(spec, "ports", where):
        w = where + "ports[]."
        number = get_int(entry, "port", w)
        if number is None:
            if slice_ports:  # an EndpointSlice port without a number means "all ports"
                continue
            raise BadRecord(f"{w}port is required")
        out.append(
            ServicePort(
                port=number,
                protocol=get_transport(entry, "protocol", w),
                target_port=None if slice_ports else target_port(entry.get("targetPort"), w),
                name=get_str(entry, "name", w) or None,
                node_port=None if slice_ports else get_int(entry, "nodePort", w),
            )
        )
    return out

