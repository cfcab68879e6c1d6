"""Calico Open Source 3.30+ flow logs: Goldmane ``Flow`` objects and Whisker flows.

Read, one JSON object a line (a leading ``data:`` of Whisker's event stream is taken off):

* Goldmane's ``Flow`` (projectcalico/calico goldmane/proto/api.proto) in protobuf's JSON form,
  with its fields in lowerCamelCase (``sourceName``, as ``grpcurl`` and the exporters print
  them) or as in the proto (``source_name``), optionally wrapped in a ``FlowResult``
  (``{"id": ..., "flow": {...}}``); enums as names (``"WorkloadEndpoint"``, ``"Src"``,
  ``"Allow"``) or numbers; int64 fields as numbers or decimal strings;
* Whisker's ``FlowResponse`` (whisker-backend/pkg/apis/v1/flows.go): the same flow flattened,
  times in RFC 3339, labels joined with `` | ``, public / private networks named ``PUBLIC
  NETWORK`` / ``PRIVATE NETWORK`` and no namespace ``Global``.

Goldmane keeps no addresses and aggregates pods by their generate-name (``checkout-7d9f8c-*``):
every end is address-less, named by namespace, pod (prefix) and labels, for the segmenter to
resolve with the inventory. Folding, verdicts and policies are Calico Enterprise's
(capture.sources.calico).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from capture.sources.base import Opened, ReadOptions, Sink, SourceFormat
from capture.sources.calico import (
    PROFILE_TIER,
    CalicoFold,
    End,
    Report,
    integer,
    label_dict,
    policy_entry,
    port_or_none,
    proto_name,
    read_records,
    text,
)
from capture.sources.recordfold import NS, head_objects, rfc3339_ns

NAME = "goldmane"
WHAT = "Calico Goldmane / Whisker flow"

# goldmane/proto/api.proto enums, by name and by number.
_ENDPOINT_TYPES = {"WorkloadEndpoint": "wep", "HostEndpoint": "hep", "NetworkSet": "ns",
                   "Network": "net", 1: "wep", 2: "hep", 3: "ns", 4: "net"}
_REPORTERS = {"Src": "src", "Dst": "dst", 1: "src", 2: "dst"}
_ACTIONS = {"Allow": "allow", "Deny": "deny", "Pass": "pass", 1: "allow", 2: "deny", 3: "pass"}
_KINDS = {1: "CalicoNetworkPolicy", 2: "GlobalNetworkPolicy", 3: "StagedNetworkPolicy",
          4: "StagedGlobalNetworkPolicy", 5: "StagedKubernetesNetworkPolicy", 6: "NetworkPolicy",
          9: "Profile", 10: "EndOfTier", 11: "ClusterNetworkPolicy"}
_STAGED = frozenset({"StagedNetworkPolicy", "StagedGlobalNetworkPolicy",
                     "StagedKubernetesNetworkPolicy"})
# Whisker's names for Goldmane's "pub" / "pvt" networks and its empty namespace
# (whisker-backend/pkg/handlers/v1/protoconvert.go).
_WHISKER_NETWORKS = {"PUBLIC NETWORK": "pub", "PRIVATE NETWORK": "pvt"}
_WHISKER_GLOBAL = "Global"
_WHISKER_LIST = re.compile(rb'\s*\{\s*"total"\s*:\s*\{[^{}]*\}\s*,\s*"items"\s*:\s*\[')


def _get(obj: Mapping[str, Any], snake: str) -> Any:
    """A field by its proto name or its lowerCamelCase JSON name."""
    if snake in obj:
        return obj[snake]
    head, *rest = snake.split("_")
    return obj.get(head + "".join(p.capitalize() for p in rest))


def _enum(table: Mapping[Any, str], value: Any, what: str) -> str:
    if value in table:
        return table[value]
    raise ValueError(f"bad {what} {value!r}")


def _time(value: Any, what: str) -> int:
    if isinstance(value, str) and not value.isdigit():
        return rfc3339_ns(value)  # Whisker
    return integer(value, what) * NS  # Goldmane: seconds since the epoch


def _end(key: Mapping[str, Any], side: str, whisker: bool) -> End:
    name = text(_get(key, f"{side}_name"), f"{side}_name")
    namespace = text(_get(key, f"{side}_namespace"), f"{side}_namespace")
    if whisker:
        if namespace == _WHISKER_GLOBAL:
            namespace = ""
        if name in _WHISKER_NETWORKS:
            return End(None, "", _WHISKER_NETWORKS[name], "net")
        return End(None, namespace, name, "")
    raw_type = _get(key, f"{side}_type")
    kind = "" if raw_type in (None, 0, "EndpointTypeUnspecified") else \
        _enum(_ENDPOINT_TYPES, raw_type, f"{side}_type")
    return End(None, namespace, name, kind)


def _hit(hit: Any) -> str | None:
    """A Goldmane ``PolicyHit`` as ``TIER/NAMESPACE/NAME ACTION``; None for a staged policy."""
    if not isinstance(hit, dict):
        raise ValueError(f"bad policy hit {hit!r}")
    kind = hit.get("kind")
    kind = _KINDS.get(kind, kind) if isinstance(kind, int) else kind
    if kind in _STAGED:
        return None
    action = _enum(_ACTIONS, hit.get("action"), "policy action")
    tier = text(hit.get("tier"), "tier")
    named = hit
    if kind == "EndOfTier":
        # The tier's default action; the trigger is the first policy of the tier that selected
        # the endpoint (goldmane/proto/api.proto ``PolicyHit.trigger``).
        named = hit.get("trigger") or {}
        if not isinstance(named, dict):
            raise ValueError(f"bad policy trigger {named!r}")
    if kind == "Profile":
        tier = PROFILE_TIER
    return policy_entry(tier, text(named.get("namespace"), "policy namespace"),
                        text(named.get("name"), "policy name"), action)


def _policies(trace: Any) -> frozenset[str]:
    if trace is None:
        return frozenset()
    if not isinstance(trace, dict):
        raise ValueError(f"bad policies {trace!r}")
    # Enforced only: pending policies are a simulation with the staged ones.
    hits = trace.get("enforced", _get(trace, "enforced_policies"))
    if hits is None:
        return frozenset()
    if not isinstance(hits, list):
        raise ValueError(f"bad policies {hits!r}")
    return frozenset(e for e in (_hit(h) for h in hits) if e is not None)


def _parse(obj: Mapping[str, Any], fold: CalicoFold) -> str | None:
    items = obj.get("items")
    if isinstance(items, list) and "total" in obj:
        # Whisker's list response, on one line: ``{"total": {...}, "items": [...]}``.
        skipped = [r for r in (_parse_one(item, fold) for item in items) if r is not None]
        return skipped[0] if skipped else None
    return _parse_one(obj, fold)


def _parse_one(obj: Any, fold: CalicoFold) -> str | None:
    if not isinstance(obj, dict):
        raise ValueError(f"not an object: {obj!r}")
    flow: Mapping[str, Any] = obj
    inner = obj.get("flow")
    if isinstance(inner, dict):
        flow = inner  # FlowResult / FlowUpdate
    key = flow.get("Key", flow.get("key"))
    whisker = key is None
    if whisker:
        key = flow  # Whisker's FlowResponse is flat
    elif not isinstance(key, dict):
        raise ValueError("\"Key\" is not an object")
    proto = proto_name(_get(key, "proto") if not whisker else flow["protocol"])
    if proto is None:
        return "unsupported-protocol"
    reporter = _enum(_REPORTERS, _get(key, "reporter"), "reporter")
    action = _enum(_ACTIONS, _get(key, "action"), "action")
    if action == "pass":
        raise ValueError("bad action 'Pass': a flow's final action is Allow or Deny")
    client, server = _end(key, "source", whisker), _end(key, "dest", whisker)
    server_port = port_or_none(_get(key, "dest_port"), "dest_port")
    if proto not in ("TCP", "UDP", "SCTP"):
        server_port = None
    elif server_port is None:
        raise ValueError(f"no dest_port for {proto}")
    start = _time(_get(flow, "start_time"), "start_time")
    end = _time(_get(flow, "end_time"), "end_time")
    if end < start:
        raise ValueError("end_time is before start_time")
    packets_in = integer(_get(flow, "packets_in"), "packets_in", default=0)
    packets_out = integer(_get(flow, "packets_out"), "packets_out", default=0)
    bytes_in = integer(_get(flow, "bytes_in"), "bytes_in", default=0)
    bytes_out = integer(_get(flow, "bytes_out"), "bytes_out", default=0)
    if reporter == "dst":
        to_server, to_client = (packets_in, bytes_in), (packets_out, bytes_out)
    else:
        to_server, to_client = (packets_out, bytes_out), (packets_in, bytes_in)
    svc_name = text(_get(key, "dest_service_name"), "dest_service_name")
    svc_ns = text(_get(key, "dest_service_namespace"), "dest_service_namespace")
    report = Report(reporter, start, end, action == "deny", to_server, to_client,
                    _policies(_get(key, "policies")), "")
    fold.add((proto, client, None, server, server_port), report,
             client_labels=label_dict(_get(flow, "source_labels")),
             server_labels=label_dict(_get(flow, "dest_labels")),
             service=f"{svc_ns}/{svc_name}" if svc_name else None, names=())
    return None


def _looks_like(obj: Mapping[str, Any]) -> bool:
    items = obj.get("items")
    if isinstance(items, list) and items and isinstance(items[0], dict):
        obj = items[0]
    inner = obj.get("flow")
    flow = inner if isinstance(inner, dict) else obj
    key = flow.get("Key", flow.get("key"))
    if isinstance(key, dict):
        return _get(key, "reporter") is not None and _get(key, "source_name") is not None
    return ("protocol" in flow and "reporter" in flow and "source_name" in flow
            and flow.get("reporter") in ("Src", "Dst"))


def _sniff(head: bytes) -> bool:
    if head.startswith(b"data:"):
        head = head.replace(b"\ndata:", b"\n")[5:]
    for obj in head_objects(head, limit=1):
        return _looks_like(obj)
    # Whisker's list response longer than the head: its start.
    return bool(_WHISKER_LIST.match(head)) and (b'"reporter":"Src"' in head
                                                or b'"reporter":"Dst"' in head)


def _read(opened: Opened, sink: Sink, options: ReadOptions) -> None:
    read_records(opened, sink, NAME, WHAT, _parse, prefix=b"data:")


def _header(head: bytes) -> int | None:
    # Whisker's list response is one JSON document, read again whole; Goldmane's stream is
    # JSON lines (or server-sent events), each line alone.
    return None if _WHISKER_LIST.match(head) else 0


GOLDMANE = SourceFormat(
    name=NAME,
    title="Calico OSS Goldmane / Whisker flows",
    sniff=_sniff,
    read=_read,
    header=_header,
)
