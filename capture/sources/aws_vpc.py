"""AWS VPC Flow Logs (versions 2 to 8) and Transit Gateway Flow Logs, as text or JSON lines.

What is read (field meanings from AWS's VPC user guide, "Flow log records" -- archived in
``shared/corpora/flows/aws-vpc/flow-logs.md`` -- and the Transit Gateway guide,
``tgw-flow-logs.md`` there):

* text records, fields separated by spaces, ``-`` for a field that does not apply. A header
  line naming the fields (AWS writes one as the first line of every file it delivers to S3, in
  the format's own order) sets the order for the lines after it; without one, the number of
  fields picks a documented order: 14 = the default format (version 2), 29 = every version 2-5
  field in table order, 36 = the Transit Gateway default format, 39 and 40 = the same as 29
  followed by the version 7 ECS fields and the version 8 ``reject-reason``. Any other count
  needs the header: a custom format delivered without one (CloudWatch Logs) is read once its
  format string is put on the first line;
* JSON lines: the CloudWatch Logs / forwarder wrapper ``{"message": "<record>"}``, CloudWatch
  subscription batches ``{"logEvents": [{"message": ...}, ...]}``, and one object per record
  with the fields as keys (``srcaddr`` or ``pkt_srcaddr``: Parquet column names use ``_``), as a
  Parquet file's rows come out of a converter.

A connection is reported once per direction, per network interface that carries it and per
aggregation window; :mod:`capture.sources.connections` folds them. Addresses are the packet's
own (``pkt-srcaddr`` / ``pkt-dstaddr``, where the format has them and they are not ``-``): on an
EKS node the interface's ``srcaddr`` is the node's primary address, the packet's the pod's. The
observation point of a record is its ``interface-id`` (a transit gateway's: its
``tgw-attachment-id``) with its ``flow-direction``.

Client and server: ``tcp-flags`` (OR-ed over the window; 2 = a SYN from the sender, 18 = a
SYN-ACK, so the receiver opened) give ``handshake``; ``flow-direction`` does not help, as it is
the record's direction at the interface (AWS's own example logs one connection as an ingress
and an egress record), not who opened it. Without flags: ``port-heuristic``.

``action`` ACCEPT is ``verdict: forwarded`` and REJECT ``dropped``; a connection whose
directions were treated differently (a stateless network ACL dropping replies) gives one record
per verdict. Transit gateway records have no action: no verdict. NODATA and SKIPDATA records
carry no traffic: they are counted under ``stats.skipped`` as ``nodata`` / ``skipdata``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from capture.errors import CaptureError
from capture.sources.base import Opened, ReadOptions, Sink, SourceFormat
from capture.sources.connections import PORTED, PROTOCOLS, SKIP_PROTOCOL, fold_for
from capture.sources.reading import Addresses, head_text, line_error, text_lines

NAME = "aws-vpc"

VPC_V2 = ("version", "account-id", "interface-id", "srcaddr", "dstaddr", "srcport", "dstport",
          "protocol", "packets", "bytes", "start", "end", "action", "log-status")
VPC_V3 = ("vpc-id", "subnet-id", "instance-id", "tcp-flags", "type", "pkt-srcaddr",
          "pkt-dstaddr")
VPC_V4 = ("region", "az-id", "sublocation-type", "sublocation-id")
VPC_V5 = ("pkt-src-aws-service", "pkt-dst-aws-service", "flow-direction", "traffic-path")
VPC_V7 = ("ecs-cluster-arn", "ecs-cluster-name", "ecs-container-instance-arn",
          "ecs-container-instance-id", "ecs-container-id", "ecs-second-container-id",
          "ecs-service-name", "ecs-task-definition-arn", "ecs-task-arn", "ecs-task-id")
VPC_V8 = ("reject-reason",)
TGW_DEFAULT = ("version", "resource-type", "account-id", "tgw-id", "tgw-attachment-id",
               "tgw-src-vpc-account-id", "tgw-dst-vpc-account-id", "tgw-src-vpc-id",
               "tgw-dst-vpc-id", "tgw-src-subnet-id", "tgw-dst-subnet-id", "tgw-src-eni",
               "tgw-dst-eni", "tgw-src-az-id", "tgw-dst-az-id", "tgw-pair-attachment-id",
               "srcaddr", "dstaddr", "srcport", "dstport", "protocol", "packets", "bytes",
               "start", "end", "log-status", "type", "packets-lost-no-route",
               "packets-lost-blackhole", "packets-lost-mtu-exceeded",
               "packets-lost-ttl-expired", "tcp-flags", "region", "flow-direction",
               "pkt-src-aws-service", "pkt-dst-aws-service")
_ALL_V5 = VPC_V2 + VPC_V3 + VPC_V4 + VPC_V5
# Orders of header-less lines, by field count (see the module docstring).
DEFAULT_ORDERS: Mapping[int, tuple[str, ...]] = {
    len(VPC_V2): VPC_V2,
    len(_ALL_V5): _ALL_V5,
    len(TGW_DEFAULT): TGW_DEFAULT,
    len(_ALL_V5 + VPC_V7): _ALL_V5 + VPC_V7,
    len(_ALL_V5 + VPC_V7 + VPC_V8): _ALL_V5 + VPC_V7 + VPC_V8,
}
KNOWN_FIELDS = frozenset(VPC_V2 + VPC_V3 + VPC_V4 + VPC_V5 + VPC_V7 + VPC_V8 + TGW_DEFAULT)

STATUSES = frozenset({"OK", "NODATA", "SKIPDATA"})
VERDICTS: Mapping[str, str | None] = {"ACCEPT": "forwarded", "REJECT": "dropped", "-": None}
FLOW_DIRECTIONS = frozenset({"ingress", "egress", "-"})
TRAFFIC_TYPES = frozenset({"IPv4", "IPv6", "EFA", "-"})
# AWS's aggregation window is at most 10 minutes, and start / end may lag the packets by up to
# 60 s (flow-logs.md, "Aggregation interval" and the start / end fields). A record spanning far
# more is damaged; an hour leaves room for any delay.
MAX_WINDOW = 3600
_FIELD_NAME = re.compile(r"[a-z][a-z0-9-]*\Z")


def _is_header(tokens: Sequence[str]) -> bool:
    """A line naming fields: every token a field name, at least two of them known ones. (A
    record always holds a number, an address, ``-`` or an upper-case word; an unknown name is
    a field of a newer version, read past.)"""
    if not tokens or not _FIELD_NAME.match(tokens[0]):  # a record's version, on most lines
        return False
    return (sum(t in KNOWN_FIELDS for t in tokens) >= 2
            and all(_FIELD_NAME.match(t) for t in tokens))


class _Order:
    """Where each field this reader uses is in a record of one field order (-1: absent)."""

    def __init__(self, fields: Sequence[str]) -> None:
        self.fields = tuple(fields)
        self.size = len(fields)
        where: dict[str, int] = {}
        for i, name in enumerate(fields):
            where.setdefault(name, i)
        self.duplicates = sorted({f for f in fields if fields.count(f) > 1})
        get = where.get
        self.status = get("log-status", -1)
        self.action = get("action", -1)
        self.src = get("srcaddr", -1)
        self.dst = get("dstaddr", -1)
        self.pkt_src = get("pkt-srcaddr", -1)
        self.pkt_dst = get("pkt-dstaddr", -1)
        self.sport = get("srcport", -1)
        self.dport = get("dstport", -1)
        self.proto = get("protocol", -1)
        self.packets = get("packets", -1)
        self.bytes = get("bytes", -1)
        self.start = get("start", -1)
        self.end = get("end", -1)
        self.flags = get("tcp-flags", -1)
        self.flow_direction = get("flow-direction", -1)
        self.type = get("type", -1)
        self.points = tuple(i for i in (get("interface-id", -1), get("tgw-attachment-id", -1),
                                        self.flow_direction) if i >= 0)

    def missing(self) -> list[str]:
        """Fields a connection needs that this order lacks."""
        need = []
        if self.src < 0 and self.pkt_src < 0:
            need.append("srcaddr")
        if self.dst < 0 and self.pkt_dst < 0:
            need.append("dstaddr")
        for name, at in (("srcport", self.sport), ("dstport", self.dport),
                         ("protocol", self.proto), ("start", self.start), ("end", self.end)):
            if at < 0:
                need.append(name)
        return need


_DEFAULTS = {n: _Order(fields) for n, fields in DEFAULT_ORDERS.items()}


class _Reader:
    def __init__(self, opened: Opened, sink: Sink) -> None:
        self.opened = opened
        self.sink = sink
        self.fold = fold_for(sink, NAME)
        self.addresses = Addresses()
        self.declared: _Order | None = None  # the order of the last header line
        self.json_orders: dict[tuple[str, ...], _Order] = {}
        self.records = 0

    def bad(self, line: int, message: str) -> CaptureError:
        return line_error(self.opened, line, message)

    # -- lines -------------------------------------------------------------------------------

    def line(self, number: int, text: str) -> None:
        if text.lstrip().startswith("{"):
            self.json_line(number, text)
        else:
            self.text(number, text)

    def text(self, number: int, text: str) -> None:
        tokens = text.split()
        if not tokens:
            return
        if _is_header(tokens):
            order = _Order(tokens)
            if order.duplicates:
                raise self.bad(number, f"header line names {', '.join(order.duplicates)} twice")
            missing = order.missing()
            if missing:
                raise self.bad(number, f"the flow-log format lacks the field(s) "
                                       f"{', '.join(missing)} that a connection needs")
            self.declared = order
            return
        declared = self.declared
        if declared is None:
            default = _DEFAULTS.get(len(tokens))
            if default is None:
                raise self.bad(number, f"{len(tokens)} fields and no header line naming them "
                                       f"(without one, {', '.join(map(str, sorted(_DEFAULTS)))}"
                                       " fields are read in AWS's documented orders): put the "
                                       "flow log's format string on the first line")
            self.record(number, tokens, default)
            return
        if len(tokens) != declared.size:
            raise self.bad(number, f"{len(tokens)} fields, but the header line names "
                                   f"{declared.size}")
        self.record(number, tokens, declared)

    def json_line(self, number: int, text: str) -> None:
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise self.bad(number, f"not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise self.bad(number, "a JSON line that is not an object")
        message = obj.get("message")
        if isinstance(message, str):
            self.text(number, message)
            return
        events = obj.get("logEvents")
        if isinstance(events, list):
            if obj.get("messageType") == "CONTROL_MESSAGE":
                return  # CloudWatch's check that the destination is reachable
            for event in events:
                message = event.get("message") if isinstance(event, dict) else None
                if not isinstance(message, str):
                    raise self.bad(number, 'a "logEvents" entry without a "message" string')
                self.text(number, message)
            return
        self.columns(number, obj)

    def columns(self, number: int, obj: Mapping[str, Any]) -> None:
        """One record as an object of fields (Parquet column names use ``_`` for ``-``)."""
        names = tuple(str(k).replace("_", "-") for k in obj)
        if not any(n in KNOWN_FIELDS for n in names):
            raise self.bad(number, "a JSON object that is neither a flow-log record nor a "
                                   '{"message": ...} wrapper of one')
        order = self.json_orders.get(names)
        if order is None:
            order = _Order(names)
            if order.duplicates:
                raise self.bad(number, f"names {', '.join(order.duplicates)} twice")
            missing = order.missing()
            if missing:
                raise self.bad(number, f"the record lacks the field(s) {', '.join(missing)} "
                                       "that a connection needs")
            self.json_orders[names] = order
        tokens = []
        for value in obj.values():
            if value is None:
                tokens.append("-")
            elif isinstance(value, bool) or not isinstance(value, (str, int)):
                raise self.bad(number, f"field value {value!r} is neither text nor an integer")
            else:
                tokens.append(str(value))
        self.record(number, tokens, order)

    # -- one record --------------------------------------------------------------------------

    def record(self, number: int, t: Sequence[str], o: _Order) -> None:
        # The hot path: one call per record, fields read by index, numbers checked inline
        # (``isdecimal`` then ``int``); the precise messages come from ``integer`` on failure.
        self.records += 1
        self.sink.input_records += 1
        if o.status >= 0:
            status = t[o.status]
            if status != "OK":
                if status not in STATUSES:
                    raise self.bad(number, f"log-status {status!r} is none of OK, NODATA, "
                                           "SKIPDATA")
                self.sink.skipped[status.lower()] += 1
                return
        action = t[o.action] if o.action >= 0 else "-"
        if action not in VERDICTS:
            raise self.bad(number, f"action {action!r} is neither ACCEPT nor REJECT")
        if o.flow_direction >= 0 and t[o.flow_direction] not in FLOW_DIRECTIONS:
            raise self.bad(number, f"flow-direction {t[o.flow_direction]!r} is neither ingress "
                                   "nor egress")
        if o.type >= 0 and t[o.type] not in TRAFFIC_TYPES:
            raise self.bad(number, f"type {t[o.type]!r} is none of IPv4, IPv6, EFA")
        text = t[o.proto]
        proto_number = int(text) if text.isdecimal() else -1
        if not 0 <= proto_number <= 255:
            self.integer(t, o.proto, "protocol", number, 255)
        proto = PROTOCOLS.get(proto_number)
        if proto is None:
            self.sink.skipped[SKIP_PROTOCOL] += 1
            return
        src = self.address(t, o.pkt_src, o.src, "srcaddr", number)
        dst = self.address(t, o.pkt_dst, o.dst, "dstaddr", number)
        sport: int | None = None
        dport: int | None = None
        if proto in PORTED:
            text = t[o.sport]
            sport = int(text) if text.isdecimal() else -1
            if not 0 <= sport <= 65535:
                self.integer(t, o.sport, "srcport", number, 65535)
            text = t[o.dport]
            dport = int(text) if text.isdecimal() else -1
            if not 0 <= dport <= 65535:
                self.integer(t, o.dport, "dstport", number, 65535)
        text = t[o.start]
        start = int(text) if text.isdecimal() else self.integer(t, o.start, "start", number)
        text = t[o.end]
        end = int(text) if text.isdecimal() else self.integer(t, o.end, "end", number)
        if end < start:
            raise self.bad(number, f"end {end} is before start {start}")
        if end - start > MAX_WINDOW:
            raise self.bad(number, f"start {start} is {end - start} s before end {end}; an "
                                   "aggregation window is at most 10 minutes")
        packets = self.optional(t, o.packets, "packets", number)
        nbytes = self.optional(t, o.bytes, "bytes", number)
        flags = self.optional(t, o.flags, "tcp-flags", number) if o.flags >= 0 else 0
        points = o.points
        point = (t[points[0]], t[points[1]]) if len(points) == 2 else tuple(t[i] for i in points)
        self.fold.add(proto, src, sport, dst, dport, float(start), float(end), packets, nbytes,
                      point=point, verdict=VERDICTS[action], tcp_flags=flags)

    def address(self, t: Sequence[str], packet: int, interface: int, name: str,
                number: int) -> str:
        text = t[packet] if packet >= 0 and t[packet] != "-" else None
        if text is None:
            if interface < 0 or t[interface] == "-":
                raise self.bad(number, f"no {name} (nor pkt-{name}) in a record with traffic")
            text = t[interface]
        canonical = self.addresses(text)
        if canonical is None:
            raise self.bad(number, f"{name} {text!r} is not an IP address")
        return canonical

    def integer(self, t: Sequence[str], at: int, name: str, number: int,
                most: int | None = None) -> int:
        """The field at ``at`` as a number (0 to ``most``), or the error naming it."""
        text = t[at]
        if not text.isdecimal() or (most is not None and int(text) > most):
            limit = f" from 0 to {most}" if most is not None else ""
            raise self.bad(number, f"{name} {text!r} is not a number{limit}")
        return int(text)

    def optional(self, t: Sequence[str], at: int, name: str, number: int) -> int:
        if at < 0:
            return 0
        text = t[at]
        if text.isdecimal():
            return int(text)
        if text == "-":
            return 0
        return self.integer(t, at, name, number)


def _read(opened: Opened, sink: Sink, options: ReadOptions) -> None:
    reader = _Reader(opened, sink)
    for number, text in text_lines(opened, sink):
        reader.line(number, text)
        if options.progress is not None and number % 65536 == 0:
            options.progress(number, 0)
    if reader.records == 0:
        raise line_error(opened, None, "no flow-log records in the file (only header or blank "
                                       "lines)")
    reader.fold.publish(sink)


def _sniff_text(line: str) -> bool:
    tokens = line.split()
    if _is_header(tokens):
        return True
    order = _DEFAULTS.get(len(tokens))
    return (order is not None and tokens[0].isdigit() and order.status >= 0
            and tokens[order.status] in STATUSES)


def _sniff(head: bytes) -> bool:
    line = next((s for s in head_text(head).splitlines() if s.strip()), "").strip()
    if not line.startswith("{"):
        return _sniff_text(line)
    try:
        obj = json.loads(line)
    except ValueError:
        return False
    if not isinstance(obj, dict):
        return False
    message = obj.get("message")
    if isinstance(message, str):
        return _sniff_text(message)
    events = obj.get("logEvents")
    if isinstance(events, list):
        return any(isinstance(e, dict) and isinstance(e.get("message"), str)
                   and _sniff_text(e["message"]) for e in events[:1])
    names = {str(k).replace("_", "-") for k in obj}
    return (len(names & KNOWN_FIELDS) >= 4 and bool(names & {"srcaddr", "pkt-srcaddr"})
            and "protocol" in names)


def _header(head: bytes) -> int:
    """Followed by parts: the field-naming first line, where the file has one."""
    end = head.find(b"\n")
    if end < 0:
        return 0
    tokens = head[:end].decode("utf-8", errors="ignore").split()
    return end + 1 if tokens and _is_header(tokens) else 0


AWS_VPC = SourceFormat(
    name=NAME,
    title="AWS VPC / Transit Gateway flow log",
    sniff=_sniff,
    read=_read,
    header=_header,
)
