"""TLS ClientHello recognition and SNI extraction.

Only the fact that a ClientHello was sent and its ``server_name`` are read; nothing else of the
handshake is looked at or kept. A PROXY protocol header that a load balancer put before the
client's bytes is recognised (``proxy_header_length``) so that the ClientHello after it is seen;
its addresses are not kept.
"""

from __future__ import annotations

from typing import NamedTuple

CONTENT_HANDSHAKE = 0x16
HANDSHAKE_CLIENT_HELLO = 1
EXT_SERVER_NAME = 0
NAME_TYPE_HOST = 0
MAX_CLIENT_HELLO = 16384 + 5  # one TLS record
_HOST_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_*")
_HEX_DIGITS = frozenset("0123456789abcdef")

# The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2): a text line of at most
# 107 bytes "PROXY TCP4 <src> <dst> <sport> <dport>\r\n", or a 16-byte binary header -- a
# 12-byte signature, version 2 in the high nibble of the 13th byte, the length of the
# addresses and TLVs that follow in the 15th and 16th -- then those.
PROXY_V1_PREFIX = b"PROXY "
PROXY_V1_MAX = 107
PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


class HelloProbe(NamedTuple):
    is_hello: bool  # the bytes start a TLS ClientHello
    sni: str | None  # the host name, when found
    need_more: bool  # the SNI may be beyond the bytes given: feed more of the stream


NOT_HELLO = HelloProbe(False, None, False)


def looks_like_client_hello(data: bytes | bytearray) -> bool:
    """The first bytes of a TCP stream are a TLS handshake record holding a ClientHello."""
    return (
        len(data) >= 6
        and data[0] == CONTENT_HANDSHAKE
        and data[1] == 3
        and data[2] <= 4
        and data[5] == HANDSHAKE_CLIENT_HELLO
    )


def proxy_header_length(data: bytes | bytearray) -> int:
    """The length of a whole PROXY protocol header (version 1 or 2) at the start of ``data``;
    0 when there is none (or it is not whole)."""
    if data[:6] == PROXY_V1_PREFIX:
        end = data.find(b"\r\n", 0, PROXY_V1_MAX)
        return end + 2 if end >= 0 else 0
    if data[:12] == PROXY_V2_SIGNATURE and len(data) >= 16 and data[12] >> 4 == 2:
        total = 16 + (data[14] << 8 | data[15])
        return total if total <= len(data) else 0
    return 0


def probe_client_hello(data: bytes | bytearray) -> HelloProbe:
    """Look for the SNI in the first bytes of a client -> server stream."""
    if not looks_like_client_hello(data):
        return NOT_HELLO
    record_end = min(5 + (data[3] << 8 | data[4]), len(data))
    complete = len(data) >= 5 + (data[3] << 8 | data[4])
    more = HelloProbe(True, None, not complete)
    # Handshake header (type, 3-byte length), client_version, random.
    off = 5 + 4 + 2 + 32
    if off + 1 > record_end:
        return more
    off += 1 + data[off]  # session id
    if off + 2 > record_end:
        return more
    off += 2 + (data[off] << 8 | data[off + 1])  # cipher suites
    if off + 1 > record_end:
        return more
    off += 1 + data[off]  # compression methods
    if off + 2 > record_end:
        return more
    ext_end = off + 2 + (data[off] << 8 | data[off + 1])
    off += 2
    while off + 4 <= record_end and off < ext_end:
        etype = data[off] << 8 | data[off + 1]
        elen = data[off + 2] << 8 | data[off + 3]
        body = off + 4
        if etype == EXT_SERVER_NAME:
            if body + elen > record_end:
                return more
            return HelloProbe(True, _server_name(data[body : body + elen]), False)
        off = body + elen
    if complete or off >= ext_end:
        return HelloProbe(True, None, False)
    return more


def _server_name(ext: bytes | bytearray) -> str | None:
    """The host_name entry of a server_name extension body (RFC 6066 section 3)."""
    if len(ext) < 2:
        return None
    end = min(2 + (ext[0] << 8 | ext[1]), len(ext))
    off = 2
    while off + 3 <= end:
        ntype = ext[off]
        nlen = ext[off + 1] << 8 | ext[off + 2]
        name = ext[off + 3 : off + 3 + nlen]
        if ntype == NAME_TYPE_HOST:
            if len(name) != nlen or not name or not set(name) <= _HOST_CHARS:
                return None
            host = name.decode("ascii").lower().rstrip(".")
            if not host or _is_ip_literal(host):
                return None
            return host
        off += 3 + nlen
    return None


def _is_ip_literal(host: str) -> bool:
    """An IPv4 address, which RFC 6066 section 3 does not allow as a HostName ("Literal IPv4
    and IPv6 addresses are not permitted"; an IPv6 one has colons, not host characters): a name
    that ends in a number, as the WHATWG URL Standard's host parser tells one -- its last label
    all digits, or 0x and hex digits (so 10.0.0.1, 0x7f.1, 3232235777)."""
    last = host.rsplit(".", 1)[-1]
    if last.isdigit():
        return True
    return last[:2] == "0x" and set(last[2:]) <= _HEX_DIGITS
