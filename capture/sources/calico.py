"""Calico Enterprise / Calico Cloud flow logs (``flows.log``: one JSON object a line, the fields
of tigera/docs calico-enterprise/observability/elastic/flow/datatypes.mdx). docs/sources.md
says what is kept and how.

A Calico flow log record is not one connection: it aggregates, over an export interval (5
minutes by default), the connections between two endpoints -- by pod name prefix
(``frontend-7d4f9c-*``) and without addresses or source ports at the default aggregation
levels -- and each is reported twice, by the node of the source (``reporter: src``) and by the
node of the destination (``dst``). The records of one pair of ends, port and protocol are
folded into one flow record per verdict:

* ``dropped``: every record that says ``deny``, and every ``allow`` from one end whose interval
  overlaps a ``deny`` from the other end (the source let the connection out, the destination
  dropped it: it never got through);
* ``forwarded``: the other ``allow`` records.

First and last seen are the earliest start and the latest end of the intervals; packet and
byte counts are the larger of the two ends' sums (both count the same packets). The source of
a Calico record is always the end that opened the connection (``reporter`` says whose node
wrote it), so the direction is ``reported``. Aggregated ends (no address, ``*`` in the name)
become address-less ends that name their namespace and pod prefix (docs/flow-format.md).

Calico OSS Goldmane / Whisker flows (capture.sources.goldmane) use the same fold.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from capture.errors import CaptureError
from capture.sources.base import Opened, ReadOptions, Record, Sink, SourceFormat
from capture.sources.recordfold import (
    NS,
    FileFold,
    address,
    dns_name,
    epoch_seconds,
    head_objects,
    json_lines,
    lines_stand_alone,
)

NAME = "calico"
WHAT = "Calico flow log"

# Protocols by name and IANA number, as Calico writes them ("tcp", or "6" in some exports).
_PROTOS = {"tcp": "TCP", "6": "TCP", "udp": "UDP", "17": "UDP", "sctp": "SCTP", "132": "SCTP",
           "icmp": "ICMP", "1": "ICMP", "icmp6": "ICMPv6", "icmpv6": "ICMPv6",
           "ipv6-icmp": "ICMPv6", "58": "ICMPv6"}
_PORTED = frozenset({"TCP", "UDP", "SCTP"})
_NONE = frozenset({"", "-", "*"})  # Calico's "not known / aggregated" markers
# Labels Calico adds to workload endpoints for its own selectors, not the pod's labels
# (libcalico-go lib/apis/v3 labels: projectcalico.org/namespace, .../orchestrator, ...).
_META_LABEL_PREFIX = "projectcalico.org/"

# Policy kinds of the Calico 3.32 policy-hit string ``<index>|<tier>|<kind>:[<ns>/]<name>|
# <action>|<rule index>`` (projectcalico/calico felix/types/policy_id.go ShortKind*,
# goldmane/proto/methods.go), and which of them are staged (not enforced).
_SHORT_KINDS = frozenset({"np", "gnp", "snp", "sgnp", "sknp", "knp", "kcnp", "pro"})
_STAGED_SHORT_KINDS = frozenset({"snp", "sgnp", "sknp"})
_KIND_PREFIX = re.compile(r"([a-z]+):(.*)\Z", re.S)
# Name prefixes of the policy-hit strings before 3.32 (libcalico-go lib/names/policy.go).
_OLD_NAME_PREFIXES = ("knp.default.", "kcnp.kube-admin.", "kcnp.kube-baseline.", "__PROFILE__.")
PROFILE_TIER = "__PROFILE__"


@dataclass(frozen=True, order=True)
class End:
    """One end as the fold keys it: its address when the record has one, else its name."""

    ip: str | None
    namespace: str
    name: str  # pod name, aggregated pod prefix (``*``), host endpoint / network set name
    kind: str  # wep, hep, ns, net ("" when the record does not say)


@dataclass
class Report:
    """One flow log record, as folded."""

    reporter: str  # src, dst, fwd
    start: int  # ns
    end: int
    deny: bool
    to_server: tuple[int, int]  # packets, bytes
    to_client: tuple[int, int]
    policies: frozenset[str]
    node: str


@dataclass
class Fold:
    """The records of one (protocol, client, client port, server, server port)."""

    reports: list[Report] = field(default_factory=list)
    client_labels: dict[str, str] = field(default_factory=dict)
    server_labels: dict[str, str] = field(default_factory=dict)
    services: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)


FoldKey = tuple[str, End, int | None, End, int | None]


class CalicoFold:
    """Every record of one source of one ingest, folded by pair of ends (module doc)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.folds: dict[FoldKey, Fold] = {}

    def add(self, key: FoldKey, report: Report, *, client_labels: Mapping[str, str],
            server_labels: Mapping[str, str], service: str | None,
            names: Iterable[str]) -> None:
        fold = self.folds.get(key)
        if fold is None:
            fold = self.folds[key] = Fold()
        fold.reports.append(report)
        _merge_labels(fold.client_labels, client_labels)
        _merge_labels(fold.server_labels, server_labels)
        if service:
            fold.services.add(service)
        fold.names.update(names)

    def records(self) -> list[Record]:
        out: list[Record] = []
        for key, fold in self.folds.items():
            denied = [r for r in fold.reports if r.deny]
            blocked: list[Report] = []
            passed: list[Report] = []
            for r in fold.reports:
                if not r.deny:
                    # Let out by one end, dropped by the other at the same time: dropped.
                    dropped_there = any(d.reporter != r.reporter and d.start < r.end
                                        and r.start < d.end for d in denied)
                    (blocked if dropped_there else passed).append(r)
            for verdict, reports in (("dropped", denied + blocked), ("forwarded", passed)):
                if reports:
                    out.append(self._record(key, fold, verdict, reports))
        return out

    def _record(self, key: FoldKey, fold: Fold, verdict: str,
                reports: list[Report]) -> Record:
        proto, client, client_port, server, server_port = key
        sums: dict[str, list[int]] = {}
        client_nodes: set[str] = set()
        server_nodes: set[str] = set()
        policies: set[str] = set()
        for r in reports:
            total = sums.setdefault(r.reporter, [0, 0, 0, 0])
            total[0] += r.to_server[0]
            total[1] += r.to_server[1]
            total[2] += r.to_client[0]
            total[3] += r.to_client[1]
            policies.update(r.policies)
            if r.node:
                # The node that wrote a record is the node of the end that reported it.
                if r.reporter == "src":
                    client_nodes.add(r.node)
                elif r.reporter == "dst":
                    server_nodes.add(r.node)
        counts = [max(t[i] for t in sums.values()) for i in range(4)]
        record: Record = {
            "record": "flow",
            "proto": proto,
            "client": client.ip,
            "server": server.ip,
            "client_port": client_port,
            "server_port": server_port,
            "first_seen": epoch_seconds(min(r.start for r in reports)),
            "last_seen": epoch_seconds(max(r.end for r in reports)),
            "packets_to_server": counts[0],
            "bytes_to_server": counts[1],
            "packets_to_client": counts[2],
            "bytes_to_client": counts[3],
            "direction": "reported",
            "handshake": False,
            "resets": 0,
            "tls": False,
            "sni": None,
            "outer": None,
            "sources": [self.name],
            "verdict": verdict,
        }
        client_ep = endpoint(client, fold.client_labels, client_nodes, None, ())
        server_ep = endpoint(server, fold.server_labels, server_nodes,
                             min(fold.services) if fold.services else None, fold.names)
        if client_ep:
            record["client_endpoint"] = client_ep
        if server_ep:
            record["server_endpoint"] = server_ep
        if policies:
            record["policies"] = sorted(policies)
        return record


def endpoint(end: End, labels: Mapping[str, str], nodes: set[str], service: str | None,
             names: Iterable[str]) -> dict[str, Any]:
    """An end's identity object (docs/flow-format.md ``*_endpoint``)."""
    ep: dict[str, Any] = {}
    if end.namespace:
        ep["namespace"] = end.namespace
    if end.kind == "net":
        # Calico names ends outside every known endpoint "pub" (public address) or "pvt"
        # (private address): both are outside the cluster, Cilium's "world".
        ep["entity"] = "world"
    elif end.kind == "hep":
        ep["entity"] = "host"
        if end.name:
            ep["workload_kind"], ep["workload_name"] = "HostEndpoint", end.name
    elif end.kind == "ns":
        if end.name:
            ep["workload_kind"] = "NetworkSet" if end.namespace else "GlobalNetworkSet"
            ep["workload_name"] = end.name
    elif end.name:
        if end.kind == "wep" or end.namespace:
            ep["pod"] = end.name
        else:  # a name of no known kind (Whisker does not say the endpoint type)
            ep["workload_name"] = end.name
    if labels:
        ep["labels"] = dict(sorted(labels.items()))
    if nodes and end.kind in ("wep", "hep", ""):  # (only Calico's own endpoints report)
        ep["node"] = min(nodes)
    if service:
        ep["service"] = service
    if names:
        ep["names"] = sorted(set(names))
    return ep


def _merge_labels(into: dict[str, str], labels: Mapping[str, str]) -> None:
    for k, v in labels.items():
        if k not in into or v < into[k]:  # order-independent: the least value of a key
            into[k] = v


# -- shared field readers ----------------------------------------------------------------------


def proto_name(value: Any) -> str | None:
    """The flow file's protocol for Calico's ``proto`` (None: not one the flow file holds)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"bad protocol {value!r}")
    return _PROTOS.get(value.lower())


def integer(value: Any, what: str, *, default: int | None = None) -> int:
    """A count, time or port: a non-negative integer, or its decimal string (protobuf's JSON
    form of int64); null or absent is ``default`` where there is one (counts: 0)."""
    if value is None and default is not None:
        return default
    if type(value) is int and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit() and value.isascii():
        return int(value)
    if type(value) is float and value.is_integer() and value >= 0:
        return int(value)
    raise ValueError(f"bad {what} {value!r}")


def port_or_none(value: Any, what: str) -> int | None:
    if value is None or (isinstance(value, str) and value in _NONE):
        return None
    port = integer(value, what)
    if not 0 <= port <= 65535:
        raise ValueError(f"bad {what} {value!r}")
    return port


def label_dict(value: Any) -> dict[str, str]:
    """Labels as Calico writes them: ``{"labels": ["k=v", ...]}``, a list of ``k=v``, Whisker's
    ``"k=v | k=v"``, an object, or ``-`` / null (aggregated away)."""
    if value is None or (isinstance(value, str) and value.strip() in _NONE):
        return {}
    if isinstance(value, dict) and set(value) == {"labels"}:
        value = value["labels"]
        if value is None:
            return {}
    items: Iterable[tuple[str, str]]
    if isinstance(value, str):
        value = [part.strip() for part in value.split(" | ")]
    if isinstance(value, list):
        pairs = []
        for label in value:
            if not isinstance(label, str):
                raise ValueError(f"bad label {label!r}")
            if label in _NONE:
                continue
            key, _, val = label.partition("=")
            pairs.append((key, val))
        items = pairs
    elif isinstance(value, dict):
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ValueError("labels are not strings")
        items = value.items()
    else:
        raise ValueError(f"bad labels {value!r}")
    return {k: v for k, v in items if k and not k.startswith(_META_LABEL_PREFIX)}


def text(value: Any, what: str) -> str:
    """A string field; "" for null and Calico's ``-`` / ``*`` placeholders."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"bad {what} {value!r}")
    return "" if value in _NONE else value


def policy_from_string(hit: str) -> str | None:
    """A policy-hit string as ``TIER/NAMESPACE/NAME ACTION``; None for a staged policy (not
    enforced). Both formats: ``<index>|<tier>|<name>|<action>|<rule index>`` (before 3.32, the
    name with kind prefixes: ``ns/knp.default.x``, ``ns/tier.x``, ``tier.staged:x``) and 3.32's
    ``<index>|<tier>|<kind>:[<ns>/]<name>|<action>|<rule index>``."""
    parts = hit.split("|")
    if len(parts) != 5:
        raise ValueError(f"bad policy {hit!r}: not <index>|<tier>|<name>|<action>|<rule>")
    _index, tier, name_part, action, rule = parts
    action = action.lower()
    if action not in ("allow", "deny", "pass") or not rule.lstrip("-").isdigit():
        raise ValueError(f"bad policy {hit!r}")
    m = _KIND_PREFIX.match(name_part)
    if m is not None and m.group(1) in _SHORT_KINDS:
        kind, rest = m.groups()
        if kind in _STAGED_SHORT_KINDS:
            return None
        if kind == "pro":
            tier = PROFILE_TIER
    else:
        if "staged:" in name_part:
            return None
        rest = name_part
    namespace, _, name = rest.rpartition("/")
    for prefix in _OLD_NAME_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix):]
            if prefix == "__PROFILE__.":
                tier = PROFILE_TIER
            break
    return policy_entry(tier, namespace, name, action)


def policy_entry(tier: str, namespace: str, name: str, action: str) -> str:
    """``TIER/NAMESPACE/NAME ACTION`` (docs/flow-format.md), ``-`` for a missing part. Before
    Calico 3.32 a Calico policy's name began with its tier (``tier1.policy1``,
    ``default.allow-web``); the tier is said once."""
    if tier and tier != PROFILE_TIER and name.startswith(tier + "."):
        name = name[len(tier) + 1:]
    return f"{tier or '-'}/{namespace or '-'}/{name or '-'} {action.lower()}"


def enterprise_policies(value: Any) -> frozenset[str]:
    """The enforced policies of a Calico Enterprise record's ``policies``: an object of lists
    (``enforced_policies``, ``transit_policies``; the deprecated ``all_policies`` only when
    there is no ``enforced_policies``: it mixes in staged policies) or a bare list."""
    if value is None or value == "-":
        return frozenset()
    lists: list[Any]
    if isinstance(value, list):
        lists = [value]
    elif isinstance(value, dict):
        main = value.get("enforced_policies")
        if main is None:
            main = value.get("all_policies")
        lists = [main, value.get("transit_policies")]
    else:
        raise ValueError(f"bad policies {value!r}")
    out: set[str] = set()
    for hits in lists:
        if hits is None:
            continue
        if not isinstance(hits, list):
            raise ValueError(f"bad policies {hits!r}")
        for hit in hits:
            if not isinstance(hit, str):
                raise ValueError(f"bad policy {hit!r}")
            entry = policy_from_string(hit)
            if entry is not None:
                out.add(entry)
    return frozenset(out)


def read_records(opened: Opened, sink: Sink, name: str, what: str, parse: Any,
                 *, prefix: bytes | None = None) -> None:
    """Fold every record of one file with ``parse(obj, fold, sink)`` (returns a skip reason or
    None) and publish the fold's records; ``CaptureError`` for a bad record or a file with no
    record."""
    fold = FileFold.state(sink, name, lambda: CalicoFold(name))
    seen = 0
    for number, obj in json_lines(opened, sink, what=what, prefix=prefix):
        sink.input_records += 1
        seen += 1
        try:
            reason = parse(obj, fold)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            detail = f"no {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)
            raise CaptureError(f"not a {what} record: {detail}", path=opened.path,
                               record=number, unit="line") from exc
        if reason is not None:
            sink.skipped[reason] += 1
    if seen == 0:
        raise CaptureError(f"holds no {what} records", path=opened.path)
    FileFold.publish(sink, name, fold.records())


# -- Calico Enterprise -------------------------------------------------------------------------


def _end(obj: Mapping[str, Any], side: str) -> End:
    raw_ip = obj.get(f"{side}_ip")
    ip = None if raw_ip is None or raw_ip in _NONE else address(raw_ip)
    name = text(obj.get(f"{side}_name"), f"{side}_name")
    aggr = text(obj.get(f"{side}_name_aggr"), f"{side}_name_aggr")
    if not name or "*" in name:
        name = aggr or name  # the aggregated name (pod prefix ending in ``*``; pub / pvt)
    kind = text(obj.get(f"{side}_type"), f"{side}_type")
    return End(ip, text(obj.get(f"{side}_namespace"), f"{side}_namespace"), name, kind)


def _parse_enterprise(obj: Mapping[str, Any], fold: CalicoFold) -> str | None:
    proto = proto_name(obj["proto"])
    if proto is None:
        return "unsupported-protocol"
    reporter = obj["reporter"]
    if reporter not in ("src", "dst", "fwd"):
        raise ValueError(f"bad reporter {reporter!r}")
    action = obj["action"]
    if action not in ("allow", "deny"):
        raise ValueError(f"bad action {action!r}")
    client, server = _end(obj, "source"), _end(obj, "dest")
    server_port = port_or_none(obj.get("dest_port"), "dest_port")
    client_port = port_or_none(obj.get("source_port"), "source_port")
    if proto in _PORTED:
        if server_port is None:
            raise ValueError(f"no dest_port for {proto}")
    else:
        client_port = server_port = None
    start = integer(obj["start_time"], "start_time") * NS
    end = integer(obj["end_time"], "end_time") * NS
    if end < start:
        raise ValueError("end_time is before start_time")
    packets_in = integer(obj.get("packets_in"), "packets_in", default=0)
    packets_out = integer(obj.get("packets_out"), "packets_out", default=0)
    bytes_in = integer(obj.get("bytes_in"), "bytes_in", default=0)
    bytes_out = integer(obj.get("bytes_out"), "bytes_out", default=0)
    # "in" and "out" are the reporting end's: the source sends out to the server, the
    # destination takes in from the client.
    if reporter == "dst":
        to_server, to_client = (packets_in, bytes_in), (packets_out, bytes_out)
    else:
        to_server, to_client = (packets_out, bytes_out), (packets_in, bytes_in)
    svc_ns = text(obj.get("dest_service_namespace"), "dest_service_namespace")
    svc_name = text(obj.get("dest_service_name"), "dest_service_name")
    domains = obj.get("dest_domains")
    names = [dns_name(text(d, "dest_domains")) for d in domains if d not in _NONE] \
        if isinstance(domains, list) else []
    report = Report(reporter, start, end, action == "deny", to_server, to_client,
                    enterprise_policies(obj.get("policies")), text(obj.get("host"), "host"))
    fold.add((proto, client, client_port, server, server_port), report,
             client_labels=label_dict(obj.get("source_labels")),
             server_labels=label_dict(obj.get("dest_labels")),
             service=f"{svc_ns}/{svc_name}" if svc_name else None,
             names=[n for n in names if n])
    return None


def _is_enterprise(obj: Mapping[str, Any]) -> bool:
    return ("reporter" in obj and "action" in obj and "proto" in obj
            and ("source_name_aggr" in obj or "source_ip" in obj or "source_type" in obj))


def _sniff(head: bytes) -> bool:
    for obj in head_objects(head, limit=1):
        return _is_enterprise(obj)
    return False


def _read(opened: Opened, sink: Sink, options: ReadOptions) -> None:
    read_records(opened, sink, NAME, WHAT, _parse_enterprise)


CALICO = SourceFormat(
    name=NAME,
    title="Calico Enterprise / Cloud flow log (flows.log)",
    sniff=_sniff,
    read=_read,
    header=lines_stand_alone,
)
