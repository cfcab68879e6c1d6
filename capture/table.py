"""Folding packets into flow records (client -> server) and DNS answers.

A flow is keyed by its directional 5-tuple ``src + dst + ports`` (raw bytes) in a per-protocol
table; both directions of a conversation are entries of the same table pointing at the two
``Half`` objects of one ``FlowState``, so one dictionary lookup finds a packet's flow *and* its
direction. Memory is proportional to the number of flows, never to the number of packets.

Client and server (the ``direction`` field of the flow file):

* TCP: the sender of a SYN (without ACK) is the client; the receiver of a SYN-ACK is the client
  (``handshake``). When neither was captured, the endpoint on the lower port is the server -- the
  documented ``port-heuristic`` (a port below 49152 is always lower than one above; equal ports:
  the sender of the first packet is the client).
* UDP, SCTP: the sender of the first packet is the client (``first-packet``), unless that packet
  goes from a well-known port (< 1024) to an ephemeral one (>= 32768): it is then taken as a
  reply and flipped (``port-heuristic``).
* ICMP / ICMPv6: the sender of the first packet, unless it is an echo reply (flipped,
  ``port-heuristic``).

A TCP flow that was closed (FIN or RST seen) and gets a new SYN on the same 5-tuple, and any flow
idle for more than 300 s, ends; the next packet starts a new record. A SYN sent again with the
sequence number of the flow's SYN is that connection attempt retried (a retransmission carries
its segment's sequence number, RFC 9293 section 3.8.1), not a new connection: it stays in the
flow.

IP fragments after the first carry no ports: they count to the flow of their datagram's first
fragment (same addresses, protocol and identification), in whatever order they arrive. Those
that come before it wait for it (at most ``MAX_PENDING_FRAGMENTS``, for
``FRAGMENT_TIMEOUT_NS`` of capture time); those whose first fragment never comes are skipped as
``fragment-unmatched``.
"""

from __future__ import annotations

import ipaddress
import json.encoder
import socket
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import Any, Protocol

from capture.decode import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_NAMES,
    PROTO_SCTP,
    PROTO_TCP,
    PROTO_UDP,
    SKIP_FRAGMENT,
    SKIP_PROTOCOL,
    TUNNEL_PORTS,
    Decoded,
    decode,
)
from capture.dns import parse_response
from capture.tls import MAX_CLIENT_HELLO, probe_client_hello, proxy_header_length

NS = 1_000_000_000
IDLE_NS = 300 * NS  # a flow idle for longer than this ends
TLS_PROBE_PACKETS = 16  # how many first packets of a TCP flow are looked at for a ClientHello
TLS_PROBE_SEGMENTS = 4  # how many client -> server payload segments may start the ClientHello
# A ClientHello may follow a short plaintext preamble (STARTTLS-style: PostgreSQL SSLRequest,
# MySQL SSL request, SMTP / IMAP STARTTLS); a longer segment from either side that is not a
# ClientHello ends the search.
TLS_PREAMBLE_MAX = 256
DNS_PORTS = frozenset({53, 5353})
MAX_PENDING_FRAGMENTS = 65536  # datagrams whose fragments are followed, fragments held
# How long the fragments of one datagram are matched, from its first fragment seen: the
# reassembly time-out of RFC 8200 section 4.5 (60 s; Linux's net.ipv6.ip6frag_time, and the
# longest of the defaults of its net.ipv4.ipfrag_time, 30 s).
FRAGMENT_TIMEOUT_NS = 60 * NS
WELL_KNOWN = 1024
EPHEMERAL = 32768

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_ACK = 0x10
ICMP_ECHO_REPLIES = {PROTO_ICMP: 0, PROTO_ICMPV6: 129}

DIR_HANDSHAKE = "handshake"
DIR_FIRST = "first-packet"
DIR_PORTS = "port-heuristic"


class FlowState:
    """One conversation between endpoint A (sender of its first packet) and endpoint B."""

    __slots__ = (
        "a",
        "a_addr",
        "a_port",
        "b",
        "b_addr",
        "b_port",
        "client_is_a",
        "closed",
        "direction",
        "dns",
        "first",
        "last",
        "outer",
        "probe_left",
        "proto",
        "resets",
        "slow",
        "sni",
        "syn",
        "syn_seq",
        "synack",
        "tls",
        "tls_buf",
        "tls_left",
        "tls_next",
        "tunnel",
    )

    def __init__(self, d: Decoded, t: int) -> None:
        self.proto = d.proto
        self.a_addr = d.src
        self.b_addr = d.dst
        self.a_port = d.sport
        self.b_port = d.dport
        self.first = t
        self.last = t
        self.a = Half(self, True)
        self.b = Half(self, False)
        self.client_is_a = True
        self.direction = DIR_FIRST
        self.syn = False
        self.syn_seq = -1  # the sequence number of the last SYN (without ACK) seen; -1: none
        self.synack = False
        self.resets = 0
        self.closed = False
        self.tls = False
        self.sni: str | None = None
        self.tls_left = 0
        self.probe_left = 0
        self.tls_buf: Buffer | None = None
        self.tls_next = 0
        self.outer: set[bytes] | None = None
        self.dns = False
        self.tunnel = False
        # True while packets must go through FlowTable.add (TLS probing, DNS, overlay ports):
        # the fast path in capture.pcapfast only counts packets of flows where this is False.
        self.slow = False


class Half:
    """One direction of a flow: the packets and IP bytes sent by A (``is_a``) or by B."""

    __slots__ = ("bytes", "flow", "is_a", "packets")

    def __init__(self, flow: FlowState, is_a: bool) -> None:
        self.packets = 0
        self.bytes = 0
        self.flow = flow
        self.is_a = is_a


_json_str: Callable[[str], str] = json.encoder.encode_basestring  # what dumps() uses for str
_JSON_BOOL = {True: "true", False: "false"}

def _client_first(fl: FlowState) -> tuple[Half, Half, bytes, bytes, int | None, int | None]:
    """(client half, server half, client address, server address, client port, server
    port) of a flow."""
    if fl.client_is_a:
        return fl.a, fl.b, fl.a_addr, fl.b_addr, fl.a_port, fl.b_port
    return fl.b, fl.a, fl.b_addr, fl.a_addr, fl.b_port, fl.a_port


class NativeFlows(Protocol):
    """Flows held outside the tables (the C loop's store): see ``FlowTable.native``."""

    def take(self, proto: int, key: bytes, /) -> Half | None: ...

    def flush(self, done: list[FlowState], /) -> int: ...

    def sort(self) -> int: ...

    def count(self, bound: tuple[Any, ...] | None, inclusive: bool, /) -> int: ...

    def lines(self, n: int, /) -> tuple[str, int]: ...

    def __len__(self) -> int: ...


def address_text(addr: bytes) -> str:
    """The text form of a raw address: dotted IPv4 or compressed IPv6."""
    # inet_ntop gives what ipaddress gives for IPv4, faster; ipaddress for IPv6 keeps the
    # compressed form consistent (IPv4-mapped addresses included).
    return (socket.inet_ntop(socket.AF_INET, addr) if len(addr) == 4 else
            ipaddress.IPv6Address(bytes(addr)).compressed)


# Packet bytes: ``bytes`` from scapy's readers, the reused ``bytearray`` of capture.pcapfast.
Buffer = bytes | bytearray
DnsKey = tuple[str, str, str, tuple[str, ...], tuple[str, ...]]


class FlowTable:
    """Accumulates packets; ``iter_flow_records`` / ``iter_dns_records`` (or, for writing
    one record at a time in file order, ``flow_items`` / ``dns_items``) give the records."""

    def __init__(self) -> None:
        self.tcp: dict[bytes, Half] = {}
        self.udp: dict[bytes, Half] = {}
        self.tables: dict[int, dict[bytes, Half]] = {
            PROTO_TCP: self.tcp,
            PROTO_UDP: self.udp,
            PROTO_SCTP: {},
            PROTO_ICMP: {},
            PROTO_ICMPV6: {},
        }
        self.done: list[FlowState] = []  # flows ended by idle time-out or TCP reopen
        # IP datagram (``Decoded.frag`` key) -> (the half its first fragment went to, when),
        # oldest first; and the later fragments of datagrams whose first fragment has not come
        # yet: (time, IP length, outer addresses) each, ``held`` of them in all.
        self.frags: OrderedDict[bytes, tuple[Half, int]] = OrderedDict()
        self.early: OrderedDict[bytes, list[tuple[int, int, tuple[bytes, ...]]]] = OrderedDict()
        self.held = 0
        self.dns: dict[DnsKey, int] = {}  # answer -> first time seen
        self.skipped: dict[str, int] = {}
        self._names: dict[bytes, str] = {}
        # The flows capture.pcapfast's C loop started live in its store (capture._fastloop's
        # Flows), not in the tables, from the first capture it reads until the flow file is
        # written: ``native.take(proto, key)`` hands a live one over (as its Half of ``key``,
        # now in the table), None if there is none; ``len(native)`` is how many there are.
        # ``settle()`` hands all of them over (``flows()``, ``active()`` and ``take_done()``
        # settle first); ``ingest`` writes them without that (``native_lines``).
        self.native: NativeFlows | None = None

    # -- packets -------------------------------------------------------------------------------

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count

    def add_frame(self, linktype: int, data: bytes, t: int, wirelen: int) -> None:
        """Decode one captured frame (time ``t`` in ns since the epoch) and fold it in."""
        d = decode(linktype, data, wirelen)
        if isinstance(d, str):
            self.skip(d)
        else:
            self.add(d, data, t)

    def add_ip(  # noqa: PLR0917 - per-packet path: positional arguments are faster
        self, buf: Buffer, ip: int, hlen: int, end: int, iplen: int, key: bytes, t: int
    ) -> bool:
        """Fold a TCP or UDP packet whose plain IP header (IPv4 of 20 bytes, no fragment, or
        IPv6 of 40 without extension headers) of ``hlen`` bytes starts at ``buf[ip]``, whose
        captured bytes end at ``end``, with room for the transport header (``iplen`` at least
        ``hlen`` + 20 for TCP, + 8 for UDP); ``key`` is addresses + ports as in the IP header.
        This is what ``decode`` would find, without walking the link layer again. False: not
        handled (an overlay port), decode it.
        """
        l4 = ip + hlen
        l4end = min(ip + iplen, end)
        alen = 4 if hlen == 20 else 16
        src = key[:alen]
        dst = key[alen : 2 * alen]
        ports = key[2 * alen :]
        if buf[ip + (9 if hlen == 20 else 6)] == PROTO_TCP:
            d = Decoded(
                PROTO_TCP, src, dst, ports, iplen, buf[l4 + 13],
                int.from_bytes(buf[l4 + 4 : l4 + 8], "big"),
                min(l4 + max((buf[l4 + 12] >> 4) * 4, 20), l4end), l4end, None, (),
            )
        else:
            if (ports[2] << 8 | ports[3]) in TUNNEL_PORTS:
                return False
            d = Decoded(PROTO_UDP, src, dst, ports, iplen, 0, 0, min(l4 + 8, l4end), l4end, None,
                        ())
        self.add(d, buf, t, key)
        return True

    def add(self, d: Decoded, data: Buffer, t: int, key: bytes | None = None) -> FlowState | None:
        """Fold one decoded packet; ``data`` is the buffer ``d``'s offsets index.

        Returns the flow the packet was folded into, None when it was skipped.
        """
        proto = d.proto
        table = self.tables.get(proto)
        if table is None:
            self.skip(SKIP_PROTOCOL)
            return None
        frag = d.frag
        if frag is not None and frag[1]:
            # A later fragment: no transport header; it belongs to the flow of its first one.
            first = self.frags.get(frag[0])
            if first is None or t - first[1] > FRAGMENT_TIMEOUT_NS:
                self._hold(frag[0], t, d.iplen, d.outer)
                return None
            fh = first[0]
            fh.packets += 1
            fh.bytes += d.iplen
            ffl = fh.flow
            if t > ffl.last:
                ffl.last = t
            elif t < ffl.first:
                ffl.first = t
            if d.outer:
                if ffl.outer is None:
                    ffl.outer = set()
                ffl.outer.update(d.outer)
            return ffl
        if key is None:
            key = d.src + d.dst + d.ports
        h = table.get(key)
        if h is None and self.native is not None:
            h = self.native.take(proto, key)
        if h is None:
            h = self._new(table, key, d, t)
        else:
            fl = h.flow
            if t - fl.last > IDLE_NS:
                self.done.append(fl)
                h = self._new(table, key, d, t)
            elif proto == PROTO_TCP and fl.closed and d.flags & (TCP_SYN | TCP_ACK) == TCP_SYN:
                if d.seq == fl.syn_seq and h.is_a == fl.client_is_a:
                    fl.closed = False  # the flow's own SYN again: the attempt retried
                else:
                    self.done.append(fl)  # a new connection on the 5-tuple
                    h = self._new(table, key, d, t)
        fl = h.flow
        h.packets += 1
        h.bytes += d.iplen
        if t > fl.last:
            fl.last = t
        elif t < fl.first:
            fl.first = t
        if frag is not None:
            self._first_fragment(frag[0], h, t)
        if d.outer:
            if fl.outer is None:
                fl.outer = set()
            fl.outer.update(d.outer)
        if proto == PROTO_TCP:
            flags = d.flags
            if flags & (TCP_SYN | TCP_RST | TCP_FIN):
                self._tcp_flags(h, fl, flags, d.seq)
            if fl.probe_left > 0:
                fl.probe_left -= 1
                if d.pend > d.poff:
                    if h.is_a == fl.client_is_a:
                        self._tls(fl, data[d.poff : d.pend], d.seq)
                    elif d.pend - d.poff > TLS_PREAMBLE_MAX:
                        fl.probe_left = 0  # the server is sending data: the conversation is on
                if fl.probe_left <= 0:
                    fl.tls_buf = None
        if fl.dns and d.pend > d.poff:
            self._dns(d, data, t)
        fl.slow = fl.probe_left > 0 or fl.dns or fl.tunnel
        return fl

    def _new(self, table: dict[bytes, Half], key: bytes, d: Decoded, t: int) -> Half:
        proto = d.proto
        sport = d.sport
        dport = d.dport
        fl = FlowState(d, t)
        table[key] = fl.a
        ports = d.ports
        rkey = d.dst + d.src + (ports[2:4] + ports[0:2] if ports else b"")
        if rkey != key:
            table[rkey] = fl.b
        if proto == PROTO_TCP:
            # Until a SYN or SYN-ACK says otherwise (_tcp_flags), the lower port is the server's.
            if sport is not None and dport is not None:
                fl.direction = DIR_PORTS
                fl.client_is_a = not sport < dport
            fl.probe_left = TLS_PROBE_PACKETS
            fl.tls_left = TLS_PROBE_SEGMENTS
        elif proto in (PROTO_UDP, PROTO_SCTP):
            # A first packet from a well-known port to an ephemeral one is a reply.
            if sport is not None and dport is not None and sport < WELL_KNOWN <= EPHEMERAL <= dport:
                fl.client_is_a = False
                fl.direction = DIR_PORTS
        elif d.flags == ICMP_ECHO_REPLIES.get(proto):
            fl.client_is_a = False
            fl.direction = DIR_PORTS
        if proto in (PROTO_TCP, PROTO_UDP):
            fl.dns = sport in DNS_PORTS or dport in DNS_PORTS
            fl.tunnel = proto == PROTO_UDP and (sport in TUNNEL_PORTS or dport in TUNNEL_PORTS)
        return fl.a

    def tcp_known(  # noqa: PLR0917 - per-packet path: positional arguments are faster
        self, h: Half, buf: Buffer, l4: int, l4end: int, iplen: int, flags: int, t: int
    ) -> bool:
        """Fold a TCP packet of the known flow half ``h`` (transport header at ``buf[l4]``,
        captured segment end ``l4end``, at least 20 header bytes captured) the lean way: what
        ``add`` does for it, without building a ``Decoded``. False: it needs ``add`` (a new
        record starts, out-of-order time, DNS).
        """
        fl = h.flow
        gap = t - fl.last
        if fl.dns or gap < 0 or gap > IDLE_NS:
            return False
        if flags & (TCP_SYN | TCP_RST | TCP_FIN):
            if fl.closed and flags & (TCP_SYN | TCP_ACK) == TCP_SYN:
                return False
            self._tcp_flags(h, fl, flags, int.from_bytes(buf[l4 + 4 : l4 + 8], "big"))
        h.packets += 1
        h.bytes += iplen
        fl.last = t
        if fl.probe_left > 0:
            fl.probe_left -= 1
            poff = l4 + max((buf[l4 + 12] >> 4) * 4, 20)
            if l4end > poff:
                if h.is_a == fl.client_is_a:
                    self._tls(fl, buf[poff:l4end], int.from_bytes(buf[l4 + 4 : l4 + 8], "big"))
                elif l4end - poff > TLS_PREAMBLE_MAX:
                    fl.probe_left = 0  # the server is sending data: the conversation is on
            if fl.probe_left <= 0:
                fl.tls_buf = None
            fl.slow = fl.probe_left > 0 or fl.tunnel
        return True

    @staticmethod
    def _tcp_flags(h: Half, fl: FlowState, flags: int, seq: int) -> None:
        if flags & TCP_SYN:
            if flags & TCP_ACK:
                fl.synack = True
                fl.client_is_a = not h.is_a
            else:
                fl.syn = True
                fl.syn_seq = seq
                fl.client_is_a = h.is_a
            fl.direction = DIR_HANDSHAKE
        if flags & TCP_RST:
            fl.resets += 1
            fl.closed = True
        elif flags & TCP_FIN:
            fl.closed = True

    @staticmethod
    def _tls(fl: FlowState, payload: Buffer, seq: int) -> None:
        """Look at one client -> server payload segment for a ClientHello and its SNI."""
        if fl.tls_buf is None:
            if fl.tls_left <= 0:
                return
            fl.tls_left -= 1
            # A proxy may put a PROXY protocol header before the client's bytes: what follows
            # it is what the client sent (its addresses are not kept).
            hello = payload
            skip = proxy_header_length(payload)
            if skip:
                hello = payload[skip:]
            probe = probe_client_hello(hello)
            if not probe.is_hello:
                if fl.tls_left <= 0 or len(hello) > TLS_PREAMBLE_MAX:
                    fl.probe_left = 0
                return
            fl.tls = True
            stream = hello
        else:
            if seq != fl.tls_next:
                return  # a retransmission or out of order: wait for the next segment in order
            stream = (fl.tls_buf + payload)[:MAX_CLIENT_HELLO]
            probe = probe_client_hello(stream)
        if probe.sni is not None:
            fl.sni = probe.sni
        if probe.need_more and len(stream) < MAX_CLIENT_HELLO:
            fl.tls_buf = stream
            fl.tls_next = (seq + len(payload)) & 0xFFFFFFFF
        else:
            fl.tls_buf = None
            fl.probe_left = 0  # done: nothing more to learn from this flow's payload

    def _dns(self, d: Decoded, data: Buffer, t: int) -> None:
        ports = d.ports
        if (ports[0] << 8 | ports[1]) not in DNS_PORTS:
            return  # only responses (from the server port) are parsed
        msg = data[d.poff : d.pend]
        if d.proto == PROTO_TCP:
            if len(msg) < 2:
                return
            size = msg[0] << 8 | msg[1]
            msg = msg[2 : 2 + size]
            if len(msg) != size:
                return  # a message split over segments: not reassembled
        try:
            answer = parse_response(msg)
        except (IndexError, ValueError):  # pragma: no cover - the parser checks its bounds
            return
        if answer is None or not answer.name or not (answer.answers or answer.cnames):
            return  # nothing to name an address with (or the root zone)
        multicast = d.dst[0] >= 224 if len(d.dst) == 4 else d.dst[0] == 0xFF
        if multicast:
            return  # mDNS announcements and answers: there is no asking client
        key = (self.name(d.dst), self.name(d.src), answer.name, answer.answers, answer.cnames)
        old = self.dns.get(key)
        if old is None or t < old:
            self.dns[key] = t

    # -- output --------------------------------------------------------------------------------

    def name(self, addr: bytes) -> str:
        """The text form of a raw address: dotted IPv4 or compressed IPv6."""
        text = self._names.get(addr)
        if text is None:
            text = self._names[addr] = address_text(addr)
        return text

    def settle(self) -> None:
        """Make every flow of the C loop's store Python objects of the table: the live ones
        in the tables, the ended ones in ``done``."""
        if self.native is not None and len(self.native):
            self.native.flush(self.done)

    def flows(self) -> Iterator[FlowState]:
        self.settle()
        yield from self.python_flows()

    def python_flows(self) -> Iterator[FlowState]:
        """The flows held as Python objects (ended, then in the tables): all of them but the
        C loop's store (``native``)."""
        yield from self.done
        yield from self._in_tables()

    def active(self) -> Iterator[FlowState]:
        """The flows still in the tables (not ended), without ``done``."""
        self.settle()
        return self._in_tables()

    def _in_tables(self) -> Iterator[FlowState]:
        for table in self.tables.values():
            for h in table.values():
                if h.is_a:
                    yield h.flow

    def take_done(self) -> list[FlowState]:
        """Hand over the flows ended so far (idle time-out, TCP reopen) and forget them."""
        self.settle()
        done = self.done
        self.done = []
        return done

    def native_lines(self) -> NativeFlows | None:
        """The C loop's store with its flows sorted in the order of the flow file, for
        ``capture.flowfile.ordered_lines`` to merge their lines (made in C) with those of
        ``python_flows()``; None when it holds none."""
        if self.native is None or not len(self.native):
            return None
        self.native.sort()
        return self.native

    def remove(self, fl: FlowState) -> bool:
        """End ``fl`` now: take it out of the tables so that its next packet starts a new
        record. The caller writes its record (and then calls ``drop_fragments``); False when
        ``fl`` was not in the tables (already ended, or removed before).
        """
        table = self.tables.get(fl.proto)
        if table is None:
            return False
        ports = b""
        if fl.a_port is not None and fl.b_port is not None:
            ports = fl.a_port.to_bytes(2, "big") + fl.b_port.to_bytes(2, "big")
        key = fl.a_addr + fl.b_addr + ports
        if table.get(key) is not fl.a:
            return False
        del table[key]
        rkey = fl.b_addr + fl.a_addr + ports[2:4] + ports[0:2]
        if rkey != key and table.get(rkey) is fl.b:
            del table[rkey]
        return True

    def drop_fragments(self, ended: Collection[FlowState]) -> None:
        """Forget the pending IP fragments of flows whose records were written (one pass):
        their later fragments then wait for a first fragment that does not come, and are
        skipped as ``fragment-unmatched`` (``expire_fragments``)."""
        if self.frags and ended:
            for fkey in [k for k, (h, _t) in self.frags.items() if h.flow in ended]:
                del self.frags[fkey]

    # -- IP fragments --------------------------------------------------------------------------

    def _first_fragment(self, key: bytes, h: Half, t: int) -> None:
        """The first fragment of datagram ``key`` went to ``h``: its later fragments follow it,
        those that came before it too."""
        frags = self.frags
        frags[key] = (h, t)
        frags.move_to_end(key)  # a new datagram with the same key (the IP ID wrapped)
        while len(frags) > MAX_PENDING_FRAGMENTS or t - next(iter(frags.values()))[1] > (
                FRAGMENT_TIMEOUT_NS):
            frags.popitem(last=False)
        held = self.early.pop(key, None)
        if held is None:
            return
        self.held -= len(held)
        fl = h.flow
        for ht, iplen, outer in held:
            h.packets += 1
            h.bytes += iplen
            if ht > fl.last:
                fl.last = ht
            elif ht < fl.first:
                fl.first = ht
            if outer:
                if fl.outer is None:
                    fl.outer = set()
                fl.outer.update(outer)

    def _hold(self, key: bytes, t: int, iplen: int, outer: tuple[bytes, ...]) -> None:
        """A later fragment of datagram ``key`` came before its first one: keep it (not its
        bytes) for when that comes, within the bounds."""
        early = self.early
        waiting = early.get(key)
        if waiting is None:
            early[key] = waiting = []
        waiting.append((t, iplen, outer))
        self.held += 1
        self.expire_fragments(t - FRAGMENT_TIMEOUT_NS)
        while self.held > MAX_PENDING_FRAGMENTS:
            self._give_up()

    def _give_up(self) -> None:
        _key, waiting = self.early.popitem(last=False)
        self.held -= len(waiting)
        self.skip(SKIP_FRAGMENT, len(waiting))

    def expire_fragments(self, before: int | None = None) -> None:
        """Skip as ``fragment-unmatched`` the fragments still waiting for their datagram's
        first fragment: all of them (at the end of the input), or those of datagrams whose
        first fragment held came before time ``before`` (ns)."""
        early = self.early
        while early and (before is None or next(iter(early.values()))[0][0] < before):
            self._give_up()

    def flow_estimate(self) -> int:
        """About how many flows there are, in constant time (for a progress display): each
        flow has two table entries, but one when both directions have the same key."""
        native = 0 if self.native is None else len(self.native)
        return len(self.done) + sum(map(len, self.tables.values())) // 2 + native

    def flow_count(self) -> int:
        native = 0 if self.native is None else len(self.native)
        return len(self.done) + native + sum(
            1 for table in self.tables.values() for h in table.values() if h.is_a)

    def iter_flow_records(self) -> Iterator[dict[str, Any]]:
        for fl in self.flows():
            yield self.flow_record(fl)

    def iter_dns_records(self) -> Iterator[dict[str, Any]]:
        for item in self.dns.items():
            yield self.dns_record(item)

    def flow_items(
        self, flows: Iterable[FlowState] | None = None
    ) -> Iterator[tuple[tuple[Any, ...], FlowState]]:
        """(sort key, flow) pairs: ``capture.flowfile.sort_key`` of each flow's record; of
        ``flows`` when given, else of all the table's flows."""
        name = self.name
        for fl in self.flows() if flows is None else flows:
            _c, _s, client, server, cport, sport = _client_first(fl)
            yield (0, fl.first / NS, PROTO_NAMES[fl.proto], name(client),
                   -1 if cport is None else cport, name(server),
                   -1 if sport is None else sport), fl

    def dns_items(
        self, answers: Mapping[DnsKey, int] | None = None
    ) -> Iterator[tuple[tuple[Any, ...], tuple[DnsKey, int]]]:
        """(sort key, answer) pairs, as ``capture.flowfile.sort_key`` orders DNS records; of
        ``answers`` (answer -> time first seen) when given, else of the table's."""
        for item in (self.dns if answers is None else answers).items():
            (client, server, name, _answers, _cnames), t = item
            yield (1, t / NS, client, server, name, 0, ""), item

    @staticmethod
    def dns_line(item: tuple[DnsKey, int]) -> str:
        """``dns_record(item)`` as its flow file line: what ``dumps`` gives for it, made as
        ``flow_line`` makes a flow's (the tests hold the two equal)."""
        (client, server, name, answers, cnames), t = item
        return (f'{{"answers":[{",".join(map(_json_str, answers))}],'
                f'"client":{_json_str(client)},"cnames":[{",".join(map(_json_str, cnames))}],'
                f'"name":{_json_str(name)},"record":"dns","server":{_json_str(server)},'
                f'"ts":{t / NS!r}}}')

    @staticmethod
    def dns_record(item: tuple[DnsKey, int]) -> dict[str, Any]:
        (client, server, name, answers, cnames), t = item
        return {
            "record": "dns",
            "client": client,
            "server": server,
            "name": name,
            "answers": list(answers),
            "cnames": list(cnames),
            "ts": t / NS,
        }

    def flow_line(self, fl: FlowState) -> str:
        """``flow_record(fl)`` as its flow file line: what ``capture.flowfile.dumps`` gives for
        it (keys sorted, compact), made without the dictionary and the general encoder -- the
        writing of the records was a sixth of an ingest. Strings are JSON-escaped by the
        encoder's own function; the tests hold the two byte for byte equal."""
        c, s, client, server, cport, sport = _client_first(fl)
        name = self.name
        outer = ("[" + ",".join(map(_json_str, sorted({name(a) for a in fl.outer}))) + "]"
                 if fl.outer else "null")
        return (
            f'{{"bytes_to_client":{s.bytes:d},"bytes_to_server":{c.bytes:d},'
            f'"client":{_json_str(name(client))},'
            f'"client_port":{"null" if cport is None else f"{cport:d}"},'
            f'"direction":{_json_str(fl.direction)},"first_seen":{fl.first / NS!r},'
            f'"handshake":{_JSON_BOOL[bool(fl.syn and fl.synack)]},'
            f'"last_seen":{fl.last / NS!r},"outer":{outer},'
            f'"packets_to_client":{s.packets:d},"packets_to_server":{c.packets:d},'
            f'"proto":{_json_str(PROTO_NAMES[fl.proto])},"record":"flow",'
            f'"resets":{fl.resets:d},"server":{_json_str(name(server))},'
            f'"server_port":{"null" if sport is None else f"{sport:d}"},'
            f'"sni":{"null" if fl.sni is None else _json_str(fl.sni)},'
            f'"tls":{_JSON_BOOL[bool(fl.tls)]}}}'
        )

    def flow_record(self, fl: FlowState) -> dict[str, Any]:
        c, s, client, server, cport, sport = _client_first(fl)
        return {
            "record": "flow",
            "proto": PROTO_NAMES[fl.proto],
            "client": self.name(client),
            "server": self.name(server),
            "client_port": cport,
            "server_port": sport,
            "first_seen": fl.first / NS,
            "last_seen": fl.last / NS,
            "packets_to_server": c.packets,
            "bytes_to_server": c.bytes,
            "packets_to_client": s.packets,
            "bytes_to_client": s.bytes,
            "direction": fl.direction,
            "handshake": fl.syn and fl.synack,
            "resets": fl.resets,
            "tls": fl.tls,
            "sni": fl.sni,
            "outer": sorted({self.name(a) for a in fl.outer}) if fl.outer else None,
        }
