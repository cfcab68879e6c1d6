"""Zeek ``conn.log``: the tab-separated form with its ``#separator`` / ``#fields`` header, and
the JSON form (one object per line, ``LogAscii::use_json``).

Field meanings are Zeek's (``base/protocols/conn/main.zeek``, and the manual's conn.log page in
``shared/corpora/flows/zeek/conn.rst``). Columns are found by the names of ``#fields`` (JSON:
by key), so a log written with a subset or another order of columns is read, as is one whose
columns were renamed through ``Log::field_name_map``: ``id_orig_h`` for ``id.orig_h`` (the
common map for Elasticsearch, which reads dots as nesting) and ``src``, ``src_port``, ``dst``,
``dst_port`` (Zeek's own field-name-map test) are known; a nested ``"id": {"orig_h": ...}``
object is read too. A ``ts`` may be epoch seconds or an ISO-8601 string
(``LogAscii::json_timestamps``).

One line is one connection, as Zeek delimited it: no folding. ``id.orig_h`` is the client and
``id.resp_h`` the server. Zeek already decided that: when it takes the first packet it saw for
a reply (a SYN-ACK first, or a packet from a port it knows as a server's to one it does not), it
flips the two ends and marks the flip with ``^`` in ``history``; the record is already flipped,
so the originator is read as it is. ``direction`` says on what Zeek decided: ``handshake`` when
``history`` holds ``S`` (the originator's SYN) or ``h`` (the responder's SYN-ACK), else
``port-heuristic`` when it holds ``^`` (Zeek's flip is a port and flag heuristic), else
``reported`` (the sender of the first packet Zeek saw). ``handshake`` is true when both ``S``
and ``h`` are there.

Counts: ``orig_pkts`` / ``orig_ip_bytes`` are the packets and IP bytes to the server,
``resp_pkts`` / ``resp_ip_bytes`` to the client (unset ``-``: 0); ``first_seen`` is ``ts``,
``last_seen`` ``ts + duration``. ``resets`` counts the ``R`` / ``r`` letters of ``history``
(Zeek writes a RST again only when its sequence number differs from the previous one's: a lower
bound); ``tls`` is true when ``service`` names ``ssl``. ICMP is ``ICMP`` or ``ICMPv6`` by
address family, without ports (Zeek puts the type and code there); ``unknown_transport``
connections are skipped as ``unsupported-protocol``.

Tunnels: a connection carried in a tunnel Zeek decapsulated (Teredo, VXLAN, Geneve, AYIYA,
GTP) names the tunnel's connection in ``tunnel_parents``. As for captures (docs/flow-format.md,
``outer``), the tunnel's own connection is not a record -- it is counted under
``stats.skipped`` as ``tunnel`` -- and its two hosts are the inner flow's ``outer`` addresses.
Parents are matched within one file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from capture.errors import CaptureError
from capture.sources.base import Opened, ReadOptions, Record, Sink, SourceFormat
from capture.sources.connections import SKIP_PROTOCOL
from capture.sources.reading import (
    Addresses,
    first_json_value,
    head_text,
    iso_time,
    json_values,
    line_error,
    text_lines,
)

NAME = "zeek"
SKIP_TUNNEL = "tunnel"

FIELDS = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "service",
          "duration", "history", "orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes",
          "tunnel_parents", "conn_state")
REQUIRED = ("ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto")
# Names a Log::field_name_map may give the columns (see the module docstring).
ALIASES: Mapping[str, str] = {
    **{f.replace(".", "_"): f for f in FIELDS if "." in f},
    "src": "id.orig_h", "src_port": "id.orig_p", "dst": "id.resp_h", "dst_port": "id.resp_p",
}
# Fields only conn.log has among Zeek's logs (dns.log and others also have uid, id.*, proto).
CONN_ONLY = frozenset({"conn_state", "orig_pkts", "orig_ip_bytes", "history", "missed_bytes"})
PROTOS: Mapping[str, str] = {"tcp": "TCP", "udp": "UDP", "icmp": "ICMP", "sctp": "SCTP"}
PORTED = frozenset({"TCP", "UDP", "SCTP"})


COUNTS = ("orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes")


def _natural(value: Any) -> int:
    """A count or port as Zeek writes it (text in TSV, a number in JSON); -1 if it is not
    one."""
    if type(value) is str:
        return int(value) if value.isdecimal() else -1
    if type(value) is int:
        return value if value >= 0 else -1
    return -1


def _canonical(name: str) -> str:
    return ALIASES.get(name, name)


class _Conn:
    """One conn.log line, read."""

    __slots__ = ("parents", "record", "uid")

    def __init__(self, uid: str | None, record: Record, parents: list[str]) -> None:
        self.uid = uid
        self.record = record
        self.parents = parents


class _Reader:
    def __init__(self, opened: Opened, sink: Sink) -> None:
        self.opened = opened
        self.sink = sink
        self.addresses = Addresses()
        self.conns: list[_Conn] = []
        # uid -> the two hosts, of the UDP connections only: every tunnel Zeek decapsulates
        # inside a connection (Teredo, VXLAN, Geneve, AYIYA, GTP) runs over UDP.
        self.hosts: dict[str, tuple[str, str]] = {}
        self.records = 0

    def bad(self, line: int, message: str) -> CaptureError:
        return line_error(self.opened, line, message)

    # -- one connection ----------------------------------------------------------------------

    def conn(self, line: int, fields: Mapping[str, Any], parents: list[str]) -> None:
        """Read one connection: ``fields`` maps canonical names to values (absent or None:
        unset), as text (TSV) or as JSON typed them."""
        self.records += 1
        self.sink.input_records += 1
        get = fields.get
        proto_name = get("proto")
        proto = PROTOS.get(proto_name) if isinstance(proto_name, str) else None
        if proto is None:
            if proto_name == "unknown_transport":
                self.sink.skipped[SKIP_PROTOCOL] += 1
                return
            raise self.bad(line, f"proto {proto_name!r} is none of tcp, udp, icmp, "
                                 "unknown_transport")
        client = self.address(get("id.orig_h"), "id.orig_h", line)
        server = self.address(get("id.resp_h"), "id.resp_h", line)
        cport: int | None = _natural(get("id.orig_p"))
        if not 0 <= cport <= 65535:  # type: ignore[operator]
            raise self.number_error(get("id.orig_p"), "id.orig_p", line, 65535)
        sport: int | None = _natural(get("id.resp_p"))
        if not 0 <= sport <= 65535:  # type: ignore[operator]
            raise self.number_error(get("id.resp_p"), "id.resp_p", line, 65535)
        if proto == "ICMP" and ":" in client:
            proto = "ICMPv6"
        if proto not in PORTED:
            cport = sport = None
        ts = self.time(get("ts"), line)
        duration = get("duration")
        last = ts if duration is None else ts + self.seconds(duration, line)
        history = get("history")
        if history is None:
            history = ""
        elif not isinstance(history, str):
            raise self.bad(line, f"history {history!r} is not text")
        service = get("service")
        if service is not None and not isinstance(service, str):
            raise self.bad(line, f"service {service!r} is not text")
        tcp = proto == "TCP"
        if tcp and ("S" in history or "h" in history):
            direction = "handshake"
        elif "^" in history:
            direction = "port-heuristic"
        else:
            direction = "reported"
        counts = []
        for name in COUNTS:
            value = get(name)
            n = 0 if value is None else _natural(value)
            if n < 0:
                raise self.number_error(value, name, line, 1 << 62)
            counts.append(n)
        record: Record = {
            "record": "flow",
            "proto": proto,
            "client": client,
            "client_port": cport,
            "server": server,
            "server_port": sport,
            "first_seen": ts,
            "last_seen": last,
            "packets_to_server": counts[0],
            "bytes_to_server": counts[1],
            "packets_to_client": counts[2],
            "bytes_to_client": counts[3],
            "direction": direction,
            "handshake": tcp and "S" in history and "h" in history,
            "resets": history.count("R") + history.count("r") if tcp else 0,
            "tls": service is not None and "ssl" in service.split(","),
            "sni": None,
            "outer": None,
            "sources": [NAME],
        }
        uid = get("uid")
        if uid is not None and not isinstance(uid, str):
            raise self.bad(line, f"uid {uid!r} is not text")
        if uid is not None and proto == "UDP":
            self.hosts[uid] = (client, server)
        self.conns.append(_Conn(uid, record, parents))

    def address(self, value: Any, name: str, line: int) -> str:
        canonical = self.addresses(value) if isinstance(value, str) else None
        if canonical is None:
            raise self.bad(line, f"{name} {value!r} is not an IP address")
        return canonical

    def number_error(self, value: Any, name: str, line: int, most: int) -> CaptureError:
        return self.bad(line, f"{name} {value!r} is not a number from 0 to {most}")

    def time(self, value: Any, line: int) -> float:
        when: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            when = float(value)
        elif isinstance(value, str):
            try:
                when = float(value)
            except ValueError:
                when = iso_time(value)
        if when is None or not math.isfinite(when) or when < 0:
            raise self.bad(line, f"ts {value!r} is neither epoch seconds nor an ISO-8601 time "
                                 "with a zone")
        return when

    def seconds(self, value: Any, line: int) -> float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise self.bad(line, f"duration {value!r} is not a number of seconds") from None
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or value < 0):
            raise self.bad(line, f"duration {value!r} is not a number of seconds")
        return float(value)

    # -- the file's connections --------------------------------------------------------------

    def publish(self) -> None:
        tunnels = {uid for c in self.conns for uid in c.parents}
        for c in self.conns:
            if c.uid is not None and c.uid in tunnels and c.uid in self.hosts:
                self.sink.skipped[SKIP_TUNNEL] += 1
                continue
            outer = {host for uid in c.parents for host in self.hosts.get(uid, ())}
            if outer:
                c.record["outer"] = sorted(outer)
            self.sink.add_record(c.record)


class _Tsv:
    """The state of Zeek's ASCII writer header while reading a TSV log."""

    def __init__(self, reader: _Reader) -> None:
        self.reader = reader
        self.separator = "\t"
        self.set_separator = ","
        self.empty = "(empty)"
        self.unset = "-"
        self.fields: list[str] | None = None
        self.index: dict[str, int] = {}
        self.wanted: list[tuple[str, int]] = []  # (field read, its column)

    def line(self, number: int, text: str) -> None:
        if text.startswith("#"):
            self.directive(number, text)
            return
        if not text.strip():
            return
        if self.fields is None:
            raise self.reader.bad(number, "a record before any #fields header line")
        values = text.split(self.separator)
        if len(values) != len(self.fields):
            raise self.reader.bad(number, f"{len(values)} columns, but #fields names "
                                          f"{len(self.fields)}")
        unset = self.unset
        fields = {name: value for name, at in self.wanted if (value := values[at]) != unset}
        parents: list[str] = []
        at = self.index.get("tunnel_parents")
        if at is not None and values[at] not in (unset, self.empty, ""):
            parents = values[at].split(self.set_separator)
        self.reader.conn(number, fields, parents)

    def directive(self, number: int, text: str) -> None:
        if text.startswith("#separator "):
            # The one directive written before the separator is known: escaped, after a space.
            raw = text[len("#separator "):]
            try:
                self.separator = raw.encode("ascii").decode("unicode_escape")
            except (UnicodeError, ValueError):
                raise self.reader.bad(number, f"#separator {raw!r} cannot be read") from None
            if not self.separator:
                raise self.reader.bad(number, "#separator is empty")
            return
        name, _, value = text.partition(self.separator)
        if name == "#set_separator":
            self.set_separator = value
        elif name == "#empty_field":
            self.empty = value
        elif name == "#unset_field":
            self.unset = value
        elif name == "#path":
            if value != "conn":
                raise self.reader.bad(number, f"a Zeek {value} log, not conn.log")
        elif name == "#fields":
            fields = [_canonical(f) for f in value.split(self.separator)]
            missing = [f for f in REQUIRED if f not in fields]
            if missing:
                raise self.reader.bad(number, f"#fields lacks {', '.join(missing)} (renamed "
                                              f"columns known: {', '.join(sorted(ALIASES))})")
            self.fields = fields
            self.index = {}
            for i, f in enumerate(fields):
                self.index.setdefault(f, i)
            self.wanted = [(f, i) for f, i in self.index.items() if f in FIELDS]
        # Other lines starting with "#" (#open, #close, #types, comments) say nothing we use.


def _flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[_canonical(name)] = value
    return out


def _json_conn(reader: _Reader, line: int, obj: Any) -> None:
    if not isinstance(obj, dict):
        raise reader.bad(line, "a JSON value that is not an object")
    fields = _flatten(obj)
    missing = [f for f in REQUIRED if fields.get(f) is None]
    if missing:
        raise reader.bad(line, f"no {', '.join(missing)} in a conn.log record")
    parents = fields.get("tunnel_parents")
    if parents is None:
        parents = []
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise reader.bad(line, "tunnel_parents is not a list of uids")
    reader.conn(line, fields, parents)


def _read(opened: Opened, sink: Sink, options: ReadOptions) -> None:
    reader = _Reader(opened, sink)
    if head_text(opened.head).lstrip().startswith(("{", "[")):
        for line, obj in json_values(opened, sink):
            _json_conn(reader, line, obj)
            if options.progress is not None and reader.records % 65536 == 0:
                options.progress(reader.records, 0)
    else:
        tsv = _Tsv(reader)
        for line, text in text_lines(opened, sink):
            tsv.line(line, text)
            if options.progress is not None and line % 65536 == 0:
                options.progress(reader.records, 0)
    if reader.records == 0:
        raise line_error(opened, None, "no connections in the conn.log")
    reader.publish()


def _is_conn_fields(names: Sequence[str]) -> bool:
    canonical = {_canonical(n) for n in names}
    return all(f in canonical for f in REQUIRED if f != "ts") and bool(canonical & CONN_ONLY)


def _sniff(head: bytes) -> bool:
    text = head_text(head)
    if text.lstrip().startswith(("{", "[")):
        obj = first_json_value(head)
        return isinstance(obj, dict) and _is_conn_fields(list(_flatten(obj)))
    # Zeek's ASCII header: "#path conn" says it (the reader then names what a renamed column
    # lacks); without a #path line, the #fields must be a conn.log's.
    separator = "\t"
    for line in text.splitlines()[:32]:
        if line.startswith("#separator "):
            try:
                separator = line[len("#separator "):].encode("ascii").decode("unicode_escape")
            except (UnicodeError, ValueError):
                return False
            if not separator:
                return False
        elif line.startswith("#path" + separator):
            return line[len("#path") + len(separator):] == "conn"
        elif line.startswith("#fields" + separator):
            return _is_conn_fields(line.split(separator)[1:])
        elif not line.startswith("#"):
            return False
    return False


def _header(head: bytes) -> int:
    """Followed by parts: the TSV form's leading ``#`` directive lines (``#separator`` ...
    ``#types``); the JSON form has none."""
    end = 0
    while head.startswith(b"#", end):
        newline = head.find(b"\n", end)
        if newline < 0:
            break
        end = newline + 1
    return end


# Zeek's protocol analysis reads the payload: ``service`` names ssl when it saw a TLS
# handshake, so a connection without it was not TLS (as far as Zeek could tell).
ZEEK = SourceFormat(
    name=NAME,
    title="Zeek conn.log",
    sniff=_sniff,
    read=_read,
    header=_header,
    knows_tls=True,
)
