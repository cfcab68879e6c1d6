"""Minimal DNS response parsing: the name asked, CNAME chain and A / AAAA answers.

Only what a flow file keeps is extracted (names and addresses); the message itself is not kept.
Malformed or truncated messages give ``None``, never an exception.

Names are written as dig writes them (BIND's dns_name_totext; RFC 1035 section 5.1 and RFC 4343
section 2.1 for the escapes), lower case: a label byte that is not a printable ASCII character
(space and control characters included) becomes ``\\DDD`` (its decimal value), and ``"``,
``(``, ``)``, ``.``, ``;`` and ``\\`` inside a label get a backslash. So a name is always
printable, and a dot inside a label is told apart from one between labels.
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

TYPE_A = 1
TYPE_CNAME = 5
TYPE_AAAA = 28
CLASS_IN = 1
MAX_POINTER_JUMPS = 32
MAX_NAME_LENGTH = 255
MAX_RECORDS = 256


def _byte_text(b: int) -> str:
    if b in b'"().;\\':
        return "\\" + chr(b)
    if 0x21 <= b <= 0x7E:
        return chr(b).lower()
    return f"\\{b:03d}"


_LABEL_TEXT = tuple(_byte_text(b) for b in range(256))
_PLAIN = b"-_"  # with letters and digits, the bytes of the usual label: none needs escaping


def label_text(label: bytes | bytearray) -> str:
    """A label as dig writes it, lower case: see the module's docstring."""
    if label.isalnum():
        return label.decode("ascii").lower()
    rest = label.translate(None, _PLAIN)
    if not rest or rest.isalnum():
        return label.decode("ascii").lower()
    return "".join([_LABEL_TEXT[b] for b in label])


class DnsResponse(NamedTuple):
    name: str
    answers: tuple[str, ...]  # sorted, unique
    cnames: tuple[str, ...]  # in chain order, unique


def _name(msg: bytes | bytearray, off: int) -> tuple[str, int] | None:
    """Read a (possibly compressed) name at ``off``: (lower-case name, offset after it)."""
    labels: list[str] = []
    length = 0
    after = -1
    jumps = 0
    end = len(msg)
    while True:
        if off >= end:
            return None
        n = msg[off]
        if n == 0:
            off += 1
            break
        if n & 0xC0 == 0xC0:
            if off + 1 >= end or jumps >= MAX_POINTER_JUMPS:
                return None
            if after < 0:
                after = off + 2
            off = (n & 0x3F) << 8 | msg[off + 1]
            jumps += 1
            continue
        if n & 0xC0:
            return None  # extended label types are not used in practice
        label = msg[off + 1 : off + 1 + n]
        if len(label) != n:
            return None
        length += n + 1
        if length > MAX_NAME_LENGTH:
            return None
        labels.append(label_text(label))
        off += 1 + n
    return ".".join(labels), (after if after >= 0 else off)


def parse_response(msg: bytes | bytearray) -> DnsResponse | None:
    """Parse a DNS response message; None if it is not a usable standard-query response."""
    if len(msg) < 12:
        return None
    flags = msg[2] << 8 | msg[3]
    if not flags & 0x8000 or (flags >> 11) & 0xF != 0:  # QR = response, OPCODE = QUERY
        return None
    qdcount = msg[4] << 8 | msg[5]
    ancount = msg[6] << 8 | msg[7]
    if qdcount == 0 or qdcount > MAX_RECORDS or ancount > MAX_RECORDS:
        return None
    off = 12
    qname = ""
    for i in range(qdcount):
        got = _name(msg, off)
        if got is None:
            return None
        if i == 0:
            qname = got[0]
        off = got[1] + 4
    if off > len(msg):
        return None
    addrs: list[tuple[str, str]] = []  # (owner, address)
    cname_of: dict[str, str] = {}
    for _ in range(ancount):
        got = _name(msg, off)
        if got is None:
            break  # keep what was read before a truncated record
        owner, off = got
        if off + 10 > len(msg):
            break
        rtype = msg[off] << 8 | msg[off + 1]
        rclass = msg[off + 2] << 8 | msg[off + 3]
        rdlen = msg[off + 8] << 8 | msg[off + 9]
        rdata = off + 10
        off = rdata + rdlen
        if off > len(msg):
            break
        if rclass != CLASS_IN:
            continue
        if rtype == TYPE_A and rdlen == 4:
            addrs.append((owner, str(ipaddress.IPv4Address(bytes(msg[rdata:off])))))
        elif rtype == TYPE_AAAA and rdlen == 16:
            addrs.append((owner, ipaddress.IPv6Address(bytes(msg[rdata:off])).compressed))
        elif rtype == TYPE_CNAME:
            alias = _name(msg, rdata)
            if alias is not None:
                cname_of.setdefault(owner, alias[0])
    # Follow the CNAME chain from the name asked.
    chain = [qname]
    cnames: list[str] = []
    while chain[-1] in cname_of and len(chain) <= MAX_POINTER_JUMPS:
        target = cname_of[chain[-1]]
        if target in chain:
            break
        chain.append(target)
        cnames.append(target)
    members = set(chain)
    answers = sorted({addr for owner, addr in addrs if owner in members})
    return DnsResponse(qname, tuple(answers), tuple(cnames))
