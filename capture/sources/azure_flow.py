"""Azure Network Watcher flow logs: virtual network (VNet) flow logs version 4 and network
security group (NSG) flow logs versions 1 and 2.

What is read (tuple layouts from Microsoft's "VNet flow logs" and "NSG flow logs" overview
pages; real samples in ``shared/corpora/flows/azure``): the ``PT1H.json`` blobs Network Watcher
writes (``{"records": [...]}``, pretty-printed or on one line), one record per line (Event Hub /
diagnostic-settings exports) or a bare record. Records:

* VNet, ``flowLogVersion`` 4: ``flowRecords.flows[].flowGroups[].flowTuples``, the interface in
  the record's ``macAddress``; a tuple is ``time (ms), source, destination, source port,
  destination port, protocol number, I/O (inbound/outbound at the interface), state (B begin,
  C continuing, E end, D denied), encryption, then packets and bytes source -> destination and
  destination -> source`` since the flow's last tuple;
* NSG, ``properties.Version`` 2: ``properties.flows[].flows[].flowTuples``, the interface in
  ``mac``; a tuple is ``time (s), source, destination, source port, destination port, T/U,
  I/O, A/D (allowed / denied), B/C/E, then the four counters`` (empty on a B tuple); version 1
  tuples stop after A/D.

A tuple's source is the end that opened the flow (the 5-tuple of the first packet, which the
stateful rules track): ``direction: reported``. The same flow is logged by the interfaces at
both ends, each in its own blob, and its counters come in several tuples (C every few minutes,
then E): :mod:`capture.sources.connections` sums each interface's tuples and keeps, for each
direction, the interface that counted most. State D or decision D is ``verdict: dropped``, the
rest ``forwarded``. Encryption, the rule names and ACL ids are not kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from capture.errors import CaptureError
from capture.sources.base import Opened, ReadOptions, Sink, SourceFormat
from capture.sources.connections import PORTED, PROTOCOLS, SKIP_PROTOCOL, fold_for
from capture.sources.reading import Addresses, head_text, json_values, line_error

NAME = "azure-flow"
NSG_PROTOCOLS: Mapping[str, str] = {"T": "TCP", "U": "UDP"}
NSG_DECISIONS: Mapping[str, str] = {"A": "forwarded", "D": "dropped"}
VNET_STATES: Mapping[str, str] = {"B": "forwarded", "C": "forwarded", "E": "forwarded",
                                  "D": "dropped"}
FLOW_STATES = frozenset({"B", "C", "E"})


class _Reader:
    def __init__(self, opened: Opened, sink: Sink) -> None:
        self.opened = opened
        self.sink = sink
        self.fold = fold_for(sink, NAME)
        self.addresses = Addresses()
        self.tuples = 0
        self.line = 0
        self.path = ""

    def bad(self, message: str, where: str = "") -> CaptureError:
        place = where or self.path
        return line_error(self.opened, self.line, f"{place}: {message}" if place else message)

    def record(self, line: int, rec: Any) -> None:
        self.line = line
        self.path = ""
        if not isinstance(rec, dict):
            raise self.bad("a record that is not a JSON object")
        if "flowRecords" in rec:
            self.vnet(rec)
        elif isinstance(rec.get("properties"), dict) and "flows" in rec["properties"]:
            self.nsg(rec)
        else:
            raise self.bad("neither a VNet flow log record (flowRecords) nor an NSG flow log "
                           "record (properties.flows)")

    def vnet(self, rec: Mapping[str, Any]) -> None:
        version = rec.get("flowLogVersion")
        if version is not None and version != 4:
            raise self.bad(f"flowLogVersion {version!r} is not read (version 4 is)")
        mac = rec.get("macAddress")
        flows = _get(rec, "flowRecords", dict, self.bad).get("flows")
        for i, flow in enumerate(_list(flows, "flowRecords.flows", self.bad)):
            groups = _get(flow, "flowGroups", list, self.bad, f"flowRecords.flows[{i}]")
            for j, group in enumerate(groups):
                where = f"flowRecords.flows[{i}].flowGroups[{j}]"
                tuples = _get(group, "flowTuples", list, self.bad, where)
                for k, text in enumerate(tuples):
                    self.path = f"{where}.flowTuples[{k}]"
                    self.vnet_tuple(text, mac)

    def nsg(self, rec: Mapping[str, Any]) -> None:
        props = rec["properties"]
        version = props.get("Version")
        if version not in (1, 2):
            raise self.bad(f"properties.Version {version!r} is not read (1 and 2 are)")
        for i, rule in enumerate(_list(props.get("flows"), "properties.flows", self.bad)):
            where = f"properties.flows[{i}]"
            for j, flow in enumerate(_get(rule, "flows", list, self.bad, where)):
                inner = f"{where}.flows[{j}]"
                mac = flow.get("mac") if isinstance(flow, dict) else None
                for k, text in enumerate(_get(flow, "flowTuples", list, self.bad, inner)):
                    self.path = f"{inner}.flowTuples[{k}]"
                    self.nsg_tuple(text, mac, version)

    # -- tuples ------------------------------------------------------------------------------

    def fields(self, text: Any, sizes: Sequence[int]) -> list[str]:
        if not isinstance(text, str):
            raise self.bad("a flow tuple that is not a string")
        parts = text.split(",")
        if len(parts) not in sizes:
            raise self.bad(f"{len(parts)} fields in flow tuple {text!r}; expected "
                           f"{' or '.join(map(str, sizes))}")
        self.tuples += 1
        self.sink.input_records += 1
        return parts

    def vnet_tuple(self, text: Any, mac: Any) -> None:
        f = self.fields(text, (13,))
        if not (f[5].isdigit() and f[5].isascii()):
            raise self.bad(f"protocol {f[5]!r} is not a number")
        verdict = VNET_STATES.get(f[7])
        if verdict is None:
            raise self.bad(f"flow state {f[7]!r} is none of B, C, E, D")
        self.add(f, PROTOCOLS.get(int(f[5])), self.integer(f[0], "time") / 1000.0, verdict, mac)

    def nsg_tuple(self, text: Any, mac: Any, version: int) -> None:
        f = self.fields(text, (13,) if version == 2 else (8,))
        if f[5] not in NSG_PROTOCOLS:
            raise self.bad(f"protocol {f[5]!r} is neither T nor U")
        verdict = NSG_DECISIONS.get(f[7])
        if verdict is None:
            raise self.bad(f"decision {f[7]!r} is neither A nor D")
        if version == 2 and f[8] not in FLOW_STATES:
            raise self.bad(f"flow state {f[8]!r} is none of B, C, E")
        self.add(f, NSG_PROTOCOLS[f[5]], float(self.integer(f[0], "time")), verdict, mac)

    def add(self, f: list[str], proto: str | None, when: float, verdict: str, mac: Any) -> None:
        if f[6] not in ("I", "O"):
            raise self.bad(f"direction {f[6]!r} is neither I nor O")
        if proto is None:
            self.sink.skipped[SKIP_PROTOCOL] += 1
            return
        src = self.addresses(f[1])
        dst = self.addresses(f[2])
        if src is None or dst is None:
            raise self.bad(f"{f[1] if src is None else f[2]!r} is not an IP address")
        if proto in PORTED:
            sport: int | None = self.integer(f[3], "source port", 65535)
            dport: int | None = self.integer(f[4], "destination port", 65535)
        else:
            sport = dport = None
        counts = [self.integer(v, "counter") if v else 0 for v in f[9:13]] or [0, 0, 0, 0]
        self.fold.add(proto, src, sport, dst, dport, when, when, counts[0], counts[1],
                      reply_packets=counts[2], reply_bytes=counts[3],
                      point=mac if isinstance(mac, str) else None, verdict=verdict,
                      initiator=True)

    def integer(self, text: str, what: str, most: int | None = None) -> int:
        if not (text.isdigit() and text.isascii()) or (most is not None and int(text) > most):
            raise self.bad(f"{what} {text!r} is not a number"
                           + (f" from 0 to {most}" if most is not None else ""))
        return int(text)


def _list(value: Any, where: str, bad: Any) -> list[Any]:
    if not isinstance(value, list):
        raise bad(f"{where} is not a list")
    return value


def _get(obj: Any, key: str, kind: type, bad: Any, where: str = "") -> Any:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind):
        name = f"{where}.{key}" if where else key
        raise bad(f"{name} is missing or not a{'n object' if kind is dict else ' list'}")
    return value


def _read(opened: Opened, sink: Sink, options: ReadOptions) -> None:
    reader = _Reader(opened, sink)
    records = 0
    for line, rec in json_values(opened, sink):
        records += 1
        reader.record(line, rec)
        if options.progress is not None and records % 1024 == 0:
            options.progress(reader.tuples, 0)
    if reader.tuples == 0:
        raise line_error(opened, None, "no flow tuples in the file" if records else
                         "no flow log records in the file")
    reader.fold.publish(sink)


def _sniff(head: bytes) -> bool:
    # By text, not by parsing: one record of a busy interface can be larger than the head.
    text = head_text(head).lstrip()
    return (text[:1] in ("{", "[")
            and any(mark in text for mark in ('"flowTuples"', '"FlowLogFlowEvent"',
                                               '"NetworkSecurityGroupFlowEvent"'))
            and ('"flowRecords"' in text or '"properties"' in text))


AZURE_FLOW = SourceFormat(
    name=NAME,
    title="Azure VNet / NSG flow log",
    sniff=_sniff,
    read=_read,
)
