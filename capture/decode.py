"""Header-only packet decoder: link, IP, transport and overlay headers from raw bytes.

Nothing here dissects packets with scapy layers: a captured frame (``bytes`` exactly as the
reader yields it) is walked with plain indexing, which is an order of magnitude faster and never
copies payload. ``decode()`` answers either a ``Decoded`` (the L3/L4 facts one packet
contributes to a flow) or a short string, the reason the packet is skipped.

Covered: link types Ethernet (1, with 802.1Q / QinQ tags), Linux cooked SLL (113) and SLL2
(276), raw IP (101, and 12 / 14 which mean raw IP), IPv4 (228), IPv6 (229), BSD loopback NULL
(0) and LOOP (108) -- with an address family or, as some BSDs write, an Ethernet type -- and
Linux NFLOG (239); IPv4 (options skipped) and IPv6 (hop-by-hop, routing, destination options,
fragment and AH extension headers skipped; with a routing header, the final destination is the
destination); TCP, UDP, SCTP, ICMP, ICMPv6; overlays VXLAN (UDP 4789 and 8472, the Linux /
Flannel / Cilium default), Geneve (UDP 6081), IP-in-IP (IPv4 protocol 4, IPv6-in-IP 41) and GRE
(IP protocol 47: IPv4, IPv6 and Ethernet inside, with key and sequence number; ERSPAN types
I, II and III, how port-mirroring sessions deliver traffic), decapsulated so that the inner
flow counts and the outer host addresses are kept in ``outer``.
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
LINKTYPE_NFLOG = 239
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
        LINKTYPE_NFLOG,
        LINKTYPE_LINUX_SLL2,
    }
)

# Ethertypes.
ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_VLAN = 0x8100
ETH_QINQ = 0x88A8
ETH_QINQ_OLD = 0x9100
ETH_TEB = 0x6558  # transparent Ethernet bridging (Geneve, GRE: an Ethernet frame inside)
ETH_ERSPAN_2 = 0x88BE  # GRE protocol type of ERSPAN types I and II
ETH_ERSPAN_3 = 0x22EB  # GRE protocol type of ERSPAN type III
VLAN_TAGS = frozenset({ETH_VLAN, ETH_QINQ, ETH_QINQ_OLD})

# IP protocol numbers.
PROTO_ICMP = 1
PROTO_IPIP = 4
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_IPV6 = 41
PROTO_GRE = 47
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
IEEE_802_3_MAX_LEN = 1500  # a NULL header value above this is an Ethernet type

# NFLOG (https://www.tcpdump.org/linktypes/LINKTYPE_NFLOG.html): a 4-byte header (family,
# version, resource id), then TLVs whose length and type are in the byte order of the host
# that captured; NFULA_PAYLOAD holds the packet from its IP header on.
NFULA_PAYLOAD = 9
NFLOG_MAX_TLVS = 64

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
        family = _null_family(data)
        if family == AF_INET or family in AF_INET6_ALL:
            return _ip(data, 4, end, wirelen, outer=(), depth=0)
        if family > IEEE_802_3_MAX_LEN:
            return _ethertype(data, family, 4, end, wirelen, outer=(), depth=0)
        return SKIP_NON_IP
    if linktype == LINKTYPE_NFLOG:
        return _nflog(data, end, wirelen)
    return SKIP_LINKTYPE


def _null_family(data: bytes) -> int:
    """The value of a NULL / LOOP header: an address family, or an Ethernet type (> 1500).

    NULL is in the capturing host's byte order, LOOP in network order; some BSDs put an
    Ethernet type there, IRIX the family in the upper half. As Wireshark's packet-null.c does
    (reading the 4 bytes little-endian here, so that the answer does not depend on the host
    this runs on): a value with upper bytes set is the other byte order, unless it is IRIX's
    family; a lower half whose low byte is 0 and below 0x0600 is a byte-swapped 16-bit family.
    """
    value = data[0] | data[1] << 8 | data[2] << 16 | data[3] << 24
    if value & 0xFFFF0000:
        if not value & 0xFF000000 and value & 0x00FF0000 < 0x00060000:
            return value >> 16
        return data[3] | data[2] << 8 | data[1] << 16 | data[0] << 24
    if not value & 0xFF and value & 0xFF00 < 0x0600:
        return value >> 8
    return value


def _nflog(data: bytes, end: int, wirelen: int) -> Decoded | str:
    """The packet in the NFULA_PAYLOAD TLV of an NFLOG frame."""
    if end < 4:
        return SKIP_TRUNCATED
    # The TLVs' byte order, found as Wireshark's packet-nflog.c finds it: the one in which
    # they read as TLVs (length at least 4, a known small type); big-endian first.
    order = next((o for o in ("big", "little") if _nflog_order_fits(data, end, o)), None)
    if order is None:
        return SKIP_MALFORMED
    big = order == "big"
    off = 4
    for _ in range(NFLOG_MAX_TLVS):
        if end - off < 4:
            return SKIP_TRUNCATED
        tlen = data[off] << 8 | data[off + 1] if big else data[off] | data[off + 1] << 8
        ttype = (data[off + 2] << 8 | data[off + 3] if big
                 else data[off + 2] | data[off + 3] << 8) & 0x7FFF
        if tlen < 4:
            return SKIP_MALFORMED
        if ttype == NFULA_PAYLOAD:
            # The payload is the packet as logged (its copy range may have cut it).
            return _ip(data, off + 4, min(off + tlen, end), off + tlen, outer=(), depth=0)
        off += (tlen + 3) & ~3
    return SKIP_MALFORMED


def _nflog_order_fits(data: bytes, end: int, order: str) -> bool:
    off = 4
    big = order == "big"
    for _ in range(NFLOG_MAX_TLVS):
        if end - off <= 4:
            return False
        tlen = data[off] << 8 | data[off + 1] if big else data[off] | data[off + 1] << 8
        if tlen < 4:
            return False
        ttype = (data[off + 2] << 8 | data[off + 3] if big
                 else data[off + 2] | data[off + 3] << 8) & 0x7FFF
        if ttype >= 0x100:
            return False
        if ttype:
            return True
        off += (tlen + 3) & ~3
    return False


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
    final = dst  # the final destination: the server of the flow
    for _ in range(16):  # bounded walk over the extension header chain
        if nh in IP6_SKIPPED:
            if l4end - l4 < 2:
                return SKIP_TRUNCATED
            if nh == IP6_ROUTING:
                final = _final_destination(data, l4, l4end, dst) or final
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
                return Decoded(nh, src, final, b"", iplen, 0, 0, l4end, l4end, frag, outer)
            if not more:  # an atomic fragment: a whole datagram
                frag = None
        else:
            break
    else:
        return SKIP_MALFORMED
    if l4 > l4end:
        return SKIP_TRUNCATED
    return _transport(data, nh, l4, l4end, end, src=src, dst=final, iplen=iplen, wirelen=wirelen,
                      frag=frag, outer=outer, depth=depth)


def _final_destination(data: bytes, off: int, end: int, dst: bytes) -> bytes | None:
    """The final destination a routing header at ``off`` names, when the packet is still on
    its way there (segments left); None: the destination address is the final one, or the
    header is not one of these (or not whole).

    RFC 8200 section 4.4: with segments left, the destination address is only the next hop.
    Type 0 (RFC 5095, deprecated but seen) and 2 (RFC 6275, Mobile IPv6: the home address)
    list addresses after 4 reserved bytes, the final one last; type 3 (RFC 6554, RPL) lists
    them with ``CmprI`` / ``CmprE`` leading bytes left out, taken from the destination
    address, the final one last; type 4 (RFC 8754, segment routing) lists segments in reverse,
    the final one first (Segment List[0]).
    """
    if end - off < 8 or not data[off + 3]:  # segments left: 0
        return None
    size = (data[off + 1] + 1) * 8
    stop = min(off + size, end)
    rtype = data[off + 2]
    if rtype in (0, 2):
        count = data[off + 1] // 2
        last = off + 8 + 16 * (count - 1)
        if count < 1 or last + 16 > stop:
            return None
        return data[last : last + 16]
    if rtype == 4:
        return data[off + 8 : off + 24] if off + 24 <= stop else None
    if rtype == 3:
        cmpr_i, cmpr_e, pad = data[off + 4] >> 4, data[off + 4] & 15, data[off + 5] >> 4
        room = data[off + 1] * 8 - pad - (16 - cmpr_e)
        if room < 0 or room % (16 - cmpr_i):
            return None
        last = off + 8 + room
        if last + 16 - cmpr_e > stop:
            return None
        return dst[:cmpr_e] + data[last : last + 16 - cmpr_e]
    return None


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
    if proto in (PROTO_IPIP, PROTO_IPV6, PROTO_GRE):
        if depth >= MAX_TUNNEL_DEPTH:
            return SKIP_PROTOCOL
        if frag is not None:
            return SKIP_FRAGMENT  # a fragmented tunnel packet: the inner headers are not whole
        if proto == PROTO_GRE:
            return _gre(data, l4, end, wirelen, outer=(*outer, src, dst), depth=depth + 1)
        return _ip(data, l4, end, wirelen, outer=(*outer, src, dst), depth=depth + 1)
    return SKIP_PROTOCOL


def _gre(
    data: bytes, off: int, end: int, wirelen: int, *, outer: tuple[bytes, ...], depth: int
) -> Decoded | str:
    """The packet inside a GRE header at ``off``.

    GRE (RFC 2784, with RFC 2890's key and sequence number): flags C (checksum), R (source
    route, RFC 1701), K (key), S (sequence number) in the first byte, the version in the low
    3 bits of the second, the protocol type (an Ethernet type) in the next two; then 4 bytes
    each for the checksum (C), key (K) and sequence number (S). Version 1 (PPTP's enhanced
    GRE) carries PPP, and RFC 1701 routing is obsolete: not decoded.

    ERSPAN (draft-foschiano-erspan-03; Linux's include/net/erspan.h): protocol type 0x88BE
    without a sequence number is type I, the mirrored Ethernet frame right after GRE; with one,
    type II, behind an 8-byte header of version 1. 0x22EB is type III: a 12-byte header of
    version 2, 8 more bytes when its O bit (last bit) is set, then an Ethernet frame or, with
    frame type (bits 1-5 of byte 10) 2, an IP packet.
    """
    if end - off < 4:
        return SKIP_TRUNCATED
    flags = data[off]
    if data[off + 1] & 7 or flags & 0x40:  # version 1, or RFC 1701 routing
        return SKIP_PROTOCOL
    ptype = data[off + 2] << 8 | data[off + 3]
    inner = off + 4 + 4 * ((flags >> 7) + (flags >> 5 & 1) + (flags >> 4 & 1))
    if inner > end:
        return SKIP_TRUNCATED
    if ptype in (ETH_IPV4, ETH_IPV6):
        return _ip(data, inner, end, wirelen, outer=outer, depth=depth)
    if ptype == ETH_TEB:
        return _ethernet(data, inner, end, wirelen, outer=outer, depth=depth)
    if ptype == ETH_ERSPAN_2:
        if not flags & 0x10:  # type I
            return _ethernet(data, inner, end, wirelen, outer=outer, depth=depth)
        if end - inner < 8:
            return SKIP_TRUNCATED
        if data[inner] >> 4 != 1:
            return SKIP_PROTOCOL
        return _ethernet(data, inner + 8, end, wirelen, outer=outer, depth=depth)
    if ptype == ETH_ERSPAN_3:
        if end - inner < 12:
            return SKIP_TRUNCATED
        if data[inner] >> 4 != 2:
            return SKIP_PROTOCOL
        start = inner + 12 + (8 if data[inner + 11] & 1 else 0)
        frame_type = data[inner + 10] >> 2 & 0x1F
        if frame_type == 0:
            return _ethernet(data, start, end, wirelen, outer=outer, depth=depth)
        if frame_type == 2:
            return _ip(data, start, end, wirelen, outer=outer, depth=depth)
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
