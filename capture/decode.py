"""Header-only packet decoder: link, IP, transport and overlay headers from raw bytes.

Nothing here dissects packets with scapy layers: a captured frame (``bytes`` exactly as the
reader yields it) is walked with plain indexing, which is an order of magnitude faster and never
copies payload. ``decode()`` answers either a ``Decoded`` (the L3/L4 facts one packet
contributes to a flow) or a short string, the reason the packet is skipped.

Covered: link types Ethernet (1, with 802.1Q / QinQ tags), Linux cooked SLL (113) and SLL2
(276), raw IP (101, and 12 / 14 which mean raw IP), IPv4 (228), IPv6 (229), BSD loopback NULL
(0) and LOOP (108); IPv4 (options skipped) and IPv6 (hop-by-hop, routing, destination options,
fragment and AH extension headers skipped); TCP, UDP, SCTP, ICMP, ICMPv6; overlays VXLAN (UDP
4789 and 8472, the Linux / Flannel / Cilium default), Geneve (UDP 6081) and IP-in-IP (IPv4
protocol 4, IPv6-in-IP 41), decapsulated so that the inner flow counts and the outer host
addresses are kept in ``outer``.
"""

from __future__ import annotations

from typing import NamedTuple

# Link types (https://www.tcpdump.org/linktypes.html).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_12 = 12  # DLT_RAW on most BSDs / Linux: raw IP
LINKTYPE_RAW_14 = 14  # DLT_RAW on OpenBSD: raw IP
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
SUPPORTED_LINKTYPES = frozenset(
    {
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_RAW_12,
        LINKTYPE_RAW_14,
        LINKTYPE_RAW,
        LINKTYPE_LOOP,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_LINUX_SLL2,
    }
)

# Ethertypes.
ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_VLAN = 0x8100
ETH_QINQ = 0x88A8
ETH_QINQ_OLD = 0x9100
ETH_TEB = 0x6558  # transparent Ethernet bridging (Geneve inner Ethernet)
VLAN_TAGS = frozenset({ETH_VLAN, ETH_QINQ, ETH_QINQ_OLD})

# IP protocol numbers.
PROTO_ICMP = 1
PROTO_IPIP = 4
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_IPV6 = 41
PROTO_ICMPV6 = 58
PROTO_SCTP = 132
PROTO_NAMES = {
    PROTO_TCP: "TCP",
    PROTO_UDP: "UDP",
    PROTO_SCTP: "SCTP",
    PROTO_ICMP: "ICMP",
    PROTO_ICMPV6: "ICMPv6",
}
PORTED = frozenset({PROTO_TCP, PROTO_UDP, PROTO_SCTP})

# IPv6 extension headers that are skipped to reach the transport header.
IP6_HOPOPTS = 0
IP6_ROUTING = 43
IP6_FRAGMENT = 44
IP6_AH = 51
IP6_DSTOPTS = 60
IP6_SKIPPED = frozenset({IP6_HOPOPTS, IP6_ROUTING, IP6_DSTOPTS})

# Overlay ports (destination port of the outer UDP header).
VXLAN_PORTS = frozenset({4789, 8472})
GENEVE_PORT = 6081
TUNNEL_PORTS = VXLAN_PORTS | {GENEVE_PORT}

# Address families in a NULL / LOOP header (AF_INET6 differs per OS).
AF_INET = 2
AF_INET6_ALL = frozenset({10, 24, 28, 30})

MAX_TUNNEL_DEPTH = 4

# Reasons a packet is skipped (the keys of ``stats.skipped``).
SKIP_LINKTYPE = "unsupported-linktype"
SKIP_NON_IP = "non-ip"
SKIP_TRUNCATED = "truncated"
SKIP_MALFORMED = "malformed"
SKIP_PROTOCOL = "unsupported-protocol"
SKIP_FRAGMENT = "fragment-unmatched"
SKIP_REASONS = (
    SKIP_LINKTYPE,
    SKIP_NON_IP,
    SKIP_TRUNCATED,
    SKIP_MALFORMED,
    SKIP_PROTOCOL,
    SKIP_FRAGMENT,
)


class Decoded(NamedTuple):
    """What one packet tells about its flow. Offsets index the frame given to ``decode``."""

    proto: int
    src: bytes  # 4 or 16 raw address bytes
    dst: bytes
    ports: bytes  # the 4 raw source + destination port bytes; b"" for ICMP / later fragments
    iplen: int  # IP total length (IPv6: 40 + payload length) of the innermost IP header
    flags: int  # TCP flags; ICMP type; SCTP first chunk type; 0 when not captured
    seq: int  # TCP sequence number (0 when not captured)
    poff: int  # transport payload [poff, pend) within the captured bytes
    pend: int
    # (key, fragment offset, more fragments) for IP fragments, else None.
    frag: tuple[bytes, int, bool] | None
    outer: tuple[bytes, ...]  # outer (underlay) addresses when decapsulated, else ()

    @property
    def sport(self) -> int | None:
        p = self.ports
        return (p[0] << 8 | p[1]) if p else None

    @property
    def dport(self) -> int | None:
        p = self.ports
        return (p[2] << 8 | p[3]) if p else None


def decode(linktype: int, data: bytes, wirelen: int) -> Decoded | str:
    """Decode one captured frame of ``linktype``; ``wirelen`` is its length on the wire."""
    end = len(data)
    if linktype == LINKTYPE_ETHERNET:
        return _ethernet(data, 0, end, wirelen, outer=(), depth=0)
    if linktype in (LINKTYPE_RAW, LINKTYPE_RAW_12, LINKTYPE_RAW_14, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return _ip(data, 0, end, wirelen, outer=(), depth=0)
    if linktype == LINKTYPE_LINUX_SLL:
        if end < 16:
            return SKIP_TRUNCATED
        return _ethertype(data, data[14] << 8 | data[15], 16, end, wirelen, outer=(), depth=0)
    if linktype == LINKTYPE_LINUX_SLL2:
        if end < 20:
            return SKIP_TRUNCATED
        return _ethertype(data, data[0] << 8 | data[1], 20, end, wirelen, outer=(), depth=0)
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if end < 4:
            return SKIP_TRUNCATED
        # NULL is in the capturing host's byte order, LOOP in network order; the values are small.
        family = data[3] if data[0] == 0 and data[1] == 0 else data[0]
        if family == AF_INET or family in AF_INET6_ALL:
            return _ip(data, 4, end, wirelen, outer=(), depth=0)
        return SKIP_NON_IP
    return SKIP_LINKTYPE


def _ethernet(
    data: bytes, off: int, end: int, wirelen: int, *, outer: tuple[bytes, ...], depth: int
) -> Decoded | str:
    if end - off < 14:
        return SKIP_TRUNCATED
    etype = data[off + 12] << 8 | data[off + 13]
    return _ethertype(data, etype, off + 14, end, wirelen, outer=outer, depth=depth)


def _ethertype(
    data: bytes,
    etype: int,
    off: int,
    end: int,
    wirelen: int,
    *,
    outer: tuple[bytes, ...],
    depth: int,
) -> Decoded | str:
    while etype in VLAN_TAGS:  # 802.1Q, 802.1ad (QinQ): 4-byte tag, then the next ethertype
        if end - off < 4:
            return SKIP_TRUNCATED
        etype = data[off + 2] << 8 | data[off + 3]
        off += 4
    if etype in (ETH_IPV4, ETH_IPV6):
        return _ip(data, off, end, wirelen, outer=outer, depth=depth)
    return SKIP_NON_IP


def _ip(
    data: bytes, off: int, end: int, wirelen: int, *, outer: tuple[bytes, ...], depth: int
) -> Decoded | str:
    if off >= end:
        return SKIP_TRUNCATED
    version = data[off] >> 4
    if version == 4:
        return _ipv4(data, off, end, wirelen, outer=outer, depth=depth)
    if version == 6:
        return _ipv6(data, off, end, wirelen, outer=outer, depth=depth)
    return SKIP_MALFORMED


def _ipv4(
    data: bytes, off: int, end: int, wirelen: int, *, outer: tuple[bytes, ...], depth: int
) -> Decoded | str:
    if end - off < 20:
        return SKIP_TRUNCATED
    ihl = (data[off] & 15) * 4
    if ihl < 20:
        return SKIP_MALFORMED
    if end - off < ihl:
        return SKIP_TRUNCATED
    iplen = data[off + 2] << 8 | data[off + 3]
    if iplen < ihl:
        # Total length 0 is what TSO / GSO ("big TCP") segments carry when captured on the
        # sending host; use the length on the wire instead.
        if iplen != 0:
            return SKIP_MALFORMED
        iplen = max(wirelen - off, end - off)
    proto = data[off + 9]
    src = data[off + 12 : off + 16]
    dst = data[off + 16 : off + 20]
    fragword = data[off + 6] << 8 | data[off + 7]
    l4 = off + ihl
    l4end = min(off + iplen, end)
    frag: tuple[bytes, int, bool] | None = None
    if fragword & 0x3FFF:
        more = bool(fragword & 0x2000)
        foff = (fragword & 0x1FFF) * 8
        frag = (b"4" + src + dst + bytes((proto,)) + data[off + 4 : off + 6], foff, more)
        if foff:
            return Decoded(proto, src, dst, b"", iplen, 0, 0, l4end, l4end, frag, outer)
    return _transport(data, proto, l4, l4end, end, src=src, dst=dst, iplen=iplen, wirelen=wirelen,
                      frag=frag, outer=outer, depth=depth)


def _ipv6(
    data: bytes, off: int, end: int, wirelen: int, *, outer: tuple[bytes, ...], depth: int
) -> Decoded | str:
    if end - off < 40:
        return SKIP_TRUNCATED
    plen = data[off + 4] << 8 | data[off + 5]
    iplen = 40 + plen
    if plen == 0:  # jumbogram or a GSO segment captured on the sender: use the wire length
        iplen = max(wirelen - off, end - off)
    nh = data[off + 6]
    src = data[off + 8 : off + 24]
    dst = data[off + 24 : off + 40]
    l4 = off + 40
    l4end = min(off + iplen, end)
    frag: tuple[bytes, int, bool] | None = None
    for _ in range(16):  # bounded walk over the extension header chain
        if nh in IP6_SKIPPED:
            if l4end - l4 < 2:
                return SKIP_TRUNCATED
            nh, l4 = data[l4], l4 + (data[l4 + 1] + 1) * 8
        elif nh == IP6_AH:
            if l4end - l4 < 2:
                return SKIP_TRUNCATED
            nh, l4 = data[l4], l4 + (data[l4 + 1] + 2) * 4
        elif nh == IP6_FRAGMENT:
            if l4end - l4 < 8:
                return SKIP_TRUNCATED
            word = data[l4 + 2] << 8 | data[l4 + 3]
            foff = word & 0xFFF8
            more = bool(word & 1)
            frag = (b"6" + src + dst + data[l4 + 4 : l4 + 8], foff, more)
            nh, l4 = data[l4], l4 + 8
            if foff:
                return Decoded(nh, src, dst, b"", iplen, 0, 0, l4end, l4end, frag, outer)
            if not more:  # an atomic fragment: a whole datagram
                frag = None
        else:
            break
    else:
        return SKIP_MALFORMED
    if l4 > l4end:
        return SKIP_TRUNCATED
    return _transport(data, nh, l4, l4end, end, src=src, dst=dst, iplen=iplen, wirelen=wirelen,
                      frag=frag, outer=outer, depth=depth)


def _transport(
    data: bytes,
    proto: int,
    l4: int,
    l4end: int,
    end: int,
    *,
    src: bytes,
    dst: bytes,
    iplen: int,
    wirelen: int,
    frag: tuple[bytes, int, bool] | None,
    outer: tuple[bytes, ...],
    depth: int,
) -> Decoded | str:
    avail = l4end - l4
    if proto == PROTO_TCP:
        if avail < 4:
            return SKIP_TRUNCATED
        flags = data[l4 + 13] if avail >= 14 else 0
        seq = (
            data[l4 + 4] << 24 | data[l4 + 5] << 16 | data[l4 + 6] << 8 | data[l4 + 7]
            if avail >= 8
            else 0
        )
        thl = (data[l4 + 12] >> 4) * 4 if avail >= 13 else 20
        poff = min(l4 + max(thl, 20), l4end)
        return Decoded(proto, src, dst, data[l4 : l4 + 4], iplen, flags, seq, poff, l4end, frag,
                       outer)
    if proto == PROTO_UDP:
        if avail < 4:
            return SKIP_TRUNCATED
        ports = data[l4 : l4 + 4]
        dport = ports[2] << 8 | ports[3]
        if dport in TUNNEL_PORTS and depth < MAX_TUNNEL_DEPTH and frag is None:
            inner = _overlay(data, dport, l4 + 8, end, wirelen, outer=(*outer, src, dst),
                             depth=depth + 1)
            if inner is not None:
                return inner
        return Decoded(proto, src, dst, ports, iplen, 0, 0, min(l4 + 8, l4end), l4end, frag,
                       outer)
    if proto == PROTO_SCTP:
        if avail < 4:
            return SKIP_TRUNCATED
        chunk = data[l4 + 12] if avail >= 13 else 0
        return Decoded(proto, src, dst, data[l4 : l4 + 4], iplen, chunk, 0, l4end, l4end, frag,
                       outer)
    if proto in (PROTO_ICMP, PROTO_ICMPV6):
        if avail < 1:
            return SKIP_TRUNCATED
        return Decoded(proto, src, dst, b"", iplen, data[l4], 0, l4end, l4end, frag, outer)
    if proto in (PROTO_IPIP, PROTO_IPV6):
        if depth >= MAX_TUNNEL_DEPTH:
            return SKIP_PROTOCOL
        if frag is not None:
            return SKIP_FRAGMENT  # a fragmented tunnel packet: the inner headers are not whole
        return _ip(data, l4, end, wirelen, outer=(*outer, src, dst), depth=depth + 1)
    return SKIP_PROTOCOL


def _overlay(
    data: bytes, dport: int, off: int, end: int, wirelen: int, *, outer: tuple[bytes, ...],
    depth: int,
) -> Decoded | str | None:
    """Decapsulate VXLAN or Geneve at ``off`` (after the UDP header); None: not that overlay."""
    if end - off < 8:
        return None
    if dport in VXLAN_PORTS:
        # RFC 7348: flags 0x08 (VNI valid), reserved bytes zero; then an Ethernet frame.
        if data[off] & 0x08 == 0 or data[off + 7] != 0:
            return None
        return _ethernet(data, off + 8, end, wirelen, outer=outer, depth=depth)
    # Geneve (RFC 8926): version 0, option length in 4-byte words, protocol type.
    if data[off] >> 6 != 0:
        return None
    inner = off + 8 + (data[off] & 0x3F) * 4
    ptype = data[off + 2] << 8 | data[off + 3]
    if ptype == ETH_TEB:
        return _ethernet(data, inner, end, wirelen, outer=outer, depth=depth)
    if ptype in (ETH_IPV4, ETH_IPV6):
        return _ip(data, inner, end, wirelen, outer=outer, depth=depth)
    return None
