"""Folding flow-log records into connections: one flow record per connection and verdict.

Cloud flow logs report a connection many times: once per direction, once per observation point
that saw it (both ends' network interfaces, both sides' reporters, the ingress and egress
attachment of a transit gateway) and once per aggregation window. :class:`ConnectionFold` keys
every report on the connection -- protocol and the two (address, port) ends, unordered -- and
keeps, per connection:

* the packets and bytes of each direction **per observation point**, summed over windows; the
  written count of a direction is that of the point that saw the most of it (the same packets
  seen at two interfaces are counted once, a point that missed windows does not lower it);
* what the reports say about which end opened the connection (a reported initiator, TCP
  SYN / SYN-ACK flags), and the time each end's first report starts;
* the first and last time, and what the source said about each end (``client_endpoint`` /
  ``server_endpoint``), per verdict.

The fold is commutative: any order of the same reports gives the same records. It lives as long
as the ingest (one per format and :class:`Sink`), so reports of one connection in different
files -- rotated logs, one blob per network interface -- fold together; each file's read ends
with :meth:`ConnectionFold.publish`, which adds new records to the sink and updates the ones it
added before. Memory is proportional to the number of distinct connections.

Client and server (the ``direction`` of the flow file):

1. ``reported``: every report that names an initiator names the same end (Azure's flow tuples
   are written in the direction the flow was opened);
2. ``handshake``: TCP flags of the reports (a SYN without ACK from one end, or a SYN-ACK from
   the other) agree on an end -- flags are OR-ed per window, so a report whose flags hold both
   SYN and ACK is a SYN-ACK;
3. ``port-heuristic`` otherwise: the end on the lower port serves (a port below 49152 is always
   lower than one above); with equal ports or no ports (ICMP), the end whose reports start first
   is the client, then the lower address.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import Any

from capture.sources.base import Record, Sink

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_ACK = 0x10

# IANA protocol numbers -> the flow file's names; other protocols are not flows of the file.
PROTOCOLS: Mapping[int, str] = {6: "TCP", 17: "UDP", 132: "SCTP", 1: "ICMP", 58: "ICMPv6"}
PORTED = frozenset({"TCP", "UDP", "SCTP"})
SKIP_PROTOCOL = "unsupported-protocol"  # the flow file's reason for IP protocols it does not hold

Endpoint = dict[str, Any]
_INF = math.inf


class _Connection:
    """Everything the reports of one connection said; ``lo`` is the lesser (address, port)."""

    __slots__ = ("dirty", "hi", "hi_end", "hi_port", "hi_start", "lo", "lo_end", "lo_port",
                 "lo_start", "proto", "records", "reported", "rst", "sampled", "syn", "synack",
                 "views")

    def __init__(self, proto: str, lo: str, lo_port: int | None, hi: str,
                 hi_port: int | None) -> None:
        self.proto = proto
        self.lo = lo
        self.lo_port = lo_port
        self.hi = hi
        self.hi_port = hi_port
        # (verdict, point) -> [packets lo->hi, bytes lo->hi, packets hi->lo, bytes hi->lo,
        #                      first, last]
        self.views: dict[tuple[str | None, Hashable], list[Any]] = {}
        self.lo_start = _INF  # earliest start of a report of traffic sent by lo
        self.hi_start = _INF  # ... by hi
        self.syn = 0  # bit 1: lo sent a SYN without ACK; bit 2: hi did
        self.synack = 0  # bit 1: lo sent a SYN-ACK; bit 2: hi did
        self.rst = 0  # bit 1: lo sent a RST; bit 2: hi did
        self.reported = 0  # bit 1: a report named lo the initiator; bit 2: hi
        self.sampled = False
        self.lo_end: Endpoint | None = None  # what the source said about lo
        self.hi_end: Endpoint | None = None
        self.records: dict[str | None, Record] = {}  # verdict -> the record in the sink
        self.dirty = False  # changed since the fold last published it


class ConnectionFold:
    """The connections of one record format in one ingest (see the module docstring)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.connections: dict[tuple[str, str, int, str, int], _Connection] = {}
        self.touched: list[_Connection] = []  # changed since the last publish
        # Observation points and (verdict, point) keys, one object each: every connection
        # refers to the same few (interfaces, reporters), so they are held once, not per
        # connection.
        self._keys: dict[tuple[str | None, Hashable], tuple[str | None, Hashable]] = {}

    def add(  # noqa: PLR0917 - one call per record on the hot path
        self,
        proto: str,
        src: str,
        sport: int | None,
        dst: str,
        dport: int | None,
        first: float,
        last: float,
        packets: int,
        nbytes: int,
        *,
        reply_packets: int = 0,
        reply_bytes: int = 0,
        point: Hashable = None,
        verdict: str | None = None,
        tcp_flags: int = 0,
        initiator: bool = False,
        src_endpoint: Endpoint | None = None,
        dst_endpoint: Endpoint | None = None,
        sampled: bool = False,
    ) -> None:
        """Fold one report: ``packets``/``nbytes`` sent from ``src`` to ``dst`` (and, for a
        report of both directions, ``reply_*`` sent back) between ``first`` and ``last``, seen
        at observation point ``point``.

        ``initiator``: the source says ``src`` opened the connection. ``tcp_flags``: the TCP
        flags OR-ed over the report's packets from ``src``. Ports are None for ICMP.
        """
        if proto not in PORTED:
            sport = dport = None
        ks = -1 if sport is None else sport
        kd = -1 if dport is None else dport
        forward = (src, ks) <= (dst, kd)
        key = (proto, src, ks, dst, kd) if forward else (proto, dst, kd, src, ks)
        conn = self.connections.get(key)
        if conn is None:
            conn = (_Connection(proto, src, sport, dst, dport) if forward
                    else _Connection(proto, dst, dport, src, sport))
            self.connections[key] = conn
        if not conn.dirty:
            conn.dirty = True
            self.touched.append(conn)
        view_key = (verdict, point)
        view = conn.views.get(view_key)
        if view is None:
            view_key = self._keys.setdefault(view_key, view_key)
            view = conn.views[view_key] = [0, 0, 0, 0, first, last]
        else:
            view[4] = min(view[4], first)
            view[5] = max(view[5], last)
        if forward:
            view[0] += packets
            view[1] += nbytes
            view[2] += reply_packets
            view[3] += reply_bytes
            if packets and first < conn.lo_start:
                conn.lo_start = first
            if reply_packets and first < conn.hi_start:
                conn.hi_start = first
            bit = 1
        else:
            view[2] += packets
            view[3] += nbytes
            view[0] += reply_packets
            view[1] += reply_bytes
            if packets and first < conn.hi_start:
                conn.hi_start = first
            if reply_packets and first < conn.lo_start:
                conn.lo_start = first
            bit = 2
        if tcp_flags and proto == "TCP":
            if tcp_flags & TCP_SYN:
                if tcp_flags & TCP_ACK:
                    conn.synack |= bit
                else:
                    conn.syn |= bit
            if tcp_flags & TCP_RST:
                conn.rst |= bit
        if initiator:
            conn.reported |= bit
        if sampled:
            conn.sampled = True
        if src_endpoint:
            if forward:
                conn.lo_end = _merge(conn.lo_end, src_endpoint)
            else:
                conn.hi_end = _merge(conn.hi_end, src_endpoint)
        if dst_endpoint:
            if forward:
                conn.hi_end = _merge(conn.hi_end, dst_endpoint)
            else:
                conn.lo_end = _merge(conn.lo_end, dst_endpoint)

    def __len__(self) -> int:
        return len(self.connections)

    def publish(self, sink: Sink) -> None:
        """Add the records of connections new since the last call to ``sink`` and update the
        records of connections that changed (in place: the sink holds the same objects)."""
        for conn in self.touched:
            conn.dirty = False
            for verdict, record in self._records(conn).items():
                held = conn.records.get(verdict)
                if held is None:
                    conn.records[verdict] = record
                    sink.add_record(record)
                else:
                    held.clear()
                    held.update(record)
        self.touched = []

    # -- records -----------------------------------------------------------------------------

    def _records(self, conn: _Connection) -> dict[str | None, Record]:
        client_is_lo, direction, handshake = _client(conn)
        if client_is_lo:
            client, cport, server, sport = conn.lo, conn.lo_port, conn.hi, conn.hi_port
            c_end, s_end = conn.lo_end, conn.hi_end
            to_server, to_client = 0, 2
        else:
            client, cport, server, sport = conn.hi, conn.hi_port, conn.lo, conn.lo_port
            c_end, s_end = conn.hi_end, conn.lo_end
            to_server, to_client = 2, 0
        # Flow logs give flags, not packets: an end that sent a RST counts once (a lower bound).
        resets = bin(conn.rst).count("1")
        out: dict[str | None, Record] = {}
        by_verdict: dict[str | None, list[list[Any]]] = {}
        for (verdict, _point), view in conn.views.items():
            by_verdict.setdefault(verdict, []).append(view)
        for verdict, views in by_verdict.items():
            first = min(v[4] for v in views)
            last = max(v[5] for v in views)
            p_s, b_s = _busiest(views, to_server)
            p_c, b_c = _busiest(views, to_client)
            record: Record = {
                "record": "flow",
                "proto": conn.proto,
                "client": client,
                "client_port": cport,
                "server": server,
                "server_port": sport,
                "first_seen": float(first),
                "last_seen": float(last),
                "packets_to_server": p_s,
                "bytes_to_server": b_s,
                "packets_to_client": p_c,
                "bytes_to_client": b_c,
                "direction": direction,
                "handshake": handshake,
                "resets": resets,
                "tls": False,
                "sni": None,
                "outer": None,
                "sources": [self.source],
            }
            if verdict is not None:
                record["verdict"] = verdict
            if conn.sampled:
                record["sampled"] = True
            if c_end:
                record["client_endpoint"] = dict(c_end)
            if s_end:
                record["server_endpoint"] = dict(s_end)
            out[verdict] = record
        return out


def _busiest(views: list[list[Any]], at: int) -> tuple[int, int]:
    """(packets, bytes) of one direction at the observation point that saw the most of it."""
    best = (0, 0)
    for view in views:
        best = max(best, (view[at], view[at + 1]))
    return best


def _client(conn: _Connection) -> tuple[bool, str, bool]:
    """(the lo end is the client, direction basis, handshake seen) of a connection."""
    if conn.reported in (1, 2):
        return conn.reported == 1, "reported", False
    if conn.proto == "TCP":
        lo_opened = bool(conn.syn & 1 or conn.synack & 2)
        hi_opened = bool(conn.syn & 2 or conn.synack & 1)
        if lo_opened != hi_opened:
            if lo_opened:
                handshake = bool(conn.syn & 1 and conn.synack & 2)
            else:
                handshake = bool(conn.syn & 2 and conn.synack & 1)
            return lo_opened, "handshake", handshake
    if conn.lo_port is not None and conn.hi_port is not None and conn.lo_port != conn.hi_port:
        return conn.lo_port > conn.hi_port, "port-heuristic", False
    return conn.lo_start <= conn.hi_start, "port-heuristic", False


def _merge(held: Endpoint | None, info: Endpoint) -> Endpoint:
    """What the reports said about one end, with ``info`` added; where two reports differ,
    the lesser value (as text) is kept, so the outcome does not depend on their order."""
    if held is None:
        return dict(info)
    for key, value in info.items():
        old = held.get(key)
        if old is None or (old != value and repr(value) < repr(old)):
            held[key] = value
    return held




def fold_for(sink: Sink, source: str) -> ConnectionFold:
    """The fold of format ``source`` for the ingest that reads into ``sink`` (one across all
    its files)."""
    fold = sink.state.get(source)
    if not isinstance(fold, ConnectionFold):
        fold = sink.state[source] = ConnectionFold(source)
    return fold
